"""Training the speech codec: ``multimodal train speech-codec``.

::

    multimodal train speech-codec --out-dir runs/speech-vq --max-steps 6000
    multimodal train speech-codec --out-dir runs/speech-vq --max-steps 6000 --resume

(Python: ``train_speech_codec(out_dir, steps=..., config=SpeechCodecConfig(...), ...)``.)

**Data.** The training voices of ``multimodal.data.speech_tts`` and its codec variety set (random
training voices and effects, pitch-raised clips; both built on first use; ``--manifest`` names other
JSONL manifests of ``{"audio": path}``). Every clip's log-mel frames are computed once
and held in memory (float16); the batch of optimizer step ``s`` is ``batch_size`` random crops of
``crop_frames`` frames drawn by a generator seeded by ``(seed, s, rank)``, so a resumed run sees
the crops an uninterrupted one would. Clips shorter than a crop are padded with their own floor.

**Loss.** l1+mse on the normalised log-mel frames plus the quantizer's commitment loss (residual
VQ with quantizer dropout; EMA codebooks, k-means initialisation, dead-code restarts).

**Measures.** Every evaluation, on the validation clips: mel L1 with 1..levels levels, codebook
usage and perplexity of each level. The final numbers go into training.json and MODEL_CARD.md;
intelligibility (the recogniser's word error rate on held-out voices before and after
encode -> decode) is ``python -m benchmarks.speech_codec``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checkpoint import count_parameters
from ..errors import InputError, expect
from ..media.audio import load_audio
from ..models.autoencoders.quantizer import codebook_usage, perplexity
from ..models.autoencoders.vq import training_loss
from ..models.speech_codec import SpeechCodec, SpeechCodecConfig
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import MODEL_DIR, build_model_card, card_notes, check_resume_settings, command_line, markdown_table, \
    publish_model, run_file
from .trainer import Trainer

RECIPE_MODEL = SpeechCodecConfig()
RECIPE_TRAIN = TrainConfig(out_dir="runs/speech-vq", max_steps=6000, batch_size=32, lr=1e-3, weight_decay=0.0,
                           warmup_steps=200, min_lr_ratio=0.05, grad_clip=1.0, eval_every=500, save_every=500,
                           log_every=50)
CROP_FRAMES = 128  # 1.28 s


def read_clips(manifests: Sequence[str | Path], limit: int | None = None) -> list[str]:
    """The audio paths of JSONL manifests (relative paths are relative to their manifest)."""
    paths = []
    for manifest in manifests:
        manifest = Path(manifest)
        if not manifest.is_file():
            raise InputError(f"manifest: expected a JSONL file, found nothing at {manifest}")
        for i, line in enumerate(manifest.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                audio = json.loads(line)["audio"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"manifest: expected {{\"audio\": path, ...}} on line {i + 1} of {manifest}") from None
            path = Path(audio)
            paths.append(str(path if path.is_absolute() else manifest.parent / path))
    if not paths:
        raise InputError(f"manifest: expected at least one clip in {', '.join(map(str, manifests))}, found none")
    return paths[:limit]


class MelBank:
    """Log-mel frames of clips, computed once (float16), and seeded random crops of them."""

    def __init__(self, codec: SpeechCodec, paths: Sequence[str]):
        self.mels = [codec.mel(torch.from_numpy(load_audio(p)))[0].half() for p in paths]
        self.frames_per_code = codec.frames_per_code

    def __len__(self) -> int:
        return len(self.mels)

    def crops(self, n: int, frames: int, generator: torch.Generator) -> torch.Tensor:
        """[n, n_mels, frames] float32: random clips, random code-aligned starts."""
        out = []
        for i in torch.randint(len(self.mels), (n,), generator=generator).tolist():
            mel = self.mels[i].float()
            spare = mel.shape[-1] - frames
            if spare < 0:  # pad a short clip with its own floor (silence)
                mel = torch.cat([mel, mel.new_full((mel.shape[0], -spare), float(mel.min()))], dim=-1)
                spare = 0
            start = int(torch.randint(spare // self.frames_per_code + 1, (), generator=generator)) * self.frames_per_code
            out.append(mel[:, start:start + frames])
        return torch.stack(out)


def make_batch_fn(bank: MelBank, batch_size: int, frames: int, seed: int):
    def batch_fn(step: int, rank: int, world_size: int) -> torch.Tensor:
        return bank.crops(batch_size // world_size, frames, step_generator(seed, step, rank))
    return batch_fn


def make_loss_fn(kind: str, codebook_size: int):
    def loss_fn(model, mel: torch.Tensor):
        recon, codes, vq_loss = model(mel)
        total, parts = training_loss(recon, mel, vq_loss, kind)
        parts["perplexity"] = torch.tensor(perplexity(codes[:, 0] if codes.ndim == 3 else codes, codebook_size))
        return total, parts
    return loss_fn


@torch.no_grad()
def codec_report(codec: SpeechCodec, mels: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Mel L1 (normalised log-mel units) with the first 1..levels levels, and each level's codebook
    usage and perplexity, over whole clips ``mels`` ([n_mels, frames] each)."""
    codec = codec.eval()
    device = next(codec.parameters()).device
    levels = codec.levels
    errors = [[] for _ in range(levels)]
    codes_by_level = [[] for _ in range(levels)]
    for mel in mels:
        x = mel.float()[None].to(device)
        codes = codec.vq.encode(x)
        codes = codes[:, None] if codes.ndim == 2 else codes
        for n in range(1, levels + 1):
            recon = codec.vq.decode(codes[:, :n] if levels > 1 else codes[:, 0]).float()
            errors[n - 1].append(float((recon - x).abs().mean()))
        for level in range(levels):
            codes_by_level[level].append(codes[0, level].flatten().cpu())
    size = codec.codebook_size
    per_level = [torch.cat(c) for c in codes_by_level]
    return {"mel_l1": [sum(e) / len(e) for e in errors],
            "usage": [codebook_usage(c, size) for c in per_level],
            "perplexity": [perplexity(c, size) for c in per_level]}


