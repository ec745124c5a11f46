"""Speech for the speech codec and text-to-speech: texts read by named training voices.

The corpus (``build_speech_tts``, or ``python -m multimodal.data.speech_tts``) is written as JSONL
manifests of ``{"audio": path, "text": ..., "voice": name, "kind": ...}`` into
``<cache>/corpora/speech-tts/`` (``train.jsonl``, ``val.jsonl``), 16 kHz mono 16-bit clips in
``audio/``, trimmed of leading and trailing silence and normalised to -3 dBFS. No other effects:
a voice's name must mean one voice, since text-to-speech is asked for it by name.

- **Voices** (``VOICES``): training voices only (DATA.md): flite ``kal16`` / ``awb`` / ``rms``,
  festival ``kal_diphone`` / ``ked_diphone`` and three espeak-ng voices. The held-out voices (slt
  in any engine, pico, Piper) are never read here; they judge the codec and the speech.
- **Texts** (``kind``): digit strings of 1-8 digits (``digits``, read one digit at a time, as
  ``spell_digits`` writes them; ``is_training_digit_string`` tells which strings training may see,
  the others are for evaluation), the captioned world's canonical phrases ``a {colour} {object} on
  a {background} background`` of training combinations only (``world``; held-out colour/object
  pairs are never spoken here), and WordNet usage examples (``sentence``). Each voice reads its own
  random draw of each kind; texts whose hash falls in the validation share go to ``val.jsonl``.

For the speech codec, which must encode any voice, ``build_codec_variety`` (``--variety N``) adds
``variety.jsonl``: N texts read by random training voices (espeak-ng accents and variants, male and
female, random speeds and pitches; flite; festival) through random sox effects, plus copies of the
named voices' training clips raised by 3-9 semitones (sox ``pitch``), so that the codec meets the
pitch range of voices higher than the named ones. Text-to-speech never trains on it.
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
from typing import Sequence

from ..checkpoint import atomic_write_text
from ..errors import InputError
from ..paths import cache_dir
from .speech_digits import DIGIT_WORDS, SAMPLE_RATE, synthesize, tts_rows, wordnet_sentences
from .world_captions import BACKGROUNDS, CANONICAL_TEMPLATE, COLOURS, OBJECTS, is_held_out

CORPUS_NAME = "speech-tts"
KINDS = ("digits", "world", "sentence")

# name -> (engine, voice, speed, pitch). Training voices only; slt, pico and Piper are held out.
VOICES: dict[str, tuple[str, str, float, int]] = {
    "kal": ("flite", "kal16", 1.0, 50),
    "awb": ("flite", "awb", 1.0, 50),
    "rms": ("flite", "rms", 1.0, 50),
    "kal-diphone": ("festival", "kal_diphone", 1.0, 50),
    "ked": ("festival", "ked_diphone", 1.0, 50),
    "espeak-us": ("espeak-ng", "en-us", 1.0, 50),
    "espeak-us-f": ("espeak-ng", "en-us+f3", 0.95, 60),
    "espeak-gb": ("espeak-ng", "en-gb+m3", 1.0, 45),
    # flite's rms with every segment 1.3 times as long: the clearest training voice for our recogniser
    # (benchmarks/results/text_to_speech.json, "as read by the voice's engine").
    "rms-slow": ("flite", "rms", 1 / 1.3, 50),
}
# The voices a corpus build reads unless told otherwise.
DEFAULT_VOICES = ("kal", "awb", "rms", "kal-diphone", "ked", "espeak-us", "espeak-us-f", "espeak-gb")


# -------------------------------------------------------------------------------------- texts
def spell_digits(text: str) -> str:
    """Every digit as its word, one at a time: ``"call 4071"`` -> ``"call four zero seven one"``."""
    spelled = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    return re.sub(r"\s+", " ", spelled).strip()


def is_training_digit_string(digits: str) -> bool:
    """Whether training may read the digit string ``digits``: 7 in 8 strings are; the rest (by a hash
    of the string, so the split needs no list) are only ever evaluation text."""
    if not re.fullmatch(r"\d+", digits):
        raise InputError(f"digits: expected a string of digits, found {digits!r}")
    return hashlib.sha1(f"digits:{digits}".encode()).digest()[0] % 8 != 0


def digit_strings(n: int, seed: int, *, training: bool = True, lengths: tuple[int, int] = (1, 8)) -> list[str]:
    """``n`` random digit strings (lengths uniform in ``lengths``) from the training share, or from
    the evaluation share with ``training=False``."""
    rng, out = random.Random(f"digit-strings-{seed}"), []
    while len(out) < n:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(*lengths)))
        if is_training_digit_string(s) == training:
            out.append(s)
    return out


def world_phrases(held_out: bool = False) -> list[str]:
    """Canonical phrases of every training combination (or only the held-out ones)."""
    return [CANONICAL_TEMPLATE.format(colour=c, object=o, background=b)
            for o in OBJECTS for c in COLOURS for b in BACKGROUNDS if is_held_out(o, c) == held_out]


def _is_val(text: str, share: float) -> bool:
    return hashlib.sha1(f"val:{text}".encode()).digest()[1] / 256 < share


# -------------------------------------------------------------------------------------- audio
def _clean_16k(source: Path, dest: Path) -> None:
    """Trim leading/trailing silence, 16 kHz mono 16-bit, peak at -3 dBFS."""
    trim = ["silence", "1", "0.02", "-45d", "reverse", "silence", "1", "0.02", "-45d", "reverse"]
    cmd = ["sox", str(source), "-b", "16", str(dest), *trim, "rate", str(SAMPLE_RATE), "channels", "1",
           "pad", "0.05", "0.05", "gain", "-n", "-3"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise InputError(f"sox: expected exit status 0, found {result.returncode}: {result.stderr.strip()[:300]}")


def speak(text: str, voice: str, dest: Path) -> Path:
    """``text`` read by the training voice named ``voice`` into the 16 kHz wav ``dest``."""
    if voice not in VOICES:
        raise InputError(f"voice: expected one of {', '.join(VOICES)}, found {voice!r}")
    engine, name, speed, pitch = VOICES[voice]
    with tempfile.TemporaryDirectory() as tmp:
        raw = synthesize(text, engine, name, Path(tmp) / "raw.wav", speed=speed, pitch=pitch)
        _clean_16k(raw, Path(tmp) / "out.wav")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(tmp) / "out.wav", dest)
    return dest


# ------------------------------------------------------------------------------------- corpus
def corpus_dir() -> Path:
    return cache_dir() / "corpora" / CORPUS_NAME


def corpus_texts(voice: str, *, digits: int, world: int, sentences: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text) pairs one voice reads: its own random draw of each kind (text as synthesised)."""
    rng = random.Random(f"{seed}-{voice}")
    phrases = world_phrases()
    pool = wordnet_sentences(seed=seed) if sentences > 0 else []
    texts = [("digits", spell_digits(s)) for s in digit_strings(digits, seed=rng.randrange(2 ** 31))]
    texts += [("world", p) for p in rng.sample(phrases, min(world, len(phrases)))]
    texts += [("sentence", s) for s in rng.sample(pool, min(sentences, len(pool)))]
    return texts


