"""Speech recognition: long-form transcription with Whisper, subtitle writers, the CLI command and
the app tab.

``transcribe(model, tokenizer, audio)`` works as openai-whisper's does: it slides a 30-second window
over the audio, decodes each window (``multimodal.models.whisper_decoding.decode``) and moves the
window to the last timestamp the model predicted, so no word is cut at a window edge. A window whose
output looks wrong (gzip compression ratio above 2.4: repetition; average log-probability below
-1) is decoded again at the next temperature of (0, 0.2, …, 1.0); a window the model calls silent
(no-speech probability above 0.6 and a low log-probability) is skipped. Each window is prompted
with the text so far, unless the previous window needed a temperature above 0.5.

Memory stays flat however long the audio is: the audio is read twice in 30-second chunks, never
whole, and the log-mel spectrogram is computed one window at a time. The first pass finds the
spectrogram's maximum (Whisper clips every value to 8 decades below the maximum of the whole
recording, which we reproduce exactly), the second feeds the windows.

``SpeechRecognitionPipeline`` (task ``"automatic-speech-recognition"``) wraps it with a checkpoint,
input checks and a progress bar in seconds of audio; ``write_result`` writes .txt / .srt / .vtt /
.json; ``add_transcribe_arguments`` / ``run_transcribe`` are the ``multimodal transcribe`` command
and ``transcribe_tab`` the Gradio tab.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..checkpoint import atomic_write_text
from ..convert.whisper import DEFAULT_NAME, default_model_path, load_whisper
from ..errors import InputError
from ..models.whisper_decoding import TASKS, DecodingOptions, DecodingResult, decode, detect_language
from ..paths import resolve_model
from ..media.audio import SAMPLE_RATE, iter_audio_chunks, load_audio
from ..tokenizers.mel import HOP_LENGTH, N_FFT, N_FRAMES, mel_filters
from ..tokenizers.text import WhisperTokenizer
from . import app_pipeline, register_pipeline
from .base import Pipeline, gradio_errors

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FORMATS = ("txt", "srt", "vtt", "json")
QUANTIZATIONS = (None, "int8")
_CHUNK_SECONDS = 30  # audio read per step of either pass


# ------------------------------------------------------------------------------ windowed log-mel
class WindowedLogMel:
    """Whisper's log-mel spectrogram of a recording, one window at a time, in flat memory.

    Equal to ``log_mel_spectrogram(audio, padding=N_SAMPLES)`` sliced as openai-whisper slices it
    (within float rounding): frame i is the power spectrum of the 400 samples centred on sample
    160 i (the signal reflected at its start and followed by zeros), through the mel filters,
    log10, and clipped at 8 decades below the maximum over the whole padded recording.

    ``chunks`` is a function that returns a fresh iterator over the 16 kHz mono samples in
    consecutive pieces; it is called twice: once to measure the maximum and the length, then to
    feed ``window``, whose start frames must not decrease.
    """

    _CONTEXT = N_FFT // 2  # samples either side of a frame's centre

    def __init__(self, chunks: Callable[[], Iterator[np.ndarray]], n_mels: int = 80):
        self.chunks, self.n_mels = chunks, n_mels
        self.num_samples = 0
        self.max_log = -10.0  # log10 of the clamp 1e-10: the zero padding's value
        self._measure()
        self.content_frames = self.num_samples // HOP_LENGTH
        self.floor = self.max_log - 8.0
        self._iter: Iterator[np.ndarray] | None = None
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # sample index of _buffer[0]
        self._exhausted = False

    @property
    def duration(self) -> float:
        return self.content_frames * HOP_LENGTH / SAMPLE_RATE

    def _log10_mel(self, padded: torch.Tensor) -> torch.Tensor:
        """log10 mel power [n_mels, frames] of frames centred at 200, 360, … of ``padded``."""
        if not bool(padded.any()):  # digital silence (hours of it in a long file): the clamp's value
            frames = (len(padded) - N_FFT) // HOP_LENGTH + 1
            return torch.full((self.n_mels, frames), 1e-10).log10_()
        spec = torch.stft(padded, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), center=False,
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return (mel_filters(self.n_mels) @ power).clamp_(min=1e-10).log10_()

    def _measure(self) -> None:
        """One pass over the audio: its length, and the largest log10 mel value of any frame.

        In the padded signal (the start's 200-sample reflection, the samples, then zeros), frame f
        covers [160 f, 160 f + 400); each frame is computed once its samples are in."""
        C = self._CONTEXT
        pending = np.zeros(0, np.float32)  # padded samples from index p0 on
        p0, next_frame, started = 0, 0, False
        for chunk in self.chunks():
            chunk = np.asarray(chunk, np.float32)
            self.num_samples += len(chunk)
            pending = np.concatenate([pending, chunk])
            if not started and len(pending) > C:  # now the reflection can be built
                pending, started = np.concatenate([pending[1:C + 1][::-1], pending]), True
            if started:
                pending, p0, next_frame = self._measure_ready(pending, p0, next_frame)
        if not started:  # at most 200 samples: reflect the zero-extended signal
            pending = np.concatenate([pending, np.zeros(C + 1 - len(pending), np.float32)])
            pending = np.concatenate([pending[1:C + 1][::-1], pending])
        # Three frames past the last content frame, a frame holds only zeros (log10 -10, the
        # initial maximum): measure up to there, with the zeros that follow the samples.
        end = self.num_samples // HOP_LENGTH + 3
        need = (end - 1) * HOP_LENGTH + N_FFT - p0
        pending = np.concatenate([pending, np.zeros(max(0, need - len(pending)), np.float32)])
        self._measure_ready(pending, p0, next_frame, end)

    def _measure_ready(self, pending: np.ndarray, p0: int, next_frame: int, end: int | None = None):
        ready = (p0 + len(pending) - N_FFT) // HOP_LENGTH + 1  # frames whose samples are all in
        if end is not None:
            ready = min(ready, end)
        if ready > next_frame:
            lo, hi = next_frame * HOP_LENGTH - p0, (ready - 1) * HOP_LENGTH + N_FFT - p0
            log = self._log10_mel(torch.from_numpy(np.ascontiguousarray(pending[lo:hi])))
            self.max_log = max(self.max_log, float(log.max()))
            keep = ready * HOP_LENGTH - p0
            pending, p0, next_frame = pending[keep:], p0 + keep, ready
        return pending, p0, next_frame

    def restart(self) -> None:
        """Read the audio from its start again (for windows that go back to frame 0)."""
        self._iter, self._exhausted = None, False
        self._buffer, self._buffer_start = np.zeros(0, np.float32), 0

    def _samples(self, start: int, stop: int) -> np.ndarray:
        """Signal samples [start, stop), with sample -j = sample j (the reflection at the start) and
        zeros after the end. ``start`` must not decrease between calls: older samples are dropped."""
        if self._iter is None:
            self._iter = iter(self.chunks())
        need = max(stop, self._CONTEXT + 1 if start < 0 else 0)
        while not self._exhausted and self._buffer_start + len(self._buffer) < need:
            chunk = next(self._iter, None)
            if chunk is None:
                self._exhausted = True
            else:
                self._buffer = np.concatenate([self._buffer, np.asarray(chunk, np.float32)])
        parts = []
        if start < 0:  # indices start .. -1 are samples -start .. 1
            parts.append(self._zero_extended(1, 1 - start)[::-1][:min(stop, 0) - start])
        if stop > max(start, 0):
            parts.append(self._zero_extended(max(start, 0), stop))
        if start > self._buffer_start:
            self._buffer, self._buffer_start = self._buffer[start - self._buffer_start:], start
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _zero_extended(self, lo: int, hi: int) -> np.ndarray:
        if lo < self._buffer_start:
            raise RuntimeError("WindowedLogMel: windows must not move backwards (call restart())")
        have = self._buffer[lo - self._buffer_start:hi - self._buffer_start]
        if len(have) < hi - lo:
            have = np.concatenate([have, np.zeros(hi - lo - len(have), np.float32)])
        return have

    def window(self, start: int, frames: int, padded_to: int = N_FRAMES) -> tuple[torch.Tensor, float]:
        """Normalised log-mel frames [start, start + frames), then zeros up to ``padded_to``
        frames (the values openai-whisper pads a short last window with) -> ([n_mels, padded_to],
        the level of its loudest mel band in dB relative to a full-scale sine's, see ``level_db``)."""
        frames = max(0, frames)
        out = torch.zeros(self.n_mels, max(padded_to, frames))
        level = -math.inf
        if frames:
            samples = self._samples(start * HOP_LENGTH - self._CONTEXT, (start + frames - 1) * HOP_LENGTH + self._CONTEXT)
            log = self._log10_mel(torch.from_numpy(np.ascontiguousarray(samples)))
            level = level_db(float(log.max()), self.n_mels)
            out[:, :frames] = (torch.maximum(log, torch.tensor(self.floor)) + 4.0) / 4.0
        return out, level


@functools.lru_cache(maxsize=None)
def _full_scale_log(n_mels: int) -> float:
    """log10 mel power of the loudest band of a full-scale 1 kHz sine: the 0 dB of ``level_db``."""
    t = torch.arange(N_FFT, dtype=torch.float32) / SAMPLE_RATE
    spec = torch.stft(torch.sin(2 * math.pi * 1000 * t), N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT),
                      center=False, return_complex=True)
    return float((mel_filters(n_mels) @ spec.abs().square()).max().log10())


def level_db(log10_mel_power: float, n_mels: int = 80) -> float:
    """A log10 mel-band power as dB relative to the loudest band of a full-scale sine. Digital
    silence is -10 (the clamp), about -120 dB; white noise of RMS -60 dBFS peaks near -67 dB;
    ordinary speech near -10 dB."""
    return 10.0 * (log10_mel_power - _full_scale_log(n_mels))


def _chunk_source(audio, sampling_rate: int | None) -> Callable[[], Iterator[np.ndarray]]:
    """A function returning a fresh 16 kHz chunk iterator over ``audio`` (read once more per call)."""
    if hasattr(audio, "read"):  # a file object can be read only once: keep its (compressed) bytes
        audio = audio.read()
    if isinstance(audio, (np.ndarray, torch.Tensor)) or (isinstance(audio, dict) and
                                                         any(k in audio for k in ("array", "raw"))):
        samples = load_audio(audio, sampling_rate)  # in memory already; resample it once
        step = _CHUNK_SECONDS * SAMPLE_RATE
        return lambda: (samples[i:i + step] for i in range(0, len(samples), step))
    return lambda: iter_audio_chunks(audio, _CHUNK_SECONDS, sampling_rate=sampling_rate)


# -------------------------------------------------------------------------------- transcription
def transcribe(model, tokenizer: WhisperTokenizer, audio, *, sampling_rate: int | None = None,
               temperature: float | Sequence[float] = TEMPERATURES, compression_ratio_threshold: float | None = 2.4,
               logprob_threshold: float | None = -1.0, no_speech_threshold: float | None = 0.6,
               condition_on_previous_text: bool = True, initial_prompt: str | None = None,
               language: str | None = None, task: str = "transcribe", beam_size: int | None = 5,
               best_of: int | None = 5, patience: float | None = None, length_penalty: float | None = None,
               suppress_tokens: str | Sequence[int] | None = "-1", suppress_blank: bool = True,
               without_timestamps: bool = False, max_initial_timestamp: float | None = 1.0,
               silence_threshold_db: float | None = -60.0, fp16: bool = False,
               generator: torch.Generator | None = None, progress: Callable[..., Any] | None = None) -> dict:
    """Transcribe (or translate) audio of any length.

    ``audio``: anything ``multimodal.media.audio.load_audio`` reads (a path, bytes, an array
    with ``sampling_rate``, a {"array", "sampling_rate"} dict, …). ``temperature``: one value or the
    fallback sequence. ``beam_size`` applies at temperature 0, ``best_of`` above it. ``progress``:
    a tqdm-like factory called as ``progress(total=seconds, desc=...)``.

    Two guards against Whisper's habit of writing words into silence ("You", ". . ."), beyond
    openai-whisper's no-speech rule (which keeps a window the model is confident about even when it
    calls it silent): a window whose loudest mel band is below ``silence_threshold_db`` (dB relative
    to a full-scale sine; None turns this off) is skipped without decoding, and a segment without a
    single letter or digit is blanked like an empty one. On speech louder than the threshold the
    result equals openai-whisper's ``transcribe`` with the same options.

    Returns {"text", "segments": [{"id", "seek", "start", "end", "text", "tokens", "temperature",
    "avg_logprob", "compression_ratio", "no_speech_prob"}], "language"}.
    """
    temperatures = [temperature] if isinstance(temperature, (int, float)) else list(temperature)
    base = DecodingOptions(task=task, language=language, beam_size=beam_size, best_of=best_of, patience=patience,
                           length_penalty=length_penalty, suppress_tokens=suppress_tokens,
                           suppress_blank=suppress_blank, without_timestamps=without_timestamps,
                           max_initial_timestamp=max_initial_timestamp, fp16=fp16)
    for t in temperatures:  # every option, at every temperature, is checked before any work
        _options_at(base, t).validate()
    _check_language_task(model, tokenizer, language, task)
    if initial_prompt is not None and not isinstance(initial_prompt, str):
        raise InputError(f"initial_prompt: expected None or text, found {type(initial_prompt).__name__}")

    cfg = model.config
    mel = WindowedLogMel(_chunk_source(audio, sampling_rate), cfg.n_mels)
    content_frames = mel.content_frames
    p = next(model.parameters())
    dtype = torch.float16 if fp16 and p.device.type == "cuda" else p.dtype

    if language is None:
        if model.is_multilingual:  # from the first 30 s, as openai-whisper decides it
            first = mel.window(0, N_FRAMES)[0].to(p.device, dtype)[None]
            language = detect_language(model, tokenizer, first)[0][0]
            mel.restart()
        else:
            language = "en"
    base = replace(base, language=language)

    input_stride = N_FRAMES // cfg.n_audio_ctx  # mel frames per audio token: 2
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp: 0.02
    all_tokens: list[int] = []
    segments: list[dict] = []
    prompt_reset_since = 0
    initial_prompt_tokens = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
    all_tokens.extend(initial_prompt_tokens)

    def decode_with_fallback(window: torch.Tensor) -> DecodingResult:
        result = None
        for t in temperatures:
            options = replace(_options_at(base, t), prompt=all_tokens[prompt_reset_since:])
            result = decode(model, tokenizer, window, options, generator=generator)[0]
            needs_fallback = False
            if compression_ratio_threshold is not None and result.compression_ratio > compression_ratio_threshold:
                needs_fallback = True  # too repetitive
            if logprob_threshold is not None and result.avg_logprob < logprob_threshold:
                needs_fallback = True  # too improbable
            if (no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold
                    and logprob_threshold is not None and result.avg_logprob < logprob_threshold):
                needs_fallback = False  # silence: no temperature will find words in it
            if not needs_fallback:
                break
        return result

    bar = progress(total=round(mel.duration, 2), desc="transcribing") if progress is not None else None
    if bar is not None and hasattr(bar, "unit"):
        bar.unit = "s"  # seconds of audio; the rate shown is then the speed-up over real time
    seek = 0
    try:
        while seek < content_frames:
            time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
            segment_size = min(N_FRAMES, content_frames - seek)
            segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            window, level = mel.window(seek, segment_size)
            window = window.to(p.device, dtype)[None]  # [1, n_mels, 3000]
            previous_seek = seek
            if silence_threshold_db is not None and level < silence_threshold_db:
                seek += segment_size  # nothing louder than the threshold: skip it undecoded
                _advance(bar, previous_seek, seek, content_frames)
                continue

            result = decode_with_fallback(window)
            tokens = result.tokens
            if no_speech_threshold is not None:
                silent = result.no_speech_prob > no_speech_threshold
                if logprob_threshold is not None and result.avg_logprob > logprob_threshold:
                    silent = False  # confident words despite the no-speech probability
                if silent:
                    seek += segment_size
                    _advance(bar, previous_seek, seek, content_frames)
                    continue

            current: list[dict] = []

            def add(start: float, end: float, seg_tokens: list[int]) -> None:
                text_tokens = [t for t in seg_tokens if t < tokenizer.eot]
                current.append({"seek": previous_seek, "start": start, "end": end,
                                "text": tokenizer.decode(text_tokens), "tokens": seg_tokens,
                                "temperature": result.temperature, "avg_logprob": result.avg_logprob,
                                "compression_ratio": result.compression_ratio,
                                "no_speech_prob": result.no_speech_prob})

            is_ts = [t >= tokenizer.timestamp_begin for t in tokens]
            single_timestamp_ending = is_ts[-2:] == [False, True]
            # A segment ends where two timestamps follow each other (closing, then opening).
            cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
            if cuts:
                if single_timestamp_ending:
                    cuts.append(len(tokens))
                last_cut = 0
                for cut in cuts:
                    piece = tokens[last_cut:cut]
                    start_pos = piece[0] - tokenizer.timestamp_begin
                    end_pos = piece[-1] - tokenizer.timestamp_begin
                    add(time_offset + start_pos * time_precision, time_offset + end_pos * time_precision, piece)
                    last_cut = cut
                if single_timestamp_ending:  # nothing is said after the last timestamp
                    seek += segment_size
                else:  # the last segment is unfinished: the next window starts where it did
                    seek += (tokens[last_cut - 1] - tokenizer.timestamp_begin) * input_stride
            else:
                duration = segment_duration
                stamps = [t for t, ts in zip(tokens, is_ts) if ts]
                if stamps and stamps[-1] != tokenizer.timestamp_begin:
                    duration = (stamps[-1] - tokenizer.timestamp_begin) * time_precision
                add(time_offset, time_offset + duration, tokens)
                seek += segment_size

            for segment in current:  # an instantaneous segment, or one without a word, carries no text
                if segment["start"] == segment["end"] or not any(c.isalnum() for c in segment["text"]):
                    segment["text"], segment["tokens"] = "", []
            segments.extend({"id": i, **s} for i, s in enumerate(current, start=len(segments)))
            all_tokens.extend(t for s in current for t in s["tokens"])
            if not condition_on_previous_text or result.temperature > 0.5:
                prompt_reset_since = len(all_tokens)  # a hot sample is no context to build on
            _advance(bar, previous_seek, seek, content_frames)
    finally:
        if bar is not None:
            bar.close()

    return {"text": tokenizer.decode(all_tokens[len(initial_prompt_tokens):]), "segments": segments,
            "language": language}


def _advance(bar, previous_seek: int, seek: int, content_frames: int) -> None:
    if bar is not None:
        bar.update(round((min(content_frames, seek) - previous_seek) * HOP_LENGTH / SAMPLE_RATE, 2))


def _options_at(base: DecodingOptions, t: float) -> DecodingOptions:
    """Beam search (and patience) at temperature 0, best-of-N sampling above it."""
    if t > 0:
        return replace(base, temperature=t, beam_size=None, patience=None)
    return replace(base, temperature=t, best_of=None)


def _check_language_task(model, tokenizer, language, task) -> None:
    if task not in TASKS:
        raise InputError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
    if not model.is_multilingual:
        if task != "transcribe":
            raise InputError(f"task: expected 'transcribe' for an English-only model, found {task!r}")
        if language not in (None, "en"):
            raise InputError(f"language: expected None or 'en' for an English-only model, found {language!r}")
    elif language is not None:
        codes = list(tokenizer.languages)[:model.num_languages]
        if language not in codes:
            raise InputError(f"language: expected None (detect it) or a code such as {', '.join(codes[:8])}, …, "
                             f"found {language!r}")


# ------------------------------------------------------------------------------------- writers
def format_timestamp(seconds: float, decimal_marker: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT)."""
    ms = round(max(0.0, seconds) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _cues(result: dict) -> list[tuple[float, float, str]]:
    """(start, end, text) of the segments with text; "-->" in text would end a cue's timing line."""
    return [(s["start"], s["end"], s["text"].strip().replace("-->", "->"))
            for s in result["segments"] if s["text"].strip()]


def format_result(result: dict, format: str) -> str:
    """The text of ``result`` (a transcribe / pipeline output) as txt, srt, vtt or json."""
    _check_result(result)
    if format == "txt":
        return "".join(f"{s['text'].strip()}\n" for s in result["segments"] if s["text"].strip())
    if format == "srt":
        return "\n".join(f"{i}\n{format_timestamp(a, ',')} --> {format_timestamp(b, ',')}\n{text}\n"
                         for i, (a, b, text) in enumerate(_cues(result), start=1))
    if format == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{format_timestamp(a)} --> {format_timestamp(b)}\n{text}\n"
                                        for a, b, text in _cues(result))
    if format == "json":
        return json.dumps(result, ensure_ascii=False) + "\n"
    raise InputError(f"format: expected one of {', '.join(FORMATS)}, found {format!r}")


