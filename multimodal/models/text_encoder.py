"""A small bidirectional text encoder on the shared backbone: the text condition of text-to-image.

Method
------
1. **Tokens.** A prompt is lower-cased and its whitespace collapsed (``normalize_prompt``; the
   training captions are lower case), then encoded by our byte-level BPE (``TextTokenizer``) and cut
   to ``max_length`` tokens. A batch is right-padded; the mask marks padding.
2. **Embedding.** A token table plus learned positions (``[B, T, W]``).
3. **Blocks.** Backbone blocks, bidirectional (never causal), attending only to real tokens, and a
   final LayerNorm. The output ``[B, T, W]`` is the sequence the denoiser cross-attends to; the
   denoiser pools it itself (the mean of the real tokens).

An empty prompt has no tokens. It still gets one position (a padding token, which it attends to,
so that attention is defined), and stays fully masked in what it returns, which the denoiser reads
as "no condition" (classifier-free guidance's unconditional branch).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..backbone import BackboneConfig, Transformer
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers.text import TextTokenizer


def normalize_prompt(text: str) -> str:
    """Lower case, single spaces, no leading or trailing space."""
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass
class TextEncoderConfig(Config):
    vocab_size: int = 4096
    max_length: int = 24  # tokens; longer prompts are truncated with a warning
    width: int = 128
    depth: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self):
        self.check_positive_ints("vocab_size", "max_length", "width", "depth", "heads")
        expect(self.width % self.heads == 0, "TextEncoderConfig.width", f"a multiple of heads ({self.heads})",
               str(self.width))

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(width=self.width, depth=self.depth, heads=self.heads,
                              mlp_hidden=int(self.width * self.mlp_ratio), positions="learned",
                              max_len=self.max_length, dropout=self.dropout)


class TextEncoder(nn.Module):
    """token ids ``[B, T]`` + padding mask ``[B, T]`` (True = padding) -> ``[B, T, width]``."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.width)
        self.transformer = Transformer(config.backbone())
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if ids.ndim != 2 or ids.shape != padding_mask.shape or ids.shape[1] > cfg.max_length:
            raise InputError(f"ids: expected [batch, length <= {cfg.max_length}] with a mask of the same shape, "
                             f"found {tuple(ids.shape)} and {tuple(padding_mask.shape)}")
        # A row of padding only (the empty prompt) attends to its first position, so that attention
        # has a key; its output is masked out downstream.
        empty = padding_mask.all(dim=1)
        keys = padding_mask.clone()
        keys[:, 0] &= ~empty
        return self.transformer(self.embed(ids), key_padding_mask=keys)  # [B, T, W]

    @staticmethod
    def _encode(tokenizer: TextTokenizer, prompts: list[str]):
        return tokenizer.encode_batch([normalize_prompt(p) for p in prompts], padding=False)

    def token_counts(self, tokenizer: TextTokenizer, prompts: list[str]) -> list[int]:
        """The number of tokens of each prompt before truncation to ``max_length``."""
        return [len(ids) for ids in self._encode(tokenizer, prompts).ids]

    def tokenize(self, tokenizer: TextTokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (ids ``[B, T]``, padding mask ``[B, T]``, True = padding), on this module's
        device. T is the longest prompt's length (at least 1), at most ``max_length``; longer
        prompts are truncated with a warning."""
        limit = self.config.max_length
        batch = self._encode(tokenizer, prompts)
        long = [i for i, ids in enumerate(batch.ids) if len(ids) > limit]
        if long:
            warnings.warn(f"prompt {long[0]} ({len(batch.ids[long[0]])} tokens) and {len(long) - 1} more are longer "
                          f"than the text encoder's {limit} tokens: truncated to the first {limit}", stacklevel=3)
        width = max(1, min(limit, max(len(ids) for ids in batch.ids)))
        ids = torch.full((len(prompts), width), tokenizer.pad_id, dtype=torch.long)
        mask = torch.ones(len(prompts), width, dtype=torch.bool)
        for i, row in enumerate(batch.ids):
            row = row[:limit]
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = False
        device = self.embed.weight.device
        return ids.to(device), mask.to(device)
