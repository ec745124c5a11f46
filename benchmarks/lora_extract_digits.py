"""The digits fine-tune as a LoRA adapter, extracted from it (``multimodal.lora.extract_lora``).

The fine-tune ``whisper-tiny.en-digits`` is tiny.en with its decoder fully fine-tuned (75 MB; it is not
shipped: ``checkpoints/whisper-tiny.en-digits-lora`` is this benchmark's adapter, and the fine-tune is
read from the repository's history, commit 5919688, into the cache). Its change to
each of the decoder's 28 Linear weights is replaced by the best rank-r approximation (truncated SVD),
stored float16 as a peft adapter for tiny.en; what no adapter of Linear weights can hold (the change
to the token embedding, the norms and the biases) is left behind, and listed.

The rank is fixed by a rule set before any scoring: the largest of ``--ranks`` whose float16
adapter fits the 5 MB an adapter may take. Every rank is measured without the test speaker
(george): the share of the weight change kept, the size on disk, and, on FSDD takes of the three
training speakers that neither model trained on (takes 12 to 21: 300 clips), digit accuracy and
how often the adapter's transcript equals the fine-tune's, in the pipeline's decoding (beam 5,
timestamps, temperature fallback; ``benchmarks/whisper_digits.py``'s), with tiny.en as the floor.

The chosen adapter is written to ``--out`` (a peft folder with ``training.json``); the test speaker
then scores it once, beside the fine-tune, with ``benchmarks/whisper_digits.py --model <out>``.

    python -m benchmarks.lora_extract_digits [--ranks 16 32 64] [--out DIR]

Results: ``benchmarks/results/lora_extract_digits.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from multimodal.checkpoint import atomic_write_text, fresh_tmp_dir, publish_dir
from multimodal.convert.whisper import load_whisper
from multimodal.lora import WEIGHTS_NAME, extract_lora, load_lora, save_lora
from multimodal.data.speech_digits import speech_digits_manifests
from multimodal.paths import cache_dir
from multimodal.tokenizers.whisper_text import WhisperTokenizer
from multimodal.training.whisper import encoder_features, init_folder, read_manifest

from .common import markdown_table, write_results
from .lora_digits_select import _rows, _write, fsdd_rows, full_finetune
from .whisper_digits import run_model

BUDGET_BYTES = 5_000_000
# How whisper-tiny.en-digits was trained (its MODEL_CARD.md; the folder holds no training.json)
FULL_TRAINING = {
    "command": "multimodal train whisper --manifest speech-digits --init tiny.en --freeze-encoder --out-dir "
               "runs/whisper-digits --max-steps 16 --batch-size 12 --lr 0.0001 --warmup-steps 2 --eval-every 16 "
               "--save-every 8 --log-every 2",
    "steps": 16, "batch_size": 12, "train_clips": 550, "val_clips": 80, "best_step": 16, "device": "cpu",
    "torch_threads": 2, "val_before": {"val_loss": 1.41, "val_wer": 0.5467, "val_exact": 0.3875},
    "val_best": {"val_loss": 0.5467, "val_wer": 0.3692, "val_exact": 0.775}}
TRAINING_SPEAKERS = {"jackson", "nicolas", "yweweler"}
UNUSED_TAKES = range(12, 22)  # the corpus trains on takes 2-11 and validates on 0-1 (speech_digits build.json)


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lora_extract_digits", description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--tuned", default=None, help="the full fine-tune (default: whisper-tiny.en-digits, read "
                        "from the repository's history when it is not shipped)")
    parser.add_argument("--out", default=str(cache_dir() / "benchmarks" / "lora_extract_digits" / "chosen"),
                        help="where the chosen adapter is written")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = cache_dir() / "benchmarks" / "lora_extract_digits"
    base_folder, tuned_folder = init_folder("tiny.en"), Path(args.tuned) if args.tuned else full_finetune()
    tokenizer = WhisperTokenizer.from_file(base_folder / "tokenizer.json")
    base, tuned = load_whisper(base_folder).eval(), load_whisper(tuned_folder).eval()

    rows = fsdd_rows(TRAINING_SPEAKERS, UNUSED_TAKES)
    sentences = [r for r in _rows(speech_digits_manifests()["val"]) if not r.get("source", "").startswith("fsdd/")]
    entries = {"digits": read_manifest(_write(root / "unused-takes.jsonl", rows)),
               "sentences": read_manifest(_write(root / "validation-sentences.jsonl", sentences))}
    features = {k: encoder_features(base, v, progress=False)[0] for k, v in entries.items()}

    def score(model) -> dict:
        return run_model(model, tokenizer, features, entries, ("pipeline",))["pipeline"]

    reference = score(tuned)
    floor = score(base)
    def compare(got: dict) -> dict:
        return {"digit_accuracy": got["digit_accuracy"], "sentence_wer": got["sentence_wer"],
                "agreement": agreement(got["digit_transcripts"], reference["digit_transcripts"]),
                "sentence_agreement": agreement(got["sentence_transcripts"], reference["sentence_transcripts"])}

    results = {"tiny.en": compare(floor),
               "fine-tune": {**compare(reference), "stored_bytes": (tuned_folder / "model.safetensors").stat().st_size}}
    print(f"fine-tune: {100 * reference['digit_accuracy']:.1f} %; tiny.en {100 * floor['digit_accuracy']:.1f} %", flush=True)
    folders = {}
    for r in sorted(set(args.ranks)):
        model = load_whisper(base_folder).eval()
        start = time.perf_counter()
        report = extract_lora(model, tuned, r=r)
        seconds = time.perf_counter() - start
        folder = save_lora(model, root / f"rank{r}", base="whisper-tiny.en", dtype=torch.float16)
        stored = (folder / WEIGHTS_NAME).stat().st_size
        model = load_whisper(base_folder).eval()  # scored as loaded from disk (float16 weights)
        load_lora(model, folder, base="whisper-tiny.en")
        got = score(model)
        results[f"rank {r}"] = {
            "rank": r, "modules": len(report["layers"]), "kept": report["kept"],
            "parameters": sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n),
            "stored_bytes": stored, "extract_seconds": seconds, **compare(got), "not_carried": report["not_carried"]}
        folders[r] = folder
        print(f"rank {r}: kept {100 * report['kept']:.1f} % of the change, {stored / 1e6:.2f} MB, "
              f"{100 * got['digit_accuracy']:.1f} % right, {100 * results[f'rank {r}']['agreement']:.1f} % "
              "the fine-tune's transcript", flush=True)

    fits = [r for r in folders if results[f"rank {r}"]["stored_bytes"] <= BUDGET_BYTES]
    if not fits:
        raise SystemExit(f"no rank of {args.ranks} fits {BUDGET_BYTES / 1e6:g} MB")
    chosen = max(fits)
    training = (json.loads((tuned_folder / "training.json").read_text()) if (tuned_folder / "training.json").is_file()
                else FULL_TRAINING if args.tuned is None else {})
    row = results[f"rank {chosen}"]
    info = {**training, "command": " ".join(["python -m benchmarks.lora_extract_digits", *(argv or [])]),
            "lora": {"base": "whisper-tiny.en", "r": chosen, "alpha": float(chosen), "target": "all",
                     "modules": row["modules"], "trainable_parameters": row["parameters"]},
            "extracted": {"from": "whisper-tiny.en-digits" if args.tuned is None else tuned_folder.name, "fine_tune_command": training.get("command"),
                          "kept": row["kept"], "dtype": "float16", "not_carried": row["not_carried"]}}
    out = Path(args.out)
    tmp = fresh_tmp_dir(out)
    for name in ("adapter_config.json", WEIGHTS_NAME):
        shutil.copyfile(folders[chosen] / name, tmp / name)
    atomic_write_text(tmp / "training.json", json.dumps(info, indent=2) + "\n")
    publish_dir(tmp, out)

    table = markdown_table(("model", "change kept", "MB", "digits right", "digits as the fine-tune",
                            "sentence WER", "sentences as the fine-tune"),
                           [(k, f"{100 * v['kept']:.1f} %" if "kept" in v else "",
                             f"{v['stored_bytes'] / 1e6:.2f}" if "stored_bytes" in v else "",
                             f"{100 * v['digit_accuracy']:.1f} %", f"{100 * v['agreement']:.1f} %",
                             f"{100 * v['sentence_wer']:.1f} %", f"{100 * v['sentence_agreement']:.1f} %")
                            for k, v in results.items()])
    print(table)
    print(f"chosen: rank {chosen} (the largest under {BUDGET_BYTES / 1e6:g} MB), written to {out}")
    return write_results("lora_extract_digits", {
        "tuned": str(tuned_folder), "clips": len(entries["digits"]),
        "clips_source": f"FSDD takes {UNUSED_TAKES.start}-{UNUSED_TAKES.stop - 1} of {', '.join(sorted(TRAINING_SPEAKERS))}",
        "decoding": "the pipeline's: beam 5, timestamps, temperature fallback",
        "rule": f"the largest rank whose float16 adapter is at most {BUDGET_BYTES} bytes",
        "chosen": chosen, "out": str(out), "results": results})


if __name__ == "__main__":
    main()
