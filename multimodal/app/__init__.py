"""The Gradio app: one tab per task whose pipeline is registered, each tab built by its own module.

    make run                  # or: .venv/bin/python app.py
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8000 make run

``build()`` returns the ``gr.Blocks`` without serving it; ``register_tab(task, title, build_tab)``
adds a tab for a user's own pipeline (``shown=``: a check, made at each build, of whether to list it).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the machines here reach no analytics server

from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import gradio as gr  # noqa: E402

from .. import __version__, pipelines  # noqa: E402
from . import classify, text_to_image, text_to_speech, text_to_video, transcribe  # noqa: E402
from .common import MAX_FILE_SIZE, QUEUE_MAX_SIZE, app_pipeline, gradio_errors  # noqa: E402

INTRO = ("Small models trained here, all on one shared transformer backbone, running on this machine: "
         "**Transcribe** speech to text (Whisper tiny.en), **Classify** clothing photos (a ViT on Fashion-MNIST), "
         "and draw 32x32 pictures from text with **Text → Image** (SiT, DiT and a token GPT trained on a "
         "captioned world of coloured objects). **Text → Speech** reads text aloud where a text-to-speech "
         "checkpoint is installed, and **Text → Video** makes 16-frame clips of moving objects where the "
         "text-to-video checkpoint is installed. Each tab says what its model knows and has examples to try. "
         "Requests queue when the machine is busy.")


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Tab:
    task: str  # shown only while this task's pipeline is registered
    title: str
    build: Callable[[], None]  # builds the tab's contents inside gr.Blocks
    shown: Callable[[], bool] = _always  # listed only while this holds (say, while its checkpoint is installed)


_TABS: dict[str, Tab] = {}


def register_tab(task: str, title: str, build_tab: Callable[[], None], shown: Callable[[], bool] = _always) -> None:
    _TABS[task] = Tab(task, title, build_tab, shown)


def tabs() -> list[Tab]:
    """The tabs of the registered tasks that are shown now, in task order."""
    return [_TABS[task] for task in pipelines.available_tasks() if task in _TABS and _TABS[task].shown()]


def build() -> gr.Blocks:
    shown = tabs()
    # Gradio's own copies of uploads and outputs older than a day are removed every hour.
    with gr.Blocks(title="multimodal", delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# multimodal {__version__}\n{INTRO}")
        if not shown:
            gr.Markdown(_nothing_yet())
        else:
            with gr.Tabs():
                for tab in shown:
                    with gr.Tab(tab.title):
                        tab.build()
    # A bounded queue: past QUEUE_MAX_SIZE waiting requests, a new one is refused at once ("busy")
    # instead of waiting without end; each tab sets how many of its requests run together.
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return demo


def _nothing_yet() -> str:
    tasks = pipelines.available_tasks()
    python_only = f" The pipelines registered so far ({', '.join(tasks)}) have no app tab; use them from Python." if tasks else ""
    return (f"**No pipelines are available yet** in the app.{python_only} A tab appears here once its pipeline "
            f"is registered and its model installed; nothing on this page is simulated.")


def main() -> None:
    build().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), max_file_size=MAX_FILE_SIZE)


register_tab("automatic-speech-recognition", "Transcribe", transcribe.transcribe_tab)
register_tab("image-classification", "Classify", classify.classify_tab)
register_tab("text-to-image", "Text → Image", text_to_image.text_to_image_tab)
register_tab("text-to-speech", "Text → Speech", text_to_speech.text_to_speech_tab)
register_tab("text-to-video", "Text → Video", text_to_video.text_to_video_tab, shown=text_to_video.model_available)

__all__ = ["Tab", "app_pipeline", "build", "gradio_errors", "main", "register_tab", "tabs"]
