"""The token GPT (text -> VQ-VAE codes) on the captioned world, beside SiT and DiT, in one run.

1. **Sweep** (``--sweep``): classifier-free guidance, temperature and top-p for each ``--gpt`` folder
   on the 64 validation prompts (``validation_prompts()``, disjoint from the evaluation list, seen
   combinations only, ``--sweep-images-per-prompt`` images each). The setting with the best seen accuracy is chosen per model.
2. **Evaluation**: the chosen setting (or ``--guidance/--temperature/--top-p``) on
   ``world.evaluation_prompts()`` (31 held-out combinations, 64 seen; ``--images-per-prompt`` each;
   one image more or less moves a seen accuracy by 1/(64 x images), so 2 per prompt is a rough view),
   with the same seed as ``benchmarks/text_to_image.py``: prompt accuracy seen / held out under the
   world judge, Fréchet distance, seconds per image (codes and decoding, batch of all prompts), and
   the codebook usage of the codes written. The VQ-VAE's ceiling is the judge on real renders
   encoded and decoded by it. SiT and DiT at 25 steps (their default samplers) are timed and scored
   on the same prompts and seed in the same run, with their autoencoder's ceiling.
3. **Two judges**: the world judge (``JudgeRecipe()``, trained on crisp and softened renders) and
   the same recipe trained on crisp renders only (``soften=0``) score every image and ceiling, so
   that a model's lead cannot come from how one judge reads blurred or sharp images.

    python -m benchmarks.text_to_image_gpt --gpt runs/gpu1/gpt-a/model runs/gpu1/gpt-b/model --sweep
    python -m benchmarks.text_to_image_gpt --gpt checkpoints/text2image-gpt

Results: ``benchmarks/results/text_to_image_gpt.json`` (and the sweep in
``text_to_image_gpt_sweep.json``; ``--results NAME`` writes ``NAME.json`` and ``NAME_sweep.json``); with ``--write-checkpoint`` the evaluation also lands in each GPT
folder's ``evaluation.json`` and its MODEL_CARD.md is rewritten.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import torch

from multimodal.checkpoint import atomic_write_text
from multimodal.data.world import CaptionedWorld, evaluation_prompts
from multimodal.evaluation.text_to_image import (REAL_SEED, autoencoder_ceiling, evaluate_images, prompt_accuracy,
                                                 sample_and_score, sample_and_score_gpt, validation_prompts, vq_ceiling)
from multimodal.evaluation.world_judge import JudgeRecipe, load_or_train_judge
from multimodal.models.text2codes import TextToCodes
from multimodal.models.text2image import TextToImage
from multimodal.paths import resolve_model
from multimodal.training.runs import read_training
from multimodal.training.text2codes import model_card

from .common import markdown_table, write_results

GUIDANCE = (1.5, 2.0, 3.0, 4.0, 6.0)
TEMPERATURE = (0.7, 0.85, 1.0)
TOP_P = (None, 0.9)


def _prompts(prompts: list[dict], per: int) -> list[dict]:
    return [p for p in prompts for _ in range(per)]


def _real(judge, prompts):
    real = CaptionedWorld("all").render([(p["object"], p["colour"], p["background"]) for p in prompts], REAL_SEED)
    return real, judge.features(real)


def _row_text(name: str, r: dict) -> list:
    setting = (f"g {r['guidance_scale']}, T {r['temperature']}, top-p {r['top_p']}" if "temperature" in r
               else f"{r['sampler']}, {r['steps']} steps")
    crisp = r["crisp_judge"]
    return [name, setting, f"{100 * r['seen_accuracy']:.1f} %", f"{100 * r.get('held_out_accuracy', float('nan')):.1f} %",
            f"{100 * crisp['seen_accuracy']:.1f} %", f"{100 * crisp['held_out_accuracy']:.1f} %",
            f"{r['frechet']:.2f}", f"{r['seconds_per_image']:.4f}",
            f"{100 * r['codebook_usage']:.1f} %" if "codebook_usage" in r else ""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_to_image_gpt", description=__doc__.split("\n")[0])
    parser.add_argument("--gpt", nargs="+", default=["text2image-gpt"], help="text -> codes folders or names")
    parser.add_argument("--sweep", action="store_true", help="choose guidance, temperature and top-p first")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--images-per-prompt", type=int, default=2, help="images of each evaluation prompt")
    parser.add_argument("--sweep-images-per-prompt", type=int, default=2, help="images of each validation prompt")
    parser.add_argument("--diffusion", nargs="*", default=["text2image-sit", "text2image-dit"],
                        help="diffusion checkpoints scored and timed beside the GPT (25 steps, default sampler)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-checkpoint", action="store_true", help="write evaluation.json into each GPT folder")
    parser.add_argument("--results", default="text_to_image_gpt",
                        help="name of the results file in benchmarks/results/ (without .json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m benchmarks.text_to_image_gpt", *(sys.argv[1:] if argv is None else argv)])
    judge = load_or_train_judge()
    models = {where: TextToCodes.from_pretrained(resolve_model(where)) for where in args.gpt}

    chosen = {where: dict(guidance_scale=args.guidance, temperature=args.temperature, top_p=args.top_p)
              for where in args.gpt}
    if args.sweep:
        prompts = _prompts(validation_prompts(), args.sweep_images_per_prompt)
        real, features = _real(judge, prompts)
        sweep = {}
        for where, model in models.items():
            rows = []
            for g, t, p in itertools.product(GUIDANCE, TEMPERATURE, TOP_P):
                row = sample_and_score_gpt(model, judge, prompts, features, guidance_scale=g, temperature=t, top_p=p)
                row.pop("held_out_accuracy", None)
                rows.append(row)
                print(f"{where}: guidance {g}, temperature {t}, top-p {p}: seen {100 * row['seen_accuracy']:.1f} %, "
                      f"Fréchet {row['frechet']:.2f}", flush=True)
            best = max(rows, key=lambda r: (r["seen_accuracy"], -r["frechet"]))
            chosen[where] = {k: best[k] for k in ("guidance_scale", "temperature", "top_p")}
            sweep[where] = {"rows": rows, "chosen": chosen[where]}
            print(f"{where}: chosen {chosen[where]} (validation seen {100 * best['seen_accuracy']:.1f} %)")
        write_results(f"{args.results}_sweep", {"command": command, "judge": judge.description,
                                                  "prompts": f"validation_prompts() x {args.sweep_images_per_prompt}",
                                                  "models": sweep})

    prompts = _prompts(evaluation_prompts(), args.images_per_prompt)
    real, features = _real(judge, prompts)
    crisp = load_or_train_judge(recipe=JudgeRecipe(soften=0))  # trained on crisp renders only
    crisp_features = crisp.features(real)
    ceiling = prompt_accuracy(judge.score(real, prompts), prompts)
    ceilings = {"real renders": {"judge": ceiling, "crisp judge": prompt_accuracy(crisp.score(real, prompts), prompts)}}
    results, table = {}, []

    def add_row(name: str, row: dict) -> None:
        images = row.pop("images")
        row["crisp_judge"] = evaluate_images(crisp, images, prompts, crisp_features)
        results[name]["row"] = row
        table.append(_row_text(name, row))

    for where, model in models.items():
        row = sample_and_score_gpt(model, judge, prompts, features, keep_images=True, **chosen[where])
        ceiling_vq = vq_ceiling(model, judge, real, prompts)
        ceilings[f"real renders through {where}'s VQ-VAE"] = {"judge": ceiling_vq,
                                                              "crisp judge": vq_ceiling(model, crisp, real, prompts)}
        results[where] = {"setting": chosen[where], "vq_ceiling": ceiling_vq}
        add_row(where, row)
        if args.write_checkpoint:
            folder = resolve_model(where)
            atomic_write_text(folder / "evaluation.json", json.dumps({
                "command": command, "judge": judge.description, "images_per_prompt": args.images_per_prompt,
                "judge_ceiling": ceiling, "vq_ceiling": ceiling_vq, "row": results[where]["row"],
                "crisp_judge": crisp.description, "crisp_judge_ceiling": ceilings["real renders"]["crisp judge"],
                "crisp_vq_ceiling": ceilings[f"real renders through {where}'s VQ-VAE"]["crisp judge"]},
                indent=2) + "\n")
            info = read_training(folder)
            if info:  # a trained folder: its card gains the evaluation
                atomic_write_text(folder / "MODEL_CARD.md", model_card(info, folder))
    for where in args.diffusion:
        model = TextToImage.from_pretrained(resolve_model(where))
        row = sample_and_score(model, model.config.default_sampler, 25, 4.0, judge, prompts, features, keep_images=True)
        ceilings[f"real renders through {where}'s autoencoder"] = {
            "judge": autoencoder_ceiling(model, judge, real, prompts),
            "crisp judge": autoencoder_ceiling(model, crisp, real, prompts)}
        results[where] = {}
        add_row(where, row)
    print()
    print(markdown_table(["model", "setting", "seen", "held out", "crisp judge: seen", "held out", "Fréchet", "s/image",
                          "codebook usage"], table))
    print()
    print(markdown_table(["ceiling", "seen", "held out", "crisp judge: seen", "held out"],
                         [[name, *(f"{100 * c[j][k]:.1f} %" for j in ("judge", "crisp judge")
                                   for k in ("seen_accuracy", "held_out_accuracy"))] for name, c in ceilings.items()]))
    path = write_results(args.results, {"command": command, "judge": judge.description, "judge_ceiling": ceiling,
                                               "crisp_judge": crisp.description, "ceilings": ceilings,
                                               "images_per_prompt": args.images_per_prompt, "models": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
