"""Objectives and samplers for the DiT denoiser: DDPM ε-prediction (DiT) and stochastic interpolants (SiT).

Both train and sample the same network, a ``model_fn(x, t, drop_condition=None, **model_kwargs)``
returning ``[B, C or 2C, H, W]`` (``DiT.forward`` is one); only its first C channels are the
prediction (ε or velocity), the rest being DiT's learned-variance channels, which these objectives
neither train nor use (diffusers' ``DiTPipeline`` discards them the same way).

DiT / DDPM (Ho et al.; Nichol & Dhariwal)
    x_t = sqrt(ā_t) x_0 + sqrt(1 - ā_t) ε over integer steps t < 1000, ``linear`` (β from 1e-4 to
    0.02, DiT's) or ``cosine`` (diffusers' ``squaredcos_cap_v2``) β schedules, both taken from
    diffusers' ``DDPMScheduler``; the loss is ||ε̂ - ε||². Sampling runs diffusers' schedulers:
    ``ddpm`` (ancestral), ``ddim`` (η = 0) and ``dpm++`` (DPM-Solver++ multistep, order 2), with
    ``trailing`` timestep spacing for DDPM / DDIM so that the first step starts at t = 999, where
    the sampler's pure noise belongs.

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

Classifier-free guidance (``classifier_free_guidance``) runs the conditional and the unconditional
(``drop_condition=True``) copies of a batch in one forward pass and extrapolates all C prediction
channels: u + s (c - u); extra channels come from the conditional half.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SCHEDULERS = ("ddpm", "ddim", "dpm++")
PATHS = ("linear", "gvp")
TIME_SAMPLINGS = ("uniform", "logit-normal")
SIT_SAMPLERS = ("euler", "heun", "sde")
DIFFUSION_FORMS = ("sigma", "linear", "constant")
MAX_STEPS = 1000

ModelFn = Callable[..., torch.Tensor]


# ----------------------------------------------------------------------------------------- helpers
def _randn(shape, generator, device, dtype) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (so a CPU seed gives the same numbers
    whatever device the model runs on), then moved."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _rand(shape, generator, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def _check_steps(steps, limit: int = MAX_STEPS) -> int:
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= limit):
        raise InputError(f"steps: expected an integer from 1 to {limit}, found {steps!r}")
    return steps


def _check_guidance(guidance_scale) -> float:
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
            or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise InputError(f"guidance_scale: expected a finite number >= 0 (1 = no guidance), found {guidance_scale!r}")
    return float(guidance_scale)


def _initial(shape, latents, generator, device, dtype) -> torch.Tensor:
    if latents is not None:
        if not isinstance(latents, torch.Tensor) or latents.ndim < 2:
            raise InputError(f"latents: expected a tensor [batch, channels, ...], found {type(latents).__name__}")
        return latents.to(device=device or latents.device, dtype=dtype)
    if not (isinstance(shape, (tuple, list, torch.Size)) and len(shape) >= 2
            and all(isinstance(s, int) and s > 0 for s in shape)):
        raise InputError(f"shape: expected (batch, channels, height, width) of positive integers, found {shape!r}")
    return _randn(tuple(shape), generator, device or "cpu", dtype)


def _progress(progress):
    return progress if progress is not None else (lambda iterable, **_: iterable)


# --------------------------------------------------------------------------------------- guidance
def classifier_free_guidance(model_fn: ModelFn, x: torch.Tensor, t, guidance_scale: float = 1.0,
                             model_kwargs: dict | None = None, channels: int | None = None) -> torch.Tensor:
    """The prediction for x at t, guided: u + s (c - u) over the first ``channels`` (default: x's
    channel count) of the conditional c and unconditional u predictions, computed in one batch of
    2B (conditional rows first, then the same rows with ``drop_condition=True``). Further output
    channels (learned variance) are the conditional ones. Scale 1 is one plain conditional call.

    ``model_kwargs`` tensors whose first dimension is B (labels, text, masks) are repeated for the
    second half; anything else is passed as is."""
    kwargs = dict(model_kwargs or {})
    scale = _check_guidance(guidance_scale)
    if scale == 1.0:
        return model_fn(x, t, **kwargs)
    B = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(B) if t.ndim == 0 else t
    # rows already unconditional (an empty prompt) stay so in the conditional half
    given = kwargs.pop("drop_condition", None)
    given = torch.zeros(B, dtype=torch.bool, device=x.device) if given is None else given.to(x.device)
    twice = {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == B else v
             for k, v in kwargs.items()}
    drop = torch.cat([given, torch.ones(B, dtype=torch.bool, device=x.device)])
    out = model_fn(torch.cat([x, x]), torch.cat([t, t]), drop_condition=drop, **twice)
    cond, uncond = out[:B], out[B:]
    C = channels or x.shape[1]
    guided = uncond[:, :C] + scale * (cond[:, :C] - uncond[:, :C])
    return torch.cat([guided, cond[:, C:]], dim=1) if cond.shape[1] > C else guided


# ------------------------------------------------------------------------------------ DiT / DDPM
class GaussianDiffusion:
    """DDPM ε-prediction with diffusers' β schedules (``linear`` or ``cosine``)."""

    def __init__(self, schedule: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, min_snr_gamma: float | None = None):
        if schedule not in SCHEDULES:
            raise InputError(f"schedule: expected one of {', '.join(SCHEDULES)}, found {schedule!r}")
        if min_snr_gamma is not None and not (isinstance(min_snr_gamma, (int, float)) and not isinstance(min_snr_gamma, bool) and min_snr_gamma > 0):
            raise InputError(f"min_snr_gamma: expected a positive number or None, found {min_snr_gamma!r}")
        self.schedule, self.num_train_timesteps = schedule, num_train_timesteps
        self.min_snr_gamma = min_snr_gamma
        self.beta_start, self.beta_end = beta_start, beta_end
        self.train_scheduler = self.scheduler("ddpm")

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.train_scheduler.alphas_cumprod

    def scheduler(self, name: str):
        """A fresh diffusers scheduler for the training schedule: ``ddpm``, ``ddim`` or ``dpm++``."""
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

        common = dict(num_train_timesteps=self.num_train_timesteps, beta_schedule=SCHEDULES[self.schedule],
                      beta_start=self.beta_start, beta_end=self.beta_end, prediction_type="epsilon")
        if name == "ddpm":
            return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small", timestep_spacing="trailing")
        if name == "ddim":
            return DDIMScheduler(**common, clip_sample=False, timestep_spacing="trailing")
        if name == "dpm++":
            return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
        raise InputError(f"scheduler: expected one of {', '.join(SCHEDULERS)}, found {name!r}")

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.train_scheduler.add_noise(x0, noise, t)

    def loss(self, model_fn: ModelFn, x0: torch.Tensor, model_kwargs: dict | None = None,
             generator: torch.Generator | None = None, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean ||ε̂(x_t, t) - ε||² over a batch of clean latents x0, t uniform over the training steps.

        With ``min_snr_gamma`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
        Strategy"), each example's ε-error is weighted by min(SNR(t), γ) / SNR(t): low-noise steps,
        whose ε is hard to infer yet matters little to the image, stop dominating the gradient, and the
        high-noise steps where the layout forms keep their full weight."""
        B, C = x0.shape[:2]
        if t is None:
            t = (_rand((B,), generator, x0.device) * self.num_train_timesteps).long().clamp(max=self.num_train_timesteps - 1)
        if noise is None:
            noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        x_t = self.add_noise(x0, noise, t)
        pred = model_fn(x_t, t, **(model_kwargs or {}))[:, :C]
        if self.min_snr_gamma is None:
            return F.mse_loss(pred.float(), noise.float())
        return (self.snr_weights(t) * (pred.float() - noise.float()).square().flatten(1).mean(1)).mean()

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) of integer timesteps ``t``."""
        abar = self.alphas_cumprod.to(t.device, torch.float64)[t.long()]
        return abar / (1 - abar)

    def snr_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Per-example ε-loss weights min(SNR, γ) / SNR (all ones without ``min_snr_gamma``)."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape, device=t.device)
        snr = self.snr(t)
        return (snr.clamp(max=self.min_snr_gamma) / snr).float()


@torch.no_grad()
def ddpm_sample(model_fn: ModelFn, shape=None, scheduler: str = "ddim", steps: int = 50,
                generator: torch.Generator | None = None, guidance_scale: float = 1.0,
                model_kwargs: dict | None = None, *, diffusion: GaussianDiffusion | None = None,
                latents: torch.Tensor | None = None, device=None, dtype: torch.dtype = torch.float32,
                progress=None) -> torch.Tensor:
    """Sample latents ``shape`` from an ε-prediction model through a diffusers scheduler (``ddpm``,
    ``ddim`` or ``dpm++``) in ``steps`` steps, with classifier-free guidance when guidance_scale != 1.
    ``diffusion`` is the training objective (its β schedule); ``latents`` replace the initial noise;
    ``progress`` wraps the step iterable (a tqdm-like callable)."""
    diffusion = diffusion or GaussianDiffusion()
    sched = diffusion.scheduler(scheduler)
    _check_steps(steps, diffusion.num_train_timesteps)
    _check_guidance(guidance_scale)
    x = _initial(shape, latents, generator, device, dtype)
    C = x.shape[1]
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    for t in _progress(progress)(sched.timesteps, desc=scheduler):
        x_in = sched.scale_model_input(x, t)
        eps = classifier_free_guidance(model_fn, x_in, t.expand(x.shape[0]), guidance_scale, model_kwargs, C)
        x = sched.step(eps[:, :C].to(x.dtype), t, x, generator=generator).prev_sample
    return x


# --------------------------------------------------------------------------- SiT / interpolants
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
            u = _rand((n,), generator, device)
        else:
            u = _randn((n,), generator, device, torch.float32).sigmoid()
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
            noise = _randn(x1.shape, generator, x1.device, x1.dtype)
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
    _check_steps(steps)
    _check_guidance(guidance_scale)
    if sampler == "sde":
        transport.diffusion(0.0, diffusion_form)  # validates the form
        if not 0 < last_step_size < 1:
            raise InputError(f"last_step_size: expected a number in (0, 1), found {last_step_size!r}")
    x = _initial(shape, latents, generator, device, dtype)

    def v(x, t):
        return transport.velocity(model_fn, x, t, guidance_scale, model_kwargs)

    if sampler in ("euler", "heun"):
        times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
        for i in _progress(progress)(range(steps), desc=sampler):
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

    for i in _progress(progress)(range(steps), desc=sampler):
        if i == steps - 1:
            return x + last_step_size * drift(x, times[-1])
        t, dt = times[i], times[i + 1] - times[i]
        w = transport.diffusion(t, diffusion_form, diffusion_norm)
        x = x + dt * drift(x, t) + math.sqrt(2 * w * dt) * _randn(x.shape, generator, x.device, x.dtype)
    return x
