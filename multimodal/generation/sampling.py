"""What the samplers share: the model-function convention, noise drawn from a caller's generator,
and the checks of steps, guidance and initial latents.

The DDPM objective (``diffusion.py``) and the stochastic interpolants (``transport.py``) train and
sample the same network, a ``model_fn(x, t, drop_condition=None, **model_kwargs)``
returning ``[B, C or 2C, H, W]`` (``DiT.forward`` is one); only its first C channels are the
prediction (ε or velocity), the rest being DiT's learned-variance channels, which these objectives
neither train nor use (diffusers' ``DiTPipeline`` discards them the same way).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import InputError

MAX_STEPS = 1000

ModelFn = Callable[..., torch.Tensor]


def randn(shape, generator, device, dtype) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (so a CPU seed gives the same numbers
    whatever device the model runs on), then moved."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def rand(shape, generator, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def check_steps(steps, limit: int = MAX_STEPS) -> int:
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= limit):
        raise InputError(f"steps: expected an integer from 1 to {limit}, found {steps!r}")
    return steps


def check_guidance(guidance_scale) -> float:
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
            or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise InputError(f"guidance_scale: expected a finite number >= 0 (1 = no guidance), found {guidance_scale!r}")
    return float(guidance_scale)


def initial_noise(shape, latents, generator, device, dtype) -> torch.Tensor:
    if latents is not None:
        if not isinstance(latents, torch.Tensor) or latents.ndim < 2:
            raise InputError(f"latents: expected a tensor [batch, channels, ...], found {type(latents).__name__}")
        return latents.to(device=device or latents.device, dtype=dtype)
    if not (isinstance(shape, (tuple, list, torch.Size)) and len(shape) >= 2
            and all(isinstance(s, int) and s > 0 for s in shape)):
        raise InputError(f"shape: expected (batch, channels, height, width) of positive integers, found {shape!r}")
    return randn(tuple(shape), generator, device or "cpu", dtype)


def progress_or_plain(progress):
    return progress if progress is not None else (lambda iterable, **_: iterable)
