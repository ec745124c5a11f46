"""Helpers that several test files share: random weights, closeness to a reference, generated garments.

Test files import them as ``from helpers import ...`` (pytest puts tests/ on ``sys.path``, as it does
for ``conftest``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Every parameter (zero-initialised ones, biases, norms and positions included) drawn from
    N(0, scale^2), seeded; the module in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module.eval()


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> float:
    """Assert that ``ours`` has ``ref``'s shape and differs from it by at most ``tol`` anywhere (in
    float32, whatever the dtypes); returns the largest difference."""
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)}, reference {tuple(ref.shape)}"
    diff = (ours.float() - ref.float()).abs().max().item()
    assert diff <= tol, f"max |ours - reference| = {diff:.3g} > {tol}"
    return diff


def fake_fashion(per_class: int = 2, thin_sandals: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-like garments, uint8 [10 * per_class, 28, 28] and their labels: label c is a bright
    rectangle 6 + 2c pixels wide with a darker stripe across it, its height varying within a class.
    ``thin_sandals``: label 5 (sandal) is instead three thin one-pixel straps, which antialiasing
    leaves nowhere fully opaque."""
    images = np.zeros((10 * per_class, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), per_class)
    for i, c in enumerate(labels):
        half, top = 3 + c, 3 + i % per_class
        images[i, top:25, 14 - half:14 + half] = 220
        images[i, 12:14, 14 - half:14 + half] = 90
    if thin_sandals:
        for i in np.flatnonzero(labels == 5):
            images[i] = 0
            images[i, 10 + i % per_class, 2:26] = 200
            images[i, 18, 4:24] = 160
            images[i, 4:24, 8] = 180
    return images, labels


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root: Path, train: int = 120, test: int = 40, seed: int = 0) -> Path:
    """``root`` (created) holding gzipped IDX files in Fashion-MNIST's layout: ``train`` and ``test``
    garments of ``fake_fashion`` (multiples of 10), each over its own seeded faint noise, so that no
    two images, within a split or across splits, are equal."""
    if train % 10 or test % 10:
        raise ValueError(f"train, test: expected multiples of 10 (one size per class), found {train}, {test}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir()
    for split, n in (("train", train), ("t10k", test)):
        images, labels = fake_fashion(n // 10)
        images = np.maximum(images, rng.integers(0, 60, images.shape))
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(_idx_bytes(images))
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(_idx_bytes(labels))
    return root


class DecisionMargins:
    """How clear each choice of ``multimodal.generation.whisper_decoding.decode`` was, for tests that
    compare decoded tokens with another implementation (openai-whisper, CTranslate2) whose float
    rounding differs from ours (and differs again with each CPU's kernels).

    Used as ``with DecisionMargins() as margins: decode(...)``, it records, per decoded window, the
    smallest gap (in log-probability) of every choice a rounding error could flip: the top two tokens
    of a greedy step, the timestamp-or-text rule, neighbouring beam candidates up to the last one a
    beam step looks at, and the ranking of finished candidates. ``clear_steps(window, threshold)``
    is how many sampled tokens of that window came from choices with a gap of at least
    ``threshold``: up to there, two implementations must agree token for token. Beam search couples
    its steps, so for beams only ``all_clear(window, threshold)`` is meaningful.
    """

    def __init__(self):
        self.steps: dict[int, list[float]] = {}  # window -> the smallest gap of each step
        self.final: dict[int, float] = {}  # window -> the smallest gap of the final ranking
        self._patches: list[tuple[object, str, object]] = []
        self._pending: torch.Tensor | None = None  # the timestamp rule's gaps of the current step

    @staticmethod
    def _gap(values: torch.Tensor) -> torch.Tensor:
        """values [N, k] sorted descending -> the smallest gap between finite neighbours per row."""
        gaps = values[:, :-1] - values[:, 1:]
        gaps = torch.where(torch.isfinite(gaps), gaps, torch.full_like(gaps, float("inf")))
        return gaps.min(dim=1).values

    def _record(self, window_of_row: list[int], gaps: torch.Tensor, rows: list[bool] | None = None) -> None:
        per_window: dict[int, float] = {}
        for r, (w, gap) in enumerate(zip(window_of_row, gaps.tolist())):
            if rows is None or rows[r]:
                per_window[w] = min(per_window.get(w, float("inf")), gap)
        for w in set(window_of_row):
            self.steps.setdefault(w, []).append(per_window.get(w, float("inf")))

    def __enter__(self) -> "DecisionMargins":
        from multimodal.generation import whisper_decoding as wd

        margins = self

        def force_timestamps(rule, logits):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            gap = (logprobs[:, rule.tb:].logsumexp(dim=-1) - logprobs[:, :rule.tb].max(dim=-1).values).abs()
            margins._pending = torch.where(torch.isnan(gap), torch.full_like(gap, float("inf")), gap)
            return original["force"](rule, logits)

        def sampler_step(sampler, tokens, logits, sum_logprobs):
            if sampler.temperature == 0:
                gaps = margins._gap(logits.float().topk(2, dim=-1).values)
                if margins._pending is not None:
                    gaps = torch.minimum(gaps, margins._pending)
                running = (tokens[:, -1] != sampler.eot).tolist()
                G = len(running) // len(sampler.windows)  # rows per window; windows that ended have left
                margins._record([sampler.windows[r // G] for r in range(len(running))], gaps, running)
            margins._pending = None
            return original["sample"](sampler, tokens, logits, sum_logprobs)

        def beam_step(search, tokens, logits, sum_logprobs):
            K = search.beam_size
            groups = tokens.shape[0] // K
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            top_lp, top_ids = logprobs.topk(K + 2, dim=-1)  # one past the candidates a beam offers
            scores = (sum_logprobs[:, None] + top_lp[:, :K + 1]).view(groups, -1)
            ids = top_ids[:, :K + 1].reshape(groups, -1)
            per_beam = K + 1 if search.finished is not None else 1  # the first step extends one beam
            gaps = []
            for g in range(groups):
                flat = scores[g].view(K, K + 1)[:per_beam].reshape(-1)
                flat_ids = ids[g].view(K, K + 1)[:per_beam].reshape(-1).tolist()
                order = flat.sort(descending=True, stable=True).indices.tolist()
                kept = look = 0
                for c in order:  # the step reads candidates until K of them continue
                    look += 1
                    kept += flat_ids[c] != search.eot
                    if kept == K:
                        break
                gap = float(margins._gap(flat[order][None, :look + 1])[0])
                for c in order[:look]:  # a beam's last candidate was read: its rank among the tokens
                    if c % (K + 1) == K:
                        row = g * K + c // (K + 1)
                        gap = min(gap, float(top_lp[row, K] - top_lp[row, K + 1]))
                if margins._pending is not None:
                    gap = min(gap, float(margins._pending[g * K:(g + 1) * K].min()))
                gaps.append(gap)
            margins._record(search.windows or list(range(groups)), torch.tensor(gaps))
            margins._pending = None
            return original["beam"](search, tokens, logits, sum_logprobs)

        def rank(candidates, length_penalty):
            best = original["rank"](candidates, length_penalty)
            for w, group in enumerate(candidates):
                n = lambda t: len(t) if length_penalty is None else ((5 + len(t)) / 6) ** length_penalty  # noqa: E731
                scores = sorted((lp / n(t) for t, lp in group), reverse=True)
                margins.final[len(margins.final)] = scores[0] - scores[1] if len(scores) > 1 else float("inf")
            return best

        original = {"force": wd.ApplyTimestampRules.force_timestamps, "sample": wd.Sampler.step,
                    "beam": wd.BeamSearch.step, "rank": wd.rank}
        self._patches = [(wd.ApplyTimestampRules, "force_timestamps", force_timestamps),
                         (wd.Sampler, "step", sampler_step), (wd.BeamSearch, "step", beam_step), (wd, "rank", rank)]
        for owner, name, new in self._patches:
            setattr(owner, name, new)
        self._original = original  # in the order of self._patches
        return self

    def __exit__(self, *exc) -> None:
        for (owner, name, _), old in zip(self._patches, self._original.values()):
            setattr(owner, name, old)

    def clear_steps(self, window: int, threshold: float) -> int:
        """How many sampled tokens of ``window`` were chosen by gaps of at least ``threshold``."""
        steps = self.steps.get(window, [])
        return next((i for i, gap in enumerate(steps) if gap < threshold), len(steps))

    def smallest(self, window: int) -> float:
        return min(self.steps.get(window, [float("inf")]) + [self.final.get(window, float("inf"))])

    def all_clear(self, window: int, threshold: float) -> bool:
        return self.smallest(window) >= threshold
