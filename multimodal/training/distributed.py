"""torchrun / DDP set-up, and the random-number state that an exact resume has to carry per rank.

``torchrun`` tells each process who it is through WORLD_SIZE, RANK and LOCAL_RANK; a plain
``python`` run has none of them and is rank 0 of 1. gloo carries CPU runs, nccl CUDA runs.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_process_group: bool  # True when we initialised it, so we also tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            # Every rank reaches teardown before any leaves: without the barrier a rank that tears
            # down first can abort another's gloo thread mid-exchange ("terminate called without an
            # active exception").
            dist.barrier()
            dist.destroy_process_group()
            self.owns_process_group = False


def setup_distributed(device: str = "auto") -> Distributed:
    """Read torchrun's environment, pick this process's device and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"device: expected auto, cpu, cuda or cuda:N, found {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: expected a CUDA device to be present for {device!r}, found none")
        if dev.index is None:  # one GPU per process, chosen by torchrun's local rank
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Distributed(rank, world, local, dev, owns)


# ----------------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(device: torch.device) -> dict:
    """All generators that a training step may draw from (dropout, augmentation, noise)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(state["numpy"])
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    # random.setstate wants tuples all the way down; a JSON round trip may hand back lists
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def gather_rng_states(dd: Distributed) -> list[dict]:
    """Every rank's RNG state, on every rank (ranks draw different dropout masks)."""
    mine = rng_state(dd.device)
    if not dd.enabled:
        return [mine]
    everyone: list = [None] * dd.world_size
    # An in-memory exchange between our own processes; nothing is unpickled from disk.
    dist.all_gather_object(everyone, mine)
    return everyone
