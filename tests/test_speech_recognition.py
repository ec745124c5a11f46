"""Long-form transcription, the speech-recognition pipeline, its writers, CLI and app handler.

The long-form tests use the real Whisper tiny.en (the shipped default) and speech synthesised by
espeak-ng; they skip, saying why, where espeak-ng is not installed."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import whisper

import multimodal
from benchmarks.asr import normaliser, wer
from benchmarks.whisper_twins import openai_twin
from multimodal.convert.whisper import default_model_path, load_whisper
from multimodal.errors import InputError
from multimodal.app import common as app_common
from multimodal.app import transcribe as transcribe_tab
from multimodal.cli import transcribe as transcribe_command
from multimodal.generation import transcribe as longform
from multimodal.pipelines import speech_recognition as asr
from multimodal.media.audio import SAMPLE_RATE, load_audio
from multimodal.tokenizers.mel import N_FRAMES, N_SAMPLES
from multimodal.tokenizers.whisper_text import WhisperTokenizer

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng): "
                                                         "no speech to transcribe")

SENTENCES = ("Speech recognition turns spoken words into written text. The weather today is sunny with a light "
             "breeze. Please remember to buy milk, bread and eggs on the way home. The meeting has been moved to "
             "Thursday afternoon. Our new library transcribes long recordings one window at a time. Each window "
             "covers thirty seconds of audio. The model predicts timestamps that tell us where the next window "
             "should start. Trains leave the central station every fifteen minutes during the day.")


def speak(text: str, path, speed: int = 150):
    subprocess.run([ESPEAK, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def tiny_en():
    folder = default_model_path()
    return load_whisper(folder).eval(), WhisperTokenizer.from_file(folder / "tokenizer.json")


@pytest.fixture(scope="module")
def pipe():
    p = multimodal.pipeline("automatic-speech-recognition", device="cpu")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    """About 32 s of speech: two windows, the second starting at a predicted timestamp."""
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no speech to transcribe")
    return speak(SENTENCES, tmp_path_factory.mktemp("speech") / "long.wav")


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory):
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no speech to transcribe")
    return speak("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("speech") / "fox.wav")


# ---------------------------------------------------------------------------- windowed log-mel
@pytest.mark.parametrize("length, chunk", [(150, 7), (250, 100), (16000 * 7 + 33, 4001), (16000 * 65 + 77, 480000)])
def test_windowed_log_mel_equals_the_whole_recordings(length, chunk):
    """Window by window from chunks of any size, the spectrogram openai-whisper's transcribe slices
    from one computed over the whole padded recording (quiet start: the 8-decade clip matters)."""
    rng = np.random.default_rng(length)
    audio = (rng.standard_normal(length) * np.linspace(0.001, 1, length) ** 3).astype(np.float32)
    ref = whisper.log_mel_spectrogram(torch.from_numpy(audio), padding=N_SAMPLES)
    mel = longform.WindowedLogMel(lambda: (audio[i:i + chunk] for i in range(0, length, chunk)))
    content = ref.shape[-1] - N_FRAMES
    assert mel.content_frames == content
    for seek in sorted({0, 1, 2, 5, 1000, 2999, 3001, 5000}):
        if seek >= content:
            break
        size = min(N_FRAMES, content - seek)
        window, level = mel.window(seek, size)
        torch.testing.assert_close(window, whisper.pad_or_trim(ref[:, seek:seek + size], N_FRAMES), atol=1e-5, rtol=0)
    mel.restart()  # the first 30 s as language detection sees it: padding frames computed, not zeros
    torch.testing.assert_close(mel.window(0, N_FRAMES)[0], whisper.pad_or_trim(ref, N_FRAMES), atol=1e-5, rtol=0)


def test_windowed_log_mel_holds_a_window_not_the_recording():
    """Memory stays flat: a 20-minute stream, generated lazily, is never held beyond about one
    window (plus one chunk) of samples while transcribe-like windows walk over it."""
    chunk, minutes = SAMPLE_RATE * 30, 20
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal(chunk).astype(np.float32) * 0.1 for _ in range(3)]
    mel = longform.WindowedLogMel(lambda: (blocks[i % 3] for i in range(minutes * 2)))
    assert mel.content_frames == minutes * 60 * 100
    largest, seek = 0, 0
    while seek < mel.content_frames:
        window, level = mel.window(seek, min(N_FRAMES, mel.content_frames - seek))
        assert window.shape == (80, N_FRAMES) and -40 < level < 0
        largest = max(largest, len(mel._buffer))
        seek += 2345  # as if the last timestamp came 23.45 s into each window
    assert largest <= N_SAMPLES + chunk + 1000


def test_levels():
    assert longform.level_db(-10.0) < -100  # digital silence
    sine = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    for amplitude, expected in ((1.0, 0.0), (0.01, -40.0)):
        mel = longform.WindowedLogMel(lambda: iter([sine * amplitude]))
        assert mel.window(0, 100)[1] == pytest.approx(expected, abs=1.5)


# ---------------------------------------------------------------------------- long-form equality
def word_errors(reference: str, hypothesis: str) -> int:
    """Word edits between two transcripts after openai-whisper's English normaliser."""
    norm = normaliser()
    return wer([norm(reference)], [norm(hypothesis)])[1]


