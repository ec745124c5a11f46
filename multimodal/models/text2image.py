"""Text-to-image latent diffusion: BPE text encoder + DiT denoiser + autoencoder, trained as DiT or SiT.

Method
------
1. **Text.** Prompts go through our byte-level BPE and the small bidirectional ``TextEncoder``
   (``[B, T, text width]``, padding masked), trained jointly with the denoiser.
2. **Latents.** Images are encoded by a frozen ``Autoencoder`` (diffusers' ``AutoencoderKL``, e.g.
   32x32x3 -> 8x8x4), whose latents are scaled to unit variance by a factor measured from data.
3. **Denoiser.** A ``DiT`` over the latents, conditioned on the timestep and the text: adaLN-Zero
   from timestep + pooled text, cross-attention to the text tokens.
4. **Objective.** ``objective="dit"``: DDPM ε-prediction (``GaussianDiffusion``, ``schedule``
   linear or cosine), sampled through diffusers' schedulers (``ddpm``, ``ddim``, ``dpm++``).
   ``objective="sit"``: a stochastic interpolant (``Transport``, ``path`` linear or GVP) with
   velocity prediction, sampled by our ``euler`` / ``heun`` ODE or ``sde`` Euler–Maruyama solvers.
   Either way the denoiser drops the text condition of 10 % of training rows (``class_dropout_prob``),
   so one network also predicts unconditionally and sampling can apply classifier-free guidance
   (over all latent channels).

An empty prompt is the unconditional model: its row is all padding, which the denoiser reads as
"no condition".

Checkpoint folder: ``config.json`` (``TextToImageConfig``), ``model.safetensors`` (text encoder and
denoiser), ``tokenizer.json``, and ``vae/`` (the autoencoder's own ``from_pretrained`` folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import Part, PretrainedMixin
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers.text import TextTokenizer
from .autoencoder import Autoencoder
from ..generation.diffusion import SCHEDULERS, GaussianDiffusion, ddpm_sample
from ..generation.transport import SIT_SAMPLERS, Transport, sit_sample
from .dit import DiT, DiTConfig
from .text_encoder import TextEncoder, TextEncoderConfig

OBJECTIVES = {"dit": SCHEDULERS, "sit": SIT_SAMPLERS}  # objective -> its samplers
# Chosen on the validation prompts (benchmarks/text_to_image_guidance.py, 25 steps, guidance 4): the
# shipped DiT scores 94.5 % with ddpm against 92.2 % with ddim.
DEFAULT_SAMPLER = {"dit": "ddpm", "sit": "heun"}
VAE_DIR, TOKENIZER_NAME = "vae", "tokenizer.json"
MAX_IMAGES_PER_CALL = 256


# ------------------------------------------------------------------------------------------ config
@dataclass
class TextToImageConfig(Config):
    objective: str = "dit"  # dit (DDPM ε-prediction) | sit (interpolant, velocity)
    schedule: str = "linear"  # dit: the DDPM β schedule, linear or cosine
    path: str = "linear"  # sit: the interpolant path, linear or gvp
    min_snr_gamma: float | None = None  # dit: min-SNR-γ loss weighting (None: plain ε-MSE)
    time_sampling: str = "uniform"  # sit: training times, uniform or logit-normal (SD3)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    denoiser: DiTConfig = field(default_factory=lambda: DiTConfig(
        input_size=8, patch_size=2, in_channels=4, width=256, depth=6, heads=4, context_dim=128))

    def __post_init__(self):
        expect(self.objective in OBJECTIVES, "TextToImageConfig.objective", " or ".join(OBJECTIVES),
               repr(self.objective))
        expect(self.denoiser.context_dim == self.text.width, "TextToImageConfig.denoiser.context_dim",
               f"the text encoder's width ({self.text.width})", str(self.denoiser.context_dim))
        expect(self.denoiser.num_classes == 0, "TextToImageConfig.denoiser.num_classes", "0 (text conditioning)",
               str(self.denoiser.num_classes))
        self.objective_fn()  # validates schedule / path

    def objective_fn(self) -> GaussianDiffusion | Transport:
        if self.objective == "dit":
            expect(self.time_sampling == "uniform", "TextToImageConfig.time_sampling",
                   "'uniform' for dit (logit-normal is a sit option)", repr(self.time_sampling))
            return GaussianDiffusion(self.schedule, min_snr_gamma=self.min_snr_gamma)
        expect(self.min_snr_gamma is None, "TextToImageConfig.min_snr_gamma", "None for sit (a dit loss weighting)",
               repr(self.min_snr_gamma))
        return Transport(self.path, time_sampling=self.time_sampling)

    @property
    def samplers(self) -> tuple[str, ...]:
        return OBJECTIVES[self.objective]

    @property
    def default_sampler(self) -> str:
        return DEFAULT_SAMPLER[self.objective]


# ------------------------------------------------------------------------------------------- model
class TextToImage(PretrainedMixin, nn.Module):
    """prompts -> latents -> images. ``loss(images, captions)`` trains it; ``generate(prompts)`` samples.
    A checkpoint holds the text encoder and denoiser weights, ``tokenizer.json`` and the autoencoder in
    ``vae/``."""

    config_class = TextToImageConfig
    checkpoint_kind = "text-to-image "
    parts = {"tokenizer": Part(TOKENIZER_NAME, TextTokenizer.from_file, lambda tok, path, dtype: tok.save(path.parent)),
             "autoencoder": Part(VAE_DIR, Autoencoder.from_pretrained,
                                 lambda vae, path, dtype: vae.save_pretrained(path, dtype=dtype))}

    def __init__(self, config: TextToImageConfig, tokenizer: TextTokenizer, autoencoder: Autoencoder):
        super().__init__()
        vae = autoencoder.config
        expect(tokenizer.vocab_size <= config.text.vocab_size, "tokenizer",
               f"at most {config.text.vocab_size} tokens (the text encoder's table)", str(tokenizer.vocab_size))
        latent = (vae.latent_size, vae.latent_size)
        expect(config.denoiser.in_channels == vae.latent_channels and config.denoiser.input_size == latent,
               "autoencoder", f"latents of {config.denoiser.in_channels} x {config.denoiser.input_size} "
               "(the denoiser's input)", f"{vae.latent_channels} x {latent}")
        self.config, self.tokenizer, self.objective = config, tokenizer, config.objective_fn()
        self.text_encoder = TextEncoder(config.text)
        self.denoiser = DiT(config.denoiser)
        self.autoencoder = autoencoder.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoder.eval()  # frozen: always in inference mode
        return self

    @property
    def device(self) -> torch.device:
        return self.denoiser.patch_embed.proj.weight.device

    # ----------------------------------------------------------------------------------- text
    def encode_text(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Prompts -> the denoiser's text arguments: ``context`` ``[B, T, W]`` and ``context_mask``
        ``[B, T]`` (True = padding; a row of padding only is unconditional)."""
        ids, mask = self.text_encoder.tokenize(self.tokenizer, prompts)
        return {"context": self.text_encoder(ids, mask), "context_mask": mask}

    def _denoise(self, x, t, drop_condition=None, context=None, context_mask=None):
        return self.denoiser(x, t, context=context, context_mask=context_mask, drop_condition=drop_condition)

    # ------------------------------------------------------------------------------ training
    def loss(self, images: torch.Tensor, captions: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """The objective's loss on a batch of images (uint8 ``[B, 3, H, W]`` or float in [-1, 1])
        and their captions. The autoencoder's posterior is sampled (LDM's training latents)."""
        with torch.no_grad():
            latents = self.autoencoder.encode(images, sample=True, generator=generator)
        return self.objective.loss(self._denoise, latents, self.encode_text(list(captions)), generator=generator)

    # ------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, prompts: list[str], *, num_inference_steps: int = 25, guidance_scale: float = 4.0,
                 sampler: str | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, decode: bool = True, progress=None) -> torch.Tensor:
        """Images for ``prompts`` (one each; repeat a prompt for more): float ``[B, 3, H, W]`` in
        [-1, 1], or the scaled latents ``[B, C, h, w]`` when ``decode`` is False. ``latents`` replace
        the initial noise drawn from ``generator``; ``progress`` wraps the step loop (tqdm-like)."""
        sampler = sampler or self.config.default_sampler
        if sampler not in self.config.samplers:
            raise InputError(f"sampler: expected one of {', '.join(self.config.samplers)} for a "
                             f"{self.config.objective.upper()} model, found {sampler!r}")
        expect(0 < len(prompts) <= MAX_IMAGES_PER_CALL, "prompts", f"1 to {MAX_IMAGES_PER_CALL} images per call",
               str(len(prompts)))
        den = self.config.denoiser
        shape = (len(prompts), den.in_channels, *den.input_size)
        kwargs = self.encode_text(list(prompts))
        common = dict(steps=num_inference_steps, generator=generator, guidance_scale=guidance_scale,
                      model_kwargs=kwargs, latents=latents, device=self.device, dtype=torch.float32,
                      progress=progress)
        if self.config.objective == "dit":
            z = ddpm_sample(self._denoise, shape, scheduler=sampler, diffusion=self.objective, **common)
        else:
            z = sit_sample(self._denoise, shape, sampler=sampler, transport=self.objective, **common)
        return self.autoencoder.decode(z) if decode else z

    # --------------------------------------------------------------------------- checkpoints
