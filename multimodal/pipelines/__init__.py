"""Task pipelines and the ``multimodal.pipeline(task, model=None)`` factory.

Tasks are named as in Hugging Face ("image-classification", "automatic-speech-recognition",
"text-to-image", "text-to-audio", …). Each pipeline module registers its class at import time:

    register_pipeline("image-classification", ImageClassificationPipeline,
                      default_model="vit-fashion-mnist", ui=classify_tab, title="Classify")

and is imported at the bottom of this file. ``ui`` builds the pipeline's tab in the Gradio app
(``app.py`` calls it inside ``gr.Blocks``, in a tab named ``title``); it imports Gradio itself, so the
library never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import InputError
from .base import Pipeline, gradio_errors


@dataclass(frozen=True)
class Registration:
    task: str
    cls: type[Pipeline]
    default_model: str | None = None  # a checkpoint name (see multimodal.paths) or folder
    ui: Callable[[], None] | None = None  # builds the app's tab for this task
    title: str | None = None  # the tab's name in the app (default: the task)


_REGISTRY: dict[str, Registration] = {}


def register_pipeline(task: str, cls: type[Pipeline], default_model: str | None = None,
                      ui: Callable[[], None] | None = None, title: str | None = None) -> None:
    if task in _REGISTRY and _REGISTRY[task].cls is not cls:
        raise ValueError(f"task {task!r} is already registered to {_REGISTRY[task].cls.__name__}")
    _REGISTRY[task] = Registration(task, cls, default_model, ui, title)


def registrations() -> list[Registration]:
    return [_REGISTRY[task] for task in sorted(_REGISTRY)]


def available_tasks() -> list[str]:
    return sorted(_REGISTRY)


def get_registration(task: str) -> Registration:
    """The registration of ``task``; an unknown task is an InputError listing the known ones."""
    if isinstance(task, str) and task in _REGISTRY:
        return _REGISTRY[task]
    if not _REGISTRY:
        raise InputError(f"task: expected a registered task, but no pipelines are registered yet; found {task!r}")
    raise InputError(f"task: expected one of {', '.join(available_tasks())}, found {task!r}")


def pipeline(task: str, model: str | None = None, **kwargs) -> Pipeline:
    """Load the pipeline for ``task``: ``model`` is a checkpoint folder or name, by default the
    task's shipped model. Other keyword arguments (``device``, ``dtype``) go to ``from_pretrained``."""
    registration = get_registration(task)
    if model is None:
        if registration.default_model is None:
            raise InputError(f"model: task {task!r} ships no default model, so expected model= a checkpoint "
                             f"folder or name, found None")
        model = registration.default_model
    return registration.cls.from_pretrained(model, **kwargs)


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


__all__ = ["Pipeline", "Registration", "app_pipeline", "available_tasks", "get_registration", "gradio_errors", "pipeline",
           "register_pipeline", "registrations"]

# Pipeline modules register themselves on import; add each one here.
from . import image_classification  # noqa: E402,F401  (registers "image-classification")
from . import speech_recognition  # noqa: E402,F401  (registers "automatic-speech-recognition")
from . import text_to_image  # noqa: E402,F401  (registers "text-to-image")
