"""Byte-level BPE text tokenizers on the Hugging Face ``tokenizers`` engine, and Whisper's tokenizer.

``TextTokenizer`` trains, loads and saves the ``tokenizer.json`` files that GPT-2, Whisper and
Llama-3-style models ship: text is split by a regular expression (GPT-2's or GPT-4's), each piece
is spelled in GPT-2's byte-level alphabet (one printable character per byte, so every Unicode
string round-trips) and merged by BPE. The engine does the work; this class adds what the engine
leaves to the caller:

* **Special tokens are never produced by plain text.** The engine matches added tokens inside the
  text, so ``"<|endoftext|>"`` typed by a user would become the end-of-text id. Here plain text
  always goes through a copy of the engine whose added tokens are switched off
  (``encode_special_tokens``); a special token is emitted only where the caller lists it in
  ``allowed_special``, and we split the text on those ourselves. Construction also checks that no
  BPE merge, byte or vocabulary entry reaches a special token's id.
* Special tokens decode to their own text (the engine would push them through the byte-level
  decoder, which mangles any that contain characters of the byte alphabet, such as ``Ġ``).
* Truncation and padding are per call, never state stored in the tokenizer.
* Bad input raises ``InputError``.

``WhisperTokenizer`` knows the layout of Whisper's special tokens on top of a ``TextTokenizer``.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import tokenizers
import torch
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from ..checkpoint import atomic_write_text
from ..errors import InputError, expect
from ..paths import resolve_model

TOKENIZER_FILE = "tokenizer.json"

# The split patterns of GPT-2 (also Whisper's) and GPT-4 (cl100k). The GPT-4 one is written
# without possessive quantifiers and without ``$``: the engine's regex library (Oniguruma) reads
# ``$`` as end of *line*, so tiktoken's current spelling of the pattern would split differently.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-level alphabet: the character that spells byte ``b``. Printable Latin-1 bytes
    spell themselves; the 68 others (controls, space, NBSP, soft hyphen) move, in byte order, to
    U+0100 onwards, so that no token contains whitespace or a control character."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    chars, moved = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(0x100 + moved))
            moved += 1
    return chars


BYTE_CHARS = _byte_alphabet()
CHAR_BYTES = {c: b for b, c in enumerate(BYTE_CHARS)}


def spell_bytes(data: bytes) -> str:
    """Bytes -> their byte-level spelling, as tokens appear in ``vocab.json`` / ``tokenizer.json``."""
    return "".join(BYTE_CHARS[b] for b in data)


@dataclass(frozen=True)
class Encoding:
    """Token ids with, per token, the ``(start, end)`` character span of the text its bytes come
    from (a character split over several tokens appears in each of their spans)."""

    ids: list[int]
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class BatchEncoding:
    """A batch of token ids (right-padded to one length when padding was asked for), attention
    masks (1 = token, 0 = padding) and, when asked for, character offsets ((0, 0) for padding)."""

    ids: list[list[int]]
    attention_mask: list[list[int]]
    offsets: list[list[tuple[int, int]]] | None = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, attention_mask)`` as int64 tensors of shape (batch, length)."""
        lengths = sorted({len(x) for x in self.ids})
        expect(len(lengths) <= 1, "batch", "sequences of one length (encode_batch(..., padding=True))",
               f"lengths {lengths}")
        shape = (len(self.ids), lengths[0] if lengths else 0)
        return (torch.tensor(self.ids, dtype=torch.long).reshape(shape),
                torch.tensor(self.attention_mask, dtype=torch.long).reshape(shape))


# --------------------------------------------------------------------------------------- checks
def _check_text(text: Any, name: str) -> None:
    expect(isinstance(text, str), name, "a str", type(text).__name__)


def _unencodable(text: str, name: str) -> InputError:
    """The error for a str the engine refuses: one holding a lone surrogate (not valid Unicode)."""
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return InputError(f"{name}: expected valid Unicode text, found the lone surrogate "
                              f"U+{ord(ch):04X} at index {i}")
    return InputError(f"{name}: expected text the tokenizer can encode, found {text[:50]!r}")


def _check_length_args(truncation: Any, max_length: Any) -> None:
    expect(isinstance(truncation, bool), "truncation", "True or False", repr(truncation))
    expect(max_length is None or (isinstance(max_length, int) and not isinstance(max_length, bool)
                                  and max_length >= 1), "max_length", "None or an int >= 1", repr(max_length))
    expect(not truncation or max_length is not None, "max_length", "an int when truncation=True", "None")


def _limit(ids: list[int], offsets: list | None, truncation: bool, max_length: int | None, name: str):
    if max_length is None or len(ids) <= max_length:
        return ids, offsets
    expect(truncation, name, f"at most max_length={max_length} tokens (pass truncation=True to cut it)",
           f"{len(ids)} tokens")
    return ids[:max_length], None if offsets is None else offsets[:max_length]


def _check_ids(ids: Any, name: str, vocab_size: int) -> list[int]:
    """``ids`` (a sequence, 1-D tensor or array of ints in [0, vocab_size)) as a list of int."""
    if isinstance(ids, torch.Tensor) or type(ids).__module__ == "numpy":
        expect(ids.ndim == 1, name, "a 1-D sequence of token ids", f"shape {tuple(ids.shape)}")
        ids = ids.tolist()
    expect(isinstance(ids, (list, tuple, range)), name, "a sequence of int token ids", type(ids).__name__)
    try:
        ids = [operator.index(i) for i in ids]
    except TypeError:
        bad = next(i for i in ids if not hasattr(type(i), "__index__"))
        raise InputError(f"{name}: expected int token ids, found {bad!r}") from None
    if ids:
        lo, hi = min(ids), max(ids)
        expect(lo >= 0 and hi < vocab_size, name, f"ids in [0, {vocab_size})", lo if lo < 0 else hi)
    return ids