def write_result(result: dict, path: str | os.PathLike, format: str | None = None) -> Path:
    """Write ``result`` to ``path`` atomically as ``format`` (default: the path's extension)."""
    path = Path(path)
    format = format or path.suffix.lstrip(".").lower()
    text = format_result(result, format)
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

    ``audio`` is a path, bytes, an array or tensor with ``sampling_rate``, a {"array",
    "sampling_rate"} dict, or a list of these (then a list of results comes back).
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
        if isinstance(path_or_name, (str, os.PathLike)) and str(path_or_name) == DEFAULT_NAME \
                and not Path(path_or_name).exists():
            try:
                path_or_name = resolve_model(DEFAULT_NAME)
            except InputError:
                path_or_name = default_model_path()
        pipe = super().from_pretrained(path_or_name, device="cpu" if quantize else device, dtype=dtype)
        if quantize == "int8":
            pipe.model = pipe.model.quantize_int8()
        return pipe

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
                 condition_on_previous_text: bool = True, return_timestamps: bool = True,
                 patience: float | None = None, length_penalty: float | None = None,
                 compression_ratio_threshold: float | None = 2.4, logprob_threshold: float | None = -1.0,
                 no_speech_threshold: float | None = 0.6, silence_threshold_db: float | None = -60.0,
                 generator: torch.Generator | None = None) -> None:
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
        for name, value in (("condition_on_previous_text", condition_on_previous_text),
                            ("return_timestamps", return_timestamps)):
            if not isinstance(value, bool):
                raise InputError(f"{name}: expected True or False, found {value!r}")
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
        _check_language_task(self.model, self.tokenizer, language, task)
        base = DecodingOptions(task=task, language=language, beam_size=beam_size, best_of=best_of,
                               patience=patience, length_penalty=length_penalty)
        for t in temperatures:
            _options_at(base, t).validate()

    # ------------------------------------------------------------------------------------- run
    def _run(self, audio, *, sampling_rate: int | None = None, beam_size: int | None = 5, best_of: int | None = 5,
             temperature: float | Sequence[float] = TEMPERATURES, language: str | None = None,
             task: str = "transcribe", initial_prompt: str | None = None, condition_on_previous_text: bool = True,
             return_timestamps: bool = True, patience: float | None = None, length_penalty: float | None = None,
             compression_ratio_threshold: float | None = 2.4, logprob_threshold: float | None = -1.0,
             no_speech_threshold: float | None = 0.6, silence_threshold_db: float | None = -60.0,
             generator: torch.Generator | None = None):
        options = dict(sampling_rate=sampling_rate, beam_size=beam_size, best_of=best_of, temperature=temperature,
                       language=language, task=task, initial_prompt=initial_prompt,
                       condition_on_previous_text=condition_on_previous_text,
                       without_timestamps=not return_timestamps, patience=patience, length_penalty=length_penalty,
                       compression_ratio_threshold=compression_ratio_threshold,
                       logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold,
                       silence_threshold_db=silence_threshold_db, generator=generator, fp16=self.dtype == torch.float16)
        items = audio if isinstance(audio, list) else [audio]
        results = [transcribe(self.model, self.tokenizer, item, progress=self.progress, **options) for item in items]
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


