"""Audio input and Whisper's log-mel spectrogram (multimodal.media.audio, multimodal.tokenizers.mel).

The log-mel spectrogram is compared with openai-whisper's own function on the same samples; files
are generated into tmp_path with soundfile (and PyAV for m4a); resampling is checked by where a
tone's FFT peak lands, and block-wise decoding against decoding the whole signal at once.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tracemalloc
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from multimodal.errors import InputError
from multimodal.media import audio as A
from multimodal.media.resample import Resampler
from multimodal.tokenizers import mel as M

try:  # openai-whisper (a dev dependency) is the reference for the log-mel spectrogram
    import whisper.audio as whisper_audio
except ImportError:  # pragma: no cover
    whisper_audio = None
needs_whisper = pytest.mark.skipif(whisper_audio is None, reason="openai-whisper is not installed")

SR = A.SAMPLE_RATE


# ------------------------------------------------------------------------------------ signals
def tone(freq=1000.0, seconds=1.0, rate=SR, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(seconds=30.0, f0=50.0, f1=7900.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t ** 2))).astype(np.float32)


def noise(seconds=30.0, seed=0, scale=0.1):
    return (scale * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def speech_like(seconds=8.0, seed=0):
    """Voiced harmonics of a gliding pitch under three moving formants, in 4 Hz syllables, with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = [(700 + 200 * np.sin(2 * np.pi * 0.5 * t), 90), (1200 + 400 * np.sin(2 * np.pi * 0.3 * t), 110),
                (2500.0, 160)]
    x = np.zeros_like(t)
    for h in range(1, 40):
        fh = h * f0
        gain = sum(np.exp(-0.5 * ((fh - fc) / bw) ** 2) for fc, bw in formants) / h ** 0.5
        x += gain * np.sin(h * phase)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.25 * t) > -0.5)
    x = x * envelope + 0.002 * rng.standard_normal(len(t))  # breath noise
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def peak_hz(y, rate=SR):
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.argmax(spectrum) * rate / len(y)


def reference_mel(x, n_mels=80, padding=0):
    return whisper_audio.log_mel_spectrogram(torch.as_tensor(x), n_mels=n_mels, padding=padding)


