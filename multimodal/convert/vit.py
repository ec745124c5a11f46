"""ViT weights from timm (``VisionTransformer`` objects, state dicts, files, Hub-style folders) and
from Hugging Face ``ViTForImageClassification`` / ``ViTModel`` folders.

timm's names are ours except for the blocks (``blocks.i`` -> ``transformer.blocks.i``, ``attn.proj``
-> ``attn.out``) and the final norm (``norm`` -> ``transformer.norm``). Hugging Face keeps q, k and v
apart (fused here into the backbone's ``qkv``), normalises with eps 1e-12, and resizes positions
without antialiasing; its config records all of that. Both store the position table with the class
token's row first, as we do, so tables load unchanged.

A timm state dict does not record the number of heads, the pooling or the resolution: they are read
from the model object or the folder's ``config.json`` (``model_args`` / ``pretrained_cfg``) when there
is one, else inferred (heads = width / 64, timm's head size for every ViT size; pooling "avg" when
there is an ``fc_norm``, else "token"; a square grid from the table's length) and can be given as
keyword overrides, which also set any other ``ViTConfig`` field (labels, preprocessing).

Nothing is unpickled (safetensors, or ``torch.load(..., weights_only=True)``) and nothing downloaded.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_state_dict, load_tensors
from ..errors import InputError
from ..models.vit import ViT, ViTConfig
from ..paths import resolve_model
from ..devices import parse_dtype
from .common import hf_config, hf_tensors, read_json, torch_load

TIMM_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
TIMM_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _build(config: ViTConfig, state: dict[str, torch.Tensor], dtype, where: str) -> ViT:
    with torch.device("meta"):
        model = ViT(config)
    check_state_dict(model, state, where)
    dtype = parse_dtype(dtype)
    model.load_state_dict({k: v.to(dtype).contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def _preprocessing(cfg: dict, channels: int) -> dict[str, Any]:
    """ViTConfig preprocessing fields from a timm ``pretrained_cfg``."""
    out: dict[str, Any] = {}
    if cfg.get("input_size"):
        out["image_size"] = tuple(cfg["input_size"][-2:])
    for ours, theirs in (("image_mean", "mean"), ("image_std", "std")):
        if cfg.get(theirs) is not None and len(cfg[theirs]) == channels:
            out[ours] = tuple(float(v) for v in cfg[theirs])
    if cfg.get("crop_pct") is not None:
        out.update(resize="shorter", crop_pct=min(float(cfg["crop_pct"]), 1.0))
    if cfg.get("interpolation") in ("nearest", "bilinear", "bicubic"):
        out["interpolation"] = cfg["interpolation"]
    return out


# ------------------------------------------------------------------------------------- timm
def from_timm(source, *, dtype: torch.dtype | str = torch.float32, **overrides) -> ViT:
    """A timm ``VisionTransformer``, its ``state_dict()``, a file of one (``.safetensors``, or
    ``.pt`` / ``.pth`` / ``.bin`` read with weights_only, optionally under ``state_dict`` / ``model``),
    or a timm Hub folder (``config.json`` + ``model.safetensors``). ``overrides``: ViTConfig fields
    (``heads``, ``global_pool``, ``image_size``, ``norm_eps``, ``labels``, ...)."""
    found: dict[str, Any] = {}
    where = "timm model"
    if isinstance(source, torch.nn.Module):
        state, found = source.state_dict(), _timm_model_fields(source)
    elif isinstance(source, dict):
        state, where = source, "timm state dict"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        where = str(path)
        state, found = _timm_files(path)
    else:
        raise InputError(f"source: expected a timm VisionTransformer, a state dict or a path, "
                         f"found {type(source).__name__}")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{where}: expected a dict of tensors, found other values")
    config = _timm_config(state, {**found, **overrides}, where)
    ours = {}
    for name, tensor in state.items():
        name = re.sub(r"^blocks\.(\d+)\.attn\.proj\.", r"blocks.\1.attn.out.", name)
        name = re.sub(r"^blocks\.", "transformer.blocks.", name)
        name = re.sub(r"^norm\.", "transformer.norm.", name)
        ours[name] = tensor
    return _build(config, ours, dtype, where)


def _timm_model_fields(model: torch.nn.Module) -> dict[str, Any]:
    """ViTConfig fields that a timm VisionTransformer knows but its state dict does not."""
    name = type(model).__name__
    if not hasattr(model, "patch_embed") or not hasattr(model, "blocks"):
        raise InputError(f"source: expected a timm VisionTransformer, found {name}")
    unsupported = [what for what, bad in (
        ("no_embed_class", getattr(model, "no_embed_class", False)),
        ("register tokens", getattr(model, "num_reg_tokens", 0)),
        ("attention pooling", getattr(model, "attn_pool", None) is not None),
        ("dynamic_img_pad", getattr(model.patch_embed, "dynamic_img_pad", False))) if bad]
    act = getattr(model.blocks[0].mlp, "act", None)
    if not (isinstance(act, torch.nn.GELU) and act.approximate == "none"):
        unsupported.append(f"activation {type(act).__name__}")
    if unsupported:
        raise InputError(f"source: expected a plain timm ViT, found {name} with {', '.join(unsupported)}")
    fields = {"heads": model.blocks[0].attn.num_heads, "global_pool": model.global_pool,
              "image_size": tuple(model.patch_embed.img_size), "norm_eps": model.blocks[0].norm1.eps}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels = model.patch_embed.proj.weight.shape[1]
    fields.update({k: v for k, v in _preprocessing(cfg, channels).items() if k != "image_size"})
    return fields


def _timm_files(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    found: dict[str, Any] = {}
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            found = _timm_folder_fields(read_json(path / CONFIG_NAME))
        files = [path / f for f in TIMM_FILES if (path / f).is_file()]
        if not files:
            raise InputError(f"{path}: expected timm weights ({', '.join(TIMM_FILES)}), found none")
        path = files[0]
    if path.suffix == ".safetensors":
        return load_tensors(path), found
    ckpt = torch_load(path)
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: expected a state dict, found {type(ckpt).__name__}")
    return {k.removeprefix("module."): v for k, v in ckpt.items()}, found


def _timm_folder_fields(hub: dict) -> dict[str, Any]:
    """Fields from a timm Hub config.json: architecture name, model_args, pretrained_cfg, label_names."""
    args = hub.get("model_args") or {}
    fields: dict[str, Any] = {}
    arch = str(hub.get("architecture", ""))
    match = re.match(r"vit_(tiny|small|base|large|huge)_patch", arch)
    if match:
        fields["heads"] = TIMM_HEADS[match.group(1)]
    for ours, theirs in (("heads", "num_heads"), ("global_pool", "global_pool"), ("image_size", "img_size"),
                         ("class_token", "class_token")):
        if theirs in args:
            fields[ours] = args[theirs]
    cfg = hub.get("pretrained_cfg") or {}
    channels = args.get("in_chans", 3)
    for key, value in _preprocessing(cfg, channels).items():
        fields.setdefault(key, value)  # model_args' img_size comes first
    if hub.get("label_names"):
        fields["labels"] = list(hub["label_names"])
    return fields


def _timm_config(state: dict[str, torch.Tensor], fields: dict[str, Any], where: str) -> ViTConfig:
    if "patch_embed.proj.weight" not in state or "pos_embed" not in state:
        raise InputError(f"{where}: expected a timm ViT state dict with patch_embed.proj.weight and pos_embed, "
                         f"found keys {', '.join(sorted(state)[:8])} …")
    if "reg_token" in state:
        raise InputError(f"{where}: expected a ViT without register tokens, found reg_token (unsupported)")
    width, channels, ph, pw = state["patch_embed.proj.weight"].shape
    if ph != pw:
        raise InputError(f"{where}: expected square patches, found {ph}x{pw}")
    class_token = "cls_token" in state
    prefix = int(class_token)
    n = state["pos_embed"].shape[-2] - prefix
    if "image_size" not in fields:
        side = math.isqrt(n)
        if side * side != n:
            raise InputError(f"{where}: expected a square grid of {n} positions, found none; pass image_size=(h, w)")
        fields["image_size"] = side * ph
    size = (fields["image_size"],) * 2 if isinstance(fields["image_size"], int) else tuple(fields["image_size"])
    if (size[0] // ph) * (size[1] // pw) != n:
        raise InputError(f"{where}: expected {prefix} + {(size[0] // ph) * (size[1] // pw)} positions for "
                         f"{size[0]}x{size[1]} images (the class token's own position row included), found "
                         f"{state['pos_embed'].shape[-2]} (no_embed_class layouts are unsupported)")
    fc_norm = "fc_norm.weight" in state
    if not fc_norm and "norm.weight" not in state:
        raise InputError(f"{where}: expected a final norm (norm or fc_norm), found neither")
    if width % 64 and "heads" not in fields:
        raise InputError(f"{where}: expected width divisible by 64 to infer heads (timm's head size 64), found "
                         f"{width}; pass heads=")
    depth = sum(1 for k in state if re.fullmatch(r"blocks\.\d+\.norm1\.weight", k))
    defaults = dict(
        patch_size=ph, in_channels=channels, width=width, depth=depth, heads=width // 64,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / width if depth else 4.0,
        qkv_bias="blocks.0.attn.qkv.bias" in state, class_token=class_token,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        global_pool="avg" if fc_norm or not class_token else "token", fc_norm=fc_norm,
        pre_norm="norm_pre.weight" in state, layer_scale=1e-5 if "blocks.0.ls1.gamma" in state else None,
        resize="shorter", crop_pct=0.9, interpolation="bicubic")
    fields = {**defaults, **fields, "image_size": size}
    try:
        return ViTConfig(**fields)
    except TypeError as e:
        raise InputError(f"overrides: expected ViTConfig fields, found {e}") from None


# ------------------------------------------------------------------------------ Hugging Face
def from_huggingface(folder: str | os.PathLike, *, dtype: torch.dtype | str = torch.float32, **overrides) -> ViT:
    """A transformers ``ViTForImageClassification`` (or ``ViTModel``: no classifier) folder, with the
    preprocessing of its ``preprocessor_config.json`` when present. ``overrides``: ViTConfig fields."""
    folder = Path(folder).expanduser()
    hf = hf_config(folder, "vit", "ViT")
    where = str(folder)
    if hf.get("hidden_act", "gelu") != "gelu":
        raise InputError(f"{folder / CONFIG_NAME}: expected hidden_act 'gelu' (exact), found {hf['hidden_act']!r}")
    tensors = {k.removeprefix("vit."): v for k, v in hf_tensors(folder).items()}
    tensors = {_hf_legacy_name(k): v for k, v in tensors.items()}
    width, heads = hf["hidden_size"], hf["num_attention_heads"]
    id2label = hf.get("id2label") or {}
    num_classes = tensors["classifier.weight"].shape[0] if "classifier.weight" in tensors else 0
    labels = [str(id2label.get(str(i), i)) for i in range(num_classes)] if id2label and num_classes else None
    channels = hf.get("num_channels", 3)
    fields: dict[str, Any] = dict(
        image_size=hf.get("image_size", 224), patch_size=hf.get("patch_size", 16), in_channels=channels,
        num_classes=num_classes, width=width, depth=hf["num_hidden_layers"], heads=heads,
        mlp_ratio=hf.get("intermediate_size", 4 * width) / width, qkv_bias=hf.get("qkv_bias", True),
        norm_eps=hf.get("layer_norm_eps", 1e-12), pos_embed_antialias=False, labels=labels)
    fields.update(_hf_preprocessing(folder, channels))
    config = ViTConfig(**{**fields, **overrides})

    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in tensors:
            raise InputError(f"{where}: expected a tensor named {name!r}, found none")
        used.add(name)
        return tensors[name]

    state = {"cls_token": take("embeddings.cls_token"), "pos_embed": take("embeddings.position_embeddings"),
             "patch_embed.proj.weight": take("embeddings.patch_embeddings.projection.weight"),
             "patch_embed.proj.bias": take("embeddings.patch_embeddings.projection.bias"),
             "transformer.norm.weight": take("layernorm.weight"), "transformer.norm.bias": take("layernorm.bias")}
    for i in range(config.depth):
        p, q = f"encoder.layer.{i}", f"transformer.blocks.{i}"
        attn = f"{p}.attention.attention"
        state[f"{q}.attn.qkv.weight"] = torch.cat([take(f"{attn}.{x}.weight") for x in ("query", "key", "value")])
        if config.qkv_bias:
            state[f"{q}.attn.qkv.bias"] = torch.cat([take(f"{attn}.{x}.bias") for x in ("query", "key", "value")])
        for ours, theirs in (("attn.out", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
                             ("mlp.fc2", "output.dense"), ("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            for kind in ("weight", "bias"):
                state[f"{q}.{ours}.{kind}"] = take(f"{p}.{theirs}.{kind}")
    if num_classes:
        state["head.weight"], state["head.bias"] = take("classifier.weight"), take("classifier.bias")
    # ViTModel's pooler (dense + tanh on the class token) is not part of the classifier: left out.
    left = sorted(k for k in tensors if k not in used and not k.startswith("pooler."))
    if left:
        raise InputError(f"{where}: expected only ViT weights, found unexpected tensors "
                         f"{', '.join(left[:10])}{' …' if len(left) > 10 else ''}")
    return _build(config, state, dtype, where)


def _hf_legacy_name(name: str) -> str:
    """transformers 5's in-memory names -> the names its files (and the Hub's) use."""
    m = re.match(r"layers\.(\d+)\.(.*)", name)
    if not m:
        return name
    i, rest = m.groups()
    for new, old in (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                     ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                     ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")):
        if rest.startswith(new + "."):
            rest = old + rest[len(new):]
    return f"encoder.layer.{i}.{rest}"


def _hf_preprocessing(folder: Path, channels: int) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    pre = read_json(path)
    out: dict[str, Any] = {"resize": "squash"}
    for ours, theirs in (("image_mean", "image_mean"), ("image_std", "image_std")):
        if isinstance(pre.get(theirs), list) and len(pre[theirs]) == channels:
            out[ours] = tuple(float(v) for v in pre[theirs])
    if pre.get("resample") in PIL_RESAMPLE:
        out["interpolation"] = PIL_RESAMPLE[pre["resample"]]
    return out


# ----------------------------------------------------------------------------- any, by contents
def load_vit(path_or_name: str | os.PathLike, *, dtype: torch.dtype | str = torch.float32,
             device: str | torch.device = "cpu") -> ViT:
    """A ViT from our checkpoint folder, a Hugging Face ViT folder, a timm folder or weights file, or
    the name of one of our checkpoints (``multimodal.paths``)."""
    path = resolve_model(path_or_name)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        config = read_json(path / CONFIG_NAME)
        if "width" in config and "patch_size" in config and (path / WEIGHTS_NAME).is_file():
            return ViT.from_pretrained(path, device=device, dtype=parse_dtype(dtype))
        if config.get("model_type") == "vit":
            return from_huggingface(path, dtype=dtype).to(device)
        if "architecture" in config:
            return from_timm(path, dtype=dtype).to(device)
    elif path.is_file() and path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        return from_timm(path, dtype=dtype).to(device)
    raise InputError(f"{path}: expected a ViT checkpoint folder, a Hugging Face ViT folder, a timm folder or a "
                     f"timm weights file (.safetensors, .pt, .pth, .bin), found none of these")
