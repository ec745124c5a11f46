"""Fine-tuning Whisper on (audio, text) manifests: ``multimodal train whisper`` and ``evaluate whisper``.

A manifest is a JSONL file, one ``{"audio": path, "text": ...}`` object per line (other keys are
ignored; a relative path is relative to the manifest's folder). Every clip must fit one 30-s
window. ``--manifest speech-digits`` names the built-in spoken-digit corpus
(``multimodal.data.speech_digits``), built into the cache on first use, with its own val split.

The model sees each clip exactly as transcription does (``clip_mel``): the clip's log-mel frames,
normalised as ``log_mel_spectrogram(audio, padding=N_SAMPLES)`` normalises them, then zero frames up to
3000, the pipeline's window for a clip of at most 30 s. The decoder is
trained with teacher forcing on ``<|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>
text <|endoftext|>``; with ``--timestamp-mix`` (the default) every clip also appears once in the
timestamped form ``<|startoftranscript|> <|0.00|> text <|T|> <|endoftext|>``, T its duration, which
is what the pipeline decodes by default. The loss is the mean cross-entropy over the tokens after
the prompt: the prompt tokens are inputs only, never targets.

``--freeze-encoder`` trains the decoder alone. The encoder's outputs for every clip are then
computed once (float32, stored as float16) into ``<cache>/whisper-features/<key>/``, keyed by the
encoder's weights and the audio files, and reused by later runs; an interrupted pass continues.

Run folder (``--out-dir``): the trainer's files (``checkpoint/``, ``best/``, metrics.jsonl, loss.png),
``whisper_run.json`` (what a resumed run must match) and, at the end, ``model/``: the best weights
by validation WER as a folder the speech-recognition pipeline loads (config.json, model.safetensors,
generation_config.json, tokenizer.json), with ``training.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..checkpoint import atomic_path, atomic_write_text, count_parameters, find_dir
from ..errors import InputError
from ..models.whisper import Whisper
from ..generation.transcribe import Fallback, WindowedLogMel, decode_with_fallback
from ..generation.whisper_decoding import DecodingOptions, decode
from ..paths import cache_dir, resolve_model
from ..media.audio import SAMPLE_RATE, load_audio
from ..tokenizers.mel import N_FRAMES, N_SAMPLES
from ..tokenizers.whisper_text import WhisperTokenizer
from ..lora import save_lora
from .config import TrainConfig, add_train_args, train_config_from_args
from .lora import adapter_saver, attach_lora, lora_card_lines, reload_adapter
from .runs import (BEST_DIR, MODEL_DIR, build_model_card, card_notes, check_resume_settings, command_line,
                   publish_model, run_file)
from .trainer import Trainer

IGNORE = -100
BUILTIN_CORPUS = "speech-digits"

# Sized for 2 CPU cores with a frozen encoder: speech-digits' 550 clips in both target forms, ~1.7 epochs.
RECIPE_TRAIN = TrainConfig(out_dir="runs/whisper", max_steps=120, batch_size=16, lr=3e-5, weight_decay=0.01,
                           warmup_steps=12, min_lr_ratio=0.1, grad_clip=1.0, eval_every=30, save_every=30,
                           log_every=10, select_metric="val_wer", select_mode="min")


# ---------------------------------------------------------------------------------- manifests
@dataclass(frozen=True)
class ManifestEntry:
    audio: Path
    text: str
    line: int  # 1-based line in the manifest, for messages


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of a JSONL manifest; a bad line raises InputError naming the file and line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"manifest: expected a JSONL file of {{\"audio\", \"text\"}} objects, found "
                         f"{'a folder' if path.is_dir() else 'nothing'} at {path}")
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: expected a JSON object, found invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object, found {type(row).__name__}")
            missing = [k for k in ("audio", "text") if k not in row]
            if missing:
                raise InputError(f"{where}: expected keys \"audio\" and \"text\", found no {', '.join(missing)} "
                                 f"(keys: {', '.join(row) or 'none'})")
            audio, text = row["audio"], row["text"]
            if not isinstance(audio, str) or not audio:
                raise InputError(f"{where}: expected \"audio\" to be a file path, found {audio!r}")
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{where}: expected a non-empty \"text\", found {text!r}")
            file = Path(audio).expanduser()
            file = file if file.is_absolute() else path.parent / file
            if not file.is_file():
                raise InputError(f"{where}: expected an audio file, found no file at {file}")
            entries.append(ManifestEntry(file, text.strip(), number))
    if not entries:
        raise InputError(f"manifest: expected at least one entry in {path}, found none")
    return entries


def _manifest_digest(entries: Sequence[ManifestEntry]) -> str:
    h = hashlib.sha256()
    for e in entries:
        stat = e.audio.stat()
        h.update(json.dumps([str(e.audio.resolve()), stat.st_size, stat.st_mtime_ns, e.text]).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- features
def load_clip(entry: ManifestEntry) -> np.ndarray:
    """16 kHz mono samples of a manifest entry; at most one 30-s window."""
    audio = load_audio(str(entry.audio))
    if len(audio) > N_SAMPLES:
        raise InputError(f"manifest line {entry.line}: expected audio of at most 30 s, found "
                         f"{len(audio) / SAMPLE_RATE:.1f} s in {entry.audio}")
    if len(audio) == 0:
        raise InputError(f"manifest line {entry.line}: expected audio, found an empty file {entry.audio}")
    return audio


def clip_mel(audio: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """[n_mels, 3000]: the speech-recognition pipeline's window of a clip of at most 30 s, computed by
    the same code: the clip's normalised log-mel frames (one per 160 samples), then zeros, as
    openai-whisper pads a short window. (Zeros, not the log-mel of silence: a model trained on the
    one and run on the other hears a different end of every short clip.)"""
    samples = np.asarray(audio, dtype=np.float32)
    mel = WindowedLogMel(lambda: iter([samples]), n_mels)
    return mel.window(0, min(N_FRAMES, mel.content_frames))[0]


FEATURES_FORM = "window"  # names what clip_mel computes in the feature cache's folder names
# ``transcribe_features`` arguments that decode as the speech-recognition pipeline does by default
PIPELINE_DECODING = dict(beam_size=5, timestamps=True, fallback=True)


def encoder_key(model: Whisper) -> str:
    h = hashlib.sha256()
    for name, tensor in model.encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _clip_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()[:24]


class CachedFeatures:
    """Encoder outputs of a list of clips, one float16 ``.npy`` per clip in a cache folder:
    ``features[i]`` -> ``[n_audio_ctx, n_audio_state]``; ``len(features)``."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return np.stack([np.load(p) for p in self.paths[i]])
        return np.load(self.paths[i])


