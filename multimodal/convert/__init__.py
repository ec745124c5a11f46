"""Importers of third-party weights into this package's models."""

from .whisper import default_model_path, from_ctranslate2, from_huggingface, from_openai, load_whisper

__all__ = ["default_model_path", "from_ctranslate2", "from_huggingface", "from_openai", "load_whisper"]
