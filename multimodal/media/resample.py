"""Resampling in blocks: torchaudio's windowed-sinc kernel applied to a stream, with joins that
equal resampling the whole signal at once.

Rates whose ratio to the target does not reduce to small integers (44 101 Hz …) would need kernels
of gigabytes; they are resampled through a nearby ratio of smaller terms (see ``resampling_ratio``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torchaudio.transforms as AT

_MAX_RATIO_TERMS = 1 << 22  # numerator * denominator: torchaudio's kernel has about that many taps (16 MB)
_RATIO_TOLERANCE = 1e-6  # relative error allowed when a rate ratio must be approximated


def resampling_ratio(orig: int, new: int) -> Fraction:
    """orig / new reduced, exact when torchaudio's kernel for it stays small (every common rate);
    otherwise the cheapest best rational approximation within 1e-6, or, where none is cheap enough
    (rates within a few hertz of a multiple of 16 kHz, such as 15995 Hz), the closest that is."""
    exact = Fraction(orig, new)
    if exact.numerator * exact.denominator <= _MAX_RATIO_TERMS:
        return exact
    best, limit = None, 8  # MIN_RATE and MAX_RATE keep the first candidate far under the cap
    while True:
        approx = exact.limit_denominator(limit)
        if approx.numerator * approx.denominator > _MAX_RATIO_TERMS:
            return best
        best = approx
        if abs(approx / exact - 1) <= _RATIO_TOLERANCE:
            return best
        limit = limit * 5 // 4 + 1


class Resampler:
    """torchaudio's sinc resampling, fed block by block, equal to resampling the whole signal at once.

    With the rate ratio reduced to o/n, output sample j is a kernel sum over inputs around j*o/n, and
    torchaudio evaluates it in groups of n outputs per o inputs, reaching ``width`` inputs to either
    side. Each call resamples the new whole groups together with ``context`` (≥ width, a multiple
    of o) earlier and later inputs and keeps only the groups whose reach lies inside the piece, so
    no output ever sees the zero padding of a block edge, only that of the signal's true ends.
    """

    def __init__(self, orig: int, new: int):
        ratio = resampling_ratio(orig, new)
        self.o, self.n = ratio.numerator, ratio.denominator
        self.identity = self.o == self.n
        if not self.identity:
            self.resample = AT.Resample(self.o, self.n)  # default kernel: Hann-windowed sinc, 6 zeros, rolloff 0.99
            width = math.ceil(6 * self.o / (0.99 * min(self.o, self.n)))
            self.context = self.o * math.ceil(width / self.o)
        self.buffer = np.empty(0, np.float32)
        self.buffer_start = 0  # input index of buffer[0]
        self.pos = 0  # first input (a multiple of o) whose outputs are not out yet
        self.seen = 0  # inputs received

    def __call__(self, block: np.ndarray) -> np.ndarray:
        self.seen += len(block)
        if self.identity:
            return block
        self.buffer = np.concatenate([self.buffer, block]) if len(self.buffer) else block
        groups = (self.seen - self.pos - self.context) // self.o
        if groups <= 0:
            return np.empty(0, np.float32)
        stop = self.pos + groups * self.o + self.context
        out = self._run(stop, groups * self.n)
        self.pos += groups * self.o
        keep_from = max(0, self.pos - self.context)
        self.buffer = self.buffer[keep_from - self.buffer_start:]
        self.buffer_start = keep_from
        return out

    def flush(self) -> np.ndarray:
        """The outputs still owed: up to ceil(seen * n / o) in all, as for the whole signal."""
        if self.identity or self.seen == self.pos:
            return np.empty(0, np.float32)
        return self._run(self.seen, math.ceil((self.seen - self.pos) * self.n / self.o))

    def _run(self, stop: int, count: int) -> np.ndarray:
        piece = torch.from_numpy(np.ascontiguousarray(self.buffer[:stop - self.buffer_start]))
        skip = (self.pos - self.buffer_start) // self.o * self.n
        with torch.no_grad():
            return self.resample(piece)[skip:skip + count].numpy()
