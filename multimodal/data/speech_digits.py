"""Spoken digits for fine-tuning Whisper.

The corpus (``build_speech_digits``, or ``python -m multimodal.data.speech_digits``; ``multimodal
train whisper --manifest speech-digits`` builds it on first use) is written as JSONL manifests of
``{"audio": path, "text": ...}`` into ``<cache>/corpora/speech-digits/``:

- **FSDD** (Free Spoken Digit Dataset subset, ``../shared/data/fsdd``: 4 speakers x 10 digits x 50
  takes, 8 kHz; CC BY-SA 4.0, its README is copied next to the manifests). Split by speaker: the
  test speaker (default ``george``, the first in alphabetical order, fixed before any result was
  seen) is held out entirely, all 500 of its clips in ``test.jsonl``. Of the other three, takes
  0-4 of every digit are the validation split, the rest (up to ``fsdd_train_takes`` per digit)
  training data. FSDD entries point at the original files.
- **Training TTS voices** (DATA.md): espeak-ng (7 English accents x variants, speeds, pitches),
  flite ``kal16`` / ``awb`` / ``rms`` and festival ``kal_diphone`` / ``ked_diphone``, each clip
  trimmed of silence and passed through random sox effects (speed, pitch, reverb, 8 kHz telephone
  band like FSDD's recordings, gain) and mixed with noise at a random SNR. The held-out voices
  (slt in any engine, pico, Piper) are never used here: they are for evaluation only.
- **Rehearsal sentences**: WordNet usage examples (Debian ``wordnet-base``) read by the same
  training voices, so that fine-tuning on single words does not teach the decoder to forget
  ordinary sentences. A separate set of examples goes into the validation split.

Texts are written as Whisper writes an isolated word: ``"Five."``. Transcripts are scored by
``multimodal.evaluation.wer``: a digit clip is correct when ``digit_word`` of its transcript is its
digit, and sentences are scored by word error rate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import InputError
from ..paths import cache_dir

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"
CORPUS_NAME = "speech-digits"
TEST_SPEAKER = "george"
SAMPLE_RATE = 16000

# Training voices only (DATA.md); slt, pico and Piper are held out for evaluation.
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "david", "edward", "linda", "steph", "robert", "paul", "max", "quincy", "annie")
FLITE_VOICES = ("kal16", "awb", "rms")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone")


# --------------------------------------------------------------------------------------- FSDD
def fsdd_clips(root: str | os.PathLike = FSDD_ROOT) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, take) of every ``{digit}_{speaker}_{take}.wav`` under root/recordings."""
    folder = Path(root) / "recordings"
    if not folder.is_dir():
        raise InputError(f"fsdd: expected the FSDD recordings folder {folder}, found none")
    clips = []
    for path in sorted(folder.glob("*.wav")):
        m = re.fullmatch(r"(\d)_([a-z]+)_(\d+)\.wav", path.name)
        if m:
            clips.append((path, int(m.group(1)), m.group(2), int(m.group(3))))
    if not clips:
        raise InputError(f"fsdd: expected {{digit}}_{{speaker}}_{{take}}.wav files in {folder}, found none")
    return clips


def spoken(digit: int) -> str:
    """A digit's text as Whisper writes an isolated word."""
    return DIGIT_WORDS[digit].capitalize() + "."


def fsdd_split(root=FSDD_ROOT, test_speaker: str = TEST_SPEAKER, val_takes: int = 5,
               train_takes: int | None = None) -> dict[str, list[dict]]:
    """Manifest rows of FSDD by split: ``test`` every clip of ``test_speaker``; of the others,
    takes < ``val_takes`` are ``val`` and the next ``train_takes`` (all when None) ``train``."""
    clips = fsdd_clips(root)
    speakers = sorted({s for _, _, s, _ in clips})
    if test_speaker not in speakers:
        raise InputError(f"test_speaker: expected one of {', '.join(speakers)}, found {test_speaker!r}")
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for path, digit, speaker, take in clips:
        row = {"audio": str(path), "text": spoken(digit), "source": f"fsdd/{speaker}"}
        if speaker == test_speaker:
            out["test"].append(row)
        elif take < val_takes:
            out["val"].append(row)
        elif train_takes is None or take < val_takes + train_takes:
            out["train"].append(row)
    return out


# ---------------------------------------------------------------------------------------- TTS
def wordnet_sentences(limit: int | None = None, seed: int = 0) -> list[str]:
    """Usage examples from WordNet (Debian wordnet-base): 5-14 plain words, as sentences."""
    files = sorted(Path("/usr/share/wordnet").glob("data.*"))
    if not files:
        raise InputError("wordnet: expected /usr/share/wordnet/data.* (apt-get install wordnet-base), found none")
    seen, out = set(), []
    for path in files:
        for quote in re.findall(r'"([^"]+)"', path.read_text(errors="replace")):
            words = quote.split()
            if 5 <= len(words) <= 14 and re.fullmatch(r"[A-Za-z ,']+", quote) and quote.lower() not in seen:
                seen.add(quote.lower())
                out.append(quote[0].upper() + quote[1:].rstrip(" ,") + ".")
    random.Random(seed).shuffle(out)
    return out[:limit]


