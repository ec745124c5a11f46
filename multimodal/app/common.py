"""What the app's tabs share: pipelines loaded once per process, and InputErrors shown as messages."""

from __future__ import annotations

import functools

import gradio as gr

from ..errors import InputError
from ..lora import available_adapters
from ..pipelines import Pipeline, pipeline

_APP_PIPELINES: dict[tuple[str, str | None], Pipeline] = {}


def app_pipeline(task: str, model: str | None = None) -> Pipeline:
    """The app's pipeline for ``task`` and ``model`` (default: the task's default model), loaded on the
    first request and kept for the next ones, with progress bars off."""
    key = (task, model)
    if key not in _APP_PIPELINES:
        pipe = pipeline(task, model=model)
        pipe.set_progress_bar_config(disable=True)
        _APP_PIPELINES[key] = pipe
    return _APP_PIPELINES[key]


NO_ADAPTER = "none"


def adapter_dropdown(*bases: str):
    """A dropdown of the LoRA adapters shipped for ``bases`` ("none" first), or None when there are none."""
    names = available_adapters(*bases)
    if not names:
        return None
    return gr.Dropdown([NO_ADAPTER, *names], value=NO_ADAPTER, label="LoRA adapter",
                       info="an adapter loaded onto the model (its base plus the adapter)")


def adapted_pipeline(task: str, adapter: str | None) -> Pipeline:
    """The app's pipeline for ``task``: its default model, or the adapter folder ``adapter`` (which loads
    the base it names plus the adapter; one pipeline per adapter, so requests never switch a shared one)."""
    return app_pipeline(task, None if adapter in (None, "", NO_ADAPTER) else adapter)


def gradio_errors(fn):
    """Wrap a Gradio event handler so that an ``InputError`` shows as a ``gr.Error`` message."""

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            raise gr.Error(str(e)) from None

    return handler
