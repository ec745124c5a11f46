"""Decoding one batch of 30-s windows: our greedy / sampling / beam search against openai-whisper's
own ``decode`` on the same tiny random model, the KV cache against full recomputation, the
timestamp grammar, and bad options."""

from __future__ import annotations

import os

import pytest
import torch
import whisper

from benchmarks.whisper_twins import openai_twin
from helpers import DecisionMargins
from multimodal.convert.whisper import default_model_path
from multimodal.errors import InputError
from multimodal.models.whisper import Whisper, WhisperConfig
from multimodal.generation.whisper_decoding import (ApplyTimestampRules, DecodingOptions, compression_ratio, decode,
                                                detect_language, suppressed_ids)
from multimodal.tokenizers.whisper_text import WhisperTokenizer

TINY = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2, n_vocab=51864,
            n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)


# ------------------------------------------------------------------------------- shared helpers
def random_whisper(tokenizer: WhisperTokenizer, seed: int = 0, gain: float = 2.0, **dims) -> Whisper:
    """A tiny Whisper whose random weights make decoding non-trivial: weights large enough that
    the output depends on the audio and the context (not one token repeated), and <|endoftext|>
    and the timestamps likely enough that sequences end and segments form. Larger weights (``gain``)
    make the model's float rounding, and so its differences from another implementation, grow
    faster than its decisions' margins: at gain 2 ours and openai-whisper's logits differ by up to
    about 2e-5 with AVX2 kernels, 20 times less than at gain 4."""
    torch.manual_seed(seed)
    model = Whisper(WhisperConfig(**{**TINY, **dims})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "token_embedding" in name or "pos_embed" in name:
                p.normal_(0, 1)
            elif p.ndim >= 2:
                p.normal_(0, gain / p.shape[-1] ** 0.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
            else:
                p.normal_(1, 0.1)
        for block in model.encoder.transformer.blocks:  # keys carry no bias in Whisper
            block.attn.qkv.bias[model.config.n_audio_state:2 * model.config.n_audio_state] = 0
        for block in model.decoder.transformer.blocks:
            block.attn.qkv.bias[model.config.n_text_state:2 * model.config.n_text_state] = 0
            block.cross_attn.kv.bias[:model.config.n_text_state] = 0
        embedding = model.decoder.token_embedding.weight
        embedding[tokenizer.eot] *= 4.0
        embedding[tokenizer.timestamp_begin:] *= 1.5
    return model


@pytest.fixture(scope="session")
def english_tokenizer() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(default_model_path() / "tokenizer.json")


@pytest.fixture(scope="module")
def tiny(english_tokenizer):
    model = random_whisper(english_tokenizer, seed=2)
    return model, openai_twin(model)


@pytest.fixture(scope="module")
def mels():
    return torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------- against openai-whisper
# A choice whose top two options are at least this far apart in log-probability is the same in every
# implementation: ours and openai-whisper's differ by up to about 5e-5 there (AVX2 kernels; nothing at
# all with AVX-512/AMX, where both run the same kernels on the same shapes).
CLEAR = 5e-4


def assert_same_decisions(got, want, margins: DecisionMargins, tokenizer, beams: bool) -> None:
    """``got`` equals ``want`` token for token as far as every choice was clear (``CLEAR``), and
    entirely (text, average log-probability) where all of them were; at least one window was
    clear throughout, and every greedy window for its first 32 tokens."""
    assert len(got) == len(want)
    whole = 0
    for window, (g, w) in enumerate(zip(got, want)):
        if beams:  # a near-tie anywhere changes which beams survive, so all or nothing
            clear = margins.all_clear(window, CLEAR)
            n = len(w.tokens) + 1 if clear else 0
        else:  # greedy: each token is its own choice; the last one chose <|endoftext|>
            n = margins.clear_steps(window, CLEAR)
            assert n >= min(len(w.tokens) + 1, 32), f"window {window}: a near-tie at token {n}"
        assert g.tokens[:n] == w.tokens[:n]
        if n > len(w.tokens) or n == len(margins.steps[window]):  # ended, or ran to sample_len
            whole += 1
            assert g.tokens == w.tokens
            # The random model writes special tokens (<|mk|> …) into its text, which openai-whisper
            # renders and ours leaves out: with those dropped, the texts agree.
            specials = [t for t in w.tokens if tokenizer.eot <= t < tokenizer.timestamp_begin]
            assert g.text == (w.text if not specials else tokenizer.decode(w.tokens).strip())
            assert g.avg_logprob == pytest.approx(w.avg_logprob, abs=1e-4)
            assert g.compression_ratio == pytest.approx(compression_ratio(g.text))
        assert g.no_speech_prob == pytest.approx(w.no_speech_prob, abs=1e-6)
    assert whole >= 1, "no window was decoded by clear choices throughout"


CASES = {
    "greedy": dict(),
    "greedy-text-only": dict(without_timestamps=True),
    "greedy-no-blank-rule": dict(suppress_blank=False),
    "greedy-prompt": dict(prompt=[1002, 2003, 50363 + 20, 3004]),
    "greedy-prompt-and-prefix": dict(prompt="earlier words", prefix="Now"),
    "greedy-max-initial-0.5s": dict(max_initial_timestamp=0.5),
    "beam5": dict(beam_size=5, patience=1.0),
    "beam5-patience2": dict(beam_size=5, patience=2.0),
    "beam5-length-penalty": dict(beam_size=5, length_penalty=0.6),
    "beam3-text-only": dict(beam_size=3, without_timestamps=True, sample_len=100),
}


@pytest.mark.numerics
@pytest.mark.parametrize("case", list(CASES))
def test_decode_equals_openai_whisper(case, tiny, mels, english_tokenizer):
    ours, theirs = tiny
    options = CASES[case]
    # openai-whisper's batched beam search pairs every window's beams with the first window's
    # audio (it broadcasts features of one window), so beams are compared one window at a time.
    batch = [mels[:1], mels[1:]] if "beam_size" in options else [mels]
    for mel in batch:
        with DecisionMargins() as margins:
            got = decode(ours, english_tokenizer, mel, DecodingOptions(**options))
        want = whisper.decode(theirs, mel, whisper.DecodingOptions(fp16=False, language="en", **options))
        assert len(got) == mel.shape[0]
        assert_same_decisions(got, want, margins, english_tokenizer, beams="beam_size" in options)


@pytest.mark.numerics
@pytest.mark.parametrize("case", ["greedy", "beam5"])
def test_windows_that_end_leave_the_batch_and_the_rest_decode_as_alone(case, tiny, english_tokenizer, monkeypatch):
    """A batch of windows: those whose search has ended leave it (the cache keeps the others' rows
    and audio), and every window decodes as it does alone (as far as its choices were clear)."""
    from multimodal.backbone import KVCache

    kept = []
    original = KVCache.keep
    monkeypatch.setattr(KVCache, "keep", lambda cache, rows, contexts: kept.append(len(contexts)) or
                        original(cache, rows, contexts))
    options = DecodingOptions(**CASES[case])
    mels = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(3))  # windows of 43, 36 and 1 tokens
    with DecisionMargins() as margins:
        together = decode(tiny[0], english_tokenizer, mels, options)
    assert kept and kept[0] < 3  # a window left while others went on
    alone = [decode(tiny[0], english_tokenizer, mels[i:i + 1], options)[0] for i in range(3)]
    assert len({len(r.tokens) for r in alone}) > 1
    assert_same_decisions(together, alone, margins, english_tokenizer, beams="beam_size" in CASES[case])


def test_the_random_model_makes_decoding_non_trivial(tiny, mels, english_tokenizer):
    """The comparisons above mean something: outputs differ by window, are varied, some end before
    the length limit, and carry timestamps."""
    results = decode(tiny[0], english_tokenizer, mels, DecodingOptions(beam_size=5))
    results += decode(tiny[0], english_tokenizer, mels, DecodingOptions())
    assert results[0].tokens != results[1].tokens
    assert all(len(set(r.tokens)) > 10 for r in results)
    assert any(len(r.tokens) < 224 for r in results)
    tb = english_tokenizer.timestamp_begin
    assert all(sum(t >= tb for t in r.tokens) >= 3 for r in results)  # a segment and more


@pytest.mark.numerics
def test_sampling_equals_openai_whisper_under_the_same_seed(tiny, mels, english_tokenizer):
    ours, theirs = tiny
    options = dict(temperature=0.7, best_of=3, sample_len=40)
    torch.manual_seed(7)
    got = decode(ours, english_tokenizer, mels[:1], DecodingOptions(**options))[0]
    torch.manual_seed(7)
    want = whisper.decode(theirs, mels[:1], whisper.DecodingOptions(fp16=False, language="en", **options))[0]
    assert got.tokens == want.tokens and got.temperature == 0.7


def test_sampling_with_a_generator_is_reproducible(tiny, mels, english_tokenizer):
    options = DecodingOptions(temperature=1.0, best_of=2, sample_len=40)
    runs = [decode(tiny[0], english_tokenizer, mels, options, generator=torch.Generator().manual_seed(s))
            for s in (3, 3, 4)]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert [r.tokens for r in runs[0]] != [r.tokens for r in runs[2]]


def test_features_in_equal_mel_in(tiny, mels, english_tokenizer):
    ours = tiny[0]
    with torch.no_grad():
        features = ours.embed_audio(mels)
    a = decode(ours, english_tokenizer, mels, DecodingOptions(beam_size=2, sample_len=30))
    b = decode(ours, english_tokenizer, features, DecodingOptions(beam_size=2, sample_len=30))
    assert [r.tokens for r in a] == [r.tokens for r in b]


@pytest.mark.numerics
def test_multilingual_language_detection_and_decoding_equal_openai_whisper():
    ml = WhisperTokenizer.from_tiktoken(os.path.join(os.path.dirname(whisper.__file__), "assets",
                                                     "multilingual.tiktoken"))
    ours = random_whisper(ml, seed=3, n_vocab=51865)
    theirs = openai_twin(ours)
    mel = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(5))
    codes, probs = detect_language(ours, ml, mel)
    _, want_probs = whisper.decoding.detect_language(theirs, mel)
    assert codes == [max(p, key=p.get) for p in want_probs]
    for got, want in zip(probs, want_probs):
        assert set(got) == set(want)
        assert max(abs(got[c] - want[c]) for c in got) < 1e-5
    with DecisionMargins() as margins:
        got = decode(ours, ml, mel, DecodingOptions(sample_len=60))
    want = whisper.decode(theirs, mel, whisper.DecodingOptions(fp16=False, sample_len=60))
    assert_same_decisions(got, want, margins, ml, beams=False)
    assert [g.language for g in got] == [w.language for w in want] == codes
    with DecisionMargins() as margins:
        got = decode(ours, ml, mel[:1], DecodingOptions(language="de", task="translate", sample_len=60))
    want = whisper.decode(theirs, mel[:1], whisper.DecodingOptions(fp16=False, language="de", task="translate",
                                                                   sample_len=60))
    assert_same_decisions(got, want, margins, ml, beams=False)
    assert got[0].language == "de"


