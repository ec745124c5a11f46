"""Audio in: any file, bytes or array → 16 kHz mono float32; and Whisper's log-mel spectrogram.

Two halves:

* ``log_mel_spectrogram``: the Whisper encoder's input, equal to openai-whisper's within 1e-4
  (16 kHz, 400-sample Hann window, hop 160, power spectrum without its last frame, Slaney mel
  filters from torchaudio, log10, an 8-decade dynamic range, (x + 4) / 4). ``pad_or_trim`` fits
  audio or a spectrogram to the 30-second window.
* ``load_audio`` / ``iter_audio_chunks`` / ``write_audio``: decoding with soundfile (wav, flac, ogg,
  mp3, aiff, …) and PyAV for what soundfile cannot read (m4a, aac, opus-in-mp4, video files …),
  mean downmix, and resampling with torchaudio in blocks whose joins are invisible, so an hour of
  audio streams in a few megabytes.

Decisions on ambiguous input (each one raises ``InputError`` rather than guess):

* A 2-D array is ``[channels, samples]`` or ``[samples, channels]``: the channel axis is the
  shorter one, and only when it has at most 8 entries; square arrays are refused.
* Integer arrays are PCM: int8, uint8 (offset 128, as in 8-bit WAV), int16 and int32 are scaled to
  [-1, 1); other integer types (int64 …) carry no scale and are refused, as are bool, complex and
  object arrays. Float samples are used as they are.
* NaN or infinite samples are refused, with their count and the time of the first one.
* A file's own header gives its rate: ``sampling_rate`` with a file must be ``None`` or agree.
* A truncated file decodes as far as its data goes (what ffmpeg and libsndfile do); only a file
  from which no sample decodes is an error.
* Rates whose ratio to 16 kHz does not reduce to small integers (44 101 Hz …) would need
  torchaudio kernels of gigabytes; they are resampled through a nearby ratio of smaller terms,
  which changes the duration by at most one part in a million (4 ms an hour) for nearly all rates
  and at worst 3e-4 (rates within a few hertz of 16 kHz, like 15 995 Hz). Every common rate (8,
  11.025, 12, 22.05, 24, 32, 44.1, 48, 88.2, 96, 192 kHz …) is exact.
"""

from __future__ import annotations

import io
import math
import os
import threading
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
import torchaudio.transforms as AT

from ..checkpoint import atomic_path
from ..errors import InputError

try:  # PyAV decodes what libsndfile cannot (m4a/aac, video containers); optional
    import av
    import av.error
except ImportError:  # pragma: no cover - PyAV is a dev dependency
    av = None

# Whisper's fixed audio hyperparameters.
SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds in one encoder window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100: one frame is 10 ms
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 convolution
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50: one audio token is 20 ms

MAX_CHANNELS = 8  # the most channels a 2-D array may have (the rule that picks its channel axis)
MIN_RATE, MAX_RATE = 1000, 1_000_000  # Hz; 16 instead of 16000 (kHz by mistake) is refused

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, torch.Tensor, dict]


def num_frames(num_samples: int, padding: int = 0) -> int:
    """How many mel frames ``log_mel_spectrogram`` gives for ``num_samples`` (+ ``padding``) samples."""
    return (num_samples + padding) // HOP_LENGTH


# ------------------------------------------------------------------------------------ log-mel
# Frames per STFT block on the CPU (60 s: a 30-second window, padded or not, is one block, as few
# parallel ops as possible). Blocks bound the memory for long inputs: an hour costs its 115 MB
# output, not 1.4 GB of complex spectra as well.
_FRAMES_PER_BLOCK = 6000
_fbank_lock = threading.Lock()


@lru_cache(maxsize=None)
def _mel_filters_float64(n_mels: int) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised mel filters [n_mels, 201], as librosa builds them.

    openai-whisper ships librosa's filters (``whisper/assets/mel_filters.npz``, computed in float64
    and stored as float32). torchaudio's ``melscale_fbanks`` with ``norm="slaney",
    mel_scale="slaney"`` is the same construction, but it computes in the default dtype; in float32
    its mel points carry rounding that puts the small weights at the filters' edges off by up to
    0.3 % (relative), enough to move a log-mel value by 1e-4. Built in float64 it equals whisper's
    file to one float32 ulp. The default dtype is global, hence the lock; this runs once per n_mels.
    """
    with _fbank_lock:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE,
                                    norm="slaney", mel_scale="slaney")
        finally:
            torch.set_default_dtype(previous)
    return fb.T.contiguous()  # [n_mels, n_freqs]


def mel_filters(n_mels: int = 80, device: str | torch.device | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Whisper's mel filterbank as a [n_mels, 201] tensor (cached per device and dtype)."""
    _check_n_mels(n_mels)
    return _mel_filters(n_mels, torch.device(device or "cpu"), dtype)


