"""Training the image VQ-VAE on the captioned world: ``multimodal train vqvae``.

::

    multimodal train vqvae --out-dir runs/image-vq
    multimodal train vqvae --out-dir runs/image-vq --resume

The defaults are the recipe of ``checkpoints/image-vq``: width 48, 3,000 steps of 128 renders, about
50 minutes on 2 CPU cores.

(Python: ``train_vqvae(out_dir, steps=..., batch_size=..., config=VQVAEConfig(...), ...)``.)

**Data.** Batches stream from ``CaptionedWorld("train")`` in [-1, 1]; the batch of optimizer step
``s`` has its own generator seeded by ``(seed, s, rank)``, so a resumed run sees the images an
uninterrupted one would. Held-out combinations are never rendered for training.

**Loss.** Reconstruction (``--loss``: l1+mse by default, means over values) plus the quantizer's
commitment loss; the codebook follows its EMA, is seeded by k-means++ on the first batch and
re-seeds codes unused for ``--dead-code-steps`` steps. No perceptual or adversarial terms.

**Codebook health.** Every evaluation logs the PSNR, the codebook usage (distinct codes over the
evaluation pass / codebook size) and the perplexity of the codes, on fixed renders of seen and of
held-out combinations; each training log step carries the batch's perplexity. The final numbers, on
``--eval-images`` renders of each split, go into training.json and MODEL_CARD.md.

Run folder: the trainer's files, ``vqvae_run.json`` and ``model/`` (a ``VQVAE.from_pretrained``
folder with training.json and MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write_text, count_parameters, fresh_tmp_dir, publish_dir
from ..data.world import CaptionedWorld
from ..data.world_video import MovingWorld
from ..errors import InputError, expect
from ..models.autoencoders.quantizer import QuantizerConfig, codebook_usage, perplexity
from ..models.autoencoders.vq import LOSSES, VQVAE, VQVAEConfig, training_loss
from .autoencoder import make_batch_fn  # uint8 renders of the step, as the KL autoencoder trains on
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import CARD_NAME, MODEL_DIR, NOTES_NAME, TRAINING_NAME, build_model_card, card_notes, \
    check_resume_settings, command_line, markdown_table, publish_model, read_training, run_file
from .trainer import Trainer

HELD_OUT_SEED, SEEN_SEED = 40_001, 40_002  # far from any training step's (seed, step, rank)
STORAGE_TOLERANCE_DB = 0.05  # float16 ships when its PSNR is within this of float32's on both splits

RECIPE_MODEL = VQVAEConfig(channels=48, channel_mult=(1, 2), strides=(2, 2), res_blocks=2, groups=16,
                           input_size=(32, 32), quantizer=QuantizerConfig(codebook_size=512, dim=64, codebook_dim=16))
RECIPE_TRAIN = TrainConfig(out_dir="runs/image-vq", max_steps=3000, batch_size=128, lr=1e-3, weight_decay=0.0,
                           warmup_steps=200, min_lr_ratio=0.05, grad_clip=1.0, eval_every=500, save_every=500,
                           log_every=50)
# Clips: 16x32x32 -> 4x8x8 codes. No residual blocks at the two full-size stages: a Conv3d there costs
# 16 frames of work per clip, and on 2 CPU cores the recipe must train in about an hour.
RECIPE_VIDEO_MODEL = VQVAEConfig(dims=3, channels=32, channel_mult=(1, 2), strides=(2, 2), res_blocks=0, groups=16,
                                 input_size=(16, 32, 32),
                                 quantizer=QuantizerConfig(codebook_size=512, dim=64, codebook_dim=16))
RECIPE_VIDEO_TRAIN = RECIPE_TRAIN.replace(out_dir="runs/video-vq", batch_size=32, max_steps=2000, eval_every=500,
                                          save_every=250)
WORLDS = ("image", "video")
DATA_TEXT = {"image": "captioned world, split train (streamed; held-out combinations never drawn)",
             "video": "moving world, split train: clips of 16 frames (streamed; held-out colour and direction pairs "
                      "never drawn)"}


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]."""
    return images.float() / 127.5 - 1


