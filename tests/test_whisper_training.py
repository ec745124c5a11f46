"""Whisper fine-tuning (``multimodal.training.whisper``) and transcript scoring
(``multimodal.data.speech_digits``), on generated clips and a tiny random Whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import DecisionMargins
from multimodal.convert.whisper import default_model_path
from multimodal.evaluation.wer import digit_word, normalize_words, word_edits, word_error_rate
from multimodal.errors import InputError
from multimodal.models.whisper import Whisper, WhisperConfig
from multimodal.tokenizers.whisper_text import WhisperTokenizer
from multimodal.training import TrainConfig, Trainer
from multimodal.training.whisper import (IGNORE, WhisperClips, collate, encoder_features, loss_fn, read_manifest,
                                         target_tokens, transcribe_features)

TEXTS = ("Five.", "Hello there.", "Nine.")


@pytest.fixture(scope="module")
def tokenizer() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(default_model_path() / "tokenizer.json")


def tiny_whisper(seed: int = 0) -> Whisper:
    torch.manual_seed(seed)
    return Whisper(WhisperConfig(n_audio_state=32, n_audio_head=2, n_audio_layer=1, n_vocab=51864, n_text_ctx=32,
                                 n_text_state=64, n_text_head=2, n_text_layer=1))


def write_clips(folder, texts=TEXTS) -> list[dict]:
    """One 16 kHz wav per text: a tone, noise, a two-tone chord (different lengths), long enough to fill
    most of the 30-s window, so that even a random frozen encoder tells them apart."""
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(texts):
        t = np.arange(16000 * (25 + i)) / 16000
        audio = [np.sin(2 * np.pi * 440 * t), rng.standard_normal(len(t)),
                 np.sin(2 * np.pi * 150 * t) + np.sin(2 * np.pi * 2500 * t)][i % 3]
        path = folder / f"clip{i}.wav"
        sf.write(path, (0.3 * audio / np.abs(audio).max()).astype(np.float32), 16000)
        rows.append({"audio": path.name, "text": text})
    return rows


def write_manifest(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


# ------------------------------------------------------------------------------------ scoring
def test_transcripts_are_normalised_before_scoring():
    assert normalize_words(" Five.") == normalize_words("five") == normalize_words("5") == ["five"]
    assert digit_word("Nine!") == "nine" and digit_word("Five five.") is None and digit_word("to") is None
    assert word_edits("The cat sat.", "the cat, sat on") == (1, 3)
    assert word_error_rate(["a b c d", "e f"], ["a x c d", "e f"]) == pytest.approx(1 / 6)


# ---------------------------------------------------------------------------------- manifests
def test_manifest_reads_relative_paths(tmp_path):
    write_manifest(tmp_path / "m.jsonl", write_clips(tmp_path) + [""])
    entries = read_manifest(tmp_path / "m.jsonl")
    assert [e.text for e in entries] == list(TEXTS)
    assert entries[1].audio == tmp_path / "clip1.wav" and entries[1].line == 2


@pytest.mark.parametrize("bad, message", [
    ({"audio": "missing.wav", "text": "Five."}, "no file"),
    ({"text": "Five."}, "no audio"),
    ({"audio": "clip0.wav"}, "no text"),
    ({"audio": "clip0.wav", "text": "  "}, "non-empty"),
    ("not json", "invalid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_bad_manifest_lines_are_named(tmp_path, bad, message):
    rows = write_clips(tmp_path)
    write_manifest(tmp_path / "m.jsonl", [rows[0], rows[1], bad])
    with pytest.raises(InputError, match=message) as error:
        read_manifest(tmp_path / "m.jsonl")
    assert "m.jsonl:3" in str(error.value)


def test_missing_or_empty_manifest(tmp_path):
    with pytest.raises(InputError, match="nothing"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="at least one entry"):
        read_manifest(tmp_path / "empty.jsonl")


# ------------------------------------------------------------------------------------- targets
def test_prompt_is_masked_from_the_loss(tokenizer):
    plain, p = target_tokens(tokenizer, "Five.")
    timed, q = target_tokens(tokenizer, "Five.", timestamps=True, duration=0.5)
    assert plain[:p] == [tokenizer.sot, tokenizer.no_timestamps] and plain[-1] == tokenizer.eot
    assert timed[:q] == [tokenizer.sot] and timed[q] == tokenizer.timestamp_token(0.0)
    assert timed[-2] == tokenizer.timestamp_token(0.5)
    batch = [(torch.zeros(1), plain, p), (torch.zeros(1), timed, q)]
    _, inputs, targets = collate(batch)
    # Row 0: the first target would be <|notimestamps|>, a prompt token: ignored; the rest are the text + EOT.
    assert targets[0, 0] == IGNORE and targets[0, 1:len(plain) - 1].tolist() == plain[2:]
    assert (targets[0, len(plain) - 1:] == IGNORE).all()  # padding
    assert targets[1, :len(timed) - 1].tolist() == timed[1:]
    assert inputs[1, :len(timed) - 1].tolist() == timed[:-1]

    # Changing the logits at masked positions leaves the loss unchanged.
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.config = WhisperConfig(n_audio_ctx=1, n_audio_state=4, n_audio_head=1)
            self.out = logits

        def __call__(self, audio, tokens):
            return self.out

        def logits(self, tokens, audio):
            return self.out

    logits = torch.randn(2, inputs.shape[1], 51864)
    base = loss_fn(Fixed(logits), (torch.zeros(2, 1, 4), inputs, targets))[0]
    changed = logits.clone()
    changed[0, 0] += 100 * torch.randn(51864)
    assert torch.allclose(loss_fn(Fixed(changed), (torch.zeros(2, 1, 4), inputs, targets))[0], base)


# ------------------------------------------------------------------------------------ training
class Interrupted(Exception):
    pass


def train_tiny(tmp_path, tokenizer, max_steps, resume=False, out="run", stop_after=None, save_every=20, adapt=None):
    """Train a tiny Whisper's decoder on the generated clips; ``stop_after`` micro-steps, then
    raise ``Interrupted`` (a killed run). ``adapt(model)``: applied before training (LoRA adapters:
    then only what trains is checkpointed)."""
    rows = write_clips(tmp_path)
    write_manifest(tmp_path / "m.jsonl", rows)
    entries = read_manifest(tmp_path / "m.jsonl")
    model = tiny_whisper()
    model.encoder.requires_grad_(False)
    features, durations = encoder_features(model, entries, folder=tmp_path / "features", progress=False)
    if adapt is not None:
        adapt(model)
    data = WhisperClips(entries, tokenizer, features=features, durations=durations, timestamp_mix=True)
    config = TrainConfig(out_dir=str(tmp_path / out), max_steps=max_steps, batch_size=6, lr=1e-2, warmup_steps=5,
                         weight_decay=0.0, save_every=save_every, log_every=5)
    calls = []

    def loss(model, batch):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted
        calls.append(1)
        return loss_fn(model, batch)

    trainer = Trainer(model, config, loss, dataset=data, collate_fn=collate, resume=resume, progress=False,
                      trainable_only=adapt is not None)
    trainer.train()
    return model, trainer, features


@pytest.mark.numerics
def test_tiny_whisper_overfits_generated_clips(tmp_path, tokenizer, one_thread):
    model, trainer, features = train_tiny(tmp_path, tokenizer, max_steps=60)
    losses = [r["loss"] for r in trainer.history if r.get("kind") == "train"]
    assert losses[-1] < 0.1 < 0.01 * losses[0]
    model.eval()
    with DecisionMargins() as greedy:
        assert transcribe_features(model, tokenizer, features) == list(TEXTS)
    with DecisionMargins() as beams:
        assert transcribe_features(model, tokenizer, features, timestamps=True, beam_size=2) == list(TEXTS)
    # Learned, not lucky: every choice wins by a wide gap (about 6 nats greedy, 0.15 among the beams;
    # the kernels of another CPU move these by about 0.01), so no CPU's rounding changes a transcript.
    assert min(greedy.smallest(w) for w in range(3)) > 1.0
    assert min(beams.smallest(w) for w in range(3)) > 0.05


def test_resume_equals_an_uninterrupted_run(tmp_path, tokenizer, one_thread):
    straight, _, _ = train_tiny(tmp_path, tokenizer, max_steps=16, out="straight", save_every=8)
    with pytest.raises(Interrupted):
        train_tiny(tmp_path, tokenizer, max_steps=16, out="resumed", save_every=8, stop_after=11)
    resumed, _, _ = train_tiny(tmp_path, tokenizer, max_steps=16, out="resumed", save_every=8, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_encoder_features_continue_and_match_the_encoder(tmp_path, tokenizer):
    rows = write_clips(tmp_path)
    write_manifest(tmp_path / "m.jsonl", rows)
    entries = read_manifest(tmp_path / "m.jsonl")
    model = tiny_whisper()
    features, durations = encoder_features(model, entries, batch_size=2, folder=tmp_path / "f", progress=False)
    files = sorted((tmp_path / "f").glob("*.npy"))
    assert len(files) == 3
    assert durations.tolist() == pytest.approx([25, 26, 27])
    # A pass interrupted before the last clip was stored encodes that clip only.
    before = features[0:3]
    features.paths[2].unlink()
    stamps = {p: p.stat().st_mtime_ns for p in features.paths[:2]}
    again, _ = encoder_features(model, entries, batch_size=2, folder=tmp_path / "f", progress=False)
    assert {p: p.stat().st_mtime_ns for p in again.paths[:2]} == stamps
    np.testing.assert_array_equal(again[0:3], before)
    from multimodal.training.whisper import clip_mel, load_clip

    with torch.no_grad():
        direct = model.embed_audio(clip_mel(load_clip(entries[2]))[None])[0]
    torch.testing.assert_close(torch.from_numpy(np.asarray(features[2], np.float32)), direct, atol=2e-3, rtol=2e-3)


def test_clip_features_are_the_pipelines_window_and_fallback_decoding_is_the_pipelines(tmp_path, tokenizer, one_thread):
    """Training and benchmarks see a clip as the pipeline does: its log-mel frames, then zeros (not the
    log-mel of silence); decoding those features with ``fallback`` gives the pipeline's text."""
    from multimodal.generation.transcribe import Fallback, Recording, transcribe
    from multimodal.generation.whisper_decoding import DecodingOptions
    from multimodal.training.whisper import clip_mel, load_clip

    rng = np.random.default_rng(1)
    audio = (0.2 * np.sin(2 * np.pi * 300 * np.arange(20_050) / 16000) + 0.05 * rng.standard_normal(20_050))
    sf.write(tmp_path / "short.wav", audio.astype(np.float32), 16000)
    write_manifest(tmp_path / "m.jsonl", [{"audio": "short.wav", "text": "Five."}])
    entry = read_manifest(tmp_path / "m.jsonl")[0]
    model = tiny_whisper().eval()
    mel = clip_mel(load_clip(entry))
    window = Recording(model, tokenizer, str(entry.audio), None, DecodingOptions(), Fallback()).next_window()[0]
    torch.testing.assert_close(mel, window, atol=1e-6, rtol=0)
    content = 20_050 // 160
    assert mel.shape == (80, 3000) and bool((mel[:, content:] == 0).all()) and bool((mel[:, :content] != 0).any())
    with torch.no_grad():
        features = model.embed_audio(mel[None])
        ours = transcribe_features(model, tokenizer, features, beam_size=2, timestamps=True, fallback=True)
    theirs = transcribe(model, tokenizer, str(entry.audio), beam_size=2)["text"]
    assert ours[0].strip() == theirs.strip()