def _json_loads(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: expected a Hugging Face tokenizer.json, found invalid JSON ({e})") from None


# ------------------------------------------------------------------------------------ tokenizer
class TextTokenizer:
    """A byte-level BPE tokenizer: ``train``, ``from_file`` (any GPT-2-style ``tokenizer.json``,
    e.g. GPT-2's or Whisper's), ``from_tiktoken``; ``encode`` / ``encode_batch`` / ``decode``;
    ``save`` (``tokenizer.json``) and ``export_vocab_merges`` (``vocab.json`` + ``merges.txt``).

    Special tokens are all the file's added tokens; plain text never encodes to one of them.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, *, source: str = "tokenizer"):
        expect(isinstance(tokenizer, tokenizers.Tokenizer), "tokenizer", "a tokenizers.Tokenizer",
               type(tokenizer).__name__)
        self._setup(_json_loads(tokenizer.to_str(), source), source, tokenizer)

    @classmethod
    def _from_spec(cls, spec: Any, source: str) -> "TextTokenizer":
        self = cls.__new__(cls)
        self._setup(spec, source, None)
        return self

    def _setup(self, spec: Any, source: str, engine: tokenizers.Tokenizer | None) -> None:
        expect(isinstance(spec, dict) and isinstance(spec.get("model"), dict), source,
               "a Hugging Face tokenizer.json (a JSON object with a \"model\")", f"{type(spec).__name__}")
        if engine is None:
            try:
                engine = tokenizers.Tokenizer.from_str(json.dumps(spec))
            except Exception as e:  # the engine raises plain Exceptions for malformed files
                raise InputError(f"{source}: expected a tokenizer.json the tokenizers library can load, "
                                 f"found one it rejects: {e}") from None
        model = spec["model"]
        expect(model.get("type") == "BPE", source, "a BPE model", f"model type {model.get('type')!r}")
        expect(spec.get("normalizer") is None, source, "no normalizer (byte-level BPE encodes text as it is)",
               f"normalizer {(spec.get('normalizer') or {}).get('type')!r}")
        self.pattern = _byte_level_pattern(spec.get("pre_tokenizer"), source)
        expect((spec.get("decoder") or {}).get("type") == "ByteLevel", source, "a ByteLevel decoder",
               f"decoder {(spec.get('decoder') or {}).get('type')!r}")
        vocab: dict[str, int] = model.get("vocab") or {}
        missing = [c for c in BYTE_CHARS if c not in vocab]
        expect(not missing, source, "all 256 byte tokens in the vocabulary (so that any text can be encoded)",
               f"{len(missing)} missing, e.g. {missing[:5]}")
        added = spec.get("added_tokens") or []
        self._special: dict[str, int] = {t["content"]: t["id"] for t in added}
        self._special_text: dict[int, str] = {i: s for s, i in self._special.items()}
        # Merges are "a b" strings in older files, [a, b] pairs in newer ones.
        self._merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]
        _check_specials_unreachable(vocab, self._merges, bool(model.get("ignore_merges")), self._special, source)
        self._vocab_size = max([*vocab.values(), *self._special.values()]) + 1
        self._model_vocab = vocab
        self._engine = engine
        # Plain text goes through a copy on which no added token is matched (specials or not), and no
        # truncation or padding configured in the file applies.
        plain = dict(spec, truncation=None, padding=None, post_processor=None,
                     added_tokens=[dict(t, special=True) for t in added])
        self._plain = tokenizers.Tokenizer.from_str(json.dumps(plain))
        self._plain.encode_special_tokens = True

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def train(cls, files: str | Path | Sequence[str | Path] | None = None, iterator: Iterable[str] | None = None,
              *, vocab_size: int = 8192, min_frequency: int = 2,
              special_tokens: Sequence[str] = ("<|endoftext|>",), pattern: str = "gpt2",
              show_progress: bool = False) -> "TextTokenizer":
        """Learn a byte-level BPE from UTF-8 text ``files`` and/or the strings of ``iterator``.

        ``vocab_size`` counts the 256 byte tokens, the merges and ``special_tokens`` (which get the
        first ids). ``pattern``: ``"gpt2"``, ``"gpt4"`` or a regular expression whose matches are
        the pieces BPE works within (text between matches stays, as its own piece). Occurrences of
        a special token in the corpus are treated as boundaries, never learned as text.
        """
        specials = _check_special_tokens(special_tokens)
        smallest = 256 + len(specials)
        expect(isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and vocab_size >= smallest,
               "vocab_size", f"an int >= {smallest} (256 byte tokens + {len(specials)} special tokens)",
               repr(vocab_size))
        expect(isinstance(min_frequency, int) and not isinstance(min_frequency, bool) and min_frequency >= 0,
               "min_frequency", "an int >= 0", repr(min_frequency))
        regex = _resolve_pattern(pattern)
        corpus = _Corpus(_corpus_files(files), iterator, specials)
        engine = tokenizers.Tokenizer(models.BPE())
        engine.pre_tokenizer = _pre_tokenizer(regex)
        engine.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=[tokenizers.AddedToken(s, special=True, normalized=False)
                                                      for s in specials],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=show_progress)
        direct = corpus.files_for_engine()
        if direct is not None:
            engine.train(direct, trainer=trainer)
        else:
            engine.train_from_iterator(corpus, trainer=trainer)
        expect(corpus.chars > 0, "corpus", "some text to train on (files / iterator)", "none")
        return cls(engine, source="special_tokens")

    @classmethod
    def from_file(cls, path: str | Path) -> "TextTokenizer":
        """Load a ``tokenizer.json`` (or the one in a folder, e.g. a checkpoint) unchanged."""
        expect(isinstance(path, (str, Path)) and str(path) != "", "path",
               "a tokenizer.json file or a folder holding one", repr(path))
        file = Path(path).expanduser()
        if file.is_dir():
            file = file / TOKENIZER_FILE
        expect(file.is_file(), "path", "a tokenizer.json file or a folder holding one",
               f"{str(path)!r}, where {file} does not exist")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{file}: expected a UTF-8 JSON file, found invalid UTF-8 ({e})") from None
        return cls._from_spec(_json_loads(text, str(file)), str(file))

    @classmethod
    def from_tiktoken(cls, mergeable_ranks: dict[bytes, int], special_tokens: dict[str, int] | None = None,
                      pattern: str = "gpt2") -> "TextTokenizer":
        """Build from tiktoken's form of a BPE: ``{token bytes: rank}`` (rank = id = merge priority)
        plus ``{special: id}``. Each merge is the last step by which tiktoken's algorithm reaches
        the token from its bytes, so both encode text alike."""
        expect(isinstance(mergeable_ranks, dict) and all(isinstance(k, bytes) and isinstance(v, int)
                                                         for k, v in mergeable_ranks.items()),
               "mergeable_ranks", "a dict of bytes -> int", type(mergeable_ranks).__name__)
        missing = [b for b in range(256) if bytes([b]) not in mergeable_ranks]
        expect(not missing, "mergeable_ranks", "all 256 single bytes", f"{len(missing)} missing")
        expect(len(set(mergeable_ranks.values())) == len(mergeable_ranks), "mergeable_ranks", "distinct ranks",
               "repeated ranks")
        special_tokens = dict(special_tokens or {})
        expect(all(isinstance(k, str) and k and isinstance(v, int) for k, v in special_tokens.items()),
               "special_tokens", "a dict of non-empty str -> int", repr(special_tokens)[:80])
        clash = set(special_tokens.values()) & set(mergeable_ranks.values())
        expect(not clash and len(set(special_tokens.values())) == len(special_tokens), "special_tokens",
               "ids distinct from each other and from the ranks", f"clashing ids {sorted(clash)[:5]}")
        engine = tokenizers.Tokenizer(models.BPE(
            vocab={spell_bytes(t): r for t, r in mergeable_ranks.items()},
            merges=[(spell_bytes(a), spell_bytes(b)) for a, b in _merges_from_ranks(mergeable_ranks)]))
        engine.pre_tokenizer = _pre_tokenizer(_resolve_pattern(pattern))
        engine.decoder = decoders.ByteLevel()
        spec = json.loads(engine.to_str())
        # Written into the file directly: the engine's add_special_tokens would number them itself.
        spec["added_tokens"] = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                                 "normalized": False, "special": True}
                                for s, i in sorted(special_tokens.items(), key=lambda kv: kv[1])]
        return cls._from_spec(spec, "tiktoken ranks")

    # ------------------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """One more than the largest id (byte tokens, merges and special tokens)."""
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        """``{text: id}`` of every special (added) token."""
        return dict(self._special)

    @property
    def pad_id(self) -> int:
        """The padding id ``encode_batch`` uses: ``<|pad|>``, ``<pad>``, ``[PAD]`` or ``<|endoftext|>``,
        the first present; else 0 (padding is masked out either way)."""
        for name in ("<|pad|>", "<pad>", "[PAD]", "<|endoftext|>"):
            if name in self._special:
                return self._special[name]
        return 0

    def token_to_id(self, token: str) -> int | None:
        """The id of a token, given as a special token's text or in byte-level spelling; else None."""
        _check_text(token, "token")
        return self._special.get(token, self._model_vocab.get(token))

    def id_to_token(self, id: int) -> str:
        """A token's byte-level spelling, or a special token's text."""
        (id,) = self._check_ids([id], "id")
        token = self._special_text.get(id) or self._engine.id_to_token(id)
        expect(token is not None, "id", "the id of a token", f"{id}, which is unused")
        return token

    def mergeable_ranks(self) -> dict[bytes, int]:
        """tiktoken's form of the BPE: ``{token bytes: id}`` of every non-special token. It encodes
        as we do where ids follow the merge order, as in trained, GPT-2 and tiktoken-built BPEs."""
        return {bytes(CHAR_BYTES[c] for c in token): i for token, i in self._model_vocab.items()
                if i not in self._special_text and all(c in CHAR_BYTES for c in token)}

    # -------------------------------------------------------------------------------- encoding
    def encode(self, text: str, *, allowed_special: Literal["all"] | Iterable[str] = (),
               truncation: bool = False, max_length: int | None = None,
               return_offsets: bool = False) -> list[int] | Encoding:
        """Token ids of ``text``; an ``Encoding`` with character offsets if ``return_offsets``.

        Special tokens come only from the occurrences of those in ``allowed_special`` (``"all"``:
        every one); any other special token's text encodes as ordinary text. With ``max_length``,
        a longer result is an error unless ``truncation`` (which keeps the first tokens).
        """
        _check_text(text, "text")
        allowed = self._allowed(allowed_special)
        _check_length_args(truncation, max_length)
        ids, offsets = self._encode([text], allowed, return_offsets, "text")[0]
        ids, offsets = _limit(ids, offsets, truncation, max_length, "text")
        return Encoding(ids, offsets) if return_offsets else ids

    def encode_batch(self, texts: Sequence[str], *, allowed_special: Literal["all"] | Iterable[str] = (),
                     padding: bool | Literal["longest", "max_length"] = False, truncation: bool = False,
                     max_length: int | None = None, return_offsets: bool = False,
                     pad_id: int | None = None) -> BatchEncoding:
        """Encode many texts at once (in parallel, in the engine's threads).

        ``padding``: False (ragged), True / ``"longest"`` (to the longest), ``"max_length"`` (to
        ``max_length``); padding is on the right with ``pad_id`` (default ``self.pad_id``).
        """
        expect(isinstance(texts, (list, tuple)), "texts", "a list of str", type(texts).__name__)
        for i, text in enumerate(texts):
            _check_text(text, f"texts[{i}]")
        allowed = self._allowed(allowed_special)
        _check_length_args(truncation, max_length)
        expect(isinstance(padding, bool) or padding in ("longest", "max_length"), "padding",
               "False, True, 'longest' or 'max_length'", repr(padding))
        expect(padding != "max_length" or max_length is not None, "max_length", "an int when padding='max_length'",
               "None")
        pad_id = self.pad_id if pad_id is None else self._check_ids([pad_id], "pad_id")[0]
        encoded = self._encode(list(texts), allowed, return_offsets, "texts")
        encoded = [_limit(ids, offs, truncation, max_length, f"texts[{i}]") for i, (ids, offs) in enumerate(encoded)]
        width = max((len(ids) for ids, _ in encoded), default=0) if padding in (True, "longest") else (
            max_length if padding == "max_length" else None)
        all_ids, masks, all_offsets = [], [], [] if return_offsets else None
        for ids, offsets in encoded:
            pad = 0 if width is None else width - len(ids)
            all_ids.append(ids + [pad_id] * pad)
            masks.append([1] * len(ids) + [0] * pad)
            if return_offsets:
                all_offsets.append(offsets + [(0, 0)] * pad)
        return BatchEncoding(all_ids, masks, all_offsets)

    def _allowed(self, allowed_special: Any) -> tuple[str, ...]:
        if isinstance(allowed_special, str):
            expect(allowed_special == "all", "allowed_special", "'all' or a collection of special tokens",
                   repr(allowed_special))
            return tuple(self._special)
        try:
            allowed = tuple(allowed_special)
        except TypeError:
            raise InputError(f"allowed_special: expected 'all' or a collection of special tokens, "
                             f"found {type(allowed_special).__name__}") from None
        for s in allowed:
            expect(isinstance(s, str) and s in self._special, "allowed_special",
                   f"special tokens of this tokenizer ({_preview(self._special)})", repr(s))
        return allowed

    def _encode(self, texts: list[str], allowed: tuple[str, ...], offsets: bool, name: str):
        """[(ids, offsets or None)] for ``texts``, with the ``allowed`` special tokens matched."""
        # Longest first, so that a special token containing another one wins.
        longest_first = sorted(set(allowed), key=len, reverse=True)
        split = re.compile("|".join(map(re.escape, longest_first))) if allowed else None
        # Cut each text at allowed specials; the plain pieces are encoded in one parallel batch.
        pieces: list[str] = []
        layout: list[list[tuple[int, int, int | None]]] = []  # per text: (start, end, special id | None)
        for text in texts:
            spans, at = [], 0
            for m in split.finditer(text) if split is not None else ():
                if m.start() > at:
                    spans.append((at, m.start(), None))
                spans.append((m.start(), m.end(), self._special[m.group()]))
                at = m.end()
            if at < len(text) or not spans:
                spans.append((at, len(text), None))
            layout.append(spans)
            pieces.extend(text[s:e] for s, e, special in spans if special is None)
        try:
            batch = (self._plain.encode_batch(pieces, add_special_tokens=False) if offsets
                     else self._plain.encode_batch_fast(pieces, add_special_tokens=False))
        except TypeError:
            bad = next(i for i, t in enumerate(texts) if _has_surrogate(t))
            raise _unencodable(texts[bad], name if len(texts) == 1 else f"{name}[{bad}]") from None
        out, k = [], 0
        for spans in layout:
            ids: list[int] = []
            offs: list[tuple[int, int]] | None = [] if offsets else None
            for start, end, special in spans:
                if special is not None:
                    ids.append(special)
                    if offsets:
                        offs.append((start, end))
                    continue
                enc = batch[k]
                k += 1
                ids.extend(enc.ids)
                if offsets:
                    offs.extend((start + s, start + e) for s, e in enc.offsets)
            out.append((ids, offs))
        return out

    # -------------------------------------------------------------------------------- decoding
    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``. Byte sequences that are not valid UTF-8 (a character cut between
        tokens) decode to U+FFFD. Special tokens decode to their text unless skipped."""
        ids = self._check_ids(ids, "ids")
        expect(isinstance(skip_special_tokens, bool), "skip_special_tokens", "True or False",
               repr(skip_special_tokens))
        return self._decode(ids, skip_special_tokens)

    def decode_batch(self, batch: Sequence[Sequence[int]], *, skip_special_tokens: bool = False) -> list[str]:
        expect(isinstance(batch, (list, tuple)) or isinstance(batch, torch.Tensor) and batch.dim() == 2,
               "batch", "a list of id sequences", type(batch).__name__)
        checked = [self._check_ids(ids, f"batch[{i}]") for i, ids in enumerate(batch)]
        return [self._decode(ids, skip_special_tokens) for ids in checked]

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        specials = self._special_text
        if not any(i in specials for i in ids):
            return self._plain.decode(ids, skip_special_tokens=False)
        # Runs of ordinary tokens go through the byte-level decoder; special tokens are their text.
        parts, run = [], []
        for i in ids:
            if i in specials:
                if run:
                    parts.append(self._plain.decode(run, skip_special_tokens=False))
                    run = []
                if not skip_special_tokens:
                    parts.append(specials[i])
            else:
                run.append(i)
        if run:
            parts.append(self._plain.decode(run, skip_special_tokens=False))
        return "".join(parts)

    def _check_ids(self, ids: Any, name: str) -> list[int]:
        return _check_ids(ids, name, self._vocab_size)

    # ---------------------------------------------------------------------------------- saving
    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tokenizer.json`` atomically; returns its path."""
        path = Path(folder).expanduser() / TOKENIZER_FILE
        atomic_write_text(path, self._engine.to_str(pretty=True) + "\n")
        return path

    def export_vocab_merges(self, folder: str | Path) -> tuple[Path, Path]:
        """Write GPT-2's ``vocab.json`` (the BPE vocabulary) and ``merges.txt`` into ``folder``."""
        folder = Path(folder).expanduser()
        vocab = dict(sorted(self._model_vocab.items(), key=lambda kv: kv[1]))
        atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
        atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self._merges))
        return folder / "vocab.json", folder / "merges.txt"

    def __reduce__(self):
        # The engine's own pickle drops encode_special_tokens, which would let plain text produce
        # special tokens again in a DataLoader worker; rebuild from the tokenizer.json text instead.
        return _rebuild, (type(self), self._engine.to_str())

    def __repr__(self) -> str:
        name = next((k for k, v in PATTERNS.items() if v == self.pattern), "custom")
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={len(self._special)}, "
                f"pattern={name})")


