"""How well a text-to-speech run's durations place the words, against the synthesiser's own timing.

``multimodal train text2speech`` learns how many code frames each phoneme symbol of a training clip
lasts from a speech aligner (``multimodal.models.speech_aligner``); the GPT is then told, frame by
frame, which symbol it is saying. Wrong durations teach it the wrong sound for a symbol. This
benchmark checks the durations a run wrote (``durations.safetensors``) against ground truth: flite
(the engine of the voices kal, awb and rms) prints the time at which each of its phones ends
(``flite -psdur``), so the end of every word of a clip is known to the millisecond.

For each judged clip (world phrases and sentences of the flite voices, from the run's training
manifest):

- the truth: flite's phone end times for the clip's text, its phones cut into words by the phone
  count of each word said alone (a clip whose counts do not add up is skipped), word ends moved by
  the silence that ``speech_tts`` trimmed off the front (the clip starts 0.05 s before its first
  phone); a pause between two words is split in half;
- the run's: the frames of the symbols before each word space of the clip's phoneme text (a clip
  whose phoneme text has another number of words than the text is skipped);
- the error of every word boundary inside a clip, in code frames (20 ms at 50 frames/s);
- for scale, the error when a clip's frames are shared evenly among its sounding symbols.

    python -m benchmarks.speech_alignment --runs /work/runs/tts_a /work/runs/tts_b [--clips 200]

Results: ``benchmarks/results/speech_alignment.json`` (mean absolute boundary error in frames, the
share of boundaries within 1 and 2 frames, per run and per voice).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import subprocess
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from multimodal.data.speech_tts import VOICES
from multimodal.models.speech_aligner import sounding
from multimodal.tokenizers import phonemes
from multimodal.training.text2speech import CODE_CACHE_NAME, DURATIONS_NAME, read_rows
from multimodal.training.runs import run_file

from .common import markdown_table, write_results

FRAME_RATE = 50  # code frames per second of the speech codec
LEAD = 0.05  # seconds of silence speech_tts pads the front of a trimmed clip with
# flite voices at their own speed (the timing read back is flite's unstretched one)
FLITE_VOICES = tuple(v for v, (engine, _, speed, _) in VOICES.items() if engine == "flite" and speed == 1.0)


def _flite(text: str, voice: str) -> list[tuple[str, float]]:
    """(phone, end time in s) of ``text`` read by flite's voice ``voice`` (pauses are ``pau``)."""
    out = subprocess.run(["flite", "-voice", voice, "-psdur", "-t", text, "none"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pairs = [item.rsplit(":", 1) for item in out.split()]
    return [(phone, float(end)) for phone, end in pairs]


@lru_cache(maxsize=None)
def _phone_count(word: str, voice: str) -> int:
    return sum(phone != "pau" for phone, _ in _flite(word, voice))


def true_word_ends(text: str, voice: str) -> list[float] | None:
    """Seconds from the clip's start to each boundary between two words of ``text`` as flite says it,
    or None when the phones cannot be cut into the words."""
    engine_voice = VOICES[voice][1]
    timed = _flite(text, engine_voice)
    words = text.split()
    counts = [_phone_count(w, engine_voice) for w in words]
    phones = [(i, p, end) for i, (p, end) in enumerate(timed) if p != "pau"]
    if sum(counts) != len(phones) or not phones or any(c == 0 for c in counts):
        return None
    first_start = timed[phones[0][0] - 1][1] if phones[0][0] > 0 else 0.0
    ends, k = [], 0
    for count in counts[:-1]:
        k += count
        i, _, end = phones[k - 1]
        # a pause after the word: its boundary is the pause's middle
        if i + 1 < len(timed) and timed[i + 1][0] == "pau":
            end = (end + timed[i + 1][1]) / 2
        ends.append(end - first_start + LEAD)
    return ends


def run_word_ends(text_ids: torch.Tensor, durations: torch.Tensor) -> list[float]:
    """Seconds from the clip's start to the boundary before each word space of a clip's symbols."""
    space = phonemes.encode(" ")[0]
    frames = durations.cumsum(0)
    return [float(frames[j - 1]) / FRAME_RATE for j in range(1, len(text_ids)) if int(text_ids[j]) == space
            and int(text_ids[j - 1]) != phonemes.PAD]


def judge_run(run: Path, clips: int, seed: int) -> dict:
    settings = json.loads(run_file(run, "text2speech").read_text())
    rows = read_rows(settings["manifest"])
    cache = load_file(run / CODE_CACHE_NAME)
    durations = load_file(run / DURATIONS_NAME)["train"]
    picks = [i for i, r in enumerate(rows[:len(durations)]) if r["voice"] in FLITE_VOICES
             and r.get("kind") in ("world", "sentence") and int(durations[i].sum()) > 0]
    picks = random.Random(seed).sample(picks, min(clips, len(picks)))
    errors: dict[str, list[float]] = {}
    even: list[float] = []
    skipped = 0
    for i in picks:
        row = rows[i]
        truth = true_word_ends(row["text"], row["voice"])
        ours = run_word_ends(cache["text_ids"][i], durations[i])
        if truth is None or len(truth) != len(ours):
            skipped += 1
            continue
        errors.setdefault(row["voice"], []).extend(abs(a - b) * FRAME_RATE for a, b in zip(ours, truth))
        spread = sounding(cache["text_ids"][i][None])[0].long()  # the clip's frames shared evenly
        spread = spread * int(durations[i].sum()) / max(int(spread.sum()), 1)
        even.extend(abs(a - b) * FRAME_RATE for a, b in zip(run_word_ends(cache["text_ids"][i], spread), truth))
    def summary(values):
        t = torch.tensor(values)
        return {"boundaries": len(values), "mean_abs_frames": float(t.mean()),
                "within_1": float((t <= 1).float().mean()), "within_2": float((t <= 2).float().mean())}
    every = [e for v in errors.values() for e in v]
    return {"run": str(run), "clips": len(picks), "skipped": skipped, "all": summary(every),
            "voices": {v: summary(e) for v, e in sorted(errors.items())}, "even_split": summary(even)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="text2speech run folders (with durations.safetensors)")
    p.add_argument("--clips", type=int, default=200, help="clips judged per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="speech_alignment", help="name of the results file")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    judged = [judge_run(Path(r), args.clips, args.seed) for r in args.runs]
    table = [[j["run"], voice, s["boundaries"], f"{s['mean_abs_frames']:.2f}", f"{100 * s['within_1']:.1f} %",
              f"{100 * s['within_2']:.1f} %"]
             for j in judged for voice, s in [*j["voices"].items(), ("all", j["all"]),
                                               ("all, frames shared evenly", j["even_split"])]]
    print(markdown_table(["run", "voice", "boundaries", "mean |error| (frames)", "within 1", "within 2"], table))
    write_results(args.results, {"command": "python -m benchmarks.speech_alignment " + " ".join(argv),
                                 "runs": judged})
    return {"runs": judged}


if __name__ == "__main__":
    main()
