"""The words a text-conditioned model read in training, and the words of a prompt it did not.

A checkpoint folder may hold ``vocabulary.txt``: every word of its training captions, one per line
(a LoRA adapter's folder: the words it was trained on, added to its base's while it is active). A
prompt's words are its lower-cased runs of letters and digits (``t-shirt`` and ``don't`` stay one
word); a word outside the vocabulary is one the model never read, so it cannot steer the image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from ..checkpoint import atomic_write_text
from ..errors import InputError

VOCABULARY_NAME = "vocabulary.txt"
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")


def prompt_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order."""
    return _WORD.findall(text.lower())


def unknown_words(text: str, vocabulary: Iterable[str]) -> list[str]:
    """The words of ``text`` outside ``vocabulary``, each once, in the order they first appear."""
    known = set(vocabulary)
    return list(dict.fromkeys(w for w in prompt_words(text) if w not in known))


def read_vocabulary(folder: str | Path) -> frozenset[str] | None:
    """The words in ``folder``'s vocabulary.txt; None where the folder has none."""
    path = Path(folder) / VOCABULARY_NAME
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: expected a UTF-8 list of words, one per line, found unreadable data ({e})") \
            from None
    return frozenset(w for line in text.splitlines() for w in prompt_words(line))


def write_vocabulary(folder: str | Path, words: Iterable[str]) -> Path:
    """Write the words of ``words`` (each a word or a caption) to ``folder``/vocabulary.txt, sorted."""
    path = Path(folder) / VOCABULARY_NAME
    atomic_write_text(path, "".join(f"{w}\n" for w in sorted({w for text in words for w in prompt_words(text)})))
    return path