@pytest.mark.numerics
@needs_espeak
def test_transcribe_equals_openai_whisper_on_long_speech(long_speech, tiny_en):
    """The same algorithm as openai-whisper's transcribe with the same weights, over two windows,
    ours streaming the file and openai-whisper given it whole: the same words but for a near-tie
    (the two libraries' float32 kernels round differently, per CPU), as many segments, and the
    second window starting at a timestamp that both put within a second."""
    model, tokenizer = tiny_en
    audio = load_audio(long_speech)
    assert len(audio) > N_SAMPLES
    got = longform.transcribe(model, tokenizer, long_speech, beam_size=None)
    want = whisper.transcribe(openai_twin(model), audio, fp16=False, beam_size=None, best_of=5)
    assert got["language"] == want["language"] == "en"
    assert word_errors(want["text"], got["text"]) <= 2, (want["text"], got["text"])
    assert abs(len(got["segments"]) - len(want["segments"])) <= 1
    seeks = lambda r: sorted({s["seek"] for s in r["segments"]})  # noqa: E731
    assert len(seeks(got)) == len(seeks(want)) == 2 and abs(seeks(got)[1] - seeks(want)[1]) <= 100  # 100 frames: 1 s
    assert len(got["segments"]) >= 6 and got["segments"][-1]["end"] > 30.0
    words = set(re.findall(r"[a-z]+", got["text"].lower()))
    assert {"weather", "milk", "bread", "meeting", "thursday", "window", "trains", "station"} <= words


def test_speech_only_maps_times_back_to_the_recording():
    from multimodal.generation.vad import SpeechOnly

    audio = np.arange(100_000, dtype=np.float32)
    speech = SpeechOnly(audio, [(16000, 32000), (64000, 80000)])
    assert np.array_equal(speech.audio, np.concatenate([audio[16000:32000], audio[64000:80000]]))
    assert speech.original_time(0.0) == 1.0 and speech.original_time(0.5) == 1.5
    assert speech.original_time(1.0) == 4.0 and speech.original_time(1.0, is_end=True) == 2.0
    assert speech.original_time(1.25, is_end=True) == 4.25
    result = {"segments": [{"start": 0.5, "end": 1.0, "words": [{"start": 0.5, "end": 1.0}]},
                           {"start": 1.0, "end": 2.0, "words": []}]}
    speech.restore(result)
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(1.5, 2.0), (4.0, 5.0)]
    assert result["segments"][0]["words"] == [{"start": 1.5, "end": 2.0}]


def test_vad_decodes_only_speech(pipe, short_speech):
    speech = load_audio(short_speech)
    rng = np.random.default_rng(0)
    quiet = lambda seconds: (rng.normal(0, 0.003, int(seconds * SAMPLE_RATE))).astype(np.float32)  # noqa: E731
    audio = np.concatenate([quiet(6), speech, quiet(9), speech, quiet(4)])
    first, second = 6.0, 6.0 + len(speech) / SAMPLE_RATE + 9.0
    result = pipe(audio, sampling_rate=SAMPLE_RATE, beam_size=1, vad_filter=True, return_timestamps="word")
    assert result["text"].lower().count("lazy") == 2
    words = [w for s in result["segments"] for w in s["words"]]
    spans = [(first - 0.5, first + len(speech) / SAMPLE_RATE + 0.5), (second - 0.5, second + len(speech) / SAMPLE_RATE + 0.5)]
    assert all(any(a <= w["start"] and w["end"] <= b for a, b in spans) for w in words)  # times are the recording's
    assert all(isinstance(w["start"], float) for w in words)
    noise = pipe(rng.normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32), sampling_rate=SAMPLE_RATE, vad_filter=True)
    assert noise == {"text": "", "segments": [], "language": "en"}
    with pytest.raises(InputError, match="vad_filter: expected True or False"):
        pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter="yes")
    with pytest.raises(InputError, match=r"vad threshold: expected a number in \(0, 1\)"):
        pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=True, vad_options={"threshold": 2})
    with pytest.raises(InputError, match="vad_options: expected fields of VadOptions"):
        pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=True, vad_options={"loudness": 2})
    with pytest.raises(InputError, match=r"vad max_speech_duration_s: expected a number of seconds > 1, found 0"):
        pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=True, vad_options={"max_speech_duration_s": 0})


def _openai_with_alignment_heads(model):
    twin = openai_twin(model)
    mask = torch.zeros(model.config.n_text_layer, model.config.n_text_head, dtype=torch.bool)
    for layer, head in model.alignment_heads:
        mask[layer, head] = True
    twin.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return twin