def test_evaluate_whisper_pipeline_decoding_scores_the_pipelines_text(tmp_path, tokenizer, one_thread, monkeypatch):
    """``multimodal evaluate whisper --pipeline`` scores exactly the text ``transcribe()`` gives each clip."""
    import argparse
    import shutil

    from multimodal.generation.transcribe import transcribe
    from multimodal.training.whisper import add_evaluate_whisper_arguments, run_evaluate_whisper, score

    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(2)
    rows = []
    for i, n in enumerate((12_000, 30_500)):
        sf.write(tmp_path / f"c{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        rows.append({"audio": f"c{i}.wav", "text": TEXTS[i]})
    write_manifest(tmp_path / "m.jsonl", rows)
    model = tiny_whisper(3).eval()
    model.save_pretrained(tmp_path / "model")
    shutil.copyfile(default_model_path() / "tokenizer.json", tmp_path / "model" / "tokenizer.json")
    parser = add_evaluate_whisper_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(tmp_path / "model"), "--manifest", str(tmp_path / "m.jsonl"), "--pipeline",
                              "--no-progress"])
    result = run_evaluate_whisper(args)
    texts = [transcribe(model, tokenizer, str(tmp_path / r["audio"]))["text"] for r in rows]
    assert result["decoding"] == dict(beam_size=5, timestamps=True, fallback=True)
    assert result["wer"] == score(TEXTS[:2], texts)["wer"] and result["exact"] == score(TEXTS[:2], texts)["exact"]
