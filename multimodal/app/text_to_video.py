"""The Text → Video tab: prompt, guidance, temperature, top-k, top-p and seed -> a clip to play (MP4) and
to download (MP4 and GIF). Shown only where the text-to-video checkpoint is installed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import gradio as gr

from ..config import read_json
from ..errors import InputError, check_seed
from ..media.video import write_video
from ..paths import available_models, resolve_model
from ..pipelines.base import time_limit
from ..pipelines.text_to_video import DEFAULT_MODEL
from .common import TIME_LIMITS, adapted_pipeline, adapter_dropdown, gradio_errors, request_folder

MODEL = DEFAULT_MODEL
CONCURRENCY = 1  # generations served at once (each uses every core); more wait in the queue
RANDOM_SEEDS = 2 ** 32  # drawn seeds stay below this, exact in the browser's numbers
MAX_PROMPT_CHARS = 300  # longer text is no caption of the moving world; the model refuses it anyway
FPS, SCALE = 8, 4  # the files: 16 frames play for 2 s, 32x32 frames shown at 128x128
# Canonical captions of the moving world, seen in training (no held-out colour or direction pair).
EXAMPLE_PROMPTS = [
    "a red circle moving right on a black background", "a yellow sneaker moving left on a navy background",
    "a green t-shirt moving down on a gray background", "a white star moving up on a navy background",
    "a blue square moving left on a white background", "a cyan heart moving right on a black background"]


class VideoFiles(NamedTuple):
    mp4: Path
    gif: Path
    warnings: list[str]  # the pipeline's notes about the prompt


def model_available() -> bool:
    """Whether the text-to-video checkpoint is installed (the tab is listed only then)."""
    return MODEL in available_models()


def sampling_defaults() -> dict[str, float]:
    """The sampling defaults in the checkpoint's config.json, as the tab's controls hold them: guidance,
    temperature, top-k (0: off) and top-p (1: off)."""
    c = read_json(resolve_model(MODEL) / "config.json")
    return {"guidance": c["guidance_scale"], "temperature": c["temperature"], "top_k": c["top_k"] or 0,
            "top_p": c["top_p"] or 1.0}


def generate_video(prompt: str, guidance: float | None = None, temperature: float | None = None,
                   top_k: float | None = None, top_p: float | None = None, seed: float = 0,
                   adapter: str | None = None) -> VideoFiles:
    """One clip of ``prompt``, written to a fresh request folder as an MP4 (to play) and a GIF, each
    magnified ``SCALE`` times. A sampling argument left None takes the checkpoint's default; ``top_k``
    0 and ``top_p`` 1 turn those filters off. ``adapter``: a LoRA adapter checkpoint for the model
    (None or "none": the model alone)."""
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"prompt: expected at most {MAX_PROMPT_CHARS} characters in the app, found "
                         f"{len(prompt) if isinstance(prompt, str) else type(prompt).__name__}")
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)  # a slider's number; the pipeline refuses any other non-integer
    pipe = adapted_pipeline("text-to-video", adapter, MODEL)
    sampling = {"guidance_scale": guidance, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    out = pipe(prompt, generator=check_seed(seed), **sampling)
    folder = request_folder()
    mp4 = write_video(out.frames[0], folder / "clip.mp4", FPS, scale=SCALE)
    gif = write_video(out.frames[0], folder / "clip.gif", FPS, scale=SCALE)
    return VideoFiles(mp4, gif, out.warnings)


def generate_for_tab(prompt: str, guidance: float, temperature: float, top_k: float, top_p: float, randomize: bool,
                     seed: float, adapter: str | None = None, progress=gr.Progress(track_tqdm=True)):
    """The tab's handler: (the MP4 to play, the MP4 and GIF to download, the notes about the prompt as
    Markdown, the seed used). With ``randomize``, a fresh seed is drawn, used and shown, so that any
    clip can be made again."""
    seed = random.randint(0, RANDOM_SEEDS - 1) if randomize else seed
    with time_limit(TIME_LIMITS["text-to-video"], "the machine may be busy: try again in a moment"):
        files = generate_video(prompt, guidance, temperature, top_k, top_p, seed, adapter)
    notes = "\n".join(f"- ⚠️ {line}" for line in files.warnings)
    return str(files.mp4), [str(files.mp4), str(files.gif)], notes, seed


def text_to_video_tab() -> None:
    """The Gradio tab: prompt, sampling controls and seed -> a video player and its files."""
    handler = gradio_errors(generate_for_tab)
    defaults = sampling_defaults()  # the checkpoint's own, chosen on validation prompts
    gr.Markdown("Text-to-video with a token GPT trained here on the moving world: clips of 16 frames at 32x32 of "
                "one object (t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot, "
                "circle, square, triangle, star, heart, cross) in one colour (red, orange, yellow, green, cyan, blue, "
                "purple, white) moving left, right, up or down on a black, white, gray or navy background. The GPT "
                "writes a video VQ-VAE's codes one by one (4 time steps of 8x8) and the VQ-VAE turns them into "
                "frames. Some combinations (a red sneaker, a circle moving left, ...) were never shown in training. "
                "Other text still makes a clip, with a note on the words the model never read.")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="prompt", value=EXAMPLE_PROMPTS[0], max_length=MAX_PROMPT_CHARS)
            guidance = gr.Slider(0, 10, value=defaults["guidance"], step=0.5, label="guidance scale")
            temperature = gr.Slider(0.1, 2.0, value=defaults["temperature"], step=0.05, label="temperature")
            top_k = gr.Slider(0, 512, value=defaults["top_k"], step=1, label="top k (0: off)")
            top_p = gr.Slider(0.05, 1.0, value=defaults["top_p"], step=0.05, label="top p")
            randomize = gr.Checkbox(value=True, label="random seed",
                                    info="a new seed each time, shown below; untick to repeat a seed")
            seed = gr.Number(value=0, precision=0, label="seed")
            adapter = adapter_dropdown(MODEL)
            button = gr.Button("generate", variant="primary")
        with gr.Column():
            video = gr.Video(label="video", format="mp4", autoplay=True, loop=True, interactive=False)
            files = gr.File(label="download (MP4, GIF)", file_count="multiple", interactive=False)
            notes = gr.Markdown()
    gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt])
    inputs = [prompt, guidance, temperature, top_k, top_p, randomize, seed] + ([adapter] if adapter is not None else [])
    button.click(handler, inputs, [video, files, notes, seed],
                 api_name="generate_video", concurrency_limit=CONCURRENCY, concurrency_id="text-to-video")
