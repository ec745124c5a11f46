"""The speech evaluation set: English utterances from held-out voices and real recordings only.

DATA.md holds some voices out of every training corpus so that they can measure recognisers: the
**slt** voice (flite ``slt``, festival ``cmu_us_slt_arctic_hts``), **pico** (``pico2wave``
``en-US`` / ``en-GB``) and the real recordings in the Debian packages ``pocketsphinx-testdata``
and ``alsa-utils``. This builder reads ``SENTENCES`` (written here, ordinary English with numbers,
names and questions), two to an utterance, with those voices, round-robin, adds the recordings whose words are known, and
writes every clip as 16 kHz mono 16-bit PCM with a JSONL manifest::

    {"audio": "audio/flite-slt-000.wav", "text": "…", "source": "flite-slt", "duration": 3.1}

(``audio`` relative to the manifest's folder; ``read_manifest`` resolves it). The Piper voices are
held out too, but they are downloads, which these machines cannot make: they are not used.

    python -m multimodal.data.speech_eval [--out DIR] [--force]

DIR defaults to ``<cache>/speech-eval`` (``multimodal.paths.cache_dir()``). The Debian packages::

    apt-get install -y flite festival festvox-us-slt-hts pocketsphinx-testdata alsa-utils
    apt-get install -y libttspico-utils   # in non-free; see DATA.md for the sources line

A missing engine or package is skipped with a note (``build`` returns what it skipped); building
again reuses the clips already written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..checkpoint import atomic_write_text
from ..errors import InputError
from ..paths import cache_dir
from ..media.audio import SAMPLE_RATE, load_audio, write_audio

# Ordinary English: statements, questions, numbers, times, names, places. Utterance i is sentence i
# followed by sentence i + PAIR_OFFSET (mod the count), read by voice i mod len(VOICES): every
# sentence is read twice, by two different voices, in utterances of about 5 seconds.
SENTENCES = (
    "The train to Boston leaves at seven thirty every morning.",
    "Could you tell me where the nearest post office is?",
    "My sister bought three apples and two oranges at the market.",
    "We need to finish the report before Friday afternoon.",
    "The museum opens at ten and closes at five.",
    "How many people are coming to the party on Saturday?",
    "Peter left his umbrella on the bus yesterday.",
    "The temperature dropped to twelve degrees last night.",
    "Please turn off the lights when you leave the room.",
    "Anna has lived in London for almost twenty years.",
    "Is there a pharmacy open on Sunday near here?",
    "The meeting was moved from Tuesday to Thursday.",
    "He read the whole book in a single weekend.",
    "Our flight was delayed by forty five minutes.",
    "What time does the library close tonight?",
    "The children played football in the park until dark.",
    "I would like a cup of coffee with milk, please.",
    "The river runs through the middle of the old town.",
    "Michael called to say he would be late for dinner.",
    "There are fifty two cards in a standard deck.",
    "Why did the printer stop working again?",
    "The new bridge took four years to build.",
    "She plays the piano every evening after work.",
    "We walked along the beach and watched the sunset.",
    "The doctor said I should drink more water.",
    "Do you know the way to the railway station?",
    "The garden is full of roses in the summer.",
    "My phone number has changed since last month.",
    "The company hired sixty new workers this spring.",
    "Can we meet for lunch at half past twelve?",
    "The cat slept on the warm windowsill all afternoon.",
    "David is learning to speak Spanish and Italian.",
    "The bakery on the corner sells fresh bread every day.",
    "It rained so hard that the streets were flooded.",
    "Where did you put the keys to the car?",
    "The concert tickets cost eighty dollars each.",
    "A good night's sleep makes a big difference.",
    "The students handed in their homework on time.",
    "We are planning a trip to the mountains in July.",
    "Would you mind opening the window a little?",
    "The store will be closed for the holidays.",
    "Emma won first prize in the science competition.",
    "The road to the village is narrow and winding.",
    "I forgot to bring my glasses to the cinema.",
    "How long does it take to drive to Chicago?",
    "The soup needs a little more salt and pepper.",
    "Thomas fixed the broken chair with some glue.",
    "The office is on the third floor of the building.",
    "Most birds fly south before the winter begins.",
    "Have you seen my blue jacket anywhere?",
    "The package arrived two days earlier than expected.",
    "We counted one hundred stars in the clear night sky.",
    "The teacher asked the class to read chapter nine.",
    "My grandmother makes the best apple pie in town.",
    "Which bus goes to the airport?",
    "The hotel room had a view of the harbor.",
    "Sarah and James got married in June.",
    "The baby finally fell asleep after midnight.",
    "Please send me the details by email.",
    "The shop sells shoes, hats and warm winter coats.",
    "When does the next ferry leave for the island?",
    "He has worked at the hospital for eleven years.",
    "The wind blew the leaves across the yard.",
    "The price of petrol went up again this week.",
    "Is it going to snow tomorrow morning?",
    "The lecture lasted for an hour and a half.",
    "Robert painted the fence white last weekend.",
    "The waiter brought us the menu and a jug of water.",
    "I think we should leave before the traffic gets bad.",
    "The farmer keeps thirty cows and a few sheep.",
    "Who is going to drive us home after the game?",
    "The kitchen smelled of fresh coffee and toast.",
    "Our neighbors adopted a small brown dog.",
    "The exam starts at nine o'clock sharp.",
    "She wrote a long letter to her old friend in Paris.",
    "What would you like for your birthday this year?",
    "The lake freezes over in the middle of winter.",
    "The bank is next to the supermarket on Main Street.",
    "We should check the weather before we go sailing.",
    "George lost his wallet on the way to work.",
    "The film was longer than I expected.",
    "Are you sure you locked the front door?",
    "The school has eight hundred pupils and forty teachers.",
    "My brother is three years older than me.",
    "The plants need water at least twice a week.",
    "Can you help me carry these boxes upstairs?",
    "The story takes place in a small village by the sea.",
    "Lucy always walks her dog before breakfast.",
    "The clock in the hall is five minutes fast.",
    "I have never been to Australia or New Zealand.",
    "Where can I buy a ticket for the museum?",
    "The engineers tested the new engine for six hours.",
    "The soup was too hot to eat right away.",
    "Daniel plays the guitar in a rock band.",
    "The bus was crowded, so we decided to walk.",
    "How much does a return ticket to Manchester cost?",
    "The children built a sandcastle on the beach.",
    "The hospital is about two miles from here.",
    "Kate is studying medicine at the university.",
    "The dinner party was a great success.",
    "Did anyone see the news on television last night?",
    "The mountain path was steep and rocky.",
    "We ordered pizza because nobody wanted to cook.",
    "The baker starts work at four in the morning.",
    "Please write your name at the top of the page.",
    "The old castle stands on a hill above the town.",
    "Why is the sky blue during the day?",
    "My uncle grows tomatoes and potatoes in his garden.",
    "The bus stop is just around the corner.",
    "Oliver scored two goals in the second half.",
    "The library has more than ten thousand books.",
    "Could you speak a little more slowly, please?",
    "The shop assistant wrapped the present in red paper.",
    "It takes about twenty minutes to walk to school.",
    "Alice found a lost kitten behind the shed.",
    "The storm knocked down several trees in the park.",
    "What is the capital city of Canada?",
    "The repair will cost about three hundred dollars.",
    "We had breakfast on the balcony in the sun.",
    "Henry forgot his homework at home again.",
    "The airport was busy with holiday travelers.",
    "Is this seat taken, or may I sit here?",
    "The orchestra played music by Mozart and Bach.",
    "My computer needs a new battery.",
    "The river flooded the fields after the heavy rain.",
    "Jennifer bought a red bicycle for her son.",
    "Do you prefer tea or coffee in the morning?",
    "The fire brigade arrived within ten minutes.",
    "The bridge is closed to traffic until next Monday.",
    "We spent the afternoon reading in the garden.",
    "How old is the oldest tree in the forest?",
)

PAIR_OFFSET = 65


def utterances() -> list[str]:
    n = len(SENTENCES)
    return [f"{SENTENCES[i]} {SENTENCES[(i + PAIR_OFFSET) % n]}" for i in range(n)]


# Real recordings whose words are known: (file, sample rate for headerless .raw, what it says).
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ALSA_WORDS = {"Front_Center": "Front center", "Front_Left": "Front left", "Front_Right": "Front right",
              "Rear_Center": "Rear center", "Rear_Left": "Rear left", "Rear_Right": "Rear right",
              "Side_Left": "Side left", "Side_Right": "Side right"}  # Noise.wav says nothing


@dataclass(frozen=True)
class Voice:
    name: str  # the manifest's "source"
    program: str  # the executable it needs
    command: Callable[[str, Path, Path], list[str]]  # (text, text file, wav out) -> argv


VOICES = (
    Voice("flite-slt", "flite", lambda text, txt, wav: ["flite", "-voice", "slt", "-f", str(txt), "-o", str(wav)]),
    Voice("pico-en-US", "pico2wave", lambda text, txt, wav: ["pico2wave", "-l", "en-US", "-w", str(wav), text]),
    Voice("pico-en-GB", "pico2wave", lambda text, txt, wav: ["pico2wave", "-l", "en-GB", "-w", str(wav), text]),
    Voice("festival-slt-hts", "text2wave", lambda text, txt, wav: [
        "text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(wav), str(txt)]),
)


def _festival_has_slt() -> bool:
    return any(Path("/usr/share/festival/voices").glob("*/cmu_us_slt_arctic_hts"))


def _available(voice: Voice) -> str | None:
    """None when ``voice`` can speak here, else why not."""
    if shutil.which(voice.program) is None:
        return f"{voice.name}: {voice.program} is not installed"
    if voice.name.startswith("festival") and not _festival_has_slt():
        return f"{voice.name}: festvox-us-slt-hts is not installed"
    return None


def available_voices() -> list[Voice]:
    """The held-out voices whose engine is installed here."""
    return [voice for voice in VOICES if _available(voice) is None]


def speak(voice: Voice, text: str) -> np.ndarray:
    """``text`` read by the held-out ``voice``: 16 kHz float32, digital silence beyond 0.2 s trimmed."""
    with tempfile.TemporaryDirectory(prefix="speech-eval-") as tmp:
        return _trim(_synthesise(voice, text, Path(tmp)))


def _recordings() -> Iterator[tuple[str, str, Callable[[], np.ndarray], str]]:
    """(source, clip name, reader of 16 kHz samples, reference text) of the real recordings present."""
    ps = POCKETSPHINX
    if (ps / "cards" / "cards.transcription").is_file():
        for line in (ps / "cards" / "cards.transcription").read_text().splitlines():
            words, _, ident = line.replace("<s>", "").replace("</s>", "").rpartition("(")
            ident = ident.strip(") ")
            yield "pocketsphinx", f"cards-{ident}", _file_reader(ps / "cards" / f"{ident}.wav"), words.strip()
    if (ps / "librivox" / "transcription").is_file():
        for line in (ps / "librivox" / "transcription").read_text().splitlines():
            words, _, ident = line.replace("<s>", "").replace("</s>", "").rpartition("(")
            ident = ident.strip(") ")
            # The transcript's "a a amiable" is the reader's restart: she says "a" once more.
            yield "pocketsphinx", f"librivox-{ident[-4:]}", _file_reader(ps / "librivox" / f"{ident}.wav"), \
                words.strip()
    if (ps / "goforward.raw").is_file():  # the JSGF grammar's sentence; 16 kHz like the test's model
        yield "pocketsphinx", "goforward", _raw_reader(ps / "goforward.raw", 16000), "go forward ten meters"
    if (ps / "tidigits" / "dhd.2934z.raw").is_file():  # TIDIGITS "2934z"; its model is 8 kHz (upperf 4000)
        yield "pocketsphinx", "tidigits-2934z", _raw_reader(ps / "tidigits" / "dhd.2934z.raw", 8000), \
            "two nine three four zero"
    for stem, words in ALSA_WORDS.items():
        if (ALSA_SOUNDS / f"{stem}.wav").is_file():
            yield "alsa", f"alsa-{stem}", _file_reader(ALSA_SOUNDS / f"{stem}.wav"), words


def _file_reader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_audio(path)


def _raw_reader(path: Path, rate: int) -> Callable[[], np.ndarray]:
    """Headerless little-endian 16-bit mono PCM."""
    return lambda: load_audio(np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0, rate)


def _synthesise(voice: Voice, text: str, tmp: Path) -> np.ndarray:
    txt, wav = tmp / "text.txt", tmp / "out.wav"
    txt.write_text(text + "\n")
    wav.unlink(missing_ok=True)
    done = subprocess.run(voice.command(text, txt, wav), capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not wav.is_file():
        raise RuntimeError(f"{voice.name} failed on {text!r}: {done.stderr.strip()[-500:]}")
    return load_audio(wav)


def _trim(samples: np.ndarray, pad: float = 0.2) -> np.ndarray:
    """Drop leading and trailing digital silence beyond ``pad`` seconds (TTS engines add up to a
    second), so the clip lengths measure speech."""
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    if not len(loud):
        return samples
    p = int(pad * SAMPLE_RATE)
    return samples[max(0, loud[0] - p):loud[-1] + p]


def default_dir() -> Path:
    return cache_dir() / "speech-eval"


def build(out: str | Path | None = None, *, force: bool = False, log=print) -> tuple[Path, list[str]]:
    """Write the clips and ``manifest.jsonl`` under ``out`` -> (manifest path, notes on skipped sources)."""
    out = Path(out) if out is not None else default_dir()
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    notes = ["piper: its voices are downloads, which this machine cannot make; not used"]
    entries = []

    def add(source: str, name: str, text: str, make: Callable[[], np.ndarray]) -> None:
        path = audio_dir / f"{name}.wav"
        if force or not path.is_file():
            write_audio(path, make(), SAMPLE_RATE, subtype="PCM_16")
        duration = len(load_audio(path)) / SAMPLE_RATE
        entries.append({"audio": str(path.relative_to(out)), "text": text, "source": source,
                        "duration": round(duration, 3)})

    usable = []
    for voice in VOICES:
        why = _available(voice)
        if why:
            notes.append(why + "; skipped")
        else:
            usable.append(voice)
    if usable:
        texts = utterances()
        for i, text in enumerate(texts):
            voice = usable[i % len(usable)]
            add(voice.name, f"{voice.name}-{i:03d}", text, lambda: speak(voice, text))
            if (i + 1) % 25 == 0:
                log(f"  {i + 1}/{len(texts)} utterances spoken")
    found = 0
    for source, name, reader, text in _recordings():
        add(source, name, text, reader)
        found += 1
    if not any(e["source"] == "pocketsphinx" for e in entries):
        notes.append("pocketsphinx-testdata is not installed; its recordings are skipped")
    if not any(e["source"] == "alsa" for e in entries):
        notes.append("alsa-utils is not installed; its recordings are skipped")
    if not entries:
        raise InputError("speech eval set: expected at least one held-out voice or recording, found none "
                         "(apt-get install -y flite festival festvox-us-slt-hts pocketsphinx-testdata alsa-utils)")
    manifest = out / "manifest.jsonl"
    atomic_write_text(manifest, "".join(json.dumps(e) + "\n" for e in entries))
    return manifest, notes


def read_manifest(path: str | Path) -> list[dict]:
    """The manifest's entries, with ``audio`` made an absolute path."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest: expected a JSONL file, found {'nothing' if not path.exists() else 'a folder'} "
                         f"at {path}")
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            audio = entry["audio"]
            if "text" not in entry:
                raise KeyError("text")
        except (ValueError, KeyError, TypeError):
            raise InputError(f"manifest {path} line {n}: expected a JSON object with 'audio' and 'text', "
                             f"found {line[:80]!r}") from None
        entries.append({**entry, "audio": str((path.parent / audio).resolve())})
    return entries


def summary(entries: list[dict]) -> str:
    by_source: dict[str, list[float]] = {}
    for e in entries:
        by_source.setdefault(e["source"], []).append(e["duration"])
    total = sum(sum(v) for v in by_source.values())
    parts = ", ".join(f"{s} {len(v)} ({sum(v):.0f} s)" for s, v in by_source.items())
    return f"{len(entries)} utterances, {total:.0f} s ({total / 60:.1f} min): {parts}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help=f"output folder (default {default_dir()})")
    p.add_argument("--force", action="store_true", help="write every clip again")
    args = p.parse_args(argv)
    try:
        manifest, notes = build(args.out, force=args.force)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}")
    print(f"{manifest}: {summary(read_manifest(manifest))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
