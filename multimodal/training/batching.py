"""The data of each optimizer step: which examples (``StepSampler``), drawn how (``step_generator``),
cut into micro-batches (``split_batch``) and moved to the device (``to_device``).

Exact resume rests on one rule: the data of optimizer step ``s`` is a function of ``s`` alone. A
dataset's order in each epoch is drawn from ``(seed, epoch)``; a ``batch_fn`` draws from
``step_generator(seed, s, rank)``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from ..errors import expect
from .config import TrainConfig


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of optimizer step ``step`` on ``rank``: its own stream, a function of the three
    numbers only, so a batch_fn that draws from it gives a resumed run exactly the batches an
    uninterrupted one would."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2 ** 63 - 1))


class StepSampler(Sampler):
    """This rank's micro-batch index lists for optimizer steps ``start .. stop-1``.

    Step ``s`` reads global batch ``s % per_epoch`` of epoch ``s // per_epoch`` (drop_last). Rank
    ``r`` takes the r-th slice of that batch and cuts it into ``grad_accum`` micro-batches.
    """

    def __init__(self, n: int, cfg: TrainConfig, rank: int, world_size: int, start: int):
        self.n, self.cfg, self.rank, self.world_size, self.start = n, cfg, rank, world_size, start
        self.per_epoch = n // cfg.batch_size

    def __len__(self) -> int:
        return (self.cfg.max_steps - self.start) * self.cfg.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        B, A = self.cfg.batch_size, self.cfg.grad_accum
        per_rank = B // self.world_size
        micro = per_rank // A
        order, order_epoch = None, -1
        for step in range(self.start, self.cfg.max_steps):
            epoch, pos = divmod(step, self.per_epoch)
            if epoch != order_epoch:
                order, order_epoch = np.random.default_rng([self.cfg.seed, epoch]).permutation(self.n), epoch
            mine = order[pos * B + self.rank * per_rank:pos * B + (self.rank + 1) * per_rank]
            for i in range(A):
                yield mine[i * micro:(i + 1) * micro].tolist()


def split_batch(batch: Any, n: int, where: str = "batch") -> list:
    """Cut a batch into ``n`` micro-batches: tensors along dim 0, dicts / tuples / lists field by field,
    a list of strings (captions, transcripts) as examples; other values go to every micro-batch."""
    expect(isinstance(n, int) and not isinstance(n, bool) and n > 0, "n", "a positive number of micro-batches", n)
    if n == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        expect(batch.ndim > 0 and batch.shape[0] % n == 0, where, f"a batch dimension divisible by grad_accum ({n})",
               tuple(batch.shape))
        return list(batch.chunk(n))
    if isinstance(batch, dict):
        parts = {k: split_batch(v, n, f"{where}[{k!r}]") for k, v in batch.items()}
        return [{k: p[i] for k, p in parts.items()} for i in range(n)]
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(v, str) for v in batch):
        expect(len(batch) % n == 0, where, f"a list length divisible by grad_accum ({n})", len(batch))
        size = len(batch) // n
        return [type(batch)(batch[i * size:(i + 1) * size]) for i in range(n)]
    if isinstance(batch, (list, tuple)):
        parts = [split_batch(v, n, f"{where}[{j}]") for j, v in enumerate(batch)]
        rebuild = (lambda xs: type(batch)(*xs)) if hasattr(batch, "_fields") else type(batch)
        return [rebuild([p[i] for p in parts]) for i in range(n)]
    return [batch] * n


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (through dicts, lists, tuples and named tuples) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not (batch and isinstance(batch[0], str)):
        items = [to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch
