"""The Transcribe tab: record or upload audio, read the text and the timed segments, download .srt."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..pipelines.speech_recognition import DEFAULT_NAME, format_timestamp, write_result
from .common import adapted_pipeline, adapter_dropdown, gradio_errors

WHISPER_ALIAS = "tiny.en"  # what adapters for the default Whisper name as their base


def transcribe_audio_file(path: str | None, beam_size: float = 5, out_dir: str | None = None,
                          adapter: str | None = None):
    """The app's handler: (text, segments table rows, path of the .srt). ``adapter``: a LoRA adapter
    checkpoint for the default model (None or "none": the model alone)."""
    if not path:
        raise InputError("audio: expected a recording or an uploaded file, found none")
    result = adapted_pipeline("automatic-speech-recognition", adapter)(path, beam_size=int(beam_size))
    rows = [[format_timestamp(s["start"]), format_timestamp(s["end"]), s["text"].strip()]
            for s in result["segments"] if s["text"].strip()]
    folder = Path(out_dir) if out_dir else Path(_tempdir())
    srt = write_result(result, folder / f"{Path(path).stem}.srt", "srt")
    return result["text"].strip(), rows, str(srt)


def _tempdir() -> str:
    return tempfile.mkdtemp(prefix="multimodal-asr-")


def transcribe_tab() -> None:
    """The Gradio tab: record or upload audio, read the text and the timed segments, download .srt."""
    handler = gradio_errors(lambda path, beam, adapter=None: transcribe_audio_file(path, beam, adapter=adapter))
    gr.Markdown(f"Speech to text with Whisper ({DEFAULT_NAME}); long recordings are transcribed window by window.")
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
            beam = gr.Slider(1, 10, value=5, step=1, label="beam size")
            adapter = adapter_dropdown(DEFAULT_NAME, WHISPER_ALIAS)
            button = gr.Button("transcribe", variant="primary")
        with gr.Column():
            text = gr.Textbox(label="text", lines=6)
            table = gr.Dataframe(headers=["start", "end", "text"], label="segments", wrap=True)
            srt = gr.File(label="subtitles (.srt)")
    inputs = [audio, beam] + ([adapter] if adapter is not None else [])
    button.click(handler, inputs, [text, table, srt], api_name="transcribe")
