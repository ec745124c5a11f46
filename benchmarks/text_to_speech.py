"""Intelligibility and speed of text to speech, judged by our recogniser.

Texts, none of them read in training:

- ``digits``: digit strings from the evaluation share (``speech_tts.digit_strings(training=False)``),
  given as digits ("4071"); scored as digit accuracy: 1 - the edit distance between the digits
  spoken and the digits heard, over the digits spoken (``spoken_digits``: numerals spelled one digit
  at a time, then Whisper's English normaliser, which writes spoken numbers as digits; so leading
  zeros count on both sides).
- ``world``: canonical phrases of the captioned world of training combinations (``world seen``,
  drawn at random: a given phrase may have been read in training by some voice) and of the
  held-out colour/object pairs (``world held-out``, never spoken in training); word error rate.
- ``sentence``: WordNet usage examples from the corpus' validation share (never in train.jsonl);
  word error rate.

What the voices themselves score (``--as-read``, default on): the same texts read by each voice's own
engine (``speech_tts.speak``, digits spelled one at a time as the model reads them), judged by the same
ear. The model learns to sound like these voices, so this is the intelligibility it imitates.

What clear voices score (``--held-out-voices``, default on): the same texts read by the held-out voices
installed here (``speech_eval``: flite and festival slt, pico; no model here trains on them), judged by
the same ear: the yardstick for the targets, since the ear itself mishears even clear speech.

What the codec alone costs (``--codec-clips N``): N validation clips of each voice from the corpus
(``speech_tts``' val.jsonl, texts never in training), recognised as the voice read them and after the
codec's encode -> decode: the best the GPT could do in that voice.

Every text is spoken by every voice of the model with a fixed seed per text. The recogniser is our
Whisper tiny.en (beam 5); ``--ears ours faster-whisper-int8`` adds faster-whisper (CTranslate2, the
bench extra) as an independent ear. WER after Whisper's English normaliser. Speed: the real-time factor
(seconds of audio per second of generation) for a text of about 10 seconds, and the peak resident
memory after a one-sentence and after a sixteen-sentence text (memory flat in text length: pieces
are generated eight at a time).

    python -m benchmarks.text_to_speech --model runs/tts/model [--per-kind 20] [--write-checkpoint]
    python -m benchmarks.text_to_speech --model runs/tts/model --ship checkpoints/text2speech-gpt

Results: ``benchmarks/results/text_to_speech.json``; with ``--write-checkpoint`` also the model
folder's ``evaluation.json`` and its MODEL_CARD.md rewritten with them. ``--ship DEST`` first writes
DEST: the model (GPT and codec) in float16 with its training.json, and measures that copy.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import tempfile
import time
from pathlib import Path

import torch

from multimodal.data.speech_digits import DIGIT_WORDS, wordnet_sentences
from multimodal.data import speech_eval, speech_tts
from multimodal.data.speech_tts import _is_val, digit_strings, world_phrases
from multimodal.evaluation.wer import edit_distance
from multimodal.media.audio import load_audio
from multimodal.models.text2speech import TextToSpeech
from multimodal.training.text2speech import model_card

from .asr import build_systems, normaliser, wer
from .common import add_checkpoint_benchmark_args, checkpoint_to_judge, markdown_table, publish_judgement

LONG_TEXT = ("The red bag is on the blue background. Call four zero seven one after nine. "
             "A green star sits on a white background. Please read the numbers slowly and clearly.")


def texts_to_judge(per_kind: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(f"tts-bench-{seed}")
    sentences = [s for s in wordnet_sentences(seed=0) if _is_val(s, 0.05)]
    return {"digits": digit_strings(per_kind, seed=seed, training=False, lengths=(3, 8)),
            "world seen": rng.sample(world_phrases(), per_kind),
            "world held-out": rng.sample(world_phrases(held_out=True), min(per_kind, len(world_phrases(True)))),
            "sentence": rng.sample(sentences, per_kind)}


def digits_of(normalised: str) -> list[str]:
    """The digits of a normalised transcript in order; the normaliser leaves a lone small number as
    its word ("one"), so digit words count as their digits."""
    words = "|".join(DIGIT_WORDS)
    return list(re.sub(r"\D", "", re.sub(rf"\b({words})\b", lambda m: str(DIGIT_WORDS.index(m.group(1))), normalised)))


def spoken_digits(text: str, norm) -> list[str]:
    """The digits a text or transcript says, in order. Numerals are spelled one digit at a time
    before ``norm``: Whisper's normaliser reads a numeral as a number and drops its leading zeros
    ("0994" -> "994"), while the spoken string "zero nine nine four" has four digits."""
    return digits_of(norm(speech_tts.spell_digits(text)))


def score(kind: str, texts: list[str], heard: list[str], norm) -> dict:
    """Digit strings: digit errors (edit distance) over digits spoken, and whole strings right;
    other texts: word errors over words, after ``norm``."""
    if kind == "digits":
        spoken, got = [spoken_digits(t, norm) for t in texts], [spoken_digits(h, norm) for h in heard]
        errors = sum(edit_distance(s, g) for s, g in zip(spoken, got))
        words = sum(len(s) for s in spoken)
        return {"words": words, "errors": errors, "wer": errors / words,
                "strings_right": sum(s == g for s, g in zip(spoken, got)) / len(texts)}
    rate, errors, words = wer([norm(t) for t in texts], [norm(h) for h in heard])
    return {"words": words, "errors": errors, "wer": rate}


def score_rows(texts: dict[str, list[str]], voices: list[str], heard: dict[tuple[str, str], list[str]], norm) -> list[dict]:
    """Scores per (voice, kind) of what was heard, then per kind over all voices (voice ``"all"``)."""
    rows = [{"kind": kind, "voice": voice, **score(kind, items, heard[voice, kind], norm)}
            for voice in voices for kind, items in texts.items()]
    for kind in texts:
        errors = sum(r["errors"] for r in rows if r["kind"] == kind)
        words = sum(r["words"] for r in rows if r["kind"] == kind)
        rows.append({"kind": kind, "voice": "all", "words": words, "errors": errors, "wer": errors / words})
    return rows


def read_by(voices: list[str], texts: dict[str, list[str]], say, recognise, norm) -> list[dict]:
    """The judged texts read by each voice through ``say(text, voice) -> 16 kHz audio`` (digits spelled
    one at a time, as the model reads them), scored as the model's speech is."""
    heard = {(voice, kind): [recognise(say(speech_tts.spell_digits(t), voice)) for t in items]
             for voice in voices for kind, items in texts.items()}
    return score_rows(texts, voices, heard, norm)


def voices_as_read(voices: list[str], texts: dict[str, list[str]], recognise, norm) -> list[dict]:
    """The judged texts read by each voice's own engine (``speech_tts.speak``): how intelligible the
    voices the model learned from are to the same ear, text for text."""
    with tempfile.TemporaryDirectory() as tmp:
        return read_by(voices, texts, lambda text, voice: load_audio(str(speech_tts.speak(text, voice, Path(tmp) / "x.wav"))),
                       recognise, norm)


def held_out_voices_as_read(texts: dict[str, list[str]], recognise, norm) -> list[dict]:
    """The judged texts read by the held-out voices installed here (``speech_eval``: slt, pico; never
    trained on): what clear synthetic speech scores with the same ear, the yardstick of the targets."""
    voices = {v.name: v for v in speech_eval.available_voices()}
    return read_by(list(voices), texts, lambda text, name: speech_eval.speak(voices[name], text), recognise, norm)


def codec_ceiling(model: TextToSpeech, voices: list[str], per_voice: int, recognise, norm,
                  manifest: Path | None = None) -> dict:
    """Word error rate (digit strings: digit errors) of ``per_voice`` validation clips of each voice (speech_tts' val.jsonl: texts never
    in training) as the voice read them and after the model's codec (its levels): the best the GPT
    could do in that voice."""
    manifest = manifest or speech_tts.corpus_dir() / "val.jsonl"
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line]
    out = {}
    for voice in voices:
        clips = [r for r in rows if r["voice"] == voice][:per_voice]
        if not clips:
            continue
        texts, as_read, coded = [], [], []
        for row in clips:
            audio = load_audio(row["audio"])
            texts.append(row["text"])
            as_read.append(recognise(audio))
            coded.append(recognise(model.codec.decode(model.codes_of(torch.from_numpy(audio)[None]))[0].numpy()))
        kinds = {row.get("kind", "sentence") for row in clips}
        scores = {}
        for name, heard in (("original", as_read), ("codec", coded)):
            parts = [score(k, [t for t, r in zip(texts, clips) if r.get("kind", "sentence") == k],
                           [h for h, r in zip(heard, clips) if r.get("kind", "sentence") == k], norm) for k in kinds]
            scores[name] = (sum(p["errors"] for p in parts), sum(p["words"] for p in parts))
        words = scores["original"][1]
        out[voice] = {"clips": len(clips), "words": words, "original_wer": scores["original"][0] / words,
                      "codec_wer": scores["codec"][0] / words}
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.text_to_speech", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="text2speech-gpt", help="text-to-speech folder or name")
    p.add_argument("--per-kind", type=int, default=20, help="texts of each kind (each spoken by every voice)")
    p.add_argument("--voices", nargs="+", default=None, help="voices to judge (default: all of the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ears", nargs="+", default=["ours"], choices=["ours", "faster-whisper-int8", "openai-whisper"],
                   help="recognisers that judge (default: ours; faster-whisper is an independent ear)")
    p.add_argument("--as-read", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the same texts read by each voice's own engine (default on)")
    p.add_argument("--held-out-voices", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the same texts read by the held-out voices installed here (slt, pico; never "
                        "trained on), the judge's yardstick (default on)")
    p.add_argument("--codec-clips", type=int, default=10,
                   help="validation clips per voice through the codec alone (0: skip; needs the speech-tts corpus)")
    p.add_argument("--val-manifest", default=None,
                   help="the validation clips of --codec-clips (default: the speech-tts corpus' val.jsonl)")
    add_checkpoint_benchmark_args(p, "model", "text_to_speech")
    args = p.parse_args(argv)
    val_manifest = Path(args.val_manifest) if args.val_manifest else speech_tts.corpus_dir() / "val.jsonl"
    if args.codec_clips and not val_manifest.is_file():
        p.error(f"--codec-clips needs validation clips: expected {val_manifest} (--val-manifest, or build the "
                f"corpus with python -m multimodal.data.speech_tts), found none")
    command, folder = checkpoint_to_judge(args, argv, "text_to_speech", TextToSpeech, args.model)
    model = TextToSpeech.from_pretrained(folder).eval()
    voices = args.voices or list(model.voices)
    ears = build_systems(args.ears, beam_size=5, threads=args.threads)
    norm = normaliser()
    texts = texts_to_judge(args.per_kind, args.seed)

    heard: dict[str, dict[tuple[str, str], list[str]]] = {ear: {} for ear in ears}
    examples = []
    for voice in voices:
        for kind, items in texts.items():
            for ear in ears:
                heard[ear][voice, kind] = []
            for i, text in enumerate(items):
                audio = model.speak([text], voice=voice, generator=torch.Generator().manual_seed(args.seed * 1000 + i))[0]
                for ear, recognise in ears.items():
                    heard[ear][voice, kind].append(recognise(audio))
                if i < 2:
                    examples.append({"voice": voice, "kind": kind, "text": text,
                                     **{f"heard by {ear}": heard[ear][voice, kind][-1] for ear in ears}})
                print(f"{voice} {kind}: {text!r} -> {heard[args.ears[0]][voice, kind][-1]!r}", flush=True)

    rows, table = [], []
    for ear in ears:
        mine = score_rows(texts, voices, heard[ear], norm)
        rows += [{"recogniser": ear, **r} for r in mine]
        table += [[ear, r["kind"], r["voice"], str(r["words"]), f"{100 * r['wer']:.1f} %"] for r in mine]

    # the voices the model imitates: the same texts read by each voice's own engine
    as_read = voices_as_read(voices, texts, ears[args.ears[0]], norm) if args.as_read else None
    for r in as_read or []:
        table.append([args.ears[0], f"{r['kind']}, as read by the voice's engine", r["voice"], str(r["words"]),
                      f"{100 * r['wer']:.1f} %"])

    # clear voices no model here trained on: what the targets mean for this ear
    held_out = held_out_voices_as_read(texts, ears[args.ears[0]], norm) if args.held_out_voices else None
    for r in held_out or []:
        table.append([args.ears[0], f"{r['kind']}, held-out voice", r["voice"], str(r["words"]),
                      f"{100 * r['wer']:.1f} %"])

    # what the codec alone costs the training voices: their validation clips as read, and through the codec
    ceiling = codec_ceiling(model, voices, args.codec_clips, ears[args.ears[0]], norm, val_manifest) if args.codec_clips else None
    if ceiling:
        for voice, row in ceiling.items():
            table.append([args.ears[0], "codec round trip (recorded clips)", voice, str(row["words"]),
                          f"{100 * row['codec_wer']:.1f} % (as read: {100 * row['original_wer']:.1f} %)"])

    # speed and memory
    model.speak(["Warm up."], voice=voices[0], generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    audio = model.speak([LONG_TEXT], voice=voices[0], generator=torch.Generator().manual_seed(0))[0]
    seconds = time.perf_counter() - start
    speed = {"text": LONG_TEXT, "audio_seconds": len(audio) / model.sampling_rate, "generation_seconds": seconds,
             "real_time_factor": len(audio) / model.sampling_rate / seconds, "threads": args.threads}
    short = "Call four zero seven one after nine."
    model.speak([short], voice=voices[0], generator=torch.Generator().manual_seed(0))
    memory = {"peak_rss_mb_after_1_sentence": peak_rss_mb()}
    model.speak([" ".join([short] * 16)], voice=voices[0], generator=torch.Generator().manual_seed(0))
    memory["peak_rss_mb_after_16_sentences"] = peak_rss_mb()

    print()
    print(markdown_table(["recogniser", "texts", "voice", "words", "errors / words"], table))
    print(f"real-time factor {speed['real_time_factor']:.2f} ({speed['audio_seconds']:.1f} s of audio in "
          f"{seconds:.1f} s); peak RSS {memory}")
    result = {"command": command, "model": str(folder), "recogniser": "ours (whisper tiny.en, beam 5)",
              "recognisers": list(ears), "texts_per_kind": args.per_kind,
              "rows": [r for r in rows if r["recogniser"] == "ours"], "all_rows": rows, "speed": speed,
              "memory": memory, "codec_round_trip": ceiling, "as_read": as_read,
              "held_out_voices": held_out, "examples": examples}
    path = publish_judgement(args, folder, result, model_card)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