def make_loss_fn(kind: str, codebook_size: int):
    def loss_fn(model, images: torch.Tensor):
        x = to_unit(images)
        recon, codes, vq_loss = model(x)
        total, parts = training_loss(recon, x, vq_loss, kind)
        first_level = codes if codes.ndim == x.ndim - 1 else codes[:, 0]
        parts["perplexity"] = torch.tensor(perplexity(first_level, codebook_size))
        return total, parts
    return loss_fn


@torch.no_grad()
@torch.no_grad()
def codebook_report(model: VQVAE, images: torch.Tensor, batch: int | None = None) -> dict[str, float]:
    """PSNR (dB, [0, 1] scale, mean over items), codebook usage and perplexity of ``model`` on uint8
    ``images`` (or clips ``[N, 3, T, H, W]``); with residual VQ, usage and perplexity of the first level.
    ``batch``: items per pass (default 512 images or 32 clips)."""
    batch = batch or (512 if images.ndim == 4 else 32)
    model = model.eval()
    device = next(model.parameters()).device
    psnrs, codes = [], []
    for start in range(0, len(images), batch):
        x = to_unit(images[start:start + batch]).to(device)
        c = model.encode(x)
        recon = model.decode(c).float().clamp(-1, 1)
        mse = ((recon - x) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        psnrs.append(10 * torch.log10(1 / mse))
        codes.append((c if c.ndim == x.ndim - 1 else c[:, 0]).cpu())
    codes = torch.cat(codes)
    size = model.config.quantizer.codebook_size
    return {"psnr": float(torch.cat(psnrs).mean()), "usage": codebook_usage(codes, size),
            "perplexity": perplexity(codes, size)}


def make_eval_fn(held_out: torch.Tensor, seen: torch.Tensor):
    def eval_fn(model) -> dict[str, float]:
        out = {}
        for name, images in (("held_out", held_out), ("seen", seen)):
            out.update({f"{name}_{k}": v for k, v in codebook_report(model, images).items()})
        return out
    return eval_fn


def worlds_of(world: str, fashion=None):
    """The (training, held-out) worlds of ``world``: "image" (``CaptionedWorld``) or "video" (``MovingWorld``)."""
    expect(world in WORLDS, "world", " or ".join(WORLDS), repr(world))
    if world == "video":
        return MovingWorld("train", fashion=fashion), MovingWorld("held_out", fashion=fashion)
    return CaptionedWorld("train", fashion=fashion), CaptionedWorld("held_out", fashion=fashion)


def input_size_of(world) -> tuple[int, ...]:
    """The item size a world draws: (side, side) for images, (frames, side, side) for clips."""
    side = world.image_size
    return (world.frames, side, side) if isinstance(world, MovingWorld) else (side, side)


def train_vqvae(out_dir: str | Path = RECIPE_TRAIN.out_dir, *, steps: int = RECIPE_TRAIN.max_steps,
                batch_size: int = RECIPE_TRAIN.batch_size, lr: float = RECIPE_TRAIN.lr, seed: int = 0,
                resume: bool = False, config: VQVAEConfig | None = None, eval_images: int = 2000, fashion=None,
                progress: bool = True, command: str | None = None, world: str = "image",
                **train_options: Any) -> dict:
    """Train a ``VQVAE`` on the captioned world (``world="image"``) or on the moving world's clips
    (``"video"``, with ``RECIPE_VIDEO_MODEL`` by default) and write ``out_dir/model`` (see the module
    docstring). ``eval_images``: items (images or clips) per split of the final measures.
    ``train_options``: other ``TrainConfig`` fields. Returns the numbers of training.json."""
    train_world, held_world = worlds_of(world, fashion)
    dims = 3 if world == "video" else 2
    config = config or (RECIPE_VIDEO_MODEL if world == "video" else RECIPE_MODEL)
    expect(isinstance(config, VQVAEConfig) and config.dims == dims, "config", f"a VQVAEConfig of {world}s (dims {dims})",
           repr(config))
    expect(isinstance(eval_images, int) and eval_images > 0, "eval_images", "a positive count", eval_images)
    fields = {**RECIPE_TRAIN.to_dict(), **train_options, "out_dir": str(out_dir), "max_steps": steps,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    train_config = TrainConfig.from_dict(fields, where="train_options")
    out_dir = Path(out_dir)
    run = {"model": config.to_dict()}
    if resume:
        check_resume_settings(run_file(out_dir, "vqvae"), run, "the model", configs={"model": VQVAEConfig})
    size = input_size_of(train_world)
    expect(config.input_size in (None, size), "config.input_size", str(size), config.input_size)
    config = config.replace(input_size=size)
    small = min(512 if world == "image" else 128, eval_images)
    eval_fn = make_eval_fn(held_world.sample(small, HELD_OUT_SEED)[0], train_world.sample(small, SEEN_SEED)[0])

    torch.manual_seed(train_config.seed)
    model = VQVAE(config)
    trainer = Trainer(model, train_config, make_loss_fn(config.loss, config.quantizer.codebook_size),
                      batch_fn=make_batch_fn(train_world, train_config.batch_size, train_config.seed),
                      eval_fn=eval_fn, resume=resume, progress=progress)
    summary, seconds = trainer.train_run(run_file(out_dir, "vqvae"), run)
    if not trainer.is_main:
        return summary
    final = trainer.eval_model.eval()
    held = codebook_report(final, held_world.sample(eval_images, HELD_OUT_SEED)[0])
    seen = codebook_report(final, train_world.sample(eval_images, SEEN_SEED)[0])
    training = {
        "command": command or f"train_vqvae({str(out_dir)!r}, steps={steps}, batch_size={batch_size}, lr={lr}, "
                              f"seed={seed}{''.join(f', {k}={v!r}' for k, v in train_options.items())})",
        "data": DATA_TEXT[world],
        **trainer.run_record(seconds), "parameters": count_parameters(final), "eval_images": eval_images,
        "held_out": held, "seen": seen,
        "final_train": {k: v for k, v in summary.items() if k in ("loss", "mse", "l1", "vq", "perplexity")},
        "model": final.config.to_dict(),
    }
    folder = publish_model(out_dir / MODEL_DIR, final, training, lambda tmp: model_card(training, tmp))
    return {**training, "model_dir": str(folder)}


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of an image VQ-VAE from its training.json."""
    m = VQVAEConfig.from_dict(info["model"])
    q = m.quantizer
    video = m.dims == 3
    size = m.input_size or ((16, 32, 32) if video else (32, 32))
    grid = "x".join(map(str, m.grid(size)))
    lookup = f"{q.lookup_dim}-d{' l2-normalised' if q.l2_normalize else ''} lookup"
    what = (f"clips of {size[0]} frames of {size[1]}x{size[2]}x{m.in_channels}" if video
            else f"{size[0]}x{size[1]}x{m.in_channels} images")
    summary = (f"A VQ-VAE{' of Conv3d layers' if video else ''}: {what} -> a {grid} grid of codes from "
               f"{q.levels} x {q.codebook_size} codes ({lookup}, EMA codebook, dead-code restarts after "
               f"{q.dead_code_steps} steps); stages of {[m.channels * c for c in m.channel_mult]} channels, "
               f"{m.res_blocks} residual block(s) each.")
    items = "clips `[B, 3, T, H, W]`" if video else "`[B, 3, H, W]`"
    usage = (f"Load: `multimodal.models.VQVAE.from_pretrained(this_folder)`; `encode(x)` (float {items} in "
             f"[-1, 1]) gives codes `[B, {', '.join('thw' if video else 'hw')}]`, `decode(codes)` the "
             f"{'clips' if video else 'images'}." + ("" if video else " Command line: `multimodal codes "
                                                    "encode|decode --model this_folder`."))
    unit = "clips" if video else "images"
    rows = [(f"{name.replace('_', ' ')} combinations ({info['eval_images']} {unit})", f"{r['psnr']:.2f} dB",
             f"{100 * r['usage']:.1f} %", f"{r['perplexity']:.0f}")
            for name, r in (("seen", info["seen"]), ("held_out", info["held_out"]))]
    evaluation = "\n".join([
        *markdown_table(("", "PSNR", "codebook usage", "perplexity"), rows, "lrrr"), "",
        f"PSNR: mean over {unit} of 10 log10(1 / MSE) on the [0, 1] scale. Usage: distinct codes over the "
        "evaluation pass divided by the codebook size; perplexity: exp(entropy) of the codes' histogram. "
        + ("Held-out clips (a held-out colour pair such as red sneaker, or direction pair such as t-shirt up) "
           "were never rendered for training." if video else
           "Held-out combinations (red sneaker, blue dress, ...) were never rendered for training.")])
    check = info.get("storage_check")
    if check:
        measured = lambda d: (" / ".join(f"{d[n]['psnr']:.2f}" for n in ("seen", "held_out")) + " dB PSNR and "  # noqa: E731
                              + " / ".join(f"{100 * d[n]['usage']:.1f} %" for n in ("seen", "held_out")) + " usage")
        evaluation += (f"\n\nStored in {check['stored_dtype']}. Loaded back, the float16 copy measures "
                       f"{measured(check['float16'])} (seen / held out), float32 {measured(check['float32'])}; "
                       f"float16 ships when its PSNR is within {check['tolerance_db']} dB of float32's on both.")
    details = [f"Loss: {m.loss} reconstruction + {q.beta} x commitment; codebook by EMA (decay {q.decay})."]
    title = "Video VQ-VAE for the moving world" if video else "Image VQ-VAE for the captioned world"
    return build_model_card(title, summary, info, usage=usage, details=details, unit=unit, evaluation=evaluation, notes=card_notes(folder))


def ship_vqvae(source: str | Path, dest: str | Path, *, fashion=None) -> dict:
    """Write the checkpoint folder ``dest`` from the trained VQ-VAE folder ``source``: float16 when the
    float16 copy, loaded back, measures a PSNR within STORAGE_TOLERANCE_DB of float32's on the
    training.json's renders of both splits (same count and seeds), else float32. The measures go into
    training.json as ``storage_check``; ``dest``'s card_notes.md is kept and the card rewritten.
    Returns the check."""
    source, dest = Path(source), Path(dest)
    info = read_training(source)
    expect("seen" in info and "eval_images" in info, "source", "a folder written by `multimodal train vqvae`",
           str(source))
    n = info["eval_images"]
    train_world, held_world = worlds_of("video" if info["model"]["dims"] == 3 else "image", fashion)
    images = {"held_out": held_world.sample(n, HELD_OUT_SEED)[0], "seen": train_world.sample(n, SEEN_SEED)[0]}
    measure = lambda model: {k: codebook_report(model.eval(), x) for k, x in images.items()}  # noqa: E731
    full = VQVAE.from_pretrained(source)
    tmp = fresh_tmp_dir(dest)
    full.save_pretrained(tmp, dtype=torch.float16)
    half, single = measure(VQVAE.from_pretrained(tmp)), measure(full)
    keep = all(half[k]["psnr"] >= single[k]["psnr"] - STORAGE_TOLERANCE_DB for k in images)
    if not keep:
        shutil.rmtree(tmp)
        tmp = fresh_tmp_dir(dest)
        full.save_pretrained(tmp)
    check = {"stored_dtype": "float16" if keep else "float32", "tolerance_db": STORAGE_TOLERANCE_DB,
             "float32": single, "float16": half}
    info = {**info, "storage_check": check}
    if (dest / NOTES_NAME).is_file():
        shutil.copyfile(dest / NOTES_NAME, tmp / NOTES_NAME)
    atomic_write_text(tmp / TRAINING_NAME, json.dumps(info, indent=2) + "\n")
    atomic_write_text(tmp / CARD_NAME, model_card(info, tmp))
    publish_dir(tmp, dest)
    return check


# --------------------------------------------------------------------------------------------- CLI
def add_train_vqvae_arguments(parser: argparse.ArgumentParser, world: str = "image") -> argparse.ArgumentParser:
    """Arguments of ``multimodal train vqvae`` (``world="video"``: ``train videovq``): the model and
    quantizer, and every TrainConfig flag, with the world's recipe as defaults."""
    recipe, train_recipe = (RECIPE_VIDEO_MODEL, RECIPE_VIDEO_TRAIN) if world == "video" else (RECIPE_MODEL, RECIPE_TRAIN)
    m, q = recipe, recipe.quantizer
    model = parser.add_argument_group("model")
    model.add_argument("--channels", type=int, default=m.channels, help=f"first stage width (default {m.channels})")
    model.add_argument("--channel-mult", type=int, nargs="+", default=list(m.channel_mult),
                       help=f"stage widths in units of --channels; each stage halves the side (default "
                            f"{' '.join(map(str, m.channel_mult))})")
    model.add_argument("--strides", type=stride_argument, nargs="+", default=None, metavar="S|T,H,W",
                       help="per stage, its downsampling: one stride for every axis, or one per axis joined by "
                            "commas (clips: frames, height, width; 4,2,2 quarters the frames and halves the side) "
                            "(default 2 for every stage)")
    model.add_argument("--res-blocks", type=int, default=m.res_blocks, help=f"(default {m.res_blocks})")
    model.add_argument("--loss", choices=LOSSES, default=m.loss, help=f"reconstruction loss (default {m.loss})")
    quant = parser.add_argument_group("quantizer")
    quant.add_argument("--codebook-size", type=int, default=q.codebook_size, help=f"(default {q.codebook_size})")
    quant.add_argument("--dim", type=int, default=q.dim, help=f"encoder output channels (default {q.dim})")
    quant.add_argument("--codebook-dim", type=int, default=q.codebook_dim, help=f"lookup dimension (default {q.codebook_dim})")
    quant.add_argument("--l2-normalize", action=argparse.BooleanOptionalAction, default=q.l2_normalize,
                       help="cosine lookup on the unit sphere")
    quant.add_argument("--levels", type=int, default=q.levels, help="residual VQ levels (default 1)")
    quant.add_argument("--dead-code-steps", type=int, default=q.dead_code_steps,
                       help=f"re-seed codes unused this many steps; 0: never (default {q.dead_code_steps})")
    quant.add_argument("--beta", type=float, default=q.beta, help=f"commitment weight (default {q.beta})")
    parser.add_argument("--eval-images", type=int, default=2000,
                        help=f"{'clips' if world == 'video' else 'renders'} per split of the final measures")
    add_train_args(parser, train_recipe)
    parser.set_defaults(_command_parser=parser, world=world)
    return parser


def stride_argument(text: str) -> int | tuple[int, ...]:
    """One stage's ``--strides`` value: ``"2"`` (every axis) or ``"4,2,2"`` (one per axis)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, or ints joined by commas (one per axis), found {text!r}")
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected strides >= 1, found {text!r}")
    return values[0] if len(values) == 1 else values


def add_train_videovq_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train videovq``: ``train vqvae``'s, with the video recipe as defaults."""
    return add_train_vqvae_arguments(parser, "video")


def config_from_args(args: argparse.Namespace) -> VQVAEConfig:
    """The VQ-VAE configuration the command line asks for: the world's recipe with its model and
    quantizer flags."""
    recipe = RECIPE_VIDEO_MODEL if getattr(args, "world", "image") == "video" else RECIPE_MODEL
    quantizer = recipe.quantizer.replace(codebook_size=args.codebook_size, dim=args.dim,
                                         codebook_dim=args.codebook_dim, l2_normalize=args.l2_normalize,
                                         levels=args.levels, dead_code_steps=args.dead_code_steps, beta=args.beta)
    strides = tuple(args.strides) if args.strides else (2,) * len(args.channel_mult)
    if len(strides) != len(args.channel_mult):
        raise InputError(f"strides: expected one per stage of --channel-mult ({len(args.channel_mult)}), "
                         f"found {len(strides)}")
    config = recipe.replace(channels=args.channels, channel_mult=tuple(args.channel_mult), strides=strides,
                            res_blocks=args.res_blocks, loss=args.loss, quantizer=quantizer)
    return VQVAEConfig.from_dict(config.to_dict())  # checks the combination


def run_train_vqvae(args: argparse.Namespace) -> dict:
    """``multimodal train vqvae``: train, measure, write ``<out-dir>/model`` and print the numbers."""
    world = getattr(args, "world", "image")
    config = config_from_args(args)
    fields = train_config_from_args(args).to_dict()
    named = {k: fields.pop(k) for k in ("out_dir", "max_steps", "batch_size", "lr", "seed")}
    result = train_vqvae(named["out_dir"], steps=named["max_steps"], batch_size=named["batch_size"], lr=named["lr"],
                         seed=named["seed"], resume=args.resume, config=config, eval_images=args.eval_images,
                         progress=args.progress, world=world,
                         command=command_line(args, f"multimodal train {'videovq' if world == 'video' else 'vqvae'}"),
                         **fields)
    if "model_dir" in result:
        for name in ("seen", "held_out"):
            r = result[name]
            print(f"{name}: PSNR {r['psnr']:.2f} dB, codebook usage {100 * r['usage']:.1f} %, "
                  f"perplexity {r['perplexity']:.0f}")
        print(f"model: {result['model_dir']}")
    return result

