"""Where a text-to-speech model loses intelligibility, part by part, on validation clips.

Validation sentences of every voice of the model (``speech_tts``' val.jsonl: texts never in
training; ``--split train``: sentences it was trained on, to tell learning from remembering), judged by our recogniser (Whisper tiny.en, beam 5; WER after Whisper's English
normaliser):

- ``as read``: the clip as the voice's engine read it;
- ``codec``: the clip through the codec (encode -> decode): the best the GPT could write;
- ``gpt, aligner's durations``: the GPT writing the text with the durations a speech aligner finds
  in the clip (``--aligner RUN``: a ``multimodal train text2speech`` run folder; its ``aligner/``);
- ``gpt, own durations``: the GPT as the pipeline runs it, durations predicted from the text.

Both GPT rows use the model's sampling defaults and seed 0. Also the teacher-forced cross-entropy of
each residual level's codes (nats per code) with the text and with the empty text: how much the
text tells the GPT about each level.

    python -m benchmarks.text_to_speech_parts --model checkpoints/text2speech-gpt --aligner /work/runs/tts [--per-voice 4]

Results: ``benchmarks/results/text_to_speech_parts.json`` (or ``--results NAME``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from multimodal.data.speech_tts import speech_tts_manifests
from multimodal.evaluation.wer import edit_distance
from multimodal.generation.autoregressive import generate_delayed
from multimodal.media.audio import load_audio
from multimodal.models.speech_aligner import SpeechAligner, SpeechAlignerConfig
from multimodal.models.text2speech import TextToSpeech
from multimodal.tokenizers import phonemes
from multimodal.training.text2speech import ALIGNER_DIR, read_rows
from multimodal.training.trainer import CHECKPOINT_DIR
from multimodal.checkpoint import WEIGHTS_NAME

from .asr import build_systems, normaliser
from .common import markdown_table, write_results

PARTS = ("as read", "codec", "gpt, aligner's durations", "gpt, own durations")


def load_aligner(run: Path) -> SpeechAligner:
    folder = run / ALIGNER_DIR
    aligner = SpeechAligner(SpeechAlignerConfig.from_dict(json.loads((folder / "alignment.json").read_text())["model"]))
    aligner.load_state_dict(load_file(folder / CHECKPOINT_DIR / WEIGHTS_NAME))
    return aligner.eval()


def teacher_forced(gpt, voice, ids, durations, codes, drop) -> list[float]:
    frames = torch.tensor([codes.shape[-1]])
    tokens = gpt.delay(codes, frames)
    logits, _ = gpt(voice, ids, durations, tokens, drop)
    target = tokens.masked_fill(tokens == gpt.empty_id, -100)
    ce = F.cross_entropy(logits.float().flatten(0, 2), target.flatten(), ignore_index=-100,
                         reduction="none").view(tokens.shape)
    return [float(ce[..., level][target[..., level] >= 0].mean()) for level in range(gpt.config.levels)]


@torch.no_grad()
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="text2speech-gpt", help="text-to-speech folder or name")
    p.add_argument("--aligner", required=True, help="a text2speech run folder whose aligner/ finds the durations")
    p.add_argument("--per-voice", type=int, default=4, help="validation sentences per voice")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="the corpus share the sentences come from (train: sentences the model was trained on)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default="text_to_speech_parts")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tts = TextToSpeech.from_pretrained(args.model).float().eval()
    gpt, c = tts.gpt, tts.config
    aligner = load_aligner(Path(args.aligner))
    manifest = speech_tts_manifests()[args.split]
    rows = [r for r in read_rows(manifest) if r["voice"] in gpt.config.voices and r.get("kind") == "sentence"]
    random.Random(0).shuffle(rows)
    picked = [r for v in gpt.config.voices for r in [r for r in rows if r["voice"] == v][:args.per_voice]]
    ear = build_systems(["ours"], beam_size=5, threads=args.threads)["ours"]
    norm = normaliser()
    heard: dict[str, list[tuple[str, str]]] = {part: [] for part in PARTS}
    loss: dict[str, list[list[float]]] = {"text": [], "empty text": []}
    sampling = dict(temperature=c.temperature, top_k=c.top_k, top_p=c.top_p, guidance_scale=c.guidance_scale)
    for r in picked:
        audio = load_audio(r["audio"])
        codes = tts.codes_of(torch.from_numpy(audio)[None])
        ids = gpt.text_ids([phonemes.speakable(r["text"])])
        voice = torch.tensor([gpt.voice_id(r["voice"])])
        durations = aligner.durations(codes, torch.tensor([codes.shape[-1]]), ids)
        loss["text"].append(teacher_forced(gpt, voice, ids, durations, codes, None))
        loss["empty text"].append(teacher_forced(gpt, voice, ids, durations, codes, torch.tensor([True])))
        waves = {"as read": audio, "codec": tts.codec.decode(codes)[0].numpy()}
        for part, given in (("gpt, aligner's durations", durations), ("gpt, own durations", None)):
            own = gpt.durations
            if given is not None:
                gpt.durations = lambda log_frames, text_ids, given=given: given
            try:
                out = generate_delayed(gpt, voice, ids, generator=[torch.Generator().manual_seed(0)], **sampling)
            finally:
                gpt.durations = own
            waves[part] = tts.codec.decode(out[0][None])[0].numpy()
        for part in PARTS:
            heard[part].append((r["text"], ear(waves[part])))
        print(r["voice"], "|", r["text"], "|", heard["gpt, aligner's durations"][-1][1], "|",
              heard["gpt, own durations"][-1][1], flush=True)
    scores = {}
    for part, pairs in heard.items():
        refs, hyps = [norm(t).split() for t, _ in pairs], [norm(h).split() for _, h in pairs]
        words = sum(len(x) for x in refs)
        scores[part] = {"words": words, "wer": sum(edit_distance(a, b) for a, b in zip(refs, hyps)) / words}
    levels = {k: torch.tensor(v).mean(0).tolist() for k, v in loss.items()}
    print(markdown_table(["audio", "words", "WER"], [(k, v["words"], f"{100 * v['wer']:.1f} %") for k, v in scores.items()]))
    print(markdown_table(["condition", *(f"level {i}" for i in range(gpt.config.levels))],
                         [(k, *(f"{x:.3f}" for x in v)) for k, v in levels.items()]))
    result = {"command": "python -m benchmarks.text_to_speech_parts " + " ".join(argv),
              "model": args.model, "aligner": args.aligner, "split": args.split, "clips": len(picked),
              "sampling": sampling,
              "wer": scores, "teacher_forced_nats_per_code": levels,
              "examples": [{"voice": r["voice"], "text": r["text"], **{part: heard[part][i][1] for part in PARTS}}
                           for i, r in enumerate(picked)]}
    write_results(args.results, result)
    return result


if __name__ == "__main__":
    main()
