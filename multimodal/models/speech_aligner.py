"""The speech aligner: which code frames of a clip say which symbol of its text, for training
text to speech with durations.

Method
------
1. **Recogniser.** A small bidirectional transformer on the shared backbone reads a clip's codec
   codes (the sum of one embedding per residual level, learned positions) and gives, per code frame,
   log-probabilities over the front end's symbols and a CTC blank. It is trained with the CTC loss
   against the clip's *sounding* symbols: every symbol but the silent ones (``SILENT``: the word
   space, stress marks and punctuation), which take no time of their own. With ``kind="conv"`` the
   network is a stack of residual convolutions instead, each frame seeing only its neighbours.
2. **Forced alignment** (``align``). The Viterbi path of the CTC topology (blank, s1, blank, s2, …,
   blank; a symbol may repeat over frames; two different symbols may follow each other without a
   blank) through the frame log-probabilities: the single most likely way of reading the clip as its
   text. Each sounding symbol owns the frames where the path holds it, plus its share of the blank
   frames around it (a run of blanks between two symbols is cut in half; leading blanks go to the
   first symbol, trailing blanks to the last). Silent symbols own no frame. With
   ``blanks="frames"`` (``align_frames``) there is no blank state: every frame goes to one symbol,
   the one it leans to once the blank is left out.
3. **Durations.** So the durations of a clip's symbols (silent ones 0) sum to its number of code
   frames, which is what ``TextToSpeechGPT`` trains its duration predictor on and expands its text
   with.

Against flite's own phone timing (``benchmarks/speech_alignment.py``) the defaults (transformer,
blank runs split) place word boundaries about a frame (20 ms) off on average; the convolutional
network does as well, and ``blanks="frames"`` worse with either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import BackboneConfig, Transformer
from ..config import Config
from ..errors import InputError, expect
from ..tokenizers import phonemes

ALIGNER_KINDS = ("transformer", "conv")
BLANK_RULES = ("split", "frames")
SILENT = frozenset(" '.,;!?")  # symbols that take no time of their own
_SILENT_TABLE = torch.zeros(phonemes.VOCAB + 1, dtype=torch.bool)  # by symbol id; PAD counts as silent
_SILENT_TABLE[phonemes.encode("".join(sorted(SILENT))) + [phonemes.PAD]] = True


def sounding(text_ids: torch.Tensor) -> torch.Tensor:
    """True where a symbol id takes time of its own: neither PAD nor one of ``SILENT``."""
    return ~_SILENT_TABLE.to(text_ids.device)[text_ids]


@dataclass
class SpeechAlignerConfig(Config):
    codebook_size: int = 512
    levels: int = 4
    max_frames: int = 400
    width: int = 192
    depth: int = 4
    heads: int = 6
    kind: str = "transformer"  # transformer (whole-clip context) | conv (a local window of frames)
    kernel: int = 5  # frames each conv block sees (kind "conv")
    blanks: str = "split"  # split (a run of blanks is cut in half) | frames (every frame to a symbol)

    def __post_init__(self):
        self.check_positive_ints("codebook_size", "levels", "max_frames", "width", "depth", "heads", "kernel")
        expect(self.kind in ALIGNER_KINDS, "SpeechAlignerConfig.kind", f"one of {', '.join(ALIGNER_KINDS)}",
               repr(self.kind))
        expect(self.blanks in BLANK_RULES, "SpeechAlignerConfig.blanks", f"one of {', '.join(BLANK_RULES)}",
               repr(self.blanks))
        expect(self.kernel % 2 == 1, "SpeechAlignerConfig.kernel", "an odd number of frames", self.kernel)

    @property
    def blank(self) -> int:
        return phonemes.VOCAB  # the CTC blank takes PAD's id: PAD is never a target

    def backbone(self) -> BackboneConfig:
        return BackboneConfig(width=self.width, depth=self.depth, heads=self.heads, mlp_hidden=4 * self.width,
                              positions="learned", max_len=self.max_frames)


class ConvBlock(nn.Module):
    """A residual block that sees ``kernel`` neighbouring frames: LayerNorm, Conv1d over time, GELU,
    a pointwise Linear (padding frames are zeroed before the convolution)."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, 2 * width, kernel, padding=kernel // 2)
        self.out = nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).masked_fill(padding[..., None], 0.0)
        h = F.gelu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return x + self.out(h)


