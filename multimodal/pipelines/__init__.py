"""Task pipelines and the ``multimodal.pipeline(task, model=None)`` factory.

Tasks are named as in Hugging Face ("image-classification", "automatic-speech-recognition",
"text-to-image", "text-to-video", …); ``registry.py`` maps each to its pipeline class and shipped
default model.
Pipelines are library code: the command line is ``multimodal.cli``, the app ``multimodal.app``.
"""

from __future__ import annotations

from .base import Pipeline
from .registry import Registration, available_tasks, get_registration, pipeline, register_pipeline, registrations

__all__ = ["Pipeline", "Registration", "available_tasks", "get_registration", "pipeline", "register_pipeline",
           "registrations"]
