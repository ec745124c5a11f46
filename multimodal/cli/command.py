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
