"""``multimodal lora extract``: a full fine-tune's change as a LoRA adapter (peft's format).

    multimodal lora extract tiny.en runs/whisper-digits/model -o runs/digits-extracted --rank 64
    multimodal transcribe clip.wav --lora runs/digits-extracted

Each Linear weight the fine-tune changed becomes its best rank-r approximation (truncated SVD,
``multimodal.lora.extract_lora``); the command prints the share of the change kept and the other
tensors that changed (embeddings, norms, biases), which an adapter of Linears cannot hold.
"""

from __future__ import annotations

import argparse

from ..training.lora import add_extract_arguments, run_extract
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", title="actions", required=True)
    add_extract_arguments(actions.add_parser("extract", help="a full fine-tune's change as a LoRA adapter"))


def run(args: argparse.Namespace) -> None:
    run_extract(args)


COMMAND = Command("lora", "LoRA adapters: extract one from a full fine-tune", add_arguments, run)