# --------------------------------------------------------------------------------- the KV cache
def test_incremental_decoding_with_beam_reordering_equals_full_recompute(tiny, mels, english_tokenizer):
    """What decode does to the cache (initial tokens once per window, fan-out, one token per step,
    reorder without the cross-attention keys) gives the logits of recomputing every sequence."""
    model = tiny[0]
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        features = model.embed_audio(mels)  # [2, S, W]
        beams = 3
        prefix = torch.tensor([[english_tokenizer.sot]] * 2)
        cache = model.new_cache(2, 20)
        model.logits(prefix, features, cache=cache)
        fan_out = torch.arange(2).repeat_interleave(beams)
        cache.reorder(fan_out)
        sequences = prefix[fan_out]
        for step in range(6):
            new = torch.randint(0, 50000, (2 * beams, 1), generator=g)
            step_logits = model.logits(new, None, cache=cache)[:, -1]
            sequences = torch.cat([sequences, new], dim=1)
            full = model.logits(sequences, features[fan_out])[:, -1]
            # float32 rounding, relative to the logits' scale (the random weights make them large)
            torch.testing.assert_close(step_logits, full, atol=1e-4 * float(full.abs().max()), rtol=0)
            # each window's beams swap around, staying within the window
            order = torch.cat([torch.randperm(beams, generator=g) + w * beams for w in range(2)])
            cache.reorder(order, cross=False)
            sequences = sequences[order]


