"""The shared transformer backbone.

Every model in the suite (ViT, DiT/SiT, the token GPT, the Whisper encoder and decoder) is a
tokenizer, this backbone and a head. One config covers the variants that real checkpoints need, so
third-party weights load exactly: LayerNorm eps/affine or RMSNorm, bias per projection (Whisper's
keys have none), exact or tanh GELU or SwiGLU, learned / sinusoidal 1-D / sinusoidal 2-D / rotary
positions, causal self-attention, cross-attention, qk-norm and adaLN-Zero conditioning.

Attention runs on ``F.scaled_dot_product_attention``. Its ``is_causal`` aligns the mask top-left,
which is wrong once a KV cache holds more keys than there are queries; we use it only when queries
and keys have the same length, no mask for a single new token, and an explicit bottom-right mask
otherwise.

Shapes: B batch, L query length, S context length, T keys (cache length + L), W width, H heads,
D head dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import PretrainedMixin
from .config import Config
from .errors import InputError

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


# ------------------------------------------------------------------------------------- positions
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


# -------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Preallocated keys and values for every layer of a Transformer.

    Self-attention keys/values are written at ``[length, length + L)`` as tokens arrive; the
    Transformer advances ``length`` after each forward. Cross-attention keys/values are computed once
    per input and kept. ``reorder(index)`` gathers along the batch (beam search).
    """

    def __init__(self, depth: int, batch: int, heads: int, head_dim: int, max_len: int,
                 dtype=torch.float32, device=None):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(depth)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(depth)]
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * depth
        self.length = 0
        self.max_len = max_len

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store [B, H, L, D] new keys/values for ``layer``; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise InputError(f"KV cache: expected at most {self.max_len} positions, found {end}")
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep batch rows ``index`` (beam search). ``cross=False`` skips cross-attention keys, for
        when every row of a group shares the same context."""
        index = index.to(self.k[0].device)
        if index.shape[0] == self.k[0].shape[0]:
            # Same number of rows (a beam-search step): gather in place, over the filled positions
            # only; gathering whole preallocated buffers into new tensors costs more than the step.
            n = self.length
            for buf in (*self.k, *self.v):
                buf[:, :, :n] = buf[index, :, :n]
        else:
            self.k = [k.index_select(0, index) for k in self.k]
            self.v = [v.index_select(0, index) for v in self.v]
        if cross:
            self.cross = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                          for kv in self.cross]

    def reset(self) -> None:
        self.length = 0
        self.cross = [None] * len(self.cross)


# ------------------------------------------------------------------------------------- attention
def bottom_right_causal_mask(L: int, T: int, device) -> torch.Tensor:
    """[L, T] bool, True where query i (at absolute position T - L + i) may see key j."""
    return torch.ones(L, T, dtype=torch.bool, device=device).tril(diagonal=T - L)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
           dropout_p: float) -> torch.Tensor:
    """SDPA of [B, H, L, D] queries over [B, H, T, D] keys and values; ``mask`` is boolean (True = attend).

    Under CPU autocast (bf16 training on CPUs with AMX) attention does not go through SDPA: torch
    2.11's CPU flash-attention backward is about 10x slower in bfloat16 than in float32 (50 ms against
    5 ms for 128 x 4 heads x 16 tokens x 64, one thread), and float32 SDPA leaves the two attention
    matmuls in float32. ``attend_bf16`` runs them as bfloat16 matmuls and the softmax in float32;
    ``benchmarks/train_step.py`` measures the three."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and torch.is_autocast_enabled("cpu"):
        return attend_bf16(q, k, v, mask, is_causal, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)


def attend_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
                dropout_p: float) -> torch.Tensor:
    """Attention as two low-precision matmuls around a float32 softmax; SDPA's semantics.

    ``is_causal`` is SDPA's top-left aligned causal mask; a query row with no key to attend gives
    zeros (as SDPA does) and no gradient."""
    L, T = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    if is_causal:
        causal = torch.ones(L, T, dtype=torch.bool, device=q.device).tril()
        mask = causal if mask is None else mask & causal
    if mask is not None:
        # a finite fill keeps a fully masked row's softmax finite; the row is zeroed after it
        scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
    probs = scores.softmax(-1)
    if mask is not None:
        probs = probs.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p)
    return torch.matmul(probs.to(v.dtype), v)


