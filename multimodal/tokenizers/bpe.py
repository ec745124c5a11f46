"""The parts of the byte-level BPE that ``TextTokenizer`` builds on: pre-tokenizer patterns,
special-token checks, training corpora read in pieces, and tiktoken rank files."""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tokenizers import Regex, pre_tokenizers

from ..errors import InputError, expect

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
