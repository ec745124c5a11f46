"""How models are run: diffusion objectives and samplers (``diffusion``: DDPM for DiT; ``transport``:
stochastic interpolants for SiT), classifier-free guidance (``guidance``), Whisper's window decoding
(``whisper_decoding``) and long-form transcription (``transcribe``)."""

from .diffusion import GaussianDiffusion, ddpm_sample
from .guidance import classifier_free_guidance
from .transport import Transport, sit_sample

__all__ = ["GaussianDiffusion", "Transport", "classifier_free_guidance", "ddpm_sample", "sit_sample"]
