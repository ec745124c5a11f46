"""Tiny model, data and loss shared by tests/test_training.py and its torchrun worker.

As a script (under ``python -m torch.distributed.run --nproc_per_node 2``) it trains the tiny
classifier with DDP and, after every step, has rank 0 write the weights to
``OUT_DIR/step{N}.safetensors``; the test compares them with single-process training. With
``fsdp`` it trains with FSDP2 instead and rank 0 writes the (gathered) EMA weights after every
step; with ``fsdp resume`` it resumes the run's sharded checkpoint and writes the EMA weights it
loaded to ``OUT_DIR/resumed.safetensors``. Rank 0 writes ``OUT_DIR/world.json``: the world size, the
parallel mode and the number of nodes (torchrun's agents) that took part.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from multimodal.backbone import BackboneConfig, Transformer
from multimodal.checkpoint import save_tensors
from multimodal.training import TrainConfig, Trainer

SEQ, FEATURES, CLASSES = 6, 5, 3


class TinyClassifier(nn.Module):
    """Linear embedding -> shared backbone -> mean pool -> linear head."""

    def __init__(self, dropout: float = 0.0, width: int = 16):
        super().__init__()
        self.embed = nn.Linear(FEATURES, width)
        # No key bias: softmax ignores it, so its true gradient is 0 and its float gradient is rounding
        # noise, which Adam's first step (g / sqrt(g^2)) blows up to +-lr. Comparisons need real signal.
        self.backbone = Transformer(BackboneConfig(width=width, depth=2, heads=2, positions="learned",
                                                   max_len=SEQ, dropout=dropout, k_bias=False))
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, SEQ, FEATURES] -> [B, CLASSES]
        return self.head(self.backbone(self.embed(x)).mean(dim=1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """forward by another name: losses that call a method (Whisper.logits, TextToImage.loss) must
        train under DDP and FSDP as forward does."""
        return self.forward(x)


def make_model(dropout: float = 0.0, seed: int = 0) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(dropout)


def make_dataset(n: int = 40, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, SEQ, FEATURES, generator=g)
    y = (x[:, :, 0].sum(dim=1) > 0).long() + (x[:, :, 1].sum(dim=1) > 1).long()  # 3 classes
    return TensorDataset(x, y)


def classification_loss(model, batch):
    x, y = batch
    logits = model.logits(x) if model.training else model(x)
    loss = F.cross_entropy(logits, y)
    return loss, {"acc": (logits.argmax(-1) == y).float().mean()}


def ddp_config(out_dir: str, max_steps: int) -> TrainConfig:
    return TrainConfig(out_dir=out_dir, max_steps=max_steps, batch_size=8, grad_accum=2, lr=3e-3, warmup_steps=1,
                       grad_clip=0.5, ema_decay=0.9, eval_every=1, save_every=0, log_every=1, seed=3, device="cpu")


def run(out_dir: str, max_steps: int, progress: bool = False, parallel: str = "ddp", resume: bool = False) -> Trainer:
    """Train with a snapshot of the weights after every step (works with and without torchrun): of
    the trained weights with DDP, of the EMA (the evaluated weights, gathered whole) with FSDP."""
    trainer = None

    def snapshot(eval_model):
        # eval_fn sees the EMA; the DDP snapshot is of the trained weights themselves
        weights = eval_model.state_dict() if parallel == "fsdp" else trainer.model.state_dict()
        save_tensors(f"{out_dir}/step{trainer.step}.safetensors", weights)
        return {}

    config = dataclasses.replace(ddp_config(out_dir, max_steps), parallel=parallel)
    trainer = Trainer(make_model(), config, classification_loss, dataset=make_dataset(), eval_fn=snapshot,
                      progress=progress, resume=resume)
    trainer.train()
    return trainer


if __name__ == "__main__":
    torch.set_num_threads(1)
    out_dir, max_steps = sys.argv[1], int(sys.argv[2])
    parallel = "fsdp" if "fsdp" in sys.argv[3:] else "ddp"
    resume = "resume" in sys.argv[3:]
    trainer = run(out_dir, max_steps, parallel=parallel, resume=resume)
    if trainer.is_main:  # proves the run really was distributed
        with open(f"{out_dir}/world.json", "w") as f:
            json.dump({"world_size": trainer.dist.world_size, "parallel": parallel,
                       "nodes": int(os.environ.get("GROUP_WORLD_SIZE", "1"))}, f)
        if resume:
            save_tensors(f"{out_dir}/resumed.safetensors", trainer.eval_model.state_dict())
    # Leave without the interpreter's teardown: the process group is already closed (Trainer.close),
    # every file above is written and closed, and gloo's threads can otherwise abort a rank at exit
    # ("terminate called without an active exception") after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
