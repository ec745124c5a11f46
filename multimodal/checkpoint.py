"""Checkpoints: atomic writes, safetensors without pickle, and ``save_pretrained`` / ``from_pretrained``.

A model checkpoint is a folder holding ``config.json`` and ``model.safetensors`` (more files where a
model has parts). Every file is written to a temporary name in the same folder, flushed to disk and
renamed over the old one, so a process killed mid-save leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from .errors import InputError

CONFIG_NAME = "config.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
WEIGHTS_NAME = "model.safetensors"


# ---------------------------------------------------------------------------------------- atomic
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; a checkpoint is an ordinary file
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Folder-level atomicity, for checkpoints whose files must change together (training state).
def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder ``tmp`` onto ``final``. POSIX cannot rename a folder over a
    non-empty one, so the old copy steps aside to ``.{name}.old`` first; at every instant either
    ``final`` or ``.{name}.old`` is a complete folder (``find_dir`` picks it up)."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)  # final is complete, so a stale old copy is redundant
        final.replace(old)
    tmp.replace(final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def find_dir(final: Path) -> Path | None:
    """The published folder, or its previous copy if a kill fell between publish_dir's renames."""
    old = final.with_name(f".{final.name}.old")
    return final if final.is_dir() else old if old.is_dir() else None


def tmp_dir_of(final: Path) -> Path:
    """The temporary folder a folder ``final`` is written into before ``publish_dir`` renames it."""
    return final.with_name(f".{final.name}.tmp")


def fresh_tmp_dir(final: Path) -> Path:
    tmp = tmp_dir_of(final)
    shutil.rmtree(tmp, ignore_errors=True)  # left over from a save that was killed
    tmp.mkdir(parents=True)
    return tmp


