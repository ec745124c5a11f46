"""Speech recognition, side by side: our Whisper against openai-whisper, faster-whisper and
transformers, all running the same Whisper tiny.en weights on the held-out evaluation set.

Systems (beam 5, each library's own ``transcribe`` defaults otherwise, 2 threads each, CPU):

- ``ours``: ``multimodal.generation.transcribe.transcribe``, float32; ``ours-int8``: the same
  with ``Whisper.quantize_int8`` (``pipeline(..., quantize="int8")``);
- ``openai-whisper``: ``whisper.transcribe`` on openai-whisper's model holding our weights, float32;
- ``faster-whisper-int8`` / ``faster-whisper-fp32``: ``WhisperModel`` on the CTranslate2 folder our
  default model is converted from (``compute_type`` int8 / float32, ``cpu_threads=2``);
- ``transformers``: its ``automatic-speech-recognition`` pipeline on ``WhisperForConditionalGeneration``
  holding our weights, ``num_beams=5``, timestamps on (its default has no temperature fallback).

Every utterance is transcribed by every system before the next one, the starting system rotating,
so drift on a shared machine hits all alike; each system's time is the sum over the utterances
(audio already decoded to 16 kHz arrays: feature extraction is timed, file reading is not).
Word error rate is corpus-level (edit distance over all reference words) after openai-whisper's
``EnglishTextNormalizer``; parity is the fraction of utterances whose normalised transcript equals
the reference system's. A second pass over a subset times where our time goes.

    python -m benchmarks.asr                  # builds the eval set if needed -> results/asr.json
    python -m benchmarks.asr --quick          # 8 utterances, a smoke run; writes only with --out
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from multimodal.backbone import KVCache
from multimodal.convert.whisper import _packaged_model, default_model_path, load_whisper
from multimodal.data import speech_eval
from multimodal.evaluation.wer import word_errors
from multimodal.generation import whisper_decoding
from multimodal.models.whisper import Whisper
from multimodal.generation import transcribe as longform
from multimodal.media.audio import SAMPLE_RATE, load_audio
from multimodal.tokenizers.whisper_text import WhisperTokenizer

from .common import RESULTS, markdown_table, write_results

SYSTEMS = ("ours", "ours-int8", "openai-whisper", "faster-whisper-int8", "faster-whisper-fp32", "transformers")
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# The environment that makes torch (ATen), oneDNN, FBGEMM (int8) and MKL (float GEMM) use their AVX2
# kernels on a CPU that has more: the numbers an AVX2-only x86-64 machine gets.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


# --------------------------------------------------------------------------------------- scoring
def normaliser() -> Callable[[str], str]:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


# corpus WER of texts already normalised by ``normaliser()`` -> (wer, word errors, reference words)
wer = partial(word_errors, normalize=str.split)


# --------------------------------------------------------------------------------------- systems
def build_systems(names: list[str], beam_size: int, threads: int) -> dict[str, Callable[[np.ndarray], str]]:
    """name -> function transcribing a 16 kHz float32 array to text."""
    folder = default_model_path()
    model = load_whisper(folder).eval()
    tokenizer = WhisperTokenizer.from_file(folder / "tokenizer.json")
    systems: dict[str, Callable[[np.ndarray], str]] = {}

    def ours(m: Whisper):
        return lambda audio: longform.transcribe(m, tokenizer, audio, sampling_rate=SAMPLE_RATE, beam_size=beam_size)["text"]

    if "ours" in names:
        systems["ours"] = ours(model)
    if "ours-int8" in names:
        systems["ours-int8"] = ours(model.quantize_int8())
    if "openai-whisper" in names:
        import whisper

        from .whisper_twins import openai_twin

        twin = openai_twin(model)
        systems["openai-whisper"] = lambda audio: whisper.transcribe(
            twin, audio, fp16=False, beam_size=beam_size, best_of=5, language="en")["text"]
    for compute in ("int8", "fp32"):
        if f"faster-whisper-{compute}" in names:
            from faster_whisper import WhisperModel

            fw = WhisperModel(str(_packaged_model()), device="cpu", cpu_threads=threads,
                              compute_type="int8" if compute == "int8" else "float32")
            systems[f"faster-whisper-{compute}"] = (lambda fw: lambda audio: "".join(
                s.text for s in fw.transcribe(audio, beam_size=beam_size, language="en")[0]))(fw)
    if "transformers" in names:
        from transformers import pipeline as hf_pipeline

        from .whisper_twins import huggingface_twin

        hf, processor = huggingface_twin(model, folder / "tokenizer.json")
        pipe = hf_pipeline("automatic-speech-recognition", model=hf, tokenizer=processor.tokenizer,
                           feature_extractor=processor.feature_extractor, device="cpu")
        systems["transformers"] = lambda audio: pipe(
            {"raw": audio, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
            generate_kwargs={"num_beams": beam_size})["text"]
    return {n: systems[n] for n in names}


def run_interleaved(systems: dict[str, Callable[[np.ndarray], str]], audios: list[np.ndarray],
                    log=print) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Every utterance through every system (rotating start) -> (texts, seconds) per system."""
    names = list(systems)
    texts: dict[str, list[str]] = {n: [""] * len(audios) for n in names}
    seconds: dict[str, list[float]] = {n: [0.0] * len(audios) for n in names}
    for i, audio in enumerate(audios):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            texts[name][i] = systems[name](audio)
            seconds[name][i] = time.perf_counter() - start
        if (i + 1) % 10 == 0 or i + 1 == len(audios):
            log(f"  {i + 1}/{len(audios)}: " + ", ".join(f"{n} {sum(seconds[n]):.1f}s" for n in names))
    return texts, seconds


