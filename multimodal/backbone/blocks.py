"""The MLP, residual helpers, the Block and the Transformer: the stack every model composes."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import PretrainedMixin
from ..errors import InputError
from .attention import Attention, KVCache
from .config import BackboneConfig, make_norm, modulate
from .positions import sinusoids_1d, sinusoids_2d

# ------------------------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.kind = cfg.mlp
        hidden = cfg.hidden
        self.fc1 = nn.Linear(cfg.width, 2 * hidden if cfg.mlp == "swiglu" else hidden, bias=cfg.mlp_bias)
        self.fc2 = nn.Linear(hidden, cfg.width, bias=cfg.mlp_bias)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif h.requires_grad:
            h = F.gelu(h, approximate="tanh" if self.kind == "gelu_tanh" else "none")
        else:  # inference: overwrite fc1's fresh output rather than allocate a second [B, L, hidden]
            h = torch.ops.aten.gelu_(h, approximate="tanh" if self.kind == "gelu_tanh" else "none")
        return self.dropout(self.fc2(self.dropout(h)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


# ----------------------------------------------------------------------------------------- block
class Block(nn.Module):
    """Pre-norm residual block: self-attention, optional cross-attention, MLP; optional adaLN-Zero.

    With adaLN-Zero the conditioning vector c gives (shift, scale, gate) for the attention and MLP
    branches; the projection is zero-initialised (and so is the cross-attention output) so that a
    fresh block is the identity.
    """

    def __init__(self, cfg: BackboneConfig, drop_path: float = 0.0):
        super().__init__()
        affine = cfg.norm_affine and not cfg.adaln
        self.norm1 = make_norm(cfg, affine=affine)
        self.attn = Attention(cfg)
        self.cross_norm = make_norm(cfg) if cfg.cross_attention else None
        self.cross_attn = Attention(cfg, cross=True) if cfg.cross_attention else None
        self.norm2 = make_norm(cfg, affine=affine, eps=cfg.mlp_norm_eps)
        self.mlp = MLP(cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ls1 = LayerScale(cfg.width, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()
        self.ls2 = LayerScale(cfg.width, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()
        self.ada = None
        if cfg.adaln:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.cond_width or cfg.width, 6 * cfg.width))
            nn.init.zeros_(self.ada[1].weight)
            nn.init.zeros_(self.ada[1].bias)
            if self.cross_attn is not None:
                nn.init.zeros_(self.cross_attn.out.weight)
                if self.cross_attn.out.bias is not None:
                    nn.init.zeros_(self.cross_attn.out.bias)

    def forward(self, x: torch.Tensor, *, context=None, context_mask=None, key_padding_mask=None,
                cond: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if self.ada is not None:
            if cond is None:
                raise InputError("adaLN block: expected a conditioning tensor `cond`, found None")
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, dim=-1)
            h = self.attn(modulate(self.norm1(x), shift1, scale1), key_padding_mask=key_padding_mask,
                          cache=cache, layer=layer)
            x = x + self.drop_path(gate1.unsqueeze(1) * self.ls1(h))
        else:
            h = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, cache=cache, layer=layer)
            x = x + self.drop_path(self.ls1(h))
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_norm(x), context=context, key_padding_mask=context_mask,
                                    cache=cache, layer=layer)
        if self.ada is not None:
            x = x + self.drop_path(gate2.unsqueeze(1) * self.ls2(self.mlp(modulate(self.norm2(x), shift2, scale2))))
        else:
            h = self.drop_path(self.ls2(self.mlp(self.norm2(x))))
            # Without autograd, x is by now this block's own tensor (the first residual made it), so
            # the second residual can land in place instead of allocating another [B, L, W].
            x = x.add_(h) if not (x.requires_grad or h.requires_grad) else x + h
        return x


# ----------------------------------------------------------------------------------- transformer
class Transformer(PretrainedMixin, nn.Module):
    """Positions, a stack of Blocks and a final norm over already-embedded tokens [B, L, W]."""

    config_class = BackboneConfig

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.config = cfg
        if cfg.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(cfg.max_len, cfg.width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        elif cfg.positions in ("sinusoidal", "sinusoidal_2d"):
            # Fixed, but kept in the state dict: released checkpoints store their table (Whisper's
            # rounded to float16), and loading theirs rather than recomputing ours keeps outputs exact.
            # Tables are computed on the CPU whatever the default device: on the meta device (as
            # from_pretrained builds) torch would run its Python reference kernels, whose first
            # use imports torch._dynamo and sympy, seconds per process.
            table = (sinusoids_1d(cfg.max_len, cfg.width) if cfg.positions == "sinusoidal"
                     else sinusoids_2d(*cfg.grid, cfg.width))
            self.register_buffer("pos_embed", table.to(torch.empty(0).device))
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, drop_path=r) for r in rates)
        self.norm = make_norm(cfg) if cfg.final_norm else nn.Identity()

    def add_positions(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        kind = self.config.positions
        if kind in ("none", "rotary"):
            return x
        table = self.pos_embed
        end = start + x.shape[1]
        if end > table.shape[0]:
            raise InputError(f"positions: expected at most {table.shape[0]} tokens, found {end}")
        return x + table[start:end].to(x.dtype)

    def new_cache(self, batch: int, max_len: int, dtype=None, device=None) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.config.depth, batch, self.config.heads, self.config.head_dim, max_len,
                       dtype=dtype or p.dtype, device=device or p.device)

    def forward(self, x: torch.Tensor, *, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                cond: torch.Tensor | Sequence[torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """x: [B, L, W] -> [B, L, W].

        context: [B, S, Wc] for cross-attention (may be omitted once the cache holds its keys).
        context_mask / key_padding_mask: True marks padding. With a cache, key_padding_mask covers
        all T = cache.length + L keys. cond: [B, Wc] for adaLN, or one such tensor per block.
        """
        if x.ndim != 3 or x.shape[-1] != self.config.width:
            raise InputError(f"transformer input: expected [batch, length, {self.config.width}], found {tuple(x.shape)}")
        start = cache.length if cache is not None else 0
        x = self.add_positions(x, start)
        per_block = isinstance(cond, (list, tuple))
        for i, block in enumerate(self.blocks):
            x = block(x, context=context, context_mask=context_mask, key_padding_mask=key_padding_mask,
                      cond=cond[i] if per_block else cond, cache=cache, layer=i)
        if cache is not None:
            cache.length += x.shape[1]
        return self.norm(x)
