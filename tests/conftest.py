"""Shared fixtures. ``tiny_pipeline`` registers a real, tiny pipeline (one linear layer loaded from a
checkpoint folder) for the tests of the pipeline registry, the CLI and the app."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from multimodal import paths, pipelines
from multimodal.checkpoint import load_tensors, save_tensors
from multimodal.errors import InputError
from multimodal.pipelines import Pipeline, registry

TASK = "test-linear"
MODEL = "tiny-linear"


class LinearPipeline(Pipeline):
    """y = W x + b for a vector x of two numbers; its steps run under a progress bar."""

    runs = 0

    def __init__(self, layer: nn.Linear, steps: int):
        super().__init__()
        self.layer = layer
        self.steps = steps

    @classmethod
    def _load(cls, folder):
        config = json.loads((folder / "config.json").read_text())
        layer = nn.Linear(2, 2)
        layer.load_state_dict(load_tensors(folder / "model.safetensors"))
        return cls(layer, config["steps"])

    def validate(self, x):
        if not (isinstance(x, list) and len(x) == 2 and all(isinstance(v, (int, float)) for v in x)):
            raise InputError(f"x: expected a list of two numbers, found {x!r}")

    def _run(self, x):
        type(self).runs += 1
        for _ in self.progress(range(self.steps), desc="steps"):
            pass
        return self.layer(torch.tensor(x, dtype=self.dtype, device=self.device)).tolist()


def write_checkpoint(folder, weight=((1.0, 2.0), (3.0, 4.0)), bias=(0.5, -0.5), steps=3):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"steps": steps}))
    save_tensors(folder / "model.safetensors", {"weight": torch.tensor(weight), "bias": torch.tensor(bias)})
    return folder


@pytest.fixture
def empty_registry(monkeypatch, tmp_path):
    """No pipelines registered, an empty cache and no shipped checkpoints."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINTS", tmp_path / "shipped")
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_pipeline(empty_registry, tmp_path, monkeypatch):
    """LinearPipeline registered as TASK, with an app tab titled TASK, its default model MODEL in the
    cache; yields that folder."""
    from multimodal import app

    folder = write_checkpoint(tmp_path / "cache" / "checkpoints" / MODEL)
    pipelines.register_pipeline(TASK, LinearPipeline, default_model=MODEL)
    monkeypatch.setitem(app._TABS, TASK, app.Tab(TASK, TASK, linear_tab))
    yield folder


def linear_tab():
    import gradio as gr

    from multimodal.app import gradio_errors

    @gradio_errors
    def apply(a, b):
        return str(pipelines.pipeline(TASK)([a, b] if b is not None else [a]))

    with gr.Row():
        a = gr.Number(label="a")
        b = gr.Number(label="b")
    out = gr.Textbox(label="W x + b")
    gr.Button("apply").click(apply, [a, b], out, api_name="apply")


@pytest.fixture
def one_thread():
    """Tiny models: a second intra-op thread only adds barrier waits, which on a loaded 2-core
    machine cost more than the arithmetic. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kill_batches_at(monkeypatch, module, step: int, name: str = "make_batch_fn") -> None:
    """Make the batch_fn of ``module``'s ``name`` (its ``make_batch_fn``) raise RuntimeError("simulated
    kill") at optimizer step ``step``: a run dies there as if killed, after its last checkpoint.
    ``monkeypatch.undo()`` or setting the attribute back restores it."""
    make = getattr(module, name)

    def killed(*args):
        batch_fn = make(*args)

        def wrapped(s, rank, world_size):
            if s == step:
                raise RuntimeError("simulated kill")
            return batch_fn(s, rank, world_size)
        return wrapped

    monkeypatch.setattr(module, name, killed)
