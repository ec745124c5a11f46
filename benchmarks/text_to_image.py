"""Text-to-image on the captioned world: the DiT and SiT checkpoints side by side, in one run.

For each model and each of its samplers (DiT: ddpm, ddim, dpm++; SiT: euler, heun, sde) at 10, 25
and 50 steps, it draws ``--images-per-prompt`` images for every prompt of
``world.evaluation_prompts()`` (31 held-out combinations and 64 seen ones, canonical captions) with
classifier-free guidance ``--guidance`` and a fixed seed, and reports:

- **prompt accuracy**, seen and held out: the share of images whose object, colour and background
  the judge (``multimodal.evaluation.world_judge``: its own CNN for the object kind, trained on the
  world's renders separately from any generator, and measured colours) finds right;
- a **Fréchet distance** in the judge's feature space between the generated images and real renders
  of the same prompts (as many, a fixed seed);
- **seconds per image** (the batch's wall time over its images; text encoding, sampling and decoding).

The judge's own scores on real renders of the same prompts are the ceiling, and the same renders
encoded and decoded by each model's autoencoder the ceiling of that denoiser. Then the denoiser's
**step time** against diffusers' ``DiTTransformer2DModel`` at the same config (width, depth, heads,
patch, latent size; class-conditional, since diffusers' DiT has no text input), weights converted
so that both compute the same function (checked), timed interleaved.

Goals (issue): at 25 steps, seen combinations >= 90 % prompt accuracy, held-out >= 70 %.

    python -m benchmarks.text_to_image                     # writes results/text_to_image.json and
                                                           # each checkpoint's evaluation.json + card
    python -m benchmarks.text_to_image --quick             # a smoke run: 1 sampler, 1 step count
    python -m benchmarks.text_to_image --dit runs/t2i-dit/model --sit runs/t2i-sit/model --ship checkpoints

``--ship DIR`` writes ``DIR/text2image-dit`` and ``DIR/text2image-sit`` with their evaluation and
card (``multimodal.training.shipping``), stored in float16 when that costs no accuracy: the float16 copy is written, loaded back and
sampled again at 25 steps with the default sampler and the same seed, and kept only when its seen
and held-out prompt accuracy are each within one point of float32's (else float32 ships).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from multimodal.checkpoint import atomic_write_text
from multimodal.data.world import CaptionedWorld, evaluation_prompts
from multimodal.evaluation.text_to_image import REAL_SEED, autoencoder_ceiling, prompt_accuracy, sample_and_score
from multimodal.evaluation.world_judge import load_or_train_judge
from multimodal.models.dit import DiTConfig
from multimodal.models.text2image import TextToImage
from multimodal.paths import resolve_model
from multimodal.training.shipping import ship
from multimodal.training.text2image import model_card

from .common import interleaved, markdown_table, median, write_results

STEPS = (10, 25, 50)
SHIP_STEPS = 25  # the sampling steps at which a float16 copy must match float32 to ship


def dit_pair(config: DiTConfig, batch: int, device: str = "cpu"):
    """(ours, diffusers', x, t, y): diffusers' ``DiTTransformer2DModel`` of ``config``'s dimensions
    (class-conditional, 16 classes) with random weights, ours converted from it, and a batch of
    inputs, all on ``device``."""
    from diffusers import DiTTransformer2DModel

    from multimodal.convert.dit import from_diffusers

    side = config.input_size[0]
    theirs = DiTTransformer2DModel(num_attention_heads=config.heads, attention_head_dim=config.width // config.heads,
                                   in_channels=config.in_channels, out_channels=config.in_channels,
                                   num_layers=config.depth, sample_size=side, patch_size=config.patch_size,
                                   num_embeds_ada_norm=16).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():  # adaLN-Zero layers too, so both compute something non-trivial
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    ours = from_diffusers(theirs).eval()
    x = torch.randn(batch, config.in_channels, side, side, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    y = torch.randint(0, 16, (batch,), generator=g)
    return ours.to(device), theirs.to(device), x.to(device), t.to(device), y.to(device)


def denoiser_step_time(config: DiTConfig, batch: int, repeats: int, device: str = "cpu",
                       amp: torch.dtype | None = None) -> dict:
    """Our DiT against diffusers' DiTTransformer2DModel of the same dimensions, class-conditional,
    on ``device``, under autocast to ``amp`` when given (else float32). On CUDA each call ends with
    a synchronize, so the time is the GPU's."""
    ours, theirs, x, t, y = dit_pair(config, batch, device)
    side = config.input_size[0]
    kind = torch.device(device).type

    def timed(fn):
        def run():
            with torch.autocast(kind, dtype=amp or torch.float32, enabled=amp is not None):
                out = fn()
            if kind == "cuda":
                torch.cuda.synchronize()
            return out
        return run

    run_ours = timed(lambda: ours(x, t, class_labels=y))
    run_theirs = timed(lambda: theirs(x, timestep=t, class_labels=y).sample)
    with torch.inference_mode():
        difference = (run_ours().float() - run_theirs().float()).abs().max().item()
        times = interleaved({"ours": run_ours, "diffusers": run_theirs}, repeats=repeats, warmup=2)
    ours_s, theirs_s = median(times["ours"]), median(times["diffusers"])
    return {"config": {"width": config.width, "depth": config.depth, "heads": config.heads,
                       "patch_size": config.patch_size, "latent": [config.in_channels, side, side], "batch": batch},
            "device": device, "dtype": str(amp or torch.float32).removeprefix("torch."),
            "max_abs_difference": difference, "ours_ms": 1000 * ours_s, "diffusers_ms": 1000 * theirs_s,
            "ours_over_diffusers_time": ours_s / theirs_s}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_to_image", description=__doc__.split("\n")[0])
    parser.add_argument("--dit", default="text2image-dit", help="DiT checkpoint folder or name")
    parser.add_argument("--sit", default="text2image-sit", help="SiT checkpoint folder or name")
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one sampler per model at 10 steps; writes nothing")
    parser.add_argument("--no-write-checkpoints", dest="write_checkpoints", action="store_false",
                        help="do not write evaluation.json and MODEL_CARD.md into the checkpoint folders")
    parser.add_argument("--out", default=None, help="results JSON (default results/text_to_image.json)")
    parser.add_argument("--ship", default=None, metavar="DIR",
                        help="write DIR/text2image-dit and -sit (float16 when it costs no accuracy)")
    args = parser.parse_args(argv)
    if args.quick and args.ship:
        parser.error("--ship: expected a full run, not --quick")
    argv_used = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    steps = [10] if args.quick else args.steps

    judge = load_or_train_judge()
    prompts = [p for p in evaluation_prompts() for _ in range(args.images_per_prompt)]
    world = CaptionedWorld("all")
    real = world.render([(p["object"], p["colour"], p["background"]) for p in prompts], REAL_SEED)
    real_features = judge.features(real)
    ceiling_row = prompt_accuracy(judge.score(real, prompts), prompts)
    print(f"judge on real renders of the same prompts: seen {100 * ceiling_row['seen_accuracy']:.1f} %, "
          f"held out {100 * ceiling_row['held_out_accuracy']:.1f} %")

    held_prompts = np.array([p["held_out"] for p in evaluation_prompts()])
    results, rows = {}, []
    for name, where in (("dit", args.dit), ("sit", args.sit)):
        folder = resolve_model(where)
        model = TextToImage.from_pretrained(folder)
        coder_row = autoencoder_ceiling(model, judge, real, prompts)
        print(f"{name}: judge on real renders through its autoencoder: seen {100 * coder_row['seen_accuracy']:.1f} %, "
              f"held out {100 * coder_row['held_out_accuracy']:.1f} %")
        model_rows = []
        samplers = model.config.samplers[:1] if args.quick else model.config.samplers
        for sampler in samplers:
            for n in steps:
                row = {"model": name, **sample_and_score(model, sampler, n, args.guidance, judge, prompts,
                                                         real_features)}
                model_rows.append(row)
                print(f"{name} {sampler:6s} {n:3d} steps: seen {100 * row['seen_accuracy']:5.1f} %, held out "
                      f"{100 * row['held_out_accuracy']:5.1f} %, Fréchet {row['frechet']:.2f}, "
                      f"{row['seconds_per_image']:.4f} s/image", flush=True)
        results[name] = {"checkpoint": str(folder), "autoencoder_ceiling": coder_row, "rows": model_rows}
        rows += model_rows
        if args.quick:
            continue
        evaluation = {"command": " ".join(["python -m benchmarks.text_to_image", *argv_used]), "judge": judge.description,
                      "guidance_scale": args.guidance, "images_per_prompt": args.images_per_prompt,
                      "seen_prompts": int((~held_prompts).sum()), "held_out_prompts": int(held_prompts.sum()),
                      "judge_ceiling": ceiling_row, "autoencoder_ceiling": coder_row, "rows": model_rows}
        if args.write_checkpoints:
            previous = folder / "evaluation.json"  # a shipped folder keeps the float16 check made when shipped
            kept = {k: v for k, v in (json.loads(previous.read_text()) if previous.is_file() else {}).items()
                    if k == "storage_check"}
            atomic_write_text(folder / "evaluation.json", json.dumps({**evaluation, **kept}, indent=2) + "\n")
            atomic_write_text(folder / "MODEL_CARD.md", model_card(folder))
        if args.ship:
            sampler = model.config.default_sampler
            reference = next((r for r in model_rows if r["sampler"] == sampler and r["steps"] == SHIP_STEPS), None)
            if reference is None:
                reference = {"model": name, **sample_and_score(model, sampler, SHIP_STEPS, args.guidance, judge,
                                                               prompts, real_features)}
            dest = Path(args.ship) / f"text2image-{name}"
            if dest.resolve() == Path(folder).resolve():  # evaluating the shipped folder itself: nothing to copy
                print(f"{dest} is the evaluated folder: kept as it is", flush=True)
                continue
            check = ship(folder, dest, evaluation, reference, lambda m: sample_and_score(
                m, sampler, SHIP_STEPS, args.guidance, judge, prompts, real_features))
            results[name]["shipped"] = {"folder": str(dest), **check}
            print(f"shipped {dest} ({check['stored_dtype']}; float16 at {SHIP_STEPS} steps: seen "
                  f"{100 * check['float16']['seen_accuracy']:.1f} %, held out "
                  f"{100 * check['float16']['held_out_accuracy']:.1f} %)", flush=True)

    dit_config = TextToImage.from_pretrained(resolve_model(args.dit)).config.denoiser
    step_time = denoiser_step_time(dit_config, batch=2 * len(prompts), repeats=3 if args.quick else 15)
    print(f"denoiser forward, batch {2 * len(prompts)}: ours {step_time['ours_ms']:.1f} ms, diffusers "
          f"{step_time['diffusers_ms']:.1f} ms (ours / diffusers {step_time['ours_over_diffusers_time']:.3f}; "
          f"max difference {step_time['max_abs_difference']:.2e})")
    print()
    print(markdown_table(["model", "sampler", "steps", "seen", "held out", "Fréchet", "s/image"],
                         [[r["model"], r["sampler"], r["steps"], f"{100 * r['seen_accuracy']:.1f} %",
                           f"{100 * r['held_out_accuracy']:.1f} %", r["frechet"], r["seconds_per_image"]]
                          for r in rows]))
    if not args.quick or args.out:
        path = write_results("text_to_image", {"judge": judge.description, "judge_ceiling": ceiling_row,
                                               "guidance_scale": args.guidance,
                                               "images_per_prompt": args.images_per_prompt, "models": results,
                                               "denoiser_step_time": step_time}, args.out)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