def make_eval_fn(val_mels: Sequence[torch.Tensor]):
    def eval_fn(model) -> dict[str, float]:
        r = codec_report(model, val_mels)
        out = {"val_mel_l1": r["mel_l1"][-1], "val_mel_l1_level1": r["mel_l1"][0]}
        out.update({f"val_usage_level{i + 1}": u for i, u in enumerate(r["usage"])})
        return out
    return eval_fn


def train_speech_codec(out_dir: str | Path = RECIPE_TRAIN.out_dir, *, steps: int = RECIPE_TRAIN.max_steps,
                       batch_size: int = RECIPE_TRAIN.batch_size, lr: float = RECIPE_TRAIN.lr, seed: int = 0,
                       resume: bool = False, config: SpeechCodecConfig | None = None,
                       manifests: Sequence[str | Path] | None = None, val_manifests: Sequence[str | Path] | None = None,
                       crop_frames: int = CROP_FRAMES, max_clips: int | None = None, progress: bool = True,
                       command: str | None = None, **train_options: Any) -> dict:
    """Train a ``SpeechCodec`` and write ``out_dir/model`` (see the module docstring).
    ``train_options``: other ``TrainConfig`` fields. Returns the numbers of training.json."""
    config = config or RECIPE_MODEL
    expect(isinstance(config, SpeechCodecConfig), "config", "a SpeechCodecConfig", repr(config))
    expect(isinstance(crop_frames, int) and crop_frames > 0, "crop_frames", "a positive number of frames", crop_frames)
    if manifests is None or val_manifests is None:
        from ..data.speech_tts import build_codec_variety, corpus_dir, speech_tts_manifests  # built on first use

        built = speech_tts_manifests()
        variety = corpus_dir() / "variety.jsonl"
        manifests = manifests or [built["train"], variety if variety.is_file() else build_codec_variety()]
        val_manifests = val_manifests or [built["val"]]
    fields = {**RECIPE_TRAIN.to_dict(), **train_options, "out_dir": str(out_dir), "max_steps": steps,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    train_config = TrainConfig.from_dict(fields, where="train_options")
    out_dir = Path(out_dir)
    run = {"model": config.to_dict(), "crop_frames": crop_frames}
    if resume:
        check_resume_settings(run_file(out_dir, "speech_codec"), run, "the model",
                              configs={"model": SpeechCodecConfig})
    torch.manual_seed(train_config.seed)
    model = SpeechCodec(config)
    expect(crop_frames % model.frames_per_code == 0, "crop_frames",
           f"a multiple of the frames per code ({model.frames_per_code})", crop_frames)
    bank = MelBank(model, read_clips(manifests, max_clips))
    val = MelBank(model, read_clips(val_manifests, 200)).mels
    trainer = Trainer(model, train_config, make_loss_fn(config.vq.loss, config.vq.quantizer.codebook_size),
                      batch_fn=make_batch_fn(bank, train_config.batch_size, crop_frames, train_config.seed),
                      eval_fn=make_eval_fn(val), resume=resume, progress=progress)
    summary, seconds = trainer.train_run(run_file(out_dir, "speech_codec"), run)
    if not trainer.is_main:
        return summary
    final = trainer.eval_model.eval()
    training = {
        "command": command or f"train_speech_codec({str(out_dir)!r}, steps={steps}, batch_size={batch_size}, "
                              f"lr={lr}, seed={seed})",
        "data": f"{len(bank)} clips of {', '.join(str(m) for m in manifests)} (log-mel crops of {crop_frames} frames)",
        **trainer.run_record(seconds), "parameters": count_parameters(final), "val_clips": len(val),
        "val": codec_report(final, val), "frame_rate": final.frame_rate,
        "bitrates": [final.bitrate(n) for n in range(1, final.levels + 1)],
        "final_train": {k: v for k, v in summary.items() if k in ("loss", "mse", "l1", "vq", "perplexity")},
        "model": final.config.to_dict(),
    }
    folder = publish_model(out_dir / MODEL_DIR, final, training, lambda tmp: model_card(training, tmp))
    return {**training, "model_dir": str(folder)}


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of a speech codec from its training.json."""
    c = SpeechCodecConfig.from_dict(info["model"])
    q = c.vq.quantizer
    summary = (f"A speech codec: 16 kHz audio -> Whisper's {c.n_mels}-band log-mel frames -> {q.levels} residual "
               f"levels of {q.codebook_size} codes at {info['frame_rate']:g} frames per second "
               f"({info['bitrates'][-1]:g} bit/s; the first level alone {info['bitrates'][0]:g} bit/s), decoded "
               f"back to log-mel frames and to audio by Griffin-Lim ({c.griffin_lim_iters} iterations). Conv1d "
               f"stages of {[c.vq.channels * m for m in c.vq.channel_mult]} channels, strides {list(c.vq.strides)}.")
    usage = ("Load: `multimodal.models.SpeechCodec.from_pretrained(this_folder)`; `encode(audio)` (float "
             "`[samples]` or `[B, samples]` at 16 kHz) gives codes `[B, levels, frames]`, `decode(codes)` audio "
             "(the first n levels alone decode too). Command line: `multimodal codes encode|decode --model "
             "this_folder`.")
    val = info["val"]
    rows = [(str(n + 1), f"{info['bitrates'][n]:g}", f"{val['mel_l1'][n]:.4f}", f"{100 * val['usage'][n]:.1f} %",
             f"{val['perplexity'][n]:.0f}") for n in range(q.levels)]
    evaluation = "\n".join([
        *markdown_table(("levels", "bit/s", "mel L1 (first n levels)", "usage of level n", "perplexity of level n"),
                        rows, "rrrrr"), "",
        f"On {info['val_clips']} validation clips of the training voices (texts held out of training). Mel L1: mean "
        "absolute error of the normalised log-mel frames ((log10 + 4) / 4). Usage: distinct codes of a level over "
        "the evaluation pass divided by the codebook size; perplexity: exp(entropy) of its histogram."])
    heard = _intelligibility(folder)
    if heard:
        evaluation += "\n\n" + heard
    details = [f"Loss: {c.vq.loss} on the log-mel frames + {q.beta} x commitment; EMA codebooks (decay {q.decay}), "
               f"quantizer dropout {q.quantizer_dropout}."]
    return build_model_card("Speech codec (log-mel residual VQ)", summary, info, usage=usage, details=details,
                            unit="crops", evaluation=evaluation, notes=card_notes(folder))


def _intelligibility(folder: Path | None) -> str:
    """The card's section from ``evaluation.json`` (``benchmarks/speech_codec.py``), if the folder has one."""
    if folder is None or not (Path(folder) / "evaluation.json").is_file():
        return ""
    e = json.loads((Path(folder) / "evaluation.json").read_text())
    groups = [g for g in ("all", "held-out voices", "real recordings") if g in e["conditions"]["original"]]
    rows = [(name, "" if row["bitrate"] is None else f"{row['bitrate']:g}",
             *(f"{100 * row[g]['wer']:.2f} %" for g in groups)) for name, row in e["conditions"].items()]
    return "\n".join([
        f"Intelligibility: word error rate of {e['recogniser']} on {e['utterances']} utterances of the speech "
        f"evaluation set ({e['sources']}), none of them in the training data, as they are, through the vocoder "
        "alone, and through this codec with its first n levels:", "",
        *markdown_table(("audio", "bit/s", *groups), rows, "l" + "r" * (1 + len(groups))), "",
        f"`{e['command']}`"])


# --------------------------------------------------------------------------------------------- CLI
def add_train_speech_codec_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train speech-codec``: the codec and every TrainConfig flag."""
    m, q = RECIPE_MODEL.vq, RECIPE_MODEL.vq.quantizer
    model = parser.add_argument_group("model")
    model.add_argument("--channels", type=int, default=m.channels, help=f"first stage width (default {m.channels})")
    model.add_argument("--res-blocks", type=int, default=m.res_blocks, help=f"(default {m.res_blocks})")
    model.add_argument("--levels", type=int, default=q.levels, help=f"residual VQ levels (default {q.levels})")
    model.add_argument("--codebook-size", type=int, default=q.codebook_size, help=f"(default {q.codebook_size})")
    model.add_argument("--quantizer-dropout", type=float, default=q.quantizer_dropout,
                       help=f"probability that a step trains fewer levels (default {q.quantizer_dropout})")
    data = parser.add_argument_group("data")
    data.add_argument("--manifest", nargs="+", default=None,
                      help="JSONL manifests of training clips (default: the speech-tts corpus and its variety set, built "
                           "on first use)")
    data.add_argument("--val-manifest", nargs="+", default=None, help="JSONL manifests of validation clips")
    data.add_argument("--crop-frames", type=int, default=CROP_FRAMES, help=f"frames per crop (default {CROP_FRAMES})")
    data.add_argument("--max-clips", type=int, default=None, help="use only the first N training clips")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def run_train_speech_codec(args: argparse.Namespace) -> dict:
    """``multimodal train speech-codec``: train, measure, write ``<out-dir>/model``, print the numbers."""
    q = RECIPE_MODEL.vq.quantizer.replace(levels=args.levels, codebook_size=args.codebook_size,
                                          quantizer_dropout=args.quantizer_dropout)
    vq = RECIPE_MODEL.vq.replace(channels=args.channels, res_blocks=args.res_blocks, quantizer=q)
    config = SpeechCodecConfig.from_dict(RECIPE_MODEL.replace(vq=vq).to_dict())  # checks the combination
    fields = train_config_from_args(args).to_dict()
    named = {k: fields.pop(k) for k in ("out_dir", "max_steps", "batch_size", "lr", "seed")}
    result = train_speech_codec(named["out_dir"], steps=named["max_steps"], batch_size=named["batch_size"],
                                lr=named["lr"], seed=named["seed"], resume=args.resume, config=config,
                                manifests=args.manifest, val_manifests=args.val_manifest, crop_frames=args.crop_frames,
                                max_clips=args.max_clips, progress=args.progress,
                                command=command_line(args, "multimodal train speech-codec"), **fields)
    if "model_dir" in result:
        val = result["val"]
        for n in range(len(val["mel_l1"])):
            print(f"levels 1-{n + 1}: {result['bitrates'][n]:g} bit/s, mel L1 {val['mel_l1'][n]:.4f}; level {n + 1}: "
                  f"usage {100 * val['usage'][n]:.1f} %, perplexity {val['perplexity'][n]:.0f}")
        print(f"model: {result['model_dir']}")
    return result
