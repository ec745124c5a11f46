"""Image latents: diffusers' ``AutoencoderKL`` in a small config, the latent space of text-to-image.

The autoencoder itself is a commodity part, so it is diffusers' own module (``Autoencoder.vae``, a
plain ``diffusers.AutoencoderKL``); this file adds what the suite needs around it:

1. **Config.** ``AutoencoderConfig`` holds the constructor fields we use. The default maps a 32x32
   RGB image to 8x8x4 latents: three encoder stages of 32, 64 and 128 channels, of which the first two
   halve the resolution (diffusers never downsamples after its last block), one ResNet layer each,
   and self-attention in the 8x8 middle block.
2. **Latent scale.** A diffusion model wants latents of unit variance. ``scaling_factor`` and
   ``shift_factor`` are measured from data after training (``measure_latent_scale``: 1 / std and mean
   of the posterior means over a sample of training images, one number each, as diffusers stores
   them), and ``encode`` returns ``(z - shift) * scale``; ``decode`` inverts that before the decoder.
3. **Images.** ``encode`` takes uint8 images (0-255) or floats in [-1, 1]; ``decode`` returns floats
   clamped to [-1, 1]. ``forward`` is the training pass: the raw reconstruction and the KL of the
   posterior against N(0, I) per image.

Checkpoints are our folder format (``config.json`` + ``model.safetensors``, weights under ``vae.``).
``reconstruction_psnr`` measures how well images come back, in dB on the [0, 1] scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import PretrainedMixin
from ..config import Config
from ..errors import InputError


# ------------------------------------------------------------------------------------------ config
@dataclass
class AutoencoderConfig(Config):
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 128)  # one encoder stage each; all but the last halve H, W
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16
    act_fn: str = "silu"
    mid_block_add_attention: bool = True
    sample_size: int = 32  # the image side it is trained on (the network itself is convolutional)
    scaling_factor: float = 1.0  # measured from data: encode returns (z - shift_factor) * scaling_factor
    shift_factor: float = 0.0

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        self.check_positive_ints("in_channels", "layers_per_block", "latent_channels", "norm_num_groups", "sample_size")
        channels = self.block_out_channels
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in channels):
            raise InputError(f"AutoencoderConfig.block_out_channels: expected positive integers, found {channels!r}")
        if any(c % self.norm_num_groups for c in channels):
            raise InputError(f"AutoencoderConfig.norm_num_groups: expected a divisor of every block's channels "
                             f"{channels}, found {self.norm_num_groups}")
        if self.sample_size % self.downsample_factor:
            raise InputError(f"AutoencoderConfig.sample_size: expected a multiple of {self.downsample_factor}, "
                             f"found {self.sample_size}")
        if not (isinstance(self.scaling_factor, (int, float)) and self.scaling_factor > 0):
            raise InputError(f"AutoencoderConfig.scaling_factor: expected a number > 0, found {self.scaling_factor!r}")
        if not isinstance(self.shift_factor, (int, float)):
            raise InputError(f"AutoencoderConfig.shift_factor: expected a number, found {self.shift_factor!r}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.sample_size // self.downsample_factor

    def diffusers_kwargs(self) -> dict:
        """The ``diffusers.AutoencoderKL(**kwargs)`` of this config."""
        n = len(self.block_out_channels)
        return dict(in_channels=self.in_channels, out_channels=self.in_channels,
                    down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                    block_out_channels=self.block_out_channels, layers_per_block=self.layers_per_block,
                    act_fn=self.act_fn, latent_channels=self.latent_channels, norm_num_groups=self.norm_num_groups,
                    sample_size=self.sample_size, scaling_factor=float(self.scaling_factor),
                    shift_factor=float(self.shift_factor), mid_block_add_attention=self.mid_block_add_attention)


# ------------------------------------------------------------------------------------------- model
class Autoencoder(PretrainedMixin, nn.Module):
    """``AutoencoderKL`` with scaled latents, checked inputs and our checkpoint format."""

    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        from diffusers import AutoencoderKL  # here: importing diffusers takes seconds that other commands need not pay

        self.vae = AutoencoderKL(**config.diffusers_kwargs())

    def set_latent_scale(self, scaling_factor: float, shift_factor: float) -> None:
        """Store measured latent statistics in the config (and the diffusers module's, to match)."""
        self.config = self.config.replace(scaling_factor=float(scaling_factor), shift_factor=float(shift_factor))
        self.vae.register_to_config(scaling_factor=float(scaling_factor), shift_factor=float(shift_factor))

    # ------------------------------------------------------------------------------- checks
    def _images(self, images, name: str = "images") -> torch.Tensor:
        """uint8 [B, C, H, W] in 0-255 or float in [-1, 1] -> float [-1, 1] on the model's device."""
        cfg, param = self.config, next(self.parameters())
        if not isinstance(images, torch.Tensor):
            raise InputError(f"{name}: expected a tensor [batch, {cfg.in_channels}, H, W], "
                             f"found {type(images).__name__}")
        f = cfg.downsample_factor
        if images.ndim != 4 or images.shape[1] != cfg.in_channels or images.shape[0] == 0 \
                or images.shape[2] % f or images.shape[3] % f:
            raise InputError(f"{name}: expected images [batch >= 1, {cfg.in_channels}, H, W] with H and W multiples "
                             f"of {f}, found shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.to(param.device, param.dtype) / 127.5 - 1
        if not images.is_floating_point():
            raise InputError(f"{name}: expected uint8 (0-255) or float (-1 to 1) images, found dtype {images.dtype}")
        if not torch.isfinite(images).all():
            raise InputError(f"{name}: expected finite values, found NaN or infinity")
        low, high = images.min().item(), images.max().item()
        if low < -1 - 1e-3 or high > 1 + 1e-3:
            raise InputError(f"{name}: expected float images in [-1, 1] (uint8 for 0-255), found values in "
                             f"[{low:.3g}, {high:.3g}]")
        return images.to(param.device, param.dtype)

    def _latents(self, latents) -> torch.Tensor:
        cfg, param = self.config, next(self.parameters())
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point() or latents.ndim != 4 \
                or latents.shape[1] != cfg.latent_channels or latents.shape[0] == 0:
            found = f"shape {tuple(latents.shape)} {latents.dtype}" if isinstance(latents, torch.Tensor) \
                else type(latents).__name__
            raise InputError(f"latents: expected float latents [batch >= 1, {cfg.latent_channels}, h, w], "
                             f"found {found}")
        if not torch.isfinite(latents).all():
            raise InputError("latents: expected finite values, found NaN or infinity")
        return latents.to(param.device, param.dtype)

    # ------------------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: images -> (reconstruction float [B, C, H, W], unclamped; KL to N(0, I) [B],
        summed over latent elements). Checks nothing: it runs once per training step on trusted data."""
        x = images / 127.5 - 1 if images.dtype == torch.uint8 else images
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.vae.decode(z).sample, posterior.kl()

    def encode(self, images: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """images uint8 [B, C, H, W] or float in [-1, 1] -> scaled latents [B, latent_channels, H/f, W/f]:
        the posterior mean (or, with ``sample``, a draw from it), minus ``shift_factor``, times
        ``scaling_factor``."""
        x = self._images(images)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator) if sample else posterior.mode()
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, latent_channels, h, w] -> images float [B, C, h*f, w*f] in [-1, 1]."""
        z = self._latents(latents) / self.config.scaling_factor + self.config.shift_factor
        return self.vae.decode(z).sample.clamp(-1, 1)


# ---------------------------------------------------------------------------------- measurements
def _batches(images: torch.Tensor, batch_size: int):
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        found = f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images: expected a batch of images [N >= 1, C, H, W], found {found}")
    return images.split(batch_size)


@torch.no_grad()
def measure_latent_scale(model: Autoencoder, images: torch.Tensor, batch_size: int = 250) -> tuple[float, float]:
    """(scaling_factor, shift_factor) = (1 / std, mean) of the unscaled posterior means of ``images``
    over every latent element: after ``model.set_latent_scale(*these)``, ``encode(images)`` has mean 0
    and variance 1."""
    was = model.training
    model.eval()
    total, total_sq, count = 0.0, 0.0, 0
    for part in _batches(images, batch_size):
        z = model.vae.encode(model._images(part)).latent_dist.mode().double()
        total, total_sq, count = total + z.sum().item(), total_sq + z.square().sum().item(), count + z.numel()
    model.train(was)
    mean = total / count
    std = max(total_sq / count - mean ** 2, 0.0) ** 0.5
    if not std > 0:
        raise InputError("images: expected images whose latents vary, found latents of zero variance")
    return 1 / std, mean


@torch.no_grad()
def reconstruction_psnr(model: Autoencoder, images: torch.Tensor, batch_size: int = 250) -> float:
    """Mean over images of the PSNR in dB (peak 1, images on [0, 1]) of ``decode(encode(images))``
    (posterior means) against ``images``."""
    was = model.training
    model.eval()
    values = []
    for part in _batches(images, batch_size):
        x = model._images(part)
        y = model.decode(model.encode(x))
        mse = ((y - x) / 2).square().flatten(1).mean(1).clamp(min=1e-10)  # on [0, 1]: half the [-1, 1] error
        values.append(-10 * torch.log10(mse).double().cpu())
    model.train(was)
    return torch.cat(values).mean().item()
