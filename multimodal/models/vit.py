"""Vision Transformer (Dosovitskiy et al., 2021), as timm's ``VisionTransformer``, on the shared backbone.

Method
------
1. **Patches.** An image ``[B, C, H, W]`` is cut into ``p x p`` patches, each mapped linearly to a
   token (``PatchEmbed``: a convolution with kernel = stride = p): ``[B, N, W]``, N = (H/p)(W/p).
   ``stem="conv"`` replaces the linear map by early convolutions on the same grid (``ConvStem``,
   Xiao et al. 2021: 3x3 stride-2 convolutions with BatchNorm and ReLU, then a 1x1 projection), which
   learns more per epoch on small data sets; timm and Hugging Face checkpoints use ``"patch"``.
2. **Class token and positions.** A learned class token is prepended (``class_token``) and a learned
   position table ``pos_embed`` ``[1, 1 + N, W]`` is added, its first row belonging to the class
   token (timm's and the original JAX layout). At a resolution other than ``image_size`` the grid part
   of the table is resampled bicubically (``resize_pos_embed``), so the model runs at any size whose
   sides are multiples of p.
3. **Encoder.** A bidirectional stack of pre-norm backbone blocks: LayerNorm (eps 1e-6, timm's),
   multi-head self-attention, exact-GELU MLP of ``mlp_ratio`` x width; optional stochastic depth and
   LayerScale. ``pre_norm`` adds a LayerNorm before the blocks (CLIP's ViT).
4. **Head.** ``global_pool="token"`` reads the class token after the final LayerNorm; ``"avg"``
   averages the patch tokens and normalises after pooling (``fc_norm``, timm's default for avg);
   dropout and a linear classifier give the logits.

The position table lives here rather than in the backbone (``positions="none"`` there): it covers the
class token and a 2-D grid, and resizing it needs both, so third-party tables load unchanged.

Besides the network, the config carries what a pipeline needs to feed it: ``labels``, and the
preprocessing (``image_mode``, ``resize``, ``crop_pct``, ``interpolation``, ``image_mean`` /
``image_std``) that ``multimodal.media.images.preprocess`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import BackboneConfig, Transformer, make_norm
from ..checkpoint import PretrainedMixin
from ..config import Config, preset_fields
from ..errors import InputError
from ..tokenizers.patches import ConvStem, PatchEmbed, grid_size, pair, resize_pos_embed

POOLS = ("token", "avg")
STEMS = ("patch", "conv")
IMAGE_MODES = {"L": 1, "RGB": 3, "RGBA": 4}
RESIZES = ("squash", "shorter")  # squash: to image_size exactly; shorter: shorter side, then center crop
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


# ------------------------------------------------------------------------------------------ config
@dataclass
class ViTConfig(Config):
    # network
    image_size: int | tuple[int, int] = 224  # (height, width) the position table is trained at
    patch_size: int = 16
    stem: str = "patch"  # patch: one linear map per patch (ViT); conv: early convolutions (ConvStem)
    in_channels: int = 3
    num_classes: int = 1000  # 0: no classifier, forward returns pooled features
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"  # token | avg
    fc_norm: bool | None = None  # final norm after pooling instead of before; None: timm's default (avg)
    pre_norm: bool = False  # LayerNorm before the blocks (CLIP); the patch projection then has no bias
    norm_eps: float = 1e-6
    layer_scale: float | None = None  # initial LayerScale value (DeiT-III / CaiT); None: off
    drop_path: float = 0.0
    dropout: float = 0.0  # attention and MLP dropout inside the blocks
    head_dropout: float = 0.0
    pos_embed_antialias: bool = True  # resize_pos_embed's antialias: timm True, Hugging Face False
    # what the pipeline reads
    labels: list[str] | None = None
    image_mode: str | None = None  # PIL mode inputs are converted to: L (1 channel), RGB (3), RGBA (4)
    resize: str = "squash"
    crop_pct: float = 1.0  # with resize="shorter": resize the shorter side to size / crop_pct, crop size
    interpolation: str = "bicubic"
    image_mean: tuple[float, ...] | None = None  # per channel, on [0, 1] pixels; None: 0.5 each
    image_std: tuple[float, ...] | None = None

    def __post_init__(self):
        self.image_size = pair(self.image_size, "ViTConfig.image_size")
        self.check_positive_ints("patch_size", "in_channels", "width", "depth", "heads")
        grid_size(self.image_size, self.patch_size, "ViTConfig.image_size")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 0):
            raise InputError(f"ViTConfig.num_classes: expected an integer >= 0, found {self.num_classes!r}")
        if self.width % self.heads:
            raise InputError(f"ViTConfig.width: expected a multiple of heads ({self.heads}), found {self.width}")
        if self.stem not in STEMS:
            raise InputError(f"ViTConfig.stem: expected one of {', '.join(STEMS)}, found {self.stem!r}")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise InputError(f"ViTConfig.patch_size: a convolutional stem needs a power of two (2, 4, 8, ...), "
                             f"found {self.patch_size}")
        if self.global_pool not in POOLS:
            raise InputError(f"ViTConfig.global_pool: expected one of {', '.join(POOLS)}, found {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise InputError("ViTConfig.global_pool: expected 'avg' for a model without a class token, found 'token'")
        if self.labels is not None:
            self.labels = [str(label) for label in self.labels]
            if len(self.labels) != self.num_classes:
                raise InputError(f"ViTConfig.labels: expected {self.num_classes} names (num_classes), "
                                 f"found {len(self.labels)}")
        if self.image_mode is None:
            modes = {c: m for m, c in IMAGE_MODES.items()}
            if self.in_channels not in modes:
                raise InputError(f"ViTConfig.image_mode: expected a mode for {self.in_channels} channels, found none")
            self.image_mode = modes[self.in_channels]
        if IMAGE_MODES.get(self.image_mode) != self.in_channels:
            raise InputError(f"ViTConfig.image_mode: expected a PIL mode with {self.in_channels} channels "
                             f"({', '.join(IMAGE_MODES)}), found {self.image_mode!r}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            value = (0.5,) * self.in_channels if value is None else tuple(float(v) for v in value)
            if len(value) != self.in_channels or (name == "image_std" and min(value) <= 0):
                raise InputError(f"ViTConfig.{name}: expected {self.in_channels} numbers"
                                 f"{' > 0' if name == 'image_std' else ''}, found {value}")
            setattr(self, name, value)
        if self.resize not in RESIZES:
            raise InputError(f"ViTConfig.resize: expected one of {', '.join(RESIZES)}, found {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"ViTConfig.interpolation: expected one of {', '.join(INTERPOLATIONS)}, "
                             f"found {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1:
            raise InputError(f"ViTConfig.crop_pct: expected a number in (0, 1], found {self.crop_pct}")

    @property
    def grid(self) -> tuple[int, int]:
        return grid_size(self.image_size, self.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token)

    @property
    def use_fc_norm(self) -> bool:
        return self.global_pool == "avg" if self.fc_norm is None else self.fc_norm

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(
            width=self.width, depth=self.depth, heads=self.heads, mlp="gelu",
            mlp_hidden=int(self.width * self.mlp_ratio), norm_eps=self.norm_eps, qkv_bias=self.qkv_bias,
            positions="none", final_norm=not self.use_fc_norm, dropout=self.dropout, drop_path=self.drop_path,
            layer_scale=self.layer_scale)

    @classmethod
    def preset(cls, name: str, **overrides) -> ViTConfig:
        """``vit-{ti,s,b,l}/{4,8,16,32}`` (e.g. ``vit-s/16``): the widths, depths and heads of
        ViT-Tiny/Small/Base/Large with that patch size; ``overrides`` set any other field."""
        return cls(**preset_fields(name, "vit", PRESETS, (4, 8, 16, 32), overrides))


PRESETS = {
    "ti": dict(width=192, depth=12, heads=3),
    "s": dict(width=384, depth=12, heads=6),
    "b": dict(width=768, depth=12, heads=12),
    "l": dict(width=1024, depth=24, heads=16),
}


# ------------------------------------------------------------------------------------------- model
class ViT(PretrainedMixin, nn.Module):
    """images ``[B, in_channels, H, W]`` (float, normalised by image_mean / image_std; H, W multiples
    of patch_size) -> logits ``[B, num_classes]`` (or pooled features ``[B, width]`` when
    num_classes is 0). Parameter names follow timm's (``patch_embed.proj``, ``cls_token``,
    ``pos_embed``, ``fc_norm``, ``head``); the blocks are ``transformer.blocks.*``."""

    config_class = ViTConfig

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        W, P = config.width, config.num_prefix_tokens
        rows, cols = config.grid
        if config.stem == "conv":
            self.patch_embed = ConvStem(config.in_channels, W, config.patch_size)
        else:
            self.patch_embed = PatchEmbed(config.in_channels, W, config.patch_size, bias=not config.pre_norm)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, W)) if config.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, P + rows * cols, W))
        backbone = config.backbone()
        self.norm_pre = make_norm(backbone) if config.pre_norm else nn.Identity()
        self.transformer = Transformer(backbone)
        self.fc_norm = make_norm(backbone) if config.use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(W, config.num_classes) if config.num_classes else nn.Identity()
        self._resized: dict[tuple[int, int], tuple[tuple, torch.Tensor]] = {}
        self.init_weights()

    def init_weights(self) -> None:
        """timm's: truncated-normal (std .02) linear weights and positions, zero biases, class token
        N(0, 1e-6); the patch projection keeps PyTorch's convolution init, the norms ones and zeros
        (a convolutional stem initialises its 3x3 convolutions itself, He-normal)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW should not shrink (timm's convention; the trainer reads it)."""
        return {"pos_embed", "cls_token"}

    @property
    def labels(self) -> list[str]:
        return self.config.labels or [str(i) for i in range(self.config.num_classes)]

    # ------------------------------------------------------------------------------- positions
    def position_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """``pos_embed`` for a ``rows x cols`` patch grid: as stored at the config's grid, else
        resampled. Outside autograd the resampled table is cached per grid until the weights change."""
        cfg = self.config
        if grid == cfg.grid:
            return self.pos_embed
        if torch.is_grad_enabled() and self.pos_embed.requires_grad:
            return self._resize(grid)
        p = self.pos_embed
        key = (p.data_ptr(), p._version, p.dtype, p.device)
        hit = self._resized.get(grid)
        if hit is None or hit[0] != key:
            hit = self._resized[grid] = (key, self._resize(grid).detach())
        return hit[1]

    def _resize(self, grid: tuple[int, int]) -> torch.Tensor:
        cfg = self.config
        return resize_pos_embed(self.pos_embed, cfg.grid, grid, cfg.num_prefix_tokens, cfg.pos_embed_antialias)

    @torch.no_grad()
    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """Resample the position table to a new training resolution for good (timm's
        ``set_input_size``), e.g. before fine-tuning at a higher resolution."""
        cfg = self.config
        new = pair(image_size, "image_size")
        grid = grid_size(new, cfg.patch_size, "image_size")
        table = resize_pos_embed(self.pos_embed.detach(), cfg.grid, grid, cfg.num_prefix_tokens,
                                 cfg.pos_embed_antialias)
        self.pos_embed = nn.Parameter(table.clone(), requires_grad=self.pos_embed.requires_grad)
        self.config = cfg.replace(image_size=new)
        self._resized.clear()

    # --------------------------------------------------------------------------------- forward
    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, C, H, W]`` -> normalised tokens ``[B, prefix + N, W]`` (the final norm is
        applied here unless the model normalises after pooling)."""
        cfg = self.config
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != cfg.in_channels:
            found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"images: expected a tensor [batch, {cfg.in_channels}, height, width], found {found}")
        if not images.is_floating_point():
            raise InputError(f"images: expected normalised floating-point pixels, found dtype {images.dtype} "
                             "(multimodal.media.images.normalize converts uint8 images)")
        grid = grid_size(tuple(images.shape[-2:]), cfg.patch_size, "images")
        x = self.patch_embed(images.to(self.pos_embed.dtype))  # [B, N, W]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # [B, 1 + N, W]
        x = x + self.position_table(grid)
        return self.transformer(self.norm_pre(x))

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """tokens ``[B, prefix + N, W]`` -> logits ``[B, num_classes]`` (features ``[B, W]`` with pre_logits)."""
        if self.config.global_pool == "token":
            x = tokens[:, 0]
        else:  # the mean of the patch tokens, prefix tokens excluded (timm)
            x = tokens[:, self.config.num_prefix_tokens:].mean(dim=1)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
