"""``TrainConfig``: every setting of a training run, its command-line flags and its learning-rate schedule."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field

from ..config import Config
from ..errors import expect

# Fields a resumed run may change: they move files, set how often things happen or how fast a step
# runs, but never change the arithmetic of a step. Every other field must match the checkpoint.
FREE_ON_RESUME = ("out_dir", "eval_every", "save_every", "log_every", "num_workers", "compile", "device", "parallel")
PARALLEL = ("ddp", "fsdp")


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig(Config):
    out_dir: str = _help("run folder: checkpoint/, best/, metrics.jsonl, loss.png", "runs/train")
    max_steps: int = _help("optimizer steps in the whole run", 1000)
    batch_size: int = _help("global batch: examples per optimizer step over all ranks and micro-steps", 32)
    grad_accum: int = _help("micro-steps per optimizer step", 1)
    lr: float = _help("peak learning rate", 3e-4)
    weight_decay: float = _help("AdamW decoupled weight decay (never on 1-D parameters)", 0.05)
    betas: tuple[float, float] = _help("AdamW betas", (0.9, 0.999))
    warmup_steps: int = _help("steps of linear warmup", 0)
    min_lr_ratio: float = _help("the cosine decays the learning rate to lr * min_lr_ratio", 0.1)
    grad_clip: float | None = _help("clip the global gradient norm to this (none: off)", 1.0)
    ema_decay: float | None = _help("decay of the weight EMA, e.g. 0.9999 (none: off)", None)
    eval_every: int = _help("evaluate every N steps (0: only at the end)", 0)
    save_every: int = _help("checkpoint every N steps (0: only at the end)", 1000)
    log_every: int = _help("log every N steps", 10)
    select_metric: str | None = _help("eval metric that picks the best weights for best/ (none: off)", None)
    select_mode: str = _help("max or min: which way select_metric improves", "max")
    seed: int = _help("seed of weights-independent randomness: data order, dropout", 0)
    amp: str = _help("auto (bf16 on CUDA, none on CPU), bf16 or none", "auto")
    compile: bool = _help("torch.compile the model for training", False)
    num_workers: int = _help("DataLoader worker processes", 0)
    device: str = _help("auto (CUDA when present), cpu, cuda or cuda:N", "auto")
    parallel: str = _help("under torchrun: ddp (a full copy per rank) or fsdp (FSDP2: parameters, gradients and "
                          "optimizer state sharded over the ranks, sharded checkpoints)", "ddp")

    def __post_init__(self):
        self.betas = tuple(self.betas)
        positive = ("max_steps", "batch_size", "grad_accum")
        for name in positive:
            value = getattr(self, name)
            expect(isinstance(value, int) and value > 0, f"TrainConfig.{name}", "a positive integer", value)
        for name in ("warmup_steps", "eval_every", "save_every", "log_every", "num_workers"):
            value = getattr(self, name)
            expect(isinstance(value, int) and value >= 0, f"TrainConfig.{name}", "an integer >= 0", value)
        expect(self.lr > 0, "TrainConfig.lr", "> 0", self.lr)
        expect(self.weight_decay >= 0, "TrainConfig.weight_decay", ">= 0", self.weight_decay)
        expect(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "TrainConfig.betas",
               "two numbers in [0, 1)", self.betas)
        expect(0 <= self.min_lr_ratio <= 1, "TrainConfig.min_lr_ratio", "a number in [0, 1]", self.min_lr_ratio)
        expect(self.grad_clip is None or self.grad_clip > 0, "TrainConfig.grad_clip", "> 0 or none", self.grad_clip)
        expect(self.ema_decay is None or 0 < self.ema_decay < 1, "TrainConfig.ema_decay", "a number in (0, 1) or none",
               self.ema_decay)
        expect(self.amp in ("auto", "bf16", "none"), "TrainConfig.amp", "auto, bf16 or none", repr(self.amp))
        expect(self.parallel in PARALLEL, "TrainConfig.parallel", " or ".join(PARALLEL), repr(self.parallel))
        expect(self.select_mode in ("max", "min"), "TrainConfig.select_mode", "max or min", repr(self.select_mode))
        expect(self.batch_size % self.grad_accum == 0, "TrainConfig.batch_size",
               f"a multiple of grad_accum ({self.grad_accum})", self.batch_size)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak lr at 0-based optimizer step ``step``: linear warmup, then cosine."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------- CLI
def add_train_args(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> argparse.ArgumentParser:
    """Add one ``--flag`` per TrainConfig field (defaults from ``defaults``), plus ``--resume`` and
    ``--no-progress``. ``train_config_from_args`` turns the parsed namespace back into a config."""
    defaults = defaults or TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training")
    for f in dataclasses.fields(TrainConfig):
        flag, default, hint = "--" + f.name.replace("_", "-"), getattr(defaults, f.name), hints[f.name]
        help_text = f"{f.metadata['help']} (default: {default})"
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif f.name == "betas":
            group.add_argument(flag, type=float, nargs=2, default=default, metavar=("B1", "B2"), help=help_text)
        else:
            group.add_argument(flag, type=_arg_type(hint), default=default, help=help_text)
    group.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its checkpoint")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _arg_type(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # Optional[X]: the word "none" switches the option off
        return lambda text: None if text.lower() == "none" else args[0](text)
    return hint


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a namespace parsed with ``add_train_args``' flags."""
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not hasattr(args, f.name)]
    expect(not missing, "args", "a namespace parsed with add_train_args' flags", f"no {', '.join(missing)}")
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
