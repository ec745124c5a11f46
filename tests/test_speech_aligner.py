"""The speech aligner: forced alignment of CTC log-probabilities, and an aligner that learns."""

from __future__ import annotations

import torch

import pytest

from multimodal.errors import InputError
from multimodal.models.speech_aligner import SpeechAligner, SpeechAlignerConfig, align, align_frames
from multimodal.tokenizers import phonemes

BLANK = phonemes.VOCAB


def _log_probs(frames: list[int], classes: int = BLANK + 1) -> torch.Tensor:
    """Log-probabilities that put 0.9 on the given class of every frame."""
    probs = torch.full((len(frames), classes), 0.1 / (classes - 1))
    probs[torch.arange(len(frames)), torch.tensor(frames)] = 0.9
    return probs.log()


def test_forced_alignment_gives_each_symbol_its_frames_and_shares_the_blanks():
    a, b, c = 10, 20, 30
    # blank blank a a a blank b b b c c blank
    lp = _log_probs([BLANK, BLANK, a, a, a, BLANK, b, b, b, c, c, BLANK])
    owned = align(lp, torch.tensor([a, b, c]), BLANK)
    # a: the two leading blanks, its three frames and the one blank after it (a run of one goes before)
    assert owned.tolist() == [6, 3, 3] and int(owned.sum()) == 12


def test_forced_alignment_follows_the_text_not_the_likeliest_symbols():
    a, b = 10, 20
    lp = _log_probs([a, a, a, a, BLANK, BLANK, b, b])
    # told the text is "a a b", the path must put a blank between the two a's
    owned = align(lp, torch.tensor([a, a, b]), BLANK)
    assert owned.sum() == 8 and (owned >= 1).all() and owned[2] >= 2
    # too few frames for the text: shared out evenly
    assert align(lp[:2], torch.tensor([a, a, b]), BLANK).tolist() == [1, 1, 0]


def test_alignment_without_blanks_gives_a_blank_frame_to_the_symbol_it_leans_to():
    a, b, c = 10, 20, 30
    lp = _log_probs([a, a, BLANK, BLANK, b, BLANK, c, c])
    lean = torch.full_like(lp[0], -9.0)
    lean[BLANK] = 0.0
    lp[2] = lean.clone().index_fill_(0, torch.tensor([a]), -2.0)  # mostly blank, a before b
    lp[3] = lean.clone().index_fill_(0, torch.tensor([b]), -2.0)
    lp[5] = lean.clone().index_fill_(0, torch.tensor([b]), -2.0)
    owned = align_frames(lp, torch.tensor([a, b, c]), BLANK)
    assert owned.tolist() == [3, 3, 2]
    # the text, not the likeliest symbols: "a a b" over frames that say a four times
    owned = align_frames(_log_probs([a, a, a, a, b, b]), torch.tensor([a, a, b]), BLANK)
    assert owned.tolist()[2] == 2 and int(owned.sum()) == 6 and (owned >= 1).all()
    assert align_frames(lp[:2], torch.tensor([a, b, c]), BLANK).tolist() == [1, 1, 0]


def test_aligner_settings_are_checked():
    for bad in (dict(kind="lstm"), dict(blanks="drop"), dict(kernel=4), dict(kernel=0)):
        with pytest.raises(InputError):
            SpeechAlignerConfig(**bad)


@pytest.mark.parametrize("settings", [dict(), dict(kind="conv", blanks="frames")])
def test_the_aligner_learns_to_find_where_each_symbol_is_said(settings):
    """Clips whose codes say each symbol for 2 to 4 frames (one code per symbol): after training on
    CTC, forced alignment recovers every symbol's frames to within one frame, whichever the network
    and the rule for blank frames."""
    torch.manual_seed(0)
    config = SpeechAlignerConfig(codebook_size=40, levels=1, max_frames=40, width=48, depth=2, heads=4, **settings)
    aligner = SpeechAligner(config)
    g = torch.Generator().manual_seed(0)
    letters = "abcdefgh"

    def batch(n):
        texts, codes, truth = [], torch.zeros(n, 1, 40, dtype=torch.long), []
        frames = torch.zeros(n, dtype=torch.long)
        for i in range(n):
            picks = [int(torch.randint(0, 8, (), generator=g))]
            for step in torch.randint(1, 8, (4,), generator=g).tolist():  # no letter twice in a row:
                picks.append((picks[-1] + step) % 8)  # where one ends would be unknowable
            word = "".join(letters[j] for j in picks)
            spans = torch.randint(2, 5, (5,), generator=g)
            t = 0
            for ch, span in zip(word, spans.tolist()):
                codes[i, 0, t:t + span] = letters.index(ch) + 1 + 8 * int(torch.randint(0, 2, (), generator=g))
                t += span
            texts.append(word)
            truth.append(spans)
            frames[i] = t
        ids = torch.full((n, 8), phonemes.PAD, dtype=torch.long)
        for i, w in enumerate(texts):
            ids[i, -5:] = torch.tensor(phonemes.encode(w))
        return codes, frames, ids, torch.stack(truth)

    opt = torch.optim.AdamW(aligner.parameters(), lr=3e-3)
    for _ in range(150):
        codes, frames, ids, _ = batch(16)
        loss = aligner.loss(codes, frames, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    codes, frames, ids, truth = batch(8)
    durations = aligner.eval().durations(codes, frames, ids)
    assert torch.equal(durations.sum(-1), frames) and (durations[:, :3] == 0).all()
    assert (durations[:, -5:] - truth).abs().max() <= 1


def test_the_alignment_benchmark_cuts_flite_phones_into_words_and_reads_ours_at_word_spaces(monkeypatch):
    """benchmarks/speech_alignment.py: flite's phones, counted per word said alone, give each word's
    end (a pause after a word splits in half; times from the clip's padded start); ours are the
    frames before each word space."""
    from benchmarks import speech_alignment as bench

    timings = {"a red bag": [("pau", 0.2), ("ax", 0.3), ("r", 0.4), ("eh", 0.5), ("d", 0.6), ("pau", 0.7), ("b", 0.8),
                             ("ae", 0.9), ("g", 1.0), ("pau", 1.2)],
               "a": [("pau", 0.1), ("ax", 0.2), ("pau", 0.3)], "red": [("r", 0.1), ("eh", 0.2), ("d", 0.3)],
               "bag": [("b", 0.1), ("ae", 0.2), ("g", 0.3)]}
    monkeypatch.setattr(bench, "_flite", lambda text, voice: timings[text])
    bench._phone_count.cache_clear()
    ends = bench.true_word_ends("a red bag", "kal")
    assert [round(e, 6) for e in ends] == [0.15, 0.5]  # 0.3 and (0.6 + 0.7) / 2, less 0.2, plus 0.05
    timings["bag"] = timings["bag"][:2]  # counts that do not add up: the clip is skipped
    bench._phone_count.cache_clear()
    assert bench.true_word_ends("a red bag", "kal") is None
    bench._phone_count.cache_clear()

    symbols = "a r'Ed b'ag"
    ids = torch.full((16,), phonemes.PAD, dtype=torch.long)
    ids[-len(symbols):] = torch.tensor(phonemes.encode(symbols))
    durations = torch.zeros(16, dtype=torch.long)
    durations[-len(symbols):] = torch.tensor([4, 0, 3, 0, 2, 3, 0, 2, 0, 2, 5])
    assert bench.run_word_ends(ids, durations) == [4 / 50, 12 / 50]
