"""The trainer: exact resume, gradient accumulation, DDP equivalence, learning, crash-safe checkpoints,
logs and best-model selection, and bad input."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from multimodal.checkpoint import count_parameters, load_tensor_metadata, load_tensors, load_tree
from multimodal.errors import InputError
from multimodal.training import TrainConfig, Trainer, add_train_args, split_batch, train_config_from_args
from multimodal.training import runs
from multimodal.training import trainer as trainer_module
from multimodal.training.config import lr_factor
from multimodal.training.distributed import Distributed

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_helpers():
    # by path, so the test does not depend on how pytest puts tests/ on sys.path
    spec = importlib.util.spec_from_file_location("_ddp_worker", HERE / "_ddp_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _load_helpers()


pytestmark = pytest.mark.usefixtures("one_thread")


def config(out_dir, **changes) -> TrainConfig:
    base = dict(out_dir=str(out_dir), max_steps=12, batch_size=8, grad_accum=2, lr=3e-3, weight_decay=0.1,
                warmup_steps=3, min_lr_ratio=0.1, grad_clip=1.0, log_every=1, save_every=0, seed=5, device="cpu")
    return TrainConfig(**{**base, **changes})


def assert_same_state(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


def read_log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------- exact resume
def test_resume_mid_epoch_continues_exactly(tmp_path, capsys):
    """12 steps in one go == 7 steps, a crash during step 10, a fresh Trainer resuming, 5 more steps.
    Dropout, EMA, grad_accum, warmup + cosine; 40 examples / batch 8 puts step 7 mid-epoch."""
    data = W.make_dataset(40)

    def noisy_eval(model):  # draws random numbers: must not shift the training randomness
        return {"noise": torch.randn(()).item(), "val_loss": 1.0}

    full = Trainer(W.make_model(dropout=0.1), config(tmp_path / "full", ema_decay=0.8, eval_every=3),
                   W.classification_loss, dataset=data, eval_fn=noisy_eval, progress=False)
    full.train()

    calls = 0

    def crashing_loss(model, batch):
        nonlocal calls
        calls += 1
        if calls > 9 * 2:  # two micro-steps per step: dies inside step 10
            raise RuntimeError("simulated kill")
        return W.classification_loss(model, batch)

    cfg = config(tmp_path / "split", ema_decay=0.8, save_every=7)
    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(W.make_model(dropout=0.1), cfg, crashing_loss, dataset=data, progress=False).train()
    assert [r["step"] for r in read_log(tmp_path / "split")] == list(range(1, 10))

    # a different initialisation: everything must come from the checkpoint
    resumed = Trainer(W.make_model(dropout=0.1, seed=123), cfg, W.classification_loss, dataset=data,
                      resume=True, progress=False)
    assert resumed.step == 7
    capsys.readouterr()
    resumed.train()
    assert f"resumed {tmp_path / 'split'} from its checkpoint at step 7 of 12" in capsys.readouterr().out
    assert resumed.run_record(1.0)["resumed"] is True and full.run_record(1.0)["resumed"] is False

    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    assert_same_state(full.ema_model.state_dict(), resumed.ema_model.state_dict())
    assert not torch.equal(resumed.ema_model.head.weight, resumed.model.head.weight)  # the EMA is its own copy

    full_log = [r for r in read_log(tmp_path / "full") if r["kind"] == "train"]
    split_log = read_log(tmp_path / "split")
    assert [r["step"] for r in split_log] == list(range(1, 13))  # steps 8, 9 of the crashed run dropped
    for a, b in zip(full_log, split_log):
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)


# --------------------------------------------------------------------------------- accumulation
def test_grad_accumulation_equals_one_big_batch(tmp_path):
    data = W.make_dataset(16)
    states, norms = [], []
    for accum in (1, 4):
        t = Trainer(W.make_model(), config(tmp_path / f"a{accum}", max_steps=1, grad_accum=accum, warmup_steps=0,
                                           grad_clip=0.05), W.classification_loss, dataset=data, progress=False)
        t.train()
        states.append(t.model.state_dict())
        norms.append(read_log(tmp_path / f"a{accum}")[0]["grad_norm"])
    assert norms[0] > 0.05  # clipping was active, and applied to the accumulated gradient
    assert norms[0] == pytest.approx(norms[1], rel=1e-5)
    assert_same_state(states[0], states[1])
    assert not torch.equal(states[0]["head.weight"], W.make_model().state_dict()["head.weight"])


# ------------------------------------------------------------------------------------------ DDP
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_two_processes_match_single_process(tmp_path):
    """torchrun, 2 ranks on gloo, global batch 8 = 2 ranks x 2 micro-steps x 2 examples, with grad
    clipping and EMA: the weights after each step equal single-process training on the same batches."""
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    _torchrun(ddp_dir, 3)  # --standalone lets the rendezvous pick a free port
    assert json.loads((ddp_dir / "world.json").read_text()) == {"world_size": 2, "parallel": "ddp", "nodes": 1}

    single = W.run(str(single_dir), 3)
    assert single.dist.world_size == 1
    for step in (1, 2, 3):
        assert_same_state(load_tensors(single_dir / f"step{step}.safetensors"),
                          load_tensors(ddp_dir / f"step{step}.safetensors"), atol=1e-5)
    assert_same_state(load_tensors(single_dir / "checkpoint" / "ema.safetensors"),
                      load_tensors(ddp_dir / "checkpoint" / "ema.safetensors"), atol=1e-5)
    ddp_log, single_log = read_log(ddp_dir), read_log(single_dir)
    for a, b in zip(ddp_log, single_log):  # the logged loss is the mean over both ranks
        assert a["step"] == b["step"]
        if a["kind"] == "train":
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def _launch_env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _torchrun(*args, timeout: int = 240) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "_ddp_worker.py"), *map(str, args)]
    proc = subprocess.run(cmd, env=_launch_env(), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_nodes_meet_through_c10d_rendezvous_and_train_as_one_process(tmp_path):
    """The multi-node launch line of the README on loopback: two torchrun agents ("nodes", one process
    each) meet through the c10d rendezvous on one endpoint and train with DDP; the weights after each
    step equal single-process training on the same global batches."""
    out, single_dir = tmp_path / "nodes", tmp_path / "single"
    out.mkdir()
    endpoint = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "two-nodes",
           str(HERE / "_ddp_worker.py"), str(out), "2"]
    nodes = [subprocess.Popen(cmd, env=_launch_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    try:
        logs = [node.communicate(timeout=240)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert json.loads((out / "world.json").read_text()) == {"world_size": 2, "parallel": "ddp", "nodes": 2}
    W.run(str(single_dir), 2)
    for step in (1, 2):
        assert_same_state(load_tensors(single_dir / f"step{step}.safetensors"),
                          load_tensors(out / f"step{step}.safetensors"), atol=1e-5)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_fsdp_two_processes_match_single_process_and_resume_on_one_and_two(tmp_path):
    """FSDP2 on 2 gloo ranks, global batch 8 = 2 ranks x 2 micro-steps x 2 examples, with grad
    clipping and EMA: the EMA weights after each step and the logged loss equal single-process
    training; the sharded checkpoint it writes resumes whole in one process and sharded on two."""
    fsdp_dir, single_dir = tmp_path / "fsdp", tmp_path / "single"
    fsdp_dir.mkdir()
    _torchrun(fsdp_dir, 3, "fsdp")
    assert json.loads((fsdp_dir / "world.json").read_text()) == {"world_size": 2, "parallel": "fsdp", "nodes": 1}
    assert (fsdp_dir / "checkpoint" / "dcp" / ".metadata").is_file()
    assert not (fsdp_dir / "checkpoint" / "model.safetensors").exists()  # shards, not whole weights

    single = W.run(str(single_dir), 3, parallel="fsdp")  # one process: FSDP has nothing to shard
    assert single.dist.world_size == 1
    for step in (1, 2, 3):
        assert_same_state(load_tensors(single_dir / f"step{step}.safetensors"),
                          load_tensors(fsdp_dir / f"step{step}.safetensors"), atol=1e-5)
    for a, b in zip(read_log(fsdp_dir), read_log(single_dir)):
        assert a["step"] == b["step"]
        if a["kind"] == "train":
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], abs=1e-5)

    # on one process: the shards load whole, weights, EMA and optimizer state alike
    one = Trainer(W.make_model(seed=9), dataclasses.replace(W.ddp_config(str(fsdp_dir), 3), parallel="fsdp"),
                  W.classification_loss, dataset=W.make_dataset(), resume=True, progress=False)
    assert one.step == 3 and one.dist.world_size == 1
    assert_same_state(one.model.state_dict(), load_tensors(single_dir / "checkpoint" / "model.safetensors"), atol=1e-5)
    assert_same_state(one.ema_model.state_dict(), load_tensors(single_dir / "checkpoint" / "ema.safetensors"),
                      atol=1e-5)
    loaded = one.optimizer.state_dict()["state"]
    expected = load_tree(single_dir / "checkpoint" / "state.safetensors")["optimizer"]["state"]
    assert len(loaded) == len(expected) == len(list(one.model.parameters()))
    for i, moments in loaded.items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments[name], expected[str(i)][name] if str(i) in expected else expected[i][name],
                                       atol=1e-5, rtol=1e-4)

    # on two processes: resharded, the same EMA weights
    _torchrun(fsdp_dir, 3, "fsdp", "resume")
    assert_same_state(load_tensors(fsdp_dir / "resumed.safetensors"),
                      load_tensors(single_dir / "checkpoint" / "ema.safetensors"), atol=1e-5)


# ------------------------------------------------------------------------------------- learning
def test_learns_linear_regression_from_batch_fn(tmp_path):
    torch.manual_seed(0)
    w_true = torch.randn(8, 1)

    def batch_fn(step, rank, world_size):
        g = torch.Generator().manual_seed(1000 * step + rank)
        x = torch.randn(16, 8, generator=g)
        return {"x": x, "y": x @ w_true + 0.01 * torch.randn(16, 1, generator=g)}

    def mse(model, batch):
        return F.mse_loss(model(batch["x"]), batch["y"]), {}

    x_val = torch.randn(256, 8, generator=torch.Generator().manual_seed(99))
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    cfg = config(tmp_path, max_steps=150, batch_size=16, lr=0.05, weight_decay=0.0, warmup_steps=10, log_every=10)
    result = Trainer(model, cfg, mse, batch_fn=batch_fn, eval_fn=lambda m: {"val_loss": F.mse_loss(
        m(x_val), x_val @ w_true)}, progress=False).train()
    log = [r for r in read_log(tmp_path) if r["kind"] == "train"]
    assert log[-1]["loss"] < 0.01 * log[0]["loss"]
    assert result["val_loss"] < 1e-3


def test_learns_classification_from_dataset(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 2, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()  # XOR-like: needs the hidden layer

    def loss_fn(model, batch):
        logits = model(batch[0])
        return F.cross_entropy(logits, batch[1]), {"acc": (logits.argmax(-1) == batch[1]).float().mean()}

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.GELU(), nn.Linear(32, 2))
    cfg = config(tmp_path, max_steps=200, batch_size=32, grad_accum=1, lr=0.02, weight_decay=0.0, warmup_steps=5,
                 log_every=20)
    Trainer(model, cfg, loss_fn, dataset=TensorDataset(x, y), progress=False).train()
    log = read_log(tmp_path)
    assert log[-1]["loss"] < 0.4 * log[0]["loss"]
    with torch.no_grad():
        assert (model(x).argmax(-1) == y).float().mean() > 0.9


# ---------------------------------------------------------------------------------- crash safety
def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    data = W.make_dataset(40)
    cfg = config(tmp_path, max_steps=6, save_every=2, ema_decay=0.9)
    real_save_tree = trainer_module.save_tree
    saves = 0

    def dies_on_second_save(path, tree):  # the weights of step 4 are already written by now
        nonlocal saves
        saves += 1
        if saves == 2:
            raise OSError("simulated kill mid-save")
        real_save_tree(path, tree)

    monkeypatch.setattr(trainer_module, "save_tree", dies_on_second_save)
    with pytest.raises(OSError, match="simulated kill"):
        Trainer(W.make_model(), cfg, W.classification_loss, dataset=data, progress=False).train()
    monkeypatch.undo()
    assert load_tensor_metadata(tmp_path / "checkpoint" / "model.safetensors")["step"] == "2"

    resumed = Trainer(W.make_model(), cfg, W.classification_loss, dataset=data, resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    assert resumed.step == 6
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no leftovers

    # killed between publish_dir's two renames: only the previous copy is there, and it loads
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old")
    assert Trainer(W.make_model(), cfg, W.classification_loss, dataset=data, resume=True, progress=False).step == 6
    (tmp_path / ".checkpoint.old").rename(tmp_path / "checkpoint")

    for name in ("state.safetensors", "model.safetensors", "ema.safetensors"):
        path = tmp_path / "checkpoint" / name
        good = path.read_bytes()
        path.write_bytes(good[:len(good) // 2])
        with pytest.raises(InputError, match=name):
            Trainer(W.make_model(), cfg, W.classification_loss, dataset=data, resume=True, progress=False)
        path.write_bytes(good)


# -------------------------------------------------------------------------------- logs and best/
def test_metrics_plot_and_best_weights(tmp_path):
    scores = iter([0.2, 0.7, 0.4])
    seen = {}
    trainer = None

    def eval_fn(model):
        assert not model.training and not torch.is_grad_enabled()
        seen[trainer.step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val_acc": next(scores), "val_loss": torch.tensor(1.0 / trainer.step)}

    cfg = config(tmp_path, max_steps=6, eval_every=2, log_every=2, ema_decay=0.9, select_metric="val_acc")
    trainer = Trainer(W.make_model(), cfg, W.classification_loss, dataset=W.make_dataset(40), eval_fn=eval_fn,
                      progress=False)
    result = trainer.train()

    log = read_log(tmp_path)
    train = [r for r in log if r["kind"] == "train"]
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [2, 4, 6] and [r["step"] for r in evals] == [2, 4, 6]
    for r in train:
        assert {"loss", "lr", "grad_norm", "acc", "examples_per_s", "epoch"} <= r.keys()
        assert r["examples_per_s"] > 0 and 0 <= r["acc"] <= 1
    assert train[-1]["epoch"] == pytest.approx(6 / 5)
    assert [r["val_acc"] for r in evals] == [0.2, 0.7, 0.4]
    assert result["val_acc"] == 0.4 and result["step"] == 6

    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000

    assert json.loads((tmp_path / "best" / "eval.json").read_text())["step"] == 4
    assert_same_state(load_tensors(tmp_path / "best" / "model.safetensors"), seen[4], atol=0)  # the EMA at step 4
    assert trainer.best == 0.7 and trainer.best_step == 4
    assert TrainConfig.load(tmp_path / "train_config.json") == cfg


def test_schedule_and_weight_decay_groups(tmp_path):
    cfg = config(tmp_path, max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[:3] == pytest.approx([0.1, 0.2, 0.3]) and factors[9] == 1.0
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # cosine only falls
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)

    model = W.make_model()
    model.no_weight_decay = lambda: {"backbone.pos_embed"}
    decay, no_decay = trainer_module.param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters()
                                                        if p.ndim == 2 and n != "backbone.pos_embed"}
    assert "head.bias" in {names[id(p)] for p in no_decay["params"]}


def test_bf16_autocast_on_cpu(tmp_path):
    seen = []

    def loss_fn(model, batch):
        logits = model(batch[0])
        seen.append(logits.dtype)
        return F.cross_entropy(logits.float(), batch[1]), {}

    model = W.make_model()
    Trainer(model, config(tmp_path, max_steps=2, amp="bf16"), loss_fn, dataset=W.make_dataset(16),
            progress=False).train()
    assert seen == [torch.bfloat16] * 4
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, not a cast of the weights


def test_cli_args_round_trip(tmp_path):
    parser = add_train_args(argparse.ArgumentParser(), TrainConfig(lr=1e-3))
    args = parser.parse_args(["--out-dir", str(tmp_path), "--max-steps", "5", "--betas", "0.9", "0.95",
                              "--ema-decay", "0.99", "--grad-clip", "none", "--compile", "--resume", "--no-progress"])
    cfg = train_config_from_args(args)
    assert (cfg.out_dir, cfg.max_steps, cfg.lr, cfg.betas) == (str(tmp_path), 5, 1e-3, (0.9, 0.95))
    assert (cfg.ema_decay, cfg.grad_clip, cfg.compile, args.resume, args.progress) == (0.99, None, True, True, False)
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_split_batch():
    batch = {"x": torch.arange(8).view(4, 2), "text": ["a", "b", "c", "d"], "tau": 0.5}
    parts = split_batch(batch, 2)
    assert parts[1]["x"].tolist() == [[4, 5], [6, 7]] and parts[1]["text"] == ["c", "d"] and parts[1]["tau"] == 0.5
    with pytest.raises(InputError, match="divisible by grad_accum"):
        split_batch((torch.zeros(3, 2),), 2)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("changes, match", [
    ({"lr": -1.0}, "lr"),
    ({"batch_size": 10, "grad_accum": 4}, "multiple of grad_accum"),
    ({"amp": "fp8"}, "amp"),
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"max_steps": 0}, "max_steps"),
    ({"select_mode": "best"}, "select_mode"),
])
def test_bad_config(tmp_path, changes, match):
    with pytest.raises(InputError, match=match):
        config(tmp_path, **changes)


def test_bad_input(tmp_path, monkeypatch):
    data = W.make_dataset(40)

    def make(out, model=None, cfg=None, loss=W.classification_loss, **kw):
        kw.setdefault("dataset", data)
        return Trainer(model or W.make_model(), cfg or config(tmp_path / out, max_steps=2), loss, progress=False, **kw)

    with pytest.raises(InputError, match="unknown fields"):
        TrainConfig.from_dict({"lr": 1e-3, "bogus": 1})
    with pytest.raises(InputError, match="empty dataset"):
        make("a", dataset=TensorDataset(torch.zeros(0, 2)))
    with pytest.raises(InputError, match="at least one batch"):
        make("a", dataset=TensorDataset(torch.zeros(5, 2)))
    with pytest.raises(InputError, match="exactly one of dataset or batch_fn"):
        make("a", batch_fn=lambda *a: None)
    with pytest.raises(InputError, match="exactly one of dataset or batch_fn"):
        make("a", dataset=None)
    with pytest.raises(InputError, match="resume: expected a checkpoint"):
        make("a", resume=True)
    with pytest.raises(InputError, match="loss_fn"):
        make("a", loss=lambda m, b: m(b[0])).train()  # [B, classes] is not a scalar loss
    with pytest.raises(InputError, match="grad_accum"):
        make("a", dataset=None, batch_fn=lambda s, r, w: torch.zeros(3, W.SEQ, W.FEATURES)).train()
    with pytest.raises(InputError, match="select_metric"):
        make("b", cfg=config(tmp_path / "b", max_steps=1, select_metric="val_acc"),
             eval_fn=lambda m: {"val_loss": 1.0}).train()

    make("c").train()  # a finished run
    with pytest.raises(InputError, match="without a checkpoint"):
        make("c")  # a fresh run would overwrite it
    with pytest.raises(InputError, match=r"lr \(0\.003 in the checkpoint, 0\.001 now\)"):
        make("c", cfg=config(tmp_path / "c", max_steps=2, lr=1e-3), resume=True)
    with pytest.raises(InputError, match="weights do not fit"):
        make("c", model=W.TinyClassifier(width=8), resume=True)
    with pytest.raises(InputError, match="dataset"):
        make("c", dataset=W.make_dataset(48), resume=True)

    # 2 ranks x grad_accum 2 cannot share a batch of 6
    monkeypatch.setattr(trainer_module, "setup_distributed", lambda device: Distributed(0, 2, 0, torch.device("cpu"),
                                                                                      False))
    with pytest.raises(InputError, match="world_size"):
        make("d", cfg=config(tmp_path / "d", batch_size=6, grad_accum=2))


def test_resume_settings_accept_config_fields_added_since_the_run_started(tmp_path):
    """A run saved before a config field existed resumes when the field is at its default; a real
    change (or the new field away from its default) is still refused, naming the key."""
    from multimodal.models.vit import ViTConfig

    config = ViTConfig(image_size=16, patch_size=4, num_classes=3, width=32, depth=1, heads=4)
    old_model = {k: v for k, v in config.to_dict().items() if k != "stem"}  # as written before `stem`
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": old_model, "seed": 1}))
    check = runs.check_resume_settings
    saved = check(path, {"model": config.to_dict(), "seed": 1}, "the model", configs={"model": ViTConfig})
    assert saved["model"]["stem"] == "patch"
    with pytest.raises(InputError, match="resume: expected the model .* model"):
        check(path, {"model": config.to_dict(), "seed": 1}, "the model")  # without configs: a literal comparison
    for changed in ({"model": config.replace(stem="conv").to_dict(), "seed": 1},
                    {"model": config.replace(width=64, heads=4).to_dict(), "seed": 1},
                    {"model": config.to_dict(), "seed": 2}):
        with pytest.raises(InputError, match="resume: expected the model"):
            check(path, changed, "the model", configs={"model": ViTConfig})


def test_run_files_and_the_model_card_builder(tmp_path):
    """One name per run file; the card's shared parts (title, command, data, parameters, run, optimizer,
    notes) come from training.json, and a resumed run says so."""
    assert runs.run_file(tmp_path, "vit") == tmp_path / "vit_run.json"
    with pytest.raises(InputError, match="recipe"):
        runs.run_file(tmp_path, "../vit")
    model = W.make_model()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(InputError, match="module: expected a torch.nn.Module"):
        count_parameters("model")
    info = {"command": "multimodal train x --lr 0.1", "data": "the data", "parameters": {"encoder": 1500, "head": 20},
            "steps": 1200, "batch_size": 8, "device": "cpu", "torch_threads": 1, "examples_per_s": 99.6,
            "train_seconds": 600.0, "wall_seconds": 90.0, "resumed": True, "train_config": TrainConfig().to_dict()}
    card = runs.build_model_card("A model", "What it is.", info, facts=[("architecture", "tiny")],
                                 results=[("selection", "best")], details=["A detail."], evaluation="Numbers.",
                                 notes="By hand.")
    assert card.startswith("# A model\n\nWhat it is.\n\n| | |\n| --- | --- |\n| architecture | tiny |\n")
    assert "| training data | the data |" in card and "| parameters | 1,520 (encoder 1,500, head 20) |" in card
    assert ("| training | 1,200 steps of batch 8 (9,600 examples) on cpu (1 thread in the last call), median 100 "
            "examples/s; resumed: 10.0 min of training steps over all calls, 1.5 min wall time in the last call |") in card
    assert "| optimizer | AdamW lr 0.0003," in card and card.index("| optimizer") < card.index("| selection | best |")
    assert "## Training\n\n```\nmultimodal train x --lr 0.1\n```\n\n- A detail.\n" in card
    assert card.endswith("## Evaluation\n\nNumbers.\n\n## Notes\n\nBy hand.\n")
    fresh = runs.build_model_card("A model", "What it is.", {**info, "resumed": False, "torch_threads": 2})
    assert "(2 threads), median 100 examples/s; 10.0 min of training steps, 1.5 min wall time |" in fresh
    assert "resumed" not in fresh and "## Training" not in runs.build_model_card("A model", "What it is.", {})
