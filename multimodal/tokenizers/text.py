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

``WhisperTokenizer`` (``whisper_text.py``) knows the layout of Whisper's special tokens on top of a
``TextTokenizer``; the pre-tokenizer patterns, special-token checks, training corpora and tiktoken
files are in ``bpe.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import tokenizers
import torch
from tokenizers import decoders, models, pre_tokenizers, trainers

from ..checkpoint import atomic_write_text
from ..errors import InputError, expect
from .bpe import (BYTE_CHARS, CHAR_BYTES, PATTERNS, _Corpus, _byte_level_pattern, _check_ids, _check_length_args,
                  _check_special_tokens, _check_specials_unreachable, _check_text, _corpus_files, _has_surrogate,
                  _json_loads, _limit, _merges_from_ranks, _pre_tokenizer, _preview, _resolve_pattern, _unencodable,
                  spell_bytes)

TOKENIZER_FILE = "tokenizer.json"


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
