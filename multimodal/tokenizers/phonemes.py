"""The text front end of text-to-speech: text -> speakable text -> phonemes (espeak-ng) -> ids.

1. **Speakable text** (``speakable``): digits are read one at a time (``"4071"`` -> ``"four zero
   seven one"``); letters, apostrophes and the sentence punctuation ``. , ; : ! ?`` are kept;
   hyphens and slashes become spaces; anything else (emoji, symbols, letters outside Latin) is
   skipped. Text left with no letter is an InputError naming ``text``.
2. **Sentences** (``sentences``): long text is cut after ``. ! ? ;`` (and at commas when a piece is
   still longer than ``max_chars``), so that each piece fits the model's window; the pieces are spoken
   one by one and joined.
3. **Phonemes** (``phonemize``): ``espeak-ng -q -x`` (ASCII Kirshenbaum phonemes with stress marks;
   one space between words). The pronunciation is espeak-ng's whoever the voice is: the model learns
   each voice's own way of saying them.
4. **Ids** (``encode``): one id per printable ASCII character (95), so any phoneme string has ids;
   ``PAD`` is 95.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from functools import lru_cache

from ..errors import InputError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOCAB = 95  # printable ASCII, ' ' (32) to '~' (126)
PAD = VOCAB
FRONT_ENDS = ("phonemes", "characters")


def speakable(text) -> str:
    """What of ``text`` is read aloud (see the module docstring); an InputError when nothing is."""
    if not isinstance(text, str):
        raise InputError(f"text: expected a string, found {type(text).__name__}")
    original = text
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))  # é -> e
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    text = re.sub(r"[-/_]", " ", text)
    text = re.sub(r"[^A-Za-z'.,;:!? ]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    if not re.search(r"[A-Za-z]", text):
        raise InputError(f"text: expected something speakable (letters or digits), found {_preview(original)!r}")
    return text


def _preview(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "…"


def sentences(text: str, max_chars: int = 120) -> list[str]:
    """Speakable ``text`` cut into pieces of at most ``max_chars`` characters: after sentence ends,
    then at commas, then between words."""
    pieces = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", speakable(text)) if p.strip()]
    out: list[str] = []
    for piece in pieces:
        out += _fit(piece, max_chars)
    return [p for p in out if re.search(r"[A-Za-z]", p)]


def _fit(piece: str, max_chars: int) -> list[str]:
    if len(piece) <= max_chars:
        return [piece]
    for separator in (", ", " "):
        parts, current = [], ""
        for word in piece.split(separator):
            candidate = f"{current}{separator}{word}" if current else word
            if len(candidate) > max_chars and current:
                parts.append(current)
                current = word
            else:
                current = candidate
        parts.append(current)
        if all(len(p) <= max_chars for p in parts):
            return parts
        piece = " ".join(parts)
    return [piece[i:i + max_chars] for i in range(0, len(piece), max_chars)]  # one very long word


@lru_cache(maxsize=65536)
def phonemize(text: str) -> str:
    """espeak-ng's ASCII phonemes of ``text`` (already speakable), words separated by one space."""
    if shutil.which("espeak-ng") is None:
        raise InputError("espeak-ng: expected the espeak-ng program for the phoneme front end "
                         "(apt-get install espeak-ng), found none")
    result = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us", text], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise InputError(f"espeak-ng: expected exit status 0, found {result.returncode}: {result.stderr.strip()[:200]}")
    return re.sub(r"\s+", " ", result.stdout).strip()


def front_end(text: str, kind: str = "phonemes") -> str:
    """The symbols the model reads for one speakable piece: phonemes, or lower-case characters."""
    if kind not in FRONT_ENDS:
        raise InputError(f"front_end: expected one of {', '.join(FRONT_ENDS)}, found {kind!r}")
    return phonemize(text) if kind == "phonemes" else text.lower()


def encode(symbols: str) -> list[int]:
    """One id per character (printable ASCII; anything else is skipped)."""
    return [ord(c) - 32 for c in symbols if 32 <= ord(c) <= 126]


def decode(ids) -> str:
    return "".join(chr(int(i) + 32) for i in ids if 0 <= int(i) < VOCAB)