@torch.no_grad()
def encoder_features(model: Whisper, entries: Sequence[ManifestEntry], *, batch_size: int = 8,
                     folder: str | os.PathLike | None = None,
                     progress: bool = True) -> tuple[CachedFeatures, np.ndarray]:
    """Encoder outputs of every entry (``CachedFeatures``, float32 computed, stored float16) and the
    durations ``[N]`` in seconds. Each clip is encoded once into ``folder`` (default
    ``<cache>/whisper-features/<hash of the encoder weights>-window``), named by its path, size and mtime,
    so other manifests and later runs with the same encoder reuse it, and an interrupted pass
    continues where it stopped."""
    cfg = model.config
    folder = Path(folder) if folder is not None else cache_dir() / "whisper-features" / f"{encoder_key(model)}-{FEATURES_FORM}"
    folder.mkdir(parents=True, exist_ok=True)
    keys = [_clip_key(e.audio) for e in entries]
    paths = [folder / f"{k}.npy" for k in keys]
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc="encoding audio", unit="clip",
               disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            index = todo[start:start + batch_size]
            clips = [load_clip(entries[i]) for i in index]
            mel = torch.stack([clip_mel(a, cfg.n_mels) for a in clips])
            out = model.embed_audio(mel).float().cpu().numpy().astype(np.float16)
            for row, i, audio in zip(out, index, clips):
                atomic_write_text(folder / f"{keys[i]}.json", json.dumps({"duration": len(audio) / SAMPLE_RATE}))
                with atomic_path(paths[i]) as tmp:  # the .npy last: its presence means done
                    with open(tmp, "wb") as f:
                        np.save(f, row)
            bar.update(len(index))
    finally:
        bar.close()
        model.train(was_training)
    durations = np.array([json.loads((folder / f"{k}.json").read_text())["duration"] for k in keys], np.float32)
    return CachedFeatures(paths), durations


