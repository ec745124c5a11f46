"""multimodal: modality tokenizers feeding one shared transformer backbone, used as a ViT classifier,
a DiT/SiT diffusion denoiser, an autoregressive token generator and a Whisper-style recogniser."""

__version__ = "0.1.0"

from .pipelines import pipeline  # noqa: E402  (after __version__, which the CLI and pyproject read)

__all__ = ["__version__", "pipeline"]