@lru_cache(maxsize=None)
def _mel_filters(n_mels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _mel_filters_float64(n_mels).to(dtype).to(device)  # cast first: MPS has no float64


@lru_cache(maxsize=None)
def _hann_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(N_FFT, device=device, dtype=dtype)


def _check_n_mels(n_mels) -> None:
    # 150 mel bands and more leave some filter without a single one of the 201 FFT bins.
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or not 1 <= n_mels <= 149:
        raise InputError(f"n_mels: expected a whole number from 1 to 149 (Whisper uses 80 or 128), "
                         f"found {n_mels!r}")


def log_mel_spectrogram(audio, n_mels: int = 80, padding: int = 0,
                        device: str | torch.device | None = None) -> torch.Tensor:
    """Whisper's log-mel spectrogram of 16 kHz audio.

    ``audio``: a waveform [samples] or a batch [batch, samples] of floats (tensor or ndarray), or
    anything ``load_audio`` reads (a path, bytes, a {"array", "sampling_rate"} dict …), which is
    decoded and resampled first. ``padding`` zero samples are appended (``N_SAMPLES`` for
    long-form transcription). Returns float32 [n_mels, frames] or [batch, n_mels, frames] with
    frames = (samples + padding) // 160 (float64 in, float64 out), on ``device`` or the input's.

    Batch items are independent: each is clipped to 8 decades below its own maximum (openai-whisper
    takes the maximum over the whole batch). Not differentiable: it runs under ``no_grad``.
    """
    _check_n_mels(n_mels)
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise InputError(f"padding: expected a whole number of samples ≥ 0, found {padding!r}")
    x = _waveform_tensor(audio)
    if device is not None:
        x = x.to(device)
    squeeze = x.ndim == 1
    x = x.reshape(-1, x.shape[-1])  # [B, N]
    length = x.shape[-1] + int(padding)
    if length <= N_FFT // 2:  # the centred STFT reflects 200 samples at each end
        raise InputError(f"audio: expected more than {N_FFT // 2} samples (with padding) for Whisper's "
                         f"{N_FFT}-sample window, found {length}")
    with torch.no_grad():
        out = _log_mel(x, length, n_mels)
    return out[0] if squeeze else out


def _log_mel(x: torch.Tensor, length: int, n_mels: int) -> torch.Tensor:
    """x [B, N] zero-extended to ``length`` samples -> [B, n_mels, length // HOP_LENGTH]."""
    window = _hann_window(x.device, x.dtype)
    filters = _mel_filters(n_mels, x.device, x.dtype)
    frames = length // HOP_LENGTH  # the STFT's last frame is dropped, as Whisper does
    step = _FRAMES_PER_BLOCK if x.device.type == "cpu" else 100 * _FRAMES_PER_BLOCK  # fewer launches
    out = None
    for f0 in range(0, frames, step):
        f1 = min(frames, f0 + step)
        segment = _centred_segment(x, length, f0 * HOP_LENGTH, (f1 - 1) * HOP_LENGTH + N_FFT)
        spec = torch.stft(segment, N_FFT, HOP_LENGTH, window=window, center=False,
                          return_complex=True)  # [B, 201, f1 - f0]
        ri = torch.view_as_real(spec)
        power = ri[..., 0].square().addcmul_(ri[..., 1], ri[..., 1])  # |z|², without abs()'s sqrt
        mel = torch.matmul(filters, power).clamp_(min=1e-10).log10_()  # [B, n_mels, f1 - f0]
        if f0 == 0 and f1 == frames:
            out = mel
        else:
            if out is None:
                out = x.new_empty(x.shape[0], n_mels, frames)
            out[..., f0:f1] = mel
    floor = out.amax(dim=(-2, -1), keepdim=True) - 8.0
    return torch.maximum(out, floor, out=out).add_(4.0).mul_(0.25)


def _centred_segment(x: torch.Tensor, length: int, start: int, stop: int) -> torch.Tensor:
    """Samples [start, stop) of the signal torch.stft(center=True) would frame: x zero-extended to
    ``length``, then reflected by N_FFT // 2 at both ends. Built per block, never for all of x."""
    pad = N_FFT // 2
    lo, hi = start - pad, stop - pad  # in the coordinates of the zero-extended signal
    parts = []
    if lo < 0:  # index -j reflects to j
        parts.append(_zero_extended(x, length, 1, 1 - lo).flip(-1))
    parts.append(_zero_extended(x, length, max(lo, 0), min(hi, length)))
    if hi > length:  # index length - 1 + j reflects to length - 1 - j
        parts.append(_zero_extended(x, length, 2 * length - 1 - hi, length - 1).flip(-1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _zero_extended(x: torch.Tensor, length: int, lo: int, hi: int) -> torch.Tensor:
    """Samples [lo, hi) of x followed by zeros up to ``length``."""
    n = x.shape[-1]
    if hi <= n:
        return x[:, lo:hi]
    zeros = x.new_zeros(x.shape[0], hi - max(lo, n))
    return zeros if lo >= n else torch.cat([x[:, lo:], zeros], dim=-1)


def _waveform_tensor(audio, name: str = "audio") -> torch.Tensor:
    """Validate a waveform or batch for log_mel_spectrogram; decode anything else with load_audio."""
    if isinstance(audio, np.ndarray):
        if audio.dtype.kind != "f":
            raise InputError(f"{name}: expected float samples at 16 kHz (decode PCM with load_audio), "
                             f"found an array of {audio.dtype}")
        native = audio.dtype.newbyteorder("=")
        if audio.dtype != native or not audio.flags.writeable:  # torch takes neither
            audio = audio.astype(native)
        x = torch.from_numpy(np.ascontiguousarray(audio))
    elif isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise InputError(f"{name}: expected float samples at 16 kHz (decode PCM with load_audio), "
                             f"found a tensor of {audio.dtype}")
        x = audio.detach()
    else:
        x = torch.from_numpy(load_audio(audio))
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # float16 / bfloat16: the FFT runs in float32
    if x.ndim not in (1, 2):
        raise InputError(f"{name}: expected a waveform [samples] or a batch [batch, samples], "
                         f"found shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise InputError(f"{name}: expected at least one sample, found shape {tuple(x.shape)}")
    # A sum is NaN or infinite when a sample is, and costs a tenth of isfinite (a huge but finite
    # signal may overflow it: then the exact test below finds nothing and we go on).
    if not bool(torch.isfinite(x.sum())) and not bool((finite := torch.isfinite(x)).all()):
        bad = (~finite).nonzero()[0].tolist()
        where = f"sample {bad[-1]}" + (f" of item {bad[0]}" if x.ndim == 2 else "")
        raise InputError(f"{name}: expected finite samples, found {int((~finite).sum())} NaN or infinite "
                         f"ones, the first at {where} ({bad[-1] / SAMPLE_RATE:.3f} s)")
    return x


def pad_or_trim(array, length: int = N_SAMPLES, *, axis: int = -1):
    """Cut ``array`` (ndarray or tensor) to ``length`` along ``axis``, or pad it there with zeros.

    Audio [.., samples] fits a 30-second window with the default; a spectrogram with
    ``length=N_FRAMES``. The result is a view when only trimming is needed.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise InputError(f"length: expected a whole number ≥ 1, found {length!r}")
    if not isinstance(array, (np.ndarray, torch.Tensor)):
        raise InputError(f"array: expected an ndarray or a tensor, found {type(array).__name__}")
    if not -array.ndim <= axis < array.ndim:
        raise InputError(f"axis: expected an axis of an array of shape {tuple(array.shape)}, found {axis}")
    axis %= array.ndim
    have = array.shape[axis]
    if have >= length:
        index = (slice(None),) * axis + (slice(0, length),)
        return array[index]
    if isinstance(array, torch.Tensor):
        return F.pad(array, (0, 0) * (array.ndim - 1 - axis) + (0, length - have))
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, length - have)
    return np.pad(array, widths)


# --------------------------------------------------------------------------------- validation
def _check_rate(rate, name: str = "sampling_rate") -> int:
    ok = not isinstance(rate, bool) and isinstance(rate, (int, float, np.integer, np.floating))
    if ok:
        ok = math.isfinite(rate) and float(rate).is_integer() and MIN_RATE <= rate <= MAX_RATE
    if not ok:
        raise InputError(f"{name}: expected a sampling rate in Hz, a whole number from {MIN_RATE} to "
                         f"{MAX_RATE}, found {rate!r}")
    return int(rate)


def _pcm_to_float(a: np.ndarray, name: str) -> np.ndarray:
    """Samples as float32; PCM integers scaled to [-1, 1)."""
    kind, size = a.dtype.kind, a.dtype.itemsize
    if kind == "f":
        return a.astype(np.float32, copy=False)
    if kind == "i" and size in (1, 2, 4):
        return a.astype(np.float32) * np.float32(2.0 ** (1 - 8 * size))
    if kind == "u" and size == 1:  # 8-bit PCM is unsigned, centred on 128
        return (a.astype(np.float32) - 128.0) * np.float32(1 / 128)
    raise InputError(f"{name}: expected float samples or int8/uint8/int16/int32 PCM, found {a.dtype} samples")


def _channel_axis(a: np.ndarray, name: str) -> int | None:
    """None for 1-D samples; for 2-D, the axis of at most MAX_CHANNELS channels (the shorter one)."""
    if a.ndim == 1:
        return None
    if a.ndim != 2:
        raise InputError(f"{name}: expected samples [n] or channels and samples [c, n] / [n, c], "
                         f"found shape {a.shape}")
    rows, cols = a.shape
    if rows == cols or min(rows, cols) > MAX_CHANNELS:
        raise InputError(f"{name}: expected [channels, samples] or [samples, channels] with the channel axis "
                         f"the shorter one and at most {MAX_CHANNELS} channels, found shape {a.shape}")
    return 0 if rows < cols else 1


def _to_mono(a: np.ndarray, name: str) -> np.ndarray:
    """[n], [c, n] or [n, c] -> [n], the mean of the channels."""
    axis = _channel_axis(a, name)
    return a if axis is None else _downmix(a, axis)


def _downmix(a: np.ndarray, axis: int) -> np.ndarray:
    """The mean over ``axis`` (0 or 1) of float32 [c, n] / [n, c], one channel at a time: numpy's
    reductions over a short interleaved axis are some 50 times slower."""
    channels = np.moveaxis(a, axis, 0)
    if len(channels) == 1:
        return channels[0]
    total = channels[0] + channels[1]
    for c in channels[2:]:
        total += c
    total *= np.float32(1 / len(channels))
    return total


def _nonfinite_message(name: str, block: np.ndarray, offset: int, rate: int, count: int | None = None) -> str:
    """The message for non-finite samples in ``block`` (which starts at sample ``offset``); without
    ``count``, the block's own count is a lower bound for the source's."""
    bad = np.flatnonzero(~np.isfinite(block))
    first = offset + int(bad[0])
    how_many = f"at least {len(bad)}" if count is None else str(count)
    return (f"{name}: expected finite samples, found {how_many} NaN or infinite ones, the first at "
            f"{first / rate:.3f} s (sample {first})")


# ----------------------------------------------------------------------------------- decoding
class _Decoded:
    """A source opened for decoding: ``rate`` and mono float32 ``blocks()`` at that rate."""

    name: str
    rate: int

    def blocks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        return (array.float() if array.dtype in (torch.float16, torch.bfloat16) else array).numpy()
    if not isinstance(array, np.ndarray):
        raise InputError(f"{name}: expected an ndarray or a tensor of samples, found {type(array).__name__}")
    return array


class _ArraySource(_Decoded):
    def __init__(self, array, rate, name):
        array = _as_numpy(array, name)
        if rate is None:
            raise InputError(f"sampling_rate: expected the rate of the samples in {name} (e.g. "
                             f"sampling_rate=16000), found None")
        self.name, self.rate = name, _check_rate(rate)
        if array.ndim == 0 or array.size == 0:
            raise InputError(f"{name}: expected at least one sample, found an empty array of shape {array.shape}")
        mono = _to_mono(_pcm_to_float(array, name), name)
        finite = np.isfinite(mono)
        if not finite.all():
            raise InputError(_nonfinite_message(name, mono, 0, self.rate, int((~finite).sum())))
        self.mono = mono

    def blocks(self):
        step = 30 * self.rate
        for i in range(0, len(self.mono), step):
            yield self.mono[i:i + step]


class _SoundFileSource(_Decoded):
    def __init__(self, f: sf.SoundFile, reopen, name):
        self.f, self.reopen, self.name, self.rate = f, reopen, name, f.samplerate

    def blocks(self):
        block = max(1, 10 * self.rate)  # 10 s
        buf = np.empty((block, self.f.channels), np.float32)
        done = 0
        while True:
            try:
                got = self.f.read(block, dtype="float32", always_2d=True, out=buf)
            except (sf.SoundFileError, RuntimeError) as e:
                # libsndfile stops at damage (a cut-off FLAC); ffmpeg decodes on to the end of the data
                yield from self._continue_with_pyav(done, e)
                return
            if len(got) == 0:
                return
            done += len(got)
            yield _downmix(got, 1) if got.shape[1] > 1 else got[:, 0].copy()  # buf is reused: copy

    def _continue_with_pyav(self, done, error):
        where = f"after {done / self.rate:.3f} s"
        if av is None:
            raise InputError(f"{self.name}: expected a decodable audio file, found damaged data {where} "
                             f"({error}); install PyAV (`av`) to decode what is there") from None
        try:
            other = _PyAVSource(self.reopen(), self.name)
        except _NotDecodable as e:
            raise InputError(f"{self.name}: expected a decodable audio file, found damaged data {where} "
                             f"(soundfile: {error}; PyAV: {e})") from None
        try:
            if other.rate != self.rate:
                raise InputError(f"{self.name}: expected a decodable audio file, found damaged data {where} ({error})")
            skip = done
            for b in other.blocks():
                if skip >= len(b):
                    skip -= len(b)
                    continue
                yield b[skip:]
                skip = 0
        finally:
            other.close()

    def close(self):
        self.f.close()


class _PyAVSource(_Decoded):
    """Decoding through PyAV (ffmpeg). Damaged packets are skipped, as ffmpeg does; a source from
    which nothing decodes is an InputError."""

    def __init__(self, src, name):
        self.name = name
        try:
            self.container = av.open(src, mode="r", metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise _NotDecodable(str(e)) from None
        try:
            audio = self.container.streams.audio
            if not audio:
                kinds = ", ".join(sorted({s.type for s in self.container.streams})) or "no streams"
                raise _NotDecodable(f"a {self.container.format.name} file without an audio stream ({kinds})")
            self.stream = audio[0]
            self.errors = 0
            self._frames = self._decode()
            try:  # the first frame gives the true rate (HE-AAC doubles the declared one)
                self._first = next(self._frames)
            except StopIteration:
                raise _NotDecodable(f"no decodable audio ({self.errors} damaged packets)") from None
            self.rate = self._first.sample_rate
        except BaseException:
            self.container.close()
            raise

    def _decode(self):
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                self.errors += 1
                continue
            yield from frames

    def blocks(self):
        frame = self._first
        while frame is not None:
            if frame.sample_rate != self.rate:
                raise InputError(f"{self.name}: expected one sampling rate throughout, found {self.rate} Hz "
                                 f"changing to {frame.sample_rate} Hz")
            yield _frame_to_mono(frame)
            frame = next(self._frames, None)

    def close(self):
        self.container.close()


class _NotDecodable(Exception):
    """PyAV could not open or decode a source (turned into an InputError with soundfile's reason)."""


def _frame_to_mono(frame) -> np.ndarray:
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # interleaved [1, samples * channels]
        a = a.reshape(-1, channels).T
    if a.dtype.kind == "i" and a.dtype.itemsize == 8:
        a = a.astype(np.float64) * 2.0 ** -63
    a = _pcm_to_float(a, "frame")  # [channels, samples]
    return _downmix(a, 0)


def _open(source, sampling_rate, name) -> _Decoded:
    """Any supported source -> an opened _Decoded. Bad sources raise InputError naming them."""
    if isinstance(source, dict):
        return _open_dict(source, sampling_rate, name)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _ArraySource(source, sampling_rate, name or "audio")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = name or str(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path.startswith(("http://", "https://", "ftp://")):
            raise InputError(f"{name}: expected a local audio file (nothing is downloaded), found a URL")
        if not path:
            raise InputError("audio: expected a path to an audio file, found an empty string")
        p = Path(path)
        if p.is_dir():
            raise InputError(f"{name}: expected an audio file, found a directory")
        if not p.exists():
            raise InputError(f"{name}: expected an audio file, found nothing there")
        try:
            size = p.stat().st_size
            with open(p, "rb"):
                pass
        except OSError as e:
            raise InputError(f"{name}: expected a readable audio file, found {e.strerror}") from None
        if size == 0 and p.is_file():
            raise InputError(f"{name}: expected an audio file, found an empty file (0 bytes)")
        return _open_file(path, lambda: path, sampling_rate, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "audio bytes"
        if not data:
            raise InputError(f"{name}: expected the bytes of an audio file, found 0 bytes")
        return _open_file(io.BytesIO(data), lambda: io.BytesIO(data), sampling_rate, name)
    if hasattr(source, "read"):
        name = name or str(getattr(source, "name", None) or "audio file object")
        if not isinstance(name, str):
            name = "audio file object"
        try:
            seekable = source.seekable() and source.tell() == 0
        except (AttributeError, OSError, ValueError):
            seekable = False
        if not seekable:  # soundfile seeks absolutely; a pipe or a mid-stream position is read out
            data = source.read()
            if not isinstance(data, (bytes, bytearray)):
                raise InputError(f"{name}: expected a binary file object, found one that reads {type(data).__name__}")
            return _open(bytes(data), sampling_rate, name)

        def reopen():
            source.seek(0)
            return source
        peek = source.read(1)
        if not isinstance(peek, (bytes, bytearray)):
            raise InputError(f"{name}: expected a binary file object, found one that reads {type(peek).__name__}")
        if not peek:
            raise InputError(f"{name}: expected the bytes of an audio file, found an empty file object")
        return _open_file(reopen(), reopen, sampling_rate, name)
    raise InputError(f"audio: expected a path, bytes, a file object, an ndarray or tensor with sampling_rate, "
                     f"or a dict with 'array' and 'sampling_rate', found {type(source).__name__}")


def _open_dict(source: dict, sampling_rate, name) -> _Decoded:
    arrays = [k for k in ("array", "raw") if source.get(k) is not None]
    if len(arrays) > 1:
        raise InputError(f"{name or 'audio'}: expected one of 'array' and 'raw', found both")
    rate = source.get("sampling_rate")
    if rate is not None and sampling_rate is not None and _check_rate(rate) != _check_rate(sampling_rate):
        raise InputError(f"sampling_rate: expected the dict's own rate {rate} or None, found {sampling_rate}")
    rate = rate if rate is not None else sampling_rate
    if arrays:
        return _ArraySource(source[arrays[0]], rate, name or f"audio[{arrays[0]!r}]")
    for key in ("bytes", "path"):
        if source.get(key) is not None:
            return _open(source[key], rate, name or f"audio[{key!r}]")
    raise InputError(f"{name or 'audio'}: expected a dict with 'array' (or 'raw') and 'sampling_rate', or "
                     f"'path' or 'bytes', found keys {sorted(map(str, source))}")


def _open_file(src, reopen, sampling_rate, name) -> _Decoded:
    try:
        decoded: _Decoded = _SoundFileSource(sf.SoundFile(src), reopen, name)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        sf_reason = str(e).replace(f"Error opening {src!r}: ", "")
        if av is None:
            raise InputError(f"{name}: expected an audio file that soundfile can decode (wav, flac, ogg, mp3, "
                             f"aiff …; PyAV is not installed for m4a and others), found data it cannot "
                             f"({sf_reason})") from None
        try:
            decoded = _PyAVSource(reopen(), name)
        except _NotDecodable as e2:
            raise InputError(f"{name}: expected an audio file (wav, flac, ogg, mp3, m4a …), found data that "
                             f"neither soundfile ({sf_reason}) nor PyAV ({e2}) decodes") from None
    if sampling_rate is not None and _check_rate(sampling_rate) != decoded.rate:
        decoded.close()
        raise InputError(f"sampling_rate: expected None or the file's own rate {decoded.rate} for {name} "
                         f"(files are always resampled to {SAMPLE_RATE}), found {sampling_rate}")
    return decoded


# --------------------------------------------------------------------------------- resampling
_MAX_RATIO_TERMS = 1 << 22  # numerator * denominator: torchaudio's kernel has about that many taps (16 MB)
_RATIO_TOLERANCE = 1e-6  # relative error allowed when a rate ratio must be approximated


def _resampling_ratio(orig: int, new: int) -> Fraction:
    """orig / new reduced, exact when torchaudio's kernel for it stays small (every common rate);
    otherwise the cheapest best rational approximation within 1e-6, or, where none is cheap enough
    (rates within a few hertz of a multiple of 16 kHz, such as 15995 Hz), the closest that is."""
    exact = Fraction(orig, new)
    if exact.numerator * exact.denominator <= _MAX_RATIO_TERMS:
        return exact
    best, limit = None, 8  # MIN_RATE and MAX_RATE keep the first candidate far under the cap
    while True:
        approx = exact.limit_denominator(limit)
        if approx.numerator * approx.denominator > _MAX_RATIO_TERMS:
            return best
        best = approx
        if abs(approx / exact - 1) <= _RATIO_TOLERANCE:
            return best
        limit = limit * 5 // 4 + 1


class _Resampler:
    """torchaudio's sinc resampling, fed block by block, equal to resampling the whole signal at once.

    With the rate ratio reduced to o/n, output sample j is a kernel sum over inputs around j*o/n, and
    torchaudio evaluates it in groups of n outputs per o inputs, reaching ``width`` inputs to either
    side. Each call resamples the new whole groups together with ``context`` (≥ width, a multiple
    of o) earlier and later inputs and keeps only the groups whose reach lies inside the piece, so
    no output ever sees the zero padding of a block edge, only that of the signal's true ends.
    """

    def __init__(self, orig: int, new: int = SAMPLE_RATE):
        ratio = _resampling_ratio(orig, new)
        self.o, self.n = ratio.numerator, ratio.denominator
        self.identity = self.o == self.n
        if not self.identity:
            self.resample = AT.Resample(self.o, self.n)  # default kernel: Hann-windowed sinc, 6 zeros, rolloff 0.99
            width = math.ceil(6 * self.o / (0.99 * min(self.o, self.n)))
            self.context = self.o * math.ceil(width / self.o)
        self.buffer = np.empty(0, np.float32)
        self.buffer_start = 0  # input index of buffer[0]
        self.pos = 0  # first input (a multiple of o) whose outputs are not out yet
        self.seen = 0  # inputs received

    def __call__(self, block: np.ndarray) -> np.ndarray:
        self.seen += len(block)
        if self.identity:
            return block
        self.buffer = np.concatenate([self.buffer, block]) if len(self.buffer) else block
        groups = (self.seen - self.pos - self.context) // self.o
        if groups <= 0:
            return np.empty(0, np.float32)
        stop = self.pos + groups * self.o + self.context
        out = self._run(stop, groups * self.n)
        self.pos += groups * self.o
        keep_from = max(0, self.pos - self.context)
        self.buffer = self.buffer[keep_from - self.buffer_start:]
        self.buffer_start = keep_from
        return out

    def flush(self) -> np.ndarray:
        """The outputs still owed: up to ceil(seen * n / o) in all, as for the whole signal."""
        if self.identity or self.seen == self.pos:
            return np.empty(0, np.float32)
        return self._run(self.seen, math.ceil((self.seen - self.pos) * self.n / self.o))

    def _run(self, stop: int, count: int) -> np.ndarray:
        piece = torch.from_numpy(np.ascontiguousarray(self.buffer[:stop - self.buffer_start]))
        skip = (self.pos - self.buffer_start) // self.o * self.n
        with torch.no_grad():
            return self.resample(piece)[skip:skip + count].numpy()


# ------------------------------------------------------------------------------------ loading
def _blocks_16k(decoded: _Decoded, check_all: bool) -> Iterator[np.ndarray]:
    """Mono float32 blocks at 16 kHz; closes ``decoded`` at the end. Non-finite samples raise
    InputError: at once in a stream, or, with ``check_all``, after counting them all."""
    try:
        resampler = _Resampler(decoded.rate)
        offset, bad, first_bad = 0, 0, None
        for block in decoded.blocks():
            finite = np.isfinite(block)
            if not finite.all():
                if not check_all:
                    raise InputError(_nonfinite_message(decoded.name, block, offset, decoded.rate))
                if first_bad is None:
                    first_bad = (block, offset)
                bad += int((~finite).sum())
            offset += len(block)
            if bad == 0:
                yield resampler(block)
        if bad:
            raise InputError(_nonfinite_message(decoded.name, first_bad[0], first_bad[1], decoded.rate, bad))
        if offset == 0:
            raise InputError(f"{decoded.name}: expected at least one sample, found none (0 frames)")
        yield resampler.flush()
    finally:
        decoded.close()


def load_audio(source: AudioSource, sampling_rate: int | None = None, *, name: str | None = None) -> np.ndarray:
    """Decode ``source`` to a 1-D float32 array of mono samples at 16 kHz (a new array).

    ``source``: a path to any file soundfile reads (wav, flac, ogg, mp3, aiff …; 8-, 16-, 24-, 32-bit
    PCM or float; any rate) or, when PyAV is installed, ffmpeg reads (m4a, aac, video …); bytes or
    a binary file object holding such a file; an ndarray or tensor of samples with
    ``sampling_rate`` (1-D, or 2-D with the channels on the shorter axis, at most 8); or a dict
    ``{"array" | "raw": samples, "sampling_rate": rate}`` (or ``{"path": …}`` / ``{"bytes": …}``)
    as Hugging Face pipelines and datasets pass audio. Channels are averaged; other rates are
    resampled with torchaudio. ``name`` replaces the source's name in error messages.
    """
    return np.concatenate(list(_blocks_16k(_open(source, sampling_rate, name), check_all=True)))


def iter_audio_chunks(source: AudioSource, chunk_seconds: float = CHUNK_LENGTH, *,
                      sampling_rate: int | None = None, name: str | None = None) -> Iterator[np.ndarray]:
    """Decode ``source`` (anything ``load_audio`` takes) as consecutive 16 kHz mono float32 chunks
    of ``chunk_seconds`` each (the last one shorter), reading and resampling a file block by block,
    so memory stays flat however long it is. Together the chunks equal ``load_audio(source)``.

    The source is opened (and a bad one refused) by this call; its samples are checked as they are
    read, so NaN or infinite ones raise InputError when the stream reaches them, after the chunks
    before them were yielded.
    """
    ok = (not isinstance(chunk_seconds, bool) and isinstance(chunk_seconds, (int, float, np.integer, np.floating))
          and math.isfinite(chunk_seconds) and chunk_seconds * SAMPLE_RATE >= 1)
    if not ok:
        raise InputError(f"chunk_seconds: expected a positive duration of at least one sample "
                         f"({1 / SAMPLE_RATE} s), found {chunk_seconds!r}")
    return _chunks(_open(source, sampling_rate, name), int(round(chunk_seconds * SAMPLE_RATE)))


def _chunks(decoded: _Decoded, size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    have = 0
    for block in _blocks_16k(decoded, check_all=False):
        while len(block):
            take = block[:size - have]
            block = block[len(take):]
            pending.append(take)
            have += len(take)
            if have == size:
                yield np.concatenate(pending) if len(pending) > 1 else pending[0].copy()
                pending, have = [], 0
    if have:
        yield np.concatenate(pending)


# ------------------------------------------------------------------------------------ writing
_EXTENSION_FORMATS = {"aif": ("AIFF", None), "oga": ("OGG", None), "opus": ("OGG", "OPUS")}


def write_audio(path: str | os.PathLike, array, sampling_rate: int, *, subtype: str | None = None) -> Path:
    """Write samples to an audio file whose format follows the extension (.wav, .flac, .ogg, .mp3,
    .aiff …), atomically (a temporary name, then a rename). ``array``: [samples] or 2-D with the
    channels on the shorter axis, as ``load_audio`` reads it; floats in [-1, 1] or PCM integers.
    ``subtype``: soundfile's (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ``"PCM_U8"`` …); the
    format's default when None. Returns the path."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    fmt, default_subtype = _EXTENSION_FORMATS.get(ext, (ext.upper(), None))
    if fmt not in sf.available_formats():
        raise InputError(f"{path}: expected a file name ending in an extension soundfile writes "
                         f"(.wav, .flac, .ogg, .mp3, .aiff …), found {path.suffix or 'none'}")
    subtype = subtype or default_subtype
    if subtype is not None and not sf.check_format(fmt, subtype):
        raise InputError(f"subtype: expected one of {', '.join(sf.available_subtypes(fmt))} for {fmt}, "
                         f"found {subtype!r}")
    rate = _check_rate(sampling_rate)
    array = _as_numpy(array, "array")
    if array.ndim == 0 or array.size == 0:
        raise InputError(f"array: expected at least one sample, found an empty array of shape {array.shape}")
    # soundfile scales int16 / int32 itself, exactly; the rest goes through float32
    samples = array if array.dtype in (np.int16, np.int32) else _pcm_to_float(array, "array")
    if _channel_axis(samples, "array") == 0:
        samples = samples.T  # soundfile wants [frames, channels]
    if samples.dtype.kind == "f" and not (finite := np.isfinite(samples)).all():
        raise InputError(f"array: expected finite samples, found {int((~finite).sum())} NaN or infinite ones")
    try:
        with atomic_path(path) as tmp:
            sf.write(tmp, samples, rate, subtype=subtype, format=fmt)
    except (sf.SoundFileError, RuntimeError) as e:
        raise InputError(f"{path}: expected audio that {fmt} can hold at {rate} Hz, found soundfile refusing "
                         f"it ({e})") from None
    return path