# ------------------------------------------------------------------------------ our time, by part
@contextlib.contextmanager
def timed_parts(totals: dict[str, float]):
    """Adds the seconds spent in each part of our transcription to ``totals`` while active."""
    wd = whisper_decoding
    patches: list[tuple[object, str, Callable]] = []

    def wrap(owner, attr: str, part: str, when: Callable[..., bool] | None = None):
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = part if when is None else (part if when(*args, **kwargs) else part + " (prompt)")
                totals[key] += time.perf_counter() - start
        patches.append((owner, attr, original))
        setattr(owner, attr, timed)

    wrap(longform.WindowedLogMel, "__init__", "features: log-mel (measuring pass)")
    wrap(longform.WindowedLogMel, "window", "features: log-mel (windows)")
    wrap(Whisper, "embed_audio", "encoder")
    wrap(Whisper, "logits", "decoder: forward (initial tokens and every step)")
    for rule in (wd.SuppressBlank, wd.SuppressTokens, wd.ApplyTimestampRules):
        wrap(rule, "apply", "decoding: logit rules (timestamps, suppression)")
    wrap(wd.BeamSearch, "step", "decoding: beam search step (top-k, bookkeeping)")
    wrap(wd.Sampler, "step", "decoding: sampling step (fallback)")
    wrap(KVCache, "reorder", "decoding: KV cache reorder")
    wrap(longform, "decode", "decode() total")
    try:
        yield totals
    finally:
        for owner, attr, original in reversed(patches):
            setattr(owner, attr, original)


