"""Importers of third-party weights into this package's models."""

from .dit import from_diffusers as dit_from_diffusers
from .vit import from_huggingface as vit_from_huggingface
from .vit import from_timm, load_vit
from .whisper import default_model_path, from_ctranslate2, from_huggingface, from_openai, load_whisper

__all__ = ["default_model_path", "from_ctranslate2", "from_huggingface", "from_openai", "from_timm", "load_vit", "load_whisper",
           "vit_from_huggingface"]
__all__ += ["dit_from_diffusers"]