class Attention(nn.Module):
    """Multi-head self- or cross-attention on SDPA, with an optional KV cache and qk-norm."""

    def __init__(self, cfg: BackboneConfig, cross: bool = False):
        super().__init__()
        W, self.heads, self.head_dim = cfg.width, cfg.heads, cfg.head_dim
        self.cross = cross
        self.causal = cfg.causal and not cross
        kv_in = (cfg.context_width or W) if cross else W
        bias = cfg.qkv_bias
        # Keys without bias (Whisper) keep q and v biases in the fused projection. Its key slice starts
        # at zero and is loaded as stored (state dicts round-trip); ``_project`` cancels its value and
        # its gradient. A key bias shifts each query's scores by one constant, which softmax removes:
        # cancelling it keeps the arithmetic of the references that have none.
        self.k_bias = cfg.k_bias
        if cross:
            self.q = nn.Linear(W, W, bias=bias)
            self.kv = nn.Linear(kv_in, 2 * W, bias=bias)
        else:
            self.qkv = nn.Linear(W, 3 * W, bias=bias)
        if bias and not self.k_bias:
            self.zero_key_bias()
        self.out = nn.Linear(W, W, bias=cfg.out_bias)
        self.q_norm = make_norm(cfg, self.head_dim) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg, self.head_dim) if cfg.qk_norm else None
        self.rotary = Rotary(self.head_dim, cfg.rope_base) if cfg.positions == "rotary" and not cross else None
        self.dropout = cfg.dropout

    def _fused(self) -> nn.Module:
        """The projection that holds the keys: ``kv`` (cross) or ``qkv`` (self)."""
        return self.kv if self.cross else self.qkv

    def _key_slice(self) -> slice:
        W = self.heads * self.head_dim
        return slice(0, W) if self.cross else slice(W, 2 * W)

    def zero_key_bias(self) -> None:
        """Set the key slice of a fused bias without key bias to zero, in place: what a wrapped or
        quantised copy of the projection needs to compute keys without bias."""
        if not self.k_bias and self._fused().bias is not None:
            with torch.no_grad():
                self._fused().bias[self._key_slice()] = 0

    def _project(self, proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``proj(x)`` for the fused projection, called as a module so that a wrapper (an adapter, a
        quantised Linear) takes effect. Without key bias, a plain Linear's key-slice bias (zero
        unless set by hand) is subtracted again: keys get no bias and the slice no gradient."""
        y = proj(x)
        bias = getattr(proj, "bias", None)
        if self.k_bias or not isinstance(bias, torch.Tensor):
            return y
        keys = self._key_slice()
        if bias.requires_grad and torch.is_grad_enabled():
            correction = torch.zeros_like(bias)
            correction[keys] = bias[keys]
            return y - correction.to(y.dtype)
        y[..., keys] -= bias[keys].to(y.dtype)  # y is proj's fresh output
        return y

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, W] -> [B, H, L, D]
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of a context [B, S, Wc] -> 2 x [B, H, S, D]."""
        W = self.heads * self.head_dim
        kv = self._project(self.kv, context)
        k, v = self._heads(kv[..., :W]), self._heads(kv[..., W:])
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k, v

    def forward(self, x: torch.Tensor, *, context: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x: [B, L, W]. ``key_padding_mask``: [B, T] (or [B, S] for cross-attention), True = padding."""
        B, L, W = x.shape
        start = cache.length if cache is not None else 0
        if self.cross:
            q = self._heads(self.q(x))
            if self.q_norm is not None:
                q = self.q_norm(q)
            if cache is not None and cache.cross[layer] is not None:
                k, v = cache.cross[layer]
            else:
                if context is None:
                    raise InputError("cross-attention: expected a context tensor, found None")
                k, v = self.context_kv(context)
                if cache is not None:
                    cache.cross[layer] = (k, v)
        else:
            qkv = self._project(self.qkv, x)
            q, k, v = (self._heads(t) for t in qkv.split(W, dim=-1))
            if self.q_norm is not None:  # qk-norm acts before the rotation
                q, k = self.q_norm(q), self.k_norm(k)
            if self.rotary is not None:
                q, k = self.rotary(q, start), self.rotary(k, start)
            if cache is not None:
                k, v = cache.append(layer, k, v)
        T = k.shape[2]

        mask, is_causal = None, False
        if self.causal and L > 1:
            if L == T and key_padding_mask is None:
                is_causal = True
            else:
                mask = bottom_right_causal_mask(L, T, x.device)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, T):
                raise InputError(f"key_padding_mask: expected shape {(B, T)}, found {tuple(key_padding_mask.shape)}")
            keep = ~key_padding_mask.bool()[:, None, None, :]  # [B, 1, 1, T]
            mask = keep if mask is None else keep & mask
        y = attend(q, k, v, mask, is_causal, self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, W))


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
