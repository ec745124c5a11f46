"""Image patches: the image tokenizer of ViT and DiT.

An image ``[B, C, H, W]`` is cut into non-overlapping ``p_h x p_w`` patches in row-major order over
the ``(H / p_h) x (W / p_w)`` grid. ``patchify`` flattens each patch to a vector laid out
``(row, column, channel)`` inside the patch, the layout of MAE's ``patchify`` and of DiT's final
layer (its ``unpatchify`` reads ``[..., p, p, c]``), so DiT outputs map back to pixels with
``unpatchify`` unchanged. ``PatchEmbed`` is the learned tokenizer: a convolution whose kernel equals
its stride (timm's and Hugging Face's layout), which is a linear map of each patch. ``ConvStem`` is
the alternative with early convolutions (overlapping receptive fields) on the same token grid.

Learned position tables trained at one grid are resampled to another with ``resize_pos_embed``
(bicubic, as timm's ``resample_abs_pos_embed``), which is what lets a ViT run at any resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import InputError

Size2 = tuple[int, int]


def pair(value: int | Size2 | list[int], name: str) -> Size2:
    """``7`` -> ``(7, 7)``; ``(h, w)`` stays; anything but positive integers is an InputError."""
    hw = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else None
    if hw is None or len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise InputError(f"{name}: expected a positive integer or a pair (height, width) of them, found {value!r}")
    return hw


def grid_size(image_hw: Size2, patch: int | Size2, name: str = "images") -> Size2:
    """Patch rows and columns of an image of ``image_hw``; sides must be multiples of the patch."""
    ph, pw = pair(patch, "patch")
    h, w = image_hw
    if h % ph or w % pw or h == 0 or w == 0:
        raise InputError(f"{name}: expected height and width that are positive multiples of the patch size "
                         f"{ph}x{pw}, found {h}x{w}")
    return h // ph, w // pw


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"{name}: expected a tensor [batch, channels, height, width], found {found}")


def patchify(images: torch.Tensor, patch: int | Size2) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, N, p_h * p_w * C]``, N = (H / p_h)(W / p_w) patches in row-major order,
    each flattened as (row, column, channel)."""
    _check_images(images)
    ph, pw = pair(patch, "patch")
    grid_size(tuple(images.shape[-2:]), (ph, pw))
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=ph, p2=pw)


def unpatchify(tokens: torch.Tensor, patch: int | Size2, image_size: int | Size2, channels: int) -> torch.Tensor:
    """Inverse of ``patchify``: ``[B, N, p_h * p_w * C]`` -> ``[B, C, H, W]``."""
    ph, pw = pair(patch, "patch")
    H, W = pair(image_size, "image_size")
    rows, cols = grid_size((H, W), (ph, pw), "image_size")
    if not isinstance(channels, int) or channels <= 0:
        raise InputError(f"channels: expected a positive integer, found {channels!r}")
    expected = (rows * cols, ph * pw * channels)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected:
        found = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise InputError(f"tokens: expected [batch, {expected[0]}, {expected[1]}] for {H}x{W} images of {channels} "
                         f"channels in {ph}x{pw} patches, found {found}")
    return rearrange(tokens, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=rows, w=cols, p1=ph, p2=pw)


class _ImageTokenizer(nn.Module):
    """What PatchEmbed and ConvStem share: input checks, the token grid, and ``[B, W, h, w]`` feature
    maps (``feature_maps``, per subclass) flattened to tokens ``[B, h*w, W]`` in row-major order."""

    patch: Size2
    in_channels: int

    def grid(self, height: int, width: int) -> Size2:
        return grid_size((height, width), self.patch)

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        if images.shape[1] != self.in_channels:
            raise InputError(f"images: expected {self.in_channels} channels, found {images.shape[1]} "
                             f"(shape {tuple(images.shape)})")
        self.grid(*images.shape[-2:])
        return self.feature_maps(images).flatten(2).transpose(1, 2)  # [B, W, h, w] -> [B, h*w, W]


