"""The Classify tab: upload an image (or pick an example), read the top classes."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..media.images import load_image
from ..paths import resolve_model
from ..pipelines.image_classification import DEFAULT_MODEL
from .common import adapted_pipeline, adapter_dropdown, gradio_errors

IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"]
CONCURRENCY = 4  # classifications served at once (each takes milliseconds)


def classify_image(image, top_k: float = 5, adapter: str | None = None) -> dict[str, float]:
    """The app's handler: {label: score} for gr.Label. ``adapter``: a LoRA adapter checkpoint for the
    default model (None or "none": the model alone)."""
    return {r["label"]: r["score"] for r in _classify(image, top_k, adapter)}


def _classify(image, top_k: float, adapter: str | None):
    if image is None or image == "":
        raise InputError("image: expected an uploaded image, found none")
    if isinstance(image, str):  # an upload: decoded here, so that a broken file gets the project's message
        image = load_image(image, name=Path(image).name)
    return adapted_pipeline("image-classification", adapter)(image, top_k=int(top_k))


def ood_note(result) -> str:
    """What the tab says about an image that does not look like the training images."""
    if not result.out_of_distribution:
        return ""
    return ("⚠️ **Not one of these.** This picture does not look like the Fashion-MNIST photos the model "
            "was trained on, so its labels below mean little.")


def example_images(model: str = DEFAULT_MODEL) -> list[str]:
    """The example images shipped in the checkpoint's ``examples/`` folder (none when it is absent)."""
    try:
        folder = resolve_model(model) / "examples"
    except InputError:
        return []
    return sorted(str(p) for p in folder.glob("*.png")) if folder.is_dir() else []


def classify_tab() -> None:
    """The Gradio tab: upload an image (or pick an example), read the top classes."""
    handler = gradio_errors(_classify_in_tab)
    gr.Markdown(f"Image classification with the ViT trained here on Fashion-MNIST ({DEFAULT_MODEL}): 28x28 "
                "grayscale product photos of ten kinds of clothing, shoes and bags, light on a black background. "
                "Pictures like those work; any other picture (a photo of a person, a landscape, a drawing) still "
                "gets one of the ten labels, which then means nothing. Any image size or mode is accepted.")
    with gr.Row():
        with gr.Column():
            image = gr.File(label="image", file_types=IMAGE_TYPES, type="filepath")
            top_k = gr.Slider(1, 10, value=5, step=1, label="top k")
            adapter = adapter_dropdown(DEFAULT_MODEL)
            button = gr.Button("classify", variant="primary")
        with gr.Column():
            note = gr.Markdown()
            label = gr.Label(label="classes")
            preview = gr.Image(label="what the model saw", interactive=False)
    examples = example_images()
    if examples:
        gr.Examples(examples, inputs=[image])
    inputs = [image, top_k] + ([adapter] if adapter is not None else [])
    button.click(handler, inputs, [note, label, preview], api_name="classify", concurrency_limit=CONCURRENCY,
                 concurrency_id="classify")


def _classify_in_tab(path: str | None, top_k: float = 5, adapter: str | None = None):
    """(the out-of-distribution note, the scores, the decoded image) for the tab."""
    if not path:
        raise InputError("image: expected an uploaded image, found none")
    image = load_image(path, name=Path(path).name)  # a broken upload gets the project's message
    result = _classify(image, top_k, adapter)
    return ood_note(result), {r["label"]: r["score"] for r in result}, image
