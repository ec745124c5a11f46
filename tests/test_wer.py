"""Word error rate (multimodal.evaluation.wer): the normaliser, edit distances against hand-counted
cases, corpus counts, another normaliser (texts already normalised), and bad input."""

from __future__ import annotations

import pytest

from multimodal.errors import InputError
from multimodal.evaluation.wer import WordErrors, edit_distance, word_edits, word_error_rate, word_errors


def test_edit_distance_counts_substitutions_deletions_and_insertions():
    assert edit_distance([], []) == 0
    assert edit_distance("a b c".split(), []) == 3 and edit_distance([], "a b".split()) == 2
    assert edit_distance("a b c d".split(), "a x c d".split()) == 1          # one substitution
    assert edit_distance("a b c d".split(), "a c d".split()) == 1            # one deletion
    assert edit_distance("a b c d".split(), "a b y c d".split()) == 1        # one insertion
    assert edit_distance("kitten sat".split(), "sat kitten".split()) == 2   # order matters
    a, b = "the cat sat on the mat".split(), "a cat sat the mat today".split()
    assert edit_distance(a, b) == edit_distance(b, a) == 3


def test_corpus_errors_sum_over_utterances_with_either_normaliser():
    refs, hyps = ["Five.", "The cat sat on 2 mats"], ["five", "the cat sat on two hats!"]
    assert word_edits(refs[1], hyps[1]) == (1, 6)          # digits spelled, punctuation and case dropped
    assert word_errors(refs, hyps) == WordErrors(1 / 7, 1, 7)
    assert word_error_rate(refs, hyps) == pytest.approx(1 / 7)
    # texts that another normaliser already made comparable are split on whitespace only
    rate, errors, words = word_errors(["five", "the cat sat"], ["5", "the cat sat"], normalize=str.split)
    assert (rate, errors, words) == (pytest.approx(1 / 4), 1, 4)
    assert word_errors([], []) == WordErrors(0.0, 0, 0) and word_errors([""], ["extra"]).errors == 1


def test_bad_input_names_what_is_wrong():
    with pytest.raises(InputError, match="hypotheses: expected one per reference"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(InputError, match="references: expected a list of strings"):
        word_errors("a b", "a b")
    with pytest.raises(InputError, match="text: expected a string"):
        word_error_rate([None], ["a"])
