"""Speech recognition with Whisper: the pipeline and the subtitle writers.

The long-form loop is ``multimodal.generation.transcribe``.

``SpeechRecognitionPipeline`` (task ``"automatic-speech-recognition"``) wraps it with a checkpoint,
input checks and a progress bar in seconds of audio; ``write_result`` writes .txt / .srt / .vtt /
.json.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..checkpoint import atomic_write_text
from ..convert.whisper import DEFAULT_NAME, canonical_name, load_whisper, locate_whisper
from ..errors import InputError, check_seed
from ..generation.transcribe import (TEMPERATURES, check_batch_size, check_language_task, options_at, transcribe,
                                     transcribe_batch, vad_options_of)
from ..generation.whisper_decoding import DecodingOptions
from ..tokenizers.whisper_text import WhisperTokenizer
from .base import Pipeline

FORMATS = ("txt", "srt", "vtt", "json")
WORD_STYLES = (None, "highlight", "cues")  # subtitles with word timing: each word underlined in turn, or a cue each
QUANTIZATIONS = (None, "int8")


# ------------------------------------------------------------------------------------- writers
def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT)."""
    ms = round(max(0.0, seconds) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _cues(result: dict, words: str | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) of the subtitle cues: one per segment with text, or with ``words`` (a
    result with word timestamps) one per word (``"cues"``), or one per word of each segment with
    that word underlined (``"highlight"``). "-->" in text would end a cue's timing line."""
    if words not in WORD_STYLES:
        raise InputError(f"words: expected None, 'highlight' or 'cues', found {words!r}")
    segments = [s for s in result["segments"] if s["text"].strip()]
    if words is not None and any("words" not in s for s in segments):
        raise InputError("words: expected a result with word timestamps (return_timestamps='word', "
                         "--word-timestamps), found segments without 'words'")
    cues = []
    for s in segments:
        if words is None:
            cues.append((s["start"], s["end"], s["text"].strip()))
        elif words == "cues":
            cues += [(w["start"], w["end"], w["word"].strip()) for w in s["words"]]
        else:
            for i, w in enumerate(s["words"]):
                line = "".join(f"<u>{x['word']}</u>" if j == i else x["word"] for j, x in enumerate(s["words"]))
                cues.append((w["start"], w["end"], line.strip().replace("<u> ", " <u>")))
    return [(a, b, text.replace("-->", "->")) for a, b, text in cues]


def format_result(result: dict, format: str, words: str | None = None) -> str:
    """The text of ``result`` (a transcribe / pipeline output) as txt, srt, vtt or json; ``words``
    ("highlight" or "cues") makes word-timed subtitles of a result with word timestamps."""
    _check_result(result)
    if format == "txt":
        return "".join(f"{s['text'].strip()}\n" for s in result["segments"] if s["text"].strip())
    if format == "srt":
        return "\n".join(f"{i}\n{format_timestamp(a, ',')} --> {format_timestamp(b, ',')}\n{text}\n"
                         for i, (a, b, text) in enumerate(_cues(result, words), start=1))
    if format == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{format_timestamp(a)} --> {format_timestamp(b)}\n{text}\n"
                                        for a, b, text in _cues(result, words))
    if format == "json":
        return json.dumps(result, ensure_ascii=False) + "\n"
    raise InputError(f"format: expected one of {', '.join(FORMATS)}, found {format!r}")


def write_result(result: dict, path: str | os.PathLike, format: str | None = None, words: str | None = None) -> Path:
    """Write ``result`` to ``path`` atomically as ``format`` (default: the path's extension)."""
    path = Path(path)
    format = format or path.suffix.lstrip(".").lower()
    text = format_result(result, format, words)
    atomic_write_text(path, text)
    return path


def _check_result(result) -> None:
    ok = isinstance(result, dict) and isinstance(result.get("segments"), list) and all(
        isinstance(s, dict) and isinstance(s.get("text"), str) and isinstance(s.get("start"), (int, float))
        and isinstance(s.get("end"), (int, float)) for s in result["segments"])
    if not ok:
        raise InputError("result: expected a transcription dict with 'segments' of {'start', 'end', 'text'}, "
                         f"found {type(result).__name__}")