def test_word_timestamps_equal_openai_whispers(long_speech, tiny_en):
    """Over two windows, ours and openai-whisper's word_timestamps=True on the same weights: at least
    95 % of openai-whisper's words found with the same text, start and end within 0.1 s (the words
    are matched in order, so a near-tie decoded differently costs only its own words)."""
    import difflib

    model, tokenizer = tiny_en
    audio = load_audio(long_speech)
    got = longform.transcribe(model, tokenizer, audio, sampling_rate=SAMPLE_RATE, beam_size=5, word_timestamps=True)
    want = whisper.transcribe(_openai_with_alignment_heads(model), audio, fp16=False, beam_size=5, best_of=5,
                              word_timestamps=True)
    ours = [w for s in got["segments"] for w in s["words"]]
    theirs = [w for s in want["segments"] for w in s["words"]]
    assert len(theirs) > 60 and {"word", "start", "end", "probability"} == set(ours[0])
    matcher = difflib.SequenceMatcher(a=[w["word"] for w in ours], b=[w["word"] for w in theirs], autojunk=False)
    close = sum(abs(ours[i + k]["start"] - theirs[j + k]["start"]) <= 0.1 and abs(ours[i + k]["end"] - theirs[j + k]["end"]) <= 0.1
                for i, j, n in matcher.get_matching_blocks() for k in range(n))
    assert close >= 0.95 * len(theirs), (close, len(theirs))
    assert all(0 <= w["probability"] <= 1 and w["start"] <= w["end"] for w in ours)
    assert all(a["start"] <= b["start"] for a, b in zip(ours, ours[1:]))  # in order
    for segment in got["segments"]:  # a segment spans its words
        if segment["words"]:
            assert segment["start"] == segment["words"][0]["start"] and segment["end"] == segment["words"][-1]["end"]


def test_dtw_and_median_filter_match_plain_definitions():
    from multimodal.generation import word_timing

    rng = np.random.default_rng(0)
    for n, m in ((1, 1), (1, 5), (4, 1), (5, 9), (12, 40)):
        cost = rng.integers(0, 4, (n, m)).astype(np.float64)  # small integers: many ties
        total = np.full((n + 1, m + 1), np.inf)
        total[0, 0] = 0
        trace = np.zeros((n + 1, m + 1), int)
        for j in range(1, m + 1):
            for i in range(1, n + 1):
                c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
                c, t = (c0, 0) if c0 < c1 and c0 < c2 else (c1, 1) if c1 < c0 and c1 < c2 else (c2, 2)
                total[i, j], trace[i, j] = cost[i - 1, j - 1] + c, t
        rows, cols = word_timing.dtw_path(cost)
        assert (rows[0], cols[0]) == (0, 0) and (rows[-1], cols[-1]) == (n - 1, m - 1)
        assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0) and np.all(np.diff(rows) + np.diff(cols) >= 1)
        assert cost[rows, cols].sum() == total[n, m]
    x = torch.tensor(rng.normal(size=(2, 3, 20)), dtype=torch.float32)
    got = word_timing.median_filter(x, 7)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3)), mode="reflect")
    want = np.median(np.lib.stride_tricks.sliding_window_view(padded, 7, axis=-1), axis=-1)
    assert np.allclose(got.numpy(), want) and torch.equal(word_timing.median_filter(x[..., :3], 7), x[..., :3])


def test_words_are_split_and_punctuation_merged(tiny_en):
    from multimodal.generation.word_timing import WordTiming, merge_punctuations, split_to_words

    _, tokenizer = tiny_en
    tokens = tokenizer.encode(' "Hello," she said, (quietly) — naïve café.')
    words, groups = split_to_words(tokenizer, tokens + [tokenizer.eot])
    assert "".join(words[:-1]) == ' "Hello," she said, (quietly) — naïve café.' and sum(map(len, groups)) == len(tokens) + 1
    assert words[-1] == "<|special|>" and all(w.startswith(" ") or w in '",.()' or w == "Hello" for w in words[:-1])
    alignment = [WordTiming(w, g) for w, g in zip(words[:-1], groups[:-1])]
    merge_punctuations(alignment)
    assert [a.word for a in alignment if a.word] == [' "Hello,"', " she", " said,", " (quietly)", " —", " naïve", " café."]
    assert sum(len(a.tokens) for a in alignment) == len(tokens)


