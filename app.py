"""The Gradio app: one tab per registered pipeline, each built by the pipeline's own ``ui`` function.

    make run                  # or: .venv/bin/python app.py
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8000 make run

``build()`` returns the ``gr.Blocks`` without serving it.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the machines here reach no analytics server

import gradio as gr  # noqa: E402

from multimodal import __version__, pipelines  # noqa: E402

COMING = "text-to-audio"


def build() -> gr.Blocks:
    with_ui = [r for r in pipelines.registrations() if r.ui is not None]
    with gr.Blocks(title="multimodal") as demo:
        gr.Markdown(f"# multimodal {__version__}")
        if not with_ui:
            gr.Markdown(_nothing_yet())
        else:
            with gr.Tabs():
                for registration in with_ui:
                    with gr.Tab(registration.title or registration.task):
                        registration.ui()
    return demo


def _nothing_yet() -> str:
    tasks = pipelines.available_tasks()
    python_only = f" The pipelines registered so far ({', '.join(tasks)}) have no app tab; use them from Python." if tasks else ""
    return (f"**No pipelines are available yet** in the app.{python_only} Tabs for {COMING} "
            f"will appear here as their pipelines land; nothing on this page is simulated.")


def main() -> None:
    build().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))


if __name__ == "__main__":
    main()
