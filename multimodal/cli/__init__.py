"""The ``multimodal`` console command: one module per subcommand, each defining a ``Command``
(name, help, the function that adds its arguments, the function that runs it).

Bad input raises ``InputError``; ``main`` prints its message on one line, without a traceback,
and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Sequence

from .. import __version__
from ..errors import InputError
from . import classify, codes, generate, lora, pipelines, tokenizer, train, transcribe
from .command import Command

COMMANDS: dict[str, Command] = {c.name: c for c in (
    pipelines.COMMAND, tokenizer.COMMAND, transcribe.COMMAND, classify.COMMAND, generate.COMMAND, codes.COMMAND,
    train.TRAIN, train.EVALUATE, lora.COMMAND)}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None):
    """Register the decorated function as the subcommand ``name`` (for commands added from outside)."""

    def register(run: Callable[[argparse.Namespace], int | None]):
        COMMANDS[name] = Command(name, help, arguments, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal",
        description="One transformer backbone for image classification, text-to-image and speech "
                    "recognition.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands")
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.arguments(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "_takes_extra", False):
            parser.parse_args(argv)  # the usual error naming the unrecognized arguments
        args.extra = extra  # a command that passes options on (``train lora`` to the base's recipe)
    if args.command is None:
        parser.error(f"expected a command ({', '.join(COMMANDS)}), found none")
    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{parser.prog}: warning: {' '.join(str(message).splitlines())}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return args.run(args) or 0
    except InputError as e:
        message = " ".join(str(e).splitlines())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "Command", "build_parser", "command", "main"]