def _rebuild(cls: type[TextTokenizer], text: str) -> TextTokenizer:
    return cls._from_spec(json.loads(text), "tokenizer")


def _preview(names: Iterable[str], n: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "") if names else "none"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


# ------------------------------------------------------------------------------ helpers: patterns
def _resolve_pattern(pattern: Any) -> str:
    expect(isinstance(pattern, str) and pattern != "", "pattern", "'gpt2', 'gpt4' or a regular expression",
           repr(pattern))
    regex = PATTERNS.get(pattern, pattern)
    try:
        Regex(regex)
    except Exception as e:
        raise InputError(f"pattern: expected 'gpt2', 'gpt4' or a regular expression, found {pattern!r} ({e})") from None
    return regex


def _pre_tokenizer(regex: str) -> pre_tokenizers.PreTokenizer:
    # GPT-2's pattern is built into the ByteLevel pre-tokenizer; writing it that way keeps our files
    # identical in form to GPT-2's and Whisper's.
    if regex == GPT2_PATTERN:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _byte_level_pattern(pre: Any, source: str) -> str:
    """The split regex of a byte-level pre-tokenizer spec: ``ByteLevel`` with its built-in GPT-2
    regex, or ``Split(regex)`` then ``ByteLevel`` without one."""
    expected = "a byte-level pre-tokenizer (ByteLevel, or Split by a regex then ByteLevel) without add_prefix_space"
    pre = pre or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True) and not steps[0].get("add_prefix_space"):
        return GPT2_PATTERN
    if (kinds == ["Split", "ByteLevel"] and "Regex" in (steps[0].get("pattern") or {})
            and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
            and not steps[1].get("use_regex", True) and not steps[1].get("add_prefix_space")):
        return steps[0]["pattern"]["Regex"]
    raise InputError(f"{source}: expected {expected}, found {json.dumps(pre)[:200]}")


