"""What every pipeline shares: loading by name or path, devices and dtypes, progress bars, and
input validation before any work is done.

A pipeline subclass implements three methods:

- ``_load(folder)``, a classmethod that builds the pipeline from a checkpoint folder;
- ``validate(*args, **kwargs)``, which raises ``InputError`` for bad input (the default accepts all);
- ``_run(*args, **kwargs)``, the work itself, returning PIL images, numpy arrays or dicts.

``pipe(...)`` calls ``validate`` and then ``_run`` under ``torch.no_grad()``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..devices import default_device, parse_device, parse_dtype
from ..paths import resolve_model

class Pipeline:
    """Base class of the task pipelines; see the module docstring for what a subclass implements."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._progress_bar_config: dict = {}

    # ---------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> Pipeline:
        """Load from a checkpoint folder, or a checkpoint's name (see ``multimodal.paths``), onto
        ``device`` (default: CUDA when present, else the CPU)."""
        pipe = cls._load(cls._resolve(path_or_name))
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

    # ------------------------------------------------------------------------------ progress
    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm options for this pipeline's progress bars; ``disable=True`` hides them."""
        self._progress_bar_config = kwargs

    def progress(self, iterable=None, total: int | None = None, desc: str | None = None) -> tqdm:
        return tqdm(iterable, **{"total": total, "desc": desc, **self._progress_bar_config})

    # -------------------------------------------------------------------------------- calling
    def validate(self, *args, **kwargs) -> None:
        """Raise ``InputError`` for bad input, before any work is done."""

    def _run(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement _run(...)")

    def __call__(self, *args, **kwargs):
        self.validate(*args, **kwargs)
        with torch.no_grad():
            return self._run(*args, **kwargs)
