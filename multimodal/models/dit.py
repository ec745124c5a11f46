"""Diffusion Transformer (Peebles & Xie, 2023) on the shared backbone: the latent denoiser of DiT and SiT.

Method
------
1. **Patches.** Latents ``[B, C, H, W]`` are cut into ``p x p`` patches, each mapped linearly to a
   token (``PatchEmbed``): ``[B, N, W]``, N = (H/p)(W/p). A fixed 2-D sinusoidal table (MAE/DiT
   layout, the backbone's ``sinusoids_2d``) is added.
2. **Conditioning vector.** The timestep goes through sinusoids of 256 frequencies laid out
   ``[cos | sin]`` and a two-layer SiLU MLP (DiT's ``TimestepEmbedder``). To it are added a class
   embedding (``num_classes`` > 0; the table has one more row, the *null class*, used when the
   condition is dropped) and a projection of the pooled text (``context_dim`` > 0; the mean of the
   unpadded text tokens unless ``pooled`` is given). The result c ``[B, W]`` drives adaLN-Zero.
3. **Blocks.** Backbone blocks with adaLN-Zero: c gives shift, scale and gate of the attention and
   MLP branches (tanh-GELU MLP, LayerNorm without affine, eps 1e-6). With text, every block also
   cross-attends to the text tokens ``context`` ``[B, T, context_dim]``.
4. **Final layer.** LayerNorm, shift/scale from c, a linear map to ``p * p * out_channels`` per
   token, and ``unpatchify`` back to ``[B, out_channels, H, W]``. With ``learn_sigma`` the output has
   2C channels (DiT's ε and variance interpolation); samplers read the first C.

The adaLN projections, the cross-attention outputs and the final layer start at zero, so a fresh
DiT outputs zeros and every block starts as the identity.

**Dropping the condition** (classifier-free guidance). ``drop_condition`` ``[B]`` bool replaces a
row's class label with the null class and its text with one learned null token (``null_context``,
the same vector also standing in for its pooled text). While training, rows are dropped at random
with probability ``class_dropout_prob`` as well. A text row that is all padding is unconditional too
(the empty prompt). The guidance helper in ``multimodal.generation.guidance`` batches a conditional and
a dropped copy of the same inputs.

**diffusers' layout.** diffusers' ``DiTTransformer2DModel`` gives every block its own timestep and
label embedders (identical copies in converted checkpoints, different ones in a fresh model) and
reads the final layer's conditioning from block 0's; ``embedder_per_block`` reproduces that. Its
timestep sinusoids use frequencies ``exp(-ln(10^4) i / (128 - 1))`` where DiT's use ``/ 128``
(``timestep_freq_shift`` 1 vs 0), and its norm before the MLP has eps 1e-5 (``mlp_norm_eps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import BackboneConfig, Transformer, make_norm, modulate
from ..checkpoint import PretrainedMixin
from ..config import Config, preset_fields
from ..errors import InputError
from ..tokenizers.patches import PatchEmbed, grid_size, pair, unpatchify

FREQUENCY_DIM = 256  # DiT's timestep sinusoids


# ------------------------------------------------------------------------------------------ config
@dataclass
class DiTConfig(Config):
    input_size: int | tuple[int, int] = 32  # latent (height, width)
    patch_size: int = 2
    in_channels: int = 4
    out_channels: int | None = None  # default in_channels, doubled with learn_sigma
    learn_sigma: bool = False  # predict DiT's variance interpolation in C extra channels
    width: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    num_classes: int = 0  # 0: no class conditioning; else a label table with a null class at index num_classes
    class_dropout_prob: float = 0.1  # training-time condition dropout (classifier-free guidance)
    context_dim: int = 0  # 0: no text; else cross-attention to [B, T, context_dim] + pooled text in c
    dropout: float = 0.0
    # variants that third-party weights need
    embedder_per_block: bool = False  # diffusers: each block has its own timestep/label embedders
    timestep_freq_shift: float = 0.0  # DiT 0; diffusers' DiT 1
    mlp_norm_eps: float = 1e-6  # DiT 1e-6; diffusers' DiT 1e-5

    def __post_init__(self):
        self.input_size = pair(self.input_size, "DiTConfig.input_size")
        self.check_positive_ints("patch_size", "in_channels", "width", "depth", "heads")
        grid_size(self.input_size, self.patch_size, "DiTConfig.input_size")
        if self.width % self.heads or self.width % 4:
            raise InputError(f"DiTConfig.width: expected a multiple of heads ({self.heads}) and of 4, found {self.width}")
        for name in ("num_classes", "context_dim"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise InputError(f"DiTConfig.{name}: expected an integer >= 0, found {value!r}")
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise InputError(f"DiTConfig.class_dropout_prob: expected a number in [0, 1), found {self.class_dropout_prob}")
        expected = self.in_channels * (2 if self.learn_sigma else 1)
        if self.out_channels is None:
            self.out_channels = expected
        if self.learn_sigma and self.out_channels != expected:
            raise InputError(f"DiTConfig.out_channels: expected {expected} (2 x in_channels) with learn_sigma, "
                             f"found {self.out_channels}")
        if not (isinstance(self.out_channels, int) and self.out_channels > 0):
            raise InputError(f"DiTConfig.out_channels: expected a positive integer, found {self.out_channels!r}")

    @property
    def grid(self) -> tuple[int, int]:
        return grid_size(self.input_size, self.patch_size)

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(
            width=self.width, depth=self.depth, heads=self.heads, mlp="gelu_tanh",
            mlp_hidden=int(self.width * self.mlp_ratio), norm_eps=1e-6, mlp_norm_eps=self.mlp_norm_eps,
            cross_attention=self.context_dim > 0, context_width=self.context_dim or None,
            adaln=True, positions="sinusoidal_2d", grid=self.grid, final_norm=False, dropout=self.dropout)

    @classmethod
    def preset(cls, name: str, **overrides) -> DiTConfig:
        """``dit-{s,b,l,xl}/{1,2,4,8}`` (e.g. ``dit-xl/2``): the widths, depths and heads of the DiT
        paper's sizes with that patch; ``overrides`` set any other field."""
        return cls(**preset_fields(name, "dit", PRESETS, (1, 2, 4, 8), overrides))


