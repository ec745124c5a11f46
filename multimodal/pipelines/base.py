"""What every pipeline shares: loading by name or path, devices and dtypes, progress bars, and
input validation before any work is done.

Every pipeline takes LoRA adapters (``multimodal.lora``, peft's format) on its ``model``:
``load_lora(folder, adapter_name=..., scale=...)``, ``set_lora`` to switch or scale them,
``unload_lora``, and ``merge_lora`` / ``unmerge_lora`` to fold them into the weights. An adapter
folder given to ``from_pretrained`` loads the base model its ``adapter_config.json`` names, then the
adapter.

A pipeline subclass implements three methods:

- ``_load(folder)``, a classmethod that builds the pipeline from a checkpoint folder;
- ``validate(*args, **kwargs)``, which raises ``InputError`` for bad input (the default accepts all);
- ``_run(*args, **kwargs)``, the work itself, returning PIL images, numpy arrays or dicts.

``pipe(...)`` calls ``validate`` and then ``_run`` under ``torch.no_grad()``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import lora
from ..devices import default_device, parse_device, parse_dtype
from ..errors import InputError, check_seed
from ..paths import checkpoint_dirs, resolve_model


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text_list(value, name: str, what: str, *, empty_ok: bool = False, hint: str = "") -> list[str]:
    """``value`` (a string or a non-empty list of strings) as a list, or an InputError naming ``name``
    (``name[i]`` for an item; ``hint`` follows "expected a string"): an empty string is refused, as not
    ``what`` the pipeline needs, unless ``empty_ok``."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)) or not texts:
        raise InputError(f"{name}: expected a string or a non-empty list of strings, found "
                         f"{'an empty list' if isinstance(texts, (list, tuple)) else type(value).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"{name}[{i}]: expected a string{hint}, found {type(t).__name__}")
        if not empty_ok and not t.strip():
            raise InputError(f"{name}[{i}]: expected {what}, found an empty {name}")
    return list(texts)


def check_generators(generator, total: int, unit: str) -> None:
    """InputError unless ``generator`` is None, a torch.Generator, an integer seed, or a list of
    ``total`` of them (one per ``unit`` of the call)."""
    gens = generator if isinstance(generator, list) else [generator]
    if not all(g is None or isinstance(g, torch.Generator) or is_int(g) for g in gens):
        raise InputError(f"generator: expected a torch.Generator, an integer seed, a list of them (one per {unit}) "
                         f"or None, found {type(generator).__name__}")
    for i, g in enumerate(gens):
        if is_int(g):
            check_seed(g, f"generator[{i}]" if isinstance(generator, list) else "generator")
    if isinstance(generator, list) and len(generator) != total:
        raise InputError(f"generator: expected one generator per {unit} ({total}), found {len(generator)}")


def as_generators(generator):
    """A checked ``generator`` argument with its integer seeds made into torch.Generators."""
    if isinstance(generator, list):
        return [torch.Generator().manual_seed(g) if is_int(g) else g for g in generator]
    return torch.Generator().manual_seed(generator) if is_int(generator) else generator


def _adapter_folder(path_or_name) -> Path | None:
    """The LoRA adapter folder (adapter_config.json, no config.json) a path or checkpoint name
    points at, or None."""
    if not isinstance(path_or_name, (str, Path)) or not str(path_or_name):
        return None
    path = Path(path_or_name).expanduser()
    candidates = [path] + ([d / path.name for d in checkpoint_dirs()] if str(path) == path.name else [])
    return next((folder for folder in candidates if lora.adapter_base(folder) is not None), None)


class Pipeline:
    """Base class of the task pipelines; see the module docstring for what a subclass implements."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._progress_bar_config: dict = {}
        self.name_or_path: str | None = None  # what from_pretrained was given: the base an adapter must name

    # ---------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> Pipeline:
        """Load from a checkpoint folder, or a checkpoint's name (see ``multimodal.paths``), onto
        ``device`` (default: CUDA when present, else the CPU). A LoRA adapter folder loads its base
        model (``base_model_name_or_path`` of its adapter_config.json), then the adapter."""
        folder = _adapter_folder(path_or_name)
        if folder is not None:
            pipe = cls.from_pretrained(lora.adapter_base(folder), device=device, dtype=dtype)
            pipe.load_lora(folder)
            return pipe
        pipe = cls._load(cls._resolve(path_or_name))
        pipe.name_or_path = str(path_or_name)
        return pipe.to(default_device() if device is None else device, dtype)

    @classmethod
    def _resolve(cls, path_or_name: str | Path) -> Path:
        """The checkpoint folder (or file) for a path or name: ``multimodal.paths.resolve_model``, which a
        pipeline whose models also live elsewhere extends."""
        return resolve_model(path_or_name)

    @classmethod
    def _load(cls, folder: Path) -> Pipeline:
        raise NotImplementedError(f"{cls.__name__} does not implement _load(folder)")

    # ------------------------------------------------------------------------- devices, dtypes
    def modules(self) -> dict[str, nn.Module]:
        """The pipeline's models: every ``nn.Module`` attribute."""
        return {name: value for name, value in vars(self).items() if isinstance(value, nn.Module)}

    def to(self, device: str | torch.device | torch.dtype | None = None,
           dtype: str | torch.dtype | None = None) -> Pipeline:
        """Move every model to ``device`` and cast its floating-point weights to ``dtype``.

        Like diffusers, ``pipe.to(torch.float16)`` casts only. Returns the pipeline itself.
        """
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        device = self.device if device is None else parse_device(device)
        dtype = self.dtype if dtype is None else parse_dtype(dtype)
        for module in self.modules().values():
            module.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self

    # ----------------------------------------------------------------------------------- LoRA
    def _adapted(self) -> nn.Module:
        model = getattr(self, "model", None)
        if not isinstance(model, nn.Module):
            raise InputError(f"adapter: {type(self).__name__} has no model to adapt")
        return model

    def load_lora(self, path: str | Path, adapter_name: str = "default", scale: float = 1.0) -> list[str]:
        """Load the LoRA adapter folder ``path`` (peft's format) as ``adapter_name`` and make it the
        only active adapter, scaled by ``scale``. An adapter made for another model (its base name or
        its shapes differ), a missing or corrupt file, or a name already loaded is an ``InputError``;
        the pipeline is then unchanged. Returns the module names it adapts."""
        model = self._adapted()
        names = lora.load_lora(model, path, adapter_name, scale=scale, base=self.name_or_path)
        model.to(self.device)  # the new adapter weights stay float32: LoraLinear runs them so
        return names

    def set_lora(self, adapter_names: str | list[str] | None, scale: float | list[float] | None = None) -> None:
        """Make ``adapter_names`` the active adapters (None: the base model alone), with a scale each."""
        lora.set_lora(self._adapted(), adapter_names, scale)

    def unload_lora(self, adapter_names: str | list[str] | None = None) -> None:
        """Drop adapters (default: all); with none left the model is the base model again."""
        model = self._adapted()
        if lora.adapters(model):
            lora.remove_lora(model, adapter_names)
        elif adapter_names is not None:
            lora.set_lora(model, adapter_names)  # the usual error: not loaded

    def merge_lora(self) -> None:
        """Fold the active adapters into the weights (faster; ``unmerge_lora`` restores them exactly)."""
        lora.merge_lora(self._adapted())

    def unmerge_lora(self) -> None:
        lora.unmerge_lora(self._adapted())

    @property
    def adapters(self) -> list[str]:
        """The names of the loaded LoRA adapters."""
        model = getattr(self, "model", None)
        return lora.adapters(model) if isinstance(model, nn.Module) else []

    # ------------------------------------------------------------------------------ progress
    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm options for this pipeline's progress bars; ``disable=True`` hides them."""
        self._progress_bar_config = kwargs

    def progress(self, iterable=None, total: int | None = None, desc: str | None = None) -> tqdm:
        """A progress bar over the pipeline's steps; each step also checks this thread's
        ``time_limit``."""
        return _TimedBar(iterable, **{"total": total, "desc": desc, **self._progress_bar_config})

    # -------------------------------------------------------------------------------- calling
    def validate(self, *args, **kwargs) -> None:
        """Raise ``InputError`` for bad input, before any work is done."""

    def _run(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement _run(...)")

    def __call__(self, *args, **kwargs):
        self.validate(*args, **kwargs)
        with torch.no_grad():
            return self._run(*args, **kwargs)


# ------------------------------------------------------------------------------- time limits
_LIMIT = threading.local()


@contextlib.contextmanager
def time_limit(seconds: float | None, advice: str = "ask for less work"):
    """Within the block, pipeline work in this thread stops with an ``InputError`` once ``seconds``
    have passed (None: no limit). The check runs at every step of a pipeline's progress (a diffusion
    step, a generated token, a transcribed window), so the step under way finishes first. The app
    wraps each request in one; ``advice`` ends the message (what to ask for instead)."""
    previous = getattr(_LIMIT, "deadline", None)
    _LIMIT.deadline = None if seconds is None else (time.monotonic() + seconds, seconds, advice)
    try:
        yield
    finally:
        _LIMIT.deadline = previous


def check_time_limit() -> None:
    """Raise ``InputError`` when this thread's ``time_limit`` has passed."""
    deadline = getattr(_LIMIT, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        raise InputError(f"time limit: this request was stopped after {deadline[1]:g} s, its limit; {deadline[2]}")


class _TimedBar(tqdm):
    """tqdm that checks ``time_limit`` at every step."""

    def update(self, n=1):
        check_time_limit()
        return super().update(n)

    def __iter__(self):
        for item in super().__iter__():
            check_time_limit()
            yield item
