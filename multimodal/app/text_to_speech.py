"""The Text → Speech tab: text, voice and seed -> audio, and a button that sends the audio to the
recogniser so that a person sees what it heard."""

from __future__ import annotations

import random

import gradio as gr
import numpy as np

from ..errors import InputError, check_seed
from ..paths import available_models
from ..pipelines.base import time_limit
from ..pipelines.text_to_speech import DEFAULT_MODEL
from .common import TIME_LIMITS, adapter_dropdown, app_pipeline, chosen_model, gradio_errors

MAX_CHARS = 600  # the longest text one request may speak (a few sentences; the command takes any length)
RANDOM_SEEDS = 2 ** 32
CONCURRENCY = 1  # generations served at once (each uses every core); more wait in the queue
EXAMPLE_TEXTS = ["Call 4071 after nine.", "a red bag on a navy background",
                 "a purple circle on a white background", "The train leaves at 6 and arrives at 9."]


def speak(text: str, voice: str | None = None, seed: float = 0, temperature: float = 0.0, adapter: str | None = None):
    """(sampling rate, int16 samples) of ``text`` read by ``voice``, for ``gr.Audio``. ``temperature``
    0 takes the model's own sampling (the shipped one decodes greedily, guided against the empty
    text); above 0 it samples every code at that temperature (``top_k`` off). ``adapter``: a LoRA
    adapter checkpoint for the default model (None or "none": the model alone)."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise InputError(f"text: expected at most {MAX_CHARS} characters in the app, found "
                         f"{len(text) if isinstance(text, str) else type(text).__name__}")
    pipe = app_pipeline("text-to-speech", chosen_model(DEFAULT_MODEL, adapter))
    sampling = {"temperature": float(temperature), "top_k": 0} if temperature and float(temperature) > 0 else {}
    out = pipe(text, voice=voice or None, generator=check_seed(seed), **sampling)
    return out["sampling_rate"], (np.clip(out["audio"], -1, 1) * 32767).astype(np.int16)


def speak_for_tab(text: str, voice: str, randomize: bool, seed: float, temperature: float,
                  adapter: str | None = None, progress=gr.Progress(track_tqdm=True)):
    """The tab's handler: (the audio, the seed used)."""
    seed = random.randint(0, RANDOM_SEEDS - 1) if randomize else seed
    with time_limit(TIME_LIMITS["text-to-speech"], "try a shorter text"):
        return speak(text, voice, seed, temperature, adapter), seed


def hear(audio) -> str:
    """What the recogniser hears in the tab's audio (``(rate, samples)``)."""
    if audio is None:
        raise InputError("audio: expected speech to transcribe (press speak first), found none")
    rate, samples = audio
    samples = np.asarray(samples)
    if samples.dtype.kind == "i":
        samples = samples.astype(np.float32) / 32768
    pipe = app_pipeline("automatic-speech-recognition")
    with time_limit(TIME_LIMITS["transcribe"], "try a shorter text"):
        return pipe(samples.astype(np.float32), sampling_rate=int(rate))["text"].strip()


def text_to_speech_tab() -> None:
    """The Gradio tab: text, voice, seed -> an audio player; "what the recogniser hears"."""
    if DEFAULT_MODEL not in available_models():
        gr.Markdown(f"No text-to-speech checkpoint is installed (`checkpoints/{DEFAULT_MODEL}`): train one with "
                    "`multimodal train text2speech` and put it there.")
        return
    speak_handler, hear_handler = gradio_errors(speak_for_tab), gradio_errors(hear)
    voices = app_pipeline("text-to-speech", DEFAULT_MODEL).voices
    gr.Markdown("Text to speech with a codec-token GPT trained here on synthetic training voices: it predicts "
                "how long each of the text's phonemes lasts, writes speech-codec codes frame by frame, told which "
                "phoneme each frame says, and the codec turns them into 16 kHz audio. "
                "Digits are read one at a time; long text is read sentence by sentence. **Hear it** sends the "
                "audio to the Transcribe tab's recogniser, to show what it understood.")
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(label="text", value=EXAMPLE_TEXTS[0], lines=3, max_length=MAX_CHARS)
            voice = gr.Dropdown(list(voices), value=voices[0], label="voice")
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature",
                                    info="0: the model's own decoding (greedy); above 0: sample at that temperature")
            randomize = gr.Checkbox(value=False, label="random seed",
                                    info="a new seed each time, shown below; untick to repeat a seed")
            seed = gr.Number(value=0, precision=0, label="seed")
            adapter = adapter_dropdown(DEFAULT_MODEL)
            button = gr.Button("speak", variant="primary")
        with gr.Column():
            audio = gr.Audio(label="speech", type="numpy", interactive=False)
            listen = gr.Button("hear it (transcribe)")
            heard = gr.Textbox(label="what the recogniser heard", lines=2)
    gr.Examples([[t] for t in EXAMPLE_TEXTS], inputs=[text])
    inputs = [text, voice, randomize, seed, temperature] + ([adapter] if adapter is not None else [])
    button.click(speak_handler, inputs, [audio, seed], api_name="speak",
                 concurrency_limit=CONCURRENCY, concurrency_id="text-to-speech")
    listen.click(hear_handler, [audio], [heard], api_name="hear", concurrency_limit=2, concurrency_id="transcribe")
