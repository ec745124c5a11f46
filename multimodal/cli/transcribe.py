"""``multimodal transcribe``: speech to text, written as .txt, .srt, .vtt and .json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..generation.transcribe import MAX_BATCH
from ..generation.whisper_decoding import MAX_BEAMS, TASKS
from ..media.audio import iter_audio_chunks
from ..pipelines.speech_recognition import DEFAULT_NAME, FORMATS, write_result
from .command import (Command, add_lora_arguments, add_overwrite_argument, check_outputs, load_pipeline,
                      write_error)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal transcribe``."""
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, mp3, ogg, m4a, …)")
    parser.add_argument("--model", default=None,
                        help=f"checkpoint folder or name, CTranslate2 / Hugging Face folder or OpenAI .pt "
                             f"(default {DEFAULT_NAME})")
    parser.add_argument("--beam-size", type=int, default=5,
                        help=f"beams at temperature 0 (default 5, at most {MAX_BEAMS})")
    parser.add_argument("--best-of", type=int, default=5,
                        help=f"samples per window when falling back to temperature > 0 (default 5, at most "
                             f"{MAX_BEAMS})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fallback's sampling: the same file gives the same text (default 0)")
    parser.add_argument("--language", default=None, help="language code; default: detect (English-only models: en)")
    parser.add_argument("--task", default="transcribe", choices=TASKS, help="transcribe, or translate to English")
    parser.add_argument("--initial-prompt", default=None, help="text to condition the first window on")
    parser.add_argument("--format", default="all", choices=[*FORMATS, "all"], help="output format (default all)")
    parser.add_argument("--vad", action="store_true",
                        help="decode only the speech Silero VAD finds (skips silence and noise; times stay the "
                             "recording's)")
    parser.add_argument("--word-timestamps", action="store_true",
                        help="time every word (the .json gets each segment's words with start, end and probability)")
    words = parser.add_mutually_exclusive_group()
    words.add_argument("--highlight-words", action="store_true",
                       help="with --word-timestamps: .srt/.vtt cues underline each word as it is spoken")
    words.add_argument("--word-cues", action="store_true",
                       help="with --word-timestamps: .srt/.vtt get one cue per word")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"decode up to N windows at once (1 to {MAX_BATCH}): the files side by side, or with "
                             f"--vad the speech of one file in pieces of up to 30 s (default: one at a time)")
    parser.add_argument("--output-dir", default=".", help="folder for the outputs (default: the current one)")
    add_overwrite_argument(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="int8: dynamic int8 quantization on the CPU (faster, about as accurate)")
    add_lora_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``multimodal transcribe``: write FILE.txt/.srt/.vtt/.json for each file and print its text.
    Every input is decoded and every output checked before the first file is transcribed."""
    formats = FORMATS if args.format == "all" else (args.format,)
    style = "highlight" if args.highlight_words else "cues" if args.word_cues else None
    if style and not args.word_timestamps:
        raise InputError(f"--{'highlight-words' if args.highlight_words else 'word-cues'}: expected "
                         f"--word-timestamps with it, found none")
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output-dir: expected a folder, found the file {out_dir}")
    outputs = {path: [out_dir / f"{Path(path).stem}.{fmt}" for fmt in formats] for path in args.audio}
    check_outputs([o for paths in outputs.values() for o in paths], overwrite=args.overwrite,
                  option="--output-dir")
    pipe = load_pipeline("automatic-speech-recognition", args)
    options = dict(beam_size=args.beam_size, best_of=args.best_of, language=args.language, task=args.task,
                   initial_prompt=args.initial_prompt, seed=args.seed,
                   return_timestamps="word" if args.word_timestamps else True, vad_filter=args.vad,
                   batch_size=args.batch_size)
    for path in args.audio:
        pipe.validate(path, **options)
    for path in args.audio:  # decoded to the end: damage anywhere is found before any work
        for _ in iter_audio_chunks(path):
            pass
    if args.batch_size is not None and len(args.audio) > 1:  # the files side by side
        results = dict(zip(args.audio, pipe(list(args.audio), **options)))
    else:
        results = None
    for path in args.audio:
        result = results[path] if results is not None else pipe(path, **options)
        for output, fmt in zip(outputs[path], formats):
            try:
                write_result(result, output, fmt, style if fmt in ("srt", "vtt") else None)
            except OSError as e:
                raise write_error(output, e) from None
            print(f"{path} -> {output}")
        print(result["text"].strip())
    return 0


COMMAND = Command("transcribe", "transcribe speech to text (.txt, .srt, .vtt, .json)", add_arguments, run)
