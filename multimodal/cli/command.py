"""A subcommand of ``multimodal``: its name, help, arguments and the function that runs it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


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

    pipe = pipeline(task, model=args.model, device=args.device)
    names = [f"adapter{i}" for i, _ in enumerate(getattr(args, "lora", None) or [], 1)]
    for name, path in zip(names, args.lora or []):
        pipe.load_lora(path, adapter_name=name, scale=args.lora_scale)
    if len(names) > 1:
        pipe.set_lora(names, args.lora_scale)
    return pipe