def _run(cmd: Sequence[str], stdin: str | None = None) -> None:
    result = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise InputError(f"{cmd[0]}: expected exit status 0, found {result.returncode}: {result.stderr.strip()[:300]}")


def synthesize(text: str, engine: str, voice: str, path: Path, *, speed: float = 1.0, pitch: int = 50) -> Path:
    """``text`` spoken by one training voice into the wav ``path`` (engine's own rate). ``speed``
    scales espeak-ng's words per minute and flite's segment durations (festival: not used)."""
    if "slt" in voice or engine not in ("espeak-ng", "flite", "festival"):
        raise InputError(f"voice: expected a training voice (espeak-ng, flite kal16/awb/rms, festival "
                         f"kal/ked), found {engine} {voice}")
    if engine == "espeak-ng":
        _run(["espeak-ng", "-v", voice, "-s", str(round(170 * speed)), "-p", str(pitch), "-w", str(path), text])
    elif engine == "flite":  # speed below 1 stretches every segment's duration by 1 / speed
        stretch = [] if speed == 1.0 else ["--setf", f"duration_stretch={1 / speed:.4f}"]
        _run(["flite", "-voice", voice, *stretch, "-t", text, "-o", str(path)])
    else:
        _run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(path)], stdin=text)
    if not path.is_file():  # festival reports a missing voice on stderr but exits 0
        raise InputError(f"voice: {engine} wrote no audio for {voice} (is its Debian voice package installed? "
                         "festvox-kallpc16k, festvox-kdlpc16k)")
    return path


def augment(source: Path, dest: Path, rng: random.Random) -> None:
    """Trim silence, random sox effects, resample to 16 kHz mono, then noise at a random SNR."""
    effects = ["silence", "1", "0.02", "-45d", "reverse", "silence", "1", "0.02", "-45d", "reverse"]
    if rng.random() < 0.5:
        effects += ["speed", f"{rng.uniform(0.88, 1.12):.3f}"]
    if rng.random() < 0.4:
        effects += ["pitch", str(rng.randint(-250, 250))]
    if rng.random() < 0.3:
        effects += ["reverb", str(rng.randint(10, 50)), "50", str(rng.randint(20, 80))]
    if rng.random() < 0.5:  # FSDD's recordings are 8 kHz: telephone band
        effects += ["rate", "8000"]
    effects += ["rate", str(SAMPLE_RATE), "channels", "1", "pad", f"{rng.uniform(0, 0.15):.3f}",
                f"{rng.uniform(0, 0.15):.3f}", "gain", "-n", str(-rng.randint(1, 12))]
    _run(["sox", str(source), "-b", "16", str(dest), *effects])
    if rng.random() < 0.6:
        import soundfile as sf

        audio, rate = sf.read(dest, dtype="float32")
        power = float(np.mean(audio ** 2)) + 1e-12
        snr_db = rng.uniform(10, 35)
        noise = np.random.default_rng(rng.randrange(2 ** 32)).standard_normal(len(audio)).astype(np.float32)
        audio = np.clip(audio + noise * np.sqrt(power / 10 ** (snr_db / 10)), -1, 1)
        sf.write(dest, audio, rate, subtype="PCM_16")


def _random_voice(rng: random.Random) -> tuple[str, str, float, int]:
    r = rng.random()
    if r < 0.6:
        variant = rng.choice(ESPEAK_VARIANTS)
        voice = rng.choice(ESPEAK_VOICES) + (f"+{variant}" if variant else "")
        return "espeak-ng", voice, rng.uniform(0.7, 1.3), rng.randint(25, 75)
    if r < 0.85:
        return "flite", rng.choice(FLITE_VOICES), 1.0, 50
    return "festival", rng.choice(FESTIVAL_VOICES), 1.0, 50