# ------------------------------------------------------------------------------------ log-mel
@pytest.mark.parametrize("n_mels", [80, 128])
@needs_whisper
def test_filterbank_equals_whisper_file(n_mels):
    with np.load(os.path.join(os.path.dirname(whisper_audio.__file__), "assets", "mel_filters.npz")) as f:
        theirs = f[f"mel_{n_mels}"]
    ours = M.mel_filters(n_mels).numpy()
    assert ours.shape == theirs.shape == (n_mels, M.N_FFT // 2 + 1)
    assert np.array_equal(ours != 0, theirs != 0)  # the same triangles
    # float32 rounding apart (one ulp): a relative error of ~1e-7 on every weight, edges included
    assert np.abs(ours - theirs).max() <= 4e-9
    nz = theirs != 0
    assert (np.abs(ours - theirs)[nz] / theirs[nz]).max() < 3e-7


SIGNALS = {
    "tone": lambda: tone(440.0, 30.0) + tone(3000.0, 30.0, amplitude=0.1),
    "chirp": chirp,
    "noise": noise,
    "silence": lambda: np.zeros(30 * SR, np.float32),
    "speech_like": speech_like,
    "impulses": lambda: np.where(np.arange(7 * SR) % 4000 == 0, 0.9, 0.0).astype(np.float32),
    "short": lambda: noise(0.3, seed=3),
}


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("signal", sorted(SIGNALS))
@needs_whisper
def test_log_mel_matches_whisper(signal, n_mels):
    x = SIGNALS[signal]()
    for padding in (0, 1234, M.N_SAMPLES):
        ours = M.log_mel_spectrogram(x, n_mels=n_mels, padding=padding)
        theirs = reference_mel(x, n_mels, padding)
        assert ours.shape == theirs.shape == (n_mels, M.num_frames(len(x), padding))
        assert ours.dtype == torch.float32
        assert (ours - theirs).abs().max() < 1e-4


def test_log_mel_of_a_30_second_window_has_n_frames():
    mel = M.log_mel_spectrogram(noise(30.0))
    assert mel.shape == (80, M.N_FRAMES) == (80, 3000)
    assert M.N_SAMPLES == 480000 and M.HOP_LENGTH == 160 and M.CHUNK_LENGTH == 30 and M.FRAMES_PER_SECOND == 100


@needs_whisper
def test_log_mel_blocks_do_not_show(monkeypatch):
    """Long inputs are framed in blocks; tiny blocks (edges reflected, zero padding straddled) give
    the same result as one block."""
    x = speech_like(3.0)
    whole = M.log_mel_spectrogram(x, padding=5000)
    monkeypatch.setattr(M, "_FRAMES_PER_BLOCK", 7)
    assert (M.log_mel_spectrogram(x, padding=5000) - whole).abs().max() < 1e-6
    assert (whole - reference_mel(x, padding=5000)).abs().max() < 1e-4


@needs_whisper
def test_log_mel_batch_items_are_independent():
    items = [speech_like(4.0, seed=1), 0.01 * noise(4.0, seed=2), np.zeros(4 * SR, np.float32)]
    batch = M.log_mel_spectrogram(torch.from_numpy(np.stack(items)), n_mels=128, padding=800)
    assert batch.shape == (3, 128, M.num_frames(4 * SR, 800))
    for i, item in enumerate(items):
        assert (batch[i] - reference_mel(item, 128, 800)).abs().max() < 1e-4
    # each item is clipped below its own maximum: the quiet noise keeps its detail next to speech
    assert batch[1].max() == pytest.approx(float(reference_mel(items[1], 128).max()), abs=1e-4)


def test_log_mel_dtypes_and_sources(tmp_path):
    x = speech_like(2.0)
    ref = M.log_mel_spectrogram(x)
    double = M.log_mel_spectrogram(x.astype(np.float64))
    assert double.dtype == torch.float64 and (double - ref.double()).abs().max() < 1e-4
    half = M.log_mel_spectrogram(torch.from_numpy(x).to(torch.bfloat16))
    assert half.dtype == torch.float32 and half.shape == ref.shape
    assert (M.log_mel_spectrogram(torch.from_numpy(x), device="cpu") - ref).abs().max() == 0
    big_endian, read_only = x.astype(">f4"), np.frombuffer(x.tobytes(), np.float32)
    assert torch.equal(M.log_mel_spectrogram(big_endian), ref) and torch.equal(M.log_mel_spectrogram(read_only), ref)
    path = A.write_audio(tmp_path / "speech.wav", x, SR, subtype="FLOAT")
    assert (M.log_mel_spectrogram(str(path)) - ref).abs().max() == 0  # a path is decoded first


def test_log_mel_of_silence_is_the_floor():
    mel = M.log_mel_spectrogram(np.zeros(SR, np.float32))
    assert torch.all(mel == (-10.0 + 4.0) / 4.0)  # log10 of the 1e-10 clamp


@pytest.mark.parametrize("bad, message", [
    (np.arange(4000, dtype=np.int16), "int16"),
    (torch.zeros(4000, dtype=torch.complex64), "complex64"),
    (np.zeros((2, 2, 4000), np.float32), "shape (2, 2, 4000)"),
    (np.zeros(0, np.float32), "at least one sample"),
    (np.zeros(150, np.float32), "found 150"),
    ([0.0] * 4000, "list"),
])
def test_log_mel_rejects_bad_audio(bad, message):
    with pytest.raises(InputError, match="audio") as err:
        M.log_mel_spectrogram(bad)
    assert message in str(err.value)


def test_log_mel_names_non_finite_samples():
    x = noise(2.0)
    x[[16000, 17000, 20000]] = [np.nan, np.inf, -np.inf]
    with pytest.raises(InputError, match=r"audio: expected finite samples, found 3 .* sample 16000 \(1.000 s\)"):
        M.log_mel_spectrogram(x)
    batch = np.stack([noise(1.0), noise(1.0)])
    batch[1, 8000] = np.nan
    with pytest.raises(InputError, match="sample 8000 of item 1"):
        M.log_mel_spectrogram(batch)


@pytest.mark.parametrize("kwargs, name", [({"n_mels": 0}, "n_mels"), ({"n_mels": 200}, "n_mels"),
                                          ({"n_mels": 80.0}, "n_mels"), ({"padding": -1}, "padding")])
def test_log_mel_rejects_bad_settings(kwargs, name):
    with pytest.raises(InputError, match=f"^{name}: expected"):
        M.log_mel_spectrogram(noise(1.0), **kwargs)


def test_pad_or_trim():
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(M.pad_or_trim(x, 4), x[:4])
    assert np.array_equal(M.pad_or_trim(x, 13), np.r_[x, 0, 0, 0])
    t = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(M.pad_or_trim(t, 2, axis=0), t[:2])
    assert torch.equal(M.pad_or_trim(t, 6), torch.cat([t, torch.zeros(3, 2)], 1))
    assert torch.equal(M.pad_or_trim(t, 5, axis=0), torch.cat([t, torch.zeros(2, 4)], 0))
    assert M.pad_or_trim(np.zeros(5), ).shape == (M.N_SAMPLES,)
    mel = M.log_mel_spectrogram(noise(40.0), padding=M.N_SAMPLES)
    assert M.pad_or_trim(mel, M.N_FRAMES).shape == (80, M.N_FRAMES)
    for bad, match in [((x, 0), "length"), ((x, 5.5), "length"), (([1, 2], 3), "array"), ((x, 3, 1), "axis")]:
        with pytest.raises(InputError, match=match):
            M.pad_or_trim(bad[0], bad[1], axis=bad[2] if len(bad) > 2 else -1)


# ------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_resampling_keeps_frequency_and_duration(tmp_path, rate):
    path = A.write_audio(tmp_path / f"tone_{rate}.wav", tone(1000.0, 2.0, rate), rate, subtype="FLOAT")
    y = A.load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == 2 * SR
    assert peak_hz(y) == pytest.approx(1000.0, abs=1.0)
    assert np.abs(y[SR // 2:-SR // 2]).max() == pytest.approx(0.5, abs=0.01)  # amplitude kept


def test_rate_without_a_small_ratio_is_approximated_closely(tmp_path):
    rate = 44101  # prime: the exact torchaudio kernel would take gigabytes
    y = A.load_audio(tone(1000.0, 3.0, rate), sampling_rate=rate)
    assert abs(len(y) - 3 * SR) <= 1
    assert peak_hz(y) == pytest.approx(1000.0, abs=1.0)


def test_stereo_is_downmixed_by_mean(tmp_path):
    left, right = tone(500.0, 1.0, 48000), tone(2500.0, 1.0, 48000, amplitude=0.2)
    path = A.write_audio(tmp_path / "stereo.wav", np.stack([left, right], 1), 48000, subtype="FLOAT")
    assert sf.info(str(path)).channels == 2
    y = A.load_audio(path)
    expected = AF.resample(torch.from_numpy((left + right) / 2), 48000, SR).numpy()
    assert np.abs(y - expected).max() < 1e-5
    # arrays: [channels, samples] and [samples, channels] are the same audio
    both = np.stack([left, right])
    assert np.array_equal(A.load_audio(both, 48000), A.load_audio(both.T, sampling_rate=48000))
    assert np.abs(A.load_audio(both, 48000) - y).max() < 1e-6


@pytest.mark.parametrize("ext, subtype, tolerance", [
    ("wav", "PCM_U8", 1 / 64), ("wav", "PCM_16", 1e-4), ("wav", "PCM_24", 1e-6), ("wav", "PCM_32", 1e-6),
    ("wav", "FLOAT", 1e-6), ("flac", "PCM_16", 1e-4), ("flac", "PCM_24", 1e-6), ("ogg", "VORBIS", None),
    ("aiff", "PCM_16", 1e-4),
])
def test_file_formats(tmp_path, ext, subtype, tolerance):
    x = 0.8 * speech_like(2.0)
    path = A.write_audio(tmp_path / f"speech.{ext}", x, SR, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype
    y = A.load_audio(path)
    assert len(y) == len(x)
    if tolerance is None:  # lossy: the spectrum survives, not the samples
        assert np.corrcoef(x, y)[0, 1] > 0.95
    else:
        assert np.abs(y - x).max() < tolerance


def test_8_bit_and_integer_arrays_are_scaled():
    pcm16 = (tone(1000.0, 0.5) * 32767).astype(np.int16)
    assert np.abs(A.load_audio(pcm16, SR) - tone(1000.0, 0.5)).max() < 1e-4
    pcm32 = pcm16.astype(np.int32) << 16
    assert np.abs(A.load_audio(pcm32, SR) - tone(1000.0, 0.5)).max() < 1e-4
    u8 = np.array([0, 64, 128, 192, 255], np.uint8)
    assert np.array_equal(A.load_audio(u8, SR), np.array([-1, -0.5, 0, 0.5, 127 / 128], np.float32))
    i8 = np.array([-128, 0, 64], np.int8)
    assert np.array_equal(A.load_audio(i8, SR), np.array([-1, 0, 0.5], np.float32))


def test_8_bit_stereo_telephone_file_equals_the_same_array(tmp_path):
    pcm = np.random.default_rng(1).integers(0, 256, (8000, 2)).astype(np.uint8)  # 1 s at 8 kHz, [n, c]
    path = A.write_audio(tmp_path / "phone.wav", pcm, 8000, subtype="PCM_U8")
    assert sf.info(str(path)).subtype == "PCM_U8" and sf.info(str(path)).channels == 2
    y = A.load_audio(path)
    assert len(y) == SR
    assert np.array_equal(y, A.load_audio(pcm, 8000))  # file and array paths agree to the bit


def test_mp3_and_m4a_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    written = []
    for ext, fmt, codec in (("m4a", "ipod", "aac"), ("mp3", "mp3", "libmp3lame")):
        try:
            av.codec.Codec(codec, "w")
        except Exception:
            continue
        path = tmp_path / f"tone.{ext}"
        x = np.stack([tone(1000.0, 2.0, 44100), tone(1000.0, 2.0, 44100, amplitude=0.2)])
        with av.open(str(path), "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=44100, layout="stereo")
            frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
            frame.sample_rate = 44100
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        y = A.load_audio(path)
        assert abs(len(y) - 2 * SR) < 0.1 * SR  # encoders add priming and padding
        assert peak_hz(y) == pytest.approx(1000.0, abs=2.0)
        assert np.abs(y[SR // 2:SR]).max() == pytest.approx(0.35, abs=0.1)  # (0.5 + 0.2) / 2
        written.append(ext)
    if "m4a" in written:  # soundfile cannot read m4a: this one went through PyAV
        with pytest.raises(sf.LibsndfileError):
            sf.info(str(tmp_path / "tone.m4a"))
    if not written:
        pytest.skip("PyAV has neither an AAC nor an MP3 encoder here")


def test_bytes_file_objects_and_dicts(tmp_path):
    x = speech_like(1.0)
    path = A.write_audio(tmp_path / "a.flac", x, SR)
    y = A.load_audio(path)
    data = path.read_bytes()
    assert np.array_equal(A.load_audio(data), y)
    assert np.array_equal(A.load_audio(io.BytesIO(data)), y)
    with open(path, "rb") as f:
        assert np.array_equal(A.load_audio(f), y)
    shifted = io.BytesIO(b"junk" + data)
    shifted.seek(4)  # a file object positioned after other data
    assert np.array_equal(A.load_audio(shifted), y)

    class Pipe:  # readable, not seekable
        def __init__(self):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(n)

        def seekable(self):
            return False
    assert np.array_equal(A.load_audio(Pipe()), y)
    assert np.array_equal(A.load_audio({"array": x, "sampling_rate": SR}), x)
    assert np.array_equal(A.load_audio({"raw": torch.from_numpy(x), "sampling_rate": SR}), x)
    assert np.array_equal(A.load_audio({"path": str(path)}), y)
    assert np.array_equal(A.load_audio({"bytes": data, "path": "ignored.flac"}), y)
    assert np.array_equal(A.load_audio(torch.from_numpy(x), sampling_rate=SR), x)


def test_silence_loads(tmp_path):
    zeros = np.zeros(SR, np.float32)
    assert np.array_equal(A.load_audio(zeros, SR), zeros)
    path = A.write_audio(tmp_path / "silence.wav", np.zeros(48000, np.int16), 48000)
    y = A.load_audio(path)
    assert len(y) == SR and not y.any()
    assert torch.all(M.log_mel_spectrogram(y) == -1.5)


def test_truncated_files_decode_what_is_there(tmp_path):
    x = speech_like(2.0)
    wav = A.write_audio(tmp_path / "a.wav", x, SR)  # PCM_16: 44-byte header, 2 bytes a sample
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:44 + 2 * 20000 + 1])  # the header still claims 32000 samples
    with pytest.warns(A.TruncatedAudioWarning, match=r"cut.wav: the WAV header declares 2.000 s of audio, the "
                                                     r"file holds 1.250 s"):
        y = A.load_audio(cut)
    assert len(y) == 20000 and np.abs(y - x[:20000]).max() < 1e-4
    with pytest.warns(A.TruncatedAudioWarning, match="audio bytes: the WAV header declares"):
        assert len(A.load_audio(cut.read_bytes())) == 20000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole file, and one whose writer left the size open, warn nothing
        assert len(A.load_audio(wav)) == len(x)
        streamed = bytearray(wav.read_bytes())
        streamed[40:44] = b"\xff\xff\xff\xff"
        assert len(A.load_audio(bytes(streamed))) == len(x)
    pytest.importorskip("av")
    flac = A.write_audio(tmp_path / "a.flac", x, SR)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])  # libsndfile stops: PyAV goes on
    y = A.load_audio(cut)
    assert 0.3 * len(x) < len(y) < 0.7 * len(x)
    assert np.abs(y - x[:len(y)]).max() < 1e-4


def test_chunks_equal_whole_file_decoding(tmp_path):
    rate = 44100
    t = np.arange(90 * rate) / rate  # 90 s: nine 10-second read blocks
    left = (0.4 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.1 * t))).astype(np.float32)
    right = (0.3 * np.sin(2 * np.pi * 1337 * t)).astype(np.float32)
    path = A.write_audio(tmp_path / "long.wav", np.stack([left, right], 1), rate, subtype="FLOAT")
    whole = AF.resample(torch.from_numpy((left + right) / 2), rate, SR).numpy()  # all at once
    chunks = list(A.iter_audio_chunks(path, chunk_seconds=7.3))
    size = round(7.3 * SR)
    assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    joined = np.concatenate(chunks)
    assert len(joined) == len(whole) == 90 * SR
    assert np.abs(joined - whole).max() < 1e-5
    assert np.array_equal(A.load_audio(path), joined)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 12345])
