"""The pipeline registry, the ``multimodal.pipeline`` factory, model resolution and the Pipeline base."""

from pathlib import Path

import pytest
import torch
from conftest import MODEL, TASK, LinearPipeline, write_checkpoint

import multimodal
from multimodal import paths, pipelines
from multimodal.errors import InputError
from multimodal.devices import default_device


def test_factory_is_exported_at_top_level():
    assert multimodal.pipeline is pipelines.pipeline


def test_factory_loads_the_default_model(tiny_pipeline):
    pipe = multimodal.pipeline(TASK)
    assert isinstance(pipe, LinearPipeline)
    assert pipe.device == default_device()
    pipe.set_progress_bar_config(disable=True)
    pipe.to("cpu")
    assert pipe([1.0, 1.0]) == pytest.approx([3.5, 6.5])  # [1+2+0.5, 3+4-0.5]
    assert pipelines.available_tasks() == [TASK]
    assert [r.task for r in pipelines.registrations()] == [TASK]


def test_factory_loads_a_named_folder_or_path(tiny_pipeline, tmp_path):
    other = write_checkpoint(tmp_path / "elsewhere", bias=(0.0, 0.0))
    pipe = pipelines.pipeline(TASK, model=str(other), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe([1, 0]) == pytest.approx([1.0, 3.0])
    assert isinstance(pipelines.pipeline(TASK, model=MODEL, device="cpu"), LinearPipeline)


def test_shipped_checkpoints_come_before_the_cache(tiny_pipeline, tmp_path):
    shipped = write_checkpoint(paths.SHIPPED_CHECKPOINTS / MODEL)
    assert paths.resolve_model(MODEL) == shipped
    assert paths.available_models() == [MODEL]


def test_unknown_task_lists_the_registered_ones(tiny_pipeline):
    with pytest.raises(InputError, match=f"task: expected one of {TASK}, found 'text-to-image'"):
        multimodal.pipeline("text-to-image")


def test_unknown_task_with_nothing_registered(empty_registry):
    with pytest.raises(InputError, match="no pipelines are registered yet; found 'image-classification'"):
        multimodal.pipeline("image-classification")


def test_missing_model_says_what_is_available(tiny_pipeline, tmp_path):
    with pytest.raises(InputError) as info:
        multimodal.pipeline(TASK, model=str(tmp_path / "nope"))
    message = str(info.value)
    assert f"available: {MODEL}" in message and "does not exist" in message and str(tmp_path / "nope") in message


def test_missing_model_with_no_checkpoints(empty_registry):
    with pytest.raises(InputError, match="available: none yet"):
        paths.resolve_model(MODEL)


def test_a_path_is_never_looked_up_by_name(tiny_pipeline):
    with pytest.raises(InputError, match="does not exist"):
        paths.resolve_model(f"somewhere/{MODEL}")
    for bad in ("", None, 3):
        with pytest.raises(InputError, match="model: expected a checkpoint folder"):
            paths.resolve_model(bad)


def test_task_without_default_model(empty_registry):
    pipelines.register_pipeline(TASK, LinearPipeline)
    with pytest.raises(InputError, match="ships no default model"):
        multimodal.pipeline(TASK)


def test_a_task_belongs_to_one_class(empty_registry):
    pipelines.register_pipeline(TASK, LinearPipeline)
    pipelines.register_pipeline(TASK, LinearPipeline)  # importing a module twice is harmless
    with pytest.raises(ValueError, match="already registered"):
        pipelines.register_pipeline(TASK, pipelines.Pipeline)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MULTIMODAL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_dir() == tmp_path / ".cache" / "multimodal"
    assert paths.checkpoint_dirs()[1] == tmp_path / ".cache" / "multimodal" / "checkpoints"


def test_from_pretrained_and_to(tiny_pipeline):
    pipe = LinearPipeline.from_pretrained(MODEL, device="cpu", dtype="bfloat16")
    assert pipe.layer.weight.dtype == torch.bfloat16 and pipe.dtype == torch.bfloat16
    assert pipe.to(torch.float16) is pipe  # a dtype alone casts, like diffusers
    assert pipe.layer.weight.dtype == torch.float16 and pipe.device == torch.device("cpu")
    assert pipe.to("cpu", torch.float32) is pipe
    assert pipe.layer.weight.dtype == torch.float32
    assert pipe.modules() == {"layer": pipe.layer}


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "not a device"])
def test_bad_device(tiny_pipeline, device):
    pipe = LinearPipeline.from_pretrained(tiny_pipeline, device="cpu")
    with pytest.raises(InputError, match="device: expected"):
        pipe.to(device)
    assert pipe.device == torch.device("cpu")  # nothing moved


