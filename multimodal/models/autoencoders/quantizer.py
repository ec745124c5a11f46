"""One vector quantizer for every modality: inputs ``[B, *, D]`` of any rank, flattened to rows.

Method (van den Oord et al. 2017; Razavi et al. 2019; SoundStream / EnCodec for the residual form):

1. **Lookup.** Each row ``z`` (optionally projected to ``codebook_dim`` and, with ``l2_normalize``,
   put on the unit sphere as in ViT-VQGAN / LlamaGen) is replaced by its nearest code ``e_k``.
2. **Gradient.** Straight through: the decoder sees ``e_k``, the encoder receives the decoder's
   gradient unchanged (``z + (e_k - z).detach()``).
3. **Losses.** Commitment ``beta * ||z - sg(e_k)||²`` (beta = 0.25) pulls the encoder to its codes.
   The codebook itself follows an exponential moving average of the rows assigned to each code
   (decay 0.99) with Laplace-smoothed counts, so it needs no loss of its own; with ``ema=False`` it
   is a parameter trained by ``||sg(z) - e_k||²``.
4. **Initialisation.** On the first training batch the codebook is set from encoder outputs:
   k-means++ and Lloyd's iterations (``init="kmeans"``) or a random sample of rows (``"random"``), so no code starts far
   from the data.
5. **Dead codes.** A code no row has chosen for ``dead_code_steps`` training steps is re-seeded
   from a random current encoder output (its EMA statistics restart there). Collapse onto a few
   codes is the most common failure of VQ training; this keeps every code in play.
6. **Residual VQ** (``levels > 1``): each level quantizes what the previous ones left, and the codes
   are ``[B, levels, *]``. With ``quantizer_dropout`` a training step uses only the first n levels
   (n uniform in 1..levels) with that probability, so fewer levels still decode (bitrate scaling).

``codebook_usage`` and ``perplexity`` measure how much of the codebook a set of codes uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ...config import Config
from ...errors import InputError, expect

INITS = ("kmeans", "random", "none")


@dataclass
class QuantizerConfig(Config):
    codebook_size: int = 512  # codes per level
    dim: int = 64  # channels of the encoder output that is quantized
    codebook_dim: int | None = None  # lookup dimension (a projection in and out when smaller); default dim
    l2_normalize: bool = False  # cosine lookup on the unit sphere
    beta: float = 0.25  # commitment weight
    ema: bool = True  # codebook by moving average (True) or by gradient (False)
    decay: float = 0.99  # EMA decay
    eps: float = 1e-5  # Laplace smoothing of the EMA counts
    init: str = "kmeans"  # kmeans | random | none: how the first training batch seeds the codebook
    kmeans_iters: int = 10
    dead_code_steps: int = 100  # re-seed a code unused for this many training steps; 0: never
    levels: int = 1  # residual VQ depth
    quantizer_dropout: float = 0.0  # probability that a training step uses fewer levels

    def __post_init__(self):
        self.check_positive_ints("codebook_size", "dim", "levels", "kmeans_iters")
        expect(self.codebook_dim is None or (isinstance(self.codebook_dim, int) and self.codebook_dim > 0),
               "QuantizerConfig.codebook_dim", "None or a positive integer", repr(self.codebook_dim))
        expect(self.init in INITS, "QuantizerConfig.init", f"one of {', '.join(INITS)}", repr(self.init))
        expect(0 < self.decay < 1, "QuantizerConfig.decay", "a number in (0, 1)", repr(self.decay))
        expect(0 <= self.quantizer_dropout <= 1, "QuantizerConfig.quantizer_dropout", "a probability",
               repr(self.quantizer_dropout))
        expect(isinstance(self.dead_code_steps, int) and self.dead_code_steps >= 0,
               "QuantizerConfig.dead_code_steps", "an integer >= 0", repr(self.dead_code_steps))

    @property
    def lookup_dim(self) -> int:
        return self.codebook_dim or self.dim


# ------------------------------------------------------------------------------------- statistics
def codebook_usage(codes: torch.Tensor, codebook_size: int) -> float:
    """Distinct codes in ``codes`` divided by the codebook size (1.0: every code used)."""
    return torch.unique(codes[codes >= 0]).numel() / codebook_size


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the codes' histogram: the number of equally used codes it is worth."""
    counts = torch.bincount(codes[codes >= 0].flatten(), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k centres of the rows of ``x`` [N, D]: k-means++ seeding (each next centre a row drawn with
    probability proportional to its squared distance from the centres so far), then Lloyd's
    iterations; an empty cluster keeps its centre."""
    first = int(torch.randint(x.shape[0], (), generator=generator))
    centres = [x[first]]
    nearest = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        weights = nearest.cpu().double()
        pick = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 \
            else int(torch.randint(x.shape[0], (), generator=generator))
        centres.append(x[pick])
        nearest = torch.minimum(nearest, (x - x[pick]).pow(2).sum(1))
    centres = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    return centres


# --------------------------------------------------------------------------------------- one level
class VectorQuantizer(nn.Module):
    """One codebook: ``forward(z [B, *, D]) -> (quantized [B, *, D], codes [B, *], loss)``."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = c = config
        K, Dc = c.codebook_size, c.lookup_dim
        self.project_in = nn.Linear(c.dim, Dc) if Dc != c.dim else nn.Identity()
        self.project_out = nn.Linear(Dc, c.dim) if Dc != c.dim else nn.Identity()
        codebook = torch.randn(K, Dc)
        if c.l2_normalize:
            codebook = F.normalize(codebook, dim=1)
        if c.ema:
            self.register_buffer("codebook", codebook)
            self.register_buffer("cluster_size", torch.ones(K))
            self.register_buffer("embed_sum", codebook.clone())
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("initialized", torch.tensor(c.init == "none"))
        self.register_buffer("unused_steps", torch.zeros(K, dtype=torch.long))

    # ------------------------------------------------------------------------------ lookup
    def _rows(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.config.dim:
            raise InputError(f"quantizer input: expected [batch, ..., {self.config.dim}], found {tuple(z.shape)}")
        with torch.autocast(z.device.type, enabled=False):
            x = self.project_in(z.reshape(-1, z.shape[-1]).float())
        return F.normalize(x, dim=1) if self.config.l2_normalize else x

    def _codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=1) if self.config.l2_normalize else self.codebook

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes of rows x [N, Dc], in float32 even under autocast (bf16
        distances would tie codes that differ)."""
        with torch.autocast(x.device.type, enabled=False):
            x, e = x.float(), self._codebook().float()
            distances = x.pow(2).sum(1, keepdim=True) - 2 * x @ e.t() + e.pow(2).sum(1)[None, :]
        return distances.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [*] -> vectors [*, D] (after the projection out)."""
        return self.project_out(F.embedding(codes, self._codebook()))

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """[B, *, D] -> codes [B, *]."""
        return self.nearest(self._rows(z)).reshape(z.shape[:-1])

    # ----------------------------------------------------------------------------- training
    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        c = self.config
        if c.init == "kmeans":
            centres = kmeans(x, c.codebook_size, c.kmeans_iters)
        else:
            centres = x[torch.randint(x.shape[0], (c.codebook_size,), device="cpu").to(x.device)]
        centres = _all_reduce(centres.clone()) / (dist.get_world_size() if dist.is_available()
                                                  and dist.is_initialized() else 1)
        if c.l2_normalize:
            centres = F.normalize(centres, dim=1)
        self.codebook.data.copy_(centres)
        if c.ema:
            self.cluster_size.fill_(1.0)
            self.embed_sum.copy_(centres)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        c = self.config
        onehot = F.one_hot(codes, c.codebook_size).type(x.dtype)  # [N, K]
        counts = _all_reduce(onehot.sum(0))
        sums = _all_reduce(onehot.t() @ x)  # [K, Dc]
        self.cluster_size.mul_(c.decay).add_(counts, alpha=1 - c.decay)
        self.embed_sum.mul_(c.decay).add_(sums, alpha=1 - c.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + c.eps) / (n + c.codebook_size * c.eps) * n
        codebook = self.embed_sum / smoothed[:, None]
        self.codebook.copy_(F.normalize(codebook, dim=1) if c.l2_normalize else codebook)

    @torch.no_grad()
    def _restart_dead_codes(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        c = self.config
        used = _all_reduce(torch.bincount(codes, minlength=c.codebook_size)) > 0
        self.unused_steps.add_(1).masked_fill_(used, 0)
        dead = (self.unused_steps >= c.dead_code_steps).nonzero().flatten()
        if c.dead_code_steps == 0 or dead.numel() == 0:
            return
        pick = torch.randint(x.shape[0], (dead.numel(),), device="cpu").to(x.device)
        fresh = x[pick]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, 0)  # every rank re-seeds the same codes with the same vectors
        self.codebook.data[dead] = fresh
        if c.ema:
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0

    # ------------------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._rows(z)
        if self.training and not bool(self.initialized):
            self._initialize(x.detach())
        codes = self.nearest(x.detach())
        e = F.embedding(codes, self._codebook()).to(x.dtype)  # [N, Dc]
        loss = self.config.beta * F.mse_loss(x, e.detach())
        if self.training:
            if self.config.ema:
                self._ema_update(x.detach(), codes)
            else:
                loss = loss + F.mse_loss(x.detach(), e)
            self._restart_dead_codes(x.detach(), codes)
        quantized = x + (e - x).detach()  # straight through
        out = self.project_out(quantized).reshape(z.shape).to(z.dtype)
        return out, codes.reshape(z.shape[:-1]), loss


# ----------------------------------------------------------------------------------------- levels
class ResidualQuantizer(nn.Module):
    """``levels`` VectorQuantizers, each on the residual of the ones before (one level: plain VQ).

    ``forward(z [B, *, D]) -> (quantized, codes, loss)`` with codes ``[B, *]`` for one level and
    ``[B, levels, *]`` for more; levels a quantizer-dropout step skipped get code -1."""

    def __init__(self, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.quantizers = nn.ModuleList(VectorQuantizer(config) for _ in range(config.levels))

    def _levels_this_step(self) -> int:
        c = self.config
        if self.training and c.levels > 1 and c.quantizer_dropout > 0 and torch.rand(()) < c.quantizer_dropout:
            return int(torch.randint(1, c.levels + 1, ()))
        return c.levels

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self._levels_this_step()
        residual, total = z, torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for i, q in enumerate(self.quantizers[:n]):
            # The encoder's gradient passes once, through the first level; later levels learn their
            # projections on a detached residual.
            quantized, level_codes, level_loss = q(residual if i == 0 else residual.detach())
            residual = residual - quantized.detach()
            total = total + quantized
            codes.append(level_codes)
            loss = loss + level_loss
        codes += [torch.full_like(codes[0], -1)] * (self.config.levels - n)
        return total, self._stack(codes), loss

    def _stack(self, codes: list[torch.Tensor]) -> torch.Tensor:
        return codes[0] if self.config.levels == 1 else torch.stack(codes, dim=1)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        residual, codes = z, []
        for q in self.quantizers:
            level_codes = q.encode(residual)
            residual = residual - q.lookup(level_codes)
            codes.append(level_codes)
        return self._stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, *]`` (or ``[B, levels, *]``; a level of -1 codes is skipped) -> ``[B, *, D]``."""
        per_level = [codes] if self.config.levels == 1 else codes.unbind(dim=1)
        out = 0
        for q, level_codes in zip(self.quantizers, per_level):
            if bool((level_codes < 0).all()):
                continue
            out = out + q.lookup(level_codes.clamp_min(0))
        return out

    def check_codes(self, codes, grid: tuple[int, ...] | None = None) -> torch.Tensor:
        """``codes`` as a LongTensor ``[B, *grid]`` (``[B, levels, *grid]`` for residual VQ) of codes in
        range; anything else is an InputError naming ``codes``."""
        c = self.config
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex() \
                or codes.dtype == torch.bool:
            raise InputError(f"codes: expected an integer tensor, found "
                             f"{codes.dtype if isinstance(codes, torch.Tensor) else type(codes).__name__}")
        lead = 1 if c.levels == 1 else 2
        if grid is not None:
            expected = ((-1,) if lead == 1 else (-1, c.levels)) + tuple(grid)
            if codes.ndim != len(expected) or any(e != -1 and e != s for e, s in zip(expected, codes.shape)):
                want = "[batch, " + ("" if lead == 1 else f"{c.levels}, ") + ", ".join(map(str, grid)) + "]"
                raise InputError(f"codes: expected shape {want}, found {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= c.codebook_size):
            bad = int(codes.min()) if int(codes.min()) < 0 else int(codes.max())
            raise InputError(f"codes: expected codes in [0, {c.codebook_size}), found {bad}")
        return codes.long()