# ------------------------------------------------------------------------------ helpers: specials
def _check_special_tokens(special_tokens: Any) -> tuple[str, ...]:
    expect(not isinstance(special_tokens, str) and isinstance(special_tokens, (list, tuple)), "special_tokens",
           "a list of str", type(special_tokens).__name__)
    for s in special_tokens:
        expect(isinstance(s, str) and s != "", "special_tokens", "non-empty strings", repr(s))
        expect(s not in CHAR_BYTES, "special_tokens", "strings longer than one byte symbol (a one-symbol token is "
               "what the byte it spells encodes to)", repr(s))
    expect(len(set(special_tokens)) == len(special_tokens), "special_tokens", "distinct strings",
           repr(list(special_tokens)))
    return tuple(special_tokens)


def _check_specials_unreachable(vocab: dict[str, int], merges: list[tuple[str, str]], ignore_merges: bool,
                                special: dict[str, int], source: str) -> None:
    """No plain text may reach a special token's id: not through a byte, a merge or (when the BPE
    looks up whole pieces, ``ignore_merges``) any vocabulary entry."""
    if not special:
        return
    if ignore_merges:
        reachable = {i: t for t, i in vocab.items()}
    else:
        reachable = {vocab[c]: c for c in BYTE_CHARS if c in vocab}
        reachable.update((vocab[a + b], a + b) for a, b in merges if a + b in vocab)
    for text, i in special.items():
        if i in reachable:
            raise InputError(f"{source}: expected special tokens that plain text cannot produce, found {text!r} "
                             f"(id {i}), which BPE also reaches from the text "
                             f"{bytes(CHAR_BYTES.get(c, 63) for c in reachable[i]).decode('utf-8', 'replace')!r}; "
                             f"choose another special token")


