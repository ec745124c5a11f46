"""Training text-to-image on the captioned world: ``multimodal train text2image``.

::

    multimodal train vae --block-out-channels 16 32 64 --norm-num-groups 8 --out-dir runs/vae   # first
    multimodal train text2image --objective dit --vae runs/vae/model --out-dir runs/t2i-dit
    multimodal train text2image --objective sit --vae runs/vae/model --out-dir runs/t2i-sit
    multimodal train text2image ... --resume                     # continue a stopped run
    multimodal train text2image --vae runs/vae/model --init-from runs/t2i-sit/model --out-dir runs/t2i-sit-ft

**Tokenizer.** Unless ``--tokenizer`` names a ``tokenizer.json``, a byte-level BPE of
``--vocab-size`` tokens is trained first on every caption template of every training combination
(``world.caption_corpus``) plus a general offline corpus (``--corpus`` files; by default the Python
documentation sources of Debian's ``python3.11-doc`` when installed), and kept in the run folder,
where a resumed run finds it.

**Data.** Batches of (image, caption) stream from ``CaptionedWorld("train")``; the batch of
optimizer step ``s`` is drawn with its own generator seeded by ``(seed, s, rank)``, so a resumed run
sees what an uninterrupted one would. Held-out combinations are never rendered.

**Model and loss.** ``TextToImage``: the text encoder and the DiT denoiser train jointly on the
objective's loss (``--objective dit``: DDPM ε; ``sit``: interpolant velocity) over the frozen
autoencoder's latents, with 10 % of captions dropped (``--cfg-dropout``) for classifier-free
guidance. EMA weights (``--ema-decay``, on in the recipe) are what is saved and sampled.

**Fine-tuning.** ``--init-from`` starts a new run (fresh optimizer and schedule) from a published
folder's text encoder, denoiser and tokenizer; the architecture and objective are the folder's, the
loss options (``--min-snr-gamma``, ``--time-sampling``) and training settings this command's. The
autoencoder must be the folder's. Its card names the starting model (and, for a fine-tune of a
fine-tune, the whole chain with the steps of every run).

**Evaluation during training.** The loss on fixed batches (fixed noise and times) of seen and of
held-out combinations, every ``--eval-every`` steps. Prompt accuracy needs the judge:
``python -m benchmarks.text_to_image``.

Run folder: the trainer's files, ``t2i_run.json`` (what a resumed run must match), ``tokenizer.json``
and ``model/`` (a ``TextToImage.from_pretrained`` folder with training.json and MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import torch

from ..checkpoint import CONFIG_NAME, count_parameters
from ..config import read_json
from ..data.world import CaptionedWorld, caption_corpus
from ..errors import InputError, expect
from ..models.autoencoder import Autoencoder
from ..models.dit import DiTConfig
from ..models.text2image import OBJECTIVES, TOKENIZER_NAME, TextToImage, TextToImageConfig
from ..models.text_encoder import TextEncoderConfig
from ..tokenizers.text import TextTokenizer
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import (CARD_NAME, MODEL_DIR, TRAINING_NAME, build_model_card, card_notes, check_resume_settings,
                   command_line, init_record, init_text, markdown_table, publish_model, read_training, run_file)
from .trainer import Trainer
GENERAL_CORPUS = Path("/usr/share/doc/python3.11/html/_sources")
HELD_OUT_SEED, SEEN_SEED, EVAL_NOISE_SEED = 20_001, 20_002, 20_003

RECIPE_TRAIN = TrainConfig(out_dir="runs/t2i", max_steps=5000, batch_size=128, lr=5e-4, weight_decay=0.0,
                           warmup_steps=500, min_lr_ratio=0.1, grad_clip=1.0, ema_decay=0.999, eval_every=1000,
                           save_every=500, log_every=50)


# -------------------------------------------------------------------------------------- tokenizer
def general_corpus_files(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """The general text the BPE also learns from: ``paths`` (files or folders, read recursively), or
    the Python documentation sources when installed; else none."""
    roots = [Path(p) for p in paths] if paths is not None else ([GENERAL_CORPUS] if GENERAL_CORPUS.is_dir() else [])
    files: list[Path] = []
    for root in roots:
        expect(root.exists(), "corpus", "existing files or folders", str(root))
        files += sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    return files


def train_caption_tokenizer(vocab_size: int = 4096, corpus: Iterable[str | Path] | None = None) -> TextTokenizer:
    """A byte-level BPE on every training caption (each template of each combination, repeated so that
    caption words are merged whole) plus the general corpus."""
    captions = caption_corpus("train")
    return TextTokenizer.train(general_corpus_files(corpus) or None, iterator=captions * 4, vocab_size=vocab_size,
                               special_tokens=("<|endoftext|>", "<|pad|>"))


# ------------------------------------------------------------------------------------------- data
def make_batch_fn(world: CaptionedWorld, batch_size: int, seed: int):
    """batch_fn(step, rank, world_size) -> (uint8 images [b, 3, H, W], captions [b]) of step ``step``."""
    def batch_fn(step: int, rank: int, world_size: int):
        batch = world.sample(batch_size // world_size, step_generator(seed, step, rank))
        return batch.images, list(batch.captions)
    return batch_fn


def loss_fn(model: TextToImage, batch):
    images, captions = batch
    loss = model.loss(images, captions)
    return loss, {}


def make_eval_fn(batches: dict, n: int):
    """``{name}_loss`` on each of ``batches`` (name -> WorldBatch), its first ``n`` items, with fixed
    noise and times (comparable from one evaluation to the next)."""
    def fixed_loss(model: TextToImage, batch) -> float:
        latents = model.autoencoder.encode(batch.images[:n])
        g = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        t, noise = torch.rand(len(latents), generator=g), torch.randn(latents.shape, generator=g)
        if model.config.objective == "dit":
            t = (t * model.objective.num_train_timesteps).long().clamp(max=model.objective.num_train_timesteps - 1)
        text = model.encode_text(list(batch.captions[:n]))
        return model.objective.loss(model._denoise, latents, text, t=t.to(latents.device),
                                    noise=noise.to(latents.device)).item()

    def eval_fn(model) -> dict[str, float]:
        return {f"{name}_loss": fixed_loss(model, batch) for name, batch in batches.items()}
    return eval_fn


# ------------------------------------------------------------------------------------------- train
def train_text2image(out_dir: str | Path, *, vae: str | Path, config: TextToImageConfig, train_config: TrainConfig,
                     tokenizer: str | Path | None = None, corpus: Iterable[str | Path] | None = None,
                     resume: bool = False, fashion=None, progress: bool = True, command: str | None = None,
                     eval_images: int = 256, init_from: str | Path | None = None) -> dict:
    """Train ``TextToImage`` (see the module docstring) and write ``out_dir/model``. ``fashion``:
    garments for the world (tests). ``init_from``: a published text-to-image folder whose weights
    (text encoder, denoiser) and tokenizer the run starts from (fine-tuning; see ``_init_source``).
    Returns the numbers of training.json."""
    out_dir = Path(out_dir)
    expect(Path(train_config.out_dir) == out_dir, "train_config.out_dir", str(out_dir), train_config.out_dir)
    autoencoder = Autoencoder.from_pretrained(vae)
    run = {"model": config.to_dict(), "vae": str(Path(vae).resolve()), "tokenizer": str(tokenizer) if tokenizer else None}
    if init_from is not None:
        expect(tokenizer is None, "tokenizer", "none with init_from (the run uses the folder's)", str(tokenizer))
        run["init_from"] = str(Path(init_from).resolve())
    own_tokenizer = out_dir / TOKENIZER_NAME
    source = _init_source(init_from, config, autoencoder) if init_from is not None and not resume else None
    if resume:
        check_resume_settings(run_file(out_dir, "t2i"), run, "the model, autoencoder and tokenizer",
                              configs={"model": TextToImageConfig})
        text_tokenizer = TextTokenizer.from_file(Path(tokenizer) if tokenizer else own_tokenizer)
    elif source is not None:
        text_tokenizer = source.tokenizer
    elif tokenizer:
        text_tokenizer = TextTokenizer.from_file(tokenizer)
    else:
        text_tokenizer = train_caption_tokenizer(config.text.vocab_size, corpus)
    world = CaptionedWorld("train", fashion=fashion)
    expect(autoencoder.config.sample_size == world.image_size, "vae", f"an autoencoder of {world.image_size}px "
           "images (the world's)", f"{autoencoder.config.sample_size}px")
    n = min(eval_images, 256)
    eval_fn = make_eval_fn({"seen": world.sample(n, SEEN_SEED),
                            "held_out": CaptionedWorld("held_out", fashion=fashion).sample(n, HELD_OUT_SEED)}, n)

    torch.manual_seed(train_config.seed)  # the initial weights
    model = TextToImage(config, text_tokenizer, autoencoder)
    if source is not None:  # before the Trainer, so that the EMA copy starts from these weights too
        model.text_encoder.load_state_dict(source.text_encoder.state_dict())
        model.denoiser.load_state_dict(source.denoiser.state_dict())
    trainer = Trainer(model, train_config, loss_fn, batch_fn=make_batch_fn(world, train_config.batch_size,
                                                                           train_config.seed),
                      eval_fn=eval_fn, resume=resume, progress=progress)
    if trainer.is_main and not tokenizer and not resume:  # trained here, or init_from's
        text_tokenizer.save(out_dir)
    summary, seconds = trainer.train_run(run_file(out_dir, "t2i"), run)
    if not trainer.is_main:
        return summary

    final = trainer.eval_model.eval()
    last_eval = next((r for r in reversed(trainer.history) if r.get("kind") == "eval"), {})
    training = {
        "command": command or f"train_text2image({str(out_dir)!r}, vae={str(vae)!r}, ...)",
        "data": "captioned world, split train (streamed; held-out combinations never drawn)",
        "objective": config.objective, "schedule": config.schedule, "path": config.path,
        **trainer.run_record(seconds), "images_seen": trainer.step * train_config.batch_size,
        "parameters": {"text_encoder": count_parameters(final.text_encoder),
                       "denoiser": count_parameters(final.denoiser),
                       "autoencoder": count_parameters(final.autoencoder)},
        "tokenizer": {"vocab_size": text_tokenizer.vocab_size, "source": str(tokenizer) if tokenizer else
                      f"the tokenizer of {init_from}" if init_from is not None else
                      "trained on the captions + " + (", ".join(map(str, corpus)) if corpus else
                                                       str(GENERAL_CORPUS) if GENERAL_CORPUS.is_dir() else "nothing else")},
        "vae": str(vae),
        "init_from": init_record(init_from) if init_from is not None else None,
        "final_eval": {k: v for k, v in last_eval.items() if k not in ("kind",)},
    }
    vae_files = {f"vae/{name}": Path(vae) / name for name in (CARD_NAME, TRAINING_NAME) if (Path(vae) / name).is_file()}
    folder = publish_model(out_dir / MODEL_DIR, final, training, model_card, extra_files=vae_files,
                           vocabulary=caption_corpus("train"))
    return {**training, "model_dir": str(folder)}


def _init_source(folder: str | Path, config: TextToImageConfig, autoencoder: Autoencoder) -> TextToImage:
    """The published model a fine-tuning run starts from: it must have ``config`` (the same
    architecture and objective) and the autoencoder given to the run (same weights), or its
    weights would mean nothing here."""
    source = TextToImage.from_pretrained(folder)
    changed = _architecture_changes(source.config, config)
    if changed:
        raise InputError(f"init_from: expected a model of the run's architecture and objective, found {folder} "
                         f"differing in {', '.join(changed)}")
    ours, theirs = autoencoder.state_dict(), source.autoencoder.state_dict()
    if ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours):
        raise InputError(f"init_from: expected {folder} to use the run's autoencoder (--vae), found other weights "
                         f"in {Path(folder) / 'vae'}")
    return source


# What a fine-tuning run may change of the model it starts from: how the loss weighs and draws times.
LOSS_FIELDS = ("min_snr_gamma", "time_sampling")


def _architecture_changes(a: TextToImageConfig, b: TextToImageConfig) -> list[str]:
    """The config fields (other than ``LOSS_FIELDS``; nested ones dotted, e.g. ``denoiser.width``) in
    which ``a`` and ``b`` differ."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out
    a, b = flat(a.to_dict()), flat(b.to_dict())
    return [k for k in a if k not in LOSS_FIELDS and a[k] != b.get(k)]


