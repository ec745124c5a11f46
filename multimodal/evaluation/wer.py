"""Word error rate: how a transcript is scored against its reference.

Texts are compared as word lists after a normaliser. The default, ``normalize_words``, lowercases,
spells every digit character as its word ("5" -> "five", "25" -> "two five"), reads hyphens as
spaces and drops other punctuation, so "Five.", "five" and "5" are the same word. A caller with
texts already normalised another way (openai-whisper's ``EnglishTextNormalizer`` in
``benchmarks/asr.py``) passes ``normalize=str.split``.

The corpus rate is the word-level edit distance (substitutions + deletions + insertions) between
each reference and its transcript, summed over the set, divided by the summed reference words.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Sequence

from ..data.speech_digits import DIGIT_WORDS
from ..errors import InputError

Normalizer = Callable[[str], Sequence[str]]  # text -> its words


def normalize_words(text: str) -> list[str]:
    """The words a transcript is scored on: lowercase, digits spelled one by one, no punctuation."""
    if not isinstance(text, str):
        raise InputError(f"text: expected a string, found {type(text).__name__}")
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text).replace("'", "")
    return text.split()


def digit_word(text: str) -> str | None:
    """The digit word a transcript says, if it says exactly one digit and nothing else (so "Five.",
    "five" and "5" say "five"; "Five five." and "to" say none)."""
    words = normalize_words(text)
    return words[0] if len(words) == 1 and words[0] in DIGIT_WORDS else None


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    row = list(range(len(hypothesis) + 1))  # distance of reference[:0] to each prefix of hypothesis
    for i, r in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


def word_edits(reference: str, hypothesis: str, normalize: Normalizer = normalize_words) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after ``normalize``."""
    ref = normalize(reference)
    return edit_distance(ref, normalize(hypothesis)), len(ref)


class WordErrors(NamedTuple):
    """A corpus's word error rate and the counts it is made of."""
    rate: float        # errors / words (0 when there are no reference words)
    errors: int        # summed edit distances
    words: int         # summed reference words


def word_errors(references: Sequence[str], hypotheses: Sequence[str],
                normalize: Normalizer = normalize_words) -> WordErrors:
    """Corpus word errors of ``hypotheses`` against ``references`` (one each), words from ``normalize``."""
    for name, texts in (("references", references), ("hypotheses", hypotheses)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InputError(f"{name}: expected a list of strings, found {type(texts).__name__}")
    if len(references) != len(hypotheses):
        raise InputError(f"hypotheses: expected one per reference ({len(references)}), found {len(hypotheses)}")
    errors = words = 0
    for ref, hyp in zip(references, hypotheses):
        e, n = word_edits(ref, hyp, normalize)
        errors, words = errors + e, words + n
    return WordErrors(errors / max(words, 1), errors, words)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str],
                    normalize: Normalizer = normalize_words) -> float:
    """Corpus WER: summed edits over summed reference words."""
    return word_errors(references, hypotheses, normalize).rate