# ------------------------------------------------------------------------------------ targets
def target_tokens(tokenizer: WhisperTokenizer, text: str, *, timestamps: bool = False,
                  duration: float | None = None) -> tuple[list[int], int]:
    """(full token sequence, prompt length): prompt, text (between <|0.00|> and the end timestamp
    when ``timestamps``), <|endoftext|>."""
    language = "en" if tokenizer.multilingual else None
    prompt = list(tokenizer.sot_sequence(language, "transcribe", timestamps))
    body = tokenizer.encode(" " + text.strip())
    if timestamps:
        end = min(max(duration or 0.0, 0.02), 30.0)
        body = [tokenizer.timestamp_token(0.0), *body, tokenizer.timestamp_token(end)]
    return [*prompt, *body, tokenizer.eot], len(prompt)


class WhisperClips(Dataset):
    """Examples ``(audio, tokens, prompt_len)``: ``audio`` the cached encoder features when given,
    else the clip's log-mel. With ``timestamp_mix`` each clip appears twice: plain, then timestamped."""

    def __init__(self, entries: Sequence[ManifestEntry], tokenizer: WhisperTokenizer, *,
                 features: CachedFeatures | None = None, durations: np.ndarray | None = None,
                 timestamp_mix: bool = False, n_mels: int = 80):
        self.entries, self.tokenizer, self.features, self.n_mels = list(entries), tokenizer, features, n_mels
        self.durations, self.forms = durations, 2 if timestamp_mix else 1

    def __len__(self) -> int:
        return len(self.entries) * self.forms

    def __getitem__(self, i: int):
        clip, form = divmod(i, self.forms)
        if self.features is not None:
            audio = torch.from_numpy(self.features[clip].astype(np.float32))
            duration = float(self.durations[clip])
        else:
            samples = load_clip(self.entries[clip])
            audio, duration = clip_mel(samples, self.n_mels), len(samples) / SAMPLE_RATE
        tokens, prompt = target_tokens(self.tokenizer, self.entries[clip].text, timestamps=form == 1, duration=duration)
        return audio, tokens, prompt


def collate(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio [B, ...], inputs [B, L], targets [B, L]): targets are the next tokens, IGNORE on the
    prompt and the padding."""
    L = max(len(tokens) for _, tokens, _ in batch) - 1
    inputs = torch.zeros(len(batch), L, dtype=torch.long)
    targets = torch.full((len(batch), L), IGNORE, dtype=torch.long)
    for b, (_, tokens, prompt) in enumerate(batch):
        seq = torch.tensor(tokens)
        inputs[b, :len(seq) - 1] = seq[:-1]
        targets[b, prompt - 1:len(seq) - 1] = seq[prompt:]
    return torch.stack([a for a, _, _ in batch]), inputs, targets


def _logits(model: Whisper, audio: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    if tuple(audio.shape[1:]) == (cfg.n_audio_ctx, cfg.n_audio_state):  # cached encoder outputs
        return model.logits(inputs, audio)
    return model(audio, inputs)


def loss_fn(model: Whisper, batch) -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over the target tokens (prompt and padding masked), and token accuracy."""
    audio, inputs, targets = batch
    logits = _logits(model, audio, inputs)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    mask = targets != IGNORE
    acc = (logits.argmax(-1) == targets)[mask].float().mean()
    return loss, {"token_acc": acc}


