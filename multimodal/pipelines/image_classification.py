"""Image classification with a ViT checkpoint: the pipeline, the ``multimodal classify`` command and
the app's "Classify" tab.

``ImageClassificationPipeline`` (task ``"image-classification"``) takes what transformers' pipeline
takes: one image or a list of them, each a path, encoded bytes, a PIL image (any mode, any size;
an animation gives its first frame), a numpy array or a tensor (``multimodal.media.images.load_image``
says which layouts). It preprocesses as the checkpoint's config says (mode, size, normalisation)
and returns ``[{"label", "score"}, …]`` sorted by score, ``top_k`` of them, for each image.
Every image is decoded and checked before the model runs, so one bad file in a list is an
``InputError`` that names it and nothing else is computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from ..media.images import load_image, preprocess
from ..errors import InputError
from ..models.vit import ViT
from . import app_pipeline, register_pipeline
from .base import Pipeline, gradio_errors

DEFAULT_MODEL = "vit-fashion-mnist"


class ImageClassificationPipeline(Pipeline):
    """``pipe(image_or_list, top_k=5)`` -> ``[{"label", "score"}, …]`` per image (a list of such lists
    for a list of images); scores are softmax probabilities, highest first."""

    def __init__(self, model: ViT):
        super().__init__()
        self.model = model.eval()

    @classmethod
    def _load(cls, folder: Path) -> ImageClassificationPipeline:
        if not (folder / "config.json").is_file():
            raise InputError(f"model: expected a ViT checkpoint folder (config.json, model.safetensors), "
                             f"found {folder}")
        return cls(ViT.from_pretrained(folder))

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def validate(self, images, top_k: int | None = 5, batch_size: int = 64) -> None:
        if isinstance(images, (list, tuple)) and not images:
            raise InputError("images: expected an image or a non-empty list of images, found an empty list")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise InputError(f"top_k: expected an integer >= 1 (or None for every class), found {top_k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
        if self.model.config.num_classes == 0:
            raise InputError("model: expected a classifier, found a ViT without a head (num_classes 0)")

    def _run(self, images, top_k: int | None = 5, batch_size: int = 64) -> list:
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        names = [_name(item, i, single) for i, item in enumerate(items)]
        decoded = [load_image(item, name) for item, name in zip(items, names)]  # all checked before any work
        config = self.model.config
        k = len(self.labels) if top_k is None else min(top_k, len(self.labels))
        results = []
        starts = range(0, len(decoded), batch_size)
        bar = self.progress(total=len(decoded), desc="classifying") if len(starts) > 1 else None
        for start in starts:
            batch = preprocess(decoded[start:start + batch_size], config).to(self.device, self.dtype)
            probs = self.model(batch).float().softmax(dim=-1)
            scores, indices = probs.topk(k, dim=-1)
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
                results.append([{"label": self.labels[i], "score": s} for s, i in zip(row_scores, row_indices)])
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return results[0] if single else results


def _name(item: Any, index: int, single: bool) -> str:
    """How an input is named in error messages: its path, else its position."""
    if isinstance(item, (str, Path)):
        return str(item)
    return "image" if single else f"images[{index}]"


# ----------------------------------------------------------------------------------------- CLI
def add_classify_arguments(parser) -> None:
    """Arguments of ``multimodal classify``."""
    parser.add_argument("images", nargs="+", help="image files (png, jpg, gif, webp, bmp, tiff, …)")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {DEFAULT_MODEL})")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")


def run_classify(args) -> int:
    """``multimodal classify``: the top-k labels and scores of each image."""
    from . import pipeline

    pipe = pipeline("image-classification", model=args.model, device=args.device)
    pipe.validate(args.images, top_k=args.top_k)
    results = pipe(list(args.images), top_k=args.top_k)
    for path, result in zip(args.images, results):
        if args.json:
            print(json.dumps({"image": path, "predictions": result}))
        else:
            print(f"{path}: " + ", ".join(f"{r['label']} {100 * r['score']:.1f}%" for r in result))
    return 0


# ----------------------------------------------------------------------------------------- app
def classify_image(image, top_k: float = 5) -> dict[str, float]:
    """The app's handler: {label: score} for gr.Label."""
    if image is None:
        raise InputError("image: expected an uploaded image, found none")
    return {r["label"]: r["score"] for r in app_pipeline("image-classification")(image, top_k=int(top_k))}


def example_images(model: str = DEFAULT_MODEL) -> list[str]:
    """The example images shipped in the checkpoint's ``examples/`` folder (none when it is absent)."""
    from ..paths import resolve_model

    try:
        folder = resolve_model(model) / "examples"
    except InputError:
        return []
    return sorted(str(p) for p in folder.glob("*.png")) if folder.is_dir() else []


def classify_tab() -> None:
    """The Gradio tab: upload an image (or pick an example), read the top classes."""
    import gradio as gr

    handler = gradio_errors(classify_image)
    gr.Markdown(f"Image classification with the ViT trained here on Fashion-MNIST ({DEFAULT_MODEL}): "
                "clothing photographed on a plain background works best; any image size or mode is accepted.")
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="pil", label="image", image_mode=None)
            top_k = gr.Slider(1, 10, value=5, step=1, label="top k")
            button = gr.Button("classify", variant="primary")
        with gr.Column():
            label = gr.Label(label="classes")
    examples = example_images()
    if examples:
        gr.Examples(examples, inputs=[image])
    button.click(handler, [image, top_k], [label], api_name="classify")


register_pipeline("image-classification", ImageClassificationPipeline, default_model=DEFAULT_MODEL,
                  ui=classify_tab, title="Classify")
