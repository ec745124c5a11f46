"""Voice activity detection: where in a recording someone speaks, so that only speech is decoded.

The detector is Silero VAD (the ``silero-vad`` package, MIT; its TorchScript model ships inside the
wheel, so it works offline): a speech probability per 32 ms frame, turned into regions with a
threshold, a shortest speech and a shortest pause. ``speech_regions`` gives the regions;
``SpeechOnly`` cuts them out of the audio, joined end to end, and maps times in the joined audio
back to the recording, which is how ``transcribe(..., vad_filter=True)`` reports its timestamps.
Defaults follow faster-whisper's (pauses under 2 s do not split a region; 0.4 s of padding).
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..media.audio import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability above which a frame is speech
    min_speech_duration_ms: int = 250  # shorter bursts are dropped
    min_silence_duration_ms: int = 2000  # shorter pauses do not end a region
    speech_pad_ms: int = 400  # kept on each side of a region
    max_speech_duration_s: float = float("inf")  # longer regions are split at their longest pause

    def validate(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0 < self.threshold < 1:
            raise InputError(f"vad threshold: expected a number in (0, 1), found {self.threshold!r}")
        for name in ("min_speech_duration_ms", "min_silence_duration_ms", "speech_pad_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"vad {name}: expected an integer >= 0, found {value!r}")
        value = self.max_speech_duration_s
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1:
            raise InputError(f"vad max_speech_duration_s: expected a number of seconds > 1, found {value!r}")


_MODEL_LOCK = threading.Lock()


@functools.cache
def _model():
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise InputError("vad_filter: expected the silero-vad package (pip install silero-vad), found it missing") \
            from None
    with warnings.catch_warnings():  # the package's own deprecation notices (importlib, torch.jit)
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


@torch.no_grad()
def speech_regions(audio: np.ndarray, options: VadOptions | None = None) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech in 16 kHz mono ``audio``, in order, disjoint."""
    from silero_vad import get_speech_timestamps

    options = options or VadOptions()
    options.validate()
    if len(audio) == 0:
        return []
    with _MODEL_LOCK:  # one stateful model per process: one recording at a time
        model = _model()
        model.reset_states()
        found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), model,
                                      threshold=options.threshold, sampling_rate=SAMPLE_RATE,
                                      min_speech_duration_ms=options.min_speech_duration_ms,
                                      min_silence_duration_ms=options.min_silence_duration_ms,
                                      speech_pad_ms=options.speech_pad_ms,
                                      max_speech_duration_s=options.max_speech_duration_s)
    return [(int(r["start"]), int(r["end"])) for r in found]


class SpeechOnly:
    """The speech regions of a recording joined end to end, and the map from times in the joined
    audio back to times in the recording."""

    def __init__(self, audio: np.ndarray, regions: list[tuple[int, int]]):
        self.regions = regions
        self.audio = np.concatenate([audio[a:b] for a, b in regions]) if regions else np.zeros(0, np.float32)
        lengths = [b - a for a, b in regions]
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # where each region starts

    def original_time(self, seconds: float, is_end: bool = False) -> float:
        """A time in the joined audio -> the same instant in the recording. A time exactly where two
        regions meet is the end of the first (``is_end``) or the start of the second."""
        if not self.regions:
            return seconds
        sample = seconds * SAMPLE_RATE
        side = "left" if is_end else "right"
        k = int(np.clip(np.searchsorted(self._offsets[1:], sample, side=side), 0, len(self.regions) - 1))
        start = self.regions[k][0]
        return round(float(start + sample - self._offsets[k]) / SAMPLE_RATE, 3)

    def restore(self, result: dict) -> dict:
        """``result`` (of transcribing ``self.audio``) with its segments' and words' times moved back
        onto the recording."""
        for segment in result["segments"]:
            segment["start"] = self.original_time(segment["start"])
            segment["end"] = self.original_time(segment["end"], is_end=True)
            for word in segment.get("words", []):
                word["start"] = self.original_time(word["start"])
                word["end"] = self.original_time(word["end"], is_end=True)
        return result

    @property
    def speech_seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE
