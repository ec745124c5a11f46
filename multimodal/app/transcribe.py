"""The Transcribe tab: record or upload audio, read the text, the timed segments and the timed words,
download .srt.

Work per request is bounded so that one long or repetitive clip cannot hold the tab for minutes:
recordings up to ``MAX_SECONDS``, and a shorter temperature fallback than the command's (``APP_FALLBACK``,
``APP_BEST_OF``: at most 5 decodes of a window instead of 26). Progress shows in the page.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..media.audio import SAMPLE_RATE, load_audio
from ..pipelines.base import time_limit
from ..pipelines.speech_recognition import DEFAULT_NAME, format_timestamp, write_result
from .common import TIME_LIMITS, adapted_pipeline, adapter_dropdown, gradio_errors, request_folder

WHISPER_ALIAS = "tiny.en"  # what adapters for the default Whisper name as their base
MAX_SECONDS = 600  # the longest recording the app transcribes (the command takes any length)
APP_FALLBACK = (0.0, 0.4, 0.8)  # temperatures tried per window when decoding fails its checks
APP_BEST_OF = 2  # samples per fallback temperature
CONCURRENCY = 2  # transcriptions served at once; more wait in the queue
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.flac"))


def transcribe_audio_file(path: str | None, beam_size: float = 5, out_dir: str | None = None,
                          adapter: str | None = None, vad: bool = True):
    """The app's handler: (text, segments table rows, words table rows, path of the .srt).
    ``adapter``: a LoRA adapter checkpoint for the default model (None or "none": the model alone).
    ``vad``: decode only the speech Silero VAD finds (on by default)."""
    if not path:
        raise InputError("audio: expected a recording or an uploaded file, found none")
    name = Path(path).name
    audio = load_audio(path, name=name)  # errors name the user's file, never the server's copy
    if len(audio) > MAX_SECONDS * SAMPLE_RATE:
        raise InputError(f"{name}: expected at most {MAX_SECONDS // 60} minutes of audio in the app, found "
                         f"{len(audio) / SAMPLE_RATE / 60:.1f} (use `multimodal transcribe` for longer recordings)")
    pipe = adapted_pipeline("automatic-speech-recognition", adapter)
    result = pipe(audio, sampling_rate=SAMPLE_RATE, beam_size=int(beam_size), temperature=APP_FALLBACK,
                  best_of=APP_BEST_OF, return_timestamps="word", vad_filter=vad)
    rows = [[format_timestamp(s["start"]), format_timestamp(s["end"]), s["text"].strip()]
            for s in result["segments"] if s["text"].strip()]
    words = [[format_timestamp(w["start"]), format_timestamp(w["end"]), w["word"].strip(), round(w["probability"], 2)]
             for s in result["segments"] for w in s.get("words", [])]
    folder = Path(out_dir) if out_dir else request_folder()
    srt = write_result(result, folder / f"{Path(path).stem}.srt", "srt")
    return result["text"].strip(), rows, words, str(srt)


def _transcribe_in_tab(path: str | None, beam_size: float, vad: bool = True, adapter: str | None = None,
                       progress=gr.Progress(track_tqdm=True)):
    with time_limit(TIME_LIMITS["transcribe"], "try a shorter recording or a smaller beam size"):
        return transcribe_audio_file(path, beam_size, adapter=adapter, vad=bool(vad))


def transcribe_tab() -> None:
    """The Gradio tab: record or upload audio, read the text and the timed segments, download .srt."""
    handler = gradio_errors(_transcribe_in_tab)
    gr.Markdown(f"Speech to text with Whisper ({DEFAULT_NAME}, English): upload a recording (wav, flac, mp3, "
                f"ogg, m4a …, up to {MAX_SECONDS // 60} minutes) or record one with the microphone. Long "
                "recordings are transcribed 30-second window by window; the segments table gives their times.")
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
            beam = gr.Slider(1, 10, value=5, step=1, label="beam size")
            vad = gr.Checkbox(value=True, label="skip silence and noise (voice activity detection)")
            adapter = adapter_dropdown(DEFAULT_NAME, WHISPER_ALIAS)
            button = gr.Button("transcribe", variant="primary")
        with gr.Column():
            text = gr.Textbox(label="text", lines=6)
            table = gr.Dataframe(headers=["start", "end", "text"], label="segments", wrap=True)
            words = gr.Dataframe(headers=["start", "end", "word", "probability"], label="words", wrap=True)
            srt = gr.File(label="subtitles (.srt)")
    if EXAMPLES:
        gr.Examples(EXAMPLES, inputs=[audio])
    inputs = [audio, beam, vad] + ([adapter] if adapter is not None else [])
    button.click(handler, inputs, [text, table, words, srt], api_name="transcribe", concurrency_limit=CONCURRENCY,
                 concurrency_id="transcribe")
