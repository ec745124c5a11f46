"""Audio in and out: any file, bytes or array → 16 kHz mono float32, and samples → a file.

``load_audio`` / ``iter_audio_chunks`` / ``write_audio``: decoding with soundfile (wav, flac, ogg,
mp3, aiff, …) and PyAV for what soundfile cannot read (m4a, aac, opus-in-mp4, video files …), mean
downmix, and resampling with torchaudio in blocks whose joins are invisible
(``multimodal.media.resample``), so an hour of audio streams in a few megabytes.

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
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import torch

from ..checkpoint import atomic_path
from ..errors import InputError
from .resample import Resampler

try:  # PyAV decodes what libsndfile cannot (m4a/aac, video containers); optional
    import av
    import av.error
except ImportError:  # pragma: no cover - PyAV is a dev dependency
    av = None

SAMPLE_RATE = 16000  # the rate every audio model of the suite takes
DEFAULT_CHUNK_SECONDS = 30  # iter_audio_chunks' default: one Whisper window

MAX_CHANNELS = 8  # the most channels a 2-D array may have (the rule that picks its channel axis)
MIN_RATE, MAX_RATE = 1000, 1_000_000  # Hz; 16 instead of 16000 (kHz by mistake) is refused

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, torch.Tensor, dict]


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


class TruncatedAudioWarning(UserWarning):
    """A file holds less audio than its header declares (a cut-off download or recording)."""


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
            raise _NotDecodable(getattr(e, "strerror", None) or str(e)) from None  # no errno, no path
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


def _head(src, size: int = 1 << 16) -> bytes:
    """The first ``size`` bytes of a path or a seekable file object (left at position 0)."""
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as f:
            return f.read(size)
    head = src.read(size)
    src.seek(0)
    return head if isinstance(head, bytes) else b""


def _wav_declared_frames(head: bytes) -> int | None:
    """The frame count a RIFF/WAVE header's ``data`` chunk declares (None: not a WAV, no ``data``
    chunk in ``head``, or a size left open as streaming writers do)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, block_align = 12, None
    while offset + 8 <= len(head):
        chunk, size = head[offset:offset + 4], struct.unpack("<I", head[offset + 4:offset + 8])[0]
        if chunk == b"fmt " and offset + 22 <= len(head):
            block_align = struct.unpack("<H", head[offset + 20:offset + 22])[0]
        if chunk == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        offset += 8 + size + (size & 1)
    return None


def _open_file(src, reopen, sampling_rate, name) -> _Decoded:
    declared = _wav_declared_frames(_head(src))
    try:
        decoded: _Decoded = _SoundFileSource(sf.SoundFile(src), reopen, name)
        if declared is not None and declared > decoded.f.frames:
            warnings.warn(f"{name}: the WAV header declares {declared / decoded.rate:.3f} s of audio, the file "
                          f"holds {decoded.f.frames / decoded.rate:.3f} s (it was cut off); using what is there",
                          TruncatedAudioWarning, stacklevel=2)
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


# ------------------------------------------------------------------------------------ loading
def _blocks_16k(decoded: _Decoded, check_all: bool) -> Iterator[np.ndarray]:
    """Mono float32 blocks at 16 kHz; closes ``decoded`` at the end. Non-finite samples raise
    InputError: at once in a stream, or, with ``check_all``, after counting them all."""
    try:
        resampler = Resampler(decoded.rate, SAMPLE_RATE)
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


def iter_audio_chunks(source: AudioSource, chunk_seconds: float = DEFAULT_CHUNK_SECONDS, *,
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


def audio_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(soundfile format, default subtype) for a file name's extension; an InputError when soundfile
    writes no such format (check an output name with it before any work)."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    fmt, default_subtype = _EXTENSION_FORMATS.get(ext, (ext.upper(), None))
    if not ext or fmt not in sf.available_formats():
        raise InputError(f"{path}: expected a file name ending in an extension soundfile writes "
                         f"(.wav, .flac, .ogg, .mp3, .aiff …), found {path.suffix or 'none'}")
    return fmt, default_subtype


def write_audio(path: str | os.PathLike, array, sampling_rate: int, *, subtype: str | None = None) -> Path:
    """Write samples to an audio file whose format follows the extension (.wav, .flac, .ogg, .mp3,
    .aiff …), atomically (a temporary name, then a rename). ``array``: [samples] or 2-D with the
    channels on the shorter axis, as ``load_audio`` reads it; floats in [-1, 1] or PCM integers.
    ``subtype``: soundfile's (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ``"PCM_U8"`` …); the
    format's default when None. Returns the path."""
    path = Path(path)
    fmt, default_subtype = audio_format(path)
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
