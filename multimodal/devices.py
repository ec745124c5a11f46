"""Devices and dtypes: the one place a ``device=`` or ``dtype=`` argument is parsed.

CPU by default, CUDA when present. A bad value is an ``InputError`` that names the argument.
"""

from __future__ import annotations

import torch

from .errors import InputError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(device: str | torch.device) -> torch.device:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device: expected 'cpu', 'cuda' or 'cuda:N', found {device!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (parsed.index or 0) >= count:
            raise InputError(f"device: expected 'cpu' or one of {count} CUDA devices, found {str(parsed)!r}")
    elif parsed.type != "cpu":
        raise InputError(f"device: expected 'cpu', 'cuda' or 'cuda:N', found {str(parsed)!r}")
    return parsed


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise InputError(f"dtype: expected one of {', '.join(DTYPES)}, found {dtype!r}")