# -------------------------------------------------------------------------------- helpers: corpus
def _corpus_files(files: Any) -> list[Path]:
    if files is None:
        return []
    if isinstance(files, (str, Path)):
        files = [files]
    expect(isinstance(files, (list, tuple)), "files", "a path or a list of paths", type(files).__name__)
    paths = []
    for i, f in enumerate(files):
        expect(isinstance(f, (str, Path)) and Path(f).expanduser().is_file(), f"files[{i}]", "an existing text file",
               repr(str(f)) if isinstance(f, (str, Path)) else type(f).__name__)
        paths.append(Path(f).expanduser())
    return paths


class _Corpus:
    """The training text, split at the special tokens (so they are boundaries, never text that BPE
    learns), counting the characters it yields. Files are cut into lines, as the engine reads them;
    the iterator's strings go in as they are."""

    CHUNK = 1 << 20

    def __init__(self, files: list[Path], iterator: Iterable[str] | None, specials: tuple[str, ...]):
        expect(iterator is None or (isinstance(iterator, Iterable) and not isinstance(iterator, str)), "iterator",
               "an iterable of str", type(iterator).__name__)
        self.files, self.iterator, self.chars = files, iterator, 0
        self.split = re.compile("|".join(re.escape(s) for s in specials)) if specials else None

    def files_for_engine(self) -> list[str] | None:
        """The file paths when the engine can read them itself (faster): no iterator, and files
        that are valid UTF-8 without special tokens in them. Else None: iterate over ``self``."""
        if self.iterator is not None:
            return None
        chars = 0
        for i, path in enumerate(self.files):
            text = self._read(i, path, path.read_bytes())
            if self.split is not None and self.split.search(text):
                return None
            chars += len(text)
        self.chars = chars
        return [str(p) for p in self.files]

    def __iter__(self) -> Iterator[str | list[str]]:
        for i, path in enumerate(self.files):
            with open(path, "rb") as f:
                while data := f.read(self.CHUNK):
                    data += f.readline()  # end the chunk at a line end
                    lines = self._read(i, path, data).split("\n")
                    lines = [line + "\n" for line in lines[:-1]] + [lines[-1]]
                    yield [piece for line in lines for piece in self._pieces(line)]
        for i, text in enumerate(self.iterator if self.iterator is not None else ()):
            _check_text(text, f"iterator item {i}")
            if _has_surrogate(text):
                raise _unencodable(text, f"iterator item {i}")
            yield from self._pieces(text)

    @staticmethod
    def _read(i: int, path: Path, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"files[{i}]: expected UTF-8 text, found invalid UTF-8 in {path} ({e})") from None

    def _pieces(self, text: str) -> list[str]:
        pieces = [p for p in (self.split.split(text) if self.split is not None else (text,)) if p]
        self.chars += sum(map(len, pieces))
        return pieces


