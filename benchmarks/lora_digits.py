"""LoRA rank 4 / 8 / 16 against full fine-tuning, on the spoken-digits task of Whisper tiny.en.

Each adapter is trained by ``multimodal train lora --base tiny.en --target all --rank R --alpha 2R
--manifest speech-digits`` (the same steps, batch and learning rate for every rank), and full
fine-tuning by the recipe of the fine-tune ``whisper-tiny.en-digits`` (``multimodal train whisper``,
decoder only, its own learning rate and steps). Every model is then scored as
``benchmarks/whisper_digits.py`` scores one: digit accuracy on all 500 clips of the held-out FSDD
speaker and word error rate on 80 sentences read by held-out voices, decoded as the pipeline
decodes (beam 5, timestamps, temperature fallback). Trainable parameters, bytes stored and training seconds (the
trainer's, evaluations excluded) come from each run.

    python -m benchmarks.lora_digits                 # ranks 4 8 16 and full fine-tuning
    python -m benchmarks.lora_digits --ranks 8 --no-full

Runs live in ``<cache>/benchmarks/lora_digits/`` and are resumed or reused when rerun. Results:
``benchmarks/results/lora_digits.json`` and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from multimodal.cli import main as cli
from multimodal.convert.whisper import DEFAULT_NAME, load_whisper
from multimodal.data.speech_digits import speech_digits_manifests
from multimodal.lora import CONFIG_NAME, load_lora
from multimodal.paths import cache_dir
from multimodal.tokenizers.whisper_text import WhisperTokenizer
from multimodal.training.whisper import FEATURES_FORM, encoder_features, init_folder, read_manifest

from .common import markdown_table, write_results
from .whisper_digits import DECODING, heldout_sentences, run_model

LORA_ARGS = ["--target", "all", "--manifest", "speech-digits", "--max-steps", "60", "--batch-size", "12",
             "--lr", "1e-3", "--warmup-steps", "4", "--eval-every", "20", "--save-every", "20", "--log-every", "5"]
FULL_ARGS = ["--manifest", "speech-digits", "--init", "tiny.en", "--freeze-encoder", "--max-steps", "16",
             "--batch-size", "12", "--lr", "0.0001", "--warmup-steps", "2", "--eval-every", "16", "--save-every", "8",
             "--log-every", "2"]


def train(command: list[str], out: Path) -> dict:
    """Run (or resume, or reuse) one training command; its model folder's training.json."""
    model = out / "model"
    if not (model / "training.json").is_file():
        resume = ["--resume"] if (out / "checkpoint").is_dir() else []
        code = cli([*command, "--out-dir", str(out), "--no-progress", *resume])
        if code != 0:
            raise SystemExit(f"training failed ({code}): {' '.join(command)}")
    return json.loads((model / "training.json").read_text())


def load_tuned(folder: Path, base_folder: Path):
    """A trained digits model: tiny.en with the adapter in ``folder`` loaded, or the fine-tuned
    checkpoint ``folder`` itself."""
    if (folder / CONFIG_NAME).is_file():
        model = load_whisper(base_folder)
        load_lora(model, folder, base=DEFAULT_NAME)
        return model
    return load_whisper(folder)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lora_digits", description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="*", default=[4, 8, 16])
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                        help="also full fine-tuning (default on)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="retrain instead of reusing finished runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = cache_dir() / "benchmarks" / "lora_digits" / FEATURES_FORM
    if args.fresh:
        shutil.rmtree(root, ignore_errors=True)

    runs = {}
    for r in args.ranks:
        command = ["train", "lora", "--base", "tiny.en", "--rank", str(r), "--alpha", str(2 * r), *LORA_ARGS]
        runs[f"LoRA rank {r}"] = (command, root / f"rank{r}")
    if args.full:
        runs["full fine-tuning (decoder)"] = (["train", "whisper", *FULL_ARGS], root / "full")

    base_folder = init_folder("tiny.en")
    tokenizer = WhisperTokenizer.from_file(base_folder / "tokenizer.json")
    base = load_whisper(base_folder).eval()
    entries = {"digits": read_manifest(speech_digits_manifests()["test"]),
               "sentences": read_manifest(heldout_sentences(cache_dir() / "corpora" / "heldout-sentences"))}
    features = {k: encoder_features(base, v, progress=False)[0] for k, v in entries.items()}

    rows, results = [], {}
    before = run_model(base, tokenizer, features, entries, ("pipeline",))["pipeline"]
    rows.append(["tiny.en (no training)", 0, "", "", f"{100 * before['digit_accuracy']:.1f} %",
                 f"{100 * before['sentence_wer']:.2f} %"])
    results["tiny.en"] = {"digit_accuracy": before["digit_accuracy"], "sentence_wer": before["sentence_wer"]}
    for name, (command, out) in runs.items():
        start = time.perf_counter()
        training = train(command, out)
        folder = out / "model"
        model = load_tuned(folder, base_folder)
        trainable = (training["lora"]["trainable_parameters"] if (folder / CONFIG_NAME).is_file()
                     else sum(p.numel() for p in model.decoder.parameters()))
        stored = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        scored = run_model(model.eval(), tokenizer, features, entries, ("pipeline",))["pipeline"]
        results[name] = {"command": training["command"], "trainable_parameters": trainable, "stored_bytes": stored,
                         "train_seconds": training["train_seconds"], "steps": training["steps"],
                         "best_step": training.get("best_step"), "digit_accuracy": scored["digit_accuracy"],
                         "sentence_wer": scored["sentence_wer"], "wall_seconds": time.perf_counter() - start}
        rows.append([name, f"{trainable:,}", f"{stored / 1e6:.2f}", f"{training['train_seconds']:.0f}",
                     f"{100 * scored['digit_accuracy']:.1f} %", f"{100 * scored['sentence_wer']:.2f} %"])
        print(f"{name}: digits {100 * scored['digit_accuracy']:.1f} %, sentence WER "
              f"{100 * scored['sentence_wer']:.2f} %", flush=True)
    table = markdown_table(["model", "trainable parameters", "stored MB", "training s", "digits (held-out speaker)",
                            "sentence WER (held-out voices)"], rows)
    print(table)
    path = write_results("lora_digits", {"threads": args.threads, "decoding": DECODING,
                                         "digits": "FSDD held-out speaker george, 500 clips",
                                         "sentences": "40 sentences x 2 held-out voices (flite slt, pico en-US)",
                                         "models": results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
