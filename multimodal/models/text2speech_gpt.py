"""The text-to-speech GPT: a causal transformer on the shared backbone that writes a speech codec's
residual codes after a voice and a text, all levels in one pass by MusicGen's delay pattern.

Method
------
1. **Prefix.** ``[voice][symbols, left-padded with PAD to text_length][BOS]``: the voice's own
   embedding (one per training voice, ``voices``), the text front end's symbol ids
   (``multimodal.tokenizers.phonemes``: espeak-ng phonemes or characters).
2. **Delay pattern.** Frames of codes ``c[level, t]`` (t < T) become steps: at step s, level l
   holds ``c[l, s - l]``; before its first code a level holds EMPTY, and level 0 holds EOS at step
   T. So one step writes one code of every level, level l lagging l frames behind level 0 and
   conditioned on the lower levels of its frame; T frames take ``T + max(levels - 1, 1)`` steps.
3. **Network.** A step's input is the sum of one embedding per level of the previous step's tokens
   (BOS for the first), backbone blocks with causal self-attention and learned positions, then one
   head per level over ``codebook_size`` codes, EMPTY and EOS. The loss is the cross-entropy of the
   codes and of level 0's EOS (EMPTY is never a choice: where it stands is fixed by the pattern).
4. **Condition dropout.** In training the text is replaced by PAD only (the voice stays) with
   probability ``cond_drop``: the unconditional model of classifier-free guidance.
5. **Generation** is ``multimodal.generation.autoregressive.generate_delayed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import BackboneConfig, KVCache, Transformer
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers import phonemes


@dataclass
class TextToSpeechGPTConfig(Config):
    codebook_size: int = 512  # the codec's codes per level
    levels: int = 4  # residual levels written (the codec's first n)
    voices: tuple[str, ...] = ("default",)  # names of the voices, in embedding order
    front_end: str = "phonemes"  # phonemes | characters
    text_length: int = 160  # symbols per piece of text
    max_frames: int = 400  # codec frames per piece (8 s at 50 frames/s)
    width: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    cond_drop: float = 0.1  # training probability of the empty text

    def __post_init__(self):
        self.voices = tuple(self.voices)
        for name in ("codebook_size", "levels", "text_length", "max_frames", "width", "depth", "heads"):
            value = getattr(self, name)
            expect(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                   f"TextToSpeechGPTConfig.{name}", "a positive integer", repr(value))
        expect(len(self.voices) >= 1 and all(isinstance(v, str) and v for v in self.voices)
               and len(set(self.voices)) == len(self.voices), "TextToSpeechGPTConfig.voices",
               "distinct non-empty names", repr(self.voices))
        expect(self.front_end in phonemes.FRONT_ENDS, "TextToSpeechGPTConfig.front_end",
               f"one of {', '.join(phonemes.FRONT_ENDS)}", repr(self.front_end))
        expect(0 <= self.cond_drop < 1, "TextToSpeechGPTConfig.cond_drop", "a probability below 1", repr(self.cond_drop))

    def steps(self, frames: int) -> int:
        """Delayed steps that hold ``frames`` frames and level 0's EOS."""
        return frames + max(self.levels - 1, 1)

    @property
    def max_len(self) -> int:
        return 1 + self.text_length + 1 + self.steps(self.max_frames)

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(width=self.width, depth=self.depth, heads=self.heads,
                              mlp_hidden=int(self.width * self.mlp_ratio), causal=True, positions="learned",
                              max_len=self.max_len, dropout=self.dropout)