# ----------------------------------------------------------------------------------------- CLI
def add_transcribe_arguments(parser) -> None:
    """Arguments of ``multimodal transcribe``."""
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, mp3, ogg, m4a, …)")
    parser.add_argument("--model", default=None,
                        help=f"checkpoint folder or name, CTranslate2 / Hugging Face folder or OpenAI .pt "
                             f"(default {DEFAULT_NAME})")
    parser.add_argument("--beam-size", type=int, default=5, help="beams at temperature 0 (default 5)")
    parser.add_argument("--best-of", type=int, default=5, help="samples per window when falling back to "
                                                               "temperature > 0 (default 5)")
    parser.add_argument("--language", default=None, help="language code; default: detect (English-only models: en)")
    parser.add_argument("--task", default="transcribe", choices=TASKS, help="transcribe, or translate to English")
    parser.add_argument("--initial-prompt", default=None, help="text to condition the first window on")
    parser.add_argument("--format", default="all", choices=[*FORMATS, "all"], help="output format (default all)")
    parser.add_argument("--output-dir", default=".", help="folder for the outputs (default: the current one)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")


def run_transcribe(args) -> int:
    """``multimodal transcribe``: write FILE.txt/.srt/.vtt/.json for each file and print its text."""
    from . import pipeline

    formats = FORMATS if args.format == "all" else (args.format,)
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output-dir: expected a folder, found the file {out_dir}")
    pipe = pipeline("automatic-speech-recognition", model=args.model, device=args.device)
    options = dict(beam_size=args.beam_size, best_of=args.best_of, language=args.language, task=args.task,
                   initial_prompt=args.initial_prompt)
    for path in args.audio:  # every file is checked before the first is transcribed
        pipe.validate(path, **options)
    for path in args.audio:
        result = pipe(path, **options)
        for fmt in formats:
            written = write_result(result, out_dir / f"{Path(path).stem}.{fmt}", fmt)
            print(f"{path} -> {written}")
        print(result["text"].strip())
    return 0


