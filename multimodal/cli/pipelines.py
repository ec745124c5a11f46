"""``multimodal pipelines``: the registered tasks and their default models."""

from __future__ import annotations

import argparse

from .. import pipelines
from ..errors import InputError
from ..paths import resolve_model
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="show one task only")


def run(args: argparse.Namespace) -> None:
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


COMMAND = Command("pipelines", "list the registered tasks and their default models", add_arguments, run)
