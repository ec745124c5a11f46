"""Whisper's log-mel spectrogram: the audio encoder's input.

``log_mel_spectrogram`` equals openai-whisper's within 1e-4 (16 kHz, 400-sample Hann window, hop
160, power spectrum without its last frame, Slaney mel filters from torchaudio, log10, an 8-decade
dynamic range, (x + 4) / 4). ``pad_or_trim`` fits audio or a spectrogram to the 30-second window.
Anything that is not already a float waveform is decoded with ``multimodal.media.audio.load_audio``.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from ..errors import InputError
from ..media.audio import SAMPLE_RATE, load_audio

# Whisper's fixed audio hyperparameters (its sampling rate is SAMPLE_RATE, 16 kHz).
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds in one encoder window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100: one frame is 10 ms
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 convolution
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50: one audio token is 20 ms


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


# ------------------------------------------------------------------------------------ inverse
def log_mel_to_audio(log_mel, *, n_iter: int = 32, nnls_iters: int = 50) -> torch.Tensor:
    """16 kHz audio whose Whisper log-mel spectrogram is close to ``log_mel`` ([n_mels, frames] or
    [batch, n_mels, frames], normalised as ``log_mel_spectrogram`` writes it).

    1. Undo the normalisation: mel power ``10 ** (4 x - 4)`` (the level relative to the loudest
       frame; the absolute level is not in the spectrogram).
    2. The power spectrum under the mel filters: non-negative least squares by multiplicative
       updates (Lee & Seung), started from the pseudo-inverse clamped at zero.
    3. Phase by Griffin-Lim (``n_iter`` iterations, momentum 0.99, started from zero phase, so the
       result is deterministic), with Whisper's window and hop.

    Returns float32 [frames * 160] (or [batch, frames * 160]) peak-normalised to 0.9 (silence
    stays silent). Whisper hears it as it heard the original: this vocoder loses no words on the
    held-out voices (``benchmarks/speech_codec.py``), though it sounds buzzier than the original.
    """
    x = log_mel if isinstance(log_mel, torch.Tensor) else torch.as_tensor(np.asarray(log_mel))
    if not x.is_floating_point() or x.ndim not in (2, 3):
        raise InputError(f"log_mel: expected a float spectrogram [n_mels, frames] or [batch, n_mels, frames], "
                         f"found {x.dtype} of shape {tuple(x.shape)}")
    _check_n_mels(x.shape[-2])
    if x.shape[-1] < 1 or not bool(torch.isfinite(x).all()):
        raise InputError(f"log_mel: expected at least one frame of finite values, found shape {tuple(x.shape)}")
    for name, value in (("n_iter", n_iter), ("nnls_iters", nnls_iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name}: expected a whole number ≥ 0, found {value!r}")
    squeeze = x.ndim == 2
    x = x.reshape(-1, *x.shape[-2:]).detach().to(torch.float64)
    filters = _mel_filters(x.shape[-2], x.device, torch.float64)  # [n_mels, 201]
    mel = torch.pow(10.0, 4.0 * x - 4.0)
    power = (torch.linalg.pinv(filters) @ mel).clamp_(min=0.0)  # [B, 201, frames]
    numerator = filters.T @ mel
    for _ in range(nnls_iters):
        power = power * numerator / (filters.T @ (filters @ power) + 1e-12)
    frames = x.shape[-1]
    power = torch.cat([power, power[..., -1:]], dim=-1)  # the STFT frame Whisper drops
    audio = AF.griffinlim(power.sqrt().float(), _hann_window(x.device, torch.float32), N_FFT, HOP_LENGTH, N_FFT,
                          power=1.0, n_iter=n_iter, momentum=0.99, length=frames * HOP_LENGTH, rand_init=False)
    peak = audio.abs().amax(dim=-1, keepdim=True)
    audio = audio * (0.9 / peak.clamp_min(1e-8))
    return audio[0] if squeeze else audio