def build_speech_tts(out: str | os.PathLike | None = None, *, voices: Sequence[str] = DEFAULT_VOICES,
                     digits: int = 400, world: int = 300, sentences: int = 400, val_share: float = 0.05,
                     seed: int = 0, workers: int = 2) -> dict[str, Path]:
    """Write train.jsonl and val.jsonl (+ audio/, build.json) into ``out`` (default
    ``<cache>/corpora/speech-tts``): each voice reads ``digits`` digit strings, ``world`` phrases and
    ``sentences`` sentences. Clips already written are kept, so an interrupted build continues."""
    unknown = [v for v in voices if v not in VOICES]
    if unknown or not voices:
        raise InputError(f"voices: expected names from {', '.join(VOICES)}, found {list(voices)!r}")
    out = Path(out) if out is not None else corpus_dir()
    jobs = [(voice, kind, text) for voice in voices
            for kind, text in corpus_texts(voice, digits=digits, world=world, sentences=sentences, seed=seed)]

    def one(job):
        voice, kind, text = job
        digest = hashlib.sha1(f"{voice} {text}".encode()).hexdigest()[:12]
        dest = out / "audio" / voice / f"{digest}.wav"
        if not dest.exists():
            speak(text, voice, dest)
        return {"audio": str(dest), "text": text, "voice": voice, "kind": kind}

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(one, jobs))
    splits = {"train": [r for r in rows if not _is_val(r["text"], val_share)],
              "val": [r for r in rows if _is_val(r["text"], val_share)]}
    paths = {}
    for name, split in splits.items():
        paths[name] = out / f"{name}.jsonl"
        atomic_write_text(paths[name], "".join(json.dumps(r) + "\n" for r in split))
    build = dict(voices=list(voices), digits=digits, world=world, sentences=sentences, val_share=val_share,
                 seed=seed, counts={k: len(v) for k, v in splits.items()})
    atomic_write_text(out / "build.json", json.dumps(build, indent=2) + "\n")
    return paths