# --------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def transcribe_features(model: Whisper, tokenizer: WhisperTokenizer, features, *, beam_size: int | None = None,
                        timestamps: bool = False, batch_size: int = 16, fallback: bool = False) -> list[str]:
    """One 30-s window per row of ``features`` ([N, n_audio_ctx, n_audio_state], or log-mels
    [N, n_mels, 3000]) decoded at temperature 0: greedy, or beam search with ``beam_size``.

    ``fallback``: decode as the speech-recognition pipeline decodes a clip of at most 30 s with its
    defaults: a window whose output is too improbable or too repetitive is decoded again by best-of-5
    sampling at rising temperatures (each clip's sampling seeded 0), and a window judged silent
    gives no text."""
    if fallback:
        rule = Fallback()
        options = DecodingOptions(beam_size=beam_size, best_of=5, without_timestamps=not timestamps, prompt=[])
        jobs = [(torch.as_tensor(np.asarray(f, dtype=np.float32)), options, torch.Generator().manual_seed(0))
                for f in features]
        return ["" if rule.is_silent(r) else r.text
                for r in decode_with_fallback(model, tokenizer, jobs, rule, batch_size=batch_size)]
    options = DecodingOptions(beam_size=beam_size, without_timestamps=not timestamps, sample_len=96)
    texts = []
    for start in range(0, len(features), batch_size):
        chunk = torch.as_tensor(np.asarray(features[start:start + batch_size], dtype=np.float32))
        texts += [r.text for r in decode(model, tokenizer, chunk, options)]
    return texts


def score(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Word error rate and the fraction of utterances transcribed exactly (after normalisation)."""
    from ..evaluation.wer import word_edits, word_error_rate

    exact = sum(word_edits(r, h)[0] == 0 for r, h in zip(references, hypotheses))
    return {"wer": word_error_rate(references, hypotheses), "exact": exact / max(len(references), 1)}


def make_eval_fn(val: WhisperClips, tokenizer: WhisperTokenizer, batch_size: int = 16):
    """eval_fn(model) -> val_loss (teacher-forced, plain form), val_wer and val_exact (greedy)."""
    references = [e.text for e in val.entries]

    def eval_fn(model):
        losses, counts = [], []
        for start in range(0, len(val.entries), batch_size):
            batch = collate([val[i * val.forms] for i in range(start, min(start + batch_size, len(val.entries)))])
            audio, inputs, targets = batch
            logits = _logits(model, audio.to(model.device), inputs.to(model.device))
            n = int((targets != IGNORE).sum())
            losses.append(float(F.cross_entropy(logits.flatten(0, 1).float(), targets.to(model.device).flatten(),
                                                ignore_index=IGNORE)) * n)
            counts.append(n)
        source = val.features if val.features is not None else [val[i * val.forms][0].numpy()
                                                                for i in range(len(val.entries))]
        hypotheses = transcribe_features(model, tokenizer, source, batch_size=batch_size)
        s = score(references, hypotheses)
        return {"val_loss": sum(losses) / max(sum(counts), 1), "val_wer": s["wer"], "val_exact": s["exact"]}

    return eval_fn


# ------------------------------------------------------------------------------------ train CLI
def add_train_whisper_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train whisper``."""
    parser.add_argument("--manifest", required=True,
                        help=f"training JSONL of {{\"audio\", \"text\"}} objects, or {BUILTIN_CORPUS!r}")
    parser.add_argument("--val-manifest", default=None,
                        help=f"validation JSONL that picks the best weights (default: {BUILTIN_CORPUS}'s val split "
                             "with --manifest speech-digits, else none)")
    parser.add_argument("--init", default="tiny.en", help="the Whisper checkpoint to start from (default tiny.en)")
    parser.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=True,
                        help="train the decoder only, on encoder outputs cached once per clip (default: on)")
    parser.add_argument("--timestamp-mix", action=argparse.BooleanOptionalAction, default=True,
                        help="train on the timestamped target form too (default: on)")
    parser.add_argument("--save-dtype", choices=("float32", "float16"), default="float32",
                        help="dtype of model/model.safetensors (default float32)")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def init_folder(name: str) -> Path:
    """The checkpoint folder ``--init`` names (``tiny.en`` is the default Whisper tiny.en)."""
    from ..convert.whisper import DEFAULT_NAME, default_model_path

    if name in ("tiny.en", DEFAULT_NAME) and not Path(name).exists():
        return default_model_path()
    folder = resolve_model(name)
    if not (folder / "tokenizer.json").is_file() or not (folder / "config.json").is_file():
        raise InputError(f"init: expected a Whisper checkpoint folder with config.json and tokenizer.json, "
                         f"found {folder}")
    return folder


