"""``multimodal codes encode|decode``: images or speech to a codec's codes (JSON) and back.

    multimodal codes encode shirt.png star.png --model image-vq -o codes.json
    multimodal codes decode codes.json --model image-vq -o decoded.png
    multimodal codes encode hello.wav --model runs/speech-vq/model -o codes.json [--levels 2]
    multimodal codes decode codes.json --model runs/speech-vq/model -o decoded.wav

With a speech codec (``SpeechCodec``), encode takes audio files (any format ``load_audio`` reads)
and writes codes ``[levels, frames]`` per file; decode writes a WAV per code set (``decoded.wav``
for one, ``decoded-0.wav``, ``decoded-1.wav`` … for several).
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
from ..config import read_json
from ..media.audio import SAMPLE_RATE, load_audio, write_audio
from ..models.autoencoders.vq import VQVAE
from ..models.speech_codec import SpeechCodec
from ..paths import resolve_model
from .command import Command, add_overwrite_argument, check_outputs, write_error
from .generate import check_png_output, save_grid

DEFAULT_MODEL = "image-vq"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", title="actions", required=True)
    encode = actions.add_parser("encode", help="images -> codes, written as JSON")
    encode.add_argument("images", nargs="+", help="image files (audio files with a speech codec)")
    encode.add_argument("--levels", type=int, default=None, help="speech codec: keep the first N residual levels")
    encode.add_argument("-o", "--output", default=None, help="JSON file to write (default: print)")
    decode = actions.add_parser("decode", help="codes (JSON from encode) -> a PNG (a grid for several) or WAV")
    decode.add_argument("codes", help="a JSON file written by encode, or a JSON list of code grids")
    decode.add_argument("-o", "--output", default=None,
                        help="PNG (image codes) or WAV (speech codes) to write (default decoded.png / decoded.wav)")
    decode.add_argument("--scale", type=int, default=4, help="pixel magnification of the saved PNG (default 4)")
    for sub in (encode, decode):
        add_overwrite_argument(sub)
        sub.add_argument("--model", default=DEFAULT_MODEL, help=f"VQ-VAE checkpoint folder or name (default {DEFAULT_MODEL})")


def _is_speech(model: str) -> bool:
    folder = resolve_model(model)
    return (folder / "config.json").is_file() and "n_mels" in read_json(folder / "config.json")


def _load(model: str) -> VQVAE:
    vq = VQVAE.from_pretrained(resolve_model(model))
    if vq.config.dims != 2:
        raise InputError(f"--model: expected an image VQ-VAE (dims 2), found dims {vq.config.dims}")
    return vq


def _read_codes(args: argparse.Namespace):
    path = Path(args.codes)
    try:
        data = json.loads(path.read_text() if path.is_file() else args.codes)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise InputError(f"codes: expected a JSON file written by `multimodal codes encode` or a JSON list, "
                         f"found {args.codes[:60]!r}") from None
    return data["codes"] if isinstance(data, dict) and "codes" in data else data


def _print_or_write(text: str, output: Path | None, done: str) -> None:
    """The JSON of encode: printed, or written to ``output`` and ``done`` printed."""
    if output is None:
        print(text, end="")
        return
    try:
        atomic_write_text(output, text)
    except OSError as e:
        raise write_error(output, e) from None
    print(done)


def _long(values) -> torch.Tensor:
    try:
        return torch.tensor(values, dtype=torch.long)
    except (TypeError, ValueError):
        raise InputError("codes: expected lists of integer codes, found ragged or non-integer values") from None


@torch.no_grad()
def _run_speech(args: argparse.Namespace) -> int:
    if args.action == "encode":
        output = Path(args.output) if args.output is not None else None
        if output is not None:
            check_outputs([output], overwrite=args.overwrite, option="--output")
        codec = SpeechCodec.from_pretrained(resolve_model(args.model))
        codes = [codec.encode(torch.from_numpy(load_audio(p, name=p)), levels=args.levels).tolist() for p in args.images]
        text = json.dumps({"model": args.model, "audio": list(args.images), "frame_rate": codec.frame_rate,
                           "codes": codes}) + "\n"
        _print_or_write(text, output, f"wrote codes of {len(codes)} file(s) at {codec.frame_rate:g} frames/s to {output}")
        return 0
    sets = _read_codes(args)
    if not isinstance(sets, list) or not sets:
        raise InputError("codes: expected a list of code sets [levels, frames], found none")
    if not isinstance(sets[0], list) or not sets[0] or not isinstance(sets[0][0], list):  # one set, not a list of sets
        sets = [sets]
    output = Path(args.output or "decoded.wav")
    outputs = [output] if len(sets) == 1 else [output.with_name(f"{output.stem}-{i}{output.suffix}")
                                               for i in range(len(sets))]
    check_outputs(outputs, overwrite=args.overwrite, option="--output")
    codec = SpeechCodec.from_pretrained(resolve_model(args.model))
    audio = [codec.decode(_long(s)) for s in sets]  # every set checked before anything is written
    for path, a in zip(outputs, audio):
        try:
            write_audio(path, a.numpy(), SAMPLE_RATE)
        except OSError as e:
            raise write_error(path, e) from None
        print(f"wrote {path} ({a.shape[-1] / SAMPLE_RATE:.2f} s)")
    return 0


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    if _is_speech(args.model):
        return _run_speech(args)
    output = None
    if args.action == "decode":
        args.output = args.output or "decoded.png"
        output = check_png_output(args.output, args.scale)
    elif args.output is not None:
        output = Path(args.output)
    if output is not None:
        check_outputs([output], overwrite=args.overwrite, option="--output")
    if getattr(args, "levels", None) is not None:
        raise InputError("--levels: expected only with a speech codec (residual levels), found an image VQ-VAE")
    vq = _load(args.model)
    if args.action == "encode":
        size = vq.config.input_size or (32, 32)
        images = torch.stack([image_to_tensor(path, size, "RGB") for path in args.images]).float() / 127.5 - 1
        codes = vq.encode(images)
        text = json.dumps({"model": args.model, "images": list(args.images), "codes": codes.tolist()}) + "\n"
        _print_or_write(text, output,
                        f"wrote codes of {len(args.images)} image(s), grid {tuple(codes.shape[1:])}, to {args.output}")
        return 0
    codes = _long(_read_codes(args))
    images = ((vq.decode(codes).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    save_grid([Image.fromarray(a) for a in images], output, args.scale)
    return 0


COMMAND = Command("codes", "encode images or speech to codec codes (JSON) or decode codes back", add_arguments, run)
