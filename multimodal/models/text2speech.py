"""Text to speech: the text-to-speech GPT predicts how long each symbol of a text lasts and writes
a speech codec's residual codes frame by frame in a voice, the codec decodes them to 16 kHz audio.

A checkpoint folder holds the GPT (``config.json``, ``model.safetensors``) and the codec
(``codec/``), loaded together by ``TextToSpeech.from_pretrained``.

``speak(texts, voice=...)`` turns each text into speakable pieces (``phonemes.sentences``: digits
read one at a time, unusual characters skipped, long text cut at sentence ends), writes every piece
of every text, decodes each piece and joins a text's pieces with a short pause. So the
length of a text is not capped by the model's window, and memory grows with the longest piece, not
with the text (pieces are written ``PIECES_PER_BATCH`` at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..checkpoint import Part, PretrainedMixin
from ..config import Config
from ..errors import InputError, expect
from ..generation.autoregressive import generate_delayed
from ..tokenizers import phonemes
from .speech_codec import SAMPLE_RATE, SpeechCodec
from .text2speech_gpt import TextToSpeechGPT, TextToSpeechGPTConfig

CODEC_DIR = "codec"
MAX_TEXTS_PER_CALL = 64
PAUSE_SECONDS = 0.15  # silence between the pieces of one text
PIECES_PER_BATCH = 8  # pieces generated together


@dataclass
class TextToSpeechConfig(Config):
    gpt: TextToSpeechGPTConfig = field(default_factory=TextToSpeechGPTConfig)
    max_piece_chars: int = 70  # speakable characters per piece (sentences are cut to fit)
    # The sampling defaults of speak() and the pipeline: greedy, guided by the empty text
    guidance_scale: float = 2.0
    temperature: float = 1.0
    top_k: int | None = 1
    top_p: float | None = None

    def __post_init__(self):
        if isinstance(self.gpt, dict):
            self.gpt = TextToSpeechGPTConfig.from_dict(self.gpt, where="TextToSpeechConfig.gpt")
        expect(isinstance(self.max_piece_chars, int) and self.max_piece_chars > 0, "TextToSpeechConfig.max_piece_chars",
               "a positive number of characters", repr(self.max_piece_chars))


class TextToSpeech(PretrainedMixin, nn.Module):
    """texts -> codes -> audio. ``loss(voice_ids, text_ids, codes, frames, durations)`` trains the GPT; ``speak``
    samples audio; ``voices`` names the voices."""

    config_class = TextToSpeechConfig
    checkpoint_kind = "text-to-speech "
    parts = {"codec": Part(CODEC_DIR, SpeechCodec.from_pretrained,
                           lambda codec, path, dtype: codec.save_pretrained(path, dtype=dtype))}

    def __init__(self, config: TextToSpeechConfig, codec: SpeechCodec):
        super().__init__()
        g = config.gpt
        expect(codec.codebook_size == g.codebook_size and codec.levels >= g.levels, "codec",
               f"at least {g.levels} level(s) of {g.codebook_size} codes (the GPT's)",
               f"{codec.levels} of {codec.codebook_size}")
        self.config = config
        self.gpt = TextToSpeechGPT(g)
        self.codec = codec.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.codec.eval()  # frozen: its quantizer must not update its codebooks
        return self

    @property
    def device(self) -> torch.device:
        return self.gpt.head.weight.device

    @property
    def voices(self) -> tuple[str, ...]:
        return self.config.gpt.voices

    @property
    def sampling_rate(self) -> int:
        return SAMPLE_RATE

    def loss(self, voice_ids, text_ids, codes, frames, durations, generator=None):
        return self.gpt.loss(voice_ids, text_ids, codes, frames, durations, generator)

    def codes_of(self, audio) -> torch.Tensor:
        """Audio -> the GPT's codes ``[B, levels, frames]`` (the codec's first levels)."""
        return self.codec.encode(audio, levels=self.config.gpt.levels)

    def pieces(self, text) -> list[str]:
        """The speakable pieces of one text (an InputError naming ``text`` when nothing is speakable)."""
        pieces = phonemes.sentences(text, self.config.max_piece_chars)
        if not pieces:
            raise InputError(f"text: expected something speakable (letters or digits), found {text!r}")
        return pieces

    @torch.no_grad()
    def speak(self, texts: list[str], *, voice: str | None = None, temperature: float | None = None,
              top_k: int | None = None, top_p: float | None = None, guidance_scale: float | None = None,
              generator=None, max_seconds_per_piece: float | None = None, progress=None) -> list[np.ndarray]:
        """One float32 waveform (16 kHz, in [-1, 1]) per text. A sampling argument left None takes the
        config's default. Every row draws from its own uniforms, so the same seed gives the same
        audio and a text's audio does not depend on the other texts of the call."""
        c = self.config
        temperature = c.temperature if temperature is None else temperature
        guidance_scale = c.guidance_scale if guidance_scale is None else guidance_scale
        top_k = c.top_k if top_k is None else top_k
        top_p = c.top_p if top_p is None else top_p
        expect(0 < len(texts) <= MAX_TEXTS_PER_CALL, "text", f"1 to {MAX_TEXTS_PER_CALL} texts per call",
               str(len(texts)))
        voice_id = self.gpt.voice_id(voice)
        pieces = [self.pieces(t) for t in texts]  # every text checked before anything runs
        gens = [g for text_gen, ps in zip(text_generators(generator, len(texts)), pieces)
                for g in piece_generators(text_gen, len(ps))]
        flat = [p for ps in pieces for p in ps]
        max_frames = None
        if max_seconds_per_piece is not None:
            max_frames = max(1, min(c.gpt.max_frames, round(max_seconds_per_piece * self.codec.frame_rate)))
        waves = []
        for start in range(0, len(flat), PIECES_PER_BATCH):  # memory bounded by the batch, not the text
            chunk = flat[start:start + PIECES_PER_BATCH]
            voice_ids = torch.full((len(chunk),), voice_id, dtype=torch.long, device=self.device)
            codes = generate_delayed(self.gpt, voice_ids, self.gpt.text_ids(chunk), max_frames=max_frames,
                                     temperature=temperature, top_k=top_k, top_p=top_p,
                                     guidance_scale=guidance_scale, generator=gens[start:start + len(chunk)],
                                     progress=progress)
            waves += [self.codec.decode(code[None].to(self.device))[0].cpu().numpy().astype(np.float32)
                      for code in codes]
        pause = np.zeros(round(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
        out, i = [], 0
        for ps in pieces:
            parts = waves[i:i + len(ps)]
            i += len(ps)
            joined = [parts[0]]
            for part in parts[1:]:
                joined += [pause, part]
            out.append(np.clip(np.concatenate(joined), -1.0, 1.0))
        return out


def text_generators(generator, n: int) -> list[torch.Generator]:
    """One generator per text, seeded by a draw from the given generator: from the text's own one
    when a list (one per text) is given, else ``n`` draws in order from the one generator (torch's
    global one when None). So text i of a list with generator ``g`` speaks as it would alone with
    ``g``, and a list of generators makes every text independent of the others."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != n or not all(isinstance(g, torch.Generator) for g in generator):
            raise InputError(f"generator: expected one torch.Generator per text ({n}), found {len(generator)} items")
        seeds = [int(torch.randint(0, 2 ** 62, (1,), generator=g, device=g.device)) for g in generator]
    else:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"generator: expected a torch.Generator, a list of them or None, found "
                             f"{type(generator).__name__}")
        seeds = torch.randint(0, 2 ** 62, (n,), generator=generator).tolist()
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def piece_generators(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """One generator per piece of a text, seeded from the text's generator."""
    seeds = torch.randint(0, 2 ** 62, (n,), generator=generator, device=generator.device)
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
