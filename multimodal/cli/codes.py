"""``multimodal codes encode|decode``: images to a VQ-VAE's codes (JSON) and codes back to images.

    multimodal codes encode shirt.png star.png --model image-vq -o codes.json
    multimodal codes decode codes.json --model image-vq -o decoded.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from ..checkpoint import atomic_write_text
from ..errors import InputError
from ..media.images import image_to_tensor
from ..models.autoencoders.vq import VQVAE
from ..paths import resolve_model
from .command import Command, add_overwrite_argument, check_outputs, write_error
from .generate import check_png_output, save_grid

DEFAULT_MODEL = "image-vq"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", title="actions", required=True)
    encode = actions.add_parser("encode", help="images -> codes, written as JSON")
    encode.add_argument("images", nargs="+", help="image files")
    encode.add_argument("-o", "--output", default=None, help="JSON file to write (default: print)")
    decode = actions.add_parser("decode", help="codes (JSON from encode) -> a PNG (a grid for several)")
    decode.add_argument("codes", help="a JSON file written by encode, or a JSON list of code grids")
    decode.add_argument("-o", "--output", default="decoded.png", help="PNG file to write (default decoded.png)")
    decode.add_argument("--scale", type=int, default=4, help="pixel magnification of the saved PNG (default 4)")
    for sub in (encode, decode):
        add_overwrite_argument(sub)
        sub.add_argument("--model", default=DEFAULT_MODEL, help=f"VQ-VAE checkpoint folder or name (default {DEFAULT_MODEL})")


def _load(model: str) -> VQVAE:
    vq = VQVAE.from_pretrained(resolve_model(model))
    if vq.config.dims != 2:
        raise InputError(f"--model: expected an image VQ-VAE (dims 2), found dims {vq.config.dims}")
    return vq


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    if args.action == "decode":
        output = check_png_output(args.output, args.scale)
    elif args.output is not None:
        output = Path(args.output)
    if args.output is not None:
        check_outputs([output], overwrite=args.overwrite, option="--output")
    vq = _load(args.model)
    if args.action == "encode":
        size = vq.config.input_size or (32, 32)
        images = torch.stack([image_to_tensor(path, size, "RGB") for path in args.images]).float() / 127.5 - 1
        codes = vq.encode(images)
        text = json.dumps({"model": args.model, "images": list(args.images), "codes": codes.tolist()}) + "\n"
        if args.output is None:
            print(text, end="")
        else:
            try:
                atomic_write_text(output, text)
            except OSError as e:
                raise write_error(output, e) from None
            print(f"wrote codes of {len(args.images)} image(s), grid {tuple(codes.shape[1:])}, to {args.output}")
        return 0
    path = Path(args.codes)
    try:
        data = json.loads(path.read_text() if path.is_file() else args.codes)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise InputError(f"codes: expected a JSON file written by `multimodal codes encode` or a JSON list, "
                         f"found {args.codes[:60]!r}") from None
    grids = data["codes"] if isinstance(data, dict) and "codes" in data else data
    try:
        codes = torch.tensor(grids, dtype=torch.long)
    except (TypeError, ValueError):
        raise InputError("codes: expected a list of code grids of integers, found ragged or non-integer values") from None
    images = ((vq.decode(codes).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    save_grid([Image.fromarray(a) for a in images], output, args.scale)
    return 0


COMMAND = Command("codes", "encode images to VQ-VAE codes (JSON) or decode codes back to images", add_arguments, run)