def _manifests(args) -> tuple[Path, Path | None]:
    if args.manifest == BUILTIN_CORPUS:
        from ..data.speech_digits import speech_digits_manifests

        paths = speech_digits_manifests()
        return paths["train"], Path(args.val_manifest) if args.val_manifest else paths["val"]
    return Path(args.manifest), Path(args.val_manifest) if args.val_manifest else None


def run_train_whisper(args: argparse.Namespace) -> dict:
    """``multimodal train whisper``: fine-tune, keep the best weights by validation WER, write ``<out-dir>/model``."""
    train_path, val_path = _manifests(args)
    train_entries = read_manifest(train_path)
    val_entries = read_manifest(val_path) if val_path is not None else None
    source = init_folder(args.init)
    tokenizer = WhisperTokenizer.from_file(source / "tokenizer.json")
    from ..convert.whisper import load_whisper

    model = load_whisper(source)
    train_config = train_config_from_args(args)
    if val_entries is None and train_config.select_metric is not None:
        train_config = train_config.replace(select_metric=None)
    device = torch.device("cuda" if train_config.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if train_config.device == "auto" else train_config.device))
    model.to(device)
    if args.freeze_encoder:
        model.encoder.requires_grad_(False)
    lora = getattr(args, "lora", None)  # set by `multimodal train lora`
    lora_record = attach_lora(model, lora, within=["decoder."] if args.freeze_encoder else None) if lora else None

    def dataset(entries, mix):
        if args.freeze_encoder:
            features, durations = encoder_features(model, entries, progress=args.progress)
            return WhisperClips(entries, tokenizer, features=features, durations=durations, timestamp_mix=mix)
        return WhisperClips(entries, tokenizer, timestamp_mix=mix, n_mels=model.config.n_mels)

    train_set = dataset(train_entries, args.timestamp_mix)
    val_set = dataset(val_entries, False) if val_entries is not None else None
    run = {"train_manifest": str(train_path.resolve()), "train_digest": _manifest_digest(train_entries),
           "val_manifest": str(val_path.resolve()) if val_path else None, "init": str(source),
           "freeze_encoder": args.freeze_encoder, "timestamp_mix": args.timestamp_mix,
           **({"lora": lora.to_dict()} if lora else {})}
    out_dir = Path(train_config.out_dir)
    before = None
    if args.resume:
        saved = check_resume_settings(run_file(out_dir, "whisper"), run, "the data, model and recipe")
        before = saved.get("val_before")
    eval_fn = make_eval_fn(val_set, tokenizer) if val_set is not None else None
    if eval_fn is not None and not args.resume:
        model.eval()
        with torch.no_grad():
            before = eval_fn(model)
        print("before: " + ", ".join(f"{k} {v:.4f}" for k, v in before.items()))
    trainer = Trainer(model, train_config, loss_fn, dataset=train_set, collate_fn=collate, eval_fn=eval_fn,
                      resume=args.resume, progress=args.progress, trainable_only=lora is not None,
                      save_best=adapter_saver(lora) if lora else None)
    summary, seconds = trainer.train_run(run_file(out_dir, "whisper"), {**run, "val_before": before})
    if not trainer.is_main:
        return summary

    best = find_dir(out_dir / BEST_DIR)
    final = trainer.final_model(lambda folder: reload_adapter(model, folder) if lora else
                                Whisper.from_pretrained(folder))
    final.generation_config = model.generation_config
    evals = [r for r in trainer.history if r.get("kind") == "eval"]
    best_eval = min(evals, key=lambda r: r["val_wer"]) if evals else None
    command = command_line(args, "multimodal train lora" if lora else "multimodal train whisper")
    training = {"command": command, **run, "train_clips": len(train_entries),
                "train_examples": len(train_set), "val_clips": len(val_entries) if val_entries else 0,
                **trainer.run_record(seconds), "epochs": trainer.step * train_config.batch_size / len(train_set),
                "best_step": best_eval["step"] if best_eval else trainer.step,
                "val_before": before, "val_best": best_eval,
                **({"lora": lora_record, "parameters": lora_record["trainable_parameters"]} if lora
                   else {"parameters": count_parameters(final)})}
    if lora:
        folder = publish_model(out_dir / MODEL_DIR, final, training, lambda tmp: model_card(training, tmp),
                               save=lambda tmp: save_lora(final, tmp, base=lora.base))
    else:
        folder = publish_model(out_dir / MODEL_DIR, final, training, lambda tmp: model_card(training, tmp),
                               dtype=getattr(torch, args.save_dtype),
                               extra_files={"tokenizer.json": source / "tokenizer.json"})
    if best is not None and not lora:  # best/ loads with the pipeline too
        shutil.copyfile(source / "tokenizer.json", best / "tokenizer.json")
    print(f"model: {folder}")
    return {**summary, "model": str(folder)}


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of a fine-tuned Whisper from its training.json (``info``) and the folder's card_notes.md."""
    def numbers(r):
        return ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k.startswith("val_")) if r else "not measured"

    if "lora" in info:
        summary = (f"A LoRA adapter for Whisper `{info['lora']['base']}`, trained with `multimodal train lora` "
                   f"({'decoder only, encoder frozen' if info['freeze_encoder'] else 'encoder and decoder'}).")
    else:
        summary = (f"Whisper fine-tuned from `{info['init']}` with `multimodal train whisper` "
                   f"({'decoder only, encoder frozen' if info['freeze_encoder'] else 'encoder and decoder'}).")
    data = f"{info['train_manifest']} ({info['train_clips']:,} clips, {info['train_examples']:,} examples)"
    results = [("validation data", f"{info['val_manifest']} ({info['val_clips']:,} clips)"),
               ("validation before", numbers(info["val_before"])),
               (f"validation, best (step {info['best_step']})", numbers(info["val_best"]))]
    return build_model_card("Whisper, LoRA adapter" if "lora" in info else "Whisper, fine-tuned", summary, info,
                            data=data, results=results,
                            usage='Load: `multimodal.pipeline("automatic-speech-recognition", model=this_folder)`.',
                            details=lora_card_lines(info) if "lora" in info else (), notes=card_notes(folder))