# ----------------------------------------------------------------------------- helpers: tiktoken
def read_tiktoken_file(path: str | Path) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a ``.tiktoken`` file (one ``base64-token rank`` per line), the
    format of openai-whisper's bundled ``gpt2.tiktoken`` and ``multilingual.tiktoken``."""
    path = Path(path).expanduser()
    expect(path.is_file(), "path", "a .tiktoken file", f"{str(path)!r}, which does not exist")
    ranks = {}
    for n, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            # multilingual.tiktoken spells an empty token (rank 50256, unused) as "=".
            if not re.fullmatch(r"[A-Za-z0-9+/]*=*", token):
                raise ValueError(token)
            ranks[base64.b64decode(token)] = int(rank)
        except (ValueError, binascii.Error):
            raise InputError(f"{path}: expected lines of 'base64-token rank', "
                             f"found {line[:60]!r} on line {n}") from None
    return ranks


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that creates each multi-byte token, in rank order: the last step of tiktoken's
    algorithm (repeatedly join the adjacent pair whose join has the lowest rank) run on the token's
    own bytes with only lower ranks available. A token it cannot reach gets no merge."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, at = rank, -1
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < best:
                    best, at = r, i
            if at < 0:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        if len(parts) == 2 and ranks.get(parts[0], rank) < rank and ranks.get(parts[1], rank) < rank:
            merges.append((parts[0], parts[1]))
    return merges


# --------------------------------------------------------------------------------------- Whisper
# Whisper's language tokens, in id order: <|en|> is sot + 1. Models have the first 99 (large-v3: 100).
WHISPER_LANGUAGES = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi",
    "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la",
    "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy",
    "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be",
    "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)
TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
TIME_PRECISION = 0.02  # seconds per timestamp step

# Text Whisper should not invent from audio: speaker tags, bracketed notes, music symbols. A symbol
# is suppressed where it is one token (alone or after a space); the music symbols always by their
# first token (their 3-byte UTF-8 forms share the first two bytes with other U+2640..U+267F symbols).
_NON_SPEECH_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + \
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
_MUSIC_SYMBOLS = list("♩♪♫♬♭♮♯")