@pytest.mark.parametrize("dtype", ["int8", torch.int64, "float"])
def test_bad_dtype(tiny_pipeline, dtype):
    pipe = LinearPipeline.from_pretrained(tiny_pipeline, device="cpu")
    with pytest.raises(InputError, match="dtype: expected one of float32, float16, bfloat16"):
        pipe.to(dtype=dtype)
    assert pipe.layer.weight.dtype == torch.float32


def test_progress_bar_switch(tiny_pipeline, capsys):
    pipe = LinearPipeline.from_pretrained(tiny_pipeline, device="cpu")
    pipe([0, 0])
    err = capsys.readouterr().err
    assert "steps" in err and "3/3" in err
    pipe.set_progress_bar_config(disable=True)
    pipe([0, 0])
    assert capsys.readouterr().err == ""


def test_validation_runs_before_the_work(tiny_pipeline):
    pipe = LinearPipeline.from_pretrained(tiny_pipeline, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    before = LinearPipeline.runs
    for bad in ([1.0], "12", [1, "2"]):
        with pytest.raises(InputError, match="x: expected a list of two numbers"):
            pipe(bad)
    assert LinearPipeline.runs == before
    pipe([1, 2])
    assert LinearPipeline.runs == before + 1


def test_results_carry_no_autograd(tiny_pipeline):
    pipe = LinearPipeline.from_pretrained(tiny_pipeline, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe._run = lambda x: pipe.layer(torch.tensor(x, dtype=torch.float32))
    assert not pipe([1, 2]).requires_grad


def test_unimplemented_pipeline_says_so(tmp_path):
    with pytest.raises(NotImplementedError, match="_load"):
        pipelines.Pipeline.from_pretrained(tmp_path)
    with pytest.raises(NotImplementedError, match="_run"):
        pipelines.Pipeline()(1)


def test_shipped_folder_is_the_repository_checkpoints():
    assert paths.SHIPPED_CHECKPOINTS == Path(__file__).resolve().parent.parent / "checkpoints"


def test_time_limit_stops_the_work_at_a_step(tiny_pipeline, monkeypatch):
    """Under ``time_limit`` a pipeline's work stops with an InputError at the first progress step
    past the deadline, in this thread only; outside it (and after it) nothing is limited."""
    import threading

    from multimodal.pipelines import base

    p = multimodal.pipeline(TASK)
    p.set_progress_bar_config(disable=True)
    clock = iter(range(0, 1000, 10))  # every look at the clock is 10 s later
    monkeypatch.setattr(base.time, "monotonic", lambda: next(clock))
    runs = LinearPipeline.runs
    with base.time_limit(25, "ask for fewer steps"):
        with pytest.raises(InputError, match=r"time limit: this request was stopped after 25 s, its limit; "
                                             r"ask for fewer steps"):
            p([1.0, 2.0])
        other = []
        worker = threading.Thread(target=lambda: other.append(p([1.0, 2.0])))
        worker.start()
        worker.join()
        assert other == [[5.5, 10.5]]  # another thread's request has its own limit (none)
    assert LinearPipeline.runs == runs + 2
    assert p([1.0, 2.0]) == [5.5, 10.5]
    with base.time_limit(None):
        assert p([1.0, 2.0]) == [5.5, 10.5]
