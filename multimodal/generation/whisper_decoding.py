"""Decoding one batch of 30-second windows with a Whisper model: greedy, sampling (best-of-N) and
beam search over the backbone's KV cache, with Whisper's logit rules.

The search follows the Whisper paper and openai-whisper's behaviour:

- the decoder starts from ``[<|startofprev|> prompt…] <|startoftranscript|> [lang] [task]
  [<|notimestamps|>] [prefix…]`` and samples up to ``sample_len`` tokens;
- logit rules, applied in this order at every step: no blank at the start, a fixed set of
  suppressed tokens, and the timestamp grammar (timestamps come in pairs and never go back; the
  first token is a timestamp no later than ``max_initial_timestamp``; a timestamp is forced when
  the timestamps together are more probable than any single text token);
- the no-speech probability is the probability of ``<|nospeech|>`` at the SOT position;
- candidates are ranked by their summed log-probability divided by a length penalty: the length
  itself when ``length_penalty`` is None, else ((5 + length) / 6) ** length_penalty (Wu et al.).

The audio is encoded once per window and the initial tokens run once per window; the self-attention
cache is then gathered out to one row per beam or sample (``KVCache.reorder``), while the
cross-attention keys and values stay one per window: the beams of a window attend to them together,
as one batch row (``Attention._attend_shared``), so each step reads the audio's keys once per window
rather than once per beam. Beam bookkeeping reorders only the self-attention keys (in place, over the
filled positions only).

Shapes: B windows, N = B * G decoder rows (G beams or samples per window), L tokens, V vocabulary.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

TASKS = ("transcribe", "translate")
CHUNK_LENGTH = 30  # seconds of audio in one window
NEG_INF = float("-inf")
MAX_BEAMS = 64  # most beams (or fallback samples) per window: each keeps a copy of the decoder cache


def compression_ratio(text: str) -> float:
    """How well ``text`` compresses (zlib/gzip's DEFLATE): repetitive, looping output scores high."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class DecodingOptions:
    task: str = "transcribe"  # "transcribe" (X -> X) or "translate" (X -> English)
    language: str | None = None  # a language code; None detects it (multilingual models) or "en"
    temperature: float = 0.0  # 0: greedy or beam search; > 0: sampling
    sample_len: int | None = None  # most tokens to sample; default n_text_ctx // 2
    best_of: int | None = None  # independent samples per window when temperature > 0
    beam_size: int | None = None  # beams when temperature == 0; None: greedy
    patience: float | None = None  # finished candidates to collect = round(beam_size * patience)
    length_penalty: float | None = None  # None: divide by length; else Wu et al.'s alpha in [0, 1]
    prompt: str | Sequence[int] | None = None  # previous text (or its tokens), after <|startofprev|>
    prefix: str | Sequence[int] | None = None  # forced start of this window's text
    suppress_tokens: str | Iterable[int] | None = "-1"  # ids or "1,2,3"; -1: non-speech set + config's
    suppress_blank: bool = True  # no space or EOT as the first sampled token
    without_timestamps: bool = False  # text only, with <|notimestamps|>
    max_initial_timestamp: float | None = 1.0  # seconds; the first timestamp is no later
    fp16: bool = False  # decode in float16 (CUDA only; the CPU always decodes in float32)

    def validate(self) -> None:
        """Raise InputError for option values no model could use."""
        if self.task not in TASKS:
            raise InputError(f"task: expected one of {', '.join(TASKS)}, found {self.task!r}")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 10:
            raise InputError(f"temperature: expected a number in [0, 10], found {self.temperature!r}")
        for name in ("sample_len", "best_of", "beam_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise InputError(f"{name}: expected None or an integer >= 1, found {value!r}")
        for name in ("best_of", "beam_size"):
            value = getattr(self, name)
            if value is not None and value > MAX_BEAMS:
                raise InputError(f"{name}: expected at most {MAX_BEAMS} (each one holds its own decoder cache), "
                                 f"found {value}")
        if self.beam_size is not None and self.best_of is not None:
            raise InputError(f"beam_size and best_of: expected at most one of them, found beam_size={self.beam_size} "
                             f"and best_of={self.best_of}")
        if self.beam_size is not None and self.temperature > 0:
            raise InputError(f"beam_size: expected None when sampling (temperature > 0), found {self.beam_size}")
        if self.best_of is not None and self.temperature == 0:
            raise InputError(f"best_of: expected None for greedy decoding (temperature 0), found {self.best_of}")
        if self.patience is not None:
            if self.beam_size is None:
                raise InputError(f"patience: expected None without beam_size, found {self.patience!r}")
            if not _is_number(self.patience) or round(self.beam_size * self.patience) < 1:
                raise InputError(f"patience: expected a number with round(beam_size * patience) >= 1, "
                                 f"found {self.patience!r} for beam_size {self.beam_size}")
        if self.length_penalty is not None and (not _is_number(self.length_penalty)
                                                or not 0 <= self.length_penalty <= 1):
            raise InputError(f"length_penalty: expected None or a number in [0, 1], found {self.length_penalty!r}")
        if self.max_initial_timestamp is not None and (not _is_number(self.max_initial_timestamp)
                                                       or self.max_initial_timestamp < 0):
            raise InputError(f"max_initial_timestamp: expected None or seconds >= 0, found {self.max_initial_timestamp!r}")
        for name in ("prompt", "prefix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str) and not (
                    isinstance(value, Sequence) and all(_is_int(t) for t in value)):
                raise InputError(f"{name}: expected None, text or a list of token ids, found {type(value).__name__}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class DecodingResult:
    tokens: list[int]  # sampled tokens, timestamps included, without the initial tokens and EOT
    text: str
    avg_logprob: float  # summed log-probability / (len(tokens) + 1), the +1 for EOT
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    language: str = "en"
    language_probs: dict[str, float] | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------- logit rules
class LogitRule:
    """Masks logits [N, V] in place, given all tokens so far [N, L] (initial tokens included)."""

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        raise NotImplementedError


class SuppressBlank(LogitRule):
    """The first sampled token may be neither a space nor EOT: an empty transcript is the
    no-speech probability's business, not the sampler's."""

    def __init__(self, blank_ids: Sequence[int], sample_begin: int):
        self.blank_ids, self.sample_begin = list(blank_ids), sample_begin

    def apply(self, logits, tokens):
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.blank_ids] = NEG_INF


class SuppressTokens(LogitRule):
    def __init__(self, ids: Sequence[int]):
        self.ids = list(ids)

    def apply(self, logits, tokens):
        logits[:, self.ids] = NEG_INF


class ApplyTimestampRules(LogitRule):
    """Whisper's timestamp grammar over the sampled tokens (those from ``sample_begin`` on).

    A text segment is ``<|t0|> text… <|t1|>``: after an opening timestamp comes text, after a closing
    one (two timestamps in a row) comes text or the next opening timestamp, which is never earlier
    than the last; a closing timestamp is never earlier than its opening one. The first token is a
    timestamp at most ``max_initial_index`` steps from 0, and when the probability mass on all
    timestamps beats every text token, a timestamp is forced.
    """

    def __init__(self, timestamp_begin: int, eot: int, no_timestamps: int | None, sample_begin: int,
                 max_initial_index: int | None):
        self.tb, self.eot, self.no_timestamps = timestamp_begin, eot, no_timestamps
        self.sample_begin, self.max_initial_index = sample_begin, max_initial_index

    def apply(self, logits, tokens):
        tb = self.tb
        if self.no_timestamps is not None:
            logits[:, self.no_timestamps] = NEG_INF
        sampled = tokens[:, self.sample_begin:]  # [N, l]
        N, l = sampled.shape
        if l > 0:
            is_ts = sampled >= tb
            last_ts = is_ts[:, -1]
            penultimate_ts = is_ts[:, -2] if l >= 2 else torch.ones_like(last_ts)
            logits[last_ts & penultimate_ts, tb:] = NEG_INF  # after a pair: text (or EOT) next
            logits[last_ts & ~penultimate_ts, :self.eot] = NEG_INF  # after one: no text next
            # The last timestamp so far bounds the next one from below (strictly, unless it closes
            # the segment the last one opened, so that no segment is empty and nothing loops).
            positions = torch.arange(l, device=tokens.device).expand(N, l)
            last_pos = torch.where(is_ts, positions, -1).max(dim=1).values  # [N]
            last = sampled.gather(1, last_pos.clamp(min=0)[:, None])[:, 0]
            bound = torch.where(last_ts & ~penultimate_ts, last, last + 1)
            for k, (pos, end) in enumerate(zip(last_pos.tolist(), bound.tolist())):
                if pos >= 0:
                    logits[k, tb:end] = NEG_INF
        else:  # the first sampled token: a timestamp, and an early one
            logits[:, :tb] = NEG_INF
            if self.max_initial_index is not None:
                logits[:, tb + self.max_initial_index + 1:] = NEG_INF
        self.force_timestamps(logits)

    def force_timestamps(self, logits: torch.Tensor) -> None:
        """Leave only the timestamps where their summed probability beats every text token's."""
        logprobs = F.log_softmax(logits.float(), dim=-1)
        timestamp_logprob = logprobs[:, self.tb:].logsumexp(dim=-1)
        max_text_logprob = logprobs[:, :self.tb].max(dim=-1).values
        logits[timestamp_logprob > max_text_logprob, :self.tb] = NEG_INF


# ------------------------------------------------------------------------------------ searches
def rank(candidates: list[list[tuple[list[int], float]]], length_penalty: float | None) -> list[int]:
    """Index of the best (tokens, summed logprob) candidate of each window."""

    def score(tokens: list[int], logprob: float) -> float:
        n = len(tokens)
        return logprob / (n if length_penalty is None else ((5 + n) / 6) ** length_penalty)

    best = []
    for group in candidates:
        scores = [score(t, lp) for t, lp in group]
        best.append(max(range(len(scores)), key=scores.__getitem__))  # first of ties
    return best


class _Search:
    """What both searches share: the windows their rows hold now (each as many consecutive rows),
    which shrink as windows that have ended leave the batch."""

    windows: list[int] | None = None

    def keep(self, windows: list[int]) -> None:
        """The rows now hold only these of their windows (by position)."""
        self.windows = [self.windows[g] for g in windows]


class Sampler(_Search):
    """Greedy (temperature 0) or sampling: every row continues its own sequence."""

    def __init__(self, temperature: float, eot: int, generator: torch.Generator | None = None, groups: int = 1):
        self.temperature, self.eot, self.generator = temperature, eot, generator
        self.windows = list(range(groups))  # the windows the rows hold now, each as many consecutive rows

    def step(self, tokens, logits, sum_logprobs):
        """tokens [N, L], logits [N, V], sum_logprobs [N] (updated in place) -> (tokens [N, L+1],
        rows to gather the cache from or None, done)."""
        if self.temperature == 0:
            next_tokens = logits.argmax(dim=-1)
        else:
            probs = F.softmax(logits.float() / self.temperature, dim=-1)
            next_tokens = torch.multinomial(probs, 1, replacement=True, generator=self.generator)[:, 0]
        logprobs = F.log_softmax(logits.float(), dim=-1)
        running = tokens[:, -1] != self.eot
        sum_logprobs += logprobs.gather(1, next_tokens[:, None])[:, 0] * running
        next_tokens = torch.where(running, next_tokens, self.eot)
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        return tokens, None, bool((next_tokens == self.eot).all())

    def windows_done(self, tokens) -> list[bool]:
        """Whether each window (consecutive groups of rows) has ended in every row."""
        ended = (tokens[:, -1] == self.eot).tolist()
        G = len(ended) // len(self.windows)
        return [all(ended[g * G:(g + 1) * G]) for g in range(len(self.windows))]

    def finish(self, rows: list[list[list[int]]], sums: list[list[float]]):
        """Each window's rows (token lists) and summed logprobs -> per window, its candidates (token
        list up to EOT, summed logprob)."""
        return [[(row + [self.eot], lp) for row, lp in zip(r, s)] for r, s in zip(rows, sums)]


class BeamSearch(_Search):
    """Beam search with patience (Kasai et al., 2022): each step keeps the ``beam_size`` best
    unfinished continuations of each window and sets aside the finished ones ranked above them,
    until ``round(beam_size * patience)`` finished candidates are collected for every window."""

    def __init__(self, beam_size: int, eot: int, patience: float | None = None):
        self.beam_size, self.eot = beam_size, eot
        self.max_candidates = round(beam_size * (patience or 1.0))
        self.finished: list[dict[tuple[int, ...], float]] | None = None  # per window

    def step(self, tokens, logits, sum_logprobs):
        K = self.beam_size
        N = tokens.shape[0]
        groups = N // K
        first = self.finished is None  # every beam of a window still holds the same sequence
        if first:
            self.finished = [{} for _ in range(groups)]
            self.windows = list(range(groups))
        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_lp, top_ids = logprobs.topk(K + 1, dim=-1)  # [N, K+1]
        scores = (sum_logprobs[:, None] + top_lp).view(groups, K, K + 1)
        top_ids = top_ids.view(groups, K, K + 1)
        if first:  # so extend one of them
            scores, top_ids = scores[:, :1], top_ids[:, :1]
        per_beam = scores.shape[1] * (K + 1)
        # Highest score first; ties in (beam, rank) order, which the stable sort keeps.
        order = scores.reshape(groups, per_beam).sort(dim=1, descending=True, stable=True).indices.tolist()
        scores_l = scores.reshape(groups, per_beam).tolist()
        ids_l = top_ids.reshape(groups, per_beam).tolist()
        rows = tokens.tolist()

        new_tokens, sources, new_sums = [], [], []
        for g in range(groups):
            kept = 0
            newly_finished: dict[tuple[int, ...], float] = {}
            for c in order[g]:
                source = g * K + c // (K + 1)
                token, score = ids_l[g][c], scores_l[g][c]
                if token == self.eot:
                    newly_finished[tuple(rows[source] + [token])] = score
                else:
                    new_tokens.append(rows[source] + [token])
                    sources.append(source)
                    new_sums.append(score)
                    kept += 1
                    if kept == K:
                        break
            finished = self.finished[self.windows[g]]
            for sequence, score in newly_finished.items():  # already best first
                if len(finished) >= self.max_candidates:
                    break
                finished[sequence] = score

        sum_logprobs.copy_(torch.tensor(new_sums, dtype=sum_logprobs.dtype, device=sum_logprobs.device))
        tokens = torch.tensor(new_tokens, dtype=tokens.dtype, device=tokens.device)
        source_index = torch.tensor(sources, device=tokens.device)
        done = all(len(self.finished[w]) >= self.max_candidates for w in self.windows)
        return tokens, source_index, done

    def windows_done(self, tokens) -> list[bool]:
        """Whether each window of the rows has collected its finished candidates."""
        return [len(self.finished[w]) >= self.max_candidates for w in self.windows]

    def finish(self, rows: list[list[list[int]]], sums: list[list[float]]):
        """Each window's beams (token lists) and summed logprobs at the end -> per window, its
        candidates (token list up to EOT, summed logprob)."""
        K = self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in rows]
        out = []
        for finished, r, s in zip(self.finished, rows, sums):
            if len(finished) < K:  # not enough finished: the best unfinished beams, ended here
                for j in sorted(range(K), key=lambda j: s[j], reverse=True):
                    finished[tuple(r[j] + [self.eot])] = s[j]
                    if len(finished) >= K:
                        break
            out.append([(list(seq), lp) for seq, lp in finished.items()])
        return out


# ------------------------------------------------------------------------------------- decoding
def suppressed_ids(tokenizer, suppress_tokens, config_ids: Sequence[int] | None = None) -> list[int]:
    """The token ids to suppress at every step: the given ids (``-1`` standing for the tokenizer's
    non-speech symbols and ``config_ids``, the checkpoint's generation config ``suppress_tokens``),
    and always the special tokens that never belong in a transcript."""
    if isinstance(suppress_tokens, str):
        try:
            ids = [int(t) for t in suppress_tokens.split(",") if t.strip()]
        except ValueError:
            raise InputError(f"suppress_tokens: expected comma-separated token ids such as '-1', "
                             f"found {suppress_tokens!r}") from None
    else:
        ids = list(suppress_tokens or [])
    if -1 in ids:
        ids = [t for t in ids if t >= 0] + list(tokenizer.non_speech_tokens)
        ids += list(config_ids or [])
    specials = [tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev,
                getattr(tokenizer, "sot_lm", None), tokenizer.no_speech]
    ids += [t for t in specials if t is not None]
    vocab = tokenizer.timestamp_begin + 1501
    bad = [t for t in ids if not _is_int(t) or not 0 <= t < vocab]
    if bad:
        raise InputError(f"suppress_tokens: expected token ids in [0, {vocab}) or -1, found {bad[:5]}")
    return sorted(set(ids))


def _features(model, mel_or_features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, n_mels, 3000] mel or [B, n_audio_ctx, n_audio_state] features -> features."""
    cfg = model.config
    x = mel_or_features
    if not isinstance(x, torch.Tensor):
        raise InputError(f"mel: expected a torch.Tensor, found {type(x).__name__}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3 and tuple(x.shape[1:]) == (cfg.n_audio_ctx, cfg.n_audio_state):
        return x.to(next(model.parameters()).device, dtype)
    if x.ndim == 3 and tuple(x.shape[1:]) == (cfg.n_mels, 2 * cfg.n_audio_ctx):
        return model.embed_audio(x.to(dtype))
    raise InputError(f"mel: expected a log-mel spectrogram [batch, {cfg.n_mels}, {2 * cfg.n_audio_ctx}] or audio "
                     f"features [batch, {cfg.n_audio_ctx}, {cfg.n_audio_state}], found {tuple(x.shape)}")


def language_codes(tokenizer, model) -> list[str]:
    """The language codes the model knows, in token order."""
    return list(tokenizer.languages)[:model.num_languages]


@torch.no_grad()
def detect_language(model, tokenizer, mel_or_features: torch.Tensor) -> tuple[list[str], list[dict[str, float]]]:
    """The most probable language of each window, and the probability of every language, from the
    decoder's prediction after ``<|startoftranscript|>``."""
    if not model.is_multilingual:
        raise InputError("language detection: expected a multilingual model, found an English-only one")
    features = _features(model, mel_or_features, next(model.parameters()).dtype)
    return _detect(model, tokenizer, features)


def _detect(model, tokenizer, features):
    codes = language_codes(tokenizer, model)
    ids = torch.tensor([tokenizer.language_token(c) for c in codes], device=features.device)
    sot = torch.full((features.shape[0], 1), tokenizer.sot, device=features.device)
    logits = model.logits(sot, features)[:, 0].float()  # [B, V]
    probs = logits[:, ids].softmax(dim=-1)  # only the language tokens compete
    best = probs.argmax(dim=-1).tolist()
    rows = probs.tolist()
    return [codes[i] for i in best], [dict(zip(codes, row)) for row in rows]


def _initial_tokens(tokenizer, options: DecodingOptions, language: str, n_ctx: int, sample_len: int) -> list[int]:
    tokens = list(tokenizer.sot_sequence(language, options.task, not options.without_timestamps))
    if options.prefix:
        prefix = tokenizer.encode(" " + options.prefix.strip()) if isinstance(options.prefix, str) else list(options.prefix)
        room = n_ctx // 2 - sample_len
        tokens += prefix[-room:] if room > 0 else prefix
    if options.prompt:
        prompt = tokenizer.encode(" " + options.prompt.strip()) if isinstance(options.prompt, str) else list(options.prompt)
        tokens = [tokenizer.sot_prev] + prompt[-(n_ctx // 2 - 1):] + tokens
    return tokens


@torch.no_grad()
def decode(model, tokenizer, mel_or_features: torch.Tensor, options: DecodingOptions = DecodingOptions(), *,
           generator: torch.Generator | None = None) -> list[DecodingResult]:
    """Decode a batch of 30-second windows.

    mel_or_features: [B, n_mels, 3000] log-mel (or [n_mels, 3000]), or encoded audio features
    [B, n_audio_ctx, n_audio_state]. ``generator`` seeds sampling. ``suppress_tokens="-1"`` includes
    the ``suppress_tokens`` of ``model.generation_config`` (from the checkpoint), when it has them.
    Returns one DecodingResult per window.
    """
    options.validate()
    cfg = model.config
    if options.language is not None and not model.is_multilingual and options.language != "en":
        raise InputError(f"language: expected 'en' or None for an English-only model, found {options.language!r}")
    if options.task == "translate" and not model.is_multilingual:
        raise InputError("task: expected 'transcribe' for an English-only model, found 'translate'")
    p = next(model.parameters())
    dtype = torch.float16 if options.fp16 and p.device.type == "cuda" else p.dtype
    features = _features(model, mel_or_features, dtype).to(p.device)  # [B, S, W]
    B = features.shape[0]

    # Language: given, English for English-only models, or detected per window.
    language_probs: list[dict[str, float] | None] = [None] * B
    if options.language is not None:
        languages = [options.language] * B
    elif not model.is_multilingual:
        languages = ["en"] * B
    else:
        languages, language_probs = _detect(model, tokenizer, features)

    n_ctx = cfg.n_text_ctx
    sample_len = min(options.sample_len or n_ctx // 2, n_ctx)
    initial = [_initial_tokens(tokenizer, options, lang, n_ctx, sample_len) for lang in languages]
    sample_begin = len(initial[0])
    if sample_begin >= n_ctx:
        raise InputError(f"prompt and prefix: expected fewer than {n_ctx} initial tokens, found {sample_begin}")
    sot_index = initial[0].index(tokenizer.sot)

    rules: list[LogitRule] = []
    if options.suppress_blank:
        rules.append(SuppressBlank(tokenizer.encode(" ") + [tokenizer.eot], sample_begin))
    if options.suppress_tokens:
        config = getattr(model, "generation_config", None)
        rules.append(SuppressTokens(suppressed_ids(tokenizer, options.suppress_tokens,
                                                   getattr(config, "suppress_tokens", None))))
    if not options.without_timestamps:
        precision = CHUNK_LENGTH / cfg.n_audio_ctx  # seconds per timestamp step: 0.02
        max_initial = (round(options.max_initial_timestamp / precision)
                       if options.max_initial_timestamp else None)
        rules.append(ApplyTimestampRules(tokenizer.timestamp_begin, tokenizer.eot, tokenizer.no_timestamps,
                                         sample_begin, max_initial))

    if options.beam_size is not None:
        search = BeamSearch(options.beam_size, tokenizer.eot, options.patience)
        G = options.beam_size
    else:
        search = Sampler(options.temperature, tokenizer.eot, generator, groups=B)
        G = options.best_of or 1

    # The initial tokens run once per window; then the cache fans out to G rows per window.
    # The last sampled token is never fed back, hence the cache's length.
    cache = model.new_cache(B, min(n_ctx, sample_begin + sample_len))
    tokens = torch.tensor(initial, device=features.device)  # [B, sample_begin]
    logits = model.logits(tokens, features, cache=cache, positions=[sot_index, sample_begin - 1])  # [B, 2, V]
    no_speech = (logits[:, 0].float().softmax(dim=-1)[:, tokenizer.no_speech].tolist()
                 if tokenizer.no_speech is not None else [math.nan] * B)
    logits = logits[:, -1]
    if G > 1:
        fan_out = torch.arange(B, device=features.device).repeat_interleave(G)
        cache.reorder(fan_out, cross=False)  # the G rows of a window share its audio's keys/values
        tokens, logits = tokens[fan_out], logits[fan_out]
    sum_logprobs = torch.zeros(B * G, device=features.device)

    # A window whose search has ended leaves the batch (its rows are kept aside), so the others' steps
    # no longer carry it. Not while sampling: the remaining rows would draw other random numbers.
    can_leave = options.beam_size is not None or options.temperature == 0
    active = list(range(B))  # the windows the rows hold, G consecutive rows each
    rows_at_end: list[list[list[int]] | None] = [None] * B
    sums_at_end: list[list[float] | None] = [None] * B

    def set_aside(positions: list[int]) -> None:
        rows, sums = tokens.tolist(), sum_logprobs.tolist()
        for g in positions:
            rows_at_end[active[g]] = rows[g * G:(g + 1) * G]
            sums_at_end[active[g]] = sums[g * G:(g + 1) * G]

    for step in range(sample_len):
        if step > 0:
            logits = model.logits(tokens[:, -1:], None, cache=cache)[:, -1]
        for rule in rules:
            rule.apply(logits, tokens)
        tokens, source, done = search.step(tokens, logits, sum_logprobs)
        if source is not None and not torch.equal(source, torch.arange(len(source), device=source.device)):
            cache.reorder(source, cross=False)  # beams of one window share its audio
        if done or tokens.shape[1] > n_ctx:
            break
        if can_leave and len(active) > 1:
            ended = search.windows_done(tokens)
            if any(ended):
                set_aside([g for g, e in enumerate(ended) if e])
                keep = [g for g, e in enumerate(ended) if not e]
                rows = torch.tensor([g * G + j for g in keep for j in range(G)], device=tokens.device)
                cache.keep(rows, torch.tensor(keep, device=tokens.device))
                tokens, sum_logprobs = tokens[rows], sum_logprobs[rows]
                search.keep(keep)
                active = [active[g] for g in keep]

    set_aside(list(range(len(active))))
    candidates = search.finish(rows_at_end, sums_at_end)
    results = []
    for b, group in enumerate(candidates):
        group = [(seq[sample_begin:seq.index(tokenizer.eot, sample_begin)], lp) for seq, lp in group]
        best = rank([group], options.length_penalty)[0]
        seq, lp = group[best]
        text = tokenizer.decode(seq).strip()
        results.append(DecodingResult(tokens=seq, text=text, avg_logprob=lp / (len(seq) + 1),
                                      no_speech_prob=no_speech[b], temperature=options.temperature,
                                      compression_ratio=compression_ratio(text), language=languages[b],
                                      language_probs=language_probs[b]))
    return results