class TextToSpeechGPT(nn.Module):
    """``forward(voice_ids [B], text_ids [B, text_length], tokens [B, S, levels]) -> logits
    [B, S, levels, codebook_size + 2]`` (teacher forcing on delayed tokens)."""

    def __init__(self, config: TextToSpeechGPTConfig):
        super().__init__()
        self.config = c = config
        K, L = c.codebook_size, c.levels
        self.voice_embed = nn.Embedding(len(c.voices), c.width)
        self.text_embed = nn.Embedding(phonemes.VOCAB + 1, c.width)  # + PAD
        self.code_embed = nn.ModuleList(nn.Embedding(K + 3, c.width) for _ in range(L))  # + EMPTY, EOS, BOS
        self.transformer = Transformer(c.backbone())
        self.head = nn.Linear(c.width, L * (K + 2), bias=False)
        for table in (self.voice_embed, self.text_embed, *self.code_embed):
            nn.init.normal_(table.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    # ---------------------------------------------------------------------------- token ids
    @property
    def pad_id(self) -> int:
        return phonemes.PAD

    @property
    def empty_id(self) -> int:
        return self.config.codebook_size

    @property
    def eos_id(self) -> int:
        return self.config.codebook_size + 1

    @property
    def bos_id(self) -> int:
        return self.config.codebook_size + 2

    def voice_id(self, voice: str | None) -> int:
        """The index of a voice name (None: the first voice); an unknown name is an InputError."""
        voices = self.config.voices
        if voice is None:
            return 0
        if voice not in voices:
            raise InputError(f"voice: expected one of {', '.join(voices)}, found {voice!r}")
        return voices.index(voice)

    def text_ids(self, pieces: list[str]) -> torch.Tensor:
        """Speakable pieces of text -> symbol ids ``[B, text_length]``, left-padded with PAD; a piece
        with more symbols than ``text_length`` is an InputError (cut text with ``phonemes.sentences``)."""
        c = self.config
        ids = torch.full((len(pieces), c.text_length), phonemes.PAD, dtype=torch.long)
        for i, piece in enumerate(pieces):
            row = phonemes.encode(phonemes.front_end(piece, c.front_end)) if piece else []
            if len(row) > c.text_length:
                raise InputError(f"text: expected at most {c.text_length} symbols per piece, found {len(row)} "
                                 f"in {piece[:60]!r}")
            if row:
                ids[i, c.text_length - len(row):] = torch.tensor(row, dtype=torch.long)
        return ids.to(self.head.weight.device)

    # -------------------------------------------------------------------------- delay pattern
    def delay(self, codes: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, levels, T]`` of which row i's first ``frames[i]`` are real -> delayed tokens
        ``[B, steps(T), levels]`` (EMPTY outside a level's codes, EOS at level 0's step frames[i])."""
        B, L, T = codes.shape
        S = self.config.steps(T)
        s = torch.arange(S, device=codes.device)[:, None]  # [S, 1]
        t = s - torch.arange(L, device=codes.device)[None]  # [S, L]: the frame a level holds at a step
        inside = (t >= 0)[None] & (t[None] < frames.to(codes.device)[:, None, None])  # [B, S, L]
        gathered = torch.gather(codes, 2, t.clamp(0, T - 1).T[None].expand(B, L, S)).transpose(1, 2)  # [B, S, L]
        tokens = torch.where(inside, gathered, torch.full_like(gathered, self.empty_id))
        eos = s[None, :, 0] == frames.to(codes.device)[:, None]  # [B, S]
        tokens[..., 0] = torch.where(eos, torch.full_like(tokens[..., 0], self.eos_id), tokens[..., 0])
        return tokens

    def undelay(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """Delayed tokens ``[steps, levels]`` of one row -> its codes ``[levels, frames]``."""
        L = tokens.shape[1]
        return torch.stack([tokens[level:level + frames, level] for level in range(L)])

    # ------------------------------------------------------------------------------- network
    def prefix(self, voice_ids: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + text_length + 1, W]``: the voice, the text and BOS, embedded."""
        c = self.config
        if text_ids.ndim != 2 or text_ids.shape[1] != c.text_length or voice_ids.shape != (text_ids.shape[0],):
            raise InputError(f"text_ids: expected [batch, {c.text_length}] and voice_ids [batch], found "
                             f"{tuple(text_ids.shape)} and {tuple(voice_ids.shape)}")
        bos = torch.full((text_ids.shape[0], 1, c.levels), self.bos_id, dtype=torch.long, device=text_ids.device)
        return torch.cat([self.voice_embed(voice_ids)[:, None], self.text_embed(text_ids), self.embed_steps(bos)], 1)

    def embed_steps(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, n, levels]`` -> ``[B, n, W]``: the sum of each level's embedding."""
        return sum(table(tokens[..., level]) for level, table in enumerate(self.code_embed))

    def logits(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Embedded inputs ``[B, n, W]`` (after what ``cache`` holds) -> ``[B, n, levels, K + 2]``."""
        h = self.head(self.transformer(x, cache=cache))
        return h.view(*h.shape[:2], self.config.levels, self.config.codebook_size + 2)

    def new_cache(self, batch: int) -> KVCache:
        return self.transformer.new_cache(batch, self.config.max_len)

    def forward(self, voice_ids: torch.Tensor, text_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits ``[B, S, levels, K + 2]``; step s's logits predict ``tokens[:, s]``."""
        c = self.config
        if tokens.ndim != 3 or tokens.shape[2] != c.levels or tokens.shape[1] > c.steps(c.max_frames):
            raise InputError(f"tokens: expected [batch, <= {c.steps(c.max_frames)}, {c.levels}], "
                             f"found {tuple(tokens.shape)}")
        x = torch.cat([self.prefix(voice_ids, text_ids), self.embed_steps(tokens[:, :-1])], dim=1)
        return self.logits(x)[:, 1 + c.text_length:]

    def drop_text(self, text_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training: each row's text becomes PAD only with probability ``cond_drop``."""
        if self.config.cond_drop == 0:
            return text_ids
        drop = torch.rand(text_ids.shape[0], generator=generator).to(text_ids.device) < self.config.cond_drop
        return torch.where(drop[:, None], torch.full_like(text_ids, phonemes.PAD), text_ids)

    def loss(self, voice_ids: torch.Tensor, text_ids: torch.Tensor, codes: torch.Tensor, frames: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of the codes and level 0's EOS (``codes [B, levels, T]``, ``frames [B]``)."""
        tokens = self.delay(codes, frames)
        logits = self(voice_ids, self.drop_text(text_ids, generator), tokens).float()
        logits[..., self.empty_id] = float("-inf")  # never a choice
        target = tokens.masked_fill(tokens == self.empty_id, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
