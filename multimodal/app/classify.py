"""The Classify tab: upload an image (or pick an example), read the top classes."""

from __future__ import annotations

import gradio as gr

from ..errors import InputError
from ..paths import resolve_model
from ..pipelines.image_classification import DEFAULT_MODEL
from .common import adapted_pipeline, adapter_dropdown, gradio_errors


def classify_image(image, top_k: float = 5, adapter: str | None = None) -> dict[str, float]:
    """The app's handler: {label: score} for gr.Label. ``adapter``: a LoRA adapter checkpoint for the
    default model (None or "none": the model alone)."""
    if image is None:
        raise InputError("image: expected an uploaded image, found none")
    pipe = adapted_pipeline("image-classification", adapter)
    return {r["label"]: r["score"] for r in pipe(image, top_k=int(top_k))}


def example_images(model: str = DEFAULT_MODEL) -> list[str]:
    """The example images shipped in the checkpoint's ``examples/`` folder (none when it is absent)."""
    try:
        folder = resolve_model(model) / "examples"
    except InputError:
        return []
    return sorted(str(p) for p in folder.glob("*.png")) if folder.is_dir() else []


def classify_tab() -> None:
    """The Gradio tab: upload an image (or pick an example), read the top classes."""
    handler = gradio_errors(classify_image)
    gr.Markdown(f"Image classification with the ViT trained here on Fashion-MNIST ({DEFAULT_MODEL}): "
                "clothing photographed on a plain background works best; any image size or mode is accepted.")
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="pil", label="image", image_mode=None)
            top_k = gr.Slider(1, 10, value=5, step=1, label="top k")
            adapter = adapter_dropdown(DEFAULT_MODEL)
            button = gr.Button("classify", variant="primary")
        with gr.Column():
            label = gr.Label(label="classes")
    examples = example_images()
    if examples:
        gr.Examples(examples, inputs=[image])
    inputs = [image, top_k] + ([adapter] if adapter is not None else [])
    button.click(handler, inputs, [label], api_name="classify")