# ----------------------------------------------------------------------------------------- app
def transcribe_audio_file(path: str | None, beam_size: float = 5, out_dir: str | None = None):
    """The app's handler: (text, segments table rows, path of the .srt)."""
    if not path:
        raise InputError("audio: expected a recording or an uploaded file, found none")
    result = app_pipeline("automatic-speech-recognition")(path, beam_size=int(beam_size))
    rows = [[format_timestamp(s["start"]), format_timestamp(s["end"]), s["text"].strip()]
            for s in result["segments"] if s["text"].strip()]
    folder = Path(out_dir) if out_dir else Path(_tempdir())
    srt = write_result(result, folder / f"{Path(path).stem}.srt", "srt")
    return result["text"].strip(), rows, str(srt)


def _tempdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="multimodal-asr-")


def transcribe_tab() -> None:
    """The Gradio tab: record or upload audio, read the text and the timed segments, download .srt."""
    import gradio as gr

    handler = gradio_errors(lambda path, beam: transcribe_audio_file(path, beam))
    gr.Markdown(f"Speech to text with Whisper ({DEFAULT_NAME}); long recordings are transcribed window by window.")
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
            beam = gr.Slider(1, 10, value=5, step=1, label="beam size")
            button = gr.Button("transcribe", variant="primary")
        with gr.Column():
            text = gr.Textbox(label="text", lines=6)
            table = gr.Dataframe(headers=["start", "end", "text"], label="segments", wrap=True)
            srt = gr.File(label="subtitles (.srt)")
    button.click(handler, [audio, beam], [text, table, srt], api_name="transcribe")


register_pipeline("automatic-speech-recognition", SpeechRecognitionPipeline, default_model=DEFAULT_NAME,
                  ui=transcribe_tab, title="Transcribe")
