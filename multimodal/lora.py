"""LoRA adapters on the backbone's Linear layers, saved and loaded in Hugging Face peft's format.

A LoRA adapter adds a low-rank update to a frozen Linear: ``y = W x + b + (alpha / r) * B A x``, with
``A`` [r, in] drawn like a Linear's weight and ``B`` [out, r] zero, so a fresh adapter changes nothing.
``add_lora`` wraps the chosen Linears of a model in ``LoraLinear`` (attention projections, MLP, or
both: ``target``), which holds any number of named adapters; ``set_lora`` picks the active ones and
their scales, ``merge_lora`` folds them into the weights (``unload=True`` gives back plain Linears: a
full checkpoint), ``unmerge_lora`` restores the weights exactly, ``remove_lora`` drops adapters.

On disk an adapter is what ``peft`` writes and reads: ``adapter_config.json`` (``peft_type`` LORA,
``r``, ``lora_alpha``, ``target_modules``, ``base_model_name_or_path``) and
``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight`` / ``lora_B``.
``peft.PeftModel.from_pretrained(model, folder)`` loads our adapters into our models, and
``load_lora`` loads adapters that peft saved for them.

The layer is ours rather than peft's: importing peft costs several seconds and brings transformers
and accelerate into every install (``python -m benchmarks.lora`` measures both), while
the arithmetic is a few lines. The module layout mirrors peft's (``base_layer``, ``lora_A`` /
``lora_B`` dictionaries keyed by adapter name), so state dicts translate one to one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from .backbone import MLP, Attention
from .checkpoint import load_tensors, save_tensors
from .errors import InputError
from .paths import checkpoint_dirs

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
TARGETS = ("attn", "mlp", "all")
_PEFT_PREFIX = "base_model.model."
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base_layer``) plus named low-rank adapters.

    ``weight`` and ``bias`` are the base layer's, so code that reads a projection's bias (attention's
    key-bias handling) sees the Linear it wraps. Adapters run in float32 whatever the base dtype."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.scaling: dict[str, float] = {}  # alpha / r of each adapter
        self.scale: dict[str, float] = {}    # the user's multiplier of each adapter (load_lora's scale)
        self.active: list[str] = []
        self.merged: list[str] = []
        self._unmerged: torch.Tensor | None = None  # the base weight before merging, restored exactly

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def add(self, name: str, r: int, alpha: float, generator: torch.Generator | None = None) -> None:
        out_features, in_features = self.base_layer.weight.shape
        a = nn.Linear(in_features, r, bias=False, device=self.weight.device)
        b = nn.Linear(r, out_features, bias=False, device=self.weight.device)
        bound = 1 / math.sqrt(in_features)  # what kaiming_uniform_(a=sqrt(5)) gives a Linear
        with torch.no_grad():
            a.weight.uniform_(-bound, bound, generator=generator)
            b.weight.zero_()
        self.lora_A[name], self.lora_B[name] = a, b
        self.scaling[name], self.scale[name] = alpha / r, 1.0

    def delta(self, name: str) -> torch.Tensor:
        """The adapter's update of the weight, ``scale * alpha / r * B @ A`` [out, in], float32."""
        return (self.lora_B[name].weight @ self.lora_A[name].weight) * (self.scaling[name] * self.scale[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        for name in self.active:
            if name in self.merged:
                continue
            a, b = self.lora_A[name], self.lora_B[name]
            update = b(a(x.to(a.weight.dtype))) * (self.scaling[name] * self.scale[name])
            y = y + update.to(y.dtype)
        return y

    def merge(self) -> None:
        with torch.no_grad():
            todo = [n for n in self.active if n not in self.merged]
            if not todo:
                return
            if not self.merged:
                self._unmerged = self.base_layer.weight.detach().clone()
            total = sum(self.delta(n) for n in todo)
            self.base_layer.weight += total.to(self.base_layer.weight.dtype)
            self.merged += todo

    def unmerge(self) -> None:
        if self._unmerged is not None:
            with torch.no_grad():
                self.base_layer.weight.copy_(self._unmerged)
        self._unmerged, self.merged = None, []


# ------------------------------------------------------------------------------------ choosing layers
def lora_targets(model: nn.Module, target: str | Sequence[str] = "attn") -> list[str]:
    """Names of the Linears an adapter of ``target`` covers: ``"attn"`` every attention projection
    (fused q/k/v or q and k/v, and the output), ``"mlp"`` every MLP's two layers, ``"all"`` both; or
    an explicit list of module names."""
    if not isinstance(target, str):
        names = list(target)
        modules = dict(model.named_modules())
        bad = [n for n in names if not isinstance(modules.get(n), (nn.Linear, LoraLinear))]
        if not names or bad:
            raise InputError(f"target: expected names of Linear layers of the model, found {bad or names!r}")
        return names
    if target not in TARGETS:
        raise InputError(f"target: expected one of {', '.join(TARGETS)} or a list of module names, found {target!r}")
    kinds = (Attention,) if target == "attn" else (MLP,) if target == "mlp" else (Attention, MLP)
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, kinds):
            names += [f"{prefix}.{child}" if prefix else child for child, m in module.named_children()
                      if isinstance(m, (nn.Linear, LoraLinear))]
    if not names:
        raise InputError(f"target: the model has no {target} Linear layers of the shared backbone")
    return names


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"adapter name: expected letters, digits, '_' or '-', found {name!r}")
    return name