def tts_rows(texts: Iterable[str], folder: Path, prefix: str, seed: int, workers: int = 2) -> list[dict]:
    """Each text spoken by a random training voice with random effects, as manifest rows."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, text, random.Random(f"{seed}-{prefix}-{i}")) for i, text in enumerate(texts)]

    def one(job):
        i, text, rng = job
        engine, voice, speed, pitch = _random_voice(rng)
        digest = hashlib.sha1(f"{engine} {voice} {speed} {pitch} {text}".encode()).hexdigest()[:10]
        dest = folder / f"{prefix}_{i:05d}_{digest}.wav"  # a clip is reused only for the same text and voice
        if not dest.exists():
            with tempfile.TemporaryDirectory() as tmp:
                raw = synthesize(text, engine, voice, Path(tmp) / "raw.wav", speed=speed, pitch=pitch)
                augment(raw, Path(tmp) / "out.wav", rng)
                shutil.move(Path(tmp) / "out.wav", dest)
        return {"audio": str(dest), "text": text, "source": f"{engine}/{voice}"}

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, jobs))


# ------------------------------------------------------------------------------------ corpus
def corpus_dir() -> Path:
    return cache_dir() / "corpora" / CORPUS_NAME


def build_speech_digits(out: str | os.PathLike | None = None, *, fsdd: str | os.PathLike = FSDD_ROOT,
                        test_speaker: str = TEST_SPEAKER, val_takes: int = 2, fsdd_train_takes: int | None = 10,
                        tts_digits: int = 15, train_sentences: int = 100, val_sentences: int = 20,
                        seed: int = 0, workers: int = 2) -> dict[str, Path]:
    """Write train.jsonl, val.jsonl and test.jsonl (+ audio/, README.md, build.json) into ``out``
    (default ``<cache>/corpora/speech-digits``) and return their paths. ``tts_digits`` clips per
    digit; already generated clips are kept, so an interrupted build continues."""
    out = Path(out) if out is not None else corpus_dir()
    out.mkdir(parents=True, exist_ok=True)
    splits = fsdd_split(fsdd, test_speaker, val_takes, fsdd_train_takes)
    digits_text = [spoken(d) for d in range(10) for _ in range(tts_digits)]
    sentences = wordnet_sentences(train_sentences + val_sentences, seed)
    if len(sentences) < train_sentences + val_sentences:
        raise InputError(f"sentences: expected {train_sentences + val_sentences} WordNet examples, found {len(sentences)}")
    splits["train"] += tts_rows(digits_text, out / "audio", "digit", seed, workers)
    splits["train"] += tts_rows(sentences[:train_sentences], out / "audio", "sentence", seed, workers)
    splits["val"] += tts_rows(sentences[train_sentences:], out / "audio", "val_sentence", seed, workers)
    paths = {}
    for name, rows in splits.items():
        paths[name] = out / f"{name}.jsonl"
        atomic_write_text(paths[name], "".join(json.dumps(r) + "\n" for r in rows))
    readme = Path(fsdd) / "README.md"
    notes = (f"# speech-digits\n\nBuilt by `multimodal.data.speech_digits`. FSDD split by speaker: {test_speaker} "
             f"is the test speaker (test.jsonl); takes 0-{val_takes - 1} of the others are val.jsonl. TTS clips in "
             "audio/ come from espeak-ng, flite (kal16, awb, rms) and festival (kal_diphone, ked_diphone) with sox "
             "effects; sentences are WordNet usage examples. The FSDD licence below applies to everything "
             "derived from its recordings.\n\n")
    atomic_write_text(out / "README.md", notes + (readme.read_text() if readme.is_file() else ""))
    build = dict(fsdd=str(fsdd), test_speaker=test_speaker, val_takes=val_takes, fsdd_train_takes=fsdd_train_takes,
                 tts_digits=tts_digits, train_sentences=train_sentences, val_sentences=val_sentences, seed=seed,
                 counts={k: len(v) for k, v in splits.items()})
    atomic_write_text(out / "build.json", json.dumps(build, indent=2) + "\n")
    return paths


def speech_digits_manifests() -> dict[str, Path]:
    """The corpus' manifests, built with the defaults first if missing."""
    out = corpus_dir()
    if all((out / f"{s}.jsonl").is_file() for s in ("train", "val", "test")):
        return {s: out / f"{s}.jsonl" for s in ("train", "val", "test")}
    return build_speech_digits(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m multimodal.data.speech_digits", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help=f"output folder (default: <cache>/corpora/{CORPUS_NAME})")
    parser.add_argument("--fsdd", default=str(FSDD_ROOT), help="the FSDD folder (with recordings/)")
    parser.add_argument("--test-speaker", default=TEST_SPEAKER)
    parser.add_argument("--val-takes", type=int, default=2)
    parser.add_argument("--fsdd-train-takes", type=int, default=10)
    parser.add_argument("--tts-digits", type=int, default=15, help="TTS clips per digit")
    parser.add_argument("--train-sentences", type=int, default=100)
    parser.add_argument("--val-sentences", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = build_speech_digits(args.out, fsdd=args.fsdd, test_speaker=args.test_speaker, val_takes=args.val_takes,
                                fsdd_train_takes=args.fsdd_train_takes, tts_digits=args.tts_digits,
                                train_sentences=args.train_sentences, val_sentences=args.val_sentences, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path} ({sum(1 for _ in open(path))} clips)")


if __name__ == "__main__":
    main()
