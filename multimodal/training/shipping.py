"""Shipping a trained text-to-image run as a checkpoint folder with its evaluation and model card.

``python -m benchmarks.text_to_image --ship DIR`` calls ``ship`` for each model it evaluated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import atomic_write_text, fresh_tmp_dir, publish_dir
from ..models.text2image import TextToImage
from .text2image import model_card

SHIP_TOLERANCE = 0.01  # float16 ships when its accuracy is within this of float32's
COPIED = ("training.json", "vae/MODEL_CARD.md", "vae/training.json")  # run files the shipped folder keeps


def ship(source: Path, dest: Path, evaluation: dict, reference: dict, score: Callable[[TextToImage], dict]) -> dict:
    """Write ``dest`` from the run folder ``source``: float16 when ``score(model)`` (a row at the
    reference's sampler and steps) of the float16 copy loaded back is within SHIP_TOLERANCE of
    ``reference`` on seen and held-out accuracy, else float32. ``evaluation`` (with the check added as
    ``storage_check``) becomes ``evaluation.json``, from which the model card is written. Returns the
    check."""
    tmp = fresh_tmp_dir(dest)
    TextToImage.from_pretrained(source).save_pretrained(tmp, dtype=torch.float16)
    half = score(TextToImage.from_pretrained(tmp))
    keep = all(half[k] >= reference[k] - SHIP_TOLERANCE for k in ("seen_accuracy", "held_out_accuracy"))
    if not keep:
        shutil.rmtree(tmp)
        tmp = fresh_tmp_dir(dest)
        TextToImage.from_pretrained(source).save_pretrained(tmp)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    check = {"stored_dtype": "float16" if keep else "float32", "float32": reference, "float16": half}
    atomic_write_text(tmp / "evaluation.json", json.dumps({**evaluation, "storage_check": check}, indent=2) + "\n")
    atomic_write_text(tmp / "MODEL_CARD.md", model_card(tmp))
    publish_dir(tmp, dest)
    return check
