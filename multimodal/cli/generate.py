"""``multimodal generate image``: a PNG drawn from a text prompt (a grid for several images);
``multimodal generate speech``: a WAV (or FLAC, OGG…) of a text read aloud;
``multimodal generate video``: an MP4 or GIF clip of a text prompt (one file per video for several)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from ..checkpoint import atomic_path
from ..errors import InputError, check_seed
from ..pipelines.text_to_image import DEFAULT_MODEL, AutoregressiveTextToImagePipeline, image_grid
from .command import Command, add_lora_arguments, add_overwrite_argument, check_outputs, load_pipeline, write_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", title="what to generate", required=True)
    add_image_arguments(kinds.add_parser("image", help="an image from a text prompt (DiT, SiT or the token GPT)"))
    add_speech_arguments(kinds.add_parser("speech", help="speech from text (the text-to-speech GPT)"))
    add_video_arguments(kinds.add_parser("video", help="a video clip (MP4 or GIF) from a text prompt (the "
                                                       "text-to-video GPT)"))


def run(args: argparse.Namespace) -> int | None:
    return {"speech": run_speech, "video": run_video}.get(args.kind, run_image)(args)


def add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal generate speech``."""
    from ..pipelines.text_to_speech import DEFAULT_MODEL as SPEECH_MODEL

    parser.add_argument("text", help='what to say, e.g. "call four zero seven one" (digits are read one by one)')
    parser.add_argument("-o", "--output", default="out.wav",
                        help="audio file to write; the extension picks the format (default out.wav)")
    parser.add_argument("--voice", default=None, help="one of the model's voices (default: its first; "
                                                      "`multimodal pipelines` lists them)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--temperature", type=float, default=None, help="softmax temperature (default: the model's)")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely codes")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample from the smallest set of codes whose probability reaches p")
    parser.add_argument("--guidance-scale", "--guidance", dest="guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {SPEECH_MODEL})")
    add_overwrite_argument(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    add_lora_arguments(parser)


def run_speech(args: argparse.Namespace) -> int:
    """``multimodal generate speech``: one audio file."""
    from ..media.audio import audio_format, write_audio

    output = Path(args.output)
    audio_format(output)
    check_outputs([output], overwrite=args.overwrite, option="--output")
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    pipe = load_pipeline("text-to-speech", args)
    options = dict(voice=args.voice, generator=args.seed, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, guidance_scale=args.guidance)
    pipe.validate(args.text, **options)  # before any work
    out = pipe(args.text, **options)
    try:
        write_audio(output, out["audio"], out["sampling_rate"])
    except OSError as e:
        raise write_error(output, e) from None
    print(f"wrote {len(out['audio']) / out['sampling_rate']:.2f} s of speech to {output}")
    return 0


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal generate image``."""
    parser.add_argument("prompt", help='what to draw, e.g. "a red circle on a black background" ("": unconditional)')
    parser.add_argument("-n", "--num-images", type=int, default=1, help="images to draw (default 1; >1: a grid)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps of DiT / SiT (default 25)")
    parser.add_argument("--guidance-scale", "--guidance", dest="guidance", type=float, default=None,
                        help="classifier-free guidance scale (default 4 for DiT / SiT, 3 for the GPT)")
    parser.add_argument("--sampler", default=None,
                        help="DiT / SiT: ddpm, ddim, dpm++ (DiT) or euler, heun, sde (SiT); default ddpm / heun")
    parser.add_argument("--temperature", type=float, default=None, help="GPT: softmax temperature (default 1)")
    parser.add_argument("--top-k", type=int, default=None, help="GPT: sample from the k most likely codes")
    parser.add_argument("--top-p", type=float, default=None,
                        help="GPT: sample from the smallest set of codes whose probability reaches p")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {DEFAULT_MODEL})")
    parser.add_argument("--scale", type=int, default=4, help="pixel magnification of the saved PNG (default 4)")
    parser.add_argument("-o", "--output", default="out.png", help="PNG file to write (default out.png)")
    add_overwrite_argument(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    add_lora_arguments(parser)


def run_image(args: argparse.Namespace) -> int:
    """``multimodal generate image``: one PNG (a grid for several images)."""
    output = check_png_output(args.output, args.scale)
    check_outputs([output], overwrite=args.overwrite, option="--output")
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    pipe = load_pipeline("text-to-image", args)
    options = _options(args, autoregressive=isinstance(pipe, AutoregressiveTextToImagePipeline))
    pipe.validate(args.prompt, **options)  # before any work
    for line in pipe.prompt_warnings(args.prompt):  # unknown words, a cut prompt: said before drawing
        print(f"multimodal: warning: {line}", file=sys.stderr)
    save_grid(pipe(args.prompt, **options), output, args.scale)
    return 0


def check_png_output(output: str, scale: int) -> Path:
    """``--output`` and ``--scale`` of a command that writes a PNG, checked before any work."""
    path = Path(output)
    if path.suffix.lower() != ".png":
        raise InputError(f"--output: expected a .png file name, found {output!r}")
    if not 1 <= scale <= 32:
        raise InputError(f"--scale: expected an integer from 1 to 32, found {scale}")
    return path


def save_grid(images: list[Image.Image], output: Path, scale: int) -> None:
    """The images side by side, magnified ``scale`` times, written atomically as one PNG."""
    grid = image_grid(images)
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    try:
        with atomic_path(output) as tmp:
            grid.save(tmp, format="PNG")
    except OSError as e:
        raise write_error(output, e) from None
    print(f"wrote {len(images)} image(s) to {output}")


def _options(args: argparse.Namespace, autoregressive: bool) -> dict:
    """The pipeline's keyword arguments; an option of the other kind of model is an InputError."""
    options = dict(generator=args.seed, num_images_per_prompt=args.num_images)
    if args.guidance is not None:
        options["guidance_scale"] = args.guidance
    own = {"--temperature": args.temperature, "--top-k": args.top_k, "--top-p": args.top_p} if autoregressive \
        else {"--steps": args.steps, "--sampler": args.sampler}
    other = {"--steps": args.steps, "--sampler": args.sampler} if autoregressive \
        else {"--temperature": args.temperature, "--top-k": args.top_k, "--top-p": args.top_p}
    given = [name for name, value in other.items() if value is not None]
    if given:
        kind = "an autoregressive (GPT)" if autoregressive else "a diffusion (DiT / SiT)"
        raise InputError(f"{given[0]}: expected options of {kind} model, found {given[0]}, which it does not take")
    names = {"--temperature": "temperature", "--top-k": "top_k", "--top-p": "top_p", "--steps": "num_inference_steps",
             "--sampler": "sampler"}
    options.update({names[name]: value for name, value in own.items() if value is not None})
    return options


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal generate video``."""
    from ..pipelines.text_to_video import DEFAULT_MODEL as VIDEO_MODEL, MAX_VIDEOS_PER_PROMPT

    parser.add_argument("prompt", help='what to show, e.g. "a red circle moving right on a black background"')
    parser.add_argument("-o", "--output", default="out.mp4",
                        help="video file to write, .mp4 (H.264) or .gif (default out.mp4); with -n N > 1, one file "
                             "per video: NAME-0.mp4 ... NAME-(N-1).mp4")
    parser.add_argument("-n", "--num-videos", type=int, default=1,
                        help=f"videos to generate (default 1, at most {MAX_VIDEOS_PER_PROMPT})")
    parser.add_argument("--fps", type=float, default=8, help="frames per second of the file (default 8)")
    parser.add_argument("--scale", type=int, default=4, help="pixel magnification of the frames (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--guidance-scale", "--guidance", dest="guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--temperature", type=float, default=None, help="softmax temperature (default: the model's)")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely codes (1: greedy)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample from the smallest set of codes whose probability reaches p")
    parser.add_argument("--model", default=None, help=f"checkpoint folder or name (default {VIDEO_MODEL})")
    add_overwrite_argument(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    add_lora_arguments(parser)


def video_outputs(output: str, count: int) -> list[Path]:
    """The files ``multimodal generate video`` writes: ``output`` itself for one video, else
    ``NAME-0.EXT`` ... ``NAME-(count-1).EXT`` next to it."""
    path = Path(output)
    return [path] if count == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


def run_video(args: argparse.Namespace) -> int:
    """``multimodal generate video``: one MP4 or GIF per video, all written or none."""
    from ..media.video import FORMATS

    if Path(args.output).suffix.lower() not in FORMATS:
        raise InputError(f"--output: expected a file name ending in {' or '.join(FORMATS)}, found {args.output!r}")
    if not math.isfinite(args.fps) or args.fps <= 0:
        raise InputError(f"--fps: expected a positive number of frames per second, found {args.fps:g}")
    if not 1 <= args.scale <= 32:
        raise InputError(f"--scale: expected an integer from 1 to 32, found {args.scale}")
    if args.num_videos < 1:
        raise InputError(f"-n/--num-videos: expected an integer >= 1, found {args.num_videos}")
    outputs = video_outputs(args.output, args.num_videos)
    check_outputs(outputs, overwrite=args.overwrite, option="--output")
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    pipe = load_pipeline("text-to-video", args)
    options = dict(num_videos_per_prompt=args.num_videos, generator=args.seed, guidance_scale=args.guidance,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    pipe.validate(args.prompt, **options)  # before any work
    for line in pipe.prompt_warnings(args.prompt):  # unknown words: said before generating
        print(f"multimodal: warning: {line}", file=sys.stderr)
    videos = pipe(args.prompt, **options).frames
    write_videos(videos, outputs, args.fps, args.scale)
    width, height = videos[0][0].width * args.scale, videos[0][0].height * args.scale
    print(f"wrote {len(videos)} video(s) of {len(videos[0])} frames, {width}x{height} at {args.fps:g} fps, to "
          f"{', '.join(map(str, outputs))}")
    return 0


def write_videos(videos: list, outputs: list[Path], fps: float, scale: int) -> None:
    """Each video to its file, all or none: every file is first written under a temporary name next to
    it, and renamed into place only once all of them are complete."""
    from ..media.video import write_video

    staged: list[Path] = []
    current = outputs[0]
    try:
        for frames, current in zip(videos, outputs):
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{current.name}.", suffix=current.suffix, dir=current.parent)
            os.close(fd)
            staged.append(Path(name))
            write_video(frames, staged[-1], fps, scale=scale)
        for tmp, current in zip(staged, outputs):
            os.replace(tmp, current)
    except OSError as e:
        raise write_error(current, e) from None
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)


COMMAND = Command("generate", "generate an image (a PNG; a grid for several), speech (a WAV) or a video (an MP4 or "
                  "GIF) from text", add_arguments, run)
