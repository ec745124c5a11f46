"""What the importers of third-party weights share: reading JSON, PyTorch and Hugging Face weight files
without unpickling anything but tensors, with InputErrors that name the file."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..checkpoint import load_tensors
from ..config import read_json  # noqa: F401  (the importers read JSON through this module)
from ..errors import InputError

HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: expected a PyTorch checkpoint file, found nothing there") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: expected a PyTorch checkpoint of tensors (loaded with weights_only=True), "
                         f"found an unreadable or unsafe file ({first})") from None


def hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        return load_tensors(folder / "model.safetensors")
    for index_name, load in (("model.safetensors.index.json", load_tensors), ("pytorch_model.bin.index.json", torch_load)):
        if (folder / index_name).is_file():
            weight_map = read_json(folder / index_name).get("weight_map")
            if not isinstance(weight_map, dict):
                raise InputError(f"{folder / index_name}: expected a 'weight_map' object, found {weight_map!r}")
            tensors = {}
            for shard in sorted(set(weight_map.values())):
                part = load(folder / shard)
                if not isinstance(part, dict):
                    raise InputError(f"{folder / shard}: expected a dict of tensors, found {type(part).__name__}")
                tensors.update(part)
            return tensors
    if (folder / "pytorch_model.bin").is_file():
        tensors = torch_load(folder / "pytorch_model.bin")
        if not isinstance(tensors, dict):
            raise InputError(f"{folder / 'pytorch_model.bin'}: expected a dict of tensors, found {type(tensors).__name__}")
        return tensors
    raise InputError(f"{folder}: expected Hugging Face weights ({', '.join(HF_WEIGHTS)}), found none")


def hf_config(folder: Path, model_type: str, what: str) -> dict:
    """A Hugging Face folder's config.json, checked to be of ``model_type``."""
    path = folder / "config.json"
    if not path.is_file():
        raise InputError(f"{folder}: expected a Hugging Face {what} folder with config.json, found none")
    config = read_json(path)
    if config.get("model_type") != model_type:
        raise InputError(f"{path}: expected model_type {model_type!r}, found {config.get('model_type')!r}")
    return config
