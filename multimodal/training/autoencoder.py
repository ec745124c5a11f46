"""Training the image autoencoder on the captioned world: ``multimodal train vae``.

::

    multimodal train vae --out-dir runs/vae --max-steps 6000 --batch-size 64 --lr 1e-3 --kl-weight 1e-6
    multimodal train vae --out-dir runs/vae --max-steps 6000 --batch-size 64 --lr 1e-3 --kl-weight 1e-6 --resume

(Python: ``train_autoencoder(out_dir, steps=..., batch_size=..., lr=..., kl_weight=..., seed=..., resume=...)``.)

**Data.** Batches stream from ``CaptionedWorld("train")``; the batch of optimizer step ``s`` is drawn
with its own generator, seeded by ``(seed, s, rank)``, so a resumed run sees exactly the images an
uninterrupted one would. Held-out combinations (``world.HELD_OUT``) are never rendered for training.

**Loss.** Reconstruction (``--loss l1``, the default, or ``mse``; the mean over pixels on the [-1, 1]
scale) of a posterior sample, plus ``--kl-weight`` times the KL to N(0, I) per image divided by the
image's pixel values: LDM's weighting of the two terms, so its 1e-6 means the same here. No adversarial
or perceptual terms.

**At the end.** The final weights (the EMA when ``--ema-decay`` is on) get their latent scale measured
(``measure_latent_scale`` on ``--scale-images`` training renders of a fixed seed) and their
reconstruction PSNR on ``--eval-images`` renders of the held-out split (combinations never seen in
training) and, for comparison, of fresh training-split renders. ``<out-dir>/model/`` is then a
``Autoencoder.from_pretrained`` folder: config.json (with ``scaling_factor`` and ``shift_factor``),
model.safetensors, training.json and MODEL_CARD.md. During training ``eval_fn`` logs the PSNR on
256 held-out and 256 seen renders every ``--eval-every`` steps.

Run folder: the trainer's files (``checkpoint/``, metrics.jsonl, loss.png), ``vae_run.json`` (what a
resumed run must match) and ``model/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoint import count_parameters
from ..data.world import CaptionedWorld
from ..errors import expect
from ..models.autoencoder import Autoencoder, AutoencoderConfig, measure_latent_scale, reconstruction_psnr
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import (MODEL_DIR, build_model_card, card_notes, check_resume_settings, command_line, markdown_table,
                   publish_model, run_file)
from .trainer import Trainer

LOSSES = ("l1", "mse")
# Fixed seeds of the measurement sets, far from any training step's (seed, step, rank).
SCALE_SEED, HELD_OUT_SEED, SEEN_SEED = 10_001, 10_002, 10_003

RECIPE_TRAIN = TrainConfig(out_dir="runs/vae", max_steps=6000, batch_size=64, lr=1e-3, weight_decay=0.0,
                           warmup_steps=200, min_lr_ratio=0.05, grad_clip=1.0, eval_every=500, save_every=500,
                           log_every=50)


# ------------------------------------------------------------------------------------------- data
def make_batch_fn(world: CaptionedWorld, batch_size: int, seed: int):
    """batch_fn(step, rank, world_size) -> the uint8 pixels of step ``step``'s batch: images ``[batch_size /
    world_size, 3, H, W]`` (clips ``[.., 3, T, H, W]`` from a ``MovingWorld``), the batch's first field."""
    def batch_fn(step: int, rank: int, world_size: int) -> torch.Tensor:
        return world.sample(batch_size // world_size, step_generator(seed, step, rank))[0]
    return batch_fn


def make_loss_fn(loss: str, kl_weight: float):
    reconstruction = F.l1_loss if loss == "l1" else F.mse_loss

    def loss_fn(model, images: torch.Tensor):
        x = images.float() / 127.5 - 1
        out, kl = model(x)                       # [B, 3, H, W], [B]
        rec = reconstruction(out, x)
        # Both terms per pixel value: the weighting of LDM's autoencoders (per-image sums of each),
        # so their kl_weight (1e-6) means the same here whatever the latent size.
        kl = kl.mean() / out[0].numel()
        return rec + kl_weight * kl, {"rec": rec.detach(), "kl": kl.detach()}
    return loss_fn


def make_eval_fn(held_out: torch.Tensor, seen: torch.Tensor):
    def eval_fn(model) -> dict[str, float]:
        return {"held_out_psnr": reconstruction_psnr(model, held_out), "seen_psnr": reconstruction_psnr(model, seen)}
    return eval_fn


# ------------------------------------------------------------------------------------------- train
def train_autoencoder(out_dir: str | Path = RECIPE_TRAIN.out_dir, *, steps: int = RECIPE_TRAIN.max_steps,
                      batch_size: int = RECIPE_TRAIN.batch_size, lr: float = RECIPE_TRAIN.lr, kl_weight: float = 1e-6,
                      seed: int = 0, resume: bool = False, config: AutoencoderConfig | None = None, loss: str = "l1",
                      scale_images: int = 2000, eval_images: int = 1000, fashion=None, progress: bool = True,
                      command: str | None = None, **train_options: Any) -> dict:
    """Train an ``Autoencoder`` on the captioned world, measure its latent scale and held-out PSNR, and
    write ``out_dir/model`` (see the module docstring). ``train_options``: other ``TrainConfig`` fields
    (``warmup_steps``, ``eval_every``, ``ema_decay``, ``device``, ...; the recipe's by default).
    ``fashion``: garments for the world (tests), by default Fashion-MNIST. Returns the numbers of
    training.json."""
    config = config or AutoencoderConfig()
    expect(isinstance(config, AutoencoderConfig), "config", "an AutoencoderConfig", type(config).__name__)
    expect(loss in LOSSES, "loss", " or ".join(LOSSES), repr(loss))
    expect(isinstance(kl_weight, (int, float)) and kl_weight >= 0, "kl_weight", "a number >= 0", kl_weight)
    for name, value in (("scale_images", scale_images), ("eval_images", eval_images)):
        expect(isinstance(value, int) and not isinstance(value, bool) and value > 0, name, "a positive count", value)
    fields = {**RECIPE_TRAIN.to_dict(), **train_options, "out_dir": str(out_dir), "max_steps": steps,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    unknown = sorted(set(fields) - set(TrainConfig.__dataclass_fields__))
    expect(not unknown, "train_options", "TrainConfig fields", ", ".join(unknown))
    train_config = TrainConfig.from_dict(fields, where="train_options")
    # The scale is measured at the end; a run starts from the unscaled latent space.
    config = config.replace(scaling_factor=1.0, shift_factor=0.0)

    out_dir = Path(out_dir)
    run = {"model": config.to_dict(), "loss": loss, "kl_weight": kl_weight}
    if resume:
        check_resume_settings(run_file(out_dir, "vae"), run, "the model and loss", configs={"model": AutoencoderConfig})
    train_world = CaptionedWorld("train", fashion=fashion)
    held_world = CaptionedWorld("held_out", fashion=fashion)
    expect(config.sample_size == train_world.image_size, "config.sample_size",
           f"the world's image side ({train_world.image_size})", config.sample_size)
    small = min(256, eval_images)
    eval_fn = make_eval_fn(held_world.sample(small, HELD_OUT_SEED).images, train_world.sample(small, SEEN_SEED).images)

    torch.manual_seed(train_config.seed)  # the initial weights
    model = Autoencoder(config)
    trainer = Trainer(model, train_config, make_loss_fn(loss, kl_weight),
                      batch_fn=make_batch_fn(train_world, train_config.batch_size, train_config.seed),
                      eval_fn=eval_fn, resume=resume, progress=progress)
    summary, seconds = trainer.train_run(run_file(out_dir, "vae"), run)
    if not trainer.is_main:
        return summary

    final = trainer.eval_model.eval()
    measure_start = time.perf_counter()
    scale, shift = measure_latent_scale(final, train_world.sample(scale_images, SCALE_SEED).images)
    final.set_latent_scale(scale, shift)
    held_out_psnr = reconstruction_psnr(final, held_world.sample(eval_images, HELD_OUT_SEED).images)
    seen_psnr = reconstruction_psnr(final, train_world.sample(eval_images, SEEN_SEED).images)
    training = {
        "command": command or _python_call(out_dir, steps, batch_size, lr, kl_weight, seed, loss, train_options),
        "data": "captioned world, split train (streamed; held-out combinations never drawn)",
        **trainer.run_record(seconds), "images_seen": trainer.step * train_config.batch_size,
        "loss": loss, "kl_weight": kl_weight, "measure_seconds": time.perf_counter() - measure_start,
        "parameters": count_parameters(final),
        "scaling_factor": scale, "shift_factor": shift, "scale_images": scale_images,
        "held_out_psnr": held_out_psnr, "seen_psnr": seen_psnr, "eval_images": eval_images,
        "final_train": {k: summary[k] for k in ("loss", "rec", "kl") if k in summary},
        "model": final.config.to_dict(),
    }
    folder = publish_model(out_dir / MODEL_DIR, final, training, lambda tmp: model_card(training, tmp))
    return {**training, "model_dir": str(folder)}


def _python_call(out_dir, steps, batch_size, lr, kl_weight, seed, loss, options) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in options.items())
    return (f"train_autoencoder({str(out_dir)!r}, steps={steps}, batch_size={batch_size}, lr={lr}, "
            f"kl_weight={kl_weight}, seed={seed}, loss={loss!r}{extra})")


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of an autoencoder from its training.json (``info``) and the folder's card_notes.md."""
    m = AutoencoderConfig.from_dict(info["model"])
    side, latent = m.sample_size, m.latent_size
    summary = (f"diffusers `AutoencoderKL`: {side}x{side}x{m.in_channels} images -> {latent}x{latent}x{m.latent_channels} "
               f"latents; block_out_channels {m.block_out_channels}, {m.layers_per_block} layer(s) per block, "
               f"{m.norm_num_groups} norm groups, {'attention' if m.mid_block_add_attention else 'no attention'} in the "
               "middle block.")
    usage = ("Load: `multimodal.models.autoencoder.Autoencoder.from_pretrained(this_folder)`; `encode(images)` returns "
             "latents already scaled, `(z - shift_factor) * scaling_factor`; `decode(latents)` images in [-1, 1].")
    numbers = [(f"reconstruction PSNR, held-out combinations ({info['eval_images']} images)",
                f"{info['held_out_psnr']:.2f} dB"),
               (f"reconstruction PSNR, seen combinations ({info['eval_images']} fresh images)",
                f"{info['seen_psnr']:.2f} dB"),
               (f"latent scaling_factor (1 / std over {info['scale_images']} training images)",
                f"{info['scaling_factor']:.5f}"),
               ("latent shift_factor (mean)", f"{info['shift_factor']:.5f}")]
    evaluation = "\n".join([
        *markdown_table(("", "value"), numbers), "",
        "PSNR: mean over images of 10 log10(1 / MSE) on the [0, 1] scale, posterior means, decoder output clamped. "
        "Held-out combinations (red sneaker, blue dress, ...) were never rendered for training."])
    details = [f"Loss: {info['loss']} reconstruction + {info['kl_weight']} x KL (per pixel value)."]
    return build_model_card("Image autoencoder (AutoencoderKL) for the captioned world", summary, info, usage=usage,
                            details=details, unit="images", evaluation=evaluation, notes=card_notes(folder))


# --------------------------------------------------------------------------------------------- CLI
def add_train_autoencoder_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train vae``: model, loss, measurement sizes and every TrainConfig flag."""
    default = AutoencoderConfig()
    model = parser.add_argument_group("model (diffusers AutoencoderKL)")
    model.add_argument("--block-out-channels", type=int, nargs="+", default=list(default.block_out_channels),
                       metavar="C", help=f"channels of each stage; all but the last halve the side "
                                         f"(default: {' '.join(map(str, default.block_out_channels))}: 32x32 -> 8x8)")
    model.add_argument("--layers-per-block", type=int, default=default.layers_per_block,
                       help=f"(default {default.layers_per_block})")
    model.add_argument("--latent-channels", type=int, default=default.latent_channels,
                       help=f"(default {default.latent_channels})")
    model.add_argument("--norm-num-groups", type=int, default=default.norm_num_groups,
                       help=f"(default {default.norm_num_groups})")
    model.add_argument("--mid-attention", action=argparse.BooleanOptionalAction,
                       default=default.mid_block_add_attention, help="self-attention in the middle block")
    objective = parser.add_argument_group("loss and measurements")
    objective.add_argument("--loss", choices=LOSSES, default="l1", help="reconstruction loss (default l1)")
    objective.add_argument("--kl-weight", type=float, default=1e-6,
                           help="weight of the KL term, per pixel value as in LDM (default 1e-6)")
    objective.add_argument("--scale-images", type=int, default=2000,
                           help="training renders the latent scale is measured on (default 2000)")
    objective.add_argument("--eval-images", type=int, default=1000,
                           help="held-out renders the final PSNR is measured on (default 1000)")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def run_train_autoencoder(args: argparse.Namespace) -> dict:
    """``multimodal train vae``: train, measure, write ``<out-dir>/model`` and print the numbers."""
    config = AutoencoderConfig(block_out_channels=tuple(args.block_out_channels),
                               layers_per_block=args.layers_per_block, latent_channels=args.latent_channels,
                               norm_num_groups=args.norm_num_groups,
                               mid_block_add_attention=args.mid_attention)
    fields = train_config_from_args(args).to_dict()
    named = {k: fields.pop(k) for k in ("out_dir", "max_steps", "batch_size", "lr", "seed")}
    result = train_autoencoder(named["out_dir"], steps=named["max_steps"], batch_size=named["batch_size"],
                               lr=named["lr"], kl_weight=args.kl_weight, seed=named["seed"], resume=args.resume,
                               config=config, loss=args.loss, scale_images=args.scale_images,
                               eval_images=args.eval_images, progress=args.progress,
                               command=command_line(args, "multimodal train vae"),
                               **fields)
    if "model_dir" in result:
        print(f"held-out PSNR {result['held_out_psnr']:.2f} dB, seen PSNR {result['seen_psnr']:.2f} dB, "
              f"scaling_factor {result['scaling_factor']:.5f}, shift_factor {result['shift_factor']:.5f}")
        print(f"model: {result['model_dir']}")
    return result