PRESETS = {
    "s": dict(width=384, depth=12, heads=6),
    "b": dict(width=768, depth=12, heads=12),
    "l": dict(width=1024, depth=24, heads=16),
    "xl": dict(width=1152, depth=28, heads=16),
}


# ----------------------------------------------------------------------------------- conditioning
def timestep_sinusoids(t: torch.Tensor, dim: int = FREQUENCY_DIM, freq_shift: float = 0.0,
                       max_period: float = 10000.0) -> torch.Tensor:
    """[B] (possibly fractional) timesteps -> [B, dim] float32, ``[cos | sin]`` of t times
    frequencies ``exp(-ln(max_period) i / (dim/2 - freq_shift))``, i < dim/2."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / (half - freq_shift))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, freq_shift: float = 0.0):
        super().__init__()
        self.freq_shift = freq_shift
        self.fc1 = nn.Linear(FREQUENCY_DIM, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # [B] -> [B, W]
        h = timestep_sinusoids(t, FREQUENCY_DIM, self.freq_shift).to(self.fc1.weight.dtype)
        return self.fc2(nn.functional.silu(self.fc1(h)))


class ConditionEmbedder(nn.Module):
    """c = time(t) [+ label(y)] [+ text(pooled)]: the vector adaLN modulates with."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        W = cfg.width
        self.time = TimestepEmbedder(W, cfg.timestep_freq_shift)
        self.label = nn.Embedding(cfg.num_classes + 1, W) if cfg.num_classes else None  # + the null class
        self.text = (nn.Sequential(nn.Linear(cfg.context_dim, W), nn.SiLU(), nn.Linear(W, W))
                     if cfg.context_dim else None)

    def forward(self, t, labels=None, pooled=None) -> torch.Tensor:
        c = self.time(t)
        if self.label is not None:
            c = c + self.label(labels)
        if self.text is not None:
            c = c + self.text(pooled.to(c.dtype))
        return c


