"""The token GPT: a causal transformer on the shared backbone that writes VQ-VAE codes after a text
prompt (ImageGPT / DALL·E style; the same model serves images, audio and video codes).

Method
------
1. **Sequence.** ``[prompt tokens, left-padded to text_length][BOS][code 1 … code N]``. The prompt
   is our BPE's ids in their own embedding table (plus one PAD entry); codes and BOS share a second
   table (``codebook_size + 1`` entries). Codes are the VQ-VAE's grid flattened in row-major order
   (frames, then rows, then columns); with residual VQ each position holds ``levels`` codes, written
   level by level before the next position.
2. **Blocks.** Backbone blocks, causal self-attention (``causal=True``), learned or rotary positions
   over the whole sequence, a final norm and a linear head over the ``codebook_size`` codes. The
   position holding BOS predicts the first code; the one holding code i predicts code i + 1.
3. **Condition dropout.** In training a prompt is replaced by PAD only (the empty prompt) with
   probability ``cond_drop``, so one network is both the conditional and the unconditional model of
   classifier-free guidance.
4. **Generation** is ``multimodal.generation.autoregressive``: the prompt and BOS fill a KV cache in
   one pass, then one code per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import BackboneConfig, KVCache, Transformer
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers.text import TextTokenizer
from .text_encoder import normalize_prompt


@dataclass
class TokenGPTConfig(Config):
    codebook_size: int = 512  # the VQ-VAE's codes per level; the head predicts one of them
    grid: tuple[int, ...] = (8, 8)  # the code grid of one item (frames, rows, cols for video)
    levels: int = 1  # residual VQ levels per grid position
    text_vocab: int = 4096  # the BPE's vocabulary; one more entry is PAD
    text_length: int = 16  # prompt tokens; a longer prompt is refused
    width: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    positions: str = "learned"  # learned | rotary
    dropout: float = 0.0
    cond_drop: float = 0.1  # training probability of the empty prompt (classifier-free guidance)

    def __post_init__(self):
        self.grid = tuple(self.grid)
        self.check_positive_ints("codebook_size", "levels", "text_vocab", "text_length", "width", "depth", "heads")
        expect(len(self.grid) >= 1 and all(isinstance(n, int) and n > 0 for n in self.grid), "TokenGPTConfig.grid",
               "positive integers", repr(self.grid))
        expect(self.positions in ("learned", "rotary"), "TokenGPTConfig.positions", "learned or rotary",
               repr(self.positions))
        expect(0 <= self.cond_drop < 1, "TokenGPTConfig.cond_drop", "a probability below 1", repr(self.cond_drop))

    @property
    def num_codes(self) -> int:
        """Codes per item: grid positions times levels."""
        return math.prod(self.grid) * self.levels

    @property
    def max_len(self) -> int:
        return self.text_length + 1 + self.num_codes

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(width=self.width, depth=self.depth, heads=self.heads,
                              mlp_hidden=int(self.width * self.mlp_ratio), causal=True,
                              positions=self.positions, max_len=self.max_len, dropout=self.dropout)


def prompt_ids(tokenizer: TextTokenizer, prompts: list[str], config: TokenGPTConfig) -> torch.Tensor:
    """Prompts -> ids ``[B, text_length]``, left-padded with PAD (``text_vocab``). An empty string is
    the empty prompt (all PAD); a prompt of more than ``text_length`` tokens is an InputError."""
    limit, pad = config.text_length, config.text_vocab
    batch = tokenizer.encode_batch([normalize_prompt(p) for p in prompts], padding=False)
    ids = torch.full((len(prompts), limit), pad, dtype=torch.long)
    for i, row in enumerate(batch.ids):
        if len(row) > limit:
            raise InputError(f"prompt: expected at most {limit} tokens, found {len(row)} in {prompts[i]!r}")
        if any(t >= pad for t in row):
            raise InputError(f"tokenizer: expected ids below {pad}, found {max(row)} in {prompts[i]!r}")
        if row:
            ids[i, limit - len(row):] = torch.tensor(row, dtype=torch.long)
    return ids


class TokenGPT(nn.Module):
    """``forward(text_ids [B, text_length], codes [B, N]) -> logits [B, N, codebook_size]``."""

    def __init__(self, config: TokenGPTConfig):
        super().__init__()
        self.config = c = config
        self.text_embed = nn.Embedding(c.text_vocab + 1, c.width)  # + PAD
        self.code_embed = nn.Embedding(c.codebook_size + 1, c.width)  # + BOS
        self.transformer = Transformer(c.backbone())
        self.head = nn.Linear(c.width, c.codebook_size, bias=False)
        for table in (self.text_embed, self.code_embed):
            nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    @property
    def pad_id(self) -> int:
        return self.config.text_vocab

    @property
    def bos_id(self) -> int:
        return self.config.codebook_size

    # ------------------------------------------------------------------------------ prompts
    def tokenize(self, tokenizer: TextTokenizer, prompts: list[str]) -> torch.Tensor:
        """``prompt_ids`` for this model, on its device."""
        return prompt_ids(tokenizer, prompts, self.config).to(self.head.weight.device)

    def drop_prompts(self, text_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training: each row's prompt becomes the empty prompt with probability ``cond_drop``."""
        if self.config.cond_drop == 0:
            return text_ids
        drop = torch.rand(text_ids.shape[0], generator=generator, device="cpu").to(text_ids.device) < self.config.cond_drop
        return torch.where(drop[:, None], torch.full_like(text_ids, self.pad_id), text_ids)

    # ------------------------------------------------------------------------------ network
    def prefix(self, text_ids: torch.Tensor) -> torch.Tensor:
        """The prompt and BOS, embedded: ``[B, text_length + 1, W]``."""
        c = self.config
        if text_ids.ndim != 2 or text_ids.shape[1] != c.text_length:
            raise InputError(f"text_ids: expected [batch, {c.text_length}], found {tuple(text_ids.shape)}")
        bos = torch.full((text_ids.shape[0], 1), self.bos_id, dtype=torch.long, device=text_ids.device)
        return torch.cat([self.text_embed(text_ids), self.code_embed(bos)], dim=1)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.code_embed(codes)

    def logits(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Embedded tokens ``[B, L, W]`` (after what ``cache`` holds) -> next-code logits ``[B, L, K]``."""
        return self.head(self.transformer(x, cache=cache))

    def new_cache(self, batch: int) -> KVCache:
        return self.transformer.new_cache(batch, self.config.max_len)

    def forward(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits ``[B, N, K]``; row i predicts ``codes[:, i]``."""
        c = self.config
        if codes.ndim != 2 or codes.shape[1] > c.num_codes:
            raise InputError(f"codes: expected [batch, <= {c.num_codes}], found {tuple(codes.shape)}")
        x = torch.cat([self.prefix(text_ids), self.embed_codes(codes[:, :-1])], dim=1)
        return self.logits(x)[:, c.text_length:]

    def loss(self, text_ids: torch.Tensor, codes: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of the codes given the prompts (dropped with probability ``cond_drop``)."""
        logits = self(self.drop_prompts(text_ids, generator), codes)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1))

