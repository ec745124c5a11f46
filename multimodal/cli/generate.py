"""``multimodal generate image``: a PNG drawn from a text prompt (a grid for several images)."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from ..checkpoint import atomic_path
from ..errors import InputError
from ..pipelines import pipeline
from ..pipelines.text_to_image import DEFAULT_MODEL, image_grid
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", title="what to generate", required=True)
    add_image_arguments(kinds.add_parser("image", help="an image from a text prompt (DiT / SiT)"))


def run(args: argparse.Namespace) -> int | None:
    return run_image(args)


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal generate image``."""
    parser.add_argument("prompt", help='what to draw, e.g. "a red circle on a black background" ("": unconditional)')
    parser.add_argument("-n", "--num-images", type=int, default=1, help="images to draw (default 1; >1: a grid)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale (default 4)")
    parser.add_argument("--sampler", default=None,
                        help="ddpm, ddim, dpm++ (DiT) or euler, heun, sde (SiT); default ddpm / heun")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {DEFAULT_MODEL})")
    parser.add_argument("--scale", type=int, default=4, help="pixel magnification of the saved PNG (default 4)")
    parser.add_argument("-o", "--output", default="out.png", help="PNG file to write (default out.png)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")


def run_image(args: argparse.Namespace) -> int:
    """``multimodal generate image``: one PNG (a grid for several images)."""
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise InputError(f"--output: expected a .png file name, found {args.output!r}")
    if not 1 <= args.scale <= 32:
        raise InputError(f"--scale: expected an integer from 1 to 32, found {args.scale}")
    pipe = pipeline("text-to-image", model=args.model, device=args.device)
    options = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler,
                   generator=args.seed, num_images_per_prompt=args.num_images)
    pipe.validate(args.prompt, **options)  # before any work
    images = pipe(args.prompt, **options)
    grid = image_grid(images)
    grid = grid.resize((grid.width * args.scale, grid.height * args.scale), Image.Resampling.NEAREST)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        grid.save(tmp, format="PNG")
    print(f"wrote {len(images)} image(s) to {output}")
    return 0


COMMAND = Command("generate", "generate an image from text (a PNG; a grid for several)", add_arguments, run)