def test_word_timed_subtitles_and_the_command(short_speech, pipe, tmp_path, capsys):
    result = pipe(str(short_speech), beam_size=1, return_timestamps="word")
    words = [w for s in result["segments"] for w in s["words"]]
    assert "".join(w["word"] for w in words).strip() == result["text"].strip()
    cues = asr.format_result(result, "srt", words="cues")
    assert cues.count(" --> ") == len(words) and "lazy" in cues
    highlighted = asr.format_result(result, "vtt", words="highlight")
    assert highlighted.count(" --> ") == len(words) and highlighted.count("<u>") == len(words)
    assert "<u>quick</u>" in highlighted.replace("<u>Quick</u>", "<u>quick</u>")
    with pytest.raises(InputError, match="words: expected a result with word timestamps"):
        asr.format_result(pipe(str(short_speech), beam_size=1), "srt", words="cues")
    with pytest.raises(InputError, match="return_timestamps: expected True, False or 'word'"):
        pipe(str(short_speech), return_timestamps="words")
    parser = argparse.ArgumentParser()
    transcribe_command.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args([str(short_speech), "--beam-size", "1", "--output-dir", str(out), "--device", "cpu",
                              "--word-timestamps", "--word-cues"])
    assert transcribe_command.run(args) == 0
    saved = json.loads((out / "fox.json").read_text())
    assert all("words" in s for s in saved["segments"])
    assert (out / "fox.srt").read_text().count(" --> ") == len([w for s in saved["segments"] for w in s["words"]])
    quantized = parser.parse_args([str(short_speech), "--beam-size", "1", "--output-dir", str(tmp_path / "q"),
                                   "--quantize", "int8", "--format", "txt"])
    assert transcribe_command.run(quantized) == 0 and "lazy" in (tmp_path / "q" / "fox.txt").read_text().lower()
    with pytest.raises(InputError, match="--highlight-words: expected --word-timestamps"):
        transcribe_command.run(parser.parse_args([str(short_speech), "--highlight-words", "--output-dir", str(out)]))


@pytest.mark.numerics
@needs_espeak
def test_beam_search_transcription_equals_openai_whisper(short_speech, tiny_en):
    model, tokenizer = tiny_en
    audio = load_audio(short_speech)
    got = longform.transcribe(model, tokenizer, audio, sampling_rate=SAMPLE_RATE, beam_size=5, patience=2.0,
                         initial_prompt="Animals and letters.")
    want = whisper.transcribe(openai_twin(model), audio, fp16=False, beam_size=5, best_of=5, patience=2.0,
                              initial_prompt="Animals and letters.")
    assert word_errors(want["text"], got["text"]) <= 1, (want["text"], got["text"])
    assert len(got["segments"]) == len(want["segments"])
    for g, w in zip(got["segments"], want["segments"]):
        assert g["start"] == pytest.approx(w["start"], abs=0.5) and g["end"] == pytest.approx(w["end"], abs=0.5)
    assert "fox" in got["text"].lower() and "dog" in got["text"].lower()


# ---------------------------------------------------------------------------- silence and noise
@pytest.mark.numerics
def test_silence_and_noise_give_no_text(pipe):
    rng = np.random.default_rng(0)
    silence = np.zeros(SAMPLE_RATE * 35, np.float32)
    noise = (rng.standard_normal(SAMPLE_RATE * 35) * 0.001).astype(np.float32)  # -60 dBFS white noise
    results = pipe([silence, noise], sampling_rate=SAMPLE_RATE)
    assert [r["text"] for r in results] == ["", ""]
    # Without the level gate tiny.en writes ". . ." into that noise (and openai-whisper keeps it):
    # a segment without a word is blanked.
    result = pipe(noise, sampling_rate=SAMPLE_RATE, silence_threshold_db=None, temperature=0.0)
    assert result["text"] == "" and result["segments"] and all(s["text"] == "" for s in result["segments"])


