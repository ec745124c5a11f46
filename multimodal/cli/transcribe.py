"""``multimodal transcribe``: speech to text, written as .txt, .srt, .vtt and .json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..generation.whisper_decoding import TASKS
from ..pipelines.speech_recognition import DEFAULT_NAME, FORMATS, write_result
from .command import Command, add_lora_arguments, load_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal transcribe``."""
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, mp3, ogg, m4a, …)")
    parser.add_argument("--model", default=None,
                        help=f"checkpoint folder or name, CTranslate2 / Hugging Face folder or OpenAI .pt "
                             f"(default {DEFAULT_NAME})")
    parser.add_argument("--beam-size", type=int, default=5, help="beams at temperature 0 (default 5)")
    parser.add_argument("--best-of", type=int, default=5, help="samples per window when falling back to "
                                                               "temperature > 0 (default 5)")
    parser.add_argument("--language", default=None, help="language code; default: detect (English-only models: en)")
    parser.add_argument("--task", default="transcribe", choices=TASKS, help="transcribe, or translate to English")
    parser.add_argument("--initial-prompt", default=None, help="text to condition the first window on")
    parser.add_argument("--format", default="all", choices=[*FORMATS, "all"], help="output format (default all)")
    parser.add_argument("--output-dir", default=".", help="folder for the outputs (default: the current one)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    add_lora_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``multimodal transcribe``: write FILE.txt/.srt/.vtt/.json for each file and print its text."""
    formats = FORMATS if args.format == "all" else (args.format,)
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output-dir: expected a folder, found the file {out_dir}")
    pipe = load_pipeline("automatic-speech-recognition", args)
    options = dict(beam_size=args.beam_size, best_of=args.best_of, language=args.language, task=args.task,
                   initial_prompt=args.initial_prompt)
    for path in args.audio:  # every file is checked before the first is transcribed
        pipe.validate(path, **options)
    for path in args.audio:
        result = pipe(path, **options)
        for fmt in formats:
            written = write_result(result, out_dir / f"{Path(path).stem}.{fmt}", fmt)
            print(f"{path} -> {written}")
        print(result["text"].strip())
    return 0


COMMAND = Command("transcribe", "transcribe speech to text (.txt, .srt, .vtt, .json)", add_arguments, run)
