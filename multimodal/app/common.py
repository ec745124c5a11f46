"""What the app's tabs share: pipelines loaded once per process, InputErrors shown as messages (and
logged as one line), per-request folders that are removed, and the limits that keep the app
serving under load."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..lora import available_adapters
from ..pipelines import Pipeline, pipeline

_APP_PIPELINES: dict[tuple[str, str | None], Pipeline] = {}
LOG = logging.getLogger("multimodal.app")

# Limits that keep the app serving under load: a bounded queue (a request beyond it is told the app
# is busy), one running request per tab at a time unless a tab says otherwise, an upload size limit.
QUEUE_MAX_SIZE = 32
MAX_FILE_SIZE = "25mb"
REQUEST_FOLDER_TTL = 600  # seconds a request's output folder is kept for its download
# Seconds one request may run (checked at each step of the work, see ``pipelines.base.time_limit``),
# per tab: room for the largest request each tab accepts on a 2-core CPU, short of holding a tab for
# many minutes. (A classification is one forward pass of milliseconds: it has no steps to stop at.)
TIME_LIMITS = {"transcribe": 300, "text-to-image": 120, "text-to-speech": 120, "text-to-video": 120}


def app_pipeline(task: str, model: str | None = None) -> Pipeline:
    """The app's pipeline for ``task`` and ``model`` (default: the task's default model), loaded on the
    first request and kept for the next ones, with progress bars off."""
    key = (task, model)
    if key not in _APP_PIPELINES:
        pipe = pipeline(task, model=model)
        # Bars on, written nowhere: a handler with gr.Progress(track_tqdm=True) shows them in the page.
        pipe.set_progress_bar_config(file=_DEVNULL, mininterval=0.5)
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


def adapted_pipeline(task: str, adapter: str | None, model: str | None = None) -> Pipeline:
    """The app's pipeline for ``task``: ``model`` (default: the task's default model), or the adapter
    folder ``adapter`` (which loads the base it names plus the adapter; one pipeline per adapter, so
    requests never switch a shared one)."""
    return app_pipeline(task, chosen_model(model, adapter))


def chosen_model(model: str | None, adapter: str | None) -> str | None:
    """What a tab loads: the adapter folder ``adapter`` when one is chosen, else ``model``."""
    return model if adapter in (None, "", NO_ADAPTER) else adapter


_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 (open for the life of the process)


def user_message(message: str, *values) -> str:
    """``message`` as the user should read it: the server's paths among ``values`` (an upload's
    temporary file) replaced by their file names, and no errno numbers."""
    for value in values:
        if isinstance(value, str) and os.path.isabs(value) and value in message:
            message = message.replace(value, Path(value).name)
    return re.sub(r"\[Errno -?\d+\] ", "", message)


def gradio_errors(fn):
    """Wrap a Gradio event handler so that an ``InputError`` shows as a ``gr.Error`` message naming
    the user's files (never the server's paths) and is logged as one line, without a traceback."""

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            message = user_message(" ".join(str(e).splitlines()), *args, *kwargs.values())
            LOG.warning("%s: %s", fn.__name__, message)
            raise gr.Error(message, print_exception=False) from None

    return handler


_FOLDERS: list[tuple[float, Path]] = []
_FOLDERS_LOCK = threading.Lock()


def request_folder() -> Path:
    """A fresh folder for one request's output files. Folders older than ``REQUEST_FOLDER_TTL`` are
    removed when the next one is made, and all of them when the process ends."""
    now = time.monotonic()
    with _FOLDERS_LOCK:
        while _FOLDERS and now - _FOLDERS[0][0] > REQUEST_FOLDER_TTL:
            shutil.rmtree(_FOLDERS.pop(0)[1], ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="multimodal-app-"))
        _FOLDERS.append((now, folder))
    return folder


@atexit.register
def _remove_request_folders() -> None:
    with _FOLDERS_LOCK:
        for _, folder in _FOLDERS:
            shutil.rmtree(folder, ignore_errors=True)
        _FOLDERS.clear()