def _check_loaded(model: nn.Module, names: Sequence[str]) -> None:
    known = adapters(model)
    for n in names:
        if n not in known:
            raise InputError(f"adapter name: {n!r} is not loaded (loaded: {', '.join(known) or 'none'})")


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}


def adapters(model: nn.Module) -> list[str]:
    """The names of the adapters in ``model``, in the order they were added."""
    return list(dict.fromkeys(n for layer in lora_layers(model).values() for n in layer.lora_A))


def active_adapters(model: nn.Module) -> list[str]:
    """The names of the adapters active in ``model`` (``set_lora``), in the order they were added."""
    return list(dict.fromkeys(n for layer in lora_layers(model).values() for n in layer.active))


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def add_lora(model: nn.Module, name: str = "default", *, r: int = 8, alpha: float = 16.0,
             target: str | Sequence[str] = "attn", seed: int | None = 0) -> list[str]:
    """Add a fresh adapter ``name`` (rank ``r``, scaling ``alpha / r``) to the ``target`` Linears of
    ``model`` and make it the only active one; the model's output is unchanged until it trains.
    Returns the module names it covers."""
    _check_name(name)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(f"rank: expected an int >= 1, found {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise InputError(f"alpha: expected a finite number > 0, found {alpha!r}")
    if name in adapters(model):
        raise InputError(f"adapter name: {name!r} is already loaded (remove_lora it first)")
    names = lora_targets(model, target)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for module_name in names:
        layer = model.get_submodule(module_name)
        if not isinstance(layer, LoraLinear):
            layer = LoraLinear(layer)
            _set_module(model, module_name, layer)
        layer.add(name, r, float(alpha), generator)
    set_lora(model, [name])
    return names


def set_lora(model: nn.Module, names: str | Iterable[str] | None, scale: float | Sequence[float] | None = None) -> None:
    """Make ``names`` the active adapters (None or []: none, the base model), with an optional scale
    each (one number for all). Merged adapters must be unmerged first."""
    names = [] if names is None else [names] if isinstance(names, str) else list(names)
    _check_loaded(model, names)
    layers = lora_layers(model).values()
    if any(layer.merged for layer in layers):
        raise InputError("adapters: merged into the weights; unmerge_lora before switching")
    scales = [scale] * len(names) if scale is None or isinstance(scale, (int, float)) else list(scale)
    if len(scales) != len(names) or any(s is not None and (isinstance(s, bool) or not math.isfinite(s))
                                        for s in scales):
        raise InputError(f"scale: expected one finite number or one per adapter, found {scale!r}")
    for layer in layers:
        layer.active = [n for n in names if n in layer.lora_A]
        for n, s in zip(names, scales):
            if s is not None and n in layer.scale:
                layer.scale[n] = float(s)


def merge_lora(model: nn.Module, unload: bool = False) -> nn.Module:
    """Fold the active adapters into the base weights (``unmerge_lora`` restores them exactly). With
    ``unload``, replace every wrapped layer by its plain Linear (adapters dropped): a full model."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        if unload:
            _set_module(model, name, layer.base_layer)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


def remove_lora(model: nn.Module, names: str | Iterable[str] | None = None) -> nn.Module:
    """Drop adapters ``names`` (default: all). Layers left with no adapter become plain Linears again,
    so the model's state dict is the base model's."""
    names = adapters(model) if names is None else [names] if isinstance(names, str) else list(names)
    _check_loaded(model, names)
    for module_name, layer in lora_layers(model).items():
        if layer.merged:
            raise InputError("adapters: merged into the weights; unmerge_lora before removing")
        for n in names:
            if n in layer.lora_A:
                del layer.lora_A[n], layer.lora_B[n]
                layer.scaling.pop(n), layer.scale.pop(n)
        layer.active = [n for n in layer.active if n in layer.lora_A]
        if not len(layer.lora_A):
            _set_module(model, module_name, layer.base_layer)
    return model


def extract_lora(model: nn.Module, tuned: nn.Module, name: str = "default", *, r: int = 16,
                 target: str | Sequence[str] | None = None) -> dict:
    """Add to ``model`` an adapter ``name`` of rank ``r`` that approximates the fine-tuned ``tuned``
    (the same architecture): each target Linear gets the best rank-``r`` approximation of its weight
    change ``W_tuned - W_model`` (truncated SVD, ``B = U sqrt(S)``, ``A = sqrt(S) V^T``, alpha = r), so
    a full fine-tune becomes a small adapter. ``target``: as ``add_lora``'s; None, every Linear whose
    weight differs. The adapter is the only active one.

    Returns ``{"layers": {module: fraction of the change's energy (squared Frobenius norm) kept}, "kept":
    the fraction over all of them, "not_carried": names of other parameters that differ (embeddings,
    norms, biases), which an adapter of Linear weights cannot hold}``. Nothing changes on bad input."""
    _check_name(name)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(f"rank: expected an int >= 1, found {r!r}")
    if name in adapters(model):
        raise InputError(f"adapter name: {name!r} is already loaded (remove_lora it first)")
    if lora_layers(tuned):
        raise InputError("tuned: expected a model without adapters (merge_lora(..., unload=True) it first)")
    mine, theirs = dict(model.named_parameters()), dict(tuned.named_parameters())
    mine = {k.replace(".base_layer.", "."): v for k, v in mine.items() if ".lora_A." not in k and ".lora_B." not in k}
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise InputError("tuned: expected a fine-tune of the same architecture (parameter names or shapes differ)")
    differs = {k for k in mine if not torch.equal(mine[k].detach().float().cpu(), theirs[k].detach().float().cpu())}
    if target is None:
        modules = dict(tuned.named_modules())
        names = [k[: -len(".weight")] for k in sorted(differs)
                 if k.endswith(".weight") and isinstance(modules.get(k[: -len(".weight")]), nn.Linear)]
        if not names:
            raise InputError("tuned: no Linear layer's weight differs from the model's; nothing to extract")
    else:
        names = lora_targets(model, target)
    factors, kept = {}, {}
    total_kept = total = 0.0
    for module_name in names:
        delta = (theirs[f"{module_name}.weight"].detach().float().cpu()
                 - mine[f"{module_name}.weight"].detach().float().cpu())
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        k = min(r, s.numel())
        root = s[:k].sqrt()
        a, b = torch.zeros(r, delta.shape[1]), torch.zeros(delta.shape[0], r)
        a[:k], b[:, :k] = root[:, None] * vh[:k], u[:, :k] * root
        energy = float((s ** 2).sum())
        part = float((s[:k] ** 2).sum())
        kept[module_name] = part / energy if energy > 0 else 1.0
        total_kept, total = total_kept + part, total + energy
        factors[module_name] = (a, b)
    for module_name, (a, b) in factors.items():
        layer = model.get_submodule(module_name)
        if not isinstance(layer, LoraLinear):
            layer = LoraLinear(layer)
            _set_module(model, module_name, layer)
        layer.add(name, r, float(r))
        with torch.no_grad():
            layer.lora_A[name].weight.copy_(a)
            layer.lora_B[name].weight.copy_(b)
    set_lora(model, [name])
    carried = {f"{n}.weight" for n in names}
    return {"layers": kept, "kept": total_kept / total if total > 0 else 1.0,
            "not_carried": sorted(differs - carried)}


def mark_only_lora_trainable(model: nn.Module, name: str | None = None) -> list[nn.Parameter]:
    """Freeze everything but the adapters (``name``: only that one); returns the trainable parameters."""
    params = []
    for pname, p in model.named_parameters():
        is_lora = ".lora_A." in pname or ".lora_B." in pname
        p.requires_grad_(is_lora and (name is None or f".{name}." in pname))
        if p.requires_grad:
            params.append(p)
    return params


# -------------------------------------------------------------------------------------- peft format
def lora_state_dict(model: nn.Module, name: str = "default") -> dict[str, torch.Tensor]:
    """One adapter's weights under peft's keys (``base_model.model.<module>.lora_A.weight``)."""
    _check_loaded(model, [name])
    out = {}
    for module_name, layer in lora_layers(model).items():
        if name in layer.lora_A:
            for part in ("lora_A", "lora_B"):
                out[f"{_PEFT_PREFIX}{module_name}.{part}.weight"] = getattr(layer, part)[name].weight.detach().cpu()
    return out


def save_lora(model: nn.Module, folder: str | Path, name: str = "default", *, base: str | None = None,
              dtype: torch.dtype = torch.float32) -> Path:
    """Write adapter ``name`` as peft does: ``adapter_config.json`` + ``adapter_model.safetensors``.
    ``base``: the base model's name or path, recorded as ``base_model_name_or_path``; ``dtype``: the
    stored weights' (float32, or float16 / bfloat16 for half the size; loading casts back to float32)."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"dtype: expected torch.float32, float16 or bfloat16, found {dtype!r}")
    state = lora_state_dict(model, name)
    layers = {n: l for n, l in lora_layers(model).items() if name in l.lora_A}
    first = next(iter(layers.values()))
    r = first.lora_A[name].weight.shape[0]
    config = {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": base,
              "r": r, "lora_alpha": first.scaling[name] * r, "lora_dropout": 0.0, "bias": "none",
              "target_modules": sorted(layers), "fan_in_fan_out": False, "init_lora_weights": True,
              "use_rslora": False, "use_dora": False, "modules_to_save": None, "inference_mode": True}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / WEIGHTS_NAME, {k: v.to(dtype).contiguous() for k, v in state.items()})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_lora_config(folder: str | Path) -> dict:
    """The adapter_config.json of a peft LoRA folder, checked."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"adapter: expected a folder with {CONFIG_NAME}, found {str(folder)!r}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"adapter: {path} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise InputError(f"adapter: {path} is not a LoRA adapter config (peft_type {config.get('peft_type')!r})"
                         if isinstance(config, dict) else f"adapter: {path} is not a JSON object")
    for key in ("use_dora", "use_rslora", "fan_in_fan_out"):
        if config.get(key):
            raise InputError(f"adapter: {path} uses {key}, which this loader does not support")
    r, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise InputError(f"adapter: {path}: rank r expected an int >= 1, found {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise InputError(f"adapter: {path}: lora_alpha expected a number > 0, found {alpha!r}")
    return config


def adapter_base(folder: str | Path) -> str | None:
    """The base model an adapter folder names (``base_model_name_or_path``), or None when ``folder`` is
    not an adapter folder (no adapter_config.json, or a model's config.json beside it). An adapter that
    names no base is an InputError."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() or (folder / "config.json").is_file():
        return None
    base = read_lora_config(folder).get("base_model_name_or_path")
    if not base:
        raise InputError(f"adapter: {folder} names no base model (base_model_name_or_path); load the base, "
                         "then the adapter onto it")
    return str(base)


def available_adapters(*bases: str) -> list[str]:
    """Names of the adapter folders in ``checkpoint_dirs()`` made for one of ``bases`` (compared by
    the last part of ``base_model_name_or_path``): the adapters a task's default model can take."""
    names = {Path(b).name for b in bases}
    found = set()
    for folder in checkpoint_dirs():
        for path in sorted(folder.glob(f"*/{CONFIG_NAME}")) if folder.is_dir() else ():
            try:
                base = read_lora_config(path.parent).get("base_model_name_or_path")
            except InputError:
                continue
            if base and Path(str(base)).name in names:
                found.add(path.parent.name)
    return sorted(found)


def load_lora(model: nn.Module, folder: str | Path, name: str = "default", *, scale: float = 1.0,
              base: str | None = None) -> list[str]:
    """Load the peft LoRA adapter in ``folder`` into ``model`` as ``name`` and make it the only active
    adapter, scaled by ``scale``. ``base``: when given and the adapter names a base model, they must
    agree. Shapes and module names are checked before anything changes: on bad input the model is
    left as it was. Returns the module names the adapter covers."""
    _check_name(name)
    if name in adapters(model):
        raise InputError(f"adapter name: {name!r} is already loaded (remove_lora it first)")
    config = read_lora_config(folder)
    named = config.get("base_model_name_or_path")
    if base is not None and named and Path(str(named)).name != Path(str(base)).name:
        raise InputError(f"adapter: made for base model {named!r}, not {base!r}")
    state = load_tensors(Path(folder) / WEIGHTS_NAME)  # a missing or corrupt file: InputError naming it
    r, alpha = config["r"], float(config.get("lora_alpha", config["r"]))
    modules = dict(model.named_modules())
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = re.match(rf"^{re.escape(_PEFT_PREFIX)}(.+)\.(lora_A|lora_B)(?:\.{re.escape(name)}|\.default)?\.weight$", key)
        if not m:
            raise InputError(f"adapter: unexpected weight {key!r} in {WEIGHTS_NAME}")
        found.setdefault(m.group(1), {})[m.group(2)] = tensor
    if not found:
        raise InputError(f"adapter: {WEIGHTS_NAME} holds no LoRA weights")
    for module_name, parts in found.items():
        layer = modules.get(module_name)
        if not isinstance(layer, (nn.Linear, LoraLinear)):
            raise InputError(f"adapter: made for another model: it adapts {module_name!r}, which this model "
                             "does not have as a Linear layer")
        out_features, in_features = layer.weight.shape
        want = {"lora_A": (r, in_features), "lora_B": (out_features, r)}
        for part, shape in want.items():
            if part not in parts or tuple(parts[part].shape) != shape:
                got = tuple(parts[part].shape) if part in parts else "missing"
                raise InputError(f"adapter: made for another model: {module_name}.{part} expected shape {shape}, "
                                 f"found {got}")
    for module_name, parts in found.items():
        layer = model.get_submodule(module_name)
        if not isinstance(layer, LoraLinear):
            layer = LoraLinear(layer)
            _set_module(model, module_name, layer)
        layer.add(name, r, alpha)
        with torch.no_grad():
            layer.lora_A[name].weight.copy_(parts["lora_A"])
            layer.lora_B[name].weight.copy_(parts["lora_B"])
    set_lora(model, [name], scale)
    return list(found)