# ------------------------------------------------------------------------------------- model card
def model_card(folder: str | Path) -> str:
    """MODEL_CARD.md of a text-to-image folder from its config.json, training.json, card_notes.md
    and, when the benchmark has written one, evaluation.json (prompt accuracy, Fréchet distance, speed)."""
    folder = Path(folder)
    config = TextToImageConfig.load(folder / CONFIG_NAME)
    info = read_training(folder)
    d, x = config.denoiser, config.text
    kind = ("DiT: DDPM ε-prediction, " + config.schedule + " β schedule"
            + (f", min-SNR-γ loss weighting (γ = {config.min_snr_gamma:g})" if config.min_snr_gamma else "")
            + "; samplers ddpm, ddim, dpm++ (diffusers)"
            if config.objective == "dit" else
            "SiT: stochastic interpolant, " + config.path + " path, velocity prediction"
            + (", logit-normal training times" if config.time_sampling == "logit-normal" else "")
            + "; samplers euler, heun, sde")
    source = info.get("tokenizer", {}).get("source")
    summary = (f"{kind}. A DiT denoiser (width {d.width}, depth {d.depth}, {d.heads} heads, patch {d.patch_size}, over "
               f"{d.in_channels}x{d.input_size[0]}x{d.input_size[1]} latents) with adaLN-Zero on timestep + pooled text "
               f"and cross-attention to a bidirectional text encoder (width {x.width}, depth {x.depth}, at most "
               f"{x.max_length} tokens) over a byte-level BPE of {x.vocab_size} tokens{f' ({source})' if source else ''}; "
               "a frozen AutoencoderKL (in `vae/`) maps latents to 32x32 RGB images.")
    details = []
    if info:
        init = init_text(info.get("init_from"), info["steps"])
        details += [init.removeprefix("- ")] if init else []
        ema = info.get("train_config", {}).get("ema_decay")
        details += [f"{100 * d.class_dropout_prob:g} % of captions dropped (classifier-free guidance)"
                    + (f"; the EMA ({ema:g}) weights are the ones saved." if ema is not None else ".")]
        final = info.get("final_eval", {})
        details += [f"Final loss on fixed batches: seen {final.get('seen_loss', float('nan')):.4f}, held-out "
                    f"combinations {final.get('held_out_loss', float('nan')):.4f}."]
    return build_model_card(f"Text-to-image on the captioned world ({config.objective.upper()})", summary, info,
                            usage='Load: `multimodal.pipeline("text-to-image", model=this_folder)`.', details=details,
                            unit="images", evaluation=_evaluation_text(folder / "evaluation.json"),
                            notes=card_notes(folder))


