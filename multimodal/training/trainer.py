"""The one training loop that every model in the suite trains with.

A model brings three things: the ``nn.Module``, ``loss_fn(model, batch) -> (loss, metrics)`` where
``loss`` is the mean over the batch, and its data, either a map-style ``Dataset`` or a
``batch_fn(step, rank, world_size) -> batch`` for generated or streamed data. The trainer owns
everything else: AdamW with warmup and cosine decay, gradient accumulation and clipping, bf16
autocast on CUDA, an EMA of the weights, torchrun DDP, evaluation and best-model selection,
metrics.jsonl + loss.png, and atomic checkpoints that resume bit-exactly.

Exact resume rests on one rule: the data of optimizer step ``s`` is a function of ``s`` alone
(each epoch's order is drawn from ``(seed, epoch)``; ``batch_fn`` gets ``s``), and the RNG states
of every rank travel in the checkpoint. Evaluation runs on saved-and-restored RNG state, so how
often one evaluates never changes the training trajectory.

Run folder (``TrainConfig.out_dir``)::

    train_config.json   this run's TrainConfig
    metrics.jsonl       one object per log step ("kind": "train") and per evaluation ("kind": "eval")
    loss.png            the loss curve, redrawn at every save
    checkpoint/         model.safetensors, ema.safetensors, state.safetensors, train_config.json
    best/               the weights that scored best on select_metric, and eval.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import json
import math
import shutil
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..checkpoint import (WEIGHTS_NAME, atomic_write_bytes, find_dir, fresh_tmp_dir, publish_dir, atomic_write_text, check_state_dict,
                          load_tensors, load_tree, save_tensors, save_tree)
from ..config import Config
from ..errors import InputError, expect
from .distributed import Distributed, gather_rng_states, rng_state, seed_everything, set_rng_state, setup_distributed

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, Any]]"]
BatchFn = Callable[[int, int, int], Any]
EvalFn = Callable[[nn.Module], "dict[str, Any]"]

CHECKPOINT_DIR, BEST_DIR = "checkpoint", "best"
EMA_NAME, STATE_NAME, TRAIN_CONFIG_NAME = "ema.safetensors", "state.safetensors", "train_config.json"
METRICS_NAME, PLOT_NAME = "metrics.jsonl", "loss.png"
TRAINING_NAME, CARD_NAME = "training.json", "MODEL_CARD.md"  # in a published model folder

# Fields a resumed run may change: they move files, set how often things happen or how fast a step
# runs, but never change the arithmetic of a step. Every other field must match the checkpoint.
FREE_ON_RESUME = ("out_dir", "eval_every", "save_every", "log_every", "num_workers", "compile", "device")


def command_line(args: argparse.Namespace, command: str) -> str:
    """``command`` (e.g. "multimodal train vit") with every option of ``args`` that differs from its
    parser's default, to redo a run. The parser is ``args._command_parser`` (the train commands set
    it with ``parser.set_defaults(_command_parser=parser)``)."""
    parser = getattr(args, "_command_parser", None)
    words = command.split()
    for action in parser._actions if parser is not None else ():
        if not action.option_strings or action.dest in ("help", "resume", "progress"):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, "none" if value is None else str(value)]
    return " ".join(words)


def check_resume_settings(path: Path, run: dict, what: str, configs: dict | None = None) -> dict:
    """Before ``--resume``: the settings a run was started with (the JSON file ``path``) must equal
    ``run``, the settings given now; ``what`` names them in the error (e.g. "the model and loss").
    ``configs`` maps keys of ``run`` that hold a ``Config.to_dict()`` to its class: the saved dict is
    read back through that class first, so a field added to the config since the run started (at
    its default) is not a change. Returns the saved settings."""
    if not path.is_file():
        raise InputError(f"resume: expected {path} from the run to continue, found none")
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: expected the run's JSON settings, found an unreadable file ({e})") from None
    for key, cls in (configs or {}).items():
        if isinstance(saved.get(key), dict):
            try:
                saved[key] = json.loads(json.dumps(cls.from_dict(saved[key]).to_dict()))
            except (InputError, TypeError, ValueError):
                pass  # not a config this version reads: left as saved, so it shows as a change below
    now = json.loads(json.dumps(run))  # tuples -> lists, as saved
    changed = [f"{k} ({saved.get(k)!r} in the run, {now[k]!r} now)" for k in now if saved.get(k) != now[k]]
    if changed:
        raise InputError(f"resume: expected {what} that {path.parent} was trained with, "
                         f"found changes: {'; '.join(changed)}")
    return saved


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of optimizer step ``step`` on ``rank``: its own stream, a function of the three
    numbers only, so a batch_fn that draws from it gives a resumed run exactly the batches an
    uninterrupted one would."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2 ** 63 - 1))


def publish_model(folder: Path, model: nn.Module, training: dict, card: Callable[[Path], str], *,
                  dtype: torch.dtype | None = None, extra_files: dict[str, Path] | None = None) -> Path:
    """Write a trained model's folder as a whole: ``model.save_pretrained``, ``extra_files``
    ({name: source file} copied in), ``training.json`` and ``MODEL_CARD.md`` (``card(folder)``, reading
    what was written), into a temporary folder that then replaces ``folder``."""
    tmp = fresh_tmp_dir(folder)
    model.save_pretrained(tmp, **({"dtype": dtype} if dtype is not None else {}))
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, tmp / name)
    atomic_write_text(tmp / TRAINING_NAME, json.dumps(training, indent=2) + "\n")
    atomic_write_text(tmp / CARD_NAME, card(tmp))
    publish_dir(tmp, folder)
    return folder


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
        expect(self.select_mode in ("max", "min"), "TrainConfig.select_mode", "max or min", repr(self.select_mode))
        expect(self.batch_size % self.grad_accum == 0, "TrainConfig.batch_size",
               f"a multiple of grad_accum ({self.grad_accum})", self.batch_size)


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
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


# ------------------------------------------------------------------------------------ optimizer
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: biases, norm gains and other 1-D parameters are not shrunk towards 0, nor
    are parameters the model names in ``no_weight_decay()`` (timm's convention, e.g. pos_embed)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak lr at 0-based optimizer step ``step``: linear warmup, then cosine."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------ data
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
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not (batch and isinstance(batch[0], str)):
        items = [to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return batch


# ------------------------------------------------------------------------------ atomic folders
# --------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train ``model`` by ``loss_fn`` on ``dataset`` (or ``batch_fn``) as ``config`` says.

    loss_fn(model, batch) -> (loss, metrics): ``loss`` is a scalar tensor, the mean over the batch;
        ``metrics`` a dict of scalars, averaged into the log. Under DDP ``model`` is the wrapped
        module, so compute through ``model(...)`` (its forward), which is what synchronises gradients.
    dataset: a map-style Dataset; ``collate_fn`` joins examples (default: torch's default_collate).
    batch_fn(step, rank, world_size) -> this rank's ``batch_size // world_size`` examples for the
        0-based optimizer step ``step``, deterministic in its arguments; the trainer splits it into
        ``grad_accum`` micro-batches with ``split_batch``.
    eval_fn(model) -> dict of numbers: run on rank 0 under ``torch.no_grad`` with the model in eval
        mode every ``eval_every`` steps and at the end; it gets ``eval_model`` (the EMA when on).
    resume: continue from ``out_dir/checkpoint`` exactly where it stopped.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, loss_fn: LossFn, *, dataset: Dataset | None = None,
                 batch_fn: BatchFn | None = None, eval_fn: EvalFn | None = None, collate_fn: Callable | None = None,
                 resume: bool = False, progress: bool = True):
        expect(isinstance(model, nn.Module), "model", "a torch.nn.Module", type(model).__name__)
        expect(isinstance(config, TrainConfig), "config", "a TrainConfig", type(config).__name__)
        expect(callable(loss_fn), "loss_fn", "a callable loss_fn(model, batch) -> (loss, metrics)", loss_fn)
        expect((dataset is None) != (batch_fn is None), "data", "exactly one of dataset or batch_fn",
               "both" if dataset is not None else "neither")
        expect(eval_fn is None or callable(eval_fn), "eval_fn", "a callable eval_fn(model) -> dict", eval_fn)
        self.config, self.loss_fn, self.eval_fn, self.progress = config, loss_fn, eval_fn, progress
        self.dataset, self.batch_fn, self.collate_fn = dataset, batch_fn, collate_fn
        self.out_dir = Path(config.out_dir)
        self.dist: Distributed = setup_distributed(config.device)
        self.device = self.dist.device
        world = self.dist.world_size
        expect(config.batch_size % (world * config.grad_accum) == 0, "TrainConfig.batch_size",
               f"a multiple of world_size * grad_accum ({world} * {config.grad_accum})", config.batch_size)
        self.dataset_len = self._check_dataset() if dataset is not None else None

        seed_everything(config.seed + self.dist.rank)  # ranks draw different dropout masks
        self.model = model.to(self.device)
        self._ddp = None
        if self.dist.enabled:  # wrapping broadcasts rank 0's weights, so every rank starts equal
            self._ddp = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
        self._train_module = self._ddp or self.model
        if config.compile:
            self._train_module = torch.compile(self._train_module)
        self.ema_model = None
        if config.ema_decay is not None:
            self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr,
                                           betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, config))

        self.step = 0
        self.last_lr = config.lr
        self.best: float | None = None
        self.best_step: int | None = None
        self.history: list[dict] = []  # what metrics.jsonl holds (rank 0), for the loss plot
        if resume:
            self._load_checkpoint()
        elif find_dir(self.out_dir / CHECKPOINT_DIR) is not None:
            raise InputError(f"out_dir: expected a folder without a checkpoint (or resume=True to continue it), "
                             f"found one in {self.out_dir / CHECKPOINT_DIR}")
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / TRAIN_CONFIG_NAME, config.to_json() + "\n")
            self._restart_log()

    # ----------------------------------------------------------------------------- properties
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def eval_model(self) -> nn.Module:
        """The weights one evaluates and samples with: the EMA when it is on."""
        return self.ema_model if self.ema_model is not None else self.model

    def final_model(self, load: Callable[[Path], nn.Module]) -> nn.Module:
        """After ``train``: the weights selection kept in best/ (read by ``load(folder)``), else the
        final (EMA) weights, on the CPU in eval mode."""
        best = find_dir(self.out_dir / BEST_DIR)
        return load(best) if best is not None else self.eval_model.cpu().eval()

    def median_examples_per_s(self) -> float | None:
        speeds = [r["examples_per_s"] for r in self.history if r.get("kind") == "train" and "examples_per_s" in r]
        return sorted(speeds)[len(speeds) // 2] if speeds else None

    def train_seconds(self) -> float:
        """Time spent in training steps over every call of a (resumed) run: each logged window's
        steps at its logged speed. Evaluations and checkpoints are not counted."""
        logged = [r for r in self.history if r.get("kind") == "train" and r.get("examples_per_s")]
        before = [0] + [r["step"] for r in logged[:-1]]
        return sum((r["step"] - s) * self.config.batch_size / r["examples_per_s"] for r, s in zip(logged, before))

    def train_run(self, run_file: Path, run: dict) -> tuple[dict[str, Any], float]:
        """What every ``multimodal train`` entry does: write ``run`` (the settings a resumed run must
        match, see ``check_resume_settings``) to ``run_file`` on rank 0, then ``train``. Returns the
        summary and the wall seconds of this call."""
        if self.is_main:
            atomic_write_text(run_file, json.dumps(run, indent=2) + "\n")
        start = time.perf_counter()
        summary = self.train()
        return summary, time.perf_counter() - start

    # ----------------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        """Run until ``max_steps``; return the last logged training metrics and evaluation."""
        cfg = self.config
        self.model.train()
        batches = self._batches()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.is_main))
        window: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        summary: dict[str, Any] = {}
        try:
            while self.step < cfg.max_steps:
                step_metrics = self._optimizer_step(next(batches))
                self.step += 1
                for k, v in step_metrics.items():
                    window[k] = window.get(k, 0) + v
                window_steps += 1
                bar.update(1)
                done = self.step == cfg.max_steps
                if _due(self.step, cfg.log_every) or done:
                    record = self._reduce(window, window_steps)
                    elapsed = time.perf_counter() - window_start
                    record.update(lr=self.last_lr, epoch=self._epoch(),
                                  examples_per_s=window_steps * cfg.batch_size / max(elapsed, 1e-9))
                    self._log({"kind": "train", "step": self.step, **record})
                    bar.set_postfix(loss=f"{record['loss']:.4g}", ex_s=f"{record['examples_per_s']:.0f}")
                    summary.update(record)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                paused = time.perf_counter()
                if self.eval_fn is not None and self.is_main and (_due(self.step, cfg.eval_every) or done):
                    summary.update(self.evaluate())
                if _due(self.step, cfg.save_every) or done:
                    self.save_checkpoint()
                window_start += time.perf_counter() - paused  # throughput counts training time only
        finally:
            bar.close()
        self.dist.close()
        return {"step": self.step, **summary}

    def _optimizer_step(self, micro_batches: list) -> dict[str, torch.Tensor]:
        cfg, A = self.config, len(micro_batches)
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            # DDP all-reduces gradients at every backward; only the last micro-step needs it.
            sync = self._ddp.no_sync() if self._ddp is not None and i < A - 1 else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    loss, metrics = self._call_loss(batch)
                # Each micro-loss is a mean over an equal share, so the sum of loss / A is the mean
                # over the whole batch: A micro-steps give the gradient of one big step.
                (loss / A).backward()
            for k, v in {**metrics, "loss": loss}.items():
                scalar = isinstance(v, (int, float)) or isinstance(v, torch.Tensor) and v.ndim == 0
                expect(scalar, f"loss_fn metrics[{k!r}]", "a number or a scalar tensor", _describe(v))
                v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                totals[k] = totals.get(k, 0) + v.to(self.device) / A
        if cfg.grad_clip is not None:  # DDP has averaged the gradients, so this is the global norm
            totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip).detach()
        self.last_lr = self.scheduler.get_last_lr()[0]  # the lr this step used, for the log
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema_model is not None:
            self._update_ema()
        return totals

    def _call_loss(self, batch):
        out = self.loss_fn(self._train_module, batch)
        ok = (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor) and out[0].ndim == 0
              and isinstance(out[1], dict))
        expect(ok, "loss_fn", "(scalar loss tensor, dict of metrics)", _describe(out))
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
            if e.is_floating_point():
                e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers()):  # e.g. norm running stats
            e.copy_(b)

    def _autocast(self):
        amp = self.config.amp
        if amp == "auto":
            amp = "bf16" if self.device.type == "cuda" else "none"
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _reduce(self, window: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
        """Mean over the log window and over ranks, with one host sync for all metrics."""
        keys = sorted(window)
        values = torch.stack([window[k] for k in keys]) / steps
        if self.dist.enabled:
            dist.all_reduce(values)
            values /= self.dist.world_size
        return dict(zip(keys, values.tolist()))

    def _epoch(self) -> float:
        if self.dataset_len is None:
            return 0.0
        return self.step / (self.dataset_len // self.config.batch_size)

    # ------------------------------------------------------------------------------------- data
    def _check_dataset(self) -> int:
        try:
            n = len(self.dataset)
        except TypeError:
            raise InputError(f"dataset: expected a map-style Dataset with a length, "
                             f"found {type(self.dataset).__name__}") from None
        expect(n > 0, "dataset", "at least one example", "an empty dataset")
        expect(n >= self.config.batch_size, "dataset", f"at least one batch ({self.config.batch_size} examples)",
               f"{n} examples")
        return n

    def _batches(self) -> Iterator[list]:
        """Micro-batches of each optimizer step from ``self.step`` on."""
        cfg, A = self.config, self.config.grad_accum
        if self.batch_fn is not None:
            for step in range(self.step, cfg.max_steps):
                yield split_batch(self.batch_fn(step, self.dist.rank, self.dist.world_size), A, "batch_fn(...)")
            return
        sampler = StepSampler(self.dataset_len, cfg, self.dist.rank, self.dist.world_size, self.step)
        # The loader's own generator keeps it from drawing on the global RNG (dropout's stream).
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        it = iter(loader)
        while True:
            yield [next(it) for _ in range(A)]

    # ------------------------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        """Run eval_fn on ``eval_model``, log it, and keep the best weights. RNG state is restored
        afterwards, so evaluating (say, sampling) never shifts the training randomness."""
        model = self.eval_model
        was_training = model.training
        saved = rng_state(self.device)
        model.eval()
        try:
            with torch.no_grad():
                out = self.eval_fn(model)
        finally:
            set_rng_state(saved, self.device)
            model.train(was_training)
        expect(isinstance(out, dict), "eval_fn", "a dict of metrics", _describe(out))
        metrics = {}
        for k, v in out.items():
            v = v.item() if isinstance(v, (torch.Tensor, np.generic)) else v
            expect(isinstance(v, (int, float)), f"eval_fn()[{k!r}]", "a number", _describe(v))
            metrics[k] = float(v)
        self._log({"kind": "eval", "step": self.step, **metrics})
        name = self.config.select_metric
        if name is not None:
            expect(name in metrics, "eval_fn", f"a metric named {name!r} (TrainConfig.select_metric)",
                   f"{', '.join(metrics) or 'no metrics'}")
            value = metrics[name]
            if self.best is None or (value > self.best if self.config.select_mode == "max" else value < self.best):
                self.best, self.best_step = value, self.step
                self._save_best(metrics)
        return metrics

    def _save_best(self, metrics: dict[str, float]) -> None:
        final = self.out_dir / BEST_DIR
        tmp = fresh_tmp_dir(final)
        model = self.eval_model
        if hasattr(model, "save_pretrained"):  # a from_pretrained folder, with config.json
            model.save_pretrained(tmp)
        else:
            save_tensors(tmp / WEIGHTS_NAME, model.state_dict())
        atomic_write_text(tmp / "eval.json", json.dumps({"step": self.step, **metrics}, indent=2) + "\n")
        publish_dir(tmp, final)

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Write out_dir/checkpoint as a whole: into a temporary folder, then renamed into place."""
        rng = gather_rng_states(self.dist)  # every rank takes part
        if not self.is_main:
            return
        final = self.out_dir / CHECKPOINT_DIR
        tmp = fresh_tmp_dir(final)
        save_tensors(tmp / WEIGHTS_NAME, self.model.state_dict(), metadata={"step": str(self.step)})
        if self.ema_model is not None:
            save_tensors(tmp / EMA_NAME, self.ema_model.state_dict())
        save_tree(tmp / STATE_NAME, {
            "step": self.step, "world_size": self.dist.world_size, "dataset_len": self.dataset_len,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng, "best": self.best, "best_step": self.best_step,
        })
        atomic_write_text(tmp / TRAIN_CONFIG_NAME, self.config.to_json() + "\n")
        publish_dir(tmp, final)
        self._plot()

    def _load_checkpoint(self) -> None:
        folder = find_dir(self.out_dir / CHECKPOINT_DIR)
        if folder is None:
            raise InputError(f"resume: expected a checkpoint in {self.out_dir / CHECKPOINT_DIR}, found none")
        saved = TrainConfig.load(folder / TRAIN_CONFIG_NAME)
        changed = [f"{f.name} ({getattr(saved, f.name)!r} in the checkpoint, {getattr(self.config, f.name)!r} now)"
                   for f in dataclasses.fields(TrainConfig)
                   if f.name not in FREE_ON_RESUME and getattr(saved, f.name) != getattr(self.config, f.name)]
        if changed:
            raise InputError(f"resume: expected the config that {folder} was trained with, "
                             f"found changes: {'; '.join(changed)}")
        self._load_weights(self.model, folder / WEIGHTS_NAME)
        if self.ema_model is not None:
            self._load_weights(self.ema_model, folder / EMA_NAME)
        state = load_tree(folder / STATE_NAME)
        try:
            if state["dataset_len"] != self.dataset_len:
                raise InputError(f"resume: expected the dataset of the checkpoint ({state['dataset_len']} examples), "
                                 f"found {self.dataset_len}")
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.best, self.best_step = int(state["step"]), state["best"], state["best_step"]
            rng = state["rng"]
            if len(rng) == self.dist.world_size:
                set_rng_state(rng[self.dist.rank], self.device)
            else:  # the data still match step for step; only dropout etc. draw fresh numbers
                warnings.warn(f"resuming {len(rng)}-process training on {self.dist.world_size} processes: "
                              "random draws (dropout, noise) will differ from an uninterrupted run")
                seed_everything(self.config.seed + 1000 * self.step + self.dist.rank)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{folder / STATE_NAME}: expected a training state for this model and config, "
                             f"found one that does not fit ({type(e).__name__}: {e})") from None

    def _load_weights(self, module: nn.Module, path: Path) -> None:
        state = load_tensors(path)
        check_state_dict(module, state, str(path))
        module.load_state_dict(state)

    # --------------------------------------------------------------------------- log and plot
    def _restart_log(self) -> None:
        """A fresh run starts an empty log; a resumed one drops what was logged after its checkpoint
        (and a line cut short by a kill), so no step appears twice."""
        path = self.out_dir / METRICS_NAME
        self.history = []
        if self.step > 0 and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("step", math.inf) <= self.step:
                    self.history.append(record)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.history))

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        self.history.append(record)
        with open(self.out_dir / METRICS_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _plot(self) -> None:
        """Redraw loss.png: training loss, and any evaluated *loss metric, against steps."""
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.add_subplot()
        train = [(r["step"], r["loss"]) for r in self.history if r.get("kind") == "train"]
        if train:
            ax.plot(*zip(*train), label="train loss")
        evals = [r for r in self.history if r.get("kind") == "eval"]
        for key in sorted({k for r in evals for k in r if k.endswith("loss")}):
            points = [(r["step"], r[key]) for r in evals if key in r]
            ax.plot(*zip(*points), marker="o", label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        atomic_write_bytes(self.out_dir / PLOT_NAME, buf.getvalue())


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, tuple):
        return f"a tuple of ({', '.join(_describe(v) for v in x)})"
    return type(x).__name__
