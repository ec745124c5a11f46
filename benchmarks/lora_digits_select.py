"""The digits adapter's recipe, chosen without the test speaker.

Two stages, so that the held-out speaker (george) scores exactly one adapter:

1. **Selection.** Each candidate recipe (rank, steps, learning rate, FSDD takes per digit) trains
   a LoRA adapter on tiny.en (``multimodal train lora --target all``) with a validation speaker
   (yweweler) taken out of the training and validation data, and is scored on all 500 of that
   speaker's FSDD clips, plus the corpus' validation sentences (training voices). The full decoder
   fine-tune's recipe (that of the fine-tune ``whisper-tiny.en-digits``) is trained and scored the
   same way, as the reference. george's clips are not read in this stage.
2. **Test.** The candidate with the best digit accuracy on the validation speaker (ties: lower
   sentence WER, then fewer parameters) is trained again on the whole training split, all three
   training speakers, and scored once on george's 500 clips and the 80 held-out sentences
   (flite slt, pico en-US), as ``benchmarks/lora_digits.py`` scores, beside the shipped full
   fine-tune (``whisper-tiny.en-digits``, read from the repository's history) and the full fine-tune's recipe trained
   again here on the same data, each with the paired difference on the same clips.

Decoding is the pipeline's (beam 5, timestamps, temperature fallback; the text equals the pipeline's),
on the features the pipeline computes (``multimodal.training.whisper.clip_mel``). Runs live in
``<cache>/benchmarks/lora_digits_select/<features form>/`` and are reused when rerun. Results:
``benchmarks/results/lora_digits_select.json``.

    python -m benchmarks.lora_digits_select                # both stages
    python -m benchmarks.lora_digits_select --select-only  # stage 1 only

The chosen adapter's folder is printed; ``benchmarks/whisper_digits.py --model <folder> --ship ...``
writes it as a checkpoint with its card.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from multimodal.checkpoint import atomic_write_text
from multimodal.convert.whisper import load_whisper
from multimodal.data.speech_digits import FSDD_ROOT, fsdd_clips, speech_digits_manifests, spoken
from multimodal.paths import cache_dir
from multimodal.tokenizers.whisper_text import WhisperTokenizer
from multimodal.training.whisper import FEATURES_FORM, encoder_features, encoder_key, init_folder, read_manifest

from .common import markdown_table, write_results
from .lora_digits import FULL_ARGS, load_tuned, train
from .whisper_digits import DECODING, heldout_sentences, paired_gain, run_model

VALIDATION_SPEAKER = "yweweler"
FULL_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "whisper-tiny.en-digits"
FULL_COMMIT = "5919688"  # the last commit that ships the full fine-tune; its adapter form replaced it
FULL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "MODEL_CARD.md")


def full_finetune() -> Path:
    """The full decoder fine-tune ``whisper-tiny.en-digits`` (75 MB; not shipped, its adapter form is):
    read from the repository's history (``git show 5919688:checkpoints/whisper-tiny.en-digits/...``)
    into the cache once; a folder at ``checkpoints/whisper-tiny.en-digits`` is used when there."""
    if (FULL_CHECKPOINT / "model.safetensors").is_file():
        return FULL_CHECKPOINT
    dest = cache_dir() / "checkpoints" / f"whisper-tiny.en-digits-{FULL_COMMIT}"
    if all((dest / f).is_file() for f in FULL_FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in FULL_FILES:
        done = subprocess.run(["git", "-C", str(FULL_CHECKPOINT.parent.parent), "show",
                               f"{FULL_COMMIT}:checkpoints/{FULL_CHECKPOINT.name}/{name}"], capture_output=True)
        if done.returncode:
            raise SystemExit(f"the full fine-tune is not in checkpoints/ and git could not read it from commit {FULL_COMMIT} "
                             f"({done.stderr.decode().strip()}); a clone with the repository's history has it")
        (dest / f"{name}.tmp").write_bytes(done.stdout)
        (dest / f"{name}.tmp").replace(dest / name)
    return dest
COMMON = ["--target", "all", "--batch-size", "12", "--warmup-steps", "4", "--eval-every", "20",
          "--save-every", "20", "--log-every", "5"]


@dataclass(frozen=True)
class Candidate:
    """One adapter recipe: rank (alpha = 2 x rank), steps, learning rate, FSDD takes per digit and
    speaker beyond the corpus' own (0: the corpus as built), and whether the encoder gets adapters
    too (else the decoder only, on encoder outputs cached once per clip)."""

    rank: int
    steps: int = 60
    lr: float = 1e-3
    extra_takes: int = 0
    encoder: bool = False

    @property
    def name(self) -> str:
        more = f", +{self.extra_takes} takes" if self.extra_takes else ""
        return f"rank {self.rank}, {self.steps} steps, lr {self.lr:g}{more}{', encoder too' if self.encoder else ''}"

    @property
    def slug(self) -> str:
        return f"r{self.rank}-s{self.steps}-lr{self.lr:g}-t{self.extra_takes}{'-enc' if self.encoder else ''}"

    def command(self, train_manifest: Path, val_manifest: Path) -> list[str]:
        return ["train", "lora", "--base", "tiny.en", "--rank", str(self.rank), "--alpha", str(2 * self.rank),
                "--manifest", str(train_manifest), "--val-manifest", str(val_manifest),
                "--max-steps", str(self.steps), "--lr", str(self.lr), *COMMON,
                *(["--no-freeze-encoder"] if self.encoder else [])]


CANDIDATES = (Candidate(16), Candidate(16, steps=120), Candidate(32), Candidate(16, lr=2e-3),
              Candidate(16, extra_takes=10), Candidate(16, encoder=True))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def fsdd_rows(speakers: set[str], takes: range | None = None) -> list[dict]:
    """Manifest rows of the FSDD clips of ``speakers`` whose take is in ``takes`` (every take when None)."""
    return [{"audio": str(p), "text": spoken(d), "source": f"fsdd/{s}"} for p, d, s, t in fsdd_clips(FSDD_ROOT)
            if s in speakers and (takes is None or t in takes)]


def manifests(root: Path, extra_takes: int, without: str | None) -> tuple[Path, Path]:
    """Training and validation manifests: the corpus' splits, ``without`` one speaker's FSDD clips,
    plus ``extra_takes`` more takes per digit of each remaining training speaker."""
    corpus = speech_digits_manifests()
    build = json.loads((corpus["train"].parent / "build.json").read_text())
    train_rows = [r for r in _rows(corpus["train"]) if r.get("source") != f"fsdd/{without}"]
    val_rows = [r for r in _rows(corpus["val"]) if r.get("source") != f"fsdd/{without}"]
    speakers = {r["source"][5:] for r in train_rows if str(r.get("source", "")).startswith("fsdd/")}
    first = build["val_takes"] + build["fsdd_train_takes"]
    train_rows += fsdd_rows(speakers, range(first, first + extra_takes))
    tag = f"{without or 'all'}-t{extra_takes}"
    return _write(root / "manifests" / f"train-{tag}.jsonl", train_rows), _write(root / "manifests" / f"val-{tag}.jsonl", val_rows)


def score(folder: Path, base_folder: Path, base_encoder: str, tokenizer, features: dict, entries: dict) -> dict:
    """Digit accuracy and sentence WER of a trained adapter or full fine-tune (pipeline decoding);
    ``features`` are the base encoder's (key ``base_encoder``), used when the model's encoder is the base's."""
    model = load_tuned(folder, base_folder).eval()
    if encoder_key(model) != base_encoder:
        features = {k: encoder_features(model, v, progress=False)[0] for k, v in entries.items()}
    return run_model(model, tokenizer, features, entries, ("pipeline",))["pipeline"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lora_digits_select", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--select-only", action="store_true", help="stop after the selection stage")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = cache_dir() / "benchmarks" / "lora_digits_select" / FEATURES_FORM
    base_folder = init_folder("tiny.en")
    tokenizer = WhisperTokenizer.from_file(base_folder / "tokenizer.json")
    base = load_whisper(base_folder).eval()
    base_encoder = encoder_key(base)

    # ---- stage 1: selection on the validation speaker
    sentences = [r for r in _rows(speech_digits_manifests()["val"]) if not r.get("source", "").startswith("fsdd/")]
    speaker_rows = fsdd_rows({VALIDATION_SPEAKER})
    val_entries = {"digits": read_manifest(_write(root / "manifests" / "validation-speaker.jsonl", speaker_rows)),
                   "sentences": read_manifest(_write(root / "manifests" / "validation-sentences.jsonl", sentences))}
    val_features = {k: encoder_features(base, v, progress=False)[0] for k, v in val_entries.items()}
    selection = {"tiny.en": _summary(run_model(base, tokenizer, val_features, val_entries, ("pipeline",))["pipeline"])}
    print(f"tiny.en on {VALIDATION_SPEAKER}: {_line(selection['tiny.en'])}", flush=True)
    runs = {c.name: (c, c.command(*manifests(root, c.extra_takes, VALIDATION_SPEAKER)), root / "select" / c.slug)
            for c in CANDIDATES}
    full_train, full_val = manifests(root, 0, VALIDATION_SPEAKER)
    full_args = [a if a != "speech-digits" else str(full_train) for a in FULL_ARGS] + ["--val-manifest", str(full_val)]
    runs["full fine-tuning (decoder)"] = (None, ["train", "whisper", *full_args], root / "select" / "full")
    for name, (candidate, command, out) in runs.items():
        start = time.perf_counter()
        training = train(command, out)
        selection[name] = {**_summary(score(out / "model", base_folder, base_encoder, tokenizer, val_features, val_entries)),
                           "candidate": asdict(candidate) if candidate else None, "command": training["command"],
                           "train_seconds": training["train_seconds"], "best_step": training.get("best_step"),
                           "trainable_parameters": training.get("lora", {}).get("trainable_parameters"),
                           "wall_seconds": time.perf_counter() - start}
        print(f"{name}: {_line(selection[name])}", flush=True)
    ranked = sorted((c for c in CANDIDATES), key=lambda c: (-selection[c.name]["digit_accuracy"],
                                                            selection[c.name]["sentence_wer"], c.rank))
    chosen = ranked[0]
    rows = [[name, f"{100 * s['digit_accuracy']:.1f} %", f"{100 * s['sentence_wer']:.2f} %",
             "chosen" if name == chosen.name else ""] for name, s in selection.items()]
    print(markdown_table(["model", f"digits ({VALIDATION_SPEAKER}, 500 clips)", "val sentence WER", ""], rows))
    results = {"validation_speaker": VALIDATION_SPEAKER, "decoding": DECODING,
               "selection": selection, "chosen": chosen.name}
    if args.select_only:
        print(f"wrote {write_results('lora_digits_select', results)}")
        return results

    # ---- stage 2: the chosen recipe on all training speakers, scored once on george
    test_entries = {"digits": read_manifest(speech_digits_manifests()["test"]),
                    "sentences": read_manifest(heldout_sentences(cache_dir() / "corpora" / "heldout-sentences"))}
    test_features = {k: encoder_features(base, v, progress=False)[0] for k, v in test_entries.items()}
    out = root / "final" / chosen.slug
    start = time.perf_counter()
    training = train(chosen.command(*manifests(root, chosen.extra_takes, None)), out)
    scored = score(out / "model", base_folder, base_encoder, tokenizer, test_features, test_entries)
    final = {**_summary(scored),
             "command": training["command"], "train_seconds": training["train_seconds"],
             "best_step": training.get("best_step"), "folder": str(out / "model"),
             "trainable_parameters": training["lora"]["trainable_parameters"],
             "stored_bytes": sum(f.stat().st_size for f in (out / "model").glob("*.safetensors")),
             "wall_seconds": time.perf_counter() - start}
    print(f"chosen ({chosen.name}) on george: {_line(final)}", flush=True)
    results["test"] = {"digits": "FSDD held-out speaker george, 500 clips",
                       "sentences": "40 sentences x 2 held-out voices (flite slt, pico en-US)", chosen.name: final}
    full_out = root / "final" / "full"
    train(["train", "whisper", *FULL_ARGS], full_out)
    for name, folder in ((f"checkpoints/{FULL_CHECKPOINT.name} (reference)", full_finetune()),
                         ("full fine-tuning (decoder), trained here (reference)", full_out / "model")):
        reference = score(folder, base_folder, base_encoder, tokenizer, test_features, test_entries)
        difference, se = paired_gain(reference["digit_right"], scored["digit_right"])
        print(f"{name} on george: {_line(reference)}; adapter minus it: {100 * difference:+.1f} points "
              f"of digits (paired standard error {100 * se:.1f})", flush=True)
        results["test"][name] = {**_summary(reference), "digit_difference": difference, "digit_difference_se": se}
    print(f"wrote {write_results('lora_digits_select', results)}")
    return results


def _summary(scored: dict) -> dict:
    return {"digit_accuracy": scored["digit_accuracy"], "per_digit": scored["per_digit"],
            "sentence_wer": scored["sentence_wer"]}


def _line(s: dict) -> str:
    return f"digits {100 * s['digit_accuracy']:.1f} %, sentence WER {100 * s['sentence_wer']:.2f} %"


if __name__ == "__main__":
    main()
