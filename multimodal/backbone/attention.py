"""Attention on SDPA: the preallocated KV cache, causal masks that stay right with a cache, the
bf16 path under CPU autocast, and ``Attention`` (self or cross, projections called as modules)."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import BackboneConfig, make_norm
from .positions import Rotary

# -------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Preallocated keys and values for every layer of a Transformer.

    Self-attention keys/values are written at ``[length, length + L)`` as tokens arrive; the
    Transformer advances ``length`` after each forward. Cross-attention keys/values are computed once
    per input and kept. ``reorder(index)`` gathers along the batch (beam search); with
    ``cross=False`` the cross-attention keys/values stay one per input while the rows fan out to
    several per input (consecutive rows, as many for each), which ``Attention`` then shares.
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

    def keep(self, rows: torch.Tensor, contexts: torch.Tensor) -> None:
        """Keep self-attention rows ``rows`` and cross-attention contexts ``contexts`` (by index): the
        sequences that go on when others of a batch have ended."""
        self.reorder(rows, cross=False)
        contexts = contexts.to(self.k[0].device)
        self.cross = [None if kv is None else (kv[0].index_select(0, contexts), kv[1].index_select(0, contexts))
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
        dropout = self.dropout if self.training else 0.0
        if self.cross and k.shape[0] != B:
            y = self._attend_shared(q, k, v, key_padding_mask, dropout)
        else:
            y = attend(q, k, v, mask, is_causal, dropout)
        return self.out(y.transpose(1, 2).reshape(B, L, W))

    @staticmethod
    def _attend_shared(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask, dropout: float):
        """Cross-attention of [B, H, L, D] queries whose consecutive groups of G = B / Bk rows share one
        context ([Bk, H, S, D] keys and values: the beams of one input). Each group's queries attend
        as one batch row, so the context is read once per group, not once per row; every query's
        result is what it would get against its own copy."""
        B, H, L, D = q.shape
        Bk = k.shape[0]
        if B % Bk or key_padding_mask is not None:
            raise InputError(f"cross-attention: expected a context for every row or one per group of rows "
                             f"(without key_padding_mask), found {Bk} contexts for {B} rows")
        G = B // Bk
        grouped = q.reshape(Bk, G, H, L, D).transpose(1, 2).reshape(Bk, H, G * L, D)
        y = attend(grouped, k, v, None, False, dropout)
        return y.reshape(Bk, H, G, L, D).transpose(1, 2).reshape(B, H, L, D)
