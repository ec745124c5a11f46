"""``multimodal classify``: the top-k labels and scores of each image, with a ViT checkpoint."""

from __future__ import annotations

import argparse
import json
import math

from ..pipelines.image_classification import DEFAULT_MODEL
from .command import Command, add_lora_arguments, load_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal classify``."""
    parser.add_argument("images", nargs="+", help="image files (png, jpg, gif, webp, bmp, tiff, …)")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {DEFAULT_MODEL})")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table "
                                                                "(with out_of_distribution and ood_score)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    add_lora_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``multimodal classify``: the top-k labels and scores of each image."""
    pipe = load_pipeline("image-classification", args)
    pipe.validate(args.images, top_k=args.top_k)
    results = pipe(list(args.images), top_k=args.top_k)
    for path, result in zip(args.images, results):
        if args.json:
            score = result.ood_score
            print(json.dumps({"image": path, "predictions": result, "out_of_distribution": result.out_of_distribution,
                              "ood_score": score if score is not None and math.isfinite(score) else None}))
        else:
            unknown = " (not one of these: unlike the training images)" if result.out_of_distribution else ""
            print(f"{path}: " + ", ".join(f"{r['label']} {100 * r['score']:.1f}%" for r in result) + unknown)
    return 0


COMMAND = Command("classify", "classify images with a ViT (top-k labels and scores)", add_arguments, run)
