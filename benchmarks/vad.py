"""Voice activity detection in transcription: words out of non-speech, and speech with long pauses,
with and without ``vad_filter`` (Whisper tiny.en, beam 5, one run, the same machine).

1. **No speech**: digital silence, white and pink noise at three levels, and music-like sound made
   with sox (plucked chords, a sine sweep, a tremolo organ tone), 20 s each. Goal: zero words.
2. **Speech with long pauses**: the held-out ASR evaluation set (``multimodal.data.speech_eval``;
   held-out voices and real recordings) joined into recordings of 8 utterances, each followed by
   4 to 12 s of quiet noise (-50 dBFS, so that the decoder's own digital-silence skip does not
   apply). Word error rate (openai-whisper's English normaliser) and wall time, with and without.

    python -m benchmarks.vad            # -> benchmarks/results/vad.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.asr import normaliser, wer
from benchmarks.common import machine_info, markdown_table, write_results
from multimodal.data import speech_eval
from multimodal.media.audio import SAMPLE_RATE, load_audio

SECONDS = 20
SOX_SOUNDS = {
    "music: plucked chords": "synth 20 pluck C4 pluck E4 pluck G4 tremolo 3 40",
    "music: sine sweep": "synth 20 sine 200-2000",
    "music: organ tone": "synth 20 sine 220 sine 330 sine 440 tremolo 6 60",
}


def non_speech(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = SECONDS * SAMPLE_RATE
    sounds = {"silence": np.zeros(n, np.float32)}
    white = rng.normal(0, 1, n).astype(np.float32)
    pink = np.fft.irfft(np.fft.rfft(rng.normal(0, 1, n)) / np.sqrt(np.arange(n // 2 + 1) + 1.0), n).astype(np.float32)
    pink /= pink.std()
    for db in (-40, -25, -10):
        level = 10 ** (db / 20)
        sounds[f"white noise {db} dBFS"] = white * level
        sounds[f"pink noise {db} dBFS"] = pink * level
    for name, effect in SOX_SOUNDS.items():
        path = folder / f"{len(sounds)}.wav"
        subprocess.run(["sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", str(path), *effect.split(), "vol", "0.5"],
                       check=True, capture_output=True)
        sounds[name] = load_audio(path)
    return sounds


def paused_recordings(per_recording: int = 8) -> list[tuple[np.ndarray, str]]:
    manifest = speech_eval.default_dir() / "manifest.jsonl"
    if not manifest.is_file():
        manifest, _ = speech_eval.build(manifest.parent)
    entries = speech_eval.read_manifest(manifest)
    rng = np.random.default_rng(0)
    recordings = []
    for start in range(0, len(entries), per_recording):
        parts, texts = [], []
        for entry in entries[start:start + per_recording]:
            parts.append(load_audio(entry["audio"]))
            texts.append(entry["text"])
            pause = int(rng.uniform(4, 12) * SAMPLE_RATE)
            parts.append((rng.normal(0, 1, pause) * 10 ** (-50 / 20)).astype(np.float32))
        recordings.append((np.concatenate(parts), " ".join(texts)))
    return recordings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="vad")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import multimodal

    pipe = multimodal.pipeline("automatic-speech-recognition", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    norm = normaliser()
    with tempfile.TemporaryDirectory() as tmp:
        sounds = non_speech(Path(tmp))
    pipe(np.zeros(SAMPLE_RATE, np.float32), sampling_rate=SAMPLE_RATE, vad_filter=True)  # load both models
    quiet = []
    for name, audio in sounds.items():
        words = {vad: len(norm(pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=vad)["text"]).split())
                 for vad in (False, True)}
        quiet.append({"sound": name, "words_without_vad": words[False], "words_with_vad": words[True]})
        print(quiet[-1], flush=True)

    recordings = paused_recordings()
    runs = {}
    for vad in (False, True):
        hypotheses, seconds = [], 0.0
        for audio, _ in recordings:
            start = time.perf_counter()
            hypotheses.append(norm(pipe(audio, sampling_rate=SAMPLE_RATE, vad_filter=vad)["text"]))
            seconds += time.perf_counter() - start
        rate, errors, words = wer([norm(text) for _, text in recordings], hypotheses)
        runs["with_vad" if vad else "without_vad"] = {"wer": rate, "word_errors": errors, "words": words,
                                                     "seconds": seconds}
        print(("with" if vad else "without") + f" VAD: WER {100 * rate:.2f} %, {seconds:.1f} s", flush=True)
    audio_seconds = sum(len(a) for a, _ in recordings) / SAMPLE_RATE
    data = {"command": "python -m benchmarks.vad " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_info(), "threads": args.threads, "non_speech": quiet,
            "paused_speech": {"recordings": len(recordings), "audio_seconds": audio_seconds, **runs,
                              "time_ratio": runs["with_vad"]["seconds"] / runs["without_vad"]["seconds"]}}
    path = write_results(args.results, data)
    print(markdown_table(["sound", "words without VAD", "words with VAD"],
                         [[q["sound"], q["words_without_vad"], q["words_with_vad"]] for q in quiet]))
    print(markdown_table(["paused speech", "WER", "seconds"],
                         [[k, f"{100 * v['wer']:.2f} %", f"{v['seconds']:.1f}"] for k, v in runs.items()]))
    print(f"{len(recordings)} recordings, {audio_seconds / 60:.1f} min; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
