"""The text-to-speech GPT: a text encoder that says how long each symbol lasts, and a causal
transformer on the shared backbone that writes a speech codec's residual codes frame by frame,
every level in one pass by MusicGen's delay pattern, told at each frame which symbol it is saying.

Method
------
1. **Text encoder.** ``[voice][symbols, left-padded with PAD to text_length]`` (the voice's own
   embedding, one per training voice in ``voices``; the front end's symbol ids from
   ``multimodal.tokenizers.phonemes``), plus learned positions, through bidirectional backbone
   blocks (PAD masked out): one state per symbol.
2. **Durations.** A linear head on each symbol's state predicts ``log(1 + frames)``, trained by mean
   squared error against the frames the speech aligner (``multimodal.models.speech_aligner``) found
   for that symbol in the training clip. In generation they are rounded (a sounding symbol gets at
   least one frame); their sum is the number of frames to write.
3. **Frame condition.** Code frame t is said while the symbol whose span holds t is said: its
   state, plus an embedding of how far into the symbol t is (``(t - start) / duration``), plus the
   voice. After the last frame (the delay pattern's tail) a learned ``tail`` vector stands in; with
   the text dropped a learned ``null`` vector stands in for every symbol.
4. **Delay pattern.** Frames of codes ``c[level, t]`` (t < T) become T + levels - 1 steps: at step
   s, level l holds ``c[l, s - l]`` (EMPTY before its first and after its last frame). Step s's
   input is the sum of one embedding per level of step s - 1's tokens (BOS at s = 0) and the frame
   condition of frame s; causal blocks with learned positions; one head per level over the codes.
   So one step writes one code of every level, level l lagging l frames behind level 0 and
   conditioned on the lower levels of its frame. The loss is the cross-entropy of the codes (EMPTY is
   fixed by the pattern) plus ``duration_weight`` times the duration loss.
5. **Condition dropout.** In training the frame condition is the ``null`` one (the voice and the
   durations stay) with probability ``cond_drop``: the unconditional model of classifier-free
   guidance. **Token noise.** In training each code read as input (not the codes predicted) is
   replaced by a random code with probability ``token_noise``, so that the model cannot lean on the
   codes it has written alone and must follow the text (and meets codes unlike its training clips'
   when it reads its own).
6. **Generation** is ``multimodal.generation.autoregressive.generate_delayed``.

Why durations rather than attention from the codes to the text (VALL-E): on a few thousand clips a
decoder-only model learns the speech but not which part of the text it is at (it skips and repeats
words); told the symbol of every frame, it cannot lose its place.
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
from .speech_aligner import sounding


@dataclass
class TextToSpeechGPTConfig(Config):
    codebook_size: int = 512  # the codec's codes per level
    levels: int = 4  # residual levels written (the codec's first n)
    voices: tuple[str, ...] = ("default",)  # names of the voices, in embedding order
    front_end: str = "phonemes"  # phonemes | characters
    text_length: int = 160  # symbols per piece of text
    max_frames: int = 300  # codec frames per piece (6 s at 50 frames/s)
    width: int = 256
    depth: int = 6  # causal blocks of the code writer
    encoder_depth: int = 3  # bidirectional blocks of the text encoder
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    cond_drop: float = 0.1  # training probability of the empty text
    token_noise: float = 0.0  # training probability that a code read as input is replaced by a random one
    duration_weight: float = 1.0  # weight of the duration loss

    def __post_init__(self):
        self.voices = tuple(self.voices)
        self.check_positive_ints("codebook_size", "levels", "text_length", "max_frames", "width", "depth", "encoder_depth", "heads")
        expect(len(self.voices) >= 1 and all(isinstance(v, str) and v for v in self.voices)
               and len(set(self.voices)) == len(self.voices), "TextToSpeechGPTConfig.voices",
               "distinct non-empty names", repr(self.voices))
        expect(self.front_end in phonemes.FRONT_ENDS, "TextToSpeechGPTConfig.front_end",
               f"one of {', '.join(phonemes.FRONT_ENDS)}", repr(self.front_end))
        expect(0 <= self.cond_drop < 1, "TextToSpeechGPTConfig.cond_drop", "a probability below 1", repr(self.cond_drop))
        expect(0 <= self.token_noise < 1, "TextToSpeechGPTConfig.token_noise", "a probability below 1",
               repr(self.token_noise))
        expect(self.duration_weight >= 0, "TextToSpeechGPTConfig.duration_weight", "a weight >= 0",
               repr(self.duration_weight))

    def steps(self, frames: int) -> int:
        """Delayed steps that hold ``frames`` frames of every level."""
        return frames + self.levels - 1

    @property
    def max_len(self) -> int:
        return self.steps(self.max_frames)

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(width=self.width, depth=self.depth, heads=self.heads,
                              mlp_hidden=int(self.width * self.mlp_ratio), causal=True, positions="learned",
                              max_len=self.max_len, dropout=self.dropout)

    def encoder(self) -> BackboneConfig:
        # positions are added by the model (``text_positions``), so that columns of padding only can be left out
        return BackboneConfig(width=self.width, depth=self.encoder_depth, heads=self.heads,
                              mlp_hidden=int(self.width * self.mlp_ratio), dropout=self.dropout)


class TextToSpeechGPT(nn.Module):
    """``forward(voice_ids [B], text_ids [B, text_length], durations [B, text_length], tokens [B, S,
    levels]) -> logits [B, S, levels, codebook_size]`` (teacher forcing on delayed tokens)."""

    def __init__(self, config: TextToSpeechGPTConfig):
        super().__init__()
        self.config = c = config
        K, L = c.codebook_size, c.levels
        self.voice_embed = nn.Embedding(len(c.voices), c.width)
        self.text_embed = nn.Embedding(phonemes.VOCAB + 1, c.width)  # + PAD
        self.text_positions = nn.Parameter(torch.zeros(1 + c.text_length, c.width))
        self.encoder = Transformer(c.encoder())
        self.duration_head = nn.Linear(c.width, 1)
        self.progress_embed = nn.Linear(1, c.width)
        self.tail = nn.Parameter(torch.zeros(c.width))
        self.null = nn.Parameter(torch.zeros(c.width))
        self.code_embed = nn.ModuleList(nn.Embedding(K + 2, c.width) for _ in range(L))  # + EMPTY, BOS
        self.transformer = Transformer(c.backbone())
        self.head = nn.Linear(c.width, L * K, bias=False)
        for table in (self.voice_embed, self.text_embed, *self.code_embed):
            nn.init.normal_(table.weight, std=0.02)
        for vector in (self.tail, self.null, self.text_positions):
            nn.init.normal_(vector, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    # ---------------------------------------------------------------------------- token ids
    @property
    def empty_id(self) -> int:
        return self.config.codebook_size

    @property
    def bos_id(self) -> int:
        return self.config.codebook_size + 1

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
        ``[B, steps(T), levels]`` (EMPTY outside a level's codes)."""
        B, L, T = codes.shape
        S = self.config.steps(T)
        s = torch.arange(S, device=codes.device)[:, None]  # [S, 1]
        t = s - torch.arange(L, device=codes.device)[None]  # [S, L]: the frame a level holds at a step
        inside = (t >= 0)[None] & (t[None] < frames.to(codes.device)[:, None, None])  # [B, S, L]
        gathered = torch.gather(codes, 2, t.clamp(0, T - 1).T[None].expand(B, L, S)).transpose(1, 2)  # [B, S, L]
        return torch.where(inside, gathered, torch.full_like(gathered, self.empty_id))

    def undelay(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """Delayed tokens ``[steps, levels]`` of one row -> its codes ``[levels, frames]``."""
        L = tokens.shape[1]
        return torch.stack([tokens[level:level + frames, level] for level in range(L)])

    # ------------------------------------------------------------------------------- network
    def encode(self, voice_ids: torch.Tensor, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symbol states ``[B, text_length, W]`` and predicted ``log(1 + frames)`` ``[B, text_length]``."""
        c = self.config
        if text_ids.ndim != 2 or text_ids.shape[1] != c.text_length or voice_ids.shape != (text_ids.shape[0],):
            raise InputError(f"text_ids: expected [batch, {c.text_length}] and voice_ids [batch], found "
                             f"{tuple(text_ids.shape)} and {tuple(voice_ids.shape)}")
        # columns that are padding in every row (texts are left-padded) are left out: they change nothing
        real = (text_ids != phonemes.PAD).any(0)
        first = int(real.float().argmax()) if bool(real.any()) else c.text_length - 1
        ids = text_ids[:, first:]
        x = torch.cat([self.voice_embed(voice_ids)[:, None], self.text_embed(ids)], dim=1)
        x = x + torch.cat([self.text_positions[:1], self.text_positions[1 + first:]]).to(x.dtype)
        padding = torch.cat([torch.zeros_like(ids[:, :1], dtype=torch.bool), ids == phonemes.PAD], dim=1)
        states = F.pad(self.encoder(x, key_padding_mask=padding)[:, 1:], (0, 0, first, 0))
        return states, self.duration_head(states)[..., 0]

    def durations(self, log_frames: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """Predicted ``log(1 + frames)`` -> whole frames per symbol (PAD 0; a sounding symbol at least 1)."""
        frames = torch.expm1(log_frames.float()).round().clamp_min(0).long()
        frames = torch.where(sounding(text_ids), frames.clamp_min(1), frames)
        return torch.where(text_ids == phonemes.PAD, torch.zeros_like(frames), frames)

    def frame_condition(self, states: torch.Tensor, durations: torch.Tensor, steps: int,
                        drop: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, steps, W]``: what each frame says (see the module docstring); rows where ``drop`` is
        True say ``null``."""
        B, N, W = states.shape
        ends = durations.cumsum(-1)  # [B, N]
        t = torch.arange(steps, device=states.device)[None].expand(B, steps)
        index = torch.searchsorted(ends, t.contiguous(), right=True)  # the symbol whose span holds frame t
        inside = index < N
        index = index.clamp_max(N - 1)
        length = durations.gather(1, index).clamp_min(1)
        start = ends.gather(1, index) - durations.gather(1, index)
        progress = ((t - start).float() / length.float())[..., None].to(states.dtype)
        said = states.gather(1, index[..., None].expand(B, steps, W))
        if drop is not None:
            said = torch.where(drop.to(states.device)[:, None, None], self.null.to(states.dtype), said)
        said = said + self.progress_embed(progress)
        return torch.where(inside[..., None], said, self.tail.to(states.dtype))

    def embed_steps(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, n, levels]`` -> ``[B, n, W]``: the sum of each level's embedding."""
        return sum(table(tokens[..., level]) for level, table in enumerate(self.code_embed))

    def step_inputs(self, previous: torch.Tensor, condition: torch.Tensor, voice_ids: torch.Tensor) -> torch.Tensor:
        """The inputs ``[B, n, W]`` of n steps: the previous steps' tokens ``[B, n, levels]``, the
        frame conditions ``[B, n, W]`` and the voice."""
        return self.embed_steps(previous) + condition + self.voice_embed(voice_ids)[:, None]

    def bos(self, batch: int) -> torch.Tensor:
        return torch.full((batch, 1, self.config.levels), self.bos_id, dtype=torch.long, device=self.head.weight.device)

    def logits(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Step inputs ``[B, n, W]`` (after what ``cache`` holds) -> ``[B, n, levels, K]``."""
        h = self.head(self.transformer(x, cache=cache))
        return h.view(*h.shape[:2], self.config.levels, self.config.codebook_size)

    def new_cache(self, batch: int) -> KVCache:
        return self.transformer.new_cache(batch, self.config.max_len)

    def forward(self, voice_ids: torch.Tensor, text_ids: torch.Tensor, durations: torch.Tensor,
                tokens: torch.Tensor, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits ``[B, S, levels, K]`` (step s's logits predict ``tokens[:, s]``) and
        the predicted ``log(1 + frames)`` of every symbol."""
        c = self.config
        if tokens.ndim != 3 or tokens.shape[2] != c.levels or tokens.shape[1] > c.max_len:
            raise InputError(f"tokens: expected [batch, <= {c.max_len}, {c.levels}], found {tuple(tokens.shape)}")
        states, log_frames = self.encode(voice_ids, text_ids)
        condition = self.frame_condition(states, durations, tokens.shape[1], drop)
        previous = torch.cat([self.bos(tokens.shape[0]), tokens[:, :-1]], dim=1)
        return self.logits(self.step_inputs(previous, condition, voice_ids)), log_frames

    def loss(self, voice_ids: torch.Tensor, text_ids: torch.Tensor, codes: torch.Tensor, frames: torch.Tensor,
             durations: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of the codes plus ``duration_weight`` times the duration loss (``codes [B,
        levels, T]``, ``frames [B]``, ``durations [B, text_length]`` summing to ``frames``); the
        parts in the dict."""
        drop = None
        if self.training and self.config.cond_drop > 0:
            drop = torch.rand(text_ids.shape[0], generator=generator).to(text_ids.device) < self.config.cond_drop
        tokens = self.delay(codes, frames)
        inputs = tokens
        if self.training and self.config.token_noise > 0:
            hit = torch.rand(tokens.shape, generator=generator).to(tokens.device) < self.config.token_noise
            noise = torch.randint(self.config.codebook_size, tokens.shape, generator=generator).to(tokens.device)
            inputs = torch.where(hit & (tokens != self.empty_id), noise, tokens)
        logits, log_frames = self(voice_ids, text_ids, durations, inputs, drop)
        target = tokens.masked_fill(tokens == self.empty_id, -100)
        codes_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     ignore_index=-100)
        real = text_ids != phonemes.PAD
        duration_loss = F.mse_loss(log_frames.float()[real], torch.log1p(durations.float())[real])
        total = codes_loss + self.config.duration_weight * duration_loss
        return total, {"codes_loss": float(codes_loss.detach()), "duration_loss": float(duration_loss.detach())}

