"""Modality tokenizers: text (byte-level BPE, Whisper's tokenizer) and, alongside, image patches,
log-mel audio and VQ-VAE codes."""

from .patches import ConvStem, PatchEmbed, patchify, resize_pos_embed, unpatchify
from .text import BatchEncoding, Encoding, TextTokenizer, WhisperTokenizer

__all__ = ["BatchEncoding", "ConvStem", "Encoding", "PatchEmbed", "TextTokenizer", "WhisperTokenizer", "patchify",
           "resize_pos_embed", "unpatchify"]
