"""Stochastic interpolants for a SiT denoiser (velocity prediction): the path, the loss and the
ODE / SDE samplers. Path and integrator are independent choices; the model is a ``model_fn`` (see
``multimodal.generation.sampling``).

SiT / stochastic interpolants (Albergo & Vanden-Eijnden; Ma et al.)
    x_t = α_t x_1 + σ_t x_0 with x_0 ~ N(0, I) the noise and x_1 the data, so t runs from noise (0)
    to data (1) as in SiT. That is the reverse of diffusers' flow matching (``FlowMatchEuler…``:
    σ from 1 = noise to 0 = data, velocity ε - x); do not mix the two. Paths: ``linear`` α = t,
    σ = 1 - t; ``gvp`` α = sin(πt/2), σ = cos(πt/2). The network predicts the velocity
    u_t = α̇ x_1 + σ̇ x_0; the loss is ||v̂ - u_t||². It sees ``time_scale * t`` (default 1000, the
    scale of DDPM's steps, so one timestep embedding serves both objectives; SiT's own checkpoints
    take t itself, time_scale = 1). Samplers:

    - ``euler`` / ``heun``: the probability-flow ODE dx = v dt on a uniform grid from 0 to 1
      (Heun: Euler predictor, trapezoidal corrector; two evaluations per step).
    - ``sde``: Euler–Maruyama on dx = [v + w_t s(x, t)] dt + sqrt(2 w_t) dW, which has the same
      marginals, with the score s recovered from the velocity,
      s = (α v - α̇ x) / (σ (α̇ σ - α σ̇)). The diffusion coefficient w_t is SiT's sampling default,
      ``sigma``: w_t = σ_t (``linear``: 1 - t and ``constant``: 1 also offered; ``diffusion_norm``
      multiplies it). The last step, of size ``last_step_size`` (0.04) ending at t = 1, is
      deterministic: the drift's mean, no noise (SiT's ``last_step="Mean"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from .guidance import classifier_free_guidance
from .sampling import ModelFn, check_guidance, check_steps, initial_noise, progress_or_plain, rand, randn

PATHS = ("linear", "gvp")
TIME_SAMPLINGS = ("uniform", "logit-normal")
SIT_SAMPLERS = ("euler", "heun", "sde")
DIFFUSION_FORMS = ("sigma", "linear", "constant")


class Transport:
    """Stochastic interpolant x_t = α_t x_1 (data) + σ_t x_0 (noise), t from 0 (noise) to 1 (data),
    with velocity prediction. ``path``: ``linear`` or ``gvp``. The network sees ``time_scale * t``.
    ``train_eps`` keeps training times inside [eps, 1 - eps]. ``time_sampling`` draws training times
    ``uniform`` (SiT's) or ``logit-normal`` (t = sigmoid(n), n ~ N(0, 1); Esser et al. 2024, SD3),
    which trains the middle times, where the layout is decided, more often than the ends."""

    def __init__(self, path: str = "linear", time_scale: float = 1000.0, train_eps: float = 0.0,
                 time_sampling: str = "uniform"):
        if path not in PATHS:
            raise InputError(f"path: expected one of {', '.join(PATHS)}, found {path!r}")
        if time_sampling not in TIME_SAMPLINGS:
            raise InputError(f"time_sampling: expected one of {', '.join(TIME_SAMPLINGS)}, found {time_sampling!r}")
        self.path, self.time_scale, self.train_eps = path, float(time_scale), float(train_eps)
        self.time_sampling = time_sampling

    def sample_times(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``n`` training times in [eps, 1 - eps], drawn as ``time_sampling`` says."""
        if self.time_sampling == "uniform":
            u = rand((n,), generator, device)
        else:
            u = randn((n,), generator, device, torch.float32).sigmoid()
        return self.train_eps + (1 - 2 * self.train_eps) * u

    def coefficients(self, t: torch.Tensor):
        """α_t, σ_t and their time derivatives α̇_t, σ̇_t, each shaped like t."""
        if self.path == "linear":
            return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)
        half_pi = math.pi / 2
        return ((half_pi * t).sin(), (half_pi * t).cos(), half_pi * (half_pi * t).cos(), -half_pi * (half_pi * t).sin())

    @staticmethod
    def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [B] -> [B, 1, 1, ...]
        return t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise x0, data x1, times t [B] -> (x_t, target velocity u_t)."""
        a, s, da, ds = self.coefficients(self._expand(t, x1))
        return a * x1 + s * x0, da * x1 + ds * x0

    def loss(self, model_fn: ModelFn, x1: torch.Tensor, model_kwargs: dict | None = None,
             generator: torch.Generator | None = None, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean ||v̂(x_t, t) - u_t||² over a batch of clean latents x1, t in [eps, 1 - eps] drawn by
        ``sample_times``."""
        B, C = x1.shape[:2]
        if t is None:
            t = self.sample_times(B, generator, x1.device)
        if noise is None:
            noise = randn(x1.shape, generator, x1.device, x1.dtype)
        x_t, u_t = self.interpolate(noise, x1, t)
        pred = model_fn(x_t, t * self.time_scale, **(model_kwargs or {}))[:, :C]
        return F.mse_loss(pred.float(), u_t.float())

    def velocity(self, model_fn: ModelFn, x: torch.Tensor, t: float, guidance_scale: float = 1.0,
                 model_kwargs: dict | None = None) -> torch.Tensor:
        """The (guided) predicted velocity at x, time t in [0, 1]."""
        tt = torch.full((x.shape[0],), t * self.time_scale, device=x.device, dtype=torch.float32)
        C = x.shape[1]
        return classifier_free_guidance(model_fn, x, tt, guidance_scale, model_kwargs, C)[:, :C].to(x.dtype)

    def score(self, v: torch.Tensor, x: torch.Tensor, t: float) -> torch.Tensor:
        """∇ log p_t(x) from the velocity: v = (α̇/α) x + σ (α̇σ/α - σ̇) s, solved for s in a form
        that stays finite at t = 0 (where α = 0)."""
        a, s, da, ds = self.coefficients(torch.tensor(float(t), dtype=torch.float64))
        return (a * v - da * x) / (s * (da * s - a * ds))

    def diffusion(self, t: float, form: str = "sigma", norm: float = 1.0) -> float:
        """The SDE's w_t: ``sigma`` σ_t (SiT's default), ``linear`` 1 - t, ``constant`` 1; times norm."""
        if form == "sigma":
            return norm * float(self.coefficients(torch.tensor(float(t), dtype=torch.float64))[1])
        if form == "linear":
            return norm * (1.0 - t)
        if form == "constant":
            return norm
        raise InputError(f"diffusion_form: expected one of {', '.join(DIFFUSION_FORMS)}, found {form!r}")


