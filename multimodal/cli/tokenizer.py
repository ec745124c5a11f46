"""``multimodal tokenizer train|encode``: learn a byte-level BPE from text files, or encode text
with one (token ids, tokens with their spans, or ids decoded back to text)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from ..paths import resolve_model
from ..tokenizers.text import TextTokenizer
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", title="actions", required=True)
    add_train_arguments(actions.add_parser("train", help="learn a byte-level BPE from text files"))
    add_encode_arguments(actions.add_parser("encode", help="encode text to token ids"))


def run(args: argparse.Namespace) -> None:
    (run_train if args.action == "train" else run_encode)(args)


COMMAND = Command("tokenizer", "train a byte-level BPE tokenizer, or encode text with one", add_arguments, run)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal tokenizer train``."""
    parser.add_argument("files", nargs="+", help="UTF-8 text files to learn from")
    parser.add_argument("--out", required=True, help="folder to write tokenizer.json into")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tokens in all (default 8192)")
    parser.add_argument("--min-frequency", type=int, default=2, help="least count of a pair to merge (default 2)")
    parser.add_argument("--special", action="append", default=None, metavar="TOKEN",
                        help="a special token, repeatable (default: <|endoftext|>)")
    parser.add_argument("--pattern", default="gpt2",
                        help="how text is split before BPE: gpt2, gpt4 or a regular expression (default gpt2)")
    parser.add_argument("--vocab-merges", action="store_true", help="also write vocab.json and merges.txt")


def run_train(args: argparse.Namespace) -> None:
    """``multimodal tokenizer train``: learn a byte-level BPE and save it."""
    special = args.special if args.special is not None else ["<|endoftext|>"]
    tokenizer = TextTokenizer.train(files=args.files, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                                    special_tokens=special, pattern=args.pattern, show_progress=True)
    path = tokenizer.save(args.out)
    print(f"{tokenizer!r} -> {path}")
    if args.vocab_merges:
        for p in tokenizer.export_vocab_merges(args.out):
            print(f"  {p}")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal tokenizer encode``."""
    parser.add_argument("tokenizer", help="a tokenizer.json, a folder holding one, or a checkpoint's name")
    parser.add_argument("text", nargs="?", help="the text (default: standard input)")
    parser.add_argument("--allowed-special", action="append", default=[], metavar="TOKEN",
                        help="a special token to recognise in the text, repeatable, or 'all'")
    parser.add_argument("--tokens", action="store_true", help="print one token per line: id, span, text")
    parser.add_argument("--decode", action="store_true", help="the input is token ids (JSON list or "
                        "whitespace-separated); print their text")


def run_encode(args: argparse.Namespace) -> None:
    """``multimodal tokenizer encode``: print token ids as a JSON list (or tokens, or decoded text)."""
    tokenizer = TextTokenizer.from_file(resolve_model(args.tokenizer))
    text = args.text if args.text is not None else sys.stdin.read()
    if args.decode:
        try:
            ids = json.loads(text) if text.strip().startswith("[") else [int(t) for t in text.split()]
        except ValueError:
            raise InputError(f"ids: expected a JSON list or whitespace-separated ints, found {text[:60]!r}") from None
        print(tokenizer.decode(ids))
        return
    allowed = "all" if "all" in args.allowed_special else args.allowed_special
    if not args.tokens:
        print(json.dumps(tokenizer.encode(text, allowed_special=allowed)))
        return
    encoding = tokenizer.encode(text, allowed_special=allowed, return_offsets=True)
    for i, (start, end) in zip(encoding.ids, encoding.offsets):
        print(f"{i}\t{start}:{end}\t{text[start:end]!r}")