def _evaluation_text(path: Path) -> str:
    """The card's Evaluation section from the benchmark's evaluation.json (or a pointer to the benchmark)."""
    held_out = ("Held-out combinations (red sneaker, blue dress, green bag, yellow star, purple circle, white trouser, "
                "orange heart, cyan ankle boot) were never rendered for training: they measure composition.")
    if not path.is_file():
        return f"Not evaluated yet: run `python -m benchmarks.text_to_image`.\n\n{held_out}"
    ev = read_json(path)
    text = (f"Measured by `{ev['command']}` (judge: {ev['judge']}); guidance {ev['guidance_scale']}, "
            f"{ev['images_per_prompt']} image(s) per prompt, {ev['seen_prompts']} seen and {ev['held_out_prompts']} "
            "held-out prompts. Prompt accuracy: the judge finds the object, its colour and the background all right.")
    ceiling = ev.get("judge_ceiling")
    if ceiling:
        text += (f" The judge itself, on real renders of the same prompts, finds {100 * ceiling['seen_accuracy']:.1f} % "
                 f"(seen) and {100 * ceiling['held_out_accuracy']:.1f} % (held out) right: the most a generator can "
                 "score.")
    coder = ev.get("autoencoder_ceiling")
    if coder:
        text += (f" Through this model's autoencoder (encoded, decoded) the same renders score "
                 f"{100 * coder['seen_accuracy']:.1f} % (seen) and {100 * coder['held_out_accuracy']:.1f} % "
                 "(held out): the most this denoiser can score with this autoencoder.")
    text += " Goal: at 25 steps, seen >= 90 %, held out >= 70 %."
    rows = [(r["sampler"], r["steps"], f"{100 * r['seen_accuracy']:.1f} %", f"{100 * r['held_out_accuracy']:.1f} %",
             f"{r['frechet']:.2f}", f"{r['seconds_per_image']:.3f}") for r in ev["rows"]]
    lines = [text, "", *markdown_table(("sampler", "steps", "prompt accuracy, seen", "prompt accuracy, held out",
                                        "Fréchet distance (judge features)", "s / image"), rows), ""]
    check = ev.get("storage_check")
    if check:
        lines += [f"Stored in {check['stored_dtype']}. The float16 copy, loaded back, scores seen "
                  f"{100 * check['float16']['seen_accuracy']:.1f} % and held out "
                  f"{100 * check['float16']['held_out_accuracy']:.1f} % ({check['float32']['sampler']}, "
                  f"{check['float32']['steps']} steps) against float32's {100 * check['float32']['seen_accuracy']:.1f} % "
                  f"and {100 * check['float32']['held_out_accuracy']:.1f} %.", ""]
    return "\n".join([*lines, held_out])