# ----------------------------------------------------------------------------- a two-hour file
def _peak_rss_reset() -> int | None:
    """Reset the kernel's peak-RSS mark (Linux: clear_refs 5) and return the current RSS in bytes,
    or None where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmRSS")
    except OSError:
        return None


def _status_bytes(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


@needs_espeak
def test_a_two_hour_file_transcribes_in_flat_memory(pipe, tmp_path, monkeypatch):
    """Two hours of audio, silent but for a sentence at the start and one 2 minutes before the end,
    written chunk by chunk (FLAC: the silence costs no disk). Both sentences come back at their
    times, the silent windows are skipped by the level gate without decoding, and the peak memory
    stays far below the 460 MB that two hours of float32 samples would take."""
    first = load_audio(speak("Good morning, this is the first sentence of a very long recording.", tmp_path / "a.wav"))
    last = load_audio(speak("And this is the last thing said, near the end of the second hour.", tmp_path / "b.wav"))
    total, last_at = 2 * 3600 * SAMPLE_RATE, (2 * 3600 - 125) * SAMPLE_RATE
    path = tmp_path / "two-hours.flac"
    step = 60 * SAMPLE_RATE
    with sf.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16") as f:
        for start in range(0, total, step):
            block = np.zeros(step, np.float32)
            for clip, at in ((first, 0), (last, last_at)):
                lo, hi = max(at, start), min(at + len(clip), start + step)
                if lo < hi:
                    block[lo - start:hi - start] = clip[lo - at:hi - at]
            f.write(block)
    assert sf.info(path).duration == 7200.0

    decoded = []
    original = longform.decode
    monkeypatch.setattr(longform, "decode", lambda *a, **k: decoded.append(1) or original(*a, **k))
    baseline = _peak_rss_reset()
    began = time.perf_counter()
    result = pipe(str(path), beam_size=5)
    seconds = time.perf_counter() - began
    growth = _status_bytes("VmHWM") - baseline if baseline is not None else None

    text = result["text"].lower()
    assert "first sentence" in text and "long recording" in text and "last thing said" in text
    spoken = [s for s in result["segments"] if s["text"].strip()]
    assert spoken[0]["start"] < 1.0 and "first" in spoken[0]["text"].lower()
    assert abs(spoken[-1]["start"] - last_at / SAMPLE_RATE) < 31 and "second hour" in spoken[-1]["text"].lower()
    assert len(decoded) <= 4  # the windows with speech (and their fallbacks), not 240 windows
    if growth is not None:
        assert growth < 200e6, f"peak memory grew by {growth / 1e6:.0f} MB"
    print(f"two hours transcribed in {seconds:.1f} s; peak memory growth "
          f"{'n/a' if growth is None else f'{growth / 1e6:.0f} MB'}", file=sys.stderr)


# ------------------------------------------------------------------------------------ batching
def _recording_batches(monkeypatch) -> list[int]:
    """Records the number of windows of every decode() call."""
    sizes, original = [], longform.decode
    monkeypatch.setattr(longform, "decode", lambda model, tok, mel, *a, **k: sizes.append(mel.shape[0]) or
                        original(model, tok, mel, *a, **k))
    return sizes


@needs_espeak
def test_a_batch_of_files_equals_one_by_one(tiny_en, tmp_path, monkeypatch):
    """Three files side by side: one decode call per window round, the text of each file as decoded
    alone; a fourth waits for a free place; an empty list is an empty answer."""
    model, tokenizer = tiny_en
    texts = ["The quick brown fox jumps over the lazy dog.", "Please remember to buy milk, bread and eggs.",
             "The meeting has been moved to Thursday afternoon.", "Trains leave the station every fifteen minutes."]
    files = [speak(t, tmp_path / f"{i}.wav") for i, t in enumerate(texts)]
    alone = [longform.transcribe(model, tokenizer, f, beam_size=5) for f in files]
    sizes = _recording_batches(monkeypatch)
    batched = longform.transcribe_batch(model, tokenizer, files, batch_size=3, beam_size=5)
    assert [r["text"] for r in batched] == [r["text"] for r in alone]
    assert [[s["start"], s["end"]] for r in batched for s in r["segments"]] == \
        [[s["start"], s["end"]] for r in alone for s in r["segments"]]
    assert sizes[0] == 3 and sum(sizes) >= 4  # the first round decodes three windows in one call
    assert longform.transcribe_batch(model, tokenizer, [], batch_size=3) == []


@needs_espeak
def test_a_batch_of_long_files_follows_each_files_windows(tiny_en, long_speech, short_speech, monkeypatch):
    """A 32-s file (two windows, the second where the first's last timestamp fell) beside a short
    one and the same long one: without conditioning on previous text every round is one batch, and
    each file's text is its one-by-one text."""
    model, tokenizer = tiny_en
    options = dict(beam_size=5, condition_on_previous_text=False)
    alone = [longform.transcribe(model, tokenizer, f, **options) for f in (long_speech, short_speech)]
    sizes = _recording_batches(monkeypatch)
    batched = longform.transcribe_batch(model, tokenizer, [long_speech, short_speech, long_speech], batch_size=4,
                                        **options)
    assert [r["text"] for r in batched] == [alone[0]["text"], alone[1]["text"], alone[0]["text"]]
    assert sizes[:2] == [3, 2]  # round 1: all three; round 2: the two long files' second windows


@needs_espeak
def test_the_speech_regions_of_one_file_decode_as_a_batch(pipe, tmp_path, monkeypatch):
    """With VAD, one recording's speech regions are transcribed side by side in pieces of up to 30 s
    of speech: the same text as the same pieces one at a time, times on the recording."""
    sentences = [s.strip() + "." for s in SENTENCES.split(".") if s.strip()]
    spoken = [load_audio(speak(s, tmp_path / f"{i}.wav")) for i, s in enumerate(sentences)]
    rng = np.random.default_rng(0)
    quiet = lambda seconds: (rng.normal(0, 0.003, int(seconds * SAMPLE_RATE))).astype(np.float32)  # noqa: E731
    audio = np.concatenate([part for p in spoken for part in (quiet(3), p)])
    ends = np.cumsum([3 * SAMPLE_RATE + len(p) for p in spoken]) / SAMPLE_RATE
    spans = [(end - len(p) / SAMPLE_RATE - 0.6, end + 0.6) for end, p in zip(ends, spoken)]
    one = pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=True, batch_size=1)
    sizes = _recording_batches(monkeypatch)
    many = pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=True, batch_size=8)
    assert many["text"] == one["text"]
    assert all(w in many["text"].lower() for w in ("breeze", "milk", "thursday", "library", "trains"))
    assert max(sizes) >= 2  # pieces shared a decode call
    assert [s["id"] for s in many["segments"]] == list(range(len(many["segments"])))
    assert all(any(a <= s["start"] <= b for a, b in spans) for s in many["segments"] if s["text"].strip())


