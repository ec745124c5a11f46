"""Image classification with a ViT checkpoint: the pipeline, the ``multimodal classify`` command and
the app's "Classify" tab.

``ImageClassificationPipeline`` (task ``"image-classification"``) takes what transformers' pipeline
takes: one image or a list of them, each a path, encoded bytes, a PIL image (any mode, any size;
an animation gives its first frame), a numpy array or a tensor (``multimodal.media.images.load_image``
says which layouts). It preprocesses as the checkpoint's config says (mode, size, normalisation)
and returns ``[{"label", "score"}, …]`` sorted by score, ``top_k`` of them, for each image.
Every image is decoded and checked before the model runs, so one bad file in a list is an
``InputError`` that names it and nothing else is computed.

A classifier always names one of its classes, also for a picture of something else. Where the
checkpoint holds ``ood.json`` (an out-of-distribution score and threshold chosen and measured by
``python -m benchmarks.classifier_ood``), each result also says whether the image looks like
what the model was trained on: ``result.out_of_distribution`` (True: "not one of these"; None
without ``ood.json``) and ``result.ood_score`` (higher: more like the training images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import json

import torch

from ..checkpoint import atomic_write_text, load_tensors, save_tensors
from ..config import read_json
from ..errors import InputError
from ..media.images import load_image, preprocess
from ..models.vit import ViT
from .base import Pipeline

DEFAULT_MODEL = "vit-fashion-mnist"
OOD_NAME, OOD_STATS_NAME = "ood.json", "ood.safetensors"
OOD_SCORES = ("msp", "energy", "mahalanobis")


class OutOfDistribution:
    """An out-of-distribution detector on a classifier's logits and penultimate features: a score
    (higher: more like the training images) and the threshold below which an image is "not one of
    these". Scores: the largest softmax probability (``"msp"``), the negative free energy
    ``logsumexp(logits)`` (``"energy"``, Liu et al. 2020), or the negative squared Mahalanobis
    distance of the features to the nearest class mean under one covariance shared by all classes
    (``"mahalanobis"``, Lee et al. 2018; its ``means`` and ``precision`` are fitted on training
    images). An input whose pixels vary less than ``min_contrast`` (their standard deviation after
    the model's normalisation; a blank picture) has no object in it and scores ``-inf``. Saved as
    ``ood.json`` (+ ``ood.safetensors``) in the checkpoint folder."""

    def __init__(self, score: str, threshold: float, means: torch.Tensor | None = None,
                 precision: torch.Tensor | None = None, info: dict | None = None, min_contrast: float = 0.0):
        if score not in OOD_SCORES:
            raise InputError(f"score: expected one of {', '.join(OOD_SCORES)}, found {score!r}")
        if score == "mahalanobis" and (means is None or precision is None):
            raise InputError("mahalanobis: expected the class means and the shared precision matrix, found none")
        self.score, self.threshold, self.means, self.precision = score, float(threshold), means, precision
        self.min_contrast = float(min_contrast)
        self.info = info or {}

    @staticmethod
    def fit_gaussians(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Class means ``[C, D]`` and the inverse of the shared covariance ``[D, D]`` (plus ``ridge``)."""
        features = features.double()
        means = torch.stack([features[labels == c].mean(0) for c in range(num_classes)])
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features) + ridge * torch.eye(features.shape[1], dtype=torch.float64)
        return means.float(), torch.linalg.inv(covariance).float()

    def scores(self, logits: torch.Tensor, features: torch.Tensor | None = None,
               inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The score of each row of ``logits`` (``features``: the penultimate features; ``inputs``:
        the normalised images, for the contrast check)."""
        logits = logits.float()
        if self.score == "msp":
            scores = logits.softmax(dim=-1).amax(dim=-1)
        elif self.score == "energy":
            scores = logits.logsumexp(dim=-1)
        else:
            diff = features.float()[:, None, :] - self.means.to(features.device)[None]  # [B, C, D]
            distance = torch.einsum("bcd,de,bce->bc", diff, self.precision.to(features.device), diff)
            scores = -distance.amin(dim=-1)
        if inputs is not None and self.min_contrast > 0:
            flat = inputs.float().flatten(1).std(dim=1) < self.min_contrast
            scores = scores.masked_fill(flat.to(scores.device), float("-inf"))
        return scores

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        if self.score == "mahalanobis":
            save_tensors(folder / OOD_STATS_NAME, {"means": self.means.contiguous(),
                                                   "precision": self.precision.contiguous()})
        record = {"score": self.score, "threshold": self.threshold, "min_contrast": self.min_contrast, **self.info}
        atomic_write_text(folder / OOD_NAME, json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> OutOfDistribution | None:
        """The detector saved in ``folder``; None where there is none."""
        path = Path(folder) / OOD_NAME
        if not path.is_file():
            return None
        record = read_json(path)
        score, threshold = record.pop("score", None), record.pop("threshold", None)
        min_contrast = record.pop("min_contrast", 0.0)
        if score not in OOD_SCORES or isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InputError(f"{path}: expected {{\"score\": one of {', '.join(OOD_SCORES)}, \"threshold\": a "
                             f"number}}, found {score!r} and {threshold!r}")
        stats = load_tensors(Path(folder) / OOD_STATS_NAME) if score == "mahalanobis" else {}
        return cls(score, threshold, stats.get("means"), stats.get("precision"), record, min_contrast)


class Classification(list):
    """One image's ``[{"label", "score"}, …]``, with ``out_of_distribution`` (True: the image does not
    look like the training images, so its labels mean little; None: the checkpoint has no
    ``ood.json``) and ``ood_score``."""

    out_of_distribution: bool | None = None
    ood_score: float | None = None


class ImageClassificationPipeline(Pipeline):
    """``pipe(image_or_list, top_k=5)`` -> ``[{"label", "score"}, …]`` per image (a list of such lists
    for a list of images); scores are softmax probabilities, highest first."""

    def __init__(self, model: ViT, ood: OutOfDistribution | None = None):
        super().__init__()
        self.model = model.eval()
        self.ood = ood  # the checkpoint's out-of-distribution detector (ood.json), or None

    @classmethod
    def _load(cls, folder: Path) -> ImageClassificationPipeline:
        if not (folder / "config.json").is_file():
            raise InputError(f"model: expected a ViT checkpoint folder (config.json, model.safetensors), "
                             f"found {folder}")
        return cls(ViT.from_pretrained(folder), OutOfDistribution.load(folder))

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
            features = self.model.forward_head(self.model.forward_features(batch), pre_logits=True)
            logits = self.model.head(features).float()
            scores, indices = logits.softmax(dim=-1).topk(k, dim=-1)
            ood = self.ood.scores(logits, features, batch).tolist() if self.ood else [None] * len(batch)
            for row_scores, row_indices, row_ood in zip(scores.tolist(), indices.tolist(), ood):
                result = Classification({"label": self.labels[i], "score": s} for s, i in zip(row_scores, row_indices))
                if row_ood is not None:
                    result.ood_score, result.out_of_distribution = row_ood, row_ood < self.ood.threshold
                results.append(result)
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
