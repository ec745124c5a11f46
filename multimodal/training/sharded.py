"""FSDP2 for the trainer (``TrainConfig.parallel = "fsdp"`` under torchrun): the model's parameters,
gradients and optimizer state sharded over the ranks, and checkpoints that every rank writes its
shards of (``torch.distributed.checkpoint``), which load on any number of processes, sharded or not.

Sharding is ``fully_shard`` on every backbone ``Block`` (each gathers its parameters just for its own
forward and backward) and then on the whole model (the embeddings and heads outside the blocks);
frozen parameters stay whole on every rank.
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
# Methods of the models' roots that training losses call besides forward (TextToImage.loss,
# Whisper.logits): under FSDP each gathers the root's parameters as forward does, under DDP each
# runs through DDP's forward (``trainer._ThroughDDP``).
ENTRY_POINTS = ("loss", "logits")


def shard(model: nn.Module, bf16: bool, whole: set[str] | None = None) -> None:
    """Shard ``model`` in place over the default process group: each ``Block``, then the root. Every
    rank first takes rank 0's weights, so that all ranks shard one model. ``whole``: names of
    parameters left whole on every rank (default: the frozen ones; an EMA copy, frozen throughout,
    passes its model's set so that both shard alike)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
              else MixedPrecisionPolicy())
    # Frozen parameters (a text-to-image model's autoencoder, a LoRA base) stay whole on every rank:
    # they have no gradients or optimizer state to shard, and the loss may call their modules
    # directly (``model.vae.encode``), outside the forward that gathers sharded parameters.
    if whole is None:
        whole = {name for name, p in model.named_parameters() if not p.requires_grad}
    kept = {p for name, p in model.named_parameters() if name in whole}
    for module in list(model.modules()):
        if isinstance(module, Block) and any(p not in kept for p in module.parameters()):
            fully_shard(module, mp_policy=policy, ignored_params=kept & set(module.parameters()))
    fully_shard(model, mp_policy=policy, ignored_params=kept)
    for name in ENTRY_POINTS:  # a loss may call these instead of forward; they gather like it
        if callable(getattr(model, name, None)):
            register_fsdp_forward_method(model, name)


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
