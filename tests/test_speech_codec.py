"""The speech codec: the log-mel vocoder, SpeechCodec's codes and decoding, its recipe (tiny, on tones),
the codes command on audio, and the speech-tts corpus' texts and voices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import kill_batches_at

from multimodal import cli
from multimodal.data import speech_tts
from multimodal.errors import InputError
from multimodal.models import SpeechCodec, SpeechCodecConfig
from multimodal.models.autoencoders.quantizer import QuantizerConfig
from multimodal.models.autoencoders.vq import VQVAEConfig
from multimodal.tokenizers.mel import log_mel_spectrogram, log_mel_to_audio
from multimodal.training import speech_codec as recipe
from multimodal.training.speech_codec import train_speech_codec

RATE = 16000
TINY = SpeechCodecConfig(vq=VQVAEConfig(dims=1, in_channels=80, channels=32, channel_mult=(1, 2), strides=(1, 2),
                                        res_blocks=1, groups=8,
                                        quantizer=QuantizerConfig(codebook_size=32, dim=16, levels=3,
                                                                  quantizer_dropout=0.5, dead_code_steps=20)),
                         griffin_lim_iters=16)


def tone(freq: float, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pitch(audio) -> float:
    """The strongest frequency of the middle of ``audio`` (Hz, 1-Hz resolution)."""
    a = np.asarray(audio, dtype=np.float64)
    a = a[len(a) // 4: 3 * len(a) // 4]
    spectrum = np.abs(np.fft.rfft(a * np.hanning(len(a)), n=RATE))
    return float(np.argmax(spectrum))


def relative_log_mel(audio) -> torch.Tensor:
    m = log_mel_spectrogram(torch.as_tensor(np.asarray(audio, dtype=np.float32)))
    return m - m.max()


# ---------------------------------------------------------------------------------------- vocoder
@pytest.mark.parametrize("freq", [220.0, 440.0, 1000.0])
def test_the_vocoder_keeps_a_tones_pitch_and_its_spectrogram(freq):
    x = tone(freq)
    y = log_mel_to_audio(log_mel_spectrogram(torch.from_numpy(x)))
    assert y.shape == (len(x) // 160 * 160,) and y.dtype == torch.float32
    # within half a bin of Whisper's 400-point FFT (40 Hz bins): the finest pitch its frames hold
    assert abs(pitch(y) - freq) <= max(21.0, 0.03 * freq)
    assert abs(float(y.abs().max()) - 0.9) < 1e-6
    a, b = relative_log_mel(x)[:, 2:-2], relative_log_mel(y)[:, 2:-2]  # the edges' frames see the cut
    loud = a > -0.5
    assert float((a - b)[loud].abs().mean()) < 0.1  # the loud cells come back within 4 dB on average


def test_the_vocoder_is_deterministic_batched_and_checks_its_input():
    x = torch.from_numpy(np.stack([tone(300), tone(600)]))
    mel = log_mel_spectrogram(x)
    batch = log_mel_to_audio(mel)
    assert torch.equal(batch, log_mel_to_audio(mel))
    # A row alone equals its batched self up to rounding, which Griffin-Lim's momentum iterations amplify
    # where the kernels block a batch differently (AVX-512: 0.13 % of the signal's norm; AVX2: exact).
    for i in range(2):
        alone = log_mel_to_audio(mel[i])
        assert torch.linalg.vector_norm(batch[i] - alone) < 1e-2 * torch.linalg.vector_norm(alone)
    for bad in (torch.zeros(80), torch.zeros(80, 0), torch.full((80, 5), float("nan")), torch.zeros(200, 5),
                torch.zeros(80, 5, dtype=torch.long)):
        with pytest.raises(InputError, match="log_mel|n_mels"):
            log_mel_to_audio(bad)
    with pytest.raises(InputError, match="n_iter"):
        log_mel_to_audio(mel, n_iter=-1)


# ------------------------------------------------------------------------------------------ codec
def test_codes_have_the_codec_frame_rate_levels_and_decode_at_every_depth():
    torch.manual_seed(0)
    codec = SpeechCodec(TINY).eval()
    assert codec.frame_rate == 50 and codec.samples_per_code == 320
    assert codec.bitrate() == 50 * 3 * 5 and codec.bitrate(1) == 50 * 5
    x = torch.from_numpy(np.stack([tone(200, 0.61), tone(500, 0.61)]))  # 9760 samples: 31 code frames
    codes = codec.encode(x)
    assert codes.shape == (2, 3, 31) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 32
    assert torch.equal(codes, codec.encode(x))  # deterministic
    assert torch.equal(codes[1], codec.encode(x[1])) and torch.equal(codec.encode(x[:, None]), codes)
    assert torch.equal(codec.encode(x, levels=2), codes[:, :2])
    audio = codec.decode(codes)
    assert audio.shape == (2, 31 * 320) and bool(torch.isfinite(audio).all()) and float(audio.abs().max()) <= 0.9 + 1e-6
    assert torch.equal(audio, codec.decode(codes))
    # fewer levels decode to the sum of the first levels' codewords only
    z = sum(codec.vq.quantizer.quantizers[i].lookup(codes[:, i]) for i in range(2))
    assert torch.allclose(codec.decode_mel(codes[:, :2]), codec.vq.decoder(z.movedim(-1, 1)), atol=1e-6)
    assert codec.decode(codes[:, :1]).shape == (2, 31 * 320)


def test_the_codec_round_trips_through_save_and_load(tmp_path):
    torch.manual_seed(1)
    codec = SpeechCodec(TINY).eval()
    codec.save_pretrained(tmp_path / "codec")
    again = SpeechCodec.from_pretrained(tmp_path / "codec")
    x = torch.from_numpy(tone(330, 0.4))
    assert torch.equal(codec.encode(x), again.encode(x))
    assert again.config == TINY


def test_bad_codes_and_audio_are_input_errors():
    codec = SpeechCodec(TINY).eval()
    good = torch.zeros(1, 3, 4, dtype=torch.long)
    for bad, match in ((good + 32, r"codes: expected codes in \[0, 32\)"), (good - 1, "codes: expected codes"),
                       (torch.zeros(1, 4, 4, dtype=torch.long), "1 to 3 levels"),
                       (torch.zeros(1, 3, 0, dtype=torch.long), "at least one frame"),
                       (torch.zeros(4, dtype=torch.long), "codes: expected"), (good.float(), "integer"),
                       ([[0]], "codes: expected an integer tensor")):
        with pytest.raises(InputError, match=match):
            codec.decode(bad)
    for bad, match in ((np.zeros(100, dtype=np.int16), "float samples"), (torch.zeros(2, 2, 100), "shape"),
                       (torch.zeros(0), "at least one sample"), ("x.wav", "float samples")):
        with pytest.raises(InputError, match=match):
            codec.encode(bad)
    with pytest.raises(InputError, match="levels: expected a whole number from 1 to 3"):
        codec.encode(torch.zeros(1000), levels=4)
    with pytest.raises(InputError, match="dims 1 and in_channels 80"):
        SpeechCodecConfig(vq=VQVAEConfig(dims=2, in_channels=80))


# ----------------------------------------------------------------------------------------- recipe
@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    """Manifests of 48 training and 8 validation clips: tones of random pitch and length."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    manifests = {}
    for split, n in (("train", 48), ("val", 8)):
        rows = []
        for i in range(n):
            path = root / f"{split}-{i}.wav"
            sf.write(path, tone(float(rng.uniform(150, 1500)), float(rng.uniform(0.3, 1.2))), RATE)
            rows.append(json.dumps({"audio": path.name, "text": ""}))  # relative to the manifest
        manifests[split] = root / f"{split}.jsonl"
        manifests[split].write_text("\n".join(rows) + "\n")
    return manifests


