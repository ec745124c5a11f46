"""The task registry: Hugging Face task names -> pipeline classes and their shipped default models,
and the ``pipeline(task, model=None)`` factory.

The suite's own pipelines are registered at the bottom of this file; a user's pipeline joins them
with ``register_pipeline("my-task", MyPipeline, default_model="my-checkpoint")``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .base import Pipeline
from .image_classification import DEFAULT_MODEL as CLASSIFIER, ImageClassificationPipeline
from .speech_recognition import DEFAULT_NAME as RECOGNISER, SpeechRecognitionPipeline
from .text_to_image import DEFAULT_MODEL as TEXT_TO_IMAGE, TextToImagePipeline
from .text_to_speech import DEFAULT_MODEL as TEXT_TO_SPEECH, TextToSpeechPipeline
from .text_to_video import DEFAULT_MODEL as TEXT_TO_VIDEO, TextToVideoPipeline


@dataclass(frozen=True)
class Registration:
    task: str
    cls: type[Pipeline]
    default_model: str | None = None  # a checkpoint name (see multimodal.paths) or folder


_REGISTRY: dict[str, Registration] = {}


def register_pipeline(task: str, cls: type[Pipeline], default_model: str | None = None) -> None:
    if task in _REGISTRY and _REGISTRY[task].cls is not cls:
        raise ValueError(f"task {task!r} is already registered to {_REGISTRY[task].cls.__name__}")
    _REGISTRY[task] = Registration(task, cls, default_model)


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


register_pipeline("automatic-speech-recognition", SpeechRecognitionPipeline, default_model=RECOGNISER)
register_pipeline("image-classification", ImageClassificationPipeline, default_model=CLASSIFIER)
register_pipeline("text-to-image", TextToImagePipeline, default_model=TEXT_TO_IMAGE)
register_pipeline("text-to-speech", TextToSpeechPipeline, default_model=TEXT_TO_SPEECH)
register_pipeline("text-to-audio", TextToSpeechPipeline, default_model=TEXT_TO_SPEECH)
register_pipeline("text-to-video", TextToVideoPipeline, default_model=TEXT_TO_VIDEO)
