"""DiT weights from diffusers' class-conditional ``DiTTransformer2DModel`` (a model object, or a folder:
the transformer's own, or a pipeline folder with a ``transformer/`` subfolder).

diffusers keeps q, k and v apart (fused here into the backbone's ``qkv``), gives every block its own
timestep and label embedders (``norm1.emb``; the final layer reads block 0's), computes its timestep
sinusoids with frequencies ``exp(-ln(10^4) i / 127)`` rather than DiT's ``/ 128``, and normalises
before the MLP with eps ``norm_eps`` (1e-5 by default; 1e-6 elsewhere). ``DiTConfig`` has a flag for
each. When all blocks' embedders are equal, as in checkpoints converted from facebookresearch/DiT,
they are stored once (``embedder_per_block=False``). Its 2-D sin-cos position table is not in the
state dict and equals ours at the trained size. The label table has ``num_embeds_ada_norm + 1`` rows,
the last one the null class, as ours.

Nothing is unpickled (safetensors, or ``torch.load(..., weights_only=True)``) and nothing downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..backbone import sinusoids_2d
from ..checkpoint import check_state_dict, load_tensors
from ..errors import InputError
from ..models.dit import DiT, DiTConfig
from ..devices import parse_dtype
from .common import read_json, torch_load

DIFFUSERS_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def from_diffusers(source, *, dtype: torch.dtype | str = torch.float32) -> DiT:
    """A diffusers ``DiTTransformer2DModel``, or a folder holding one's ``config.json`` and
    ``diffusion_pytorch_model.safetensors`` (``.bin`` read with weights_only)."""
    if isinstance(source, torch.nn.Module):
        if type(source).__name__ not in DIFFUSERS_CLASSES or not hasattr(source, "config"):
            raise InputError(f"source: expected a diffusers DiTTransformer2DModel, found {type(source).__name__}")
        config, state, where = dict(source.config), source.state_dict(), "diffusers model"
    elif isinstance(source, (str, os.PathLike)):
        config, state, where = _folder(Path(source).expanduser())
    else:
        raise InputError(f"source: expected a diffusers DiTTransformer2DModel or a folder, found {type(source).__name__}")
    return _convert(config, state, parse_dtype(dtype), where)


def _folder(path: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    if not path.is_dir():
        raise InputError(f"{path}: expected a diffusers model folder, found {'a file' if path.exists() else 'nothing'}")
    if not (path / "config.json").is_file() and (path / "transformer" / "config.json").is_file():
        path = path / "transformer"  # a pipeline folder
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: expected a diffusers DiT folder with config.json, found none")
    config = read_json(path / "config.json")
    if config.get("_class_name") not in DIFFUSERS_CLASSES:
        raise InputError(f"{path / 'config.json'}: expected _class_name DiTTransformer2DModel, "
                         f"found {config.get('_class_name')!r}")
    for name in DIFFUSERS_WEIGHTS:
        if (path / name).is_file():
            state = load_tensors(path / name) if name.endswith(".safetensors") else torch_load(path / name)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise InputError(f"{path / name}: expected a dict of tensors, found {type(state).__name__}")
            return config, state, str(path / name)
    raise InputError(f"{path}: expected diffusers weights ({', '.join(DIFFUSERS_WEIGHTS)}), found none")


def _config(cfg: dict, state: dict[str, torch.Tensor], where: str) -> DiTConfig:
    unsupported = [f"{key}={cfg.get(key)!r}" for key, ok in (
        ("norm_type", cfg.get("norm_type", "ada_norm_zero") == "ada_norm_zero"),
        ("activation_fn", cfg.get("activation_fn", "gelu-approximate") == "gelu-approximate"),
        ("norm_elementwise_affine", not cfg.get("norm_elementwise_affine", False)),
        ("attention_bias", cfg.get("attention_bias", True)),
        ("num_embeds_ada_norm", cfg.get("num_embeds_ada_norm"))) if not ok]
    if unsupported:
        raise InputError(f"{where}: expected a class-conditional DiT (ada_norm_zero, gelu-approximate, no norm "
                         f"affine, attention bias), found {', '.join(unsupported)}")
    if "pos_embed.proj.weight" not in state or "proj_out_2.weight" not in state:
        raise InputError(f"{where}: expected DiT weights with pos_embed.proj and proj_out_2, found keys "
                         f"{', '.join(sorted(state)[:8])} …")
    width, in_channels, p, _ = state["pos_embed.proj.weight"].shape
    heads = cfg.get("num_attention_heads", 16)
    depth = sum(1 for k in state if re.fullmatch(r"transformer_blocks\.\d+\.norm1\.linear\.weight", k))
    out_channels = state["proj_out_2.weight"].shape[0] // (p * p)
    hidden = state["transformer_blocks.0.ff.net.0.proj.weight"].shape[0] if depth else 4 * width
    return DiTConfig(
        input_size=cfg.get("sample_size", 32), patch_size=p, in_channels=in_channels, out_channels=out_channels,
        learn_sigma=out_channels == 2 * in_channels, width=width, depth=depth, heads=heads,
        mlp_ratio=hidden / width, num_classes=cfg["num_embeds_ada_norm"], class_dropout_prob=0.1,
        embedder_per_block=not _embedders_equal(state, depth), timestep_freq_shift=1.0,
        mlp_norm_eps=cfg.get("norm_eps", 1e-5))


def _embedders_equal(state: dict[str, torch.Tensor], depth: int) -> bool:
    names = [k.removeprefix("transformer_blocks.0.norm1.emb.") for k in state
             if k.startswith("transformer_blocks.0.norm1.emb.")]
    return all(torch.equal(state[f"transformer_blocks.{i}.norm1.emb.{n}"], state[f"transformer_blocks.0.norm1.emb.{n}"])
               for i in range(1, depth) for n in names)


EMBEDDER = {"timestep_embedder.linear_1": "time.fc1", "timestep_embedder.linear_2": "time.fc2",
            "class_embedder.embedding_table": "label"}
BLOCK = {"norm1.linear": "ada.1", "attn1.to_out.0": "attn.out", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2"}
TOP = {"pos_embed.proj": "patch_embed.proj", "proj_out_1": "final.ada.1", "proj_out_2": "final.linear"}


def _convert(cfg: dict, state: dict[str, torch.Tensor], dtype: torch.dtype, where: str) -> DiT:
    config = _config(cfg, state, where)
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        module, _, leaf = name.rpartition(".")
        if module in TOP:
            ours[f"{TOP[module]}.{leaf}"] = tensor
            continue
        m = re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", module)
        if m is None:
            ours[name] = tensor  # unexpected: reported by check_state_dict
            continue
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith("norm1.emb."):
            sub = rest.removeprefix("norm1.emb.")
            if config.embedder_per_block or i == 0:
                ours[f"embedders.{i}.{EMBEDDER.get(sub, sub)}.{leaf}"] = tensor
        elif rest in BLOCK:
            ours[f"transformer.blocks.{i}.{BLOCK[rest]}.{leaf}"] = tensor
        elif rest in ("attn1.to_q", "attn1.to_k", "attn1.to_v"):
            if rest == "attn1.to_q":
                parts = [state[f"transformer_blocks.{i}.attn1.to_{x}.{leaf}"] for x in "qkv"]
                ours[f"transformer.blocks.{i}.attn.qkv.{leaf}"] = torch.cat(parts)
        else:
            ours[name] = tensor
    with torch.device("meta"):
        model = DiT(config)
    # The fixed 2-D position table is not in diffusers' state dict; ours is computed from the config.
    ours["transformer.pos_embed"] = sinusoids_2d(*config.grid, config.width)
    check_state_dict(model, ours, where)
    model.load_state_dict({k: v.to(dtype).contiguous() for k, v in ours.items()}, strict=True, assign=True)
    return model.eval()