class SpeechAligner(nn.Module):
    """``forward(codes [B, levels, T], frames [B]) -> log-probs [B, T, VOCAB + 1]``; ``loss`` (CTC) and
    ``durations`` (forced alignment)."""

    def __init__(self, config: SpeechAlignerConfig):
        super().__init__()
        self.config = c = config
        self.code_embed = nn.ModuleList(nn.Embedding(c.codebook_size, c.width) for _ in range(c.levels))
        if c.kind == "transformer":
            self.transformer = Transformer(c.backbone())
        else:
            self.convs = nn.ModuleList(ConvBlock(c.width, c.kernel) for _ in range(c.depth))
            self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, phonemes.VOCAB + 1)
        for table in self.code_embed:
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, codes: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        c = self.config
        if codes.ndim != 3 or codes.shape[1] < c.levels or codes.shape[2] > c.max_frames:
            raise InputError(f"codes: expected [batch, >= {c.levels}, <= {c.max_frames}], found {tuple(codes.shape)}")
        x = sum(table(codes[:, level]) for level, table in enumerate(self.code_embed))
        padding = torch.arange(codes.shape[2], device=codes.device)[None] >= frames.to(codes.device)[:, None]
        if c.kind == "transformer":
            h = self.transformer(x, key_padding_mask=padding)
        else:
            h = x
            for block in self.convs:
                h = block(h, padding)
            h = self.norm(h)
        return F.log_softmax(self.head(h).float(), dim=-1)

    @staticmethod
    def targets(text_ids: torch.Tensor) -> list[list[int]]:
        """Each row's sounding symbols (PAD and ``SILENT`` left out), in order."""
        return [row[keep].tolist() for row, keep in zip(text_ids, sounding(text_ids))]

    def loss(self, codes: torch.Tensor, frames: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """The CTC loss of the clips' sounding symbols, per target symbol, averaged over the batch."""
        log_probs = self(codes, frames)
        rows = self.targets(text_ids)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        flat = torch.tensor([i for r in rows for i in r], dtype=torch.long)
        return F.ctc_loss(log_probs.transpose(0, 1), flat, frames.cpu(), lengths, blank=self.config.blank,
                          reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def durations(self, codes: torch.Tensor, frames: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """Code frames per symbol ``[B, text_length]`` (int64; PAD and silent symbols 0; a row sums to
        its ``frames``)."""
        log_probs = self(codes, frames).cpu()
        out = torch.zeros(text_ids.shape, dtype=torch.long)
        text_ids = text_ids.cpu()
        for b, (row, keep) in enumerate(zip(text_ids, sounding(text_ids))):
            where = torch.nonzero(keep).flatten()
            if not len(where):
                continue
            rule = align if self.config.blanks == "split" else align_frames
            out[b, where] = rule(log_probs[b, :int(frames[b])], row[where], self.config.blank)
        return out


def align(log_probs: torch.Tensor, targets: torch.Tensor, blank: int) -> torch.Tensor:
    """Forced alignment of frame log-probabilities ``[T, C]`` to ``targets [N]`` (no blanks in it):
    frames per target ``[N]`` summing to T (see the module docstring). With fewer frames than the path
    needs, frames are shared out as evenly as possible."""
    T, N = log_probs.shape[0], len(targets)
    targets = targets.long()
    repeats = int((targets[1:] == targets[:-1]).sum()) if N > 1 else 0
    if T < N + repeats:
        return torch.tensor([T // N + (1 if i < T % N else 0) for i in range(N)], dtype=torch.long)
    S = 2 * N + 1
    labels = torch.full((S,), blank, dtype=torch.long)
    labels[1::2] = targets
    emit = log_probs[:, labels]  # [T, S]
    # a state may be entered from itself, the one before, or (a symbol unlike the one two before) two before
    skip = torch.zeros(S, dtype=torch.bool)
    skip[3::2] = targets[1:] != targets[:-1]
    neg = torch.tensor(float("-inf"))
    score = torch.full((S,), float("-inf"))
    score[:2] = emit[0, :2]
    back = torch.zeros(T, S, dtype=torch.long)
    index = torch.arange(S)
    for t in range(1, T):
        stay = score
        step = torch.cat([neg[None], score[:-1]])
        jump = torch.where(skip, torch.cat([neg[None].expand(2), score[:-2]]), neg)
        best = torch.stack([stay, step, jump])  # [3, S]
        choice = best.argmax(0)
        score = best.gather(0, choice[None])[0] + emit[t]
        back[t] = index - choice
    state = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    path = torch.empty(T, dtype=torch.long)
    for t in range(T - 1, -1, -1):
        path[t] = state
        state = int(back[t, state])
    return _owned_frames(path, N)


def align_frames(log_probs: torch.Tensor, targets: torch.Tensor, blank: int) -> torch.Tensor:
    """Forced alignment without blanks: every frame belongs to one target, in order, each target at
    least one frame; the path maximises the sum of the frames' log-probabilities of their target among
    the targets alone (the blank left out and the rest renormalised), so a frame the recogniser
    calls blank still goes to the symbol it leans to. Frames per target ``[N]`` summing to T (with
    fewer frames than targets, shared out as evenly as possible)."""
    T, N = log_probs.shape[0], len(targets)
    if T < N:
        return torch.tensor([T // N + (1 if i < T % N else 0) for i in range(N)], dtype=torch.long)
    symbols = torch.cat([log_probs[:, :blank], log_probs[:, blank + 1:]], dim=1)
    emit = log_probs[:, targets.long()] - torch.logsumexp(symbols, dim=1, keepdim=True)  # [T, N]
    neg = torch.tensor(float("-inf"))
    score = torch.full((N,), float("-inf"))
    score[0] = emit[0, 0]
    moved = torch.zeros(T, N, dtype=torch.bool)
    for t in range(1, T):
        step = torch.cat([neg[None], score[:-1]])
        moved[t] = step > score
        score = torch.maximum(score, step) + emit[t]
    owner = torch.empty(T, dtype=torch.long)
    n = N - 1
    for t in range(T - 1, -1, -1):
        owner[t] = n
        if t > 0 and moved[t, n]:
            n -= 1
    return torch.bincount(owner, minlength=N)


def _owned_frames(path: torch.Tensor, n: int) -> torch.Tensor:
    """Frames per symbol from a path of CTC states (odd: symbol (s - 1) / 2; even: blank)."""
    owner = torch.full((len(path),), -1, dtype=torch.long)
    on_symbol = path % 2 == 1
    owner[on_symbol] = (path[on_symbol] - 1) // 2
    spots = torch.nonzero(on_symbol).flatten()
    if len(spots):
        first, last = int(spots[0]), int(spots[-1])
        owner[:first] = owner[first]
        owner[last + 1:] = owner[last]
        t = first
        while t <= last:  # cut every run of blanks between two symbols in half
            if owner[t] >= 0:
                t += 1
                continue
            end = t
            while owner[end] < 0:
                end += 1
            half = (end - t + 1) // 2
            owner[t:t + half] = owner[t - 1]
            owner[t + half:end] = owner[end]
            t = end
    return torch.bincount(owner.clamp_min(0), minlength=n)[:n]
