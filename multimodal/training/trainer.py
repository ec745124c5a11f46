"""The one training loop that every model in the suite trains with.

A model brings three things: the ``nn.Module``, ``loss_fn(model, batch) -> (loss, metrics)`` where
``loss`` is the mean over the batch, and its data, either a map-style ``Dataset`` or a
``batch_fn(step, rank, world_size) -> batch`` for generated or streamed data. The trainer owns
everything else: AdamW with warmup and cosine decay, gradient accumulation and clipping, bf16
autocast on CUDA, an EMA of the weights, torchrun DDP or FSDP2 (``sharded``), evaluation and
best-model selection,
metrics.jsonl + loss.png, and atomic checkpoints that resume bit-exactly.

Exact resume rests on one rule: the data of optimizer step ``s`` is a function of ``s`` alone
(each epoch's order is drawn from ``(seed, epoch)``; ``batch_fn`` gets ``s``), and the RNG states
of every rank travel in the checkpoint. Evaluation runs on saved-and-restored RNG state, so how
often one evaluates never changes the training trajectory.

The loop's settings are a ``config.TrainConfig``; the files it writes into the run folder are named
in ``runs``; ``batching`` gives each step's data.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..checkpoint import (WEIGHTS_NAME, atomic_write_text, check_state_dict, find_dir,
                          fresh_tmp_dir, load_tensors, load_tree, publish_dir, save_tensors, save_tree, tmp_dir_of)
from ..errors import InputError, expect
from .batching import StepSampler, split_batch, to_device
from .config import FREE_ON_RESUME, TrainConfig, lr_factor
from . import sharded
from .distributed import Distributed, gather_rng_states, rng_state, seed_everything, set_rng_state, setup_distributed
from .runs import (BEST_DIR, CHECKPOINT_DIR, EMA_NAME, METRICS_NAME, PLOT_NAME, STATE_NAME, TRAIN_CONFIG_NAME,
                   plot_losses)

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, Any]]"]
BatchFn = Callable[[int, int, int], Any]
EvalFn = Callable[[nn.Module], "dict[str, Any]"]


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
    trainable_only: checkpoints hold only the parameters that train (``requires_grad``), as for
        LoRA adapters on a frozen base: a few MB instead of the whole model; the rest of the model
        must be rebuilt as it was (the frozen base) before resuming.
    save_best(model, folder): writes the best weights into ``folder`` (default: ``save_pretrained``
        when the model has it, else its state dict).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, loss_fn: LossFn, *, dataset: Dataset | None = None,
                 batch_fn: BatchFn | None = None, eval_fn: EvalFn | None = None, collate_fn: Callable | None = None,
                 resume: bool = False, progress: bool = True, trainable_only: bool = False,
                 save_best: Callable[[nn.Module, Path], None] | None = None):
        expect(isinstance(model, nn.Module), "model", "a torch.nn.Module", type(model).__name__)
        expect(isinstance(config, TrainConfig), "config", "a TrainConfig", type(config).__name__)
        expect(callable(loss_fn), "loss_fn", "a callable loss_fn(model, batch) -> (loss, metrics)", loss_fn)
        expect((dataset is None) != (batch_fn is None), "data", "exactly one of dataset or batch_fn",
               "both" if dataset is not None else "neither")
        expect(eval_fn is None or callable(eval_fn), "eval_fn", "a callable eval_fn(model) -> dict", eval_fn)
        self.config, self.loss_fn, self.eval_fn, self.progress = config, loss_fn, eval_fn, progress
        self.dataset, self.batch_fn, self.collate_fn = dataset, batch_fn, collate_fn
        self.trainable_only, self._save_best_fn = trainable_only, save_best
        self.out_dir = Path(config.out_dir)
        self.dist: Distributed = setup_distributed(config.device)
        self.device = self.dist.device
        world = self.dist.world_size
        expect(config.batch_size % (world * config.grad_accum) == 0, "TrainConfig.batch_size",
               f"a multiple of world_size * grad_accum ({world} * {config.grad_accum})", config.batch_size)
        self.dataset_len = self._check_dataset() if dataset is not None else None

        seed_everything(config.seed + self.dist.rank)  # ranks draw different dropout masks
        self.model = model.to(self.device)
        self.ema_model = None
        if config.ema_decay is not None:
            self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self._ddp = None
        self._fsdp = config.parallel == "fsdp" and self.dist.enabled
        self._whole: nn.Module | None = None  # FSDP: rank 0's unsharded copy, to evaluate and publish
        if self._fsdp:
            if self.is_main:
                self._whole = copy.deepcopy(self.ema_model or self.model).eval().requires_grad_(False)
            bf16 = config.amp == "bf16" or (config.amp == "auto" and self.device.type == "cuda")
            whole = {name for name, p in self.model.named_parameters() if not p.requires_grad}
            sharded.shard(self.model, bf16, whole)
            if self.ema_model is not None:
                sharded.shard(self.ema_model, bf16, whole)
        elif self.dist.enabled:  # wrapping broadcasts rank 0's weights, so every rank starts equal
            self._ddp = DistributedDataParallel(_Methods(self.model), device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
        if self._ddp is not None:  # loss_fn gets the model, its forward and entry points run through DDP
            self._train_module = _ThroughDDP(torch.compile(self._ddp) if config.compile else self._ddp, self.model)
        else:
            self._train_module = torch.compile(self.model) if config.compile else self.model
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr,
                                           betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, config))

        self.step = 0
        self.last_lr = config.lr
        self.best: float | None = None
        self.best_step: int | None = None
        self.history: list[dict] = []  # what metrics.jsonl holds (rank 0), for the loss plot
        self.resumed = bool(resume)
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
        """The weights one evaluates and samples with: the EMA when it is on. Under FSDP, rank 0's
        whole copy of them as of the last evaluation (or the end of ``train``)."""
        if self._fsdp:
            return self._whole
        return self.ema_model if self.ema_model is not None else self.model

    def _gather_eval_weights(self) -> None:
        """FSDP: gather the evaluated weights whole into rank 0's copy (every rank takes part)."""
        state = sharded.full_state_dict(self.ema_model if self.ema_model is not None else self.model)
        if self.is_main:
            self._whole.load_state_dict(state)

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

    def run_record(self, wall_seconds: float) -> dict[str, Any]:
        """The numbers every published model's training.json holds (``runs.build_model_card`` reports
        them): steps, batch, training and wall time (``wall_seconds``: this call's), whether the run
        was resumed, speed, device, threads and the TrainConfig."""
        return {"steps": self.step, "batch_size": self.config.batch_size, "train_seconds": self.train_seconds(),
                "wall_seconds": wall_seconds, "resumed": self.resumed, "examples_per_s": self.median_examples_per_s(),
                "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "train_config": self.config.to_dict()}

    # ----------------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        """Run until ``max_steps``; return the last logged training metrics and evaluation."""
        cfg = self.config
        if self.resumed and self.is_main:
            tqdm.write(f"resumed {self.out_dir} from its checkpoint at step {self.step:,} of {cfg.max_steps:,}")
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
                if self.eval_fn is not None and (_due(self.step, cfg.eval_every) or done):
                    if self._fsdp:
                        self._gather_eval_weights()
                    if self.is_main:
                        summary.update(self.evaluate())
                if _due(self.step, cfg.save_every) or done:
                    self.save_checkpoint()
                window_start += time.perf_counter() - paused  # throughput counts training time only
        finally:
            bar.close()
        if self._fsdp:
            self._gather_eval_weights()  # what final_model and eval_model give after training
        self.dist.close()
        return {"step": self.step, **summary}

    def _optimizer_step(self, micro_batches: list) -> dict[str, torch.Tensor]:
        cfg, A = self.config, len(micro_batches)
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device)
            # DDP and FSDP reduce gradients at every backward; only the last micro-step needs it.
            sync = self._ddp.no_sync() if self._ddp is not None and i < A - 1 else contextlib.nullcontext()
            if self._fsdp:
                self.model.set_requires_gradient_sync(i == A - 1)
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
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip).detach()
            totals["grad_norm"] = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a DTensor
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
        if self._save_best_fn is not None:
            self._save_best_fn(model, tmp)
        elif hasattr(model, "save_pretrained"):  # a from_pretrained folder, with config.json
            model.save_pretrained(tmp)
        else:
            save_tensors(tmp / WEIGHTS_NAME, model.state_dict())
        atomic_write_text(tmp / "eval.json", json.dumps({"step": self.step, **metrics}, indent=2) + "\n")
        publish_dir(tmp, final)

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Write out_dir/checkpoint as a whole: into a temporary folder, then renamed into place.
        Under FSDP every rank writes its shards of the weights, EMA and optimizer state (``sharded``)."""
        rng = gather_rng_states(self.dist)  # every rank takes part
        final = self.out_dir / CHECKPOINT_DIR
        if self._fsdp:
            tmp = fresh_tmp_dir(final) if self.is_main else tmp_dir_of(final)
            dist.barrier()  # the folder is fresh before any rank writes into it
            sharded.save(tmp / sharded.DCP_DIR, self.model, self.optimizer, self.ema_model)
            dist.barrier()
        if not self.is_main:
            return
        if not self._fsdp:
            tmp = fresh_tmp_dir(final)
            save_tensors(tmp / WEIGHTS_NAME, self._weights(self.model), metadata={"step": str(self.step)})
            if self.ema_model is not None:
                save_tensors(tmp / EMA_NAME, self._weights(self.ema_model))
        save_tree(tmp / STATE_NAME, {
            "step": self.step, "world_size": self.dist.world_size, "dataset_len": self.dataset_len,
            "optimizer": None if self._fsdp else self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng, "best": self.best, "best_step": self.best_step,
        })
        atomic_write_text(tmp / TRAIN_CONFIG_NAME, self.config.to_json() + "\n")
        publish_dir(tmp, final)
        plot_losses(self.history, self.out_dir / PLOT_NAME)

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
        shards = folder / sharded.DCP_DIR
        if shards.is_dir():  # written by FSDP ranks: resharded for however many processes run now
            sharded.load(shards, self.model, self.optimizer, self.ema_model)
        elif self._fsdp:
            raise InputError(f"resume: expected a sharded checkpoint (written with parallel='fsdp') to resume "
                             f"under FSDP, found whole weights in {folder}; resume it with parallel='ddp'")
        else:
            self._load_weights(self.model, folder / WEIGHTS_NAME)
            if self.ema_model is not None:
                self._load_weights(self.ema_model, folder / EMA_NAME)
        state = load_tree(folder / STATE_NAME)
        try:
            if state["dataset_len"] != self.dataset_len:
                raise InputError(f"resume: expected the dataset of the checkpoint ({state['dataset_len']} examples), "
                                 f"found {self.dataset_len}")
            if not shards.is_dir():
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

    def _trainable_names(self) -> list[str]:
        return [name for name, p in self.model.named_parameters() if p.requires_grad]

    def _weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """What a checkpoint stores of ``module``: its state dict, or with ``trainable_only`` the
        parameters that train (the EMA copy is frozen as a whole, so names come from the model)."""
        state = module.state_dict()
        return {k: state[k] for k in self._trainable_names()} if self.trainable_only else state

    def _load_weights(self, module: nn.Module, path: Path) -> None:
        state = load_tensors(path)
        if not self.trainable_only:
            check_state_dict(module, state, str(path))
            module.load_state_dict(state)
            return
        want = module.state_dict()
        names = self._trainable_names()
        missing, unexpected = sorted(set(names) - set(state)), sorted(set(state) - set(names))
        shapes = [k for k in names if k in state and state[k].shape != want[k].shape]
        if missing or unexpected or shapes:
            raise InputError(f"{path}: expected the trainable weights of this model (adapters), found "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}")
        module.load_state_dict(state, strict=False)

    # ------------------------------------------------------------------------------------------ log
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


class _Methods(nn.Module):
    """The model, with a forward that calls any of its methods: what DDP wraps, so that a loss calling
    ``model.loss(...)`` or ``model.logits(...)`` still goes through DDP's forward (which prepares the
    gradient all-reduce) rather than around it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, method: str, *args, **kwargs):
        return self.model(*args, **kwargs) if method == "forward" else getattr(self.model, method)(*args, **kwargs)


class _ThroughDDP:
    """What ``loss_fn`` gets under DDP: the model as itself (its config and attributes), whose
    forward and entry points (``sharded.ENTRY_POINTS``) run through DDP."""

    def __init__(self, ddp, model: nn.Module):
        self._ddp, self._model = ddp, model

    def __call__(self, *args, **kwargs):
        return self._ddp("forward", *args, **kwargs)

    def __getattr__(self, name: str):
        if name in sharded.ENTRY_POINTS and callable(getattr(self._model, name, None)):
            return lambda *args, **kwargs: self._ddp(name, *args, **kwargs)
        return getattr(self._model, name)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, tuple):
        return f"a tuple of ({', '.join(_describe(v) for v in x)})"
    return type(x).__name__
