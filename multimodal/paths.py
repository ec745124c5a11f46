"""Where checkpoints and built data live, and how a model name becomes a checkpoint folder.

Shipped checkpoints are folders under the repository's ``checkpoints/``; models trained or built
locally go under ``<cache>/checkpoints/``. The cache defaults to ``~/.cache/multimodal`` and moves
with the ``MULTIMODAL_CACHE`` environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def cache_dir() -> Path:
    """The cache folder: ``$MULTIMODAL_CACHE``, else ``~/.cache/multimodal``. Not created here."""
    return Path(os.environ.get("MULTIMODAL_CACHE") or "~/.cache/multimodal").expanduser()


def checkpoint_dirs() -> list[Path]:
    """The folders searched for a checkpoint by name, in order."""
    return [SHIPPED_CHECKPOINTS, cache_dir() / "checkpoints"]


def available_models() -> list[str]:
    """Names of the checkpoint folders found in ``checkpoint_dirs()``."""
    return sorted({p.name for folder in checkpoint_dirs() if folder.is_dir()
                   for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")})


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """An existing path as given; else the folder of that name in ``checkpoint_dirs()``."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise InputError(f"model: expected a checkpoint folder or the name of one, found {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if path.name == str(name_or_path):  # a bare name, not a path: never look outside the folders
        for folder in checkpoint_dirs():
            if (folder / path.name).is_dir():
                return folder / path.name
    where = " or ".join(str(d) for d in checkpoint_dirs())
    models = ", ".join(available_models()) or "none yet"
    raise InputError(f"model: expected a checkpoint folder, or the name of one in {where} "
                     f"(available: {models}), found {str(name_or_path)!r}, which does not exist")