def build_codec_variety(out: str | os.PathLike | None = None, *, clips: int = 2000, raised: int = 1000,
                        seed: int = 0, workers: int = 2) -> Path:
    """Write ``variety.jsonl`` (+ ``variety/``) into ``out`` (default the corpus folder, whose
    ``train.jsonl`` must exist): ``clips`` texts by random voices with random effects, and
    ``raised`` pitch-raised copies of training clips. Clips already written are kept."""
    out = Path(out) if out is not None else corpus_dir()
    train = out / "train.jsonl"
    if not train.is_file():
        raise InputError(f"out: expected the corpus' train.jsonl at {train} (build_speech_tts first), found none")
    rows = [json.loads(line) for line in train.read_text().splitlines() if line.strip()]
    rng = random.Random(f"variety-{seed}")
    texts = [r["text"] for r in rng.sample(rows, min(clips, len(rows)))]
    variety = tts_rows(texts, out / "variety", "tts", seed=seed, workers=workers)

    def raise_pitch(job):
        i, row = job
        cents = random.Random(f"{seed}-raise-{i}").randint(300, 900)
        dest = out / "variety" / f"raised_{i:05d}_{cents}_{Path(row['audio']).stem}.wav"
        if not dest.exists():
            tmp = dest.with_suffix(".tmp.wav")
            cmd = ["sox", row["audio"], "-b", "16", str(tmp), "pitch", str(cents), "rate", str(SAMPLE_RATE),
                   "gain", "-n", "-3"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise InputError(f"sox: expected exit status 0, found {result.returncode}: {result.stderr[:300]}")
            tmp.replace(dest)
        return {"audio": str(dest), "text": row["text"], "source": f"{row['voice']}+{cents}c"}

    named = [r for r in rows if not r["voice"].startswith("espeak")]
    with ThreadPoolExecutor(workers) as pool:
        variety += list(pool.map(raise_pitch, enumerate(rng.sample(named, min(raised, len(named))))))
    path = out / "variety.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in variety))
    return path


def speech_tts_manifests() -> dict[str, Path]:
    """The corpus' manifests, built with the defaults first if missing."""
    out = corpus_dir()
    if all((out / f"{s}.jsonl").is_file() for s in ("train", "val")):
        return {s: out / f"{s}.jsonl" for s in ("train", "val")}
    return build_speech_tts(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m multimodal.data.speech_tts", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help=f"output folder (default: <cache>/corpora/{CORPUS_NAME})")
    parser.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES), choices=list(VOICES))
    parser.add_argument("--digits", type=int, default=400, help="digit strings per voice")
    parser.add_argument("--world", type=int, default=300, help="world phrases per voice")
    parser.add_argument("--sentences", type=int, default=400, help="WordNet sentences per voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variety", type=int, default=0, metavar="N",
                        help="also write variety.jsonl for the speech codec: N random-voice clips and N/2 "
                             "pitch-raised copies (default 0: none)")
    args = parser.parse_args(argv)
    paths = build_speech_tts(args.out, voices=args.voices, digits=args.digits, world=args.world,
                             sentences=args.sentences, seed=args.seed, workers=args.workers)
    if args.variety:
        paths["variety"] = build_codec_variety(args.out, clips=args.variety, raised=args.variety // 2,
                                               seed=args.seed, workers=args.workers)
    for name, path in paths.items():
        print(f"{name}: {path} ({sum(1 for _ in open(path))} clips)")


if __name__ == "__main__":
    main()
