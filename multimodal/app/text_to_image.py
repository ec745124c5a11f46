"""The Text → Image tab: prompt, model, sampler, steps, guidance, seed and count -> a gallery."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from ..errors import InputError
from .common import app_pipeline, gradio_errors

APP_MODELS = {"DiT": "text2image-dit", "SiT": "text2image-sit"}
EXAMPLE_PROMPTS = ["a red circle on a black background", "a yellow sneaker on a navy background",
                   "a red sneaker on a gray background", "a purple circle on a white background",
                   "a green t-shirt on a black background", "a white star on a navy background"]


def generate_images(prompt: str, model: str = "SiT", sampler: str = "default", steps: float = 25,
                    guidance: float = 4.0, seed: float = 0, count: float = 4) -> list[Image.Image]:
    """The app's handler: a gallery of ``count`` images for ``prompt``."""
    if model not in APP_MODELS:
        raise InputError(f"model: expected one of {', '.join(APP_MODELS)}, found {model!r}")
    pipe = app_pipeline("text-to-image", APP_MODELS[model])
    sampler = None if sampler in (None, "", "default") else sampler
    images = pipe(prompt or "", num_inference_steps=int(steps), guidance_scale=float(guidance), sampler=sampler,
                  generator=int(seed), num_images_per_prompt=int(count))
    return [image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST) for image in images]


def text_to_image_tab() -> None:
    """The Gradio tab: prompt, model, sampler, steps, guidance, seed and count -> a gallery."""
    handler = gradio_errors(generate_images)
    gr.Markdown("Text-to-image with the DiT and SiT latent-diffusion models trained here on the captioned world: "
                "32x32 images of one object (t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, "
                "ankle boot, circle, square, triangle, star, heart, cross) in one colour (red, orange, yellow, green, "
                "cyan, blue, purple, white) on a black, white, gray or navy background. Some combinations "
                "(red sneaker, purple circle, ...) were never shown in training. An empty prompt is unconditional.")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="prompt", value=EXAMPLE_PROMPTS[0])
            model = gr.Radio(list(APP_MODELS), value="SiT", label="model")
            sampler = gr.Dropdown(["default", "ddim", "ddpm", "dpm++", "euler", "heun", "sde"], value="default",
                                  label="sampler (DiT: ddim, ddpm, dpm++; SiT: euler, heun, sde)")
            steps = gr.Slider(1, 100, value=25, step=1, label="steps")
            guidance = gr.Slider(0, 10, value=4, step=0.5, label="guidance scale")
            seed = gr.Number(value=0, precision=0, label="seed")
            count = gr.Slider(1, 16, value=4, step=1, label="images")
            button = gr.Button("generate", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="images", columns=4)
    gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt])
    button.click(handler, [prompt, model, sampler, steps, guidance, seed, count], [gallery], api_name="generate")
