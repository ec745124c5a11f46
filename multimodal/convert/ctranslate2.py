"""Reading CTranslate2's ``model.bin`` without CTranslate2.

The layout, as ``ctranslate2/specs/model_spec.py`` (``ModelSpec._serialize``) writes it, all
integers little-endian:

    u32 binary version (6)
    str spec name (e.g. "WhisperSpec")        str = u16 length incl. a trailing NUL, bytes, NUL
    u32 spec revision
    u32 number of variables, then for each:
        str name ("encoder/layer_0/self_attention/linear_0/weight")
        u8 rank, rank x u32 shape
        u8 dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16)
        u32 byte count, raw row-major bytes
    u32 number of aliases, then for each: str alias, str name of the variable it stands for

Quantized weights (int8, int16) come with a ``<name>_scale`` variable: ``int8 = round(w * scale)``
with ``scale = 127 / max|w|`` per output row (per output channel for convolutions), and for int16 one
scalar ``scale = 2**10 / max|w|``; so ``w ≈ int / scale``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError

BINARY_VERSION = 6
DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}


@dataclass
class CT2Model:
    spec: str  # "WhisperSpec", "TransformerSpec", …
    revision: int
    variables: dict[str, torch.Tensor]  # aliases resolved: an alias maps to its target's tensor
    aliases: dict[str, str]  # alias -> target name


class _Reader:
    def __init__(self, f, path: Path):
        self.f, self.path = f, path

    def bytes(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise InputError(f"{self.path}: expected a complete CTranslate2 model.bin, found it truncated "
                             f"while reading {what}")
        return data

    def int(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize(fmt), what))[0]

    def str(self, what: str) -> str:
        n = self.int("H", what)
        raw = self.bytes(n, what)
        if n == 0 or raw[-1] != 0:
            raise InputError(f"{self.path}: expected a NUL-terminated string for {what}, found corrupted bytes")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: expected a UTF-8 string for {what}, found corrupted bytes") from None


def read_model_bin(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin``; a missing, truncated or corrupted file is an InputError."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: expected a CTranslate2 model.bin, found {e.strerror or e}") from None
    with f:
        r = _Reader(f, path)
        version = r.int("I", "the binary version")
        if version != BINARY_VERSION:
            raise InputError(f"{path}: expected CTranslate2 binary version {BINARY_VERSION}, found {version} "
                             "(a corrupted file, or one written by another CTranslate2 release)")
        spec = r.str("the spec name")
        revision = r.int("I", "the spec revision")
        count = r.int("I", "the variable count")
        variables: dict[str, torch.Tensor] = {}
        for _ in range(count):
            name = r.str("a variable name")
            rank = r.int("B", f"the rank of {name}")
            shape = [r.int("I", f"the shape of {name}") for _ in range(rank)]
            type_id = r.int("B", f"the dtype of {name}")
            if type_id not in DTYPES:
                raise InputError(f"{path}: expected a dtype id in {sorted(DTYPES)} for {name}, found {type_id}")
            dtype = DTYPES[type_id]
            nbytes = r.int("I", f"the size of {name}")
            expected = math.prod(shape) * dtype.itemsize
            if nbytes != expected:
                raise InputError(f"{path}: expected {expected} bytes for {name} {shape} {dtype}, found {nbytes}")
            raw = bytearray(r.bytes(nbytes, name))
            tensor = torch.frombuffer(raw, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
            variables[name] = tensor.reshape(shape)
        aliases = {}
        for _ in range(r.int("I", "the alias count")):
            alias, target = r.str("an alias"), r.str("an alias target")
            if target not in variables:
                raise InputError(f"{path}: expected alias {alias} to name a stored variable, found {target!r}")
            aliases[alias] = target
            variables[alias] = variables[target]
        if f.read(1):
            raise InputError(f"{path}: expected the file to end after the aliases, found trailing bytes")
    return CT2Model(spec, revision, variables, aliases)


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None, name: str) -> torch.Tensor:
    """A weight as float32: int8 / per-row scale, int16 / scalar scale, floats as they are."""
    if weight.is_floating_point():
        return weight.float()
    if scale is None:
        raise InputError(f"model.bin: expected {name}_scale next to the {weight.dtype} weight {name}, found none")
    scale = scale.float()
    if scale.ndim:  # one scale per output row / channel
        if scale.shape[0] != weight.shape[0]:
            raise InputError(f"model.bin: expected {weight.shape[0]} scales for {name}, found {tuple(scale.shape)}")
        scale = scale.reshape(-1, *[1] * (weight.ndim - 1))
    return weight.float() / scale