# ------------------------------------------------------------------------------ timestamp rules
def _check_timestamp_grammar(tokens: list[int], tb: int, eot: int, max_initial: int) -> None:
    assert tokens and tb <= tokens[0] <= tb + max_initial  # a timestamp first, and an early one
    stamps = [t for t in tokens if t >= tb]
    assert stamps == sorted(stamps)  # never backwards
    is_ts = [t >= tb for t in tokens]
    for i in range(len(tokens) - 2):
        assert not (is_ts[i] and is_ts[i + 1] and is_ts[i + 2])  # at most a pair in a row
        if tokens[i] < eot and is_ts[i + 1]:  # after text and a closing timestamp, no text
            assert tokens[i + 2] >= eot
    # each segment <|a|> text <|b|> has b > a
    opening = None
    for i, t in enumerate(tokens):
        if is_ts[i] and (i == 0 or is_ts[i - 1] or opening is None):
            opening = t
        elif is_ts[i]:
            assert t > opening
            opening = None


@pytest.mark.parametrize("options", [dict(), dict(beam_size=4), dict(max_initial_timestamp=0.2)])
def test_decoded_timestamps_obey_the_grammar(options, tiny, english_tokenizer):
    mels = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(11))
    max_initial = round(options.get("max_initial_timestamp", 1.0) / 0.02)
    for r in decode(tiny[0], english_tokenizer, mels, DecodingOptions(sample_len=150, **options)):
        _check_timestamp_grammar(r.tokens, english_tokenizer.timestamp_begin, english_tokenizer.eot, max_initial)


