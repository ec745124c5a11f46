"""Autoencoders: the VQ-VAE of every modality and its quantizer (``vq``, ``quantizer``)."""

from .quantizer import QuantizerConfig, ResidualQuantizer, VectorQuantizer, codebook_usage, perplexity
from .vq import VQVAE, VQVAEConfig

__all__ = ["QuantizerConfig", "ResidualQuantizer", "VQVAE", "VQVAEConfig", "VectorQuantizer", "codebook_usage",
           "perplexity"]
