"""The DDPM objective and samplers for a DiT denoiser (ε-prediction). The model knows nothing of
noise: it is a ``model_fn`` (see ``multimodal.generation.sampling``).

DiT / DDPM (Ho et al.; Nichol & Dhariwal)
    x_t = sqrt(ā_t) x_0 + sqrt(1 - ā_t) ε over integer steps t < 1000, ``linear`` (β from 1e-4 to
    0.02, DiT's) or ``cosine`` (diffusers' ``squaredcos_cap_v2``) β schedules, both taken from
    diffusers' ``DDPMScheduler``; the loss is ||ε̂ - ε||². Sampling runs diffusers' schedulers:
    ``ddpm`` (ancestral), ``ddim`` (η = 0) and ``dpm++`` (DPM-Solver++ multistep, order 2), with
    ``trailing`` timestep spacing for DDPM / DDIM so that the first step starts at t = 999, where
    the sampler's pure noise belongs.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from ..errors import InputError
from .guidance import classifier_free_guidance
from .sampling import ModelFn, check_guidance, check_steps, initial_noise, progress_or_plain, rand, randn

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
SCHEDULERS = ("ddpm", "ddim", "dpm++")


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
        kinds = {"ddpm": lambda: DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small",
                                               timestep_spacing="trailing"),
                 "ddim": lambda: DDIMScheduler(**common, clip_sample=False, timestep_spacing="trailing"),
                 "dpm++": lambda: DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)}
        if name not in kinds:
            raise InputError(f"scheduler: expected one of {', '.join(SCHEDULERS)}, found {name!r}")
        # Its tables are real CPU tensors even when the model is built on the meta device (from_pretrained)
        with torch.device("cpu"):
            return kinds[name]()

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
            t = (rand((B,), generator, x0.device) * self.num_train_timesteps).long().clamp(max=self.num_train_timesteps - 1)
        if noise is None:
            noise = randn(x0.shape, generator, x0.device, x0.dtype)
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
    check_steps(steps, diffusion.num_train_timesteps)
    check_guidance(guidance_scale)
    x = initial_noise(shape, latents, generator, device, dtype)
    C = x.shape[1]
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    for t in progress_or_plain(progress)(sched.timesteps, desc=scheduler):
        x_in = sched.scale_model_input(x, t)
        eps = classifier_free_guidance(model_fn, x_in, t.expand(x.shape[0]), guidance_scale, model_kwargs, C)
        x = sched.step(eps[:, :C].to(x.dtype), t, x, generator=generator).prev_sample
    return x