def test_timestamp_rules_by_hand(english_tokenizer):
    tok = english_tokenizer
    tb, eot = tok.timestamp_begin, tok.eot
    rules = ApplyTimestampRules(tb, eot, tok.no_timestamps, sample_begin=1, max_initial_index=50)
    V = tb + 1501

    def allowed(history: list[int], logits: torch.Tensor | None = None) -> torch.Tensor:
        if logits is None:  # text likelier than the timestamps, which are then never forced
            logits = torch.zeros(1, V)
            logits[0, tb:] = -20.0
        x = logits.clone()
        rules.apply(x, torch.tensor([[tok.sot, *history]]))
        return torch.isfinite(x[0])

    ok = allowed([])  # the start: timestamps 0.00 .. 1.00 only
    assert ok.nonzero().flatten().tolist() == list(range(tb, tb + 51))
    ok = allowed([tb + 10])  # after the first timestamp: text, never <|notimestamps|>
    assert ok[:eot].all() and not ok[tb:].any() and not ok[tok.no_timestamps]
    ok = allowed([tb + 10, 400])  # within a segment: text, or a closing timestamp later than the opening one
    assert ok[:eot].all() and not ok[tb:tb + 11].any() and ok[tb + 11:].all()
    ok = allowed([tb + 10, 400, 500, tb + 30])  # after a closing one: the next opening one (>= it) or EOT
    assert not ok[:eot].any() and ok[eot] and not ok[tb:tb + 30].any() and ok[tb + 30:].all()
    ok = allowed([tb + 10, 400, tb + 30, tb + 30])  # after a pair: text, no timestamp
    assert ok[:eot].all() and not ok[tb:].any()
    ok = allowed([tb + 10, 400, tb + 30, tb + 30, 600])  # text goes on, timestamps only from 0.62 on
    assert ok[:eot].all() and not ok[tb:tb + 31].any() and ok[tb + 31:].all()
    # when the timestamps together outweigh every text token, a timestamp is forced
    logits = torch.zeros(1, V)
    logits[0, 400] = 5.0
    logits[0, tb:] = 1.0  # 1501 * e^1 >> e^5
    ok = allowed([tb + 10, 400], logits)
    assert not ok[:tb].any() and ok[tb + 11:].all()
    logits[0, tb:] = -20.0  # now they do not
    assert allowed([tb + 10, 400], logits)[:eot].all()