def test_streaming_resampler_equals_whole_signal(rate):
    x = noise(3.0, seed=rate)[: 3 * rate]
    resampler = Resampler(rate, A.SAMPLE_RATE)
    sizes = np.random.default_rng(rate).integers(1, 3 * rate // 4, 40)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(resampler(x[start:start + size]))
        start += size
        if start >= len(x):
            break
    pieces.append(resampler(x[start:]))
    pieces.append(resampler.flush())
    ours = np.concatenate(pieces)
    whole = AF.resample(torch.from_numpy(x), resampler.o, resampler.n).numpy()
    assert len(ours) == len(whole)
    assert np.abs(ours - whole).max() < 1e-5


def test_streaming_memory_stays_flat(tmp_path):
    rate = 8000  # upsampled: 20 minutes make 77 MB of float32 at 16 kHz
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        block = (tone(300.0, 60.0, rate) * 32767).astype(np.int16)
        for _ in range(20):
            f.write(block)
    tracemalloc.start()
    try:
        total = sum(len(c) for c in A.iter_audio_chunks(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 20 * 60 * SR
    assert peak < 16e6  # a few 30-second chunks and 10-second read blocks


def test_iter_audio_chunks_reports_bad_samples_where_they_are(tmp_path):
    x = noise(30.0)
    x[25 * SR + 5] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")  # write_audio refuses NaN; soundfile writes it
    got = []
    with pytest.raises(InputError, match=r"nan.wav: expected finite samples, found at least 1 .* 25.000 s"):
        for chunk in A.iter_audio_chunks(path, chunk_seconds=2):
            got.append(chunk)
    assert len(got) == 10  # the 20 s read before the damaged 10-second block
    assert np.array_equal(np.concatenate(got), x[:20 * SR])
    with pytest.raises(InputError, match=r"found 1 NaN or infinite ones, the first at 25.000 s \(sample 400005\)"):
        A.load_audio(path)
    for bad in (0, -1, float("nan"), "30"):
        with pytest.raises(InputError, match="chunk_seconds"):
            A.iter_audio_chunks(path, chunk_seconds=bad)
    with pytest.raises(InputError, match="missing.wav: expected an audio file, found nothing there"):
        A.iter_audio_chunks(tmp_path / "missing.wav")  # refused by the call, before any iteration


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@needs_whisper
def test_espeak_speech(tmp_path):
    wav = subprocess.run(["espeak-ng", "--stdout", "the quick brown fox jumps over the lazy dog"],
                         capture_output=True, check=True).stdout
    y = A.load_audio(wav)  # espeak-ng speaks at 22050 Hz
    assert sf.info(io.BytesIO(wav)).samplerate != SR and len(y) > SR
    for n_mels in (80, 128):
        assert (M.log_mel_spectrogram(y, n_mels) - reference_mel(y, n_mels)).abs().max() < 1e-4


# --------------------------------------------------------------------------------- bad input
def bad_file(tmp_path, kind):
    p = tmp_path / f"bad_{kind}.wav"
    if kind == "missing":
        return tmp_path / "missing.wav"
    if kind == "directory":
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "no_frames":
        sf.write(p, np.zeros(0, np.float32), SR)
    elif kind == "text":
        p = tmp_path / "notes.txt"
        p.write_text("these are notes, not audio\n" * 50)
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(20000))
    elif kind == "header_only":
        p.write_bytes(sf_bytes(noise(1.0))[:30])
    return p


def sf_bytes(x, rate=SR, fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("kind, found", [
    ("missing", "found nothing there"), ("directory", "found a directory"), ("empty", "empty file (0 bytes)"),
    ("no_frames", "found none (0 frames)"), ("text", "neither soundfile"), ("random", "neither soundfile"),
    ("header_only", "found data"),
])
def test_bad_files(tmp_path, kind, found):
    path = bad_file(tmp_path, kind)
    with pytest.raises(InputError) as err:
        A.load_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: expected")
    assert found in message


@pytest.mark.parametrize("source, match", [
    (b"", "audio bytes: expected the bytes of an audio file, found 0 bytes"),
    (np.random.default_rng(1).bytes(5000), "audio bytes: expected an audio file"),
    (io.BytesIO(b""), "empty file object"),
    ("https://example.com/a.wav", "found a URL"),
    ("", "empty string"),
    ([0.1, 0.2], "found list"),
    ({"sampling_rate": SR}, "found keys"),
    ({"array": np.zeros(10), "raw": np.zeros(10), "sampling_rate": SR}, "found both"),
    ({"array": np.zeros(10)}, "sampling_rate: expected the rate"),
])
def test_bad_sources(source, match):
    with pytest.raises(InputError, match=match):
        A.load_audio(source)


@pytest.mark.parametrize("array, match", [
    (np.zeros(0, np.float32), "audio: expected at least one sample, found an empty array"),
    (np.zeros((2, 0), np.float32), "at least one sample"),
    (np.array(0.5, np.float32), "at least one sample"),
    (np.zeros(100, np.complex64), "found complex64 samples"),
    (np.array([0.1, None], dtype=object), "found object samples"),
    (np.zeros(100, np.int64), "found int64 samples"),
    (np.zeros(100, bool), "found bool samples"),
    (np.zeros((2, 2, 100), np.float32), r"found shape \(2, 2, 100\)"),
    (np.zeros((4, 4), np.float32), r"channel axis the shorter one .* found shape \(4, 4\)"),
    (np.zeros((10, 16000), np.float32), "at most 8 channels"),
    (np.array([0.0, 0.1, np.nan, np.inf, 0.2], np.float32),
     r"found 2 NaN or infinite ones, the first at .* \(sample 2\)"),
])
def test_bad_arrays(array, match):
    with pytest.raises(InputError, match=match):
        A.load_audio(array, sampling_rate=SR)


@pytest.mark.parametrize("rate", [None, 0, -16000, 16, 22050.5, float("nan"), True, "16000"])
def test_bad_sampling_rates(rate):
    with pytest.raises(InputError, match="^sampling_rate: expected"):
        A.load_audio(np.zeros(100, np.float32), sampling_rate=rate)


def test_file_rate_must_agree(tmp_path):
    path = A.write_audio(tmp_path / "a.wav", tone(1000.0, 1.0, 22050), 22050)
    assert len(A.load_audio(path, sampling_rate=22050)) == SR
    with pytest.raises(InputError, match="sampling_rate: expected None or the file's own rate 22050"):
        A.load_audio(path, sampling_rate=16000)


def test_name_replaces_the_source_in_messages():
    with pytest.raises(InputError, match=r"^inputs\[3\]: expected finite samples"):
        A.load_audio(np.full(10, np.nan), SR, name="inputs[3]")


# ------------------------------------------------------------------------------------ writing
def test_write_audio(tmp_path):
    x = speech_like(1.0)
    path = A.write_audio(tmp_path / "sub" / "a.flac", x, SR, subtype="PCM_24")
    assert sf.info(str(path)).format == "FLAC" and os.listdir(path.parent) == ["a.flac"]  # no temporary left
    assert np.abs(A.load_audio(path) - x).max() < 1e-6
    A.write_audio(path, np.zeros((2, 100), np.float32), 8000)  # overwrite: 2 channels [c, n]
    assert sf.info(str(path)).channels == 2 and sf.info(str(path)).frames == 100
    pcm = np.array([-32768, -1, 0, 1, 32767], np.int16)
    wav = A.write_audio(tmp_path / "sub" / "pcm.wav", pcm, SR)
    assert np.array_equal(sf.read(str(wav), dtype="int16")[0], pcm)  # integers round-trip exactly
    for args, kwargs, match in [
        ((tmp_path / "a.xyz", x, SR), {}, "a.xyz: expected a file name ending"),
        ((tmp_path / "a.wav", x, SR), {"subtype": "VORBIS"}, "subtype"),
        ((tmp_path / "a.wav", np.full(10, np.nan), SR), {}, "finite"),
        ((tmp_path / "a.wav", x, 0), {}, "sampling_rate"),
        ((tmp_path / "a.wav", np.zeros(0), SR), {}, "at least one sample"),
    ]:
        with pytest.raises(InputError, match=match):
            A.write_audio(*args, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["sub"]  # failures leave nothing behind
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.flac", "pcm.wav"]
