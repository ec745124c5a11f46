"""Long-form transcription with Whisper: ``transcribe(model, tokenizer, audio)``.

It works as openai-whisper's does: it slides a 30-second window over the audio, decodes each window
(``multimodal.generation.whisper_decoding.decode``) and moves the window to the last timestamp the
model predicted, so no word is cut at a window edge. A window whose output looks wrong (gzip
compression ratio above 2.4: repetition; average log-probability below -1) is decoded again at the
next temperature of (0, 0.2, …, 1.0); a window the model calls silent (no-speech probability above
0.6 and a low log-probability) is skipped. Each window is prompted with the text so far, unless the
previous window needed a temperature above 0.5.

Memory stays flat however long the audio is: the audio is read twice in 30-second chunks, never
whole, and the log-mel spectrogram is computed one window at a time (``WindowedLogMel``). The first
pass finds the spectrogram's maximum (Whisper clips every value to 8 decades below the maximum of
the whole recording, which we reproduce exactly), the second feeds the windows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError, check_seed
from ..media.audio import SAMPLE_RATE, iter_audio_chunks, load_audio
from ..tokenizers.mel import HOP_LENGTH, N_FFT, N_FRAMES, mel_filters
from ..tokenizers.whisper_text import WhisperTokenizer
from .whisper_decoding import CHUNK_LENGTH, TASKS, DecodingOptions, DecodingResult, decode, detect_language
from .vad import SpeechOnly, VadOptions, speech_regions
from .word_timing import add_word_timestamps, last_word_end

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
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
MAX_BATCH = 32  # most windows decoded at once: each holds a decoder cache per beam


@dataclass(frozen=True)
class Fallback:
    """The temperature fallback and the no-speech rule (openai-whisper's): which temperatures to try
    in turn, when a window's output is redone at the next one, and when a window counts as silent."""

    temperatures: tuple[float, ...] = TEMPERATURES
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6

    def needs_fallback(self, result: DecodingResult) -> bool:
        needed = False
        if self.compression_ratio_threshold is not None and result.compression_ratio > self.compression_ratio_threshold:
            needed = True  # too repetitive
        if self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold:
            needed = True  # too improbable
        if (self.no_speech_threshold is not None and result.no_speech_prob > self.no_speech_threshold
                and self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold):
            needed = False  # silence: no temperature will find words in it
        return needed

    def is_silent(self, result: DecodingResult) -> bool:
        if self.no_speech_threshold is None:
            return False
        if self.logprob_threshold is not None and result.avg_logprob > self.logprob_threshold:
            return False  # confident words despite the no-speech probability
        return result.no_speech_prob > self.no_speech_threshold


Job = tuple  # (window [n_mels, 3000], DecodingOptions with its prompt, generator for sampling or None)


def decode_with_fallback(model, tokenizer, jobs: list[Job], fallback: Fallback, batch_size: int = 1) -> list[DecodingResult]:
    """Decode each window at the first temperature of ``fallback.temperatures`` whose output passes
    (the last one's output otherwise).

    Windows whose options are equal (the prompt included) are decoded together, up to ``batch_size``
    at once, at temperature 0: greedy and beam search do not depend on the other windows of a batch
    (only float rounding does). Sampled windows are decoded one at a time with their own generator,
    so that each samples what it would alone."""
    results: list[DecodingResult | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    for t in fallback.temperatures:
        groups: dict[str, list[int]] = {}
        for i in pending:
            groups.setdefault(repr(options_at(jobs[i][1], t)) if t == 0 else str(i), []).append(i)
        for members in groups.values():
            for lo in range(0, len(members), batch_size):
                batch = members[lo:lo + batch_size]
                windows = torch.stack([jobs[i][0] for i in batch])
                found = decode(model, tokenizer, windows, options_at(jobs[batch[0]][1], t),
                               generator=jobs[batch[0]][2] if t > 0 else None)
                for i, result in zip(batch, found):
                    results[i] = result
        pending = [i for i in pending if fallback.needs_fallback(results[i])]
        if not pending:
            break
    return results


class Recording:
    """The long-form transcription of one recording, a window at a time: ``next_window()`` gives the
    next 30-second window to decode (None when the recording is done), ``take(result)`` turns its
    decoding into segments and moves the window on, ``result()`` is the transcription.

    ``vad``: VadOptions to decode only the speech Silero VAD finds, joined end to end (the recording
    is then read whole), with the times mapped back onto the recording."""

    def __init__(self, model, tokenizer: WhisperTokenizer, audio, sampling_rate: int | None, base: DecodingOptions,
                 fallback: Fallback, *, initial_prompt: str | None = None, condition_on_previous_text: bool = True,
                 silence_threshold_db: float | None = -60.0, word_timestamps: bool = False,
                 generator: torch.Generator | None = None, vad: VadOptions | None = None, bar=None):
        self.model, self.tokenizer, self.fallback, self.bar = model, tokenizer, fallback, bar
        self.condition_on_previous_text, self.silence_threshold_db = condition_on_previous_text, silence_threshold_db
        self.word_timestamps, self.generator = word_timestamps, generator
        self.speech = None
        if vad is not None:
            samples = load_audio(audio, sampling_rate)
            self.speech = SpeechOnly(samples, speech_regions(samples, vad))
            audio, sampling_rate = self.speech.audio, SAMPLE_RATE
        p = next(model.parameters())
        self.device = p.device
        self.dtype = torch.float16 if base.fp16 and p.device.type == "cuda" else p.dtype
        language = base.language
        if self.speech is not None and not self.speech.regions:  # no speech: nothing to decode
            self.mel, self.content_frames = None, 0
            language = language or ("en" if not model.is_multilingual else None)
        else:
            self.mel = WindowedLogMel(_chunk_source(audio, sampling_rate), model.config.n_mels)
            self.content_frames = self.mel.content_frames
            if language is None:
                if model.is_multilingual:  # from the first 30 s, as openai-whisper decides it
                    first = self.mel.window(0, N_FRAMES)[0].to(p.device, self.dtype)[None]
                    language = detect_language(model, tokenizer, first)[0][0]
                    self.mel.restart()
                else:
                    language = "en"
        self.language = language
        self.base = replace(base, language=language)
        self.input_stride = N_FRAMES // model.config.n_audio_ctx  # mel frames per audio token: 2
        self.time_precision = self.input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp: 0.02
        self.initial_prompt_tokens = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
        self.all_tokens: list[int] = list(self.initial_prompt_tokens)
        self.segments: list[dict] = []
        self.prompt_reset_since = 0
        self.seek = 0
        self.last_speech_timestamp = 0.0
        self._window: tuple[torch.Tensor, int, int] | None = None  # (mel, frames, its seek)

    @property
    def duration(self) -> float:
        return self.mel.duration if self.mel is not None else 0.0

    def _move_to(self, seek: int, previous_seek: int) -> None:
        self.seek = seek
        if self.bar is not None:
            _advance(self.bar, previous_seek, seek, self.content_frames)

    def next_window(self) -> Job | None:
        """The next window to decode, skipping those quieter than the silence threshold undecoded."""
        while self.seek < self.content_frames:
            size = min(N_FRAMES, self.content_frames - self.seek)
            window, level = self.mel.window(self.seek, size)
            if self.silence_threshold_db is not None and level < self.silence_threshold_db:
                self._move_to(self.seek + size, self.seek)
                continue
            self._window = (window.to(self.device, self.dtype), size, self.seek)
            options = replace(self.base, prompt=self.all_tokens[self.prompt_reset_since:])
            return self._window[0], options, self.generator
        return None

    def take(self, result: DecodingResult) -> None:
        """The segments of the window ``next_window`` gave, from its decoding; the window moves to
        the last timestamp the model predicted (or to the last word's end)."""
        window, segment_size, previous_seek = self._window
        tokenizer = self.tokenizer
        if self.fallback.is_silent(result):
            self._move_to(previous_seek + segment_size, previous_seek)
            return
        time_offset = float(previous_seek * HOP_LENGTH / SAMPLE_RATE)
        tokens = result.tokens
        current: list[dict] = []

        def add(start: float, end: float, seg_tokens: list[int]) -> None:
            text_tokens = [t for t in seg_tokens if t < tokenizer.eot]
            current.append({"seek": previous_seek, "start": start, "end": end, "text": tokenizer.decode(text_tokens),
                            "tokens": seg_tokens, "temperature": result.temperature,
                            "avg_logprob": result.avg_logprob, "compression_ratio": result.compression_ratio,
                            "no_speech_prob": result.no_speech_prob})

        is_ts = [t >= tokenizer.timestamp_begin for t in tokens]
        single_timestamp_ending = is_ts[-2:] == [False, True]
        # A segment ends where two timestamps follow each other (closing, then opening).
        cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        seek = previous_seek
        if cuts:
            if single_timestamp_ending:
                cuts.append(len(tokens))
            last_cut = 0
            for cut in cuts:
                piece = tokens[last_cut:cut]
                start_pos = piece[0] - tokenizer.timestamp_begin
                end_pos = piece[-1] - tokenizer.timestamp_begin
                add(time_offset + start_pos * self.time_precision, time_offset + end_pos * self.time_precision, piece)
                last_cut = cut
            if single_timestamp_ending:  # nothing is said after the last timestamp
                seek += segment_size
            else:  # the last segment is unfinished: the next window starts where it did
                seek += (tokens[last_cut - 1] - tokenizer.timestamp_begin) * self.input_stride
        else:
            duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            stamps = [t for t, ts in zip(tokens, is_ts) if ts]
            if stamps and stamps[-1] != tokenizer.timestamp_begin:
                duration = (stamps[-1] - tokenizer.timestamp_begin) * self.time_precision
            add(time_offset, time_offset + duration, tokens)
            seek += segment_size

        if self.word_timestamps:
            add_word_timestamps(current, self.model, tokenizer, window[None], segment_size, self.last_speech_timestamp,
                                self.language if self.model.is_multilingual else None, self.base.task)
            end = last_word_end(current)
            if not single_timestamp_ending and end is not None and end > time_offset:
                seek = round(end * SAMPLE_RATE / HOP_LENGTH)  # the next window starts at the last word's end
            if end is not None:
                self.last_speech_timestamp = end

        for segment in current:  # an instantaneous segment, or one without a word, carries no text
            if segment["start"] == segment["end"] or not any(c.isalnum() for c in segment["text"]):
                segment["text"], segment["tokens"] = "", []
                if self.word_timestamps:
                    segment["words"] = []
        self.segments.extend({"id": i, **s} for i, s in enumerate(current, start=len(self.segments)))
        self.all_tokens.extend(t for s in current for t in s["tokens"])
        if not self.condition_on_previous_text or result.temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)  # a hot sample is no context to build on
        self._move_to(seek, previous_seek)

    def result(self) -> dict:
        out = {"text": self.tokenizer.decode(self.all_tokens[len(self.initial_prompt_tokens):]),
               "segments": self.segments, "language": self.language}
        return self.speech.restore(out) if self.speech is not None else out


def transcribe(model, tokenizer: WhisperTokenizer, audio, *, sampling_rate: int | None = None,
               temperature: float | Sequence[float] = TEMPERATURES, compression_ratio_threshold: float | None = 2.4,
               logprob_threshold: float | None = -1.0, no_speech_threshold: float | None = 0.6,
               condition_on_previous_text: bool = True, initial_prompt: str | None = None,
               language: str | None = None, task: str = "transcribe", beam_size: int | None = 5,
               best_of: int | None = 5, patience: float | None = None, length_penalty: float | None = None,
               suppress_tokens: str | Sequence[int] | None = "-1", suppress_blank: bool = True,
               without_timestamps: bool = False, max_initial_timestamp: float | None = 1.0,
               silence_threshold_db: float | None = -60.0, fp16: bool = False,
               generator: torch.Generator | None = None, seed: int | None = 0, word_timestamps: bool = False,
               vad_filter: bool = False, vad_options: VadOptions | dict | None = None, batch_size: int | None = None,
               progress: Callable[..., Any] | None = None) -> dict:
    """Transcribe (or translate) audio of any length.

    ``audio``: anything ``multimodal.media.audio.load_audio`` reads (a path, bytes, an array
    with ``sampling_rate``, a {"array", "sampling_rate"} dict, …). ``temperature``: one value or the
    fallback sequence. ``beam_size`` applies at temperature 0, ``best_of`` above it. ``progress``:
    a tqdm-like factory called as ``progress(total=seconds, desc=...)``. ``seed`` seeds the sampling
    of the temperature fallback, afresh for every call, so that the same audio gives the same text
    (None: torch's global generator); ``generator``, when given, is used instead.

    Two guards against Whisper's habit of writing words into silence ("You", ". . ."), beyond
    openai-whisper's no-speech rule (which keeps a window the model is confident about even when it
    calls it silent): a window whose loudest mel band is below ``silence_threshold_db`` (dB relative
    to a full-scale sine; None turns this off) is skipped without decoding, and a segment without a
    single letter or digit is blanked like an empty one. On speech louder than the threshold the
    result equals openai-whisper's ``transcribe`` with the same options.

    ``word_timestamps``: each segment also gets ``words`` ([{"word", "start", "end", "probability"}],
    from the alignment heads' cross-attention: ``multimodal.generation.word_timing``), and, as in
    openai-whisper, a window that ends mid-segment is followed from its last word's end.

    ``vad_filter``: only the speech that Silero VAD finds is decoded (``vad_options``: a
    ``VadOptions`` or its fields as a dict), joined end to end, and the timestamps are mapped back
    onto the recording; audio without speech gives an empty result. The recording is then read
    whole rather than streamed.

    ``batch_size`` (with ``vad_filter``): the speech regions (split at a pause where one is longer
    than a window) are grouped into pieces of at most 30 s of speech, and each piece is transcribed on its own, ``batch_size`` pieces side by side
    (``transcribe_batch``); ``batch_size=1`` decodes the same pieces one at a time. Without
    ``vad_filter`` one recording has nothing to batch (each window starts where the last one's
    words ended), and ``batch_size`` only sets the batch of the fallback decodes.

    Returns {"text", "segments": [{"id", "seek", "start", "end", "text", "tokens", "temperature",
    "avg_logprob", "compression_ratio", "no_speech_prob"}], "language"}.
    """
    base, fallback, vad = _prepare(model, tokenizer, temperature, compression_ratio_threshold, logprob_threshold,
                                   no_speech_threshold, language, task, beam_size, best_of, patience, length_penalty,
                                   suppress_tokens, suppress_blank, without_timestamps, max_initial_timestamp, fp16,
                                   initial_prompt, vad_filter, vad_options)
    batch_size = check_batch_size(batch_size)
    if batch_size is not None and vad is not None:
        return _transcribe_regions(model, tokenizer, audio, sampling_rate, vad, batch_size, base, fallback,
                                   initial_prompt=initial_prompt, condition_on_previous_text=condition_on_previous_text,
                                   silence_threshold_db=silence_threshold_db, word_timestamps=word_timestamps,
                                   generator=generator, seed=seed, progress=progress)
    if generator is None and seed is not None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(check_seed(seed))
    recording = Recording(model, tokenizer, audio, sampling_rate, base, fallback, initial_prompt=initial_prompt,
                          condition_on_previous_text=condition_on_previous_text,
                          silence_threshold_db=silence_threshold_db, word_timestamps=word_timestamps,
                          generator=generator, vad=vad)
    bar = progress(total=round(recording.duration, 2), desc="transcribing") if progress is not None else None
    if bar is not None and hasattr(bar, "unit"):
        bar.unit = "s"  # seconds of audio; the rate shown is then the speed-up over real time
    recording.bar = bar
    try:
        while (job := recording.next_window()) is not None:
            recording.take(decode_with_fallback(model, tokenizer, [job], fallback, batch_size or 1)[0])
    finally:
        if bar is not None:
            bar.close()
    return recording.result()


def transcribe_batch(model, tokenizer: WhisperTokenizer, audios: Sequence, *, batch_size: int = 8,
                     sampling_rate: int | None = None, temperature: float | Sequence[float] = TEMPERATURES,
                     compression_ratio_threshold: float | None = 2.4, logprob_threshold: float | None = -1.0,
                     no_speech_threshold: float | None = 0.6, condition_on_previous_text: bool = True,
                     initial_prompt: str | None = None, language: str | None = None, task: str = "transcribe",
                     beam_size: int | None = 5, best_of: int | None = 5, patience: float | None = None,
                     length_penalty: float | None = None, suppress_tokens: str | Sequence[int] | None = "-1",
                     suppress_blank: bool = True, without_timestamps: bool = False,
                     max_initial_timestamp: float | None = 1.0, silence_threshold_db: float | None = -60.0,
                     fp16: bool = False, generator: torch.Generator | None = None, seed: int | None = 0,
                     word_timestamps: bool = False, vad_filter: bool = False,
                     vad_options: VadOptions | dict | None = None,
                     progress: Callable[..., Any] | None = None) -> list[dict]:
    """``transcribe`` each recording of ``audios``, ``batch_size`` recordings side by side: each
    round decodes the next window of every open recording in one batch (the encoder over all of
    them, then one beam search over all their beams).

    Each recording follows exactly the steps ``transcribe`` takes alone (its windows, fallbacks,
    prompts and seed), so the text equals one-by-one decoding but for float rounding, which a batch
    of another size can change (``benchmarks/asr_batch.py`` reports how often). An int8 model
    (``Whisper.quantize_int8``) is the exception: torch's dynamic quantization scales the
    activations of each call as one tensor, so the other windows of a batch change a window's
    arithmetic, and its batched transcript can differ from its one-by-one one by more than rounding.

    Windows batch together when their decoding options are equal: always for the first window of
    each recording (recordings up to 30 s are one window), and for later ones with
    ``condition_on_previous_text=False`` (otherwise each window's prompt is its own recording's
    text). ``progress`` counts recordings. With one ``generator`` given, the recordings share it (their
    fallback samples then depend on the order); by default each gets its own, seeded with ``seed``."""
    if isinstance(audios, (str, bytes)) or not isinstance(audios, Sequence):
        raise InputError(f"audios: expected a list of audio inputs, found {type(audios).__name__}")
    base, fallback, vad = _prepare(model, tokenizer, temperature, compression_ratio_threshold, logprob_threshold,
                                   no_speech_threshold, language, task, beam_size, best_of, patience, length_penalty,
                                   suppress_tokens, suppress_blank, without_timestamps, max_initial_timestamp, fp16,
                                   initial_prompt, vad_filter, vad_options)
    batch_size = check_batch_size(batch_size)
    if seed is not None:
        check_seed(seed)
    device = next(model.parameters()).device

    def open_recording(audio) -> Recording:
        own = generator
        if own is None and seed is not None:
            own = torch.Generator(device=device).manual_seed(seed)
        return Recording(model, tokenizer, audio, sampling_rate, base, fallback, initial_prompt=initial_prompt,
                         condition_on_previous_text=condition_on_previous_text,
                         silence_threshold_db=silence_threshold_db, word_timestamps=word_timestamps,
                         generator=own, vad=vad)

    results: list[dict | None] = [None] * len(audios)
    waiting = list(range(len(audios)))[::-1]
    open_: list[tuple[int, Recording]] = []
    bar = progress(total=len(audios), desc="transcribing") if progress is not None else None
    if bar is not None and hasattr(bar, "unit"):
        bar.unit = "file"
    try:
        while waiting or open_:
            while waiting and len(open_) < batch_size:
                i = waiting.pop()
                open_.append((i, open_recording(audios[i])))
            jobs, owners, still_open = [], [], []
            for i, recording in open_:
                job = recording.next_window()
                if job is None:
                    results[i] = recording.result()
                    if bar is not None:
                        bar.update(1)
                else:
                    jobs.append(job)
                    owners.append(recording)
                    still_open.append((i, recording))
            open_ = still_open
            for recording, result in zip(owners, decode_with_fallback(model, tokenizer, jobs, fallback, batch_size)):
                recording.take(result)
    finally:
        if bar is not None:
            bar.close()
    return results


def speech_pieces(regions: list[tuple[int, int]], max_seconds: float = CHUNK_LENGTH) -> list[list[tuple[int, int]]]:
    """Consecutive speech regions grouped into pieces of at most ``max_seconds`` of speech (a region
    longer than that is a piece of its own)."""
    pieces: list[list[tuple[int, int]]] = []
    limit = max_seconds * SAMPLE_RATE
    length = 0
    for a, b in regions:
        if pieces and length + (b - a) <= limit:
            pieces[-1].append((a, b))
            length += b - a
        else:
            pieces.append([(a, b)])
            length = b - a
    return pieces


def _transcribe_regions(model, tokenizer, audio, sampling_rate, vad, batch_size, base, fallback, *, initial_prompt,
                        condition_on_previous_text, silence_threshold_db, word_timestamps, generator, seed,
                        progress) -> dict:
    """One recording's speech pieces (``speech_pieces``), transcribed side by side and joined."""
    samples = load_audio(audio, sampling_rate)
    # Regions longer than a window are split at a pause (as faster-whisper's batched pipeline does),
    # leaving room for the padding on either side: otherwise a long stretch of speech without a 2-s
    # pause would be one piece, decoded window after window with nothing to batch.
    longest = min(vad.max_speech_duration_s, CHUNK_LENGTH - 2 * vad.speech_pad_ms / 1000 - 0.5)
    regions = speech_regions(samples, replace(vad, max_speech_duration_s=longest))
    pieces = [SpeechOnly(samples, piece) for piece in speech_pieces(regions)]
    options = {f.name: getattr(base, f.name) for f in fields(base) if f.name in (
        "language", "task", "beam_size", "best_of", "patience", "length_penalty", "suppress_tokens", "suppress_blank",
        "without_timestamps", "max_initial_timestamp", "fp16")}
    results = transcribe_batch(model, tokenizer, [piece.audio for piece in pieces], batch_size=batch_size,
                               sampling_rate=SAMPLE_RATE, temperature=fallback.temperatures,
                               compression_ratio_threshold=fallback.compression_ratio_threshold,
                               logprob_threshold=fallback.logprob_threshold,
                               no_speech_threshold=fallback.no_speech_threshold,
                               condition_on_previous_text=condition_on_previous_text, initial_prompt=initial_prompt,
                               silence_threshold_db=silence_threshold_db, generator=generator, seed=seed,
                               word_timestamps=word_timestamps, progress=progress, **options)
    segments: list[dict] = []
    for piece, result in zip(pieces, results):
        offset = piece.regions[0][0] // HOP_LENGTH
        for segment in piece.restore(result)["segments"]:
            segments.append({**segment, "id": len(segments), "seek": segment["seek"] + offset})
    language = results[0]["language"] if results else (base.language or ("en" if not model.is_multilingual else None))
    return {"text": "".join(r["text"] for r in results), "segments": segments, "language": language}


def _prepare(model, tokenizer, temperature, compression_ratio_threshold, logprob_threshold, no_speech_threshold,
             language, task, beam_size, best_of, patience, length_penalty, suppress_tokens, suppress_blank,
             without_timestamps, max_initial_timestamp, fp16, initial_prompt, vad_filter, vad_options):
    """Every option checked before any work -> (DecodingOptions, Fallback, VadOptions or None)."""
    temperatures = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
    base = DecodingOptions(task=task, language=language, beam_size=beam_size, best_of=best_of, patience=patience,
                           length_penalty=length_penalty, suppress_tokens=suppress_tokens,
                           suppress_blank=suppress_blank, without_timestamps=without_timestamps,
                           max_initial_timestamp=max_initial_timestamp, fp16=fp16)
    for t in temperatures:  # every option, at every temperature
        options_at(base, t).validate()
    check_language_task(model, tokenizer, language, task)
    if initial_prompt is not None and not isinstance(initial_prompt, str):
        raise InputError(f"initial_prompt: expected None or text, found {type(initial_prompt).__name__}")
    if not isinstance(vad_filter, bool):
        raise InputError(f"vad_filter: expected True or False, found {vad_filter!r}")
    vad = vad_options_of(vad_options) if vad_filter else None
    fallback = Fallback(temperatures, compression_ratio_threshold, logprob_threshold, no_speech_threshold)
    return base, fallback, vad


def check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise InputError(f"batch_size: expected None or an integer in [1, {MAX_BATCH}], found {batch_size!r}")
    return batch_size


def vad_options_of(options) -> VadOptions:
    """``VadOptions`` from None, a ``VadOptions`` or a dict of its fields; bad ones are an InputError."""
    if options is None or isinstance(options, VadOptions):
        options = options or VadOptions()
    elif isinstance(options, dict):
        try:
            options = VadOptions(**options)
        except TypeError as e:
            raise InputError(f"vad_options: expected fields of VadOptions ({e})") from None
    else:
        raise InputError(f"vad_options: expected None, a VadOptions or a dict, found {type(options).__name__}")
    options.validate()
    return options


def _advance(bar, previous_seek: int, seek: int, content_frames: int) -> None:
    if bar is not None:
        bar.update(round((min(content_frames, seek) - previous_seek) * HOP_LENGTH / SAMPLE_RATE, 2))


def options_at(base: DecodingOptions, t: float) -> DecodingOptions:
    """Beam search (and patience) at temperature 0, best-of-N sampling above it."""
    if t > 0:
        return replace(base, temperature=t, beam_size=None, patience=None)
    return replace(base, temperature=t, best_of=None)


def check_language_task(model, tokenizer, language, task) -> None:
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
