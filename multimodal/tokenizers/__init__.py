"""Modality tokenizers: text (byte-level BPE, Whisper's tokenizer), image patches and Whisper's
log-mel spectrogram."""

from .patches import ConvStem, PatchEmbed, patchify, resize_pos_embed, unpatchify
from .text import BatchEncoding, Encoding, TextTokenizer
from .whisper_text import WhisperTokenizer

__all__ = ["BatchEncoding", "ConvStem", "Encoding", "PatchEmbed", "TextTokenizer", "WhisperTokenizer", "patchify",
           "resize_pos_embed", "unpatchify"]