# ------------------------------------------------------------------------------------ pipeline
def test_the_factory_builds_the_default_model_on_first_use(monkeypatch, tmp_path, short_speech):
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    p = multimodal.pipeline("automatic-speech-recognition", device="cpu")
    assert isinstance(p, asr.SpeechRecognitionPipeline)
    assert (tmp_path / "cache" / "checkpoints" / "whisper-tiny.en" / "model.safetensors").is_file()
    buffer = io.StringIO()
    p.set_progress_bar_config(file=buffer, mininterval=0)
    result = p(str(short_speech), beam_size=1)
    assert {"quick", "lazy", "dog"} <= set(re.findall(r"[a-z]+", result["text"].lower()))
    assert result["language"] == "en" and result["segments"][0]["start"] == 0.0
    bar = buffer.getvalue()  # a bar over the seconds of audio, run to its end
    assert "transcribing" in bar and re.search(r"\b(\d+\.\d+)/\1\b", bar)


@needs_espeak
def test_every_kind_of_input_gives_the_same_text(pipe, short_speech):
    audio = load_audio(short_speech)
    data = short_speech.read_bytes()
    inputs = [short_speech, data, {"array": audio, "sampling_rate": SAMPLE_RATE}, torch.from_numpy(audio)]
    results = [pipe(x, beam_size=1, sampling_rate=SAMPLE_RATE if isinstance(x, torch.Tensor) else None)
               for x in inputs]
    assert len({r["text"] for r in results}) == 1
    without = pipe(short_speech, beam_size=1, return_timestamps=False)
    assert len(without["segments"]) == 1 and "lazy dog" in without["text"].lower()


