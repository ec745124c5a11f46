"""FSDP2 for the trainer (``TrainConfig.parallel = "fsdp"`` under torchrun): the model's parameters,
gradients and optimizer state sharded over the ranks, and checkpoints that every rank writes its
shards of (``torch.distributed.checkpoint``), which load on any number of processes, sharded or not.

Sharding is ``fully_shard`` on every backbone ``Block`` (each gathers its parameters just for its own
forward and backward) and then on the whole model (the embeddings and heads outside the blocks).
With bf16 mixed precision the parameters compute in bfloat16 while the sharded copies, the gradient
reduction and the optimizer stay float32.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)

from ..backbone.blocks import Block

DCP_DIR = "dcp"  # the sharded checkpoint's folder inside checkpoint/


def shard(model: nn.Module, bf16: bool) -> None:
    """Shard ``model`` in place over the default process group: each ``Block``, then the root. Every
    rank first takes rank 0's weights, so that all ranks shard one model."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
              else MixedPrecisionPolicy())
    for module in list(model.modules()):
        if isinstance(module, Block):
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict of a sharded model, on the CPU of rank 0 (other ranks get an
    empty dict). Every rank must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _states(model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None) -> dict:
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    if ema is not None:
        state["ema"] = get_model_state_dict(ema)
    return state


def save(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None = None) -> None:
    """Every rank writes its shards of the weights, the optimizer state and the EMA into ``folder``."""
    dcp.save(_states(model, optimizer, ema), checkpoint_id=str(folder))


def load(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None = None) -> None:
    """Read a checkpoint of ``save`` into ``model``, ``optimizer`` and ``ema``, resharded for this
    run's processes: sharded over another number of ranks, or whole in one process."""
    state = _states(model, optimizer, ema)
    dcp.load(state, checkpoint_id=str(folder))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])
    if ema is not None:
        set_model_state_dict(ema, state["ema"])