# ------------------------------------------------------------------------------------- options
def test_suppressed_ids_follow_openai_whisper(english_tokenizer, tiny):
    ref = whisper.decoding.DecodingTask(tiny[1], whisper.DecodingOptions(language="en"))._get_suppress_tokens()
    assert suppressed_ids(english_tokenizer, "-1") == list(ref)
    assert suppressed_ids(english_tokenizer, "-1", [1, 2, 7]) == sorted({*ref, 1, 2, 7})
    assert suppressed_ids(english_tokenizer, "") == sorted(set(ref) - set(english_tokenizer.non_speech_tokens))
    with pytest.raises(InputError, match="suppress_tokens: expected"):
        suppressed_ids(english_tokenizer, "1,x")


def test_compression_ratio_flags_repetition():
    assert compression_ratio("") == 0.0
    assert compression_ratio("the cat sat on the mat") < 1.5
    assert compression_ratio("I love you. " * 40) > 2.4


@pytest.mark.parametrize("options, message", [
    (dict(beam_size=0), "beam_size: expected None or an integer >= 1"),
    (dict(beam_size=10000), "beam_size: expected at most 64"),
    (dict(temperature=0.5, best_of=65), "best_of: expected at most 64"),
    (dict(beam_size=5, best_of=5), "beam_size and best_of: expected at most one"),
    (dict(best_of=3), "best_of: expected None for greedy decoding"),
    (dict(temperature=0.5, beam_size=2), "beam_size: expected None when sampling"),
    (dict(patience=2.0), "patience: expected None without beam_size"),
    (dict(beam_size=2, patience=0.1), "patience: expected a number with round"),
    (dict(length_penalty=1.5), "length_penalty: expected None or a number in"),
    (dict(temperature=-1.0), "temperature: expected a number in"),
    (dict(task="dance"), "task: expected one of transcribe, translate"),
    (dict(task="translate"), "task: expected 'transcribe' for an English-only model"),
    (dict(language="de"), "language: expected 'en' or None"),
    (dict(prompt=3.5), "prompt: expected None, text or a list of token ids"),
])
def test_bad_options_are_input_errors(options, message, tiny, mels, english_tokenizer):
    with pytest.raises(InputError, match=message):
        decode(tiny[0], english_tokenizer, mels[:1], DecodingOptions(**options))


def test_bad_mel_is_an_input_error(tiny, english_tokenizer):
    with pytest.raises(InputError, match=r"mel: expected a log-mel spectrogram \[batch, 80, 3000\]"):
        decode(tiny[0], english_tokenizer, torch.zeros(1, 80, 100))
    with pytest.raises(InputError, match="mel: expected a torch.Tensor"):
        decode(tiny[0], english_tokenizer, [[0.0]])
