"""The speech codec: 16 kHz speech <-> residual VQ codes, through Whisper's log-mel frames.

Method:

1. **Frames.** Audio becomes Whisper's 80-band log-mel spectrogram (100 frames per second,
   ``multimodal.tokenizers.mel``), padded to a whole number of codes.
2. **Codes.** ``VQVAE(dims=1)`` with the 80 bands as input channels: Conv1d stages over time
   (strides ``(1, 2)``: 50 code frames per second) and residual VQ (``levels`` codebooks, trained
   with quantizer dropout so that the first n levels alone still decode, at a lower bitrate).
3. **Back to audio.** The decoded log-mel frames go through ``log_mel_to_audio``: non-negative
   least squares under the mel filters, then Griffin-Lim. No trained vocoder.

Why mel frames and not the waveform (EnCodec, SoundStream): the codec must train in about an hour
on two CPU cores. A waveform codec runs its first convolutions at 16,000 positions per second of
audio and needs adversarial losses to sound right; this one runs at 100 and trains on a plain
reconstruction loss. What it keeps is what the suite's recogniser hears: Whisper reads exactly these
frames, and Griffin-Lim from them loses no words on the held-out voices
(``python -m benchmarks.speech_codec``). The price is timbre: the audio sounds buzzy.

``encode(audio) -> codes [B, levels, frames]`` (LongTensor), ``decode(codes) -> audio [B, samples]``
(float32 in [-1, 1], 16 kHz, peak 0.9). ``decode`` takes fewer levels than trained (the first n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import PretrainedMixin
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers.mel import FRAMES_PER_SECOND, HOP_LENGTH, log_mel_spectrogram, log_mel_to_audio
from .autoencoders.quantizer import QuantizerConfig
from .autoencoders.vq import VQVAE, VQVAEConfig

SAMPLE_RATE = 16000


def default_vq() -> VQVAEConfig:
    return VQVAEConfig(dims=1, in_channels=80, channels=128, channel_mult=(1, 2), strides=(1, 2), res_blocks=2,
                       groups=16, loss="l1+mse",
                       quantizer=QuantizerConfig(codebook_size=512, dim=64, codebook_dim=16, levels=4,
                                                 quantizer_dropout=0.5))


@dataclass
class SpeechCodecConfig(Config):
    n_mels: int = 80
    vq: VQVAEConfig = field(default_factory=default_vq)
    griffin_lim_iters: int = 32  # phase iterations of decode()

    def __post_init__(self):
        if isinstance(self.vq, dict):
            self.vq = VQVAEConfig.from_dict(self.vq, where="SpeechCodecConfig.vq")
        expect(self.vq.dims == 1 and self.vq.in_channels == self.n_mels, "SpeechCodecConfig.vq",
               f"a VQVAEConfig with dims 1 and in_channels {self.n_mels} (one channel per mel band)",
               f"dims {self.vq.dims}, in_channels {self.vq.in_channels}")
        expect(isinstance(self.griffin_lim_iters, int) and self.griffin_lim_iters >= 1,
               "SpeechCodecConfig.griffin_lim_iters", "a positive number of iterations", self.griffin_lim_iters)


class SpeechCodec(PretrainedMixin, nn.Module):
    """``encode(audio) -> codes``, ``decode(codes) -> audio``; ``mel(audio)`` and ``forward(mel)``
    (reconstruction, codes, quantizer loss) for training on log-mel frames."""

    config_class = SpeechCodecConfig
    checkpoint_kind = "speech codec "

    def __init__(self, config: SpeechCodecConfig):
        super().__init__()
        self.config = config
        self.vq = VQVAE(config.vq)

    # ----------------------------------------------------------------------------- numbers
    @property
    def levels(self) -> int:
        return self.config.vq.quantizer.levels

    @property
    def codebook_size(self) -> int:
        return self.config.vq.quantizer.codebook_size

    @property
    def frames_per_code(self) -> int:
        return self.config.vq.downsample[0]

    @property
    def samples_per_code(self) -> int:
        return self.frames_per_code * HOP_LENGTH

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return FRAMES_PER_SECOND / self.frames_per_code

    def bitrate(self, levels: int | None = None) -> float:
        """Bits per second of ``levels`` (default all) residual levels."""
        levels = self.levels if levels is None else self._check_levels(levels)
        return self.frame_rate * levels * math.log2(self.codebook_size)

    def _check_levels(self, levels) -> int:
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= self.levels:
            raise InputError(f"levels: expected a whole number from 1 to {self.levels}, found {levels!r}")
        return int(levels)

    # ------------------------------------------------------------------------------- audio
    def _audio(self, audio) -> tuple[torch.Tensor, bool]:
        """audio [samples], [B, samples] or [B, 1, samples] (float, 16 kHz) -> [B, samples] and
        whether the input was one waveform."""
        if isinstance(audio, np.ndarray):
            if audio.dtype.kind != "f":
                raise InputError(f"audio: expected float samples in [-1, 1] at 16 kHz, found an array of {audio.dtype}")
            audio = torch.from_numpy(np.ascontiguousarray(audio))
        if not isinstance(audio, torch.Tensor) or not audio.is_floating_point():
            raise InputError("audio: expected float samples in [-1, 1] at 16 kHz (a tensor or array), found "
                             f"{audio.dtype if isinstance(audio, torch.Tensor) else type(audio).__name__}")
        if audio.ndim == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.ndim not in (1, 2):
            raise InputError(f"audio: expected [samples], [batch, samples] or [batch, 1, samples], found shape "
                             f"{tuple(audio.shape)}")
        if audio.shape[-1] == 0 or (audio.ndim == 2 and audio.shape[0] == 0):
            raise InputError(f"audio: expected at least one sample, found shape {tuple(audio.shape)}")
        one = audio.ndim == 1
        return audio.reshape(-1, audio.shape[-1]).float(), one

    def mel(self, audio) -> torch.Tensor:
        """Log-mel frames [B, n_mels, frames] of audio zero-padded to a whole number of codes."""
        x, _ = self._audio(audio)
        pad = -x.shape[-1] % self.samples_per_code
        pad += self.samples_per_code if x.shape[-1] + pad <= 200 else 0  # Whisper's window needs > 200 samples
        return log_mel_spectrogram(F.pad(x, (0, pad)), n_mels=self.config.n_mels)

    # ------------------------------------------------------------------------------- codes
    @torch.no_grad()
    def encode(self, audio, levels: int | None = None) -> torch.Tensor:
        """audio -> codes ``[B, levels, ceil(samples / samples_per_code)]`` (``[levels, n]`` for one
        waveform); ``levels`` keeps the first n residual levels."""
        _, one = self._audio(audio)
        mel = self.mel(audio).to(next(self.parameters()).device, next(self.parameters()).dtype)
        codes = self.vq.encode(mel)
        if codes.ndim == 2:  # one level
            codes = codes[:, None]
        if levels is not None:
            codes = codes[:, :self._check_levels(levels)]
        return codes[0] if one else codes

    def _codes(self, codes) -> tuple[torch.Tensor, bool]:
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(codes)
        if not isinstance(codes, torch.Tensor):
            raise InputError(f"codes: expected an integer tensor [batch, levels, frames], found {type(codes).__name__}")
        one = codes.ndim == 2
        codes = codes[None] if one else codes
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.levels or codes.shape[0] == 0 or codes.shape[2] == 0:
            raise InputError(f"codes: expected [batch, levels, frames] or [levels, frames] with 1 to {self.levels} "
                             f"levels and at least one frame, found shape {tuple(codes.shape)}")
        codes = self.vq.quantizer.check_codes(codes)
        return (codes[:, 0] if self.levels == 1 else codes), one

    @torch.no_grad()
    def decode_mel(self, codes) -> torch.Tensor:
        """codes -> log-mel frames ``[B, n_mels, frames * frames_per_code]``."""
        codes, one = self._codes(codes)
        mel = self.vq.decode(codes).float()
        return mel[0] if one else mel

    @torch.no_grad()
    def decode(self, codes, *, n_iter: int | None = None) -> torch.Tensor:
        """codes -> audio float32 ``[B, frames * samples_per_code]`` (``[samples]`` for ``[levels,
        frames]``), peak-normalised to 0.9."""
        mel = self.decode_mel(codes).cpu()
        return log_mel_to_audio(mel, n_iter=self.config.griffin_lim_iters if n_iter is None else n_iter)

    # ---------------------------------------------------------------------------- training
    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pass on log-mel frames: (reconstruction, codes, quantizer loss)."""
        return self.vq(mel)