@pytest.mark.numerics
@needs_espeak
def test_int8_quantization_keeps_the_float32_transcript(short_speech):
    """``quantize="int8"``: int8 weights in the attention projections, the MLPs (but the encoder's
    down-projections) and the output embedding. On a short clear clip the words are float32's but
    for at most one near-tie (tiny.en hears "round" or "brown" for "brown" by a logit margin under
    1, which kernels of different CPUs tip either way), and the segment spans the same speech."""
    fp32 = multimodal.pipeline("automatic-speech-recognition", device="cpu")
    int8 = multimodal.pipeline("automatic-speech-recognition", device="cpu", quantize="int8")
    assert int8.model.is_quantized and not fp32.model.is_quantized
    for p in (fp32, int8):
        p.set_progress_bar_config(disable=True)
    want, got = fp32(str(short_speech)), int8(str(short_speech))
    norm = normaliser()
    errors = wer([norm(want["text"])], [norm(got["text"])])[1]
    assert errors <= 1, (want["text"], got["text"])
    assert {"quick", "fox", "lazy", "dog"} <= set(norm(got["text"]).split())
    assert len(got["segments"]) == len(want["segments"]) == 1
    assert got["segments"][0]["start"] == want["segments"][0]["start"] == 0.0
    assert got["segments"][0]["end"] == pytest.approx(want["segments"][0]["end"], abs=0.5)
    linears = [m for m in int8.model.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    # encoder qkv/out/fc1, decoder qkv/out/cross q/kv/out/fc1/fc2, output
    assert len(linears) == 4 * 3 + 4 * 7 + 1
    with pytest.raises(InputError, match="expected a float model to save"):
        int8.model.save_pretrained(Path("never-written"))


def test_bad_quantize_option():
    with pytest.raises(InputError, match="quantize: expected one of None, 'int8', found 'int4'"):
        multimodal.pipeline("automatic-speech-recognition", device="cpu", quantize="int4")
    with pytest.raises(InputError, match="quantize: expected device 'cpu'"):
        multimodal.pipeline("automatic-speech-recognition", device="cuda", quantize="int8")


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam_size=0), "beam_size: expected None or an integer >= 1"),
    (dict(best_of=-2), "best_of: expected None or an integer >= 1"),
    (dict(temperature="hot"), "temperature: expected a number or a non-empty sequence"),
    (dict(temperature=()), "temperature: expected a number or a non-empty sequence"),
    (dict(temperature=(0.0, -0.5)), "temperature: expected a number in"),
    (dict(language="de"), "language: expected None or 'en' for an English-only model"),
    (dict(task="translate"), "task: expected 'transcribe' for an English-only model"),
    (dict(task="summarize"), "task: expected one of transcribe, translate"),
    (dict(initial_prompt=5), "initial_prompt: expected None or text"),
    (dict(condition_on_previous_text="yes"), "condition_on_previous_text: expected True or False"),
    (dict(no_speech_threshold=float("nan")), "no_speech_threshold: expected None or a finite number"),
    (dict(length_penalty=3), "length_penalty: expected None or a number in"),
    (dict(batch_size=0), r"batch_size: expected None or an integer in \[1, 32\]"),
    (dict(batch_size=-1), r"batch_size: expected None or an integer in \[1, 32\]"),
    (dict(batch_size=33), r"batch_size: expected None or an integer in \[1, 32\]"),
    (dict(batch_size=2.0), r"batch_size: expected None or an integer in \[1, 32\]"),
    (dict(batch_size=True), r"batch_size: expected None or an integer in \[1, 32\]"),
])
def test_bad_options_are_input_errors(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe(np.zeros(1600, np.float32), sampling_rate=SAMPLE_RATE, **kwargs)


def test_bad_audio_is_an_input_error(pipe, tmp_path):
    cases = [
        ((str(tmp_path / "missing.wav"),), {}, "audio: expected an audio file, found .*does not exist"),
        ((np.zeros(1600, np.float32),), {}, "sampling_rate: expected the rate of the samples in audio"),
        ((np.zeros(0, np.float32),), dict(sampling_rate=16000), "audio: expected at least one sample"),
        ((12,), {}, "audio: expected a path, bytes, an array with sampling_rate"),
        (([],), {}, "audio: expected an audio input or a non-empty list"),
        (([np.zeros(10, np.float32), 3],), dict(sampling_rate=16000), r"audio\[1\]: expected a path"),
        ((b"not audio at all",), {}, "expected an audio file"),
        ((np.full(1600, np.nan, np.float32),), dict(sampling_rate=16000), "expected finite samples"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            pipe(*args, **kwargs)


# ------------------------------------------------------------------------------------- writers
RESULT = {"text": " Hello there. Second line --> ok", "language": "en", "segments": [
    {"id": 0, "start": 0.0, "end": 2.5, "text": " Hello there."},
    {"id": 1, "start": 2.5, "end": 3.0, "text": ""},
    {"id": 2, "start": 3661.25, "end": 3663.999, "text": " Second line --> ok"}]}


def _seconds(stamp: str, marker: str) -> float:
    match = re.fullmatch(rf"(\d\d):([0-5]\d):([0-5]\d){re.escape(marker)}(\d{{3}})", stamp)
    assert match, stamp
    h, m, s, ms = map(int, match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def _parse_cues(text: str, marker: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        timing = next(i for i, line in enumerate(lines) if "-->" in line)
        start, end = lines[timing].split(" --> ")
        cues.append((_seconds(start, marker), _seconds(end, marker), "\n".join(lines[timing + 1:])))
    return cues


def test_srt_and_vtt_are_valid_and_round_trip(tmp_path):
    srt = asr.write_result(RESULT, tmp_path / "a.srt").read_text()
    vtt = asr.write_result(RESULT, tmp_path / "a.vtt", "vtt").read_text()
    want = [(0.0, 2.5, "Hello there."), (3661.25, 3663.999, "Second line -> ok")]
    assert _parse_cues(srt, ",") == want
    blocks = srt.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["1", "2"]  # numbered from 1
    assert vtt.startswith("WEBVTT\n\n")
    assert _parse_cues(vtt[len("WEBVTT\n\n"):], ".") == want
    assert "01:01:01,250 --> 01:01:03,999" in srt and "01:01:01.250 --> 01:01:03.999" in vtt


def test_txt_and_json(tmp_path):
    assert asr.write_result(RESULT, tmp_path / "a.txt").read_text() == "Hello there.\nSecond line --> ok\n"
    assert json.loads(asr.write_result(RESULT, tmp_path / "a.json").read_text()) == RESULT


def test_a_bad_format_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "a.srt"
    path.write_text("old")
    with pytest.raises(InputError, match="format: expected one of txt, srt, vtt, json, found 'docx'"):
        asr.write_result(RESULT, path, "docx")
    with pytest.raises(InputError, match="result: expected a transcription dict"):
        asr.write_result({"segments": [{"text": 1}]}, path, "srt")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.srt"]


def test_format_timestamp():
    assert asr.format_timestamp(0) == "00:00:00.000"
    assert asr.format_timestamp(59.9996, ",") == "00:01:00,000"
    assert asr.format_timestamp(36000 + 0.001) == "10:00:00.001"


# --------------------------------------------------------------------------------- CLI and app
def test_cli_writes_every_format(short_speech, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    transcribe_command.add_arguments(parser)
    args = parser.parse_args([str(short_speech), "--beam-size", "1", "--output-dir", str(tmp_path / "out"),
                              "--device", "cpu"])
    assert transcribe_command.run(args) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["fox.json", "fox.srt", "fox.txt", "fox.vtt"]
    assert "lazy dog" in capsys.readouterr().out.lower()
    cues = _parse_cues((tmp_path / "out" / "fox.srt").read_text(), ",")
    assert cues and cues[0][0] == 0.0 and "lazy dog" in cues[0][2].lower()
    bad = parser.parse_args([str(tmp_path / "nope.wav"), "--output-dir", str(tmp_path / "out2")])
    with pytest.raises(InputError, match="does not exist"):
        transcribe_command.run(bad)
    assert not (tmp_path / "out2").exists()


def test_cli_batch_size(short_speech, tmp_path, capsys):
    """--batch-size transcribes the files side by side into the same outputs; a bad one is refused
    before any work."""
    parser = argparse.ArgumentParser()
    transcribe_command.add_arguments(parser)
    other = speak("Please remember to buy milk, bread and eggs.", tmp_path / "milk.wav")

    def run(out, *extra):
        return transcribe_command.run(parser.parse_args([str(short_speech), str(other), "--beam-size", "1",
                                                         "--format", "txt", "--output-dir", str(out),
                                                         "--device", "cpu", *extra]))

    assert run(tmp_path / "one") == 0 and run(tmp_path / "two", "--batch-size", "2") == 0
    for name in ("fox.txt", "milk.txt"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    assert "milk" in (tmp_path / "two" / "milk.txt").read_text().lower()
    with pytest.raises(InputError, match=r"batch_size: expected None or an integer in \[1, 32\], found 0"):
        run(tmp_path / "three", "--batch-size", "0")
    assert not (tmp_path / "three").exists()


def test_cli_checks_every_input_and_output_before_any_work(short_speech, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    transcribe_command.add_arguments(parser)
    out = tmp_path / "out"

    def run(*argv):
        return transcribe_command.run(parser.parse_args([*map(str, argv), "--beam-size", "1", "--device", "cpu"]))

    nan = np.zeros(3 * SAMPLE_RATE, np.float32)
    nan[2 * SAMPLE_RATE] = np.nan
    sf.write(tmp_path / "damaged.wav", nan, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InputError, match=r"damaged.wav: expected finite samples, found .* at 2.000 s"):
        run(short_speech, tmp_path / "damaged.wav", "--output-dir", out)  # the first file is good
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError, match="two inputs writing"):
        (tmp_path / "other").mkdir()
        run(short_speech, shutil.copy(short_speech, tmp_path / "other"), "--output-dir", out)
    with pytest.raises(InputError, match="--output-dir: expected a folder this user can write, found /proc/x"):
        run(short_speech, "--output-dir", "/proc/x")
    assert run(short_speech, "--output-dir", out, "--format", "txt") == 0
    (out / "fox.txt").write_text("mine")
    with pytest.raises(InputError, match=r"fox.txt already exists; pass --overwrite"):
        run(short_speech, "--output-dir", out, "--format", "txt")
    assert (out / "fox.txt").read_text() == "mine"
    assert run(short_speech, "--output-dir", out, "--format", "txt", "--overwrite") == 0
    assert "lazy dog" in (out / "fox.txt").read_text().lower()
    with pytest.raises(InputError, match="--seed: expected an integer from 0|seed: expected an integer from 0"):
        run(short_speech, "--output-dir", tmp_path / "s", "--seed", str(2 ** 64))


def test_the_sampling_fallback_is_seeded(pipe, short_speech):
    """Sampling at temperature 1 (what the fallback does): the same seed gives the same text."""
    options = dict(temperature=1.0, best_of=2, beam_size=None, condition_on_previous_text=False)
    texts = {pipe(str(short_speech), **options)["text"] for _ in range(2)}
    assert len(texts) == 1
    assert pipe(str(short_speech), seed=7, **options)["text"] == pipe(str(short_speech), seed=7, **options)["text"]
    with pytest.raises(InputError, match=r"seed: expected an integer from 0 to 2\*\*64 - 1, found -1"):
        pipe(str(short_speech), seed=-1)


def test_app_handler_returns_text_segments_and_srt(pipe, short_speech, tmp_path, monkeypatch):
    monkeypatch.setitem(app_common._APP_PIPELINES, ("automatic-speech-recognition", None), pipe)
    text, rows, words, srt = transcribe_tab.transcribe_audio_file(str(short_speech), 1, out_dir=str(tmp_path))
    assert "lazy dog" in text.lower() and rows and rows[0][0] == "00:00:00.000"
    assert " ".join(w[2] for w in words) == text and all(w[0] <= w[1] for w in words)
    assert srt.endswith("fox.srt") and "-->" in open(srt).read()
    with pytest.raises(InputError, match="audio: expected a recording or an uploaded file"):
        transcribe_tab.transcribe_audio_file(None, 5)


def test_the_tabs_examples_transcribe(pipe, tmp_path, monkeypatch):
    monkeypatch.setitem(app_common._APP_PIPELINES, ("automatic-speech-recognition", None), pipe)
    names = [Path(p).name for p in transcribe_tab.EXAMPLES]
    assert names == ["phone-number.flac", "quick-brown-fox.flac"]
    texts = [transcribe_tab.transcribe_audio_file(p, 1, out_dir=str(tmp_path))[0] for p in transcribe_tab.EXAMPLES]
    words = [normaliser()(t) for t in texts]
    assert "555 219 8604" in words[0] and "quick brown fox" in words[1]
    monkeypatch.setattr(transcribe_tab, "MAX_SECONDS", 1)
    with pytest.raises(InputError, match="quick-brown-fox.flac: expected at most 0 minutes of audio in the app"):
        transcribe_tab.transcribe_audio_file(transcribe_tab.EXAMPLES[1], 1, out_dir=str(tmp_path))


def test_the_tab_builds():
    import gradio as gr

    with gr.Blocks():
        transcribe_tab.transcribe_tab()
