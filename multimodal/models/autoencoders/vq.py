"""VQ-VAE: a convolutional encoder, the one quantizer, and a decoder, for audio, images or video.

Method (van den Oord et al. 2017, with VQGAN's residual blocks and EnCodec's strided stages):

1. **Rank.** ``dims`` is 1 (audio ``[B, C, samples]``), 2 (images ``[B, C, H, W]``) or 3 (video
   ``[B, C, frames, H, W]``). Only the convolutions know it: the quantizer sees ``[B, *grid, D]``.
2. **Encoder.** A 3-wide convolution to ``channels``, then per stage ``res_blocks`` residual blocks
   (GroupNorm, SiLU, convolution, twice) and a strided convolution (kernel ``2s - s mod 2``,
   padding ``(kernel - s) / 2``: exactly ``1/s`` of the length per axis), widening by
   ``channel_mult``; a 1-wide convolution to the quantizer's ``dim``.
3. **Decoder.** The mirror image, with transposed convolutions of the same kernels.
4. **Codes.** ``encode(x)`` gives codes ``[B, *grid]`` (``[B, levels, *grid]`` with residual VQ);
   ``decode(codes)`` gives the reconstruction. ``forward(x)`` is the training pass: the
   reconstruction, the codes and the quantizer's loss.

Input conventions: images in [-1, 1], audio in [-1, 1] at its own rate, video ``[B, 3, T, H, W]`` in
[-1, 1]. Each axis must be a multiple of the product of its strides (``downsample``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import PretrainedMixin
from ...config import Config
from ...errors import InputError, expect
from .quantizer import QuantizerConfig, ResidualQuantizer

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
LOSSES = ("mse", "l1", "l1+mse")


@dataclass
class VQVAEConfig(Config):
    dims: int = 2  # 1 audio, 2 images, 3 video
    in_channels: int = 3
    channels: int = 64  # width of the first stage
    channel_mult: tuple[int, ...] = (1, 2)  # width of each downsampling stage, in units of channels
    strides: tuple = (2, 2)  # per stage: one stride, or one per axis ((1, 2, 2) keeps video frames)
    res_blocks: int = 1  # residual blocks per stage
    groups: int = 16  # GroupNorm groups (divides every stage's width)
    loss: str = "l1+mse"  # reconstruction loss: mse | l1 | l1+mse
    input_size: tuple[int, ...] | None = None  # the input size it is trained on (the network is convolutional)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self):
        if isinstance(self.quantizer, dict):
            self.quantizer = QuantizerConfig.from_dict(self.quantizer, where="VQVAEConfig.quantizer")
        self.channel_mult = tuple(self.channel_mult)
        self.input_size = tuple(self.input_size) if self.input_size is not None else None
        self.strides = tuple(tuple(s) if isinstance(s, (list, tuple)) else s for s in self.strides)
        expect(self.dims in (1, 2, 3), "VQVAEConfig.dims", "1 (audio), 2 (images) or 3 (video)", repr(self.dims))
        expect(len(self.strides) == len(self.channel_mult), "VQVAEConfig.strides",
               f"one stride per stage ({len(self.channel_mult)})", repr(self.strides))
        for s in self.strides:
            per_axis = s if isinstance(s, tuple) else (s,) * self.dims
            expect(len(per_axis) == self.dims and all(isinstance(a, int) and a >= 1 for a in per_axis),
                   "VQVAEConfig.strides", f"positive integers, one per axis ({self.dims})", repr(s))
        widths = [self.channels * m for m in self.channel_mult] + [self.channels]
        expect(all(w % self.groups == 0 for w in widths), "VQVAEConfig.groups",
               f"a divisor of every stage's width {widths}", repr(self.groups))
        expect(self.loss in LOSSES, "VQVAEConfig.loss", f"one of {', '.join(LOSSES)}", repr(self.loss))

    def axis_strides(self) -> list[tuple[int, ...]]:
        return [s if isinstance(s, tuple) else (s,) * self.dims for s in self.strides]

    @property
    def downsample(self) -> tuple[int, ...]:
        """How many input positions one code covers, per axis."""
        return tuple(math.prod(axis) for axis in zip(*self.axis_strides()))

    def grid(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """The code grid of an input of spatial ``size``."""
        return tuple(n // d for n, d in zip(size, self.downsample))


def _kernel(stride: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    kernel = tuple(2 * s - s % 2 for s in stride)
    return kernel, tuple((k - s) // 2 for k, s in zip(kernel, stride))


class ResBlock(nn.Module):
    def __init__(self, dims: int, width: int, groups: int):
        super().__init__()
        conv = CONV[dims]
        self.body = nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(), conv(width, width, 3, padding=1),
                                  nn.GroupNorm(groups, width), nn.SiLU(), conv(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, c: VQVAEConfig):
        super().__init__()
        conv = CONV[c.dims]
        layers: list[nn.Module] = [conv(c.in_channels, c.channels, 3, padding=1)]
        width = c.channels
        for mult, stride in zip(c.channel_mult, c.axis_strides()):
            layers += [ResBlock(c.dims, width, c.groups) for _ in range(c.res_blocks)]
            kernel, padding = _kernel(stride)
            layers.append(conv(width, c.channels * mult, kernel, stride=stride, padding=padding))
            width = c.channels * mult
        layers += [ResBlock(c.dims, width, c.groups), nn.GroupNorm(c.groups, width), nn.SiLU(),
                   conv(width, c.quantizer.dim, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    def __init__(self, c: VQVAEConfig):
        super().__init__()
        conv, conv_t = CONV[c.dims], CONV_T[c.dims]
        widths = [c.channels * m for m in c.channel_mult]
        width = widths[-1]
        layers: list[nn.Module] = [conv(c.quantizer.dim, width, 3, padding=1), ResBlock(c.dims, width, c.groups)]
        for i in reversed(range(len(widths))):
            out = widths[i - 1] if i > 0 else c.channels
            kernel, padding = _kernel(c.axis_strides()[i])
            layers.append(conv_t(width, out, kernel, stride=c.axis_strides()[i], padding=padding))
            width = out
            layers += [ResBlock(c.dims, width, c.groups) for _ in range(c.res_blocks)]
        layers += [nn.GroupNorm(c.groups, width), nn.SiLU(), conv(width, c.in_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class VQVAE(PretrainedMixin, nn.Module):
    """``encode(x) -> codes``, ``decode(codes) -> x``, ``forward(x) -> (recon, codes, loss)``."""

    config_class = VQVAEConfig

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualQuantizer(config.quantizer)
        self.decoder = Decoder(config)

    # ------------------------------------------------------------------------------- checks
    def _check_input(self, x) -> torch.Tensor:
        c = self.config
        kind = {1: "[batch, channels, samples]", 2: "[batch, channels, height, width]",
                3: "[batch, channels, frames, height, width]"}[c.dims]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError(f"x: expected a float tensor {kind}, found "
                             f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim != c.dims + 2 or x.shape[1] != c.in_channels:
            raise InputError(f"x: expected {kind} with {c.in_channels} channels, found shape {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        if any(n % d for n, d in zip(size, c.downsample)) or any(n == 0 for n in size):
            raise InputError(f"x: expected each axis a positive multiple of {c.downsample}, found {size}")
        return x.to(next(self.parameters()).dtype)

    # -------------------------------------------------------------------------------- codes
    def _to_grid(self, z: torch.Tensor) -> torch.Tensor:  # [B, D, *grid] -> [B, *grid, D]
        return z.movedim(1, -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x -> codes ``[B, *grid]`` (``[B, levels, *grid]`` with residual VQ), a LongTensor."""
        return self.quantizer.encode(self._to_grid(self.encoder(self._check_input(x))))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes -> reconstruction ``[B, in_channels, *size]``; codes out of range or of a grid with
        fewer than one position per axis are an InputError."""
        codes = self.quantizer.check_codes(codes)
        grid_axes = codes.ndim - (1 if self.config.quantizer.levels == 1 else 2)
        if grid_axes != self.config.dims or codes.shape[0] == 0 or any(n == 0 for n in codes.shape[-grid_axes:]):
            raise InputError(f"codes: expected [batch, {'levels, ' if self.config.quantizer.levels > 1 else ''}"
                             f"{', '.join(['n'] * self.config.dims)}], found shape {tuple(codes.shape)}")
        z = self.quantizer.decode(codes.to(next(self.parameters()).device))
        return self.decoder(z.movedim(-1, 1))

    # ----------------------------------------------------------------------------- training
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pass: (reconstruction, codes, quantizer loss)."""
        z = self._to_grid(self.encoder(self._check_input(x)))
        quantized, codes, vq_loss = self.quantizer(z)
        return self.decoder(quantized.movedim(-1, 1)), codes, vq_loss

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """(total loss, its parts as numbers, codes) for a batch ``x``."""
        recon, codes, vq_loss = self(x)
        total, parts = training_loss(recon, x, vq_loss, self.config.loss)
        return total, {k: float(v) for k, v in parts.items()}, codes


def training_loss(recon: torch.Tensor, x: torch.Tensor, vq_loss: torch.Tensor, kind: str):
    """(total, detached parts): the reconstruction terms of ``kind`` (mse, l1 or l1+mse, means over
    values) plus the quantizer's loss."""
    recon, target = recon.float(), x.float()
    parts = {}
    if "mse" in kind:
        parts["mse"] = F.mse_loss(recon, target)
    if "l1" in kind:
        parts["l1"] = F.l1_loss(recon, target)
    total = sum(parts.values()) + vq_loss
    return total, {**{k: v.detach() for k, v in parts.items()}, "vq": vq_loss.detach()}
