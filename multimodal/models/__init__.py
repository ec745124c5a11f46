"""Models: each a short composition of a tokenizer, the shared backbone and a head."""

from .vit import ViT, ViTConfig
from .whisper import Whisper, WhisperConfig, WhisperGenerationConfig

__all__ = ["ViT", "ViTConfig", "Whisper", "WhisperConfig", "WhisperGenerationConfig"]