# ----------------------------------------------------------------------------------- safetensors
def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors to a safetensors file atomically. Shared storage is copied apart first."""
    flat = {k: v.detach().contiguous().cpu().clone() if _shares_storage(v, tensors) else v.detach().contiguous().cpu()
            for k, v in tensors.items()}
    atomic_write_bytes(path, st_save_bytes(flat, metadata=metadata))


def _shares_storage(t: torch.Tensor, tensors: dict[str, torch.Tensor]) -> bool:
    ptr = t.untyped_storage().data_ptr()
    return sum(1 for v in tensors.values() if v.untyped_storage().data_ptr() == ptr) > 1


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupted file is an InputError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: expected a safetensors file, found nothing there") from None
    except OSError as e:
        raise InputError(f"{path}: expected a readable safetensors file, found {e.strerror}") from None
    try:
        return st_load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        raise InputError(f"{path}: expected a valid safetensors file, found a truncated or corrupted one ({e})") from None


def load_tensor_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` block of a safetensors header."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            # A garbage length would otherwise make read(n) allocate gigabytes.
            if not 2 <= n <= os.fstat(f.fileno()).st_size - 8:
                raise ValueError(f"a header length of {n} bytes in a file of {os.fstat(f.fileno()).st_size}")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: expected a valid safetensors file, found an unreadable header ({e})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: expected a valid safetensors file, found a header that is not a JSON object")
    return header.get("__metadata__", {}) or {}


def check_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Missing or unexpected keys and shape mismatches are InputErrors that name them."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:20])}{' …' if len(unexpected) > 20 else ''}")
    shapes = [f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if shapes:
        problems.append(f"shape mismatches: {', '.join(shapes[:20])}")
    if problems:
        raise InputError(f"{where}: weights do not fit the model; " + "; ".join(problems))


# ------------------------------------------------------------------------------- pretrained mixin
@contextmanager
def _no_weight_init():
    """Skip ``torch.nn.init``'s initialisers while a model is built to be overwritten by loaded
    weights. Besides wasted work, on the meta device some of them (``trunc_normal_``'s ``erfinv_``)
    run torch's Python reference kernels, whose first use imports torch._dynamo and sympy: seconds
    added to every command that loads a checkpoint."""
    names = [n for n in vars(nn.init) if n.endswith("_") and not n.startswith("_") and callable(getattr(nn.init, n))]
    saved = {n: getattr(nn.init, n) for n in names}
    for n in names:
        setattr(nn.init, n, _keep)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def _keep(tensor, *args, **kwargs):
    return tensor


def count_parameters(module: nn.Module) -> int:
    """How many numbers ``module``'s parameters hold, trainable and frozen alike."""
    if not isinstance(module, nn.Module):
        raise InputError(f"module: expected a torch.nn.Module, found {type(module).__name__}")
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class Part:
    """A part of a model stored beside its weights: a tokenizer file, or a model in a subfolder.

    ``path`` is relative to the checkpoint folder; ``load(path)`` and ``save(part, path, dtype)`` read
    and write it. A part that is an ``nn.Module`` keeps its weights in its own place, not in the
    model's ``model.safetensors``."""
    path: str
    load: Callable[[Path], Any]
    save: Callable[[Any, Path, torch.dtype | None], Any]


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built from ``config_class``.

    Subclasses set ``config_class``; their constructor takes the config and, by keyword, one argument
    per entry of ``parts`` (a tokenizer, an autoencoder), which are saved and loaded beside the
    weights. ``checkpoint_kind`` names the model in error messages.
    """

    config_class: type = None  # set by subclasses
    parts: dict[str, Part] = {}  # constructor argument -> how it is stored
    checkpoint_kind: str = ""  # e.g. "text-to-image "

    def _module_parts(self) -> list[str]:
        return [name for name in self.parts if isinstance(getattr(self, name), nn.Module)]

    def save_pretrained(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        skip = tuple(f"{name}." for name in self._module_parts())
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(skip)} if skip else self.state_dict()
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        save_tensors(folder / WEIGHTS_NAME, state, metadata={"format": "pt", "model": type(self).__name__})
        for name, part in self.parts.items():
            part.save(getattr(self, name), folder / part.path, dtype)
        atomic_write_text(folder / CONFIG_NAME, self.config.to_json() + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None):
        folder = Path(path)
        names = [CONFIG_NAME, WEIGHTS_NAME, *(part.path for part in cls.parts.values())]
        if not folder.is_dir() or not all((folder / part.path).exists() for part in cls.parts.values()):
            listed = ", ".join(names[:-1]) + " and " + names[-1]
            raise InputError(f"{path}: expected a {cls.checkpoint_kind}checkpoint folder with {listed}, found "
                             f"{'an incomplete folder' if folder.is_dir() else 'a file' if folder.exists() else 'nothing'}")
        config = cls.config_class.load(folder / CONFIG_NAME)
        parts = {name: part.load(folder / part.path) for name, part in cls.parts.items()}
        state = load_tensors(folder / WEIGHTS_NAME)
        with torch.device("meta"), _no_weight_init():  # loaded parts keep their weights
            model = cls(config, **parts)
        loaded = {f"{name}.{k}": v for name in model._module_parts() for k, v in getattr(model, name).state_dict().items()}
        check_state_dict(model, {**state, **loaded}, str(folder / WEIGHTS_NAME))
        # Weights stored in float16/bfloat16 to keep checkpoints small load as float32 unless
        # another dtype is asked for.
        model.load_state_dict(state, strict=not loaded, assign=True)
        model = model.to(device=device, dtype=dtype or torch.float32)
        model.eval()
        return model


# ------------------------------------------------------------------------- nested state to disk
def flatten_tree(tree: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure of dicts, lists, tuples, tensors and JSON values into tensors + JSON.

    Returns ``(tensors, skeleton)``: each tensor is replaced in the skeleton by ``{"__tensor__": key}``,
    tuples by ``{"__tuple__": [...]}``. ``unflatten_tree`` inverts it. Used for optimizer and RNG state,
    so that training checkpoints load without unpickling.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x, key):
        if isinstance(x, torch.Tensor):
            tensors[key] = x
            return {"__tensor__": key}
        if isinstance(x, dict):
            if not all(isinstance(k, (str, int)) for k in x):
                raise TypeError(f"{key}: only str or int keys can be saved")
            return {"__dict__": [[k, walk(v, f"{key}/{k}")] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v, f"{key}/{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{key}/{i}") for i, v in enumerate(x)]
        if hasattr(x, "dtype") and hasattr(x, "tolist") and not isinstance(x, (int, float)):  # numpy
            t = torch.from_numpy(x.copy()) if getattr(x, "ndim", 0) else None
            if t is not None:
                tensors[key] = t
                return {"__ndarray__": key}
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"{key}: cannot save a {type(x).__name__}")

    skeleton = walk(tree, prefix or "root")
    return tensors, skeleton


def unflatten_tree(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    def walk(x):
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__ndarray__" in x:
                return tensors[x["__ndarray__"]].numpy()
            if "__tuple__" in x:
                return tuple(walk(v) for v in x["__tuple__"])
            if "__dict__" in x:
                return {k: walk(v) for k, v in x["__dict__"]}
        return x

    return walk(skeleton)


def save_tree(path: str | Path, tree: Any) -> None:
    """Save a nested state (see ``flatten_tree``) as one safetensors file, atomically."""
    tensors, skeleton = flatten_tree(tree)
    save_tensors(path, tensors, metadata={"tree": json.dumps(skeleton)})


def load_tree(path: str | Path) -> Any:
    tensors = load_tensors(path)
    meta = load_tensor_metadata(path)
    if "tree" not in meta:
        raise InputError(f"{path}: expected a training-state file with a 'tree' entry, found none")
    return unflatten_tree(tensors, json.loads(meta["tree"]))
