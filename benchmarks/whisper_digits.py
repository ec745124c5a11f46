"""Whisper tiny.en before and after fine-tuning on spoken digits (``multimodal train whisper
--manifest speech-digits``): digit accuracy on the held-out FSDD speaker, and word error rate on
ordinary sentences read by held-out voices (flite ``slt`` and pico ``en-US``, never
used for training or tuning).

    python benchmarks/whisper_digits.py --model runs/whisper-digits/model [--ship checkpoints/my-digits]
    python benchmarks/whisper_digits.py --model runs/digits-lora/model [--ship checkpoints/whisper-tiny.en-digits-lora]

``--model`` is a fine-tuned checkpoint or a LoRA adapter folder (``multimodal train lora``) for the
base; an adapter is evaluated on the base with the adapter loaded and ships as the adapter folder.

Both models share tiny.en's encoder when the fine-tuning froze it (checked by hashing the
weights), so each clip is encoded once (float32, as the pipeline does; cached by
``multimodal.training.whisper.encoder_features``) and only the decoders differ. Each window is
decoded twice: as the pipeline decodes by default (beam 5, with timestamps, and its temperature
fallback: the text equals the pipeline's) and greedily without timestamps. A spot check runs the real
``multimodal.pipeline("automatic-speech-recognition")`` on a few clips per set.

Scoring (``multimodal.data.speech_digits``): lowercase, digits spelled as words, punctuation
dropped; a digit clip is right when the transcript is exactly its digit word. ``--ship`` writes the
fine-tuned checkpoint only if it is clearly better on digits (at least 5 points and more than
twice the paired standard error) and its sentence WER is at most 0.5 points higher, in the
pipeline's decoding; its weights are stored float16 if that is no worse there (checked on every clip).

Writes ``benchmarks/results/whisper_digits.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from multimodal.checkpoint import atomic_write_text, fresh_tmp_dir, publish_dir  # noqa: E402
from multimodal.convert.whisper import canonical_name, load_whisper  # noqa: E402
from multimodal.data.speech_digits import DIGIT_WORDS, FSDD_ROOT, speech_digits_manifests  # noqa: E402
from multimodal.lora import CONFIG_NAME, WEIGHTS_NAME, load_lora  # noqa: E402
from multimodal.evaluation.wer import digit_word, normalize_words, word_error_rate  # noqa: E402
from multimodal.paths import cache_dir  # noqa: E402
from multimodal.training.runs import build_model_card, markdown_table  # noqa: E402
from multimodal.tokenizers.whisper_text import WhisperTokenizer  # noqa: E402
from multimodal.training.whisper import (FEATURES_FORM, PIPELINE_DECODING, encoder_features, encoder_key,  # noqa: E402
                                         init_folder, read_manifest, transcribe_features)

RESULTS = ROOT / "benchmarks" / "results" / "whisper_digits.json"

# Ordinary sentences, no numbers; written for this benchmark, read by held-out voices only.
SENTENCES = [
    "The kitchen window was open all night.",
    "She found her keys under the sofa.",
    "We walked to the station in the rain.",
    "The old dog slept by the warm fire.",
    "Please close the door when you leave.",
    "He bought fresh bread at the market this morning.",
    "The children played in the garden after lunch.",
    "It is hard to read in this dim light.",
    "The train was late because of the snow.",
    "My sister writes letters to her friends every week.",
    "They painted the fence a bright shade of green.",
    "The river rose quickly after the storm.",
    "Could you pass me the salt, please?",
    "The museum opens early on weekends.",
    "A cold wind blew across the empty field.",
    "He forgot to water the plants again.",
    "The teacher asked the class to be quiet.",
    "We need more paper for the printer.",
    "The coffee in this cup is still hot.",
    "Birds were singing in the tall trees.",
    "She spoke softly so the baby would not wake.",
    "The shop on the corner sells fresh flowers.",
    "I left my umbrella on the bus.",
    "The meeting ended later than we expected.",
    "Turn left at the next traffic light.",
    "The soup needs a little more pepper.",
    "He plays the piano every evening.",
    "The library is closed for repairs this month.",
    "Our neighbours have a friendly black cat.",
    "The bridge was built a long time ago.",
    "She wore a warm coat and a wool hat.",
    "The doctor told him to get more sleep.",
    "We watched the sun go down over the hills.",
    "The car would not start this morning.",
    "Remember to lock the back door tonight.",
    "The farmer planted corn in the south field.",
    "His new shoes were too tight to wear.",
    "The letter arrived a day after the party.",
    "A small boat drifted slowly down the river.",
    "They laughed at the story he told.",
]
VOICES = (("flite", "slt"), ("pico", "en-US"))


def heldout_sentences(folder: Path) -> Path:
    """Each sentence read by every held-out voice, 16 kHz wavs + manifest (built once)."""
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for engine, voice in VOICES:
        for i, text in enumerate(SENTENCES):
            raw, dest = folder / f"raw_{engine}_{voice}_{i:02d}.wav", folder / f"{engine}_{voice}_{i:02d}.wav"
            if not dest.exists():
                if engine == "flite":
                    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
                else:
                    subprocess.run(["pico2wave", "-l", voice, "-w", str(raw), text], check=True)
                subprocess.run(["sox", str(raw), "-b", "16", str(dest), "rate", "16000", "channels", "1"], check=True)
                raw.unlink()
            rows.append({"audio": dest.name, "text": text, "source": f"{engine}/{voice}"})
    atomic_write_text(manifest, "".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def digit_accuracy(entries, hypotheses) -> dict:
    right = [digit_word(h) == normalize_words(e.text)[0] for e, h in zip(entries, hypotheses)]
    per_digit = {w: sum(r for r, e in zip(right, entries) if normalize_words(e.text)[0] == w) /
                 max(1, sum(normalize_words(e.text)[0] == w for e in entries)) for w in DIGIT_WORDS}
    return {"accuracy": sum(right) / len(right), "clips": len(right), "right": right, "per_digit": per_digit}


MODES = {"pipeline": PIPELINE_DECODING, "greedy": dict()}
DECODING = "the pipeline's: beam 5, timestamps, temperature fallback"  # the results' name of MODES["pipeline"]


def _weights_key(model) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def run_model(model, tokenizer, features: dict, entries: dict, modes=tuple(MODES)) -> dict:
    """Transcripts and scores of one model, per decoding mode; kept in the cache by weights and mode,
    so a rerun decodes only what is new."""
    weights, clips = _weights_key(model), [str(e.audio) for v in entries.values() for e in v]
    out = {}
    for mode in modes:
        key = hashlib.sha256(json.dumps([weights, mode, MODES[mode], FEATURES_FORM, clips]).encode()).hexdigest()[:16]
        saved = cache_dir() / "benchmarks" / f"whisper_digits-{key}.json"
        if not saved.is_file():
            atomic_write_text(saved, json.dumps(_run_model(model, tokenizer, features, entries, (mode,))[mode]))
        out[mode] = json.loads(saved.read_text())
    return out


def _run_model(model, tokenizer, features, entries, modes) -> dict:
    out = {}
    for mode in modes:
        kwargs = MODES[mode]
        start = time.perf_counter()
        digits = transcribe_features(model, tokenizer, features["digits"], **kwargs)
        sentences = transcribe_features(model, tokenizer, features["sentences"], **kwargs)
        acc = digit_accuracy(entries["digits"], digits)
        refs = [e.text for e in entries["sentences"]]
        per_voice = {}
        for engine, voice in VOICES:
            idx = [i for i, e in enumerate(entries["sentences"]) if e.audio.name.startswith(f"{engine}_{voice}_")]
            per_voice[f"{engine}/{voice}"] = word_error_rate([refs[i] for i in idx], [sentences[i] for i in idx])
        out[mode] = {"digit_accuracy": acc["accuracy"], "digit_right": acc["right"], "per_digit": acc["per_digit"],
                     "sentence_wer": word_error_rate(refs, sentences), "sentence_wer_per_voice": per_voice,
                     "digit_transcripts": digits, "sentence_transcripts": sentences,
                     "decode_seconds": time.perf_counter() - start}
    return out


def paired_gain(before: list[bool], after: list[bool]) -> tuple[float, float]:
    """Accuracy gain and its standard error (paired over the same clips)."""
    d = [int(a) - int(b) for a, b in zip(after, before)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(n - 1, 1)
    return mean, math.sqrt(var / n)


def pipeline_check(folder: Path, entries, n: int) -> dict:
    """Transcripts of the real pipeline (default settings) on the first ``n`` clips of each digit."""
    import multimodal

    pipe = multimodal.pipeline("automatic-speech-recognition", model=str(folder))
    pipe.set_progress_bar_config(disable=True)
    picked = [e for w in DIGIT_WORDS for e in [x for x in entries if normalize_words(x.text)[0] == w][:n]]
    texts = [pipe(str(e.audio))["text"] for e in picked]
    return {"clips": len(picked), "accuracy": digit_accuracy(picked, texts)["accuracy"], "transcripts": texts}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/whisper-digits/model", help="the fine-tuned checkpoint folder")
    parser.add_argument("--base", default="tiny.en", help="the model before fine-tuning")
    parser.add_argument("--ship", default=None, help="write the checkpoint here if it passes the bar")
    parser.add_argument("--pipeline-check", type=int, default=1, help="clips per digit run through the pipeline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES),
                        help="decodings to run (default both; pipeline decides --ship)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--card-note", default=None, help="a note for the shipped card (how it was chosen, ...)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    entries = {"digits": read_manifest(speech_digits_manifests()["test"]),
               "sentences": read_manifest(heldout_sentences(cache_dir() / "corpora" / "heldout-sentences"))}
    base_folder, tuned_folder = init_folder(args.base), Path(args.model)
    tokenizer = WhisperTokenizer.from_file(base_folder / "tokenizer.json")
    adapter = (tuned_folder / CONFIG_NAME).is_file()
    base = load_whisper(base_folder).eval()
    if adapter:  # the base with the adapter loaded
        tuned = load_whisper(base_folder)
        load_lora(tuned, tuned_folder, base=canonical_name(args.base))
        tuned.eval()
    else:
        tuned = load_whisper(tuned_folder).eval()
    start = time.perf_counter()
    features = {k: encoder_features(base, v)[0] for k, v in entries.items()}
    encode_seconds = time.perf_counter() - start
    shared = encoder_key(base) == encoder_key(tuned)
    tuned_features = features if shared else {k: encoder_features(tuned, v)[0] for k, v in entries.items()}

    modes = tuple(m for m in MODES if m in args.modes)
    if "pipeline" not in modes:
        parser.error("--modes: expected pipeline among them (it decides --ship)")
    results = {"before": run_model(base, tokenizer, features, entries, modes),
               "after": run_model(tuned, tokenizer, tuned_features, entries, modes)}
    training = json.loads((tuned_folder / "training.json").read_text()) if (tuned_folder / "training.json").is_file() else {}
    gain, se = paired_gain(results["before"]["pipeline"]["digit_right"], results["after"]["pipeline"]["digit_right"])
    wer_change = results["after"]["pipeline"]["sentence_wer"] - results["before"]["pipeline"]["sentence_wer"]
    passes = gain >= 0.05 and gain > 2 * se and wer_change <= 0.005

    # float16 storage: the same numbers? (an adapter stays float32: it is small either way)
    half_results, fp16_same, fp16_no_worse = {}, None, False
    if not adapter:
        half_dir = cache_dir() / "tmp-whisper-digits-fp16"
        shutil.rmtree(half_dir, ignore_errors=True)
        tuned.save_pretrained(half_dir, dtype=torch.float16)
        half = load_whisper(half_dir).eval()
        half_results = run_model(half, tokenizer, tuned_features, entries, modes=("pipeline",))
        fp16_same = all(half_results[m][k] == results["after"][m][k] for m in half_results
                        for k in ("digit_transcripts", "sentence_transcripts"))
        fp16_no_worse = all(half_results[m]["digit_accuracy"] >= results["after"][m]["digit_accuracy"] and
                            half_results[m]["sentence_wer"] <= results["after"][m]["sentence_wer"] + 1e-9
                            for m in half_results)
        shutil.rmtree(half_dir, ignore_errors=True)

    check = {}
    if args.pipeline_check:
        check = {"before": pipeline_check(base_folder, entries["digits"], args.pipeline_check),
                 "after": pipeline_check(tuned_folder, entries["digits"], args.pipeline_check)}

    summary = {
        "test_digits": {"source": "FSDD, held-out speaker (all 500 clips)", "clips": len(entries["digits"])},
        "sentences": {"clips": len(entries["sentences"]), "sentences": len(SENTENCES),
                      "voices": [f"{e}/{v}" for e, v in VOICES]},
        "shared_encoder": shared, "encode_seconds": encode_seconds, "threads": args.threads,
        "digit_gain": gain, "digit_gain_se": se, "sentence_wer_change": wer_change, "passes_bar": passes,
        "fp16_identical_transcripts": fp16_same, "fp16_no_worse": fp16_no_worse,
        "fp16": {m: {k: half_results[m][k] for k in ("digit_accuracy", "sentence_wer")} for m in half_results},
        "pipeline_check": {k: {"clips": v["clips"], "accuracy": v["accuracy"]} for k, v in check.items()},
        "training": {k: training.get(k) for k in ("command", "steps", "batch_size", "epochs", "wall_seconds",
                                                  "train_seconds", "device", "torch_threads", "train_clips", "val_clips", "best_step",
                                                  "val_before", "val_best", "resumed", "lora", "parameters", "extracted")},
        "model": str(tuned_folder), "adapter": adapter,
        "stored_bytes": sum(f.stat().st_size for f in tuned_folder.iterdir()
                            if f.suffix == ".safetensors"),
    }
    for when in ("before", "after"):
        for mode in modes:
            r = results[when][mode]
            summary[f"{when}_{mode}"] = {k: r[k] for k in ("digit_accuracy", "per_digit", "sentence_wer",
                                                            "sentence_wer_per_voice", "decode_seconds")}
    full = {**summary, "transcripts": {w: {m: {"digits": results[w][m]["digit_transcripts"],
                                                 "sentences": results[w][m]["sentence_transcripts"]}
                                             for m in results[w]} for w in results}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(full, indent=1) + "\n")

    print(f"{'':>10} {'decoding':>9} {'digit acc':>10} {'sentence WER':>13}")
    for when in ("before", "after"):
        for mode in modes:
            r = summary[f"{when}_{mode}"]
            print(f"{when:>10} {mode:>9} {100 * r['digit_accuracy']:9.1f}% {100 * r['sentence_wer']:12.2f}%")
    print(f"digit gain {100 * gain:.1f} points (se {100 * se:.1f}), sentence WER change {100 * wer_change:+.2f} "
          f"points: {'passes' if passes else 'does not pass'} the bar; float16 identical: {fp16_same}")
    if args.ship:
        if passes:
            ship(tuned, tuned_folder, Path(args.ship), summary, fp16=fp16_no_worse, adapter=adapter, note=args.card_note)
            print(f"shipped: {args.ship}")
        else:
            print("not shipped")
    return summary


def ship(model, source: Path, dest: Path, summary: dict, *, fp16: bool, adapter: bool = False,
         note: str | None = None) -> None:
    tmp = fresh_tmp_dir(dest)
    if adapter:
        for name in (CONFIG_NAME, WEIGHTS_NAME, "training.json"):
            shutil.copyfile(source / name, tmp / name)
    else:
        model.save_pretrained(tmp, dtype=torch.float16 if fp16 else None)
        shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
    atomic_write_text(tmp / "MODEL_CARD.md", model_card(summary, fp16, note))
    publish_dir(tmp, dest)


def model_card(s: dict, fp16: bool, note: str | None = None) -> str:
    """The shipped checkpoint's card, on the suite's one card builder (``runs.build_model_card``)."""
    t = s["training"]
    fsdd_readme = (FSDD_ROOT / "README.md").read_text() if (FSDD_ROOT / "README.md").is_file() else ""

    def row(name, key):
        b, a = s[f"before_{key}"], s[f"after_{key}"]
        return (name, f"{100 * b['digit_accuracy']:.1f} %", f"{100 * a['digit_accuracy']:.1f} %",
                f"{100 * b['sentence_wer']:.2f} %", f"{100 * a['sentence_wer']:.2f} %")

    val_b, val_a = t.get("val_before") or {}, t.get("val_best") or {}
    evaluation = "\n".join([
        f"Digits: all {s['test_digits']['clips']} FSDD clips of the held-out speaker (george), never seen in "
        f"training or model selection; right when the normalised transcript is exactly the digit's word "
        f"(\"5\", \"five\", \"Five.\" all count). Sentences: {s['sentences']['sentences']} ordinary English "
        f"sentences read by held-out voices ({', '.join(s['sentences']['voices'])}; "
        f"{s['sentences']['clips']} clips), word error rate after lowercasing and dropping punctuation. "
        "Produced by `python benchmarks/whisper_digits.py`.", "",
        *markdown_table(("decoding", "digits before", "digits after", "sentence WER before", "sentence WER after"),
                        [row("the pipeline's (beam 5, timestamps, temperature fallback)", "pipeline"),
                         *([row("greedy, no timestamps", "greedy")] if "before_greedy" in s else [])], "lrrrr"), "",
        f"Digit gain {100 * s['digit_gain']:.1f} points (paired standard error {100 * s['digit_gain_se']:.1f}); "
        f"sentence WER change {100 * s['sentence_wer_change']:+.2f} points."])
    data = (f"`multimodal.data.speech_digits`: {t.get('train_clips')} clips: FSDD recordings of 3 speakers "
            "(jackson, nicolas, yweweler), digits from the training TTS voices (espeak-ng accents and variants, "
            "flite kal16/awb/rms, festival kal/ked) with sox effects and noise, and WordNet example sentences read "
            "by the same voices (so the decoder keeps transcribing sentences); validation "
            f"{t.get('val_clips')} clips (other FSDD takes of the same 3 speakers + other sentences)")
    details = [f"Best validation WER at step {t.get('best_step')}; validation before: "
               f"{json.dumps({k: round(v, 4) for k, v in val_b.items() if k.startswith('val_')})}; best: "
               f"{json.dumps({k: round(v, 4) for k, v in val_a.items() if k.startswith('val_')})}.",
               (f"Adapter weights stored {(t.get('extracted') or {}).get('dtype', 'float32')}." if s.get("adapter") else
                f"Weights stored {'float16 (no worse than float32 on every test clip, in the pipeline decoding)' if fp16 else 'float32'}.")]
    lora, extracted = t.get("lora"), t.get("extracted")
    if lora:
        details.append(f"LoRA rank {lora['r']} (alpha {lora['alpha']:g}) on {lora['modules']} {lora['target']} Linear "
                       f"layers of the decoder: {lora['trainable_parameters']:,} {'' if extracted else 'trained '}"
                       f"parameters, {s['stored_bytes'] / 1e6:.2f} MB on disk; the base, tiny.en, is not stored here.")
    if extracted:
        details.append(f"Extracted from `{extracted['from']}` (`python -m benchmarks.lora_extract_digits`): each "
                       f"decoder Linear weight's change is replaced by its best rank-{lora['r']} approximation "
                       f"(truncated SVD), which keeps {100 * extracted['kept']:.1f} % of the change's energy; the "
                       f"changes to {len(extracted['not_carried'])} other tensors (token embedding, norms, biases) "
                       f"are not carried. The fine-tune was trained by `{extracted['fine_tune_command']}`.")
    licence = "\n".join([
        "Whisper tiny.en weights: MIT (OpenAI). The fine-tuning data include recordings of the Free Spoken Digit "
        "Dataset (Zohar Jackson and contributors, github.com/Jakobovski/free-spoken-digit-dataset), licensed "
        "CC BY-SA 4.0; these weights are derived from them and carry the same attribution and licence "
        "(creativecommons.org/licenses/by-sa/4.0/). Its README follows.", "",
        *["> " + line if line else ">" for line in fsdd_readme.splitlines()]])
    if lora:
        summary = ("A LoRA adapter for OpenAI's Whisper tiny.en (MIT), trained on isolated spoken digits (decoder "
                   "only, encoder and base weights frozen), so that a single spoken digit comes out as its word "
                   "(`Five.`) instead of a similar-sounding word. Everything else about the model (vocabulary, "
                   "30-s windows, timestamps) is tiny.en's.")
        usage = ("Load: `multimodal.pipeline(\"automatic-speech-recognition\", model=\"whisper-tiny.en-digits-lora\")` "
                 "(tiny.en plus this adapter), or `pipe.load_lora(this_folder)` on a tiny.en pipeline; command line: "
                 "`multimodal transcribe clip.wav --lora this_folder`.")
        if extracted:
            summary = ("A LoRA adapter for OpenAI's Whisper tiny.en (MIT): the decoder fine-tune on isolated spoken "
                       f"digits (`{extracted['from']}`) extracted as a rank-{lora['r']} adapter, so that a single spoken "
                       "digit comes out as its word (`Five.`) instead of a similar-sounding word. Everything else about "
                       "the model (vocabulary, 30-s windows, timestamps) is tiny.en's.")
        title = "Whisper tiny.en + LoRA adapter for spoken digits"
    else:
        summary = ("OpenAI's Whisper tiny.en (MIT) with its decoder fine-tuned (encoder frozen) on isolated spoken "
                   "digits, so that a single spoken digit comes out as its word (`Five.`) instead of a "
                   "similar-sounding word. Everything else about the model (vocabulary, 30-s windows, timestamps) "
                   "is unchanged.")
        usage = "Load: `multimodal.pipeline(\"automatic-speech-recognition\", model=\"whisper-tiny.en-digits\")`."
        title = "Whisper tiny.en, fine-tuned on spoken digits"
    return build_model_card(title, summary, t, data=data, usage=usage,
                            details=details, unit="clips", evaluation=evaluation,
                            notes=(f"{note}\n\n" if note else "") + "**Licence.** " + licence)

if __name__ == "__main__":
    main()
