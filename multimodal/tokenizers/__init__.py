"""Modality tokenizers: text (byte-level BPE, Whisper's tokenizer) and, alongside, image patches,
log-mel audio and VQ-VAE codes."""

from .text import BatchEncoding, Encoding, TextTokenizer, WhisperTokenizer

__all__ = ["BatchEncoding", "Encoding", "TextTokenizer", "WhisperTokenizer"]