# --------------------------------------------------------------------------------- evaluate CLI
def add_evaluate_whisper_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal evaluate whisper``."""
    parser.add_argument("checkpoint", help="a Whisper checkpoint folder or name (e.g. runs/whisper/model, tiny.en)")
    parser.add_argument("--manifest", required=True, help=f"JSONL of {{\"audio\", \"text\"}} objects, or "
                                                          f"{BUILTIN_CORPUS!r} (its held-out test speaker)")
    parser.add_argument("--beam-size", type=int, default=None, help="beam search width (default: greedy)")
    parser.add_argument("--timestamps", action="store_true", help="decode with timestamp tokens")
    parser.add_argument("--pipeline", action="store_true",
                        help="decode exactly as the speech-recognition pipeline does by default (beam 5, timestamps, "
                             "temperature fallback): the text is the pipeline's; overrides --beam-size and --timestamps")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def run_evaluate_whisper(args: argparse.Namespace) -> dict:
    """``multimodal evaluate whisper``: WER and exact-match rate of a checkpoint on a manifest."""
    from ..convert.whisper import load_whisper

    if args.manifest == BUILTIN_CORPUS:
        from ..data.speech_digits import speech_digits_manifests

        manifest = speech_digits_manifests()["test"]
    else:
        manifest = Path(args.manifest)
    entries = read_manifest(manifest)
    folder = init_folder(args.checkpoint)
    model = load_whisper(folder)
    tokenizer = WhisperTokenizer.from_file(folder / "tokenizer.json")
    features, _ = encoder_features(model, entries, progress=args.progress)
    decoding = PIPELINE_DECODING if args.pipeline else dict(beam_size=args.beam_size, timestamps=args.timestamps)
    hypotheses = transcribe_features(model, tokenizer, features, **decoding)
    result = {"manifest": str(manifest), "clips": len(entries), "decoding": decoding,
              **score([e.text for e in entries], hypotheses)}
    print(f"{len(entries)} clips: WER {100 * result['wer']:.2f} %, exactly right {100 * result['exact']:.2f} %")
    return result