# ------------------------------------------------------------------------------------ pipeline
class SpeechRecognitionPipeline(Pipeline):
    """Whisper speech recognition: ``pipe(audio)`` -> {"text", "segments", "language"}.

    ``return_timestamps="word"`` adds each segment's ``words`` ([{"word", "start", "end",
    "probability"}]) from the cross-attention of the checkpoint's alignment heads
    (``config.alignment_heads``; a checkpoint without them uses the last half of the decoder's
    layers, all heads, as openai-whisper does). ``vad_filter=True`` decodes only the speech Silero VAD
    finds (``vad_options``: threshold, min_speech_duration_ms, min_silence_duration_ms,
    speech_pad_ms), the times mapped back onto the recording; no speech gives an empty result.

    ``audio`` is a path, bytes, an array or tensor with ``sampling_rate``, a {"array",
    "sampling_rate"} dict, or a list of these (then a list of results comes back).

    ``batch_size``: a list is transcribed ``batch_size`` recordings side by side (each window round
    one batch through the encoder and the beam search; ``transcribe_batch``), with the text of
    one-by-one decoding but for float rounding; one recording with ``vad_filter=True`` is cut into
    pieces of at most 30 s of speech, transcribed side by side. None (default): one window at a time.
    """

    def __init__(self, model, tokenizer: WhisperTokenizer):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike = DEFAULT_NAME, device=None, dtype=None,
                        quantize: str | None = None):
        """A checkpoint folder or name, a CTranslate2 or Hugging Face Whisper folder, or an OpenAI
        ``.pt`` file. ``"whisper-tiny.en"``, the default, is converted from its package on first use.
        ``quantize="int8"``: int8 dynamic quantization for the CPU (see ``Whisper.quantize_int8``)."""
        if quantize not in QUANTIZATIONS:
            raise InputError(f"quantize: expected one of {', '.join(map(repr, QUANTIZATIONS))}, found {quantize!r}")
        if quantize is not None and (torch.device(device).type if device is not None else "cpu") != "cpu":
            raise InputError(f"quantize: expected device 'cpu' for int8 quantization, found {device!r}")
        pipe = super().from_pretrained(path_or_name, device="cpu" if quantize else device, dtype=dtype)
        pipe.name_or_path = canonical_name(pipe.name_or_path)  # "tiny.en" and "whisper-tiny.en" are one base
        if quantize == "int8":
            pipe.model = pipe.model.quantize_int8()
        return pipe

    @classmethod
    def _resolve(cls, path_or_name) -> Path:
        return locate_whisper(path_or_name)

    @classmethod
    def _load(cls, folder: Path) -> SpeechRecognitionPipeline:
        model = load_whisper(folder)
        where = folder.parent if folder.is_file() else folder
        if not (where / "tokenizer.json").is_file():
            raise InputError(f"model: expected a tokenizer.json with the Whisper weights in {where}, found none")
        tokenizer = WhisperTokenizer.from_file(where / "tokenizer.json", multilingual=model.is_multilingual)
        return cls(model, tokenizer)

    # ---------------------------------------------------------------------------------- checks
    def validate(self, audio, *, sampling_rate: int | None = None, beam_size: int | None = 5,
                 best_of: int | None = 5, temperature: float | Sequence[float] = TEMPERATURES,
                 language: str | None = None, task: str = "transcribe", initial_prompt: str | None = None,
                 condition_on_previous_text: bool = True, return_timestamps: bool | str = True,
                 patience: float | None = None, length_penalty: float | None = None,
                 compression_ratio_threshold: float | None = 2.4, logprob_threshold: float | None = -1.0,
                 no_speech_threshold: float | None = 0.6, silence_threshold_db: float | None = -60.0,
                 generator: torch.Generator | None = None, seed: int | None = 0, vad_filter: bool = False,
                 vad_options: dict | None = None, batch_size: int | None = None) -> None:
        check_batch_size(batch_size)
        items = audio if isinstance(audio, list) else [audio]
        if not items:
            raise InputError("audio: expected an audio input or a non-empty list of them, found an empty list")
        for i, item in enumerate(items):
            _check_audio(item, sampling_rate, f"audio[{i}]" if isinstance(audio, list) else "audio")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            temperatures = [temperature]
        elif isinstance(temperature, (list, tuple)) and temperature:
            temperatures = list(temperature)
        else:
            raise InputError(f"temperature: expected a number or a non-empty sequence of numbers, found {temperature!r}")
        if not isinstance(condition_on_previous_text, bool):
            raise InputError(f"condition_on_previous_text: expected True or False, found {condition_on_previous_text!r}")
        if not isinstance(return_timestamps, bool) and return_timestamps != "word":
            raise InputError(f"return_timestamps: expected True, False or 'word', found {return_timestamps!r}")
        if return_timestamps == "word" and task == "translate":
            raise InputError("return_timestamps: expected True or False when translating (word timestamps align "
                             "the spoken words, not a translation), found 'word'")
        for name, value in (("compression_ratio_threshold", compression_ratio_threshold),
                            ("logprob_threshold", logprob_threshold), ("no_speech_threshold", no_speech_threshold),
                            ("silence_threshold_db", silence_threshold_db)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise InputError(f"{name}: expected None or a finite number, found {value!r}")
        if initial_prompt is not None and not isinstance(initial_prompt, str):
            raise InputError(f"initial_prompt: expected None or text, found {type(initial_prompt).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"generator: expected None or a torch.Generator, found {type(generator).__name__}")
        if seed is not None:
            check_seed(seed)
        if not isinstance(vad_filter, bool):
            raise InputError(f"vad_filter: expected True or False, found {vad_filter!r}")
        if vad_filter:
            vad_options_of(vad_options)
        check_language_task(self.model, self.tokenizer, language, task)
        base = DecodingOptions(task=task, language=language, beam_size=beam_size, best_of=best_of,
                               patience=patience, length_penalty=length_penalty)
        for t in temperatures:
            options_at(base, t).validate()

    # ------------------------------------------------------------------------------------- run
    def _run(self, audio, *, sampling_rate: int | None = None, beam_size: int | None = 5, best_of: int | None = 5,
             temperature: float | Sequence[float] = TEMPERATURES, language: str | None = None,
             task: str = "transcribe", initial_prompt: str | None = None, condition_on_previous_text: bool = True,
             return_timestamps: bool | str = True, patience: float | None = None, length_penalty: float | None = None,
             compression_ratio_threshold: float | None = 2.4, logprob_threshold: float | None = -1.0,
             no_speech_threshold: float | None = 0.6, silence_threshold_db: float | None = -60.0,
             generator: torch.Generator | None = None, seed: int | None = 0, vad_filter: bool = False,
             vad_options: dict | None = None, batch_size: int | None = None):
        options = dict(sampling_rate=sampling_rate, beam_size=beam_size, best_of=best_of, temperature=temperature,
                       language=language, task=task, initial_prompt=initial_prompt,
                       condition_on_previous_text=condition_on_previous_text,
                       without_timestamps=return_timestamps is False, word_timestamps=return_timestamps == "word",
                       patience=patience, length_penalty=length_penalty,
                       compression_ratio_threshold=compression_ratio_threshold,
                       logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold,
                       silence_threshold_db=silence_threshold_db, generator=generator, seed=seed, vad_filter=vad_filter,
                       vad_options=vad_options, fp16=self.dtype == torch.float16)
        if isinstance(audio, list) and batch_size is not None:
            return transcribe_batch(self.model, self.tokenizer, audio, batch_size=batch_size, progress=self.progress,
                                    **options)
        items = audio if isinstance(audio, list) else [audio]
        results = [transcribe(self.model, self.tokenizer, item, batch_size=batch_size, progress=self.progress,
                              **options) for item in items]
        return results if isinstance(audio, list) else results[0]


def _check_audio(item, sampling_rate, name: str) -> None:
    """Cheap checks before any decoding (what is not caught here, decoding reports as InputError)."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not str(item) or not path.is_file():
            raise InputError(f"{name}: expected an audio file, found {str(item)!r}, which "
                             f"{'is a directory' if path.is_dir() else 'does not exist'}")
        if sampling_rate is not None:
            raise InputError(f"sampling_rate: expected None for a file (its header gives the rate), found {sampling_rate}")
    elif isinstance(item, (np.ndarray, torch.Tensor)):
        if sampling_rate is None:
            raise InputError(f"sampling_rate: expected the rate of the samples in {name} (e.g. 16000), found None")
        if item.size == 0 if isinstance(item, np.ndarray) else item.numel() == 0:
            raise InputError(f"{name}: expected at least one sample, found an empty array")
    elif isinstance(item, (bytes, bytearray, memoryview, dict)) or hasattr(item, "read"):
        if isinstance(item, (bytes, bytearray, memoryview)) and not len(item):
            raise InputError(f"{name}: expected the bytes of an audio file, found 0 bytes")
    else:
        raise InputError(f"{name}: expected a path, bytes, an array with sampling_rate, or a dict with 'array' and "
                         f"'sampling_rate', found {type(item).__name__}")