def _options(corpus, **extra):
    return {**dict(steps=60, batch_size=8, lr=3e-3, config=TINY, manifests=[corpus["train"]],
                   val_manifests=[corpus["val"]], crop_frames=32, progress=False, eval_every=30, save_every=10,
                   log_every=10, warmup_steps=5), **extra}


@pytest.fixture(scope="module")
def trained(tone_corpus, tmp_path_factory):
    return train_speech_codec(tmp_path_factory.mktemp("run") / "codec", **_options(tone_corpus))


def test_the_recipe_learns_tones_and_writes_a_codec_folder(trained, tone_corpus):
    folder = trained["model_dir"]
    codec = SpeechCodec.from_pretrained(folder)
    card = open(f"{folder}/MODEL_CARD.md").read()
    assert "Speech codec" in card and "bit/s" in card
    val = trained["val"]
    assert len(val["mel_l1"]) == len(val["usage"]) == 3 and all(0 < u <= 1 for u in val["usage"])
    # learning on a tiny problem: the trained codec reconstructs a validation tone's spectrogram far
    # better than an untrained one, and keeps its pitch
    x = torch.from_numpy(tone(700, 0.64))
    mel = codec.mel(x)
    untrained = SpeechCodec(TINY).eval()
    trained_err = float((codec.decode_mel(codec.encode(x)[None]) - mel).abs().mean())
    untrained_err = float((untrained.decode_mel(untrained.encode(x)[None]) - mel).abs().mean())
    assert trained_err < 0.5 * untrained_err
    assert abs(pitch(codec.decode(codec.encode(x))) - 700) <= 0.15 * 700  # 32 codes for 150-1500 Hz tones


