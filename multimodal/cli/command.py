"""A subcommand of ``multimodal``: its name, help, arguments and the function that runs it."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the subcommand's arguments
    run: Callable[[argparse.Namespace], int | None]  # its exit status (None: 0)


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lora PATH`` (repeatable) and ``--lora-scale``: adapters loaded onto the command's model."""
    parser.add_argument("--lora", action="append", default=None, metavar="PATH",
                        help="a LoRA adapter folder (peft format) to load onto the model; repeat for several, "
                             "all active")
    parser.add_argument("--lora-scale", type=float, default=1.0,
                        help="multiplier of every --lora adapter's update (default 1)")


def load_pipeline(task: str, args: argparse.Namespace):
    """The task's pipeline for ``--model`` / ``--device``, with the ``--lora`` adapters loaded."""
    from ..pipelines import pipeline

    extra = {"quantize": args.quantize} if getattr(args, "quantize", None) else {}
    pipe = pipeline(task, model=args.model, device=args.device, **extra)
    names = [f"adapter{i}" for i, _ in enumerate(getattr(args, "lora", None) or [], 1)]
    for name, path in zip(names, args.lora or []):
        pipe.load_lora(path, adapter_name=name, scale=args.lora_scale)
    if len(names) > 1:
        pipe.set_lora(names, args.lora_scale)
    return pipe


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (default: refuse, before any work)")


def check_outputs(paths: Sequence[Path], *, overwrite: bool, option: str) -> None:
    """Before any work: the files a command will write are distinct, none is a folder, none exists
    unless ``overwrite``, and each one's folder takes a new file (or can be made, and then does)."""
    seen: dict[Path, int] = {}
    for path in paths:
        seen[path] = seen.get(path, 0) + 1
    twice = [p for p, n in seen.items() if n > 1]
    if twice:
        raise InputError(f"{option}: expected one output per input, found two inputs writing {twice[0]} "
                         f"(inputs with the same name: transcribe them into different folders)")
    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise InputError(f"{option}: expected a file name, found the folder {folders[0]}")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        what = f"{existing[0]} and {len(existing) - 1} more output file(s) already exist" if len(existing) > 1 \
            else f"{existing[0]} already exists"
        raise InputError(f"{option}: {what}; pass --overwrite to replace, or write elsewhere")
    for folder in dict.fromkeys(p.parent for p in paths):
        check_writable_folder(folder, option)


def check_writable_folder(folder: Path, option: str) -> None:
    """A new file can be created in ``folder``, or, where it does not exist yet, in its nearest
    existing ancestor (where it will be made). Nothing is left behind."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option}: expected a folder, found the file {existing} in the way of {folder}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise InputError(f"{option}: expected a folder this user can write, found {folder} "
                         f"({e.strerror or e} in {existing})") from None


def write_error(path: Path, error: OSError) -> InputError:
    """An ``InputError`` for an output that could not be written (a full disk, a folder removed)."""
    return InputError(f"{path}: could not be written ({error.strerror or error})")