def breakdown(system: Callable[[np.ndarray], str], audios: list[np.ndarray]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    with timed_parts(totals):
        for audio in audios:
            system(audio)
    totals["total"] = time.perf_counter() - start
    return dict(totals)


# ------------------------------------------------------------------------------------------ main
def machine_busy() -> list[str]:
    """Other training jobs running now (their command lines)."""
    try:
        out = subprocess.run(["pgrep", "-af", "multimodal train"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.strip() and str(os.getpid()) not in line]


def eval_entries(manifest: str | None, limit: int | None) -> tuple[Path, list[dict]]:
    """The speech evaluation set's manifest (built first if missing) and its entries, or ``limit`` of
    them spread over the sources (not the first voice only)."""
    path = Path(manifest) if manifest else speech_eval.default_dir() / "manifest.jsonl"
    if not path.is_file():
        print(f"building the evaluation set in {path.parent} …")
        path, notes = speech_eval.build(path.parent)
        for note in notes:
            print(f"note: {note}")
    entries = speech_eval.read_manifest(path)
    if limit and limit < len(entries):
        entries = [entries[round(i * len(entries) / limit)] for i in range(limit)]
    return path, entries


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default=None, help="eval manifest (default: build/reuse <cache>/speech-eval)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--limit", type=int, default=None, help="first N utterances only")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and ctranslate2 cpu_threads")
    p.add_argument("--breakdown", type=int, default=30, help="utterances in the where-our-time-goes pass (0: none)")
    p.add_argument("--quick", action="store_true", help="8 utterances, breakdown on 4; writes only with --out")
    p.add_argument("--out", default=None, help="results JSON (default results/asr.json; none with --quick)")
    p.add_argument("--isa", choices=("best", "avx2"), default="best",
                   help="avx2: rerun with torch's, oneDNN's, FBGEMM's and MKL's kernels pinned to AVX2, as on "
                        "an AVX2-only x86-64 CPU (default: this CPU's best)")
    args = p.parse_args(argv)
    if args.isa == "avx2" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx2":
        # the kernels are chosen when torch loads: a fresh interpreter, with the switches set
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.asr", *(sys.argv[1:] if argv is None else argv)],
                  {**os.environ, **AVX2_ONLY})
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        p.error(f"--systems: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    torch.set_num_threads(args.threads)
    busy_before = machine_busy()

    manifest, entries = eval_entries(args.manifest, 8 if args.quick and args.limit is None else args.limit)
    audios = [load_audio(e["audio"]) for e in entries]
    audio_seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    print(f"{manifest}: {speech_eval.summary(entries)}")

    systems = build_systems(names, args.beam_size, args.threads)
    for system in systems.values():  # first-call costs (allocators, kernel choice) untimed
        system(audios[0])
    texts, seconds = run_interleaved(systems, audios)

    norm = normaliser()
    refs = [norm(e["text"]) for e in entries]
    normed = {n: [norm(t) for t in ts] for n, ts in texts.items()}
    total = {n: sum(s) for n, s in seconds.items()}
    summary: dict[str, dict] = {}
    for n in names:
        w, errors, words = wer(refs, normed[n])
        row = {"wer": w, "word_errors": errors, "reference_words": words, "seconds": total[n],
               "real_time_factor": total[n] / audio_seconds}
        for ref in ("faster-whisper-int8", "openai-whisper", "faster-whisper-fp32"):
            if ref in total:
                row[f"time_vs_{ref}"] = total[n] / total[ref]
        for ref in ("ours", "openai-whisper", "faster-whisper-fp32", "faster-whisper-int8"):
            if ref in normed and ref != n:
                row[f"parity_vs_{ref}"] = float(np.mean([a == b for a, b in zip(normed[n], normed[ref])]))
        if "faster-whisper-fp32" in normed:
            row["wer_minus_faster_whisper_fp32_points"] = 100 * (w - wer(refs, normed["faster-whisper-fp32"])[0])
        if n != "openai-whisper" and "openai-whisper" in texts:
            row["exact_text_equal_openai"] = float(np.mean([a == b for a, b in zip(texts[n], texts["openai-whisper"])]))
        summary[n] = row

    parts = {}
    if args.breakdown and "ours" in systems:
        k = min(4 if args.quick else args.breakdown, len(audios))
        subset = [audios[round(i * len(audios) / k)] for i in range(k)]
        parts = breakdown(systems["ours"], subset)
        parts["utterances"] = k
        parts["audio_seconds"] = sum(len(a) for a in subset) / SAMPLE_RATE
    busy = sorted(set(busy_before) | set(machine_busy()))

    # ------------------------------------------------------------------------------- report
    print(f"\n{len(entries)} utterances, {audio_seconds:.0f} s of audio; beam {args.beam_size}, {args.threads} threads, "
          f"CPU; load average {os.getloadavg()[0]:.1f}" + (f"; machine BUSY with {len(busy)} training job(s)" if busy else ""))
    headers = ["system", "WER %", "time s", "x real time", "time / fw-int8", "time / openai",
               "= ours %", "= openai %", "= fw-fp32 %", "WER - fw-fp32 (points)"]
    rows = []
    for n, r in summary.items():
        rows.append([n, 100 * r["wer"], r["seconds"], audio_seconds / r["seconds"],
                     r.get("time_vs_faster-whisper-int8", "-"), r.get("time_vs_openai-whisper", "-"),
                     100 * r["parity_vs_ours"] if "parity_vs_ours" in r else "-",
                     100 * r["parity_vs_openai-whisper"] if "parity_vs_openai-whisper" in r else "-",
                     100 * r["parity_vs_faster-whisper-fp32"] if "parity_vs_faster-whisper-fp32" in r else "-",
                     r.get("wer_minus_faster_whisper_fp32_points", "-")])
    table = markdown_table(headers, rows)
    print(table)
    part_table = ""
    if parts:
        t = parts["total"]
        order = sorted((k for k in parts if k not in ("total", "utterances", "audio_seconds", "decode() total")),
                       key=lambda k: -parts[k])
        inner = sum(parts[k] for k in order)
        part_rows = [[k, parts[k], 100 * parts[k] / t] for k in order]
        part_rows.append(["other (segments, text, Python glue)", t - inner, 100 * (t - inner) / t])
        part_rows.append(["total", t, 100.0])
        part_table = markdown_table(["ours: where the time goes", "s", "%"], part_rows)
        print(f"\nours, float32, {parts['utterances']} utterances ({parts['audio_seconds']:.0f} s of audio):")
        print(part_table)

    versions = {}
    for module in ("torch", "whisper", "faster_whisper", "ctranslate2", "transformers"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            pass
    result = {"config": {"beam_size": args.beam_size, "threads": args.threads, "temperatures": TEMPERATURES,
                         "isa": args.isa, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                         "manifest": str(manifest), "utterances": len(entries), "audio_seconds": audio_seconds,
                         "systems": names, "quick": args.quick},
              "versions": versions, "busy_with": busy, "summary": summary, "table": table,
              "breakdown_ours": parts, "breakdown_table": part_table,
              "utterances": [{"audio": os.path.basename(e["audio"]), "source": e["source"], "reference": e["text"],
                              "texts": {n: texts[n][i] for n in names},
                              "seconds": {n: seconds[n][i] for n in names}} for i, e in enumerate(entries)],
              "notes": "transformers: its pipeline's default decoding (no temperature fallback), num_beams=5, "
                       "timestamps on; the others: their transcribe() defaults (temperature fallback 0..1, "
                       "compression ratio 2.4, log-prob -1, no-speech 0.6, conditioning on previous text)."}
    if args.out or not args.quick:
        print(f"\nwrote {write_results('asr', result, args.out or RESULTS / 'asr.json')}")
    return result


if __name__ == "__main__":
    main()
