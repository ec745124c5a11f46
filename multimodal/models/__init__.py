"""Models: each a short composition of a tokenizer, the shared backbone and a head."""

from .whisper import Whisper, WhisperConfig, WhisperGenerationConfig

__all__ = ["Whisper", "WhisperConfig", "WhisperGenerationConfig"]
