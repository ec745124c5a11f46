"""The ``multimodal`` console command.

Each subcommand is a function taking the parsed arguments, registered with ``@command``; its
arguments are added by the function given as ``arguments``:

    def _transcribe_arguments(parser):
        parser.add_argument("audio", help="an audio file")

    @command("transcribe", "transcribe speech to text", _transcribe_arguments)
    def transcribe(args) -> int | None:
        ...

Bad input raises ``InputError``; ``main`` prints its message on one line, without a traceback,
and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from . import __version__, pipelines
from .errors import InputError
from .paths import resolve_model


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None):
    """Register the decorated function as the subcommand ``name``."""

    def register(run: Callable[[argparse.Namespace], int | None]):
        COMMANDS[name] = Command(name, help, arguments, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal",
        description="One transformer backbone for image classification, text-to-image, speech recognition "
                    "and audio generation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands")
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.arguments(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"expected a command ({', '.join(COMMANDS)}), found none")
    try:
        return args.run(args) or 0
    except InputError as e:
        message = " ".join(str(e).splitlines())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------------- commands
def _pipelines_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="show one task only")


@command("pipelines", "list the registered tasks and their default models", _pipelines_arguments)
def list_pipelines(args: argparse.Namespace) -> None:
    registrations = [pipelines.get_registration(args.task)] if args.task else pipelines.registrations()
    if not registrations:
        print("no pipelines are registered yet")
        return
    width = max(len(r.task) for r in registrations)
    for r in registrations:
        print(f"{r.task:<{width}}  {_describe_model(r.default_model)}")


def _describe_model(name: str | None) -> str:
    if name is None:
        return "(no default model)"
    try:
        return f"{name} ({resolve_model(name)})"
    except InputError:
        return f"{name} (missing)"


def _tokenizer_arguments(parser: argparse.ArgumentParser) -> None:
    from .tokenizers import text

    actions = parser.add_subparsers(dest="action", title="actions", required=True)
    text.add_train_arguments(actions.add_parser("train", help="learn a byte-level BPE from text files"))
    text.add_encode_arguments(actions.add_parser("encode", help="encode text to token ids"))


@command("tokenizer", "train a byte-level BPE tokenizer, or encode text with one", _tokenizer_arguments)
def tokenizer(args: argparse.Namespace) -> None:
    from .tokenizers import text

    (text.cli_train if args.action == "train" else text.cli_encode)(args)


def _transcribe_arguments(parser: argparse.ArgumentParser) -> None:
    from .pipelines.speech_recognition import add_transcribe_arguments

    add_transcribe_arguments(parser)


@command("transcribe", "transcribe speech to text (.txt, .srt, .vtt, .json)", _transcribe_arguments)
def transcribe(args: argparse.Namespace) -> int | None:
    from .pipelines.speech_recognition import run_transcribe

    return run_transcribe(args)


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    from .pipelines.image_classification import add_classify_arguments

    add_classify_arguments(parser)


@command("classify", "classify images with a ViT (top-k labels and scores)", _classify_arguments)
def classify(args: argparse.Namespace) -> int | None:
    from .pipelines.image_classification import run_classify

    return run_classify(args)


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    from .pipelines.text_to_image import add_generate_image_arguments

    kinds = parser.add_subparsers(dest="kind", title="what to generate", required=True)
    add_generate_image_arguments(kinds.add_parser("image", help="an image from a text prompt (DiT / SiT)"))


@command("generate", "generate an image from text (a PNG; a grid for several)", _generate_arguments)
def generate(args: argparse.Namespace) -> int | None:
    from .pipelines.text_to_image import run_generate_image

    return run_generate_image(args)


# Per-model training and evaluation: (help, add_arguments, run) for each model, by name.
def _trainable_models() -> dict[str, dict[str, tuple]]:
    from .training import vit
    from .training import autoencoder, text2image, whisper

    return {
        "train": {"vit": ("a ViT image classifier on an image folder or Fashion-MNIST",
                          vit.add_train_vit_arguments, vit.run_train_vit),
                  "whisper": ("fine-tune Whisper on JSONL manifests of {audio, text} (or speech-digits)",
                              whisper.add_train_whisper_arguments, whisper.run_train_whisper),
                  "vae": ("an image autoencoder (AutoencoderKL) on the captioned world",
                          autoencoder.add_train_autoencoder_arguments, autoencoder.run_train_autoencoder),
                  "text2image": ("a text-to-image DiT or SiT on the captioned world (needs a trained vae)",
                                 text2image.add_train_text2image_arguments, text2image.run_train_text2image)},
        "evaluate": {"vit": ("accuracy, per-class accuracy and confusion matrix of a ViT checkpoint",
                             vit.add_evaluate_vit_arguments, vit.run_evaluate_vit),
                     "whisper": ("word error rate and exact-match rate of a Whisper checkpoint on a manifest",
                                 whisper.add_evaluate_whisper_arguments, whisper.run_evaluate_whisper)},
    }


def _per_model_arguments(action: str):
    def arguments(parser: argparse.ArgumentParser) -> None:
        models = parser.add_subparsers(dest="model", title="models", required=True)
        for name, (help, add_arguments, _) in _trainable_models()[action].items():
            add_arguments(models.add_parser(name, help=help))

    return arguments


@command("train", "train a model (vit, whisper, vae, text2image); --resume continues a run", _per_model_arguments("train"))
def train(args: argparse.Namespace) -> None:
    _trainable_models()["train"][args.model][2](args)


@command("evaluate", "evaluate a trained model (vit, whisper)", _per_model_arguments("evaluate"))
def evaluate(args: argparse.Namespace) -> None:
    _trainable_models()["evaluate"][args.model][2](args)