class PatchEmbed(_ImageTokenizer):
    """images ``[B, C, H, W]`` -> tokens ``[B, N, width]``: one linear map per patch, computed as a
    convolution with kernel = stride = patch (``proj``, timm's name). Any H, W that are multiples of
    the patch are accepted; ``grid(H, W)`` says the resulting token grid."""

    def __init__(self, in_channels: int, width: int, patch: int | Size2, bias: bool = True):
        super().__init__()
        self.patch = pair(patch, "patch")
        self.in_channels = in_channels
        self.proj = nn.Conv2d(in_channels, width, kernel_size=self.patch, stride=self.patch, bias=bias)

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images)


class ConvStem(_ImageTokenizer):
    """images ``[B, C, H, W]`` -> tokens ``[B, N, width]`` through early convolutions instead of one
    linear map per patch (Xiao et al., 2021, "Early Convolutions Help Transformers See Better"):
    log2(p) 3x3 convolutions of stride 2, each followed by BatchNorm and ReLU, with channels rising to
    ``width`` (``width / 2**(k-1)``, ..., ``width / 2``, ``width``), then a 1x1 convolution (``proj``)
    to the token width. The token grid is the patch grid of ``PatchEmbed`` with the same ``patch``, so
    positions and everything after the tokenizer are unchanged; the receptive fields overlap (7 pixels
    for patch 4), a locality bias that helps small ViTs on small data sets: on Fashion-MNIST the
    recipe ViT with this stem led the linear one by 1.8 points of validation accuracy at step 3,000,
    at some extra cost per step (see the vit-fashion-mnist card notes).
    ``patch`` must be a power of two (2, 4, 8, ...), square."""

    def __init__(self, in_channels: int, width: int, patch: int | Size2):
        super().__init__()
        self.patch = pair(patch, "patch")
        p = self.patch[0]
        if self.patch[0] != self.patch[1] or p < 2 or p & (p - 1):
            raise InputError(f"patch: a convolutional stem needs a square power-of-two patch (2, 4, 8, ...), "
                             f"found {self.patch[0]}x{self.patch[1]}")
        self.in_channels = in_channels
        layers, channels = [], in_channels
        steps = p.bit_length() - 1
        for i in range(steps):
            out = max(width >> (steps - 1 - i), 8)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, width, kernel_size=1)
        for m in self.stem:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(images))


def resize_pos_embed(pos: torch.Tensor, old_grid: Size2, new_grid: Size2, num_prefix_tokens: int = 1,
                     antialias: bool = True) -> torch.Tensor:
    """Resample a learned position table from one patch grid to another.

    ``pos``: ``[P + rows * cols, D]`` or ``[1, P + rows * cols, D]`` with P = ``num_prefix_tokens``
    entries (class token, registers) first, kept as they are; the grid part is interpolated
    bicubically in float32 and returned in ``pos``'s dtype and rank. ``antialias`` as timm
    (True; only matters when shrinking, but also changes the cubic kernel: PyTorch's antialiased
    bicubic is PIL's, a = -0.5, the plain one a = -0.75). Hugging Face's ViT uses antialias=False.
    """
    old_grid, new_grid = pair(old_grid, "old_grid"), pair(new_grid, "new_grid")
    if not isinstance(pos, torch.Tensor) or pos.ndim not in (2, 3) or (pos.ndim == 3 and pos.shape[0] != 1):
        found = tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__
        raise InputError(f"pos: expected a position table [tokens, dim] or [1, tokens, dim], found {found}")
    table = pos if pos.ndim == 2 else pos[0]
    n = num_prefix_tokens + old_grid[0] * old_grid[1]
    if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0 or table.shape[0] != n:
        raise InputError(f"pos: expected {n} entries ({num_prefix_tokens} prefix + {old_grid[0]}x{old_grid[1]} grid), "
                         f"found {table.shape[0]}")
    if old_grid == new_grid:
        return pos
    prefix, grid = table[:num_prefix_tokens], table[num_prefix_tokens:]
    grid = rearrange(grid.float(), "(h w) d -> 1 d h w", h=old_grid[0], w=old_grid[1])
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=antialias)
    out = torch.cat([prefix, rearrange(grid, "1 d h w -> (h w) d").to(table.dtype)])
    return out if pos.ndim == 2 else out[None]
