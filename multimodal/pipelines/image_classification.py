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

from pathlib import Path
from typing import Any


from ..media.images import load_image, preprocess
from ..errors import InputError
from ..models.vit import ViT
from .base import Pipeline

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