# --------------------------------------------------------------------------------------------- CLI
def add_train_text2image_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    default = TextToImageConfig()
    den, text = default.denoiser, default.text
    g = parser.add_argument_group("model")
    g.add_argument("--vae", required=True, help="autoencoder folder (multimodal train vae's <out-dir>/model)")
    g.add_argument("--objective", choices=tuple(OBJECTIVES), default="dit",
                   help="dit: DDPM ε-prediction; sit: interpolant, velocity (default dit)")
    g.add_argument("--schedule", choices=("linear", "cosine"), default="linear", help="dit: β schedule")
    g.add_argument("--path", choices=("linear", "gvp"), default="linear", help="sit: interpolant path")
    g.add_argument("--min-snr-gamma", type=float, default=None, metavar="GAMMA",
                   help="dit: weight each step's ε-loss by min(SNR, GAMMA) / SNR (min-SNR-γ; default: off)")
    g.add_argument("--time-sampling", choices=("uniform", "logit-normal"), default="uniform",
                   help="sit: training times uniform, or logit-normal (sigmoid of N(0, 1), as SD3; default uniform)")
    g.add_argument("--width", type=int, default=den.width, help=f"denoiser width (default {den.width})")
    g.add_argument("--depth", type=int, default=den.depth, help=f"denoiser blocks (default {den.depth})")
    g.add_argument("--heads", type=int, default=den.heads, help=f"denoiser heads (default {den.heads})")
    g.add_argument("--patch-size", type=int, default=den.patch_size, help=f"latent patch (default {den.patch_size})")
    g.add_argument("--cfg-dropout", type=float, default=den.class_dropout_prob,
                   help=f"captions dropped in training (default {den.class_dropout_prob})")
    g.add_argument("--text-width", type=int, default=text.width, help=f"(default {text.width})")
    g.add_argument("--text-depth", type=int, default=text.depth, help=f"(default {text.depth})")
    g.add_argument("--text-heads", type=int, default=text.heads, help=f"(default {text.heads})")
    g.add_argument("--max-length", type=int, default=text.max_length, help=f"prompt tokens (default {text.max_length})")
    g.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="fine-tune: start from the weights and tokenizer of a text-to-image folder (e.g. "
                        "checkpoints/text2image-sit); its architecture and objective are used, with this "
                        "command's loss options and training settings")
    tok = parser.add_argument_group("tokenizer")
    tok.add_argument("--tokenizer", default=None, help="a tokenizer.json to use instead of training one")
    tok.add_argument("--vocab-size", type=int, default=text.vocab_size, help=f"(default {text.vocab_size})")
    tok.add_argument("--corpus", nargs="+", default=None, metavar="PATH",
                     help=f"general text besides the captions (default: {GENERAL_CORPUS} when installed)")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def config_from_args(args: argparse.Namespace, latent_channels: int, latent_size: int) -> TextToImageConfig:
    text = TextEncoderConfig(vocab_size=args.vocab_size, max_length=args.max_length, width=args.text_width,
                             depth=args.text_depth, heads=args.text_heads)
    den = DiTConfig(input_size=latent_size, patch_size=args.patch_size, in_channels=latent_channels,
                    width=args.width, depth=args.depth, heads=args.heads, context_dim=args.text_width,
                    class_dropout_prob=args.cfg_dropout)
    return TextToImageConfig(objective=args.objective, schedule=args.schedule, path=args.path,
                             min_snr_gamma=args.min_snr_gamma, time_sampling=args.time_sampling, text=text,
                             denoiser=den)


