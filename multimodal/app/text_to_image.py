"""The Text → Image tab: prompt, model, sampler, steps, guidance, seed and count -> a gallery."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from ..errors import InputError
from ..paths import available_models
from .common import app_pipeline, gradio_errors

# Model choices: the diffusion models, and the token GPT where its checkpoint is present.
DIFFUSION_MODELS = {"SiT": "text2image-sit", "DiT": "text2image-dit"}
GPT_MODELS = {"GPT": "text2image-gpt"}
SAMPLERS = {"SiT": ["default", "euler", "heun", "sde"], "DiT": ["default", "ddpm", "ddim", "dpm++"]}


def app_models() -> dict[str, str]:
    """The model choices of the tab: name -> checkpoint name."""
    return {**DIFFUSION_MODELS, **{k: v for k, v in GPT_MODELS.items() if v in available_models()}}


EXAMPLE_PROMPTS = ["a red circle on a black background", "a yellow sneaker on a navy background",
                   "a red sneaker on a gray background", "a purple circle on a white background",
                   "a green t-shirt on a black background", "a white star on a navy background"]


def generate_images(prompt: str, model: str = "SiT", sampler: str = "default", steps: float = 25,
                    guidance: float = 4.0, seed: float = 0, count: float = 4, temperature: float = 1.0,
                    top_k: float = 0, top_p: float = 1.0) -> list[Image.Image]:
    """The app's handler: a gallery of ``count`` images for ``prompt``. The diffusion models use
    ``sampler`` and ``steps``; the GPT uses ``temperature``, ``top_k`` (0: off) and ``top_p``."""
    models = app_models()
    if model not in models:
        raise InputError(f"model: expected one of {', '.join(models)}, found {model!r}")
    pipe = app_pipeline("text-to-image", models[model])
    common = dict(guidance_scale=float(guidance), generator=int(seed), num_images_per_prompt=int(count))
    if model in GPT_MODELS:
        images = pipe(prompt or "", temperature=float(temperature), top_k=int(top_k) or None,
                      top_p=float(top_p), **common)
    else:
        sampler = None if sampler in (None, "", "default") else sampler
        images = pipe(prompt or "", num_inference_steps=int(steps), sampler=sampler, **common)
    return [image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST) for image in images]


def _controls_for(model: str):
    """Show the controls of ``model``'s kind: sampler and steps, or temperature, top-k and top-p."""
    gpt = model in GPT_MODELS
    return (gr.update(visible=not gpt, choices=SAMPLERS.get(model, ["default"]), value="default"),
            gr.update(visible=not gpt), gr.update(visible=gpt), gr.update(visible=gpt), gr.update(visible=gpt),
            gr.update(value=3.0 if gpt else 4.0))


def text_to_image_tab() -> None:
    """The Gradio tab: prompt, model and its sampling controls, guidance, seed and count -> a gallery."""
    handler = gradio_errors(generate_images)
    models = app_models()
    gr.Markdown(f"Text-to-image with the models trained here on the captioned world ({', '.join(models)}): "
                "32x32 images of one object (t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, "
                "ankle boot, circle, square, triangle, star, heart, cross) in one colour (red, orange, yellow, green, "
                "cyan, blue, purple, white) on a black, white, gray or navy background. Some combinations "
                "(red sneaker, purple circle, ...) were never shown in training. SiT and DiT are latent diffusion "
                "models (an empty prompt is unconditional); the GPT writes VQ-VAE codes one by one.")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="prompt", value=EXAMPLE_PROMPTS[0])
            model = gr.Radio(list(models), value="SiT", label="model")
            sampler = gr.Dropdown(SAMPLERS["SiT"], value="default", label="sampler")
            steps = gr.Slider(1, 100, value=25, step=1, label="steps")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature", visible=False)
            top_k = gr.Slider(0, 512, value=0, step=1, label="top k (0: off)", visible=False)
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top p", visible=False)
            guidance = gr.Slider(0, 10, value=4, step=0.5, label="guidance scale")
            seed = gr.Number(value=0, precision=0, label="seed")
            count = gr.Slider(1, 16, value=4, step=1, label="images")
            button = gr.Button("generate", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="images", columns=4)
    model.change(_controls_for, [model], [sampler, steps, temperature, top_k, top_p, guidance])
    gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt])
    button.click(handler, [prompt, model, sampler, steps, guidance, seed, count, temperature, top_k, top_p], [gallery],
                 api_name="generate")
