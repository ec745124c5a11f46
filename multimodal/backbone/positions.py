"""Position encodings: Whisper's 1-D sinusoids, 2-D sinusoids (ViT / DiT), rotary (RoPE)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError

def sinusoids_1d(length: int, dim: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's encoder layout: [sin | cos] halves, timescales spaced geometrically from 1 to
    max_timescale inclusive. -> [length, dim]

    Computed in float32, as the released Whisper checkpoints' tables were: a float64 table differs
    from theirs by up to 1e-4 at late positions."""
    half = dim // 2
    step = math.log(max_timescale) / (half - 1)
    inv = torch.exp(-step * torch.arange(half, dtype=torch.float32, device="cpu"))
    angles = torch.arange(length, dtype=torch.float32, device="cpu")[:, None] * inv[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _sincos(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """MAE/DiT 1-D layout: frequencies 1 / 10000^(i / (dim/2)), i < dim/2; [sin | cos]."""
    freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2))
    angles = pos.reshape(-1, 1).double() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sinusoids_2d(rows: int, cols: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    """DiT/MAE 2-D layout, row-major over the grid: the first half of the channels encodes the
    column, the second half the row. ``scale`` divides the coordinates (diffusers' base_size /
    interpolation_scale). -> [rows * cols, dim]"""
    if dim % 4:
        raise InputError(f"sinusoids_2d: expected dim divisible by 4, found {dim}")
    r, c = torch.meshgrid(torch.arange(rows, device="cpu") / scale, torch.arange(cols, device="cpu") / scale,
                          indexing="ij")
    return torch.cat([_sincos(c, dim // 2), _sincos(r, dim // 2)], dim=1).float()


class Rotary(nn.Module):
    """Rotary position embedding (half-split, as GPT-NeoX / LLaMA), cos/sin tables grown on demand."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim, self.base = head_dim, base
        self._table: tuple[torch.Tensor, torch.Tensor] | None = None

    def tables(self, end: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._table
        if t is None or t[0].shape[0] < end or t[0].device != device or t[0].dtype != dtype:
            n = max(end, 2 * t[0].shape[0] if t is not None else end)
            inv = 1.0 / self.base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device) / self.head_dim)
            angles = torch.arange(n, dtype=torch.float64, device=device)[:, None] * inv[None]
            angles = torch.cat([angles, angles], dim=1)
            self._table = t = (angles.cos().to(dtype), angles.sin().to(dtype))
        return t

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x: [B, H, L, D] at positions start .. start+L-1."""
        L = x.shape[2]
        cos, sin = self.tables(start + L, x.device, x.dtype)
        cos, sin = cos[start:start + L], sin[start:start + L]
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin
