"""Intelligibility of the speech codec: the recogniser's word error rate on held-out voices before and
after encode -> decode, per number of residual levels (bitrate).

Audio: the speech evaluation set (``multimodal.data.speech_eval``: the held-out slt and pico voices
and real recordings, none of them in the codec's training data), built on first use. Each clip is
transcribed by our Whisper tiny.en (beam 5, as ``benchmarks/asr.py``) as it is, after the vocoder
alone (its own log-mel frames through ``log_mel_to_audio``: what Griffin-Lim costs), and after the
codec with its first 1..levels levels. WER with Whisper's English normaliser, overall and for the
synthetic voices and the real recordings apart.

    python -m benchmarks.speech_codec --codec runs/speech-vq/model [--limit 40] [--write-checkpoint]
    python -m benchmarks.speech_codec --codec runs/speech-vq/model --ship checkpoints/speech-vq

Results: ``benchmarks/results/speech_codec.json``; with ``--write-checkpoint`` also the codec folder's
``evaluation.json`` and its MODEL_CARD.md rewritten with them. ``--ship DEST`` first writes DEST: the
codec in float16 with its training.json, and measures that copy (the weights users get).
"""

from __future__ import annotations

import argparse

import torch

from multimodal.data import speech_eval
from multimodal.media.audio import load_audio
from multimodal.models.speech_codec import SpeechCodec
from multimodal.tokenizers.mel import log_mel_spectrogram, log_mel_to_audio
from multimodal.training.speech_codec import model_card

from .asr import build_systems, eval_entries, normaliser, wer
from .common import add_checkpoint_benchmark_args, checkpoint_to_judge, markdown_table, publish_judgement


def is_real(entry: dict) -> bool:
    return not any(entry["source"].startswith(v) for v in ("flite", "festival", "pico"))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speech_codec", description=__doc__.split("\n")[0])
    p.add_argument("--codec", required=True, help="speech codec folder or name")
    p.add_argument("--manifest", default=None, help="eval manifest (default: build/reuse <cache>/speech-eval)")
    p.add_argument("--limit", type=int, default=None, help="N utterances spread over the sources")
    add_checkpoint_benchmark_args(p, "codec", "speech_codec")
    args = p.parse_args(argv)
    command, folder = checkpoint_to_judge(args, argv, "speech_codec", SpeechCodec, args.codec)
    codec = SpeechCodec.from_pretrained(folder).eval()
    _, entries = eval_entries(args.manifest, args.limit)
    print(f"{len(entries)} utterances: {speech_eval.summary(entries)}")
    recognise = build_systems(["ours"], beam_size=5, threads=args.threads)["ours"]
    norm = normaliser()
    refs = [norm(e["text"]) for e in entries]

    conditions = ["original", "vocoder"] + [f"codec {n} level{'s' if n > 1 else ''}" for n in range(1, codec.levels + 1)]
    texts: dict[str, list[str]] = {c: [] for c in conditions}
    for i, entry in enumerate(entries):
        audio = load_audio(entry["audio"])
        x = torch.from_numpy(audio)
        versions = {"original": audio,
                    "vocoder": log_mel_to_audio(log_mel_spectrogram(x), n_iter=codec.config.griffin_lim_iters).numpy()}
        codes = codec.encode(x)
        for n in range(1, codec.levels + 1):
            versions[conditions[1 + n]] = codec.decode(codes[:n])[:len(audio)].numpy()
        for name, a in versions.items():
            texts[name].append(norm(recognise(a)))
        print(f"[{i + 1}/{len(entries)}] {entry['source']}: {refs[i]!r} -> codec {texts[conditions[-1]][-1]!r}",
              flush=True)

    groups = {"all": list(range(len(entries))),
              "held-out voices": [i for i, e in enumerate(entries) if not is_real(e)],
              "real recordings": [i for i, e in enumerate(entries) if is_real(e)]}
    rows, table = {}, []
    for c in conditions:
        row = {"bitrate": codec.bitrate(int(c.split()[1])) if c.startswith("codec") else None}
        for g, idx in groups.items():
            if idx:
                rate, errors, words = wer([refs[i] for i in idx], [texts[c][i] for i in idx])
                row[g] = {"wer": rate, "errors": errors, "words": words}
        rows[c] = row
        table.append([c, "" if row["bitrate"] is None else f"{row['bitrate']:g}",
                      *(f"{100 * row[g]['wer']:.2f} %" if g in row else "" for g in groups)])
    print()
    print(markdown_table(["audio", "bit/s", *groups], table))
    result = {"command": command, "codec": str(folder), "utterances": len(entries),
              "sources": speech_eval.summary(entries), "recogniser": "ours (whisper tiny.en, beam 5)",
              "conditions": rows}
    path = publish_judgement(args, folder, result, model_card)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
