"""Text to speech with a codec-token GPT (``TextToSpeech``: ``checkpoints/text2speech-gpt``).

``TextToSpeechPipeline`` (tasks ``"text-to-speech"`` and ``"text-to-audio"``) answers as
transformers' text-to-audio pipeline does::

    pipe = multimodal.pipeline("text-to-speech")
    out = pipe("call four zero seven one", voice="kal", generator=torch.Generator().manual_seed(0))
    out["audio"]          # float32 numpy [samples] in [-1, 1]
    out["sampling_rate"]  # 16000
    pipe.voices           # the voices voice= takes

A list of texts gives a list of such dicts. What is read aloud (``multimodal.tokenizers.phonemes``):
digits one at a time ("4071" -> "four zero seven one"), letters (accents dropped), apostrophes and
sentence punctuation; hyphens and slashes as spaces; other characters (symbols, emoji, letters
outside Latin) are skipped. A text with nothing left to read is an ``InputError`` naming ``text``.
Long text is cut into sentences, spoken one by one and joined.

Sampling: ``temperature``, ``top_k``, ``top_p``, ``guidance_scale`` (against the same voice with the
empty text); left None, each takes the checkpoint's default (its ``config.json``; the shipped model
decodes greedily, ``top_k=1``, with ``guidance_scale=2``: pass ``top_k=0`` and a ``temperature`` to
sample). ``generator``: a
``torch.Generator``, an int seed, or a list of either, one per text; the same seed gives the same
audio, and a text's audio does not depend on the other texts of the call. ``voice_prompt``
(continuing a few seconds of a new voice) is checked as audio but not supported by this model: it
is an ``InputError`` that lists the voices to use instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, check_seed
from ..generation.autoregressive import check_sampling
from ..generation.sampling import check_guidance
from ..media.audio import load_audio
from ..models.text2speech import MAX_TEXTS_PER_CALL, TextToSpeech
from .base import Pipeline, text_list

DEFAULT_MODEL = "text2speech-gpt"
MIN_VOICE_PROMPT_SECONDS = 1.0


def _texts(text) -> list[str]:
    texts = text_list(text, "text", "something to say")
    if len(texts) > MAX_TEXTS_PER_CALL:
        raise InputError(f"text: expected at most {MAX_TEXTS_PER_CALL} texts per call, found {len(texts)}")
    return list(texts)


def _generators(generator, n: int):
    """int seeds -> torch.Generators; a list must have one per text."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != n:
            raise InputError(f"generator: expected one generator or seed per text ({n}), found {len(generator)}")
        return [_generator(g) for g in generator]
    return _generator(generator)


def _generator(g):
    if g is None or isinstance(g, torch.Generator):
        return g
    if isinstance(g, int) and not isinstance(g, bool):
        check_seed(g, "generator")
        return torch.Generator().manual_seed(g)
    raise InputError(f"generator: expected a torch.Generator, an int seed, a list of them or None, found "
                     f"{type(g).__name__}")


class TextToSpeechPipeline(Pipeline):
    """``pipe(text_or_list, voice=None, generator=None, temperature=None, top_k=None, top_p=None,
    guidance_scale=None)`` -> ``{"audio", "sampling_rate"}`` (a list of them for a list of texts)."""

    def __init__(self, model: TextToSpeech):
        super().__init__()
        self.model = model

    @classmethod
    def _load(cls, folder: Path) -> TextToSpeechPipeline:
        return cls(TextToSpeech.from_pretrained(folder))

    @property
    def voices(self) -> list[str]:
        return list(self.model.voices)

    @property
    def sampling_rate(self) -> int:
        return self.model.sampling_rate

    def validate(self, text, voice: str | None = None, generator=None, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, guidance_scale: float | None = None,
                 voice_prompt=None, max_seconds_per_piece: float | None = None) -> None:
        texts = _texts(text)
        if voice is not None and (not isinstance(voice, str) or voice not in self.voices):
            raise InputError(f"voice: expected one of {', '.join(self.voices)}, found {voice!r}")
        check_sampling(1.0 if temperature is None else temperature, top_k, top_p)
        if guidance_scale is not None:
            check_guidance(guidance_scale)
        _generators(generator, len(texts))
        if max_seconds_per_piece is not None and (isinstance(max_seconds_per_piece, bool) or not isinstance(
                max_seconds_per_piece, (int, float)) or not max_seconds_per_piece > 0):
            raise InputError(f"max_seconds_per_piece: expected a positive number of seconds, found "
                             f"{max_seconds_per_piece!r}")
        if voice_prompt is not None:
            self._check_voice_prompt(voice_prompt)
        for i, t in enumerate(texts):
            try:
                self.model.pieces(t)
            except InputError as e:
                raise InputError(str(e).replace("text:", f"text[{i}]:" if len(texts) > 1 else "text:", 1)) from None

    def _check_voice_prompt(self, voice_prompt) -> None:
        try:
            rate = self.sampling_rate if isinstance(voice_prompt, (np.ndarray, torch.Tensor, list)) else None
            audio = load_audio(np.asarray(voice_prompt, dtype=np.float32) if isinstance(voice_prompt, list)
                               else voice_prompt, rate, name="voice_prompt")
        except InputError as e:
            message = str(e)
            raise InputError(message if message.startswith("voice_prompt") else f"voice_prompt: {message}") from None
        except Exception as e:  # anything that is not audio
            raise InputError(f"voice_prompt: expected audio (a file, or samples at 16 kHz), found "
                             f"{type(voice_prompt).__name__}: {e}") from None
        seconds = len(audio) / self.sampling_rate
        if seconds < MIN_VOICE_PROMPT_SECONDS:
            raise InputError(f"voice_prompt: expected at least {MIN_VOICE_PROMPT_SECONDS:g} s of audio, found "
                             f"{seconds:.2f} s")
        raise InputError(f"voice_prompt: this model speaks only its training voices and does not continue an "
                         f"acoustic prompt; expected voice= one of {', '.join(self.voices)}")

    def _run(self, text, voice: str | None = None, generator=None, temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None, guidance_scale: float | None = None,
             voice_prompt=None, max_seconds_per_piece: float | None = None):
        texts = _texts(text)
        waves = self.model.speak(texts, voice=voice, temperature=temperature, top_k=top_k, top_p=top_p,
                                 guidance_scale=guidance_scale, generator=_generators(generator, len(texts)),
                                 max_seconds_per_piece=max_seconds_per_piece, progress=self.progress)
        out = [{"audio": np.asarray(w, dtype=np.float32), "sampling_rate": self.sampling_rate} for w in waves]
        return out[0] if isinstance(text, str) else out