def test_the_recipe_resumes_exactly(tone_corpus, tmp_path, monkeypatch):
    options = _options(tone_corpus, steps=20, eval_every=100)
    whole = train_speech_codec(tmp_path / "whole", **options)
    kill_batches_at(monkeypatch, recipe, 15)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_speech_codec(tmp_path / "part", **options)
    monkeypatch.undo()
    resumed = train_speech_codec(tmp_path / "part", resume=True, **options)
    a = SpeechCodec.from_pretrained(whole["model_dir"]).state_dict()
    b = SpeechCodec.from_pretrained(resumed["model_dir"]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_recipe_rejects_bad_manifests(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"text": "no audio"}\n')
    for name, match in (("missing.jsonl", "expected a JSONL file"), ("empty.jsonl", "at least one clip"),
                        ("bad.jsonl", "line 1")):
        with pytest.raises(InputError, match=match):
            train_speech_codec(tmp_path / "run", steps=2, manifests=[tmp_path / name], val_manifests=[tmp_path / name],
                               config=TINY, progress=False)
    assert not (tmp_path / "run" / "model").exists()


def test_codes_command_on_audio(trained, tmp_path, capsys):
    folder = str(trained["model_dir"])
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(440, 0.5), RATE)
    codes = tmp_path / "codes.json"
    assert cli.main(["codes", "encode", str(wav), "--model", folder, "-o", str(codes), "--levels", "2"]) == 0
    data = json.loads(codes.read_text())
    codec = SpeechCodec.from_pretrained(folder)
    expected = codec.encode(torch.from_numpy(tone(440, 0.5)), levels=2)
    assert torch.equal(torch.tensor(data["codes"][0]), expected) and data["frame_rate"] == 50
    out = tmp_path / "out.wav"
    assert cli.main(["codes", "decode", str(codes), "--model", folder, "-o", str(out)]) == 0
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and len(audio) == expected.shape[-1] * 320
    assert np.abs(audio - codec.decode(expected).numpy()).max() < 1e-3  # 16-bit PCM
    bad = tmp_path / "bad.wav"
    assert cli.main(["codes", "decode", "[[[99]]]", "--model", folder, "-o", str(bad)]) == 2
    assert "codes: expected codes in [0, 32)" in capsys.readouterr().err and not bad.exists()


# ----------------------------------------------------------------------------------------- corpus
def test_corpus_texts_keep_evaluation_digits_and_held_out_pairs_out():
    assert speech_tts.spell_digits("call 4071, now") == "call four zero seven one , now"
    train, held = speech_tts.digit_strings(400, 0), speech_tts.digit_strings(100, 0, training=False)
    assert all(speech_tts.is_training_digit_string(s) for s in train)
    assert not any(speech_tts.is_training_digit_string(s) for s in held)
    share = np.mean([speech_tts.is_training_digit_string(str(n)) for n in range(10000)])
    assert 0.85 < share < 0.9  # 7 in 8
    phrases = speech_tts.world_phrases()
    assert len(phrases) == 480 and "a red sneaker on a black background" not in phrases
    assert "a red sneaker on a black background" in speech_tts.world_phrases(held_out=True)
    texts = speech_tts.corpus_texts("kal", digits=20, world=10, sentences=0, seed=0)
    kinds = [k for k, _ in texts]
    assert kinds.count("digits") == 20 and kinds.count("world") == 10
    with pytest.raises(InputError, match="digits"):
        speech_tts.is_training_digit_string("12a")


def test_a_training_voice_speaks_clean_16k_audio_and_held_out_voices_are_refused(tmp_path):
    path = speech_tts.speak("four two", "espeak-us", tmp_path / "a.wav")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE and audio.ndim == 1 and 0.3 < len(audio) / RATE < 3
    assert abs(np.abs(audio).max() - 10 ** (-3 / 20)) < 0.01  # normalised to -3 dBFS
    with pytest.raises(InputError, match="voice: expected one of"):
        speech_tts.speak("hello", "slt", tmp_path / "b.wav")
    assert not any("slt" in v[1] for v in speech_tts.VOICES.values())


def test_a_slower_voice_stretches_flite_and_slows_espeak(tmp_path, monkeypatch):
    from multimodal.data import speech_digits

    commands = []
    def run(cmd, stdin=None):  # record the command; write the (empty) wav it names
        commands.append(cmd)
        Path(cmd[cmd.index("-o" if "-o" in cmd else "-w") + 1]).touch()

    monkeypatch.setattr(speech_digits, "_run", run)
    for speed in (1.0, 1 / 1.3):
        speech_digits.synthesize("four two", "flite", "rms", tmp_path / "f.wav", speed=speed)
        speech_digits.synthesize("four two", "espeak-ng", "en-us", tmp_path / "e.wav", speed=speed)
    assert "duration_stretch=1.3000" in commands[2] and not any("duration_stretch" in c for c in commands[0])
    assert commands[1][commands[1].index("-s") + 1] == "170" and commands[3][commands[3].index("-s") + 1] == "131"
    assert speech_tts.VOICES["rms-slow"][:2] == ("flite", "rms") and "rms-slow" not in speech_tts.DEFAULT_VOICES
    # a clip of a slowed flite voice is really longer (flite is in the bench packages, not the test ones)
    monkeypatch.undo()
    if shutil.which("flite"):
        fast = speech_tts.speak("four two seven", "rms", tmp_path / "fast.wav")
        slow = speech_tts.speak("four two seven", "rms-slow", tmp_path / "slow.wav")
        ratio = sf.info(slow).frames / sf.info(fast).frames
        assert 1.15 < ratio < 1.45
