"""Classifier-free guidance for the text-to-image checkpoints, chosen on validation prompts.

For each model (DiT and SiT), its default sampler at 25 steps draws ``--images-per-prompt`` images
for each of ``validation_prompts()`` (64 seen combinations, disjoint from the evaluation list
``world.evaluation_prompts()`` and containing no held-out combination) at every guidance scale of
``--scales``, with a seed of its own (not the evaluation's), and the judge scores them as in
``benchmarks.text_to_image``. The scale with the best prompt accuracy (ties: the smaller scale, the
one nearer to the model's unguided distribution) is the one to evaluate and recommend; the
evaluation prompts and the held-out combinations play no part in choosing it.

    python -m benchmarks.text_to_image_guidance            # writes results/text_to_image_guidance.json
    python -m benchmarks.text_to_image_guidance --dit runs/t2i-dit/model --sit runs/t2i-sit/model
"""

from __future__ import annotations

import argparse
import sys

import torch

from multimodal.data.world import CaptionedWorld
from multimodal.evaluation.text_to_image import best_scale, sample_and_score, validation_prompts
from multimodal.evaluation.world_judge import load_or_train_judge
from multimodal.models.text2image import TextToImage
from multimodal.paths import resolve_model

from .common import markdown_table, write_results
from .text_to_image import SHIP_STEPS

VALIDATION_REAL_SEED, VALIDATION_SAMPLE_SEED = 40_001, 40_002
SCALES = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_to_image_guidance",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dit", default="text2image-dit", help="DiT checkpoint folder or name")
    parser.add_argument("--sit", default="text2image-sit", help="SiT checkpoint folder or name")
    parser.add_argument("--dit-sampler", default=None, help="DiT's sampler (default: the model's default)")
    parser.add_argument("--sit-sampler", default=None, help="SiT's sampler (default: the model's default)")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--steps", type=int, default=SHIP_STEPS)
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="results JSON (default results/text_to_image_guidance.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    judge = load_or_train_judge()
    prompts = [p for p in validation_prompts() for _ in range(args.images_per_prompt)]
    real = CaptionedWorld("train").render([(p["object"], p["colour"], p["background"]) for p in prompts],
                                          VALIDATION_REAL_SEED)
    real_features = judge.features(real)
    results, table = {}, []
    for name, where in (("dit", args.dit), ("sit", args.sit)):
        folder = resolve_model(where)
        model = TextToImage.from_pretrained(folder)
        sampler = getattr(args, f"{name}_sampler") or model.config.default_sampler
        if sampler not in model.config.samplers:
            parser.error(f"--{name}-sampler: expected one of {', '.join(model.config.samplers)}, found {sampler!r}")
        rows = []
        for scale in args.scales:
            row = sample_and_score(model, sampler, args.steps, scale, judge, prompts, real_features)
            row = {"guidance_scale": scale, **row}  # validation prompts are all seen: no held-out accuracy
            rows.append(row)
            table.append([name, sampler, args.steps, scale, f"{100 * row['seen_accuracy']:.1f} %",
                          f"{100 * row['object_accuracy']:.1f} %", row["frechet"]])
            print(f"{name} {sampler} {args.steps} steps, guidance {scale:g}: seen {100 * row['seen_accuracy']:.1f} %, "
                  f"object {100 * row['object_accuracy']:.1f} %, Fréchet {row['frechet']:.2f}", flush=True)
        results[name] = {"checkpoint": str(folder), "sampler": sampler, "rows": rows, "best_scale": best_scale(rows)}
        print(f"{name}: best guidance on the validation prompts {results[name]['best_scale']:g}", flush=True)
    print()
    print(markdown_table(["model", "sampler", "steps", "guidance", "seen", "object", "Fréchet"], table))
    path = write_results("text_to_image_guidance", {
        "command": " ".join(["python -m benchmarks.text_to_image_guidance", *(sys.argv[1:] if argv is None else argv)]),
        "judge": judge.description, "steps": args.steps, "images_per_prompt": args.images_per_prompt,
        "validation_prompts": len(validation_prompts()), "models": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
