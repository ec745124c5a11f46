"""The Text → Image tab: prompt, model (and a LoRA adapter of it), sampler, steps, guidance, seed and
count -> a gallery."""

from __future__ import annotations

import random
from pathlib import Path

import gradio as gr
from PIL import Image

from ..config import read_json
from ..errors import InputError, check_seed
from ..lora import adapter_base, available_adapters
from ..paths import available_models, resolve_model
from ..pipelines.base import time_limit
from ..pipelines.text_to_image import ImagePipelineOutput
from .common import NO_ADAPTER, TIME_LIMITS, app_pipeline, gradio_errors

# Model choices: the diffusion models, and the token GPT where its checkpoint is present.
DIFFUSION_MODELS = {"SiT": "text2image-sit", "DiT": "text2image-dit"}
GPT_MODELS = {"GPT": "text2image-gpt"}
CONCURRENCY = 1  # generations served at once (each uses every core); more wait in the queue
# The most one request may ask for (the sliders' ends; the HTTP API is held to them too), so that no
# request holds the tab for more than about a minute.
MAX_IMAGES, MAX_STEPS = 16, 100
RANDOM_SEEDS = 2 ** 32  # drawn seeds stay below this, exact in the browser's numbers
SAMPLERS = {"SiT": ["default", "euler", "heun", "sde"], "DiT": ["default", "ddpm", "ddim", "dpm++"]}


def app_models() -> dict[str, str]:
    """The model choices of the tab: name -> checkpoint name."""
    return {**DIFFUSION_MODELS, **{k: v for k, v in GPT_MODELS.items() if v in available_models()}}


EXAMPLE_PROMPTS = ["a red circle on a black background", "a yellow sneaker on a navy background",
                   "a red sneaker on a gray background", "a purple circle on a white background",
                   "a green t-shirt on a black background", "a white star on a navy background"]


def model_adapters(model: str) -> list[str]:
    """The shipped LoRA adapters made for the tab's model ``model`` (SiT, DiT, GPT)."""
    checkpoint = app_models().get(model)
    return available_adapters(checkpoint) if checkpoint else []

def gpt_sampling_defaults(model: str) -> dict[str, float]:
    """The sampling defaults in the config.json of the GPT checkpoint behind the tab's ``model``, as the
    tab's controls hold them: guidance, temperature, top-k (0: off) and top-p (1: off)."""
    c = read_json(resolve_model(GPT_MODELS[model]) / "config.json")
    return {"guidance": c["guidance_scale"], "temperature": c["temperature"], "top_k": c["top_k"] or 0,
            "top_p": c["top_p"] or 1.0}

# Prompts that show what a shipped adapter adds.
ADAPTER_EXAMPLES = {"text2image-sit-pink-lora": ["a pink star on a navy background", "a pink dress on a black background",
                                                 "a pink sneaker on a gray background"]}


def generate_images(prompt: str, model: str = "SiT", sampler: str = "default", steps: float = 25,
                    guidance: float = 4.0, seed: float = 0, count: float = 4, temperature: float = 1.0,
                    top_k: float = 0, top_p: float = 1.0, adapter: str | None = None) -> ImagePipelineOutput:
    """``count`` images for ``prompt``, magnified for the gallery, with the pipeline's ``.warnings``
    about the prompt. The diffusion models use ``sampler`` and ``steps``; the GPT uses
    ``temperature``, ``top_k`` (0: off) and ``top_p``. ``adapter``: a LoRA adapter checkpoint made for
    ``model`` (none: the model alone)."""
    if not isinstance(count, (int, float)) or not 1 <= count <= MAX_IMAGES:
        raise InputError(f"count: expected 1 to {MAX_IMAGES} images in the app, found {count!r}")
    if not isinstance(steps, (int, float)) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps: expected 1 to {MAX_STEPS} in the app, found {steps!r}")
    models = app_models()
    if model not in models:
        raise InputError(f"model: expected one of {', '.join(models)}, found {model!r}")
    if adapter in (None, "", NO_ADAPTER):
        pipe = app_pipeline("text-to-image", models[model])
    else:
        base = adapter_base(resolve_model(adapter))
        if base is None or Path(base).name != models[model]:
            raise InputError(f"adapter: expected an adapter of {model} ({', '.join(model_adapters(model)) or 'none'}), "
                             f"found {adapter!r}")
        pipe = app_pipeline("text-to-image", adapter)
    common = dict(guidance_scale=float(guidance), generator=check_seed(seed), num_images_per_prompt=int(count))
    if model in GPT_MODELS:
        images = pipe(prompt or "", temperature=float(temperature), top_k=int(top_k),  # 0: off
                      top_p=float(top_p), **common)
    else:
        sampler = None if sampler in (None, "", "default") else sampler
        images = pipe(prompt or "", num_inference_steps=int(steps), sampler=sampler, **common)
    out = ImagePipelineOutput(image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)
                              for image in images)
    out.warnings = images.warnings
    return out