def _config_for_init(args: argparse.Namespace, vae_config) -> TextToImageConfig:
    """With ``--init-from``: the folder's architecture and objective, with the loss options of the
    command line; a model flag set to other than its default must agree with the folder."""
    path = Path(args.init_from) / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"--init-from: expected a text-to-image model folder with config.json, found {args.init_from}")
    source = TextToImageConfig.load(path)
    parser = args._command_parser
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help" and a.default is not argparse.SUPPRESS}
    # the folder's objective unless one is asked for, so that its loss options (e.g. sit's --time-sampling) apply
    kind = {k: getattr(source, k) if getattr(args, k) == defaults[k] else getattr(args, k)
            for k in ("objective", "schedule", "path")}
    asked = argparse.Namespace(**{**vars(args), **kind})
    default = argparse.Namespace(**{**vars(args), **defaults, **kind})
    requested = config_from_args(asked, vae_config.latent_channels, vae_config.latent_size)
    given = _architecture_changes(requested, config_from_args(default, vae_config.latent_channels,
                                                              vae_config.latent_size))
    conflicts = [k for k in given if k in _architecture_changes(requested, source)]
    conflicts += [k for k in ("objective", "schedule", "path") if getattr(requested, k) != getattr(source, k)]
    if conflicts:
        raise InputError(f"--init-from: expected model flags that agree with {args.init_from} (or none), found other "
                         f"{', '.join(conflicts)}")
    return source.replace(min_snr_gamma=requested.min_snr_gamma, time_sampling=requested.time_sampling)


def run_train_text2image(args: argparse.Namespace) -> dict:
    """``multimodal train text2image``."""
    from ..models.autoencoder import AutoencoderConfig

    vae_config = AutoencoderConfig.load(Path(args.vae) / CONFIG_NAME)
    if args.init_from is not None:
        config = _config_for_init(args, vae_config)
    else:
        config = config_from_args(args, vae_config.latent_channels, vae_config.latent_size)
    train_config = train_config_from_args(args)
    result = train_text2image(train_config.out_dir, vae=args.vae, config=config, train_config=train_config,
                              tokenizer=args.tokenizer, corpus=args.corpus, resume=args.resume,
                              init_from=args.init_from,
                              progress=args.progress, command=command_line(args, "multimodal train text2image"))
    if "model_dir" in result:
        print(f"final loss: {result['final_eval']}")
        print(f"model: {result['model_dir']}")
    return result