class FinalLayer(nn.Module):
    """LayerNorm, shift/scale from c, linear map of each token to its patch of outputs."""

    def __init__(self, cfg: DiTConfig, backbone: BackboneConfig):
        super().__init__()
        W, p = cfg.width, cfg.patch_size
        self.norm = make_norm(backbone, affine=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(W, 2 * W))
        self.linear = nn.Linear(W, p * p * cfg.out_channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ------------------------------------------------------------------------------------------- model
class DiT(PretrainedMixin, nn.Module):
    """latents ``[B, in_channels, H, W]`` at noise level ``t`` (+ condition) -> prediction
    ``[B, out_channels, H, W]`` (ε for DDPM, velocity for SiT: the objective decides)."""

    config_class = DiTConfig

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        backbone = config.backbone()
        self.patch_embed = PatchEmbed(config.in_channels, config.width, config.patch_size)
        self.embedders = nn.ModuleList(ConditionEmbedder(config)
                                       for _ in range(config.depth if config.embedder_per_block else 1))
        self.null_context = nn.Parameter(torch.zeros(config.context_dim)) if config.context_dim else None
        self.transformer = Transformer(backbone)
        self.final = FinalLayer(config, backbone)
        self.init_weights()

    def init_weights(self) -> None:
        """DiT's: Xavier-uniform linear weights (the patch projection's as a linear map), zero
        biases, N(0, 0.02) label table, timestep and text MLPs; zero adaLN projections,
        cross-attention outputs and final layer (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        for e in self.embedders:
            for m in [e.time.fc1, e.time.fc2, *([e.text[0], e.text[2]] if e.text is not None else [])]:
                nn.init.normal_(m.weight, std=0.02)
            if e.label is not None:
                nn.init.normal_(e.label.weight, std=0.02)
        if self.null_context is not None:
            nn.init.normal_(self.null_context, std=0.02)
        zero = [self.final.ada[1], self.final.linear]
        for block in self.transformer.blocks:
            zero.append(block.ada[1])
            if block.cross_attn is not None:
                zero.append(block.cross_attn.out)
        for m in zero:
            nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------- inputs
    def _check(self, x, t, class_labels, context, context_mask, pooled, drop_condition):
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != cfg.in_channels \
                or tuple(x.shape[-2:]) != cfg.input_size or not x.is_floating_point():
            found = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"x: expected float latents [batch, {cfg.in_channels}, {cfg.input_size[0]}, "
                             f"{cfg.input_size[1]}], found {found}")
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise InputError(f"t: expected a scalar or [{B}] timesteps, found shape {tuple(t.shape)}")
        if cfg.num_classes:
            if class_labels is None:  # unconditional: the null class
                class_labels = torch.full((B,), cfg.num_classes, dtype=torch.long, device=x.device)
            class_labels = torch.as_tensor(class_labels, device=x.device)
            if class_labels.shape != (B,) or class_labels.is_floating_point() or class_labels.dtype == torch.bool \
                    or (B and (class_labels.min() < 0 or class_labels.max() > cfg.num_classes)):
                raise InputError(f"class_labels: expected [{B}] integers in 0..{cfg.num_classes} "
                                 f"({cfg.num_classes} = null class), found {class_labels.tolist()}")
        elif class_labels is not None:
            raise InputError("class_labels: expected None for a model without classes (num_classes 0), found labels")
        if cfg.context_dim:
            if context is not None and (not isinstance(context, torch.Tensor) or context.ndim != 3
                                        or context.shape[0] != B or context.shape[2] != cfg.context_dim
                                        or context.shape[1] == 0):
                found = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
                raise InputError(f"context: expected text tokens [{B}, length >= 1, {cfg.context_dim}], found {found}")
            if context_mask is not None and (context is None or tuple(context_mask.shape) != tuple(context.shape[:2])):
                raise InputError(f"context_mask: expected [batch, length] of the context (True = padding), "
                                 f"found {tuple(context_mask.shape)}")
            if pooled is not None and tuple(pooled.shape) != (B, cfg.context_dim):
                raise InputError(f"pooled: expected [{B}, {cfg.context_dim}], found {tuple(pooled.shape)}")
        elif context is not None or pooled is not None:
            raise InputError("context: expected None for a model without text (context_dim 0), found a tensor")
        if drop_condition is not None:
            drop_condition = torch.as_tensor(drop_condition, device=x.device)
            if drop_condition.shape != (B,) or drop_condition.dtype != torch.bool:
                raise InputError(f"drop_condition: expected [{B}] bools, found {tuple(drop_condition.shape)} "
                                 f"{drop_condition.dtype}")
        return t, class_labels, drop_condition

    def _text(self, context, context_mask, pooled, drop):
        """Dropped rows (and rows with no text) see only the null token; pooled text is the mean of
        the unpadded tokens unless given. -> context, context_mask (True = padding), pooled."""
        B = drop.shape[0]
        null = self.null_context
        if context is None:  # all rows unconditional
            return (null.expand(B, 1, -1), torch.zeros(B, 1, dtype=torch.bool, device=null.device),
                    null.expand(B, -1))
        T = context.shape[1]
        mask = torch.zeros(B, T, dtype=torch.bool, device=context.device) if context_mask is None \
            else context_mask.to(device=context.device, dtype=torch.bool)
        drop = drop | mask.all(dim=1)
        if pooled is None:
            keep = (~mask).unsqueeze(-1).to(context.dtype)
            pooled = (context * keep).sum(1) / keep.sum(1).clamp(min=1)
        # Always through torch.where, even when no row is dropped: the null token then gets a (zero)
        # gradient at every step, which sharded training (FSDP) needs on every rank alike.
        first = torch.arange(T, device=context.device) == 0
        null = null.to(context.dtype)
        context = torch.where((drop[:, None] & first[None])[..., None], null, context)
        mask = torch.where(drop[:, None], ~first[None], mask)
        pooled = torch.where(drop[:, None], null, pooled)
        return context, mask, pooled

    # ------------------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, t, class_labels=None, context=None, context_mask=None, pooled=None,
                drop_condition=None) -> torch.Tensor:
        """x ``[B, C, H, W]``; t ``[B]`` or a scalar (integer DDPM steps or continuous times);
        class_labels ``[B]`` long (None: the null class for every row); context ``[B, T, context_dim]``
        text tokens (None: no text for any row) with context_mask ``[B, T]`` bool (True = padding);
        pooled ``[B, context_dim]`` (default: mean of the unpadded tokens); drop_condition ``[B]``
        bool (True: the row is unconditional). -> ``[B, out_C, H, W]``."""
        cfg = self.config
        t, labels, drop = self._check(x, t, class_labels, context, context_mask, pooled, drop_condition)
        B = x.shape[0]
        if drop is None:
            drop = torch.zeros(B, dtype=torch.bool, device=x.device)
        if self.training and cfg.class_dropout_prob > 0 and (cfg.num_classes or cfg.context_dim):
            drop = drop | (torch.rand(B, device=x.device) < cfg.class_dropout_prob)
        if labels is not None:
            labels = torch.where(drop, cfg.num_classes, labels)
        if cfg.context_dim:
            context, context_mask, pooled = self._text(context, context_mask, pooled, drop)
        dtype = self.patch_embed.proj.weight.dtype
        conds = [e(t, labels, pooled) for e in self.embedders]  # each [B, W]
        h = self.patch_embed(x.to(dtype))  # [B, N, W]
        h = self.transformer(h, context=None if context is None else context.to(dtype), context_mask=context_mask,
                             cond=conds if len(conds) > 1 else conds[0])
        h = self.final(h, conds[0])  # [B, N, p * p * out_C]
        return unpatchify(h, cfg.patch_size, cfg.input_size, cfg.out_channels)
