"""Training text-to-speech: ``multimodal train text2speech``.

::

    multimodal train text2speech --codec checkpoints/speech-vq --out-dir runs/text2speech-gpt --max-steps 6000
    multimodal train text2speech --codec checkpoints/speech-vq --out-dir runs/text2speech-gpt --resume
    multimodal train text2speech --init-from text2speech-gpt --manifest more.jsonl --val-manifest val.jsonl --out-dir runs/ft

(Python: ``train_text2speech(out_dir, codec=..., steps=..., config=TextToSpeechGPTConfig(...), ...)``.)

**Data.** The named training voices of ``multimodal.data.speech_tts`` (``train.jsonl``, built on
first use; never the held-out voices, digit strings or colour/object pairs). The frozen codec codes
every clip once and the front end turns every text into symbol ids once; both are kept in
``code_cache.safetensors`` in the run folder (reused on resume). The batch of optimizer step ``s``
is ``batch_size`` clips drawn with replacement by a generator seeded by ``(seed, s, rank)`` from a
random window of clips of neighbouring lengths, padded to the longest; clips of more than ``max_frames`` code frames are left out (counted in
training.json).

**Fine-tuning.** ``--init-from`` starts a new run (fresh optimizer and schedule) from a trained
folder's GPT, with its codec and voices (the manifest's voices must be among them); the GPT's shape
is the folder's, and only ``TUNABLE_FIELDS`` follow the command. The aligner and durations are the
run's own. training.json and the card name the starting model.

**Durations.** First a speech aligner (``multimodal.models.speech_aligner``: CTC over the codes of
the training clips, ``aligner_steps`` steps on the shared trainer in ``aligner/``, resumable) finds
how many code frames each symbol of each clip lasts, by forced alignment; the durations of every
training and validation clip are kept in ``durations.safetensors`` (reused on resume).

**Loss.** Cross-entropy of every level's codes under the delay pattern, each frame told which
symbol it says, plus the duration loss (``TextToSpeechGPT.loss``); the text is dropped with
probability ``cond_drop`` for classifier-free guidance, and each code the GPT reads is replaced by a
random one with probability ``token_noise`` (0.2 in the recipe: heard better on open sentences than
without, ``benchmarks/results/text_to_speech_nonoise.json``, although its teacher-forced loss is
higher). Evaluations log the teacher-forced losses on the validation clips.

Run folder: the trainer's files, ``text2speech_run.json``, the code cache, ``aligner/``, the
durations and ``model/`` (a
``TextToSpeech`` folder: the GPT, the codec in ``codec/``, training.json and MODEL_CARD.md).
Intelligibility is measured by ``benchmarks/text_to_speech.py``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import count_parameters
from ..errors import InputError, expect
from ..media.audio import load_audio
from ..models.speech_aligner import ALIGNER_KINDS, BLANK_RULES, SpeechAligner, SpeechAlignerConfig
from ..models.speech_codec import SpeechCodec
from ..models.text2speech import CODEC_DIR, TextToSpeech, TextToSpeechConfig
from ..models.text2speech_gpt import TextToSpeechGPTConfig
from ..paths import resolve_model
from ..tokenizers import phonemes
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import MODEL_DIR, build_model_card, card_notes, check_init_architecture, check_resume_settings, \
    command_line, init_config, init_record, init_text, markdown_table, publish_model, run_file, same_weights
from .lora import LoraOptions, adapter_card, adapter_save, adapter_trainer_options, attach_lora, reload_adapter
from .trainer import CHECKPOINT_DIR, Trainer

RECIPE_MODEL = TextToSpeechGPTConfig(width=192, depth=6, encoder_depth=3, heads=6, text_length=160, max_frames=300,
                                     cond_drop=0.1, token_noise=0.2)
RECIPE_TRAIN = TrainConfig(out_dir="runs/text2speech-gpt", max_steps=6000, batch_size=32, lr=1e-3, weight_decay=0.05,
                           warmup_steps=300, min_lr_ratio=0.05, grad_clip=1.0, ema_decay=None, eval_every=1000,
                           save_every=250, log_every=50)
# What a fine-tuning run (``init_from``) may change of the GPT it starts from, and what it may not.
TUNABLE_FIELDS = ("dropout", "cond_drop", "token_noise", "duration_weight")
ARCHITECTURE_FIELDS = ("front_end", "text_length", "max_frames", "width", "depth", "encoder_depth", "heads",
                       "mlp_ratio", "levels")
CODE_CACHE_NAME = "code_cache.safetensors"
DURATIONS_NAME = "durations.safetensors"
ALIGNER_DIR = "aligner"
ALIGNER_STEPS = 1500
ALIGNER: dict[str, Any] = {}  # the aligner's settings beyond its size (SpeechAlignerConfig's defaults)


def _unwrap(model) -> TextToSpeech:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def read_rows(manifest: str | Path) -> list[dict]:
    """The rows of a JSONL manifest of ``{"audio", "text", "voice"}`` and any other fields (such as
    ``speech_tts``' ``kind``), relative audio paths made relative to the manifest."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"manifest: expected a JSONL file, found nothing at {manifest}")
    rows = []
    for i, line in enumerate(manifest.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio, text, voice = row["audio"], row["text"], row["voice"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"manifest: expected {{\"audio\", \"text\", \"voice\"}} on line {i + 1} of "
                             f"{manifest}") from None
        path = Path(audio)
        rows.append({**row, "audio": str(path if path.is_absolute() else manifest.parent / path), "text": text,
                     "voice": voice})
    if not rows:
        raise InputError(f"manifest: expected at least one clip in {manifest}, found none")
    return rows


@torch.no_grad()
def encode_rows(model: TextToSpeech, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Clips -> {"codes": int16 [levels, total frames], "offsets": [n + 1], "text_ids": [n, text_length],
    "voice_ids": [n]}: each clip's codes (frames offsets[i]:offsets[i + 1]) and its text's ids."""
    codes, offsets = [], [0]
    for row in rows:
        c = model.codes_of(torch.from_numpy(load_audio(row["audio"]))[None])[0].cpu()
        codes.append(c.to(torch.int16))
        offsets.append(offsets[-1] + c.shape[-1])
    text_ids = torch.cat([model.gpt.text_ids([phonemes.speakable(r["text"])]).cpu() for r in rows])
    voice_ids = torch.tensor([model.gpt.voice_id(r["voice"]) for r in rows], dtype=torch.long)
    return {"codes": torch.cat(codes, dim=1).contiguous(), "offsets": torch.tensor(offsets, dtype=torch.long),
            "text_ids": text_ids.contiguous(), "voice_ids": voice_ids}


def load_or_encode(path: Path, model: TextToSpeech, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    """``encode_rows``, read from ``path`` when this run already wrote it."""
    if path.is_file():
        cache = load_file(path)
        expect(cache["voice_ids"].shape[0] == len(rows), "code_cache", f"the {len(rows)} clips this run was started "
               "with", cache["voice_ids"].shape[0])
        return cache
    cache = encode_rows(model, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(cache, str(tmp))
    tmp.replace(path)
    return cache


def collate(cache: dict[str, torch.Tensor], index: Sequence[int]) -> dict[str, torch.Tensor]:
    """Clips ``index`` of a cache, their codes padded to the longest: {"codes" [b, levels, T], "frames" [b],
    "text_ids", "voice_ids"} and "durations" when the cache has them."""
    offsets = cache["offsets"]
    pieces = [cache["codes"][:, offsets[i]:offsets[i + 1]].long() for i in index]
    frames = torch.tensor([p.shape[1] for p in pieces], dtype=torch.long)
    codes = torch.zeros(len(pieces), pieces[0].shape[0], int(frames.max()), dtype=torch.long)
    for j, p in enumerate(pieces):
        codes[j, :, :p.shape[1]] = p
    index = torch.as_tensor(list(index), dtype=torch.long)
    batch = {"codes": codes, "frames": frames, "text_ids": cache["text_ids"][index].long(),
             "voice_ids": cache["voice_ids"][index].long()}
    if "durations" in cache:
        batch["durations"] = cache["durations"][index].long()
    return batch


LENGTH_WINDOW = 8  # a batch's clips come from this many batch sizes of clips of neighbouring lengths


def make_batch_fn(cache: dict[str, torch.Tensor], keep: torch.Tensor, batch_size: int, seed: int):
    """batch_fn(step, rank, world_size): ``batch_size // world_size`` clips of ``keep`` drawn with
    replacement by the step's own generator from a random window of ``LENGTH_WINDOW * batch_size``
    clips of neighbouring lengths (so that little of a batch is padding), plus a generator for the
    text dropout."""
    lengths = cache["offsets"].diff()[keep]
    by_length = keep[torch.argsort(lengths, stable=True)]
    window = min(len(by_length), LENGTH_WINDOW * batch_size)

    def batch_fn(step: int, rank: int, world_size: int):
        generator = step_generator(seed, step, rank)
        start = int(torch.randint(len(by_length) - window + 1, (), generator=generator))
        picks = by_length[start + torch.randint(window, (batch_size // world_size,), generator=generator)]
        return {**collate(cache, picks.tolist()), "seed": torch.randint(2 ** 62, (), generator=generator)}
    return batch_fn


def _gpt_loss(gpt, batch, generator=None):
    device = gpt.head.weight.device
    return gpt.loss(*(batch[k].to(device) for k in ("voice_ids", "text_ids", "codes", "frames", "durations")),
                    generator)


def loss_fn(model, batch):
    return _gpt_loss(_unwrap(model).gpt, batch, torch.Generator().manual_seed(int(batch["seed"])))


def make_eval_fn(batch: dict[str, torch.Tensor]):
    @torch.no_grad()
    def eval_fn(model) -> dict[str, float]:
        loss, parts = _gpt_loss(_unwrap(model).eval().gpt, batch)  # eval mode: the text is never dropped
        return {"val_loss": float(loss), **{f"val_{k}": v for k, v in parts.items()}}
    return eval_fn


# ------------------------------------------------------------------------------------- durations
def aligner_loss_fn(model, batch):
    device = model.head.weight.device
    return model.loss(batch["codes"].to(device), batch["frames"].to(device), batch["text_ids"].to(device)), {}


def make_aligner_eval_fn(batch: dict[str, torch.Tensor]):
    @torch.no_grad()
    def eval_fn(model) -> dict[str, float]:
        loss, _ = aligner_loss_fn(model.eval(), batch)
        return {"val_ctc": float(loss)}
    return eval_fn


@torch.no_grad()
def all_durations(aligner: SpeechAligner, cache: dict[str, torch.Tensor], index: Sequence[int],
                  batch_size: int = 32) -> torch.Tensor:
    """Forced-alignment durations ``[len(index), text_length]`` (int16) of clips ``index`` of a cache."""
    aligner.eval()
    out = []
    for start in range(0, len(index), batch_size):
        b = collate(cache, index[start:start + batch_size])
        out.append(aligner.durations(b["codes"], b["frames"], b["text_ids"]).to(torch.int16))
    return torch.cat(out)


def load_or_align(out_dir: Path, cache: dict, keep: torch.Tensor, val_cache: dict, config: TextToSpeechGPTConfig,
                  train_config: TrainConfig, steps: int, progress: bool,
                  aligner: dict | None = None) -> tuple[dict, dict, dict]:
    """Train (or resume) the aligner in ``out_dir/aligner`` and write the durations of every
    training and validation clip to ``out_dir/durations.safetensors``; read them when there.
    ``aligner``: SpeechAlignerConfig fields that differ from the recipe's (``ALIGNER``)."""
    path = out_dir / DURATIONS_NAME
    info_path = out_dir / ALIGNER_DIR / "alignment.json"
    if not path.is_file():
        aligner_config = SpeechAlignerConfig(codebook_size=config.codebook_size, levels=config.levels,
                                             max_frames=config.max_frames, width=config.width, heads=config.heads,
                                             **{**ALIGNER, **(aligner or {})})
        torch.manual_seed(train_config.seed)
        aligner = SpeechAligner(aligner_config)
        folder = out_dir / ALIGNER_DIR
        options = train_config.replace(out_dir=str(folder), max_steps=steps, lr=1e-3, warmup_steps=min(200, steps),
                                       ema_decay=None, eval_every=max(steps // 3, 1), save_every=250, log_every=50)
        val = collate(val_cache, range(len(val_cache["voice_ids"])))
        trainer = Trainer(aligner, options, aligner_loss_fn,
                          batch_fn=make_batch_fn(cache, keep, options.batch_size, options.seed),
                          eval_fn=make_aligner_eval_fn(val), resume=(folder / CHECKPOINT_DIR).is_dir(),
                          progress=progress)
        summary, _ = trainer.train_run(run_file(folder, "aligner"), {"model": aligner_config.to_dict()})
        aligner = trainer.eval_model
        durations = torch.zeros(cache["text_ids"].shape, dtype=torch.int16)
        durations[keep] = all_durations(aligner, cache, keep.tolist())
        val_durations = all_durations(aligner, val_cache, list(range(len(val_cache["voice_ids"]))))
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"train": durations, "val": val_durations}, str(tmp))
        info_path.write_text(json.dumps({"steps": trainer.step, "train_seconds": trainer.train_seconds(),
                                         "model": aligner_config.to_dict(),
                                         **{k: v for k, v in summary.items() if k in ("loss", "val_ctc")}}, indent=2))
        tmp.replace(path)
    saved = load_file(path)
    expect(saved["train"].shape == cache["text_ids"].shape and saved["val"].shape == val_cache["text_ids"].shape,
           DURATIONS_NAME, "the durations of this run's clips", f"shapes {tuple(saved['train'].shape)}")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return {**cache, "durations": saved["train"]}, {**val_cache, "durations": saved["val"]}, info


def train_text2speech(out_dir: str | Path = RECIPE_TRAIN.out_dir, *, codec: str | Path,
                      steps: int = RECIPE_TRAIN.max_steps, batch_size: int = RECIPE_TRAIN.batch_size,
                      lr: float = RECIPE_TRAIN.lr, seed: int = 0, resume: bool = False,
                      config: TextToSpeechGPTConfig | None = None, manifest: str | Path | None = None,
                      val_manifest: str | Path | None = None, max_clips: int | None = None, progress: bool = True,
                      aligner_steps: int = ALIGNER_STEPS, aligner: dict | None = None, command: str | None = None,
                      lora: LoraOptions | None = None, init_from: str | Path | None = None,
                      **train_options: Any) -> dict:
    """Train a ``TextToSpeech`` GPT over the codes of the codec folder ``codec`` and write
    ``out_dir/model`` (see the module docstring). Returns the numbers of training.json.

    ``lora``: train a LoRA adapter on the GPT of the trained model ``lora.base`` instead (its codec
    and GPT settings; ``codec`` and ``config`` are not used), on clips of the base's voices (the
    durations come from an aligner trained on them, as in the recipe); ``out_dir/model`` is then the
    adapter's folder.

    ``init_from``: fine-tune a trained text-to-speech folder (or name): the run starts from its GPT's
    weights, with its GPT architecture, its voices (the manifest may hold any of them) and (``codec``
    None) its codec, under a fresh optimizer and learning-rate schedule; ``config`` may differ from its
    GPT only in ``TUNABLE_FIELDS``. The aligner and the durations are the run's own, as from scratch."""
    base = TextToSpeech.from_pretrained(resolve_model(lora.base)) if lora else None
    init_folder = source = None
    if init_from is not None:
        expect(lora is None, "init_from", "none with lora (an adapter starts from its base)", str(init_from))
        init_folder = resolve_model(init_from)
        source = TextToSpeech.from_pretrained(init_folder)
    codec_folder = (resolve_model(lora.base) / CODEC_DIR if lora else init_folder / CODEC_DIR
                    if source is not None and codec is None else resolve_model(codec))
    speech_codec = base.codec if lora else SpeechCodec.from_pretrained(codec_folder)
    if source is not None:
        expect(same_weights(speech_codec, source.codec), "init_from",
               f"a model over the run's codec (--codec), the weights in {init_folder / CODEC_DIR}", "other weights")
        check_init_architecture(source.config.gpt, config, init_folder, ARCHITECTURE_FIELDS)
    if manifest is None or val_manifest is None:
        from ..data.speech_tts import speech_tts_manifests  # builds the corpus on first use

        built = speech_tts_manifests()
        manifest, val_manifest = manifest or built["train"], val_manifest or built["val"]
    rows = read_rows(manifest)[:max_clips]
    val_rows = read_rows(val_manifest)[:64]
    voices = tuple(sorted({r["voice"] for r in rows}))
    if lora or source is not None:  # the starting model's GPT (and its voices, in its order)
        start = base.config.gpt if lora else source.config.gpt
        config = start if lora else start.replace(**{k: getattr(config, k) for k in TUNABLE_FIELDS} if config else {})
        unknown = sorted(set(voices) - set(config.voices))
        expect(not unknown, "manifest", f"clips of the {'base' if lora else 'starting model'}'s voices "
               f"({', '.join(config.voices)})", f"voices {', '.join(unknown)}")
        voices = config.voices
    else:
        config = (config or RECIPE_MODEL).replace(codebook_size=speech_codec.codebook_size, voices=voices)
        config = config.replace(levels=min(config.levels, speech_codec.levels))
    fields = {**RECIPE_TRAIN.to_dict(), **train_options, "out_dir": str(out_dir), "max_steps": steps,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    train_config = TrainConfig.from_dict(fields, where="train_options")
    out_dir = Path(out_dir)
    run = {"model": config.to_dict(), "codec": str(codec_folder.resolve()), "manifest": str(manifest),
           "clips": len(rows), "aligner_steps": aligner_steps, "aligner": {**ALIGNER, **(aligner or {})},
           **({"lora": lora.to_dict()} if lora else {}),
           **({"init_from": str(init_folder.resolve())} if init_folder else {})}
    if resume:
        check_resume_settings(run_file(out_dir, "text2speech"), run, "the model, codec and data",
                              configs={"model": TextToSpeechGPTConfig})
    torch.manual_seed(train_config.seed)
    model = base if lora else TextToSpeech(TextToSpeechConfig(gpt=config), speech_codec)
    if source is not None and not resume:
        model.gpt.load_state_dict(source.gpt.state_dict())
    cache = load_or_encode(out_dir / CODE_CACHE_NAME, model, rows)
    lengths = cache["offsets"].diff()
    keep = torch.nonzero(lengths <= config.max_frames).flatten()
    expect(len(keep) > 0, "manifest", f"clips of at most {config.max_frames} code frames", "none")
    val_rows = [r for r in val_rows if r["voice"] in voices]
    val_cache = encode_rows(model, val_rows)
    expect(int(val_cache["offsets"].diff().max()) <= config.max_frames, "val_manifest",
           f"clips of at most {config.max_frames} code frames", int(val_cache["offsets"].diff().max()))
    cache, val_cache, alignment = load_or_align(out_dir, cache, keep, val_cache, config, train_config, aligner_steps,
                                                progress, aligner)
    val = collate(val_cache, range(len(val_rows)))
    lora_record = None
    if lora:
        torch.manual_seed(train_config.seed)  # the adapter's initial weights
        lora_record = attach_lora(model, lora, within=["gpt."])
    trainer = Trainer(model, train_config, loss_fn, batch_fn=make_batch_fn(cache, keep, train_config.batch_size,
                                                                            train_config.seed),
                      eval_fn=make_eval_fn(val), resume=resume, progress=progress,
                      **adapter_trainer_options(lora))
    summary, seconds = trainer.train_run(run_file(out_dir, "text2speech"), run)
    if not trainer.is_main:
        return summary
    final = trainer.final_model(lambda folder: reload_adapter(model, folder)) if lora else trainer.eval_model.eval()
    seconds_of_audio = float(lengths[keep].sum()) / speech_codec.frame_rate
    training = {
        "command": command or f"train_text2speech({str(out_dir)!r}, codec={str(codec)!r}, steps={steps}, "
                              f"batch_size={batch_size}, lr={lr}, seed={seed})",
        "data": f"{len(keep)} clips ({seconds_of_audio / 3600:.2f} h) of {manifest}, voices {', '.join(voices)}; "
                f"{len(rows) - len(keep)} clips longer than {config.max_frames} code frames left out",
        **trainer.run_record(seconds),
        "parameters": {"gpt": count_parameters(final.gpt), "codec (frozen)": count_parameters(final.codec)},
        "codec": str(codec if codec is not None else codec_folder), "val_clips": len(val_rows),
        "eval": {k: v for k, v in summary.items() if k.startswith("val_")},
        "final_train": {k: summary[k] for k in ("loss", "codes_loss", "duration_loss") if k in summary},
        "aligner": alignment,
        "init_from": init_record(init_folder) if init_folder else None,
        "model": final.config.to_dict(),
        **({"lora": lora_record, "parameters": lora_record["trainable_parameters"]} if lora else {}),
    }
    card = (lambda tmp: adapter_card(training, "text-to-speech", "clips")) if lora else (lambda tmp: model_card(training, tmp))
    folder = publish_model(out_dir / MODEL_DIR, final, training, card,
                           save=adapter_save(final, lora))
    return {**training, "model_dir": str(folder)}


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of a text-to-speech GPT from its training.json (and the folder's
    evaluation.json, written by ``benchmarks/text_to_speech.py``, when present)."""
    c = TextToSpeechConfig.from_dict(info["model"])
    g = c.gpt
    summary = (f"Text to speech: a text encoder ({g.encoder_depth} bidirectional blocks over a voice "
               f"({', '.join(g.voices)}) and up to {g.text_length} {g.front_end} symbols) predicts how many code "
               f"frames each symbol lasts; a token GPT on the shared backbone ({g.depth} causal blocks, width "
               f"{g.width}, {g.heads} heads, learned positions), told at every frame which symbol it is saying, "
               f"writes {g.levels} residual levels of the speech codec in `codec/` ({g.codebook_size} codes per "
               f"level) by MusicGen's delay pattern; the codec decodes them to 16 kHz audio. The durations it "
               f"learns come from a CTC speech aligner's forced alignment of the training clips. Trained with the "
               f"text dropped {100 * g.cond_drop:.0f} % of the time for classifier-free guidance"
               + (f", and each code it reads replaced by a random one {100 * g.token_noise:.0f} % of the time (token "
                  f"noise, so that it follows the text rather than its own codes)." if g.token_noise else "."))
    usage = ("`multimodal.pipeline(\"text-to-speech\", model=this_folder)(\"call four zero seven\", voice=\"kal\", "
             "generator=torch.Generator().manual_seed(0))` -> `{\"audio\": float32 [samples], \"sampling_rate\": "
             "16000}`; command line: `multimodal generate speech \"...\" -o out.wav --model this_folder`.")
    ev = info["eval"]
    lines = [f"Teacher-forced loss on {info['val_clips']} validation clips: codes "
             f"{ev.get('val_codes_loss', float('nan')):.3f} nats per token, durations "
             f"{ev.get('val_duration_loss', float('nan')):.3f} (mean squared error of log(1 + frames)).", ""]
    judged = Path(folder) / "evaluation.json" if folder is not None else None
    if judged is not None and judged.is_file():
        ev = json.loads(judged.read_text())
        as_read = {(r["kind"], r["voice"]): r["wer"] for r in ev.get("as_read") or []}
        lines += [f"Intelligibility, judged by {ev['recogniser']} (`{ev['command']}`)"
                  + ("; beside it, the same texts read by the voice's own engine, which the model learned to "
                     "imitate:" if as_read else ":"), "",
                  *markdown_table(("texts", "voice", "words", "word error rate",
                                   *(["as read by the voice's engine"] if as_read else [])),
                                  [(r["kind"], r["voice"], str(r["words"]), f"{100 * r['wer']:.1f} %",
                                    *([f"{100 * as_read[r['kind'], r['voice']]:.1f} %"] if as_read else []))
                                   for r in ev["rows"]], "llrrr" if as_read else "llrr"), ""]
        held_out = ev.get("held_out_voices") or []
        if held_out:
            lines += ["The same texts read by held-out voices that no model here trains on (slt, pico), judged by "
                      "the same ear: what clear synthetic speech scores with it.", "",
                      *markdown_table(("texts", "held-out voice", "words", "word error rate"),
                                      [(r["kind"], r["voice"], str(r["words"]), f"{100 * r['wer']:.1f} %")
                                       for r in held_out], "llrr"), ""]
    return build_model_card("Text to speech (codec-token GPT)", summary, info, usage=usage,
                            details=[*([init_text(info["init_from"], info["steps"]).removeprefix("- ")]
                                       if info.get("init_from") else []),
                                     f"Front end: {g.front_end} (`multimodal.tokenizers.phonemes`)."],
                            unit="clips", evaluation="\n".join(lines), notes=card_notes(folder))


# --------------------------------------------------------------------------------------------- CLI
def add_train_text2speech_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train text2speech``: the codec, the GPT and every TrainConfig flag."""
    m = RECIPE_MODEL
    parser.add_argument("--codec", default=None, help="the speech codec folder or name whose codes the GPT writes "
                                                      "(required, but for `train lora`: the base's; with --init-from: "
                                                      "the folder's)")
    parser.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                        help="fine-tune: start from the GPT weights and codec of a trained folder or name (e.g. "
                             "text2speech-gpt), with its GPT architecture and voices, a fresh optimizer and this "
                             "command's training settings")
    model = parser.add_argument_group("GPT")
    for name, default in (("width", m.width), ("depth", m.depth), ("encoder-depth", m.encoder_depth),
                          ("heads", m.heads), ("levels", m.levels), ("text-length", m.text_length),
                          ("max-frames", m.max_frames)):
        model.add_argument(f"--{name}", type=int, default=default, help=f"(default {default})")
    model.add_argument("--front-end", choices=phonemes.FRONT_ENDS, default=m.front_end, help=f"(default {m.front_end})")
    model.add_argument("--dropout", type=float, default=m.dropout, help=f"(default {m.dropout})")
    model.add_argument("--cond-drop", type=float, default=m.cond_drop,
                       help=f"probability of the empty text in training (default {m.cond_drop})")
    model.add_argument("--token-noise", type=float, default=m.token_noise,
                       help=f"probability that an input code is replaced by a random one in training "
                            f"(default {m.token_noise})")
    model.add_argument("--aligner-steps", type=int, default=ALIGNER_STEPS,
                       help=f"training steps of the CTC aligner that finds the durations (default {ALIGNER_STEPS})")
    a = SpeechAlignerConfig(**ALIGNER)
    model.add_argument("--aligner-kind", choices=ALIGNER_KINDS, default=a.kind,
                       help=f"the aligner's network: whole-clip transformer or local convolutions (default {a.kind})")
    model.add_argument("--aligner-blanks", choices=BLANK_RULES, default=a.blanks,
                       help="frames the aligner calls blank: split between the symbols around them, or each to "
                            f"the symbol it leans to (default {a.blanks})")
    model.add_argument("--aligner-depth", type=int, default=a.depth, help=f"(default {a.depth})")
    data = parser.add_argument_group("data")
    data.add_argument("--manifest", default=None,
                      help="JSONL manifest of {audio, text, voice} (default: the speech-tts corpus, built on first use)")
    data.add_argument("--val-manifest", default=None, help="JSONL manifest of validation clips")
    data.add_argument("--max-clips", type=int, default=None, help="use only the first N training clips")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def _config_for_init(init_from: str, asked: TextToSpeechGPTConfig) -> TextToSpeechGPTConfig:
    """With ``--init-from``: the folder's GPT, with the command's tunable fields; a GPT flag set to
    other than its default must agree with the folder."""
    return init_config(init_from, "text-to-speech", asked, RECIPE_MODEL, ARCHITECTURE_FIELDS,
                       TUNABLE_FIELDS)


def run_train_text2speech(args: argparse.Namespace) -> dict:
    """``multimodal train text2speech``: train, write ``<out-dir>/model`` and print where."""
    lora = getattr(args, "lora", None)  # set by `multimodal train lora`: adapt the base, its own settings
    init_from = getattr(args, "init_from", None)
    if lora is None and args.codec is None and init_from is None:
        raise InputError("--codec: expected the speech codec folder or name whose codes the GPT writes, found none")
    config = RECIPE_MODEL.replace(width=args.width, depth=args.depth, encoder_depth=args.encoder_depth,
                                  heads=args.heads, levels=args.levels,
                                  text_length=args.text_length, max_frames=args.max_frames, front_end=args.front_end,
                                  dropout=args.dropout, cond_drop=args.cond_drop, token_noise=args.token_noise)
    config = TextToSpeechGPTConfig.from_dict(config.to_dict())
    if init_from is not None:
        config = _config_for_init(init_from, config)
    fields = train_config_from_args(args).to_dict()
    named = {k: fields.pop(k) for k in ("out_dir", "max_steps", "batch_size", "lr", "seed")}
    result = train_text2speech(named["out_dir"], codec=args.codec, steps=named["max_steps"],
                               batch_size=named["batch_size"], lr=named["lr"], seed=named["seed"], resume=args.resume,
                               config=config, manifest=args.manifest, val_manifest=args.val_manifest,
                               max_clips=args.max_clips, progress=args.progress, aligner_steps=args.aligner_steps,
                               aligner=dict(kind=args.aligner_kind, blanks=args.aligner_blanks,
                                            depth=args.aligner_depth),
                               command=command_line(args, "multimodal train lora" if lora else
                                                    "multimodal train text2speech"), lora=lora, init_from=init_from,
                               **fields)
    if "model_dir" in result:
        print(", ".join(f"{k} {v:.3f}" for k, v in result["eval"].items()))
        print(f"model: {result['model_dir']}")
    return result
