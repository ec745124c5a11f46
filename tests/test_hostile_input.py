"""Hostile input, generated: random bytes, cut and corrupted files, odd headers and extreme sizes to
the audio and image loaders, and any number to every numeric option of the commands. Each case
gives a result or an ``InputError`` (exit status 2 for a command), never another exception."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multimodal import cli
from multimodal.errors import InputError
from multimodal.media import audio as A
from multimodal.media.images import load_image
from multimodal.pipelines.image_classification import Classification, ImageClassificationPipeline
from multimodal.pipelines.speech_recognition import SpeechRecognitionPipeline
from multimodal.pipelines.text_to_image import TextToImagePipeline

pytestmark = pytest.mark.usefixtures("one_thread")
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _result_or_input_error(fn, *args, **kwargs):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut file warns; the warning is not the property
            return fn(*args, **kwargs)
    except InputError:
        return None


def _encoded_audio(fmt: str, subtype: str | None = None) -> bytes:
    t = np.arange(8000) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


AUDIO = {"wav": _encoded_audio("WAV", "PCM_16"), "flac": _encoded_audio("FLAC"), "ogg": _encoded_audio("OGG")}


def _encoded_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = {fmt: _encoded_image(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")}


def _damaged(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data[:max(0, min(len(data), cut))])
    for at, value in flips:
        if out:
            out[at % len(out)] = value
    return bytes(out)


damage = st.tuples(st.integers(0, 20000), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                                   max_size=6))


# ------------------------------------------------------------------------------------------ audio
@FEW
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_audio_or_an_input_error(data):
    out = _result_or_input_error(A.load_audio, data)
    assert out is None or (out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all())


@FEW
@given(kind=st.sampled_from(sorted(AUDIO)), damage=damage)
def test_cut_and_corrupted_audio_files(kind, damage):
    out = _result_or_input_error(A.load_audio, _damaged(AUDIO[kind], *damage))
    assert out is None or (out.ndim == 1 and np.isfinite(out).all())


@FEW
@given(channels=st.integers(0, 70000), rate=st.integers(0, 2 ** 32 - 1), bits=st.integers(0, 70000),
       data_size=st.integers(0, 2 ** 32 - 1), fmt=st.sampled_from([1, 3, 0xFFFE, 0, 7777]))
def test_odd_wav_headers(channels, rate, bits, data_size, fmt):
    block = max(1, channels * bits // 8) % 65536
    header = (b"RIFF" + struct.pack("<I", 36 + 64) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels % 65536,
              rate, (rate * block) % 2 ** 32, block, bits % 65536) + b"data" + struct.pack("<I", data_size))
    out = _result_or_input_error(A.load_audio, header + bytes(range(64)))
    assert out is None or (out.ndim == 1 and np.isfinite(out).all())


# ------------------------------------------------------------------------------------------ images
@FEW
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_an_image_or_an_input_error(data):
    out = _result_or_input_error(load_image, data)
    assert out is None or (out.width >= 1 and out.height >= 1)


@FEW
@given(fmt=st.sampled_from(sorted(IMAGES)), damage=damage)
def test_cut_and_corrupted_image_files(fmt, damage):
    out = _result_or_input_error(load_image, _damaged(IMAGES[fmt], *damage))
    assert out is None or (out.width >= 1 and out.height >= 1)


@FEW
@given(width=st.integers(0, 2 ** 31 - 1), height=st.integers(0, 2 ** 31 - 1))
def test_png_headers_of_any_size(width, height):
    """An IHDR chunk claiming any size: refused before decoding when huge, never a memory blow-up."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk + IMAGES["PNG"][33:]
    out = _result_or_input_error(load_image, data)
    assert out is None or out.width * out.height <= 10 ** 8


# ---------------------------------------------------------------------------- numeric CLI options
NUMBERS = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["0", "-0", "1e309", "nan", "0x10", "", " 3", "1_000", "٣"]))


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "shirt.png"
    path.write_bytes(IMAGES["PNG"])
    return path


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "tone.wav"
    path.write_bytes(AUDIO["wav"])
    return path


def _stub_runs(monkeypatch):
    """Each pipeline's work after its checks: a fixed, well-formed answer, so that thousands of
    option values take seconds. What a command does with options that pass is tested elsewhere."""
    monkeypatch.setattr(SpeechRecognitionPipeline, "_run", lambda self, audio, **kw: {
        "text": " tone", "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 0.5, "text": " tone", "tokens": [],
                                       "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0,
                                       "no_speech_prob": 0.0}], "language": "en"})
    monkeypatch.setattr(TextToImagePipeline, "_run", lambda self, prompt, **kw: [Image.new("RGB", (32, 32))])
    monkeypatch.setattr(ImageClassificationPipeline, "_run", lambda self, images, **kw: [
        Classification([{"label": "Shirt", "score": 1.0}]) for _ in (images if isinstance(images, list) else [images])])


_PIPELINES: dict = {}


def _cached_pipelines(monkeypatch):
    """Every command's pipeline loaded once for all the examples."""
    from importlib import import_module

    from multimodal.cli import classify, generate, transcribe

    command = import_module("multimodal.cli.command")  # the package's `command` is its decorator

    def load(task, args):
        key = (task, args.model)
        if key not in _PIPELINES:
            _PIPELINES[key] = command.load_pipeline(task, args)
        return _PIPELINES[key]

    for module in (classify, generate, transcribe):
        monkeypatch.setattr(module, "load_pipeline", load)


def _exit_status(argv) -> int:
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: a value of the wrong type
        return e.code


OPTIONS = {
    "classify": [("--top-k",)],
    "transcribe": [("--beam-size",), ("--best-of",), ("--seed",)],
    "generate": [("--steps",), ("-n",), ("--guidance-scale",), ("--seed",), ("--scale",)],
    "generate-gpt": [("--temperature",), ("--top-k",), ("--top-p",)],
}


@pytest.mark.parametrize("command, option", [(c, o[0]) for c, opts in OPTIONS.items() for o in opts])
def test_any_number_for_any_numeric_option(command, option, image_file, speech_file, tmp_path, monkeypatch):
    _stub_runs(monkeypatch)
    _cached_pipelines(monkeypatch)
    out = tmp_path / "out"

    @settings(max_examples=25, deadline=None)
    @given(value=NUMBERS)
    def check(value):
        base = {"classify": ["classify", image_file, "--device", "cpu"],
                "transcribe": ["transcribe", speech_file, "--device", "cpu", "--output-dir", out, "--overwrite"],
                "generate": ["generate", "image", "a red circle on a black background", "--device", "cpu",
                             "-o", out / "a.png", "--overwrite"],
                "generate-gpt": ["generate", "image", "a red circle on a black background", "--model",
                                 "text2image-gpt", "--device", "cpu", "-o", out / "a.png", "--overwrite"]}[command]
        assert _exit_status([*base, option, value]) in (0, 2)

    check()
