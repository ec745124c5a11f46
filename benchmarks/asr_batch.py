"""Batched speech recognition: throughput on many files and on one long recording, and how often
batching changes the text.

Part 1, files: every utterance of the held-out evaluation set as its own file (audio already
decoded to 16 kHz arrays), through

- ``ours`` / ``ours-int8``: ``transcribe`` one file at a time (float32; ``Whisper.quantize_int8``);
- ``ours-batch`` / ``ours-int8-batch``: ``transcribe_batch(..., batch_size=B)``, B files side by side;
- ``faster-whisper-int8``: ``WhisperModel.transcribe`` one file at a time (its batched pipeline
  batches the pieces of one recording, not files: it is in part 2).

Part 2, one long recording: the same utterances joined with pauses of 1.5 s of faint noise, through

- ``ours-batch`` / ``ours-int8-batch``: ``transcribe(..., vad_filter=True, batch_size=B)``, the speech
  regions in pieces of up to 30 s of speech, B pieces side by side; ``ours-one-by-one``: the same
  pieces one at a time (``batch_size=1``), to check that batching keeps the text;
- ``faster-whisper-int8-batched``: ``BatchedInferencePipeline.transcribe(..., batch_size=B)``.
  Its defaults decode without timestamps, and so do ours here (``without_timestamps=True``).

All with beam 5 and each library's temperature fallback, 2 threads. Word error rate is corpus-level
after openai-whisper's ``EnglishTextNormalizer``; "= one by one" is the share of files (part 1) whose
text is exactly the one-by-one text, and in part 2 whether the whole transcript is.

    python -m benchmarks.asr_batch                 # -> results/asr_batch.json
    python -m benchmarks.asr_batch --limit 16      # a smoke run; writes only with --out
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from multimodal.convert.whisper import _packaged_model, default_model_path, load_whisper
from multimodal.data import speech_eval
from multimodal.generation import transcribe as longform
from multimodal.media.audio import SAMPLE_RATE, load_audio
from multimodal.tokenizers.whisper_text import WhisperTokenizer

from .asr import normaliser, wer
from .common import RESULTS, markdown_table, write_results

PAUSE_SECONDS = 1.5


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def joined(audios: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """The utterances one after another, each followed by a pause of faint noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for audio in audios:
        parts += [audio, rng.normal(0, 1e-3, int(PAUSE_SECONDS * SAMPLE_RATE)).astype(np.float32)]
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", default=None, help="eval manifest (default: build/reuse <cache>/speech-eval)")
    p.add_argument("--limit", type=int, default=None, help="a spread of N utterances only")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="results JSON (default results/asr_batch.json; none with --limit)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    manifest = Path(args.manifest) if args.manifest else speech_eval.default_dir() / "manifest.jsonl"
    if not manifest.is_file():
        manifest, _ = speech_eval.build(manifest.parent)
    entries = speech_eval.read_manifest(manifest)
    if args.limit and args.limit < len(entries):
        entries = [entries[round(i * len(entries) / args.limit)] for i in range(args.limit)]
    audios = [load_audio(e["audio"]) for e in entries]
    audio_seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    print(f"{manifest}: {speech_eval.summary(entries)}")

    folder = default_model_path()
    model = load_whisper(folder).eval()
    int8 = model.quantize_int8()
    tokenizer = WhisperTokenizer.from_file(folder / "tokenizer.json")
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    fw = WhisperModel(str(_packaged_model()), device="cpu", cpu_threads=args.threads, compute_type="int8")
    fw_batched = BatchedInferencePipeline(fw)
    B, beam = args.batch_size, args.beam_size
    norm = normaliser()
    refs = [norm(e["text"]) for e in entries]

    # --------------------------------------------------------------------------- part 1: files
    def one_by_one(m):
        return lambda: [longform.transcribe(m, tokenizer, a, sampling_rate=SAMPLE_RATE, beam_size=beam)["text"]
                        for a in audios]

    def batched(m):
        return lambda: [r["text"] for r in longform.transcribe_batch(m, tokenizer, audios, batch_size=B,
                                                                     sampling_rate=SAMPLE_RATE, beam_size=beam)]

    files = {"ours": one_by_one(model), "ours-batch": batched(model), "ours-int8": one_by_one(int8),
             "ours-int8-batch": batched(int8),
             "faster-whisper-int8": lambda: ["".join(s.text for s in fw.transcribe(a, beam_size=beam, language="en")[0])
                                             for a in audios]}
    for m in (model, int8):  # first-call costs (allocators, kernel choice) untimed
        longform.transcribe_batch(m, tokenizer, audios[:2], batch_size=2, sampling_rate=SAMPLE_RATE, beam_size=beam)
    list(fw.transcribe(audios[0], beam_size=beam, language="en")[0])
    texts, seconds = {}, {}
    for name, fn in files.items():
        texts[name], seconds[name] = timed(fn)
        print(f"  files, {name}: {seconds[name]:.1f} s")
    part1 = {}
    for name in files:
        w, errors, words = wer(refs, [norm(t) for t in texts[name]])
        row = {"wer": w, "word_errors": errors, "seconds": seconds[name],
               "time_vs_faster-whisper-int8": seconds[name] / seconds["faster-whisper-int8"]}
        base = name.replace("-batch", "")
        if name.endswith("-batch"):
            row["equal_to_one_by_one"] = float(np.mean([a == b for a, b in zip(texts[name], texts[base])]))
            row["speed_up_over_one_by_one"] = seconds[base] / seconds[name]
        part1[name] = row

    # ------------------------------------------------------------------ part 2: one recording
    recording = joined(audios)
    recording_seconds = len(recording) / SAMPLE_RATE
    reference = norm(" ".join(e["text"] for e in entries))

    def ours_long(m, batch_size):
        return lambda: longform.transcribe(m, tokenizer, recording, sampling_rate=SAMPLE_RATE, beam_size=beam,
                                           vad_filter=True, batch_size=batch_size, without_timestamps=True)["text"]

    long_systems = {"ours-batch": ours_long(model, B), "ours-one-by-one": ours_long(model, 1),
                    "ours-int8-batch": ours_long(int8, B),
                    "faster-whisper-int8-batched": lambda: "".join(
                        s.text for s in fw_batched.transcribe(recording, batch_size=B, beam_size=beam,
                                                              language="en")[0])}
    long_texts, long_seconds = {}, {}
    for name, fn in long_systems.items():
        long_texts[name], long_seconds[name] = timed(fn)
        print(f"  recording, {name}: {long_seconds[name]:.1f} s")
    part2 = {}
    for name in long_systems:
        w, errors, words = wer([reference], [norm(long_texts[name])])
        part2[name] = {"wer": w, "word_errors": errors, "seconds": long_seconds[name],
                       "time_vs_faster-whisper-int8-batched": long_seconds[name] / long_seconds["faster-whisper-int8-batched"]}
    part2["ours-batch"]["equal_to_one_by_one"] = float(long_texts["ours-batch"] == long_texts["ours-one-by-one"])
    part2["ours-batch"]["speed_up_over_one_by_one"] = long_seconds["ours-one-by-one"] / long_seconds["ours-batch"]

    # ---------------------------------------------------------------------------------- report
    rows = [[n, 100 * r["wer"], r["seconds"], audio_seconds / r["seconds"], r["time_vs_faster-whisper-int8"],
             100 * r["equal_to_one_by_one"] if "equal_to_one_by_one" in r else "-",
             r.get("speed_up_over_one_by_one", "-")] for n, r in part1.items()]
    table1 = markdown_table(["files", "WER %", "time s", "x real time", "time / fw-int8", "= one by one %",
                             "speed-up"], rows)
    rows = [[n, 100 * r["wer"], r["seconds"], recording_seconds / r["seconds"],
             r["time_vs_faster-whisper-int8-batched"],
             100 * r["equal_to_one_by_one"] if "equal_to_one_by_one" in r else "-",
             r.get("speed_up_over_one_by_one", "-")] for n, r in part2.items()]
    table2 = markdown_table(["one recording", "WER %", "time s", "x real time", "time / fw-int8 batched",
                             "= one by one %", "speed-up"], rows)
    print(f"\n{len(entries)} files, {audio_seconds:.0f} s of audio; batch {B}, beam {beam}, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(table1)
    print(f"\none recording of {recording_seconds:.0f} s (the files with {PAUSE_SECONDS} s pauses), VAD on:")
    print(table2)
    result = {"config": {"batch_size": B, "beam_size": beam, "threads": args.threads, "manifest": str(manifest),
                         "utterances": len(entries), "audio_seconds": audio_seconds,
                         "recording_seconds": recording_seconds,
                         "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "files": part1, "recording": part2, "table_files": table1, "table_recording": table2,
              "differences": [{"audio": os.path.basename(e["audio"]), "one_by_one": texts[base][i],
                               "batched": texts[base + "-batch"][i]}
                              for base in ("ours", "ours-int8") for i, e in enumerate(entries)
                              if texts[base][i] != texts[base + "-batch"][i]]}
    if args.out or not args.limit:
        print(f"\nwrote {write_results('asr_batch', result, args.out or RESULTS / 'asr_batch.json')}")
    return result


if __name__ == "__main__":
    main()
