"""Models: each a short composition of a tokenizer, the shared backbone and a head."""

from .autoencoder import Autoencoder, AutoencoderConfig
from .autoencoders import VQVAE, VQVAEConfig
from .dit import DiT, DiTConfig
from .speech_codec import SpeechCodec, SpeechCodecConfig
from .text2image import TextToImage, TextToImageConfig
from .text_encoder import TextEncoder, TextEncoderConfig
from .vit import ViT, ViTConfig
from .whisper import Whisper, WhisperConfig, WhisperGenerationConfig

# The samplers live in multimodal.generation; these names stay importable from here too.
from ..generation import GaussianDiffusion, Transport, classifier_free_guidance, ddpm_sample, sit_sample  # noqa: E402

__all__ = ["ViT", "ViTConfig", "Whisper", "WhisperConfig", "WhisperGenerationConfig"]
__all__ += ["DiT", "DiTConfig", "GaussianDiffusion", "Transport", "classifier_free_guidance", "ddpm_sample", "sit_sample"]
__all__ += ["Autoencoder", "AutoencoderConfig", "VQVAE", "VQVAEConfig", "SpeechCodec", "SpeechCodecConfig"]
__all__ += ["TextEncoder", "TextEncoderConfig", "TextToImage", "TextToImageConfig"]
