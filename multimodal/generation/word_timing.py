"""Word timestamps for Whisper transcripts, from the decoder's cross-attention.

Method (Whisper's; the same steps as openai-whisper's ``word_timestamps=True``):

1. **Attention.** The window's text tokens are run once more through the decoder after
   ``<|startoftranscript|>…<|notimestamps|>``, and the cross-attention scores of the checkpoint's
   *alignment heads* (``config.alignment_heads``: the heads whose attention follows the audio) are
   kept: ``[heads, tokens, audio frames]``, softmaxed over the frames that hold audio.
2. **Clean-up.** Each head's weights are standardised over the tokens, smoothed along time by a
   median filter of width 7, and averaged over the heads.
3. **Alignment.** Dynamic time warping finds the monotonic path through the negated matrix: each
   token gets the time (at 20 ms steps) where the path first reaches it.
4. **Words.** Tokens are grouped into words (a new word at a space, a punctuation mark or a
   special token; languages written without spaces split at character boundaries); a word starts
   where its first token does and ends where the next word starts. Its probability is the mean of
   its tokens' probabilities. Leading punctuation (``"'“¿([{-``) joins the next word, trailing
   punctuation (``"'.。,，!！?？:：”)]}、``) the previous one.
5. **Sanity.** Words longer than twice the median word length (at most 1.4 s) are cut at sentence
   ends and after a pause, and a segment's first and last word prefer the segment's own timestamps
   when those are more than 0.5 s tighter, as openai-whisper does.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..tokenizers.mel import HOP_LENGTH, SAMPLE_RATE

TOKENS_PER_SECOND = SAMPLE_RATE / (2 * HOP_LENGTH)  # audio tokens (encoder frames) per second: 50
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_ENDS = ".。!！?？"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}
MEDIAN_FILTER_WIDTH = 7


@dataclass
class WordTiming:
    word: str
    tokens: list[int] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    probability: float = 0.0


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """The running median of odd ``width`` along the last axis, the ends reflected."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")[:, 0]
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., pad].reshape(shape)


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotonic path of least total ``cost`` [N, M] from (0, 0) to (N-1, M-1), each step one
    row, one column or both: (row indices, column indices). Ties prefer a column step, then a row
    step, then the diagonal (openai-whisper's order). The recurrence is swept one anti-diagonal at
    a time, every cell of a diagonal at once."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf, dtype=np.float64)
    total[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    for k in range(2, n + m + 1):  # cells (i, j), 1-based, with i + j = k
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        diagonal, up, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
        step = np.where((diagonal < up) & (diagonal < left), 0, np.where((up < diagonal) & (up < left), 1, 2))
        total[i, j] = cost[i - 1, j - 1] + np.choose(step, [diagonal, up, left])
        trace[i, j] = step
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        if trace[i, j] == 0:
            i, j = i - 1, j - 1
        elif trace[i, j] == 1:
            i -= 1
        else:
            j -= 1
    rows, cols = np.array(path[::-1]).T
    return rows, cols


def split_to_words(tokenizer, tokens: list[int], language: str | None = "en") -> tuple[list[str], list[list[int]]]:
    """Words and their tokens. Tokens are first grouped until they decode to whole characters; then,
    in languages written with spaces, a group that starts with a space, is punctuation or is a
    special token begins a new word."""
    pieces, piece_tokens, current = [], [], []
    for token in tokens:
        current.append(token)
        text = _decode(tokenizer, current)
        if "\ufffd" not in text:
            pieces.append(text)
            piece_tokens.append(current)
            current = []
    if language in NO_SPACE_LANGUAGES:
        return pieces, piece_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for text, group in zip(pieces, piece_tokens):
        special = group[0] >= tokenizer.eot
        if special or text.startswith(" ") or text.strip() in string.punctuation or not words:
            words.append(text)
            word_tokens.append(list(group))
        else:
            words[-1] += text
            word_tokens[-1].extend(group)
    return words, word_tokens


def _decode(tokenizer, tokens: list[int]) -> str:
    """The text of ``tokens``, a special token (end of text) kept as its own marker."""
    if tokens and tokens[0] >= tokenizer.eot:
        return "<|special|>"
    return tokenizer.decode(tokens)


@torch.no_grad()
def find_alignment(model, tokenizer, text_tokens: list[int], window: torch.Tensor, num_frames: int,
                   language: str | None = None, task: str | None = "transcribe") -> list[WordTiming]:
    """Word timings (seconds from the window's start) of ``text_tokens`` in the mel ``window``
    ``[1, n_mels, 3000]`` of which ``num_frames`` hold audio."""
    if not text_tokens:
        return []
    sot = list(tokenizer.sot_sequence(language, task, timestamps=True))
    tokens = torch.tensor([*sot, tokenizer.no_timestamps, *text_tokens, tokenizer.eot], device=window.device)
    logits, scores = model.cross_attention_scores(tokens[None], model.embed_audio(window))
    probs = logits[0, len(sot):len(sot) + len(text_tokens), :tokenizer.eot].float().cpu().softmax(dim=-1)
    token_probs = probs[torch.arange(len(text_tokens)), torch.tensor(text_tokens)].tolist()

    weights = scores[0, :, :, :num_frames // 2].float().softmax(dim=-1)  # [heads, tokens, frames]
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / std, MEDIAN_FILTER_WIDTH)
    matrix = weights.mean(dim=0)[len(sot):-1]  # the rows that predict the text tokens and the end
    rows, cols = dtw_path(-matrix.double().cpu().numpy())

    words, word_tokens = split_to_words(tokenizer, text_tokens + [tokenizer.eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(rows), (1, 0), constant_values=1).astype(bool)
    jump_times = cols[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    probabilities = [float(np.mean(token_probs[i:j])) for i, j in zip(boundaries[:-1], boundaries[1:])]
    return [WordTiming(w, t, float(s), float(e), p)
            for w, t, s, e, p in zip(words, word_tokens, starts, ends, probabilities)]


def merge_punctuations(alignment: list[WordTiming], prepended: str = PREPEND_PUNCTUATIONS,
                       appended: str = APPEND_PUNCTUATIONS) -> None:
    """Leading punctuation joins the word after it, trailing punctuation the word before it; the
    emptied entries keep their place (with no word and no tokens)."""
    following = len(alignment) - 1
    for i in range(len(alignment) - 2, -1, -1):
        before, after = alignment[i], alignment[following]
        if before.word.startswith(" ") and before.word.strip() in prepended:
            after.word, after.tokens = before.word + after.word, before.tokens + after.tokens
            before.word, before.tokens = "", []
        else:
            following = i
    previous = 0
    for j in range(1, len(alignment)):
        before, after = alignment[previous], alignment[j]
        if not before.word.endswith(" ") and after.word in appended:
            before.word, before.tokens = before.word + after.word, before.tokens + after.tokens
            after.word, after.tokens = "", []
        else:
            previous = j


def add_word_timestamps(segments: list[dict], model, tokenizer, window: torch.Tensor, num_frames: int,
                        last_speech_timestamp: float, language: str | None = None,
                        task: str | None = "transcribe") -> None:
    """Give each of one window's ``segments`` its ``words`` ([{"word", "start", "end",
    "probability"}]), adjusting the segments' start and end to their words (see the module's
    steps 4 and 5)."""
    if not segments:
        return
    per_segment = [[t for t in s["tokens"] if t < tokenizer.eot] for s in segments]
    alignment = find_alignment(model, tokenizer, [t for tokens in per_segment for t in tokens], window, num_frames,
                               language, task)
    durations = np.array([w.end - w.start for w in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = 2 * median
    if len(durations):  # words at sentence ends are no longer than twice the median word
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in SENTENCE_ENDS:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in SENTENCE_ENDS:
                    alignment[i].start = alignment[i].end - longest
    merge_punctuations(alignment)

    offset = segments[0]["seek"] * HOP_LENGTH / SAMPLE_RATE
    index = 0
    for segment, tokens in zip(segments, per_segment):
        used, words = 0, []
        while index < len(alignment) and used < len(tokens):
            timing = alignment[index]
            if timing.word:
                words.append({"word": timing.word, "start": round(offset + timing.start, 2),
                              "end": round(offset + timing.end, 2), "probability": timing.probability})
            used += len(timing.tokens)
            index += 1
        if words:
            _tidy_segment_edges(segment, words, median, longest, last_speech_timestamp)
            last_speech_timestamp = segment["end"]
        segment["words"] = words


def _tidy_segment_edges(segment: dict, words: list[dict], median: float, longest: float,
                        last_speech_timestamp: float) -> None:
    first = words[0]
    # after a pause, the first word (and the second) are no longer than twice the median word
    if first["end"] - last_speech_timestamp > 4 * median and (
            first["end"] - first["start"] > longest
            or (len(words) > 1 and words[1]["end"] - first["start"] > 2 * longest)):
        if len(words) > 1 and words[1]["end"] - words[1]["start"] > longest:
            boundary = max(words[1]["end"] / 2, words[1]["end"] - longest)
            first["end"] = words[1]["start"] = boundary
        first["start"] = max(0, first["end"] - longest)
    # the segment's own start, when the first word overruns it by more than 0.5 s
    if segment["start"] < first["end"] and segment["start"] - 0.5 > first["start"]:
        first["start"] = max(0, min(first["end"] - median, segment["start"]))
    else:
        segment["start"] = first["start"]
    last = words[-1]
    if segment["end"] > last["start"] and segment["end"] + 0.5 < last["end"]:
        last["end"] = max(last["start"] + median, segment["end"])
    else:
        segment["end"] = last["end"]


def last_word_end(segments: list[dict]) -> float | None:
    """The end of the last word of ``segments`` (else the last segment's end; None for none)."""
    return next((w["end"] for s in reversed(segments) for w in reversed(s.get("words", []))),
                segments[-1]["end"] if segments else None)