@torch.no_grad()
def sit_sample(model_fn: ModelFn, shape=None, sampler: str = "heun", steps: int = 50,
               generator: torch.Generator | None = None, guidance_scale: float = 1.0,
               model_kwargs: dict | None = None, *, transport: Transport | None = None,
               latents: torch.Tensor | None = None, device=None, dtype: torch.dtype = torch.float32,
               diffusion_form: str = "sigma", diffusion_norm: float = 1.0, last_step_size: float = 0.04,
               progress=None) -> torch.Tensor:
    """Sample latents ``shape`` from a velocity model by integrating from noise (t = 0) to data
    (t = 1): ``euler`` or ``heun`` ODE steps, or ``sde`` Euler–Maruyama (see the module docstring),
    in ``steps`` steps with classifier-free guidance when guidance_scale != 1."""
    transport = transport or Transport()
    if sampler not in SIT_SAMPLERS:
        raise InputError(f"sampler: expected one of {', '.join(SIT_SAMPLERS)}, found {sampler!r}")
    check_steps(steps)
    check_guidance(guidance_scale)
    if sampler == "sde":
        transport.diffusion(0.0, diffusion_form)  # validates the form
        if not 0 < last_step_size < 1:
            raise InputError(f"last_step_size: expected a number in (0, 1), found {last_step_size!r}")
    x = initial_noise(shape, latents, generator, device, dtype)

    def v(x, t):
        return transport.velocity(model_fn, x, t, guidance_scale, model_kwargs)

    if sampler in ("euler", "heun"):
        times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
        for i in progress_or_plain(progress)(range(steps), desc=sampler):
            t, dt = times[i], times[i + 1] - times[i]
            d = v(x, t)
            if sampler == "euler":
                x = x + dt * d
            else:
                x_pred = x + dt * d
                x = x + dt / 2 * (d + v(x_pred, times[i + 1]))
        return x

    # Euler–Maruyama to 1 - last_step_size in steps - 1 steps, then one deterministic step to 1.
    end = 1.0 - last_step_size
    times = torch.linspace(0.0, end, steps, dtype=torch.float64).tolist() if steps > 1 else [end]

    def drift(x, t):
        vel = v(x, t)
        return vel + transport.diffusion(t, diffusion_form, diffusion_norm) * transport.score(vel, x, t)

    for i in progress_or_plain(progress)(range(steps), desc=sampler):
        if i == steps - 1:
            return x + last_step_size * drift(x, times[-1])
        t, dt = times[i], times[i + 1] - times[i]
        w = transport.diffusion(t, diffusion_form, diffusion_norm)
        x = x + dt * drift(x, t) + math.sqrt(2 * w * dt) * randn(x.shape, generator, x.device, x.dtype)
    return x