class WhisperTokenizer:
    """Whisper's tokenizer: a byte-level BPE (GPT-2's for English-only models, a multilingual one
    otherwise) followed by special tokens in a fixed order: <|endoftext|>, <|startoftranscript|>,
    one token per language, <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>,
    <|nospeech|> (<|nocaptions|> in older files), <|notimestamps|>, then 1501 timestamps
    <|0.00|> … <|30.00|> (ids after <|notimestamps|> when the file does not list them).
    """

    def __init__(self, text: TextTokenizer, *, multilingual: bool | None = None):
        expect(isinstance(text, TextTokenizer), "text", "a TextTokenizer", type(text).__name__)
        self.text = text
        special = text.special_tokens
        names = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
                 "transcribe": "<|transcribe|>", "sot_lm": "<|startoflm|>", "sot_prev": "<|startofprev|>",
                 "no_timestamps": "<|notimestamps|>"}
        no_speech = "<|nospeech|>" if "<|nospeech|>" in special else "<|nocaptions|>"
        missing = [s for s in [*names.values(), no_speech] if s not in special]
        expect(not missing, "tokenizer", "Whisper's special tokens", f"a tokenizer without {', '.join(missing)}")
        for attr, name in names.items():
            setattr(self, attr, special[name])
        self.no_speech: int = special[no_speech]
        self.timestamp_begin: int = special.get("<|0.00|>", self.no_timestamps + 1)
        self.vocab_size: int = max(text.vocab_size, self.timestamp_begin + TIMESTAMPS)
        # Language tokens sit between <|startoftranscript|> and <|translate|>, in Whisper's order.
        # Their codes come from that order: older files name some by retired codes (<|iw|> for
        # Hebrew), which are accepted too.
        by_id = {i: s for s, i in special.items()}
        count = self.translate - self.sot - 1
        named = [by_id[i][2:-2] for i in range(self.sot + 1, self.translate) if i in by_id]
        expect(len(named) == count and count <= len(WHISPER_LANGUAGES), "tokenizer",
               f"at most {len(WHISPER_LANGUAGES)} language tokens at consecutive ids between "
               "<|startoftranscript|> and <|translate|>", f"{len(named)} tokens for {count} ids")
        self.languages: tuple[str, ...] = WHISPER_LANGUAGES[:count]
        self._language_ids = {code.lower(): self.sot + 1 + k
                              for codes in (named, self.languages) for k, code in enumerate(codes)}
        expect(multilingual is None or isinstance(multilingual, bool), "multilingual", "None, True or False",
               repr(multilingual))
        # OpenAI's rule: English-only models have 51864 tokens, multilingual ones 51865 or 51866.
        self.multilingual: bool = self.vocab_size >= 51865 if multilingual is None else multilingual
        self._special_ids = frozenset(special.values())

    @classmethod
    def from_file(cls, path: str | Path, *, multilingual: bool | None = None) -> "WhisperTokenizer":
        """From a Whisper ``tokenizer.json`` (Hugging Face / CTranslate2 model folders ship one)."""
        return cls(TextTokenizer.from_file(path), multilingual=multilingual)

    @classmethod
    def from_tiktoken(cls, path: str | Path, *, num_languages: int = 99,
                      multilingual: bool | None = None) -> "WhisperTokenizer":
        """From one of openai-whisper's ``.tiktoken`` rank files (``gpt2.tiktoken`` for English-only
        models, ``multilingual.tiktoken``), with the special tokens and timestamps laid out after
        the ranks as OpenAI's checkpoints expect; ``num_languages`` is 99, or 100 for large-v3."""
        expect(isinstance(num_languages, int) and 1 <= num_languages <= len(WHISPER_LANGUAGES), "num_languages",
               f"an int in [1, {len(WHISPER_LANGUAGES)}]", repr(num_languages))
        ranks = read_tiktoken_file(path)
        names = ["<|endoftext|>", "<|startoftranscript|>",
                 *(f"<|{code}|>" for code in WHISPER_LANGUAGES[:num_languages]),
                 "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                 "<|notimestamps|>", *(f"<|{i * TIME_PRECISION:.2f}|>" for i in range(TIMESTAMPS))]
        first = len(ranks)
        return cls(TextTokenizer.from_tiktoken(ranks, {s: first + k for k, s in enumerate(names)}, "gpt2"),
                   multilingual=multilingual)

    def save(self, folder: str | Path) -> Path:
        return self.text.save(folder)

    # ------------------------------------------------------------------------------- specials
    def language_token(self, language: str) -> int:
        """The id of ``<|{language}|>`` for a language code such as ``"en"``."""
        expect(isinstance(language, str) and language.lower() in self._language_ids, "language",
               f"a language code of this tokenizer ({_preview(self.languages, 10)})", repr(language))
        return self._language_ids[language.lower()]

    @property
    def language_tokens(self) -> tuple[int, ...]:
        return tuple(range(self.sot + 1, self.sot + 1 + len(self.languages)))

    def sot_sequence(self, language: str | None = None, task: str | None = "transcribe",
                     timestamps: bool = True) -> tuple[int, ...]:
        """The decoder prompt: <|startoftranscript|>, then for multilingual models the language
        (when given; None leaves it for the model to predict) and the task, then <|notimestamps|>
        unless ``timestamps``. English-only models take no language or task tokens."""
        expect(task in (None, "transcribe", "translate"), "task", "None, 'transcribe' or 'translate'", repr(task))
        expect(isinstance(timestamps, bool), "timestamps", "True or False", repr(timestamps))
        sequence = [self.sot]
        if self.multilingual:
            if language is not None:
                sequence.append(self.language_token(language))
            if task is not None:
                sequence.append(self.transcribe if task == "transcribe" else self.translate)
        else:
            expect(language is None or language == "en", "language", "None or 'en' for an English-only model",
                   repr(language))
            expect(task != "translate", "task", "'transcribe' for an English-only model", repr(task))
        if not timestamps:
            sequence.append(self.no_timestamps)
        return tuple(sequence)

    def timestamp_token(self, seconds: float) -> int:
        """The id of the timestamp nearest ``seconds`` (0 to 30)."""
        expect(isinstance(seconds, (int, float)) and 0 <= seconds <= 30, "seconds", "a time in [0, 30]",
               repr(seconds))
        return self.timestamp_begin + round(seconds / TIME_PRECISION)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Ids to suppress so that the model does not write speaker tags or sound annotations
        (``♪♪♪``, ``( SPEAKING FOREIGN LANGUAGE )``, ``[DAVID]``), keeping ordinary punctuation and
        hyphens / apostrophes inside words."""
        result = {self.text.encode(" -")[0], self.text.encode(" '")[0]}
        for symbol in _NON_SPEECH_SYMBOLS + _MUSIC_SYMBOLS:
            for ids in (self.text.encode(symbol), self.text.encode(" " + symbol)):
                if len(ids) == 1 or symbol in _MUSIC_SYMBOLS:
                    result.add(ids[0])
        return tuple(sorted(result))

    @cached_property
    def suppress_tokens(self) -> tuple[int, ...]:
        """Whisper's default suppression (``suppress_tokens="-1"``): the non-speech tokens and the
        special tokens a transcript never contains."""
        return tuple(sorted({*self.non_speech_tokens, self.transcribe, self.translate, self.sot,
                             self.sot_prev, self.sot_lm, self.no_speech}))

    @cached_property
    def suppress_at_begin(self) -> tuple[int, ...]:
        """Ids suppressed as the first sampled token: a blank and <|endoftext|>."""
        return (*self.text.encode(" "), self.eot)

    # ------------------------------------------------------------------------- text and ids
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens' texts encode as ordinary text."""
        return self.text.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` without special and timestamp tokens."""
        ids = self._check_ids(ids)
        return self.text.decode([i for i in ids if i < self.timestamp_begin and i not in self._special_ids])

    def decode_with_timestamps(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with special tokens' texts and timestamps written ``<|1.08|>``."""
        parts, run = [], []
        for i in self._check_ids(ids):
            if i >= self.timestamp_begin:
                parts.append(self.text.decode(run))
                parts.append(f"<|{(i - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
                run = []
            else:
                run.append(i)
        parts.append(self.text.decode(run))
        return "".join(parts)

    def _check_ids(self, ids: Any) -> list[int]:
        return _check_ids(ids, "ids", self.vocab_size)

    def __repr__(self) -> str:
        kind = "multilingual" if self.multilingual else "English-only"
        return f"WhisperTokenizer({kind}, vocab_size={self.vocab_size}, languages={len(self.languages)})"


# ------------------------------------------------------------------------------------------ CLI
def add_train_arguments(parser) -> None:
    """Arguments of ``multimodal tokenizer train``."""
    parser.add_argument("files", nargs="+", help="UTF-8 text files to learn from")
    parser.add_argument("--out", required=True, help="folder to write tokenizer.json into")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tokens in all (default 8192)")
    parser.add_argument("--min-frequency", type=int, default=2, help="least count of a pair to merge (default 2)")
    parser.add_argument("--special", action="append", default=None, metavar="TOKEN",
                        help="a special token, repeatable (default: <|endoftext|>)")
    parser.add_argument("--pattern", default="gpt2",
                        help="how text is split before BPE: gpt2, gpt4 or a regular expression (default gpt2)")
    parser.add_argument("--vocab-merges", action="store_true", help="also write vocab.json and merges.txt")


def cli_train(args) -> None:
    """``multimodal tokenizer train``: learn a byte-level BPE and save it."""
    special = args.special if args.special is not None else ["<|endoftext|>"]
    tokenizer = TextTokenizer.train(files=args.files, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                                    special_tokens=special, pattern=args.pattern, show_progress=True)
    path = tokenizer.save(args.out)
    print(f"{tokenizer!r} -> {path}")
    if args.vocab_merges:
        for p in tokenizer.export_vocab_merges(args.out):
            print(f"  {p}")


def add_encode_arguments(parser) -> None:
    """Arguments of ``multimodal tokenizer encode``."""
    parser.add_argument("tokenizer", help="a tokenizer.json, a folder holding one, or a checkpoint's name")
    parser.add_argument("text", nargs="?", help="the text (default: standard input)")
    parser.add_argument("--allowed-special", action="append", default=[], metavar="TOKEN",
                        help="a special token to recognise in the text, repeatable, or 'all'")
    parser.add_argument("--tokens", action="store_true", help="print one token per line: id, span, text")
    parser.add_argument("--decode", action="store_true", help="the input is token ids (JSON list or "
                        "whitespace-separated); print their text")


def cli_encode(args) -> None:
    """``multimodal tokenizer encode``: print token ids as a JSON list (or tokens, or decoded text)."""
    import sys

    tokenizer = TextTokenizer.from_file(resolve_model(args.tokenizer))
    text = args.text if args.text is not None else sys.stdin.read()
    if args.decode:
        try:
            ids = json.loads(text) if text.strip().startswith("[") else [int(t) for t in text.split()]
        except ValueError:
            raise InputError(f"ids: expected a JSON list or whitespace-separated ints, found {text[:60]!r}") from None
        print(tokenizer.decode(ids))
        return
    allowed = "all" if "all" in args.allowed_special else args.allowed_special
    if not args.tokens:
        print(json.dumps(tokenizer.encode(text, allowed_special=allowed)))
        return
    encoding = tokenizer.encode(text, allowed_special=allowed, return_offsets=True)
    for i, (start, end) in zip(encoding.ids, encoding.offsets):
        print(f"{i}\t{start}:{end}\t{text[start:end]!r}")
