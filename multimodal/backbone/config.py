"""The backbone's config (every variant real checkpoints need), its norms and adaLN modulation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import InputError

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "gelu_tanh", "swiglu")
POSITIONS = ("none", "learned", "sinusoidal", "sinusoidal_2d", "rotary")


@dataclass
class BackboneConfig(Config):
    width: int = 384
    depth: int = 6
    heads: int = 6
    mlp: str = "gelu"  # gelu (exact) | gelu_tanh | swiglu
    mlp_hidden: int | None = None  # default 4 * width (2/3 of that for swiglu, rounded up to 8)
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    mlp_norm_eps: float | None = None  # eps of the norm before the MLP; default norm_eps (diffusers' DiT: 1e-5 vs 1e-6)
    norm_affine: bool = True
    qkv_bias: bool = True
    k_bias: bool = True  # False: keys have no bias even when queries and values do (Whisper)
    out_bias: bool = True
    mlp_bias: bool = True
    qk_norm: bool = False
    causal: bool = False
    cross_attention: bool = False
    context_width: int | None = None  # width of the cross-attention context; default width
    adaln: bool = False  # adaLN-Zero modulation from a conditioning vector
    cond_width: int | None = None  # width of that vector; default width
    positions: str = "none"  # none | learned | sinusoidal | sinusoidal_2d | rotary
    max_len: int = 0  # table length for learned / sinusoidal positions and the rotary cache
    grid: tuple[int, int] | None = None  # (rows, cols) for sinusoidal_2d
    rope_base: float = 10000.0
    final_norm: bool = True
    dropout: float = 0.0
    drop_path: float = 0.0  # stochastic depth, rising linearly to this rate at the last block
    layer_scale: float | None = None  # initial value of per-channel residual scales (CaiT / DeiT-III)

    def __post_init__(self):
        if self.width % self.heads:
            raise InputError(f"backbone: expected width divisible by heads, found width {self.width}, heads {self.heads}")
        for name, value, allowed in (("norm", self.norm, NORMS), ("mlp", self.mlp, MLPS),
                                     ("positions", self.positions, POSITIONS)):
            if value not in allowed:
                raise InputError(f"backbone.{name}: expected one of {', '.join(allowed)}, found {value!r}")
        if self.positions in ("learned", "sinusoidal") and self.max_len <= 0:
            raise InputError(f"backbone.max_len: expected > 0 for {self.positions} positions, found {self.max_len}")
        if self.positions == "sinusoidal_2d" and (self.grid is None or len(self.grid) != 2):
            raise InputError(f"backbone.grid: expected (rows, cols) for sinusoidal_2d positions, found {self.grid}")
        if self.grid is not None:
            self.grid = tuple(self.grid)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            return 8 * math.ceil(8 * self.width / 3 / 8)
        return 4 * self.width


# ----------------------------------------------------------------------------------------- norms
def make_norm(cfg: BackboneConfig, dim: int | None = None, affine: bool | None = None,
              eps: float | None = None) -> nn.Module:
    dim = dim or cfg.width
    affine = cfg.norm_affine if affine is None else affine
    eps = cfg.norm_eps if eps is None else eps
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps, elementwise_affine=affine)
    return nn.LayerNorm(dim, eps=eps, elementwise_affine=affine)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift, with [B, W] shift/scale broadcast over the sequence."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))