def generate_for_tab(prompt: str, model: str, sampler: str, steps: float, guidance: float, randomize: bool,
                     seed: float, count: float, temperature: float, top_k: float, top_p: float,
                     adapter: str | None, progress=gr.Progress(track_tqdm=True)):
    """The tab's handler: (gallery images, the notes about the prompt as Markdown, the seed used).
    With ``randomize``, a fresh seed is drawn, used and shown, so that any picture can be made again."""
    seed = random.randint(0, RANDOM_SEEDS - 1) if randomize else seed
    with time_limit(TIME_LIMITS["text-to-image"], "ask for fewer images or steps"):
        images = generate_images(prompt, model, sampler, steps, guidance, seed, count, temperature, top_k, top_p,
                                 adapter)
    notes = "\n".join(f"- ⚠️ {line}" for line in images.warnings)
    return list(images), notes, seed


def _controls_for(model: str):
    """Show the controls of ``model``'s kind: sampler and steps, or temperature, top-k and top-p; and
    its adapters."""
    gpt = model in GPT_MODELS
    adapters = model_adapters(model)
    sampling = gpt_sampling_defaults(model) if gpt else {}  # the checkpoint's own, chosen on validation prompts
    return (gr.update(visible=not gpt, choices=SAMPLERS.get(model, ["default"]), value="default"),
            gr.update(visible=not gpt),
            *(gr.update(visible=gpt, **({"value": sampling[k]} if gpt else {})) for k in ("temperature", "top_k", "top_p")),
            gr.update(value=sampling["guidance"] if gpt else 4.0),
            gr.update(choices=[NO_ADAPTER, *adapters], value=NO_ADAPTER, visible=bool(adapters)))


def text_to_image_tab() -> None:
    """The Gradio tab: prompt, model and its sampling controls, guidance, seed and count -> a gallery."""
    handler = gradio_errors(generate_for_tab)
    models = app_models()
    gr.Markdown(f"Text-to-image with the models trained here on the captioned world ({', '.join(models)}): "
                "32x32 images of one object (t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, "
                "ankle boot, circle, square, triangle, star, heart, cross) in one colour (red, orange, yellow, green, "
                "cyan, blue, purple, white) on a black, white, gray or navy background. Some combinations "
                "(red sneaker, purple circle, ...) were never shown in training. SiT and DiT are latent diffusion "
                "models (an empty prompt is unconditional); the GPT writes VQ-VAE codes one by one. A LoRA adapter, "
                "where one is shipped for the model, adds what it never saw (SiT: the colour pink).")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="prompt", value=EXAMPLE_PROMPTS[0])
            model = gr.Radio(list(models), value="SiT", label="model")
            sit_adapters = model_adapters("SiT")
            adapter = gr.Dropdown([NO_ADAPTER, *sit_adapters], value=NO_ADAPTER, label="LoRA adapter",
                                  visible=bool(sit_adapters),
                                  info="an adapter of the model: pink teaches SiT a colour it never saw")
            sampler = gr.Dropdown(SAMPLERS["SiT"], value="default", label="sampler")
            steps = gr.Slider(1, MAX_STEPS, value=25, step=1, label="steps")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature", visible=False)
            top_k = gr.Slider(0, 512, value=0, step=1, label="top k (0: off)", visible=False)
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top p", visible=False)
            guidance = gr.Slider(0, 10, value=4, step=0.5, label="guidance scale")
            randomize = gr.Checkbox(value=True, label="random seed",
                                    info="a new seed each time, shown below; untick to repeat a seed")
            seed = gr.Number(value=0, precision=0, label="seed")
            count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="images")
            button = gr.Button("generate", variant="primary")
        with gr.Column():
            gallery = gr.Gallery(label="images", columns=4)
            notes = gr.Markdown()
    model.change(_controls_for, [model], [sampler, steps, temperature, top_k, top_p, guidance, adapter])
    examples = [[p, "SiT", NO_ADAPTER] for p in EXAMPLE_PROMPTS]
    examples += [[p, "SiT", a] for a in sit_adapters for p in ADAPTER_EXAMPLES.get(a, [])]
    gr.Examples(examples, inputs=[prompt, model, adapter])
    button.click(handler, [prompt, model, sampler, steps, guidance, randomize, seed, count, temperature, top_k, top_p,
                           adapter], [gallery, notes, seed], api_name="generate", concurrency_limit=CONCURRENCY,
                 concurrency_id="text-to-image")
