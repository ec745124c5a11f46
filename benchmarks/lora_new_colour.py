"""A LoRA adapter that teaches a text-to-image model (the shipped SiT by default; DiT or the token GPT
too) a colour word it never read (pink), judged by the world judge with its palette extended to that
colour.

For the base model and the base plus the adapter, the same prompts and seeds:

- the new colour on the **taught** objects (every object but ``UNTAUGHT``, on every background): the
  combinations the adapter's few hundred examples showed;
- the new colour on the **untaught** objects (sneaker, bag, star, heart): never shown in it, so the
  word must carry over;
- the **world's** evaluation prompts (64 seen, 31 held-out combinations), which do not name the new
  colour: they must keep their accuracy.

Every image is judged with the palette of the world's colours plus the new one, so an old prompt
drawn pinkish counts as wrong. Prompt accuracy: object, colour and background all right. The
judge's score on real renders of the new-colour prompts is the ceiling.

    python -m benchmarks.lora_new_colour                       # checkpoints/text2image-sit-pink-lora
    python -m benchmarks.lora_new_colour --adapter runs/sit-pink/model --write-card

Results: ``benchmarks/results/lora_new_colour.json`` and a markdown table; ``--write-card`` also
writes the adapter folder's ``evaluation.json`` and regenerates its ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from multimodal.checkpoint import atomic_write_text
from multimodal.data.world import PALETTE, CaptionedWorld, canonical_caption, evaluation_prompts
from multimodal.evaluation.text_to_image import REAL_SEED, SAMPLE_SEED, prompt_accuracy, to_uint8
from multimodal.evaluation.world_judge import load_or_train_judge
from multimodal.lora import adapter_base, load_lora, remove_lora, set_lora
from multimodal.models.text2codes import TextToCodes
from multimodal.training.text2image_lora import UNTAUGHT, load_base, model_card, new_colour_combos

from .common import markdown_table, write_results

DEFAULT_ADAPTER = "checkpoints/text2image-sit-pink-lora"


def prompt_sets(colour: str) -> dict[str, list[dict]]:
    """name -> prompt dicts (caption, attributes, held_out) of each group the benchmark scores."""
    def as_prompts(combos):
        return [{"caption": canonical_caption(c), **c._asdict(), "held_out": False} for c in combos]
    return {f"{colour}, taught objects": as_prompts(new_colour_combos(colour, taught=True)),
            f"{colour}, untaught objects": as_prompts(new_colour_combos(colour, taught=False)),
            "world (no new word)": evaluation_prompts()}


@torch.no_grad()
def generate(model, captions: list[str], sampler: str, steps: int, guidance: float | None) -> torch.Tensor:
    """Images for ``captions`` with the fixed seed: a diffusion model with ``sampler`` and ``steps``, a
    token GPT with its own sampling defaults (both with ``guidance``, when given)."""
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    if isinstance(model, TextToCodes):
        kwargs = dict(guidance_scale=guidance)
    else:
        kwargs = dict(num_inference_steps=steps, guidance_scale=4.0 if guidance is None else guidance, sampler=sampler)
    return torch.cat([model.generate(captions[i:i + 256], generator=g, **kwargs)  # 256: the models' most per call
                      for i in range(0, len(captions), 256)])


def score_group(model, judge, prompts: list[dict], images_per_prompt: int, sampler: str, steps: int,
                guidance: float | None) -> dict:
    """Sample every prompt ``images_per_prompt`` times with the fixed seed and judge the images."""
    repeated = [p for p in prompts for _ in range(images_per_prompt)]
    images = generate(model, [p["caption"] for p in repeated], sampler, steps, guidance)
    score = judge.score(to_uint8(images), repeated, colours=list(PALETTE))
    return {"images": len(repeated), "prompt_accuracy": score["rates"]["prompt"],
            "colour_accuracy": score["rates"]["colour"], "object_accuracy": score["rates"]["object"],
            "background_accuracy": score["rates"]["background"], **prompt_accuracy(score, repeated)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lora_new_colour", description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER, help="the adapter folder (default %(default)s)")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--sampler", default="heun", help="diffusion bases (default %(default)s)")
    parser.add_argument("--steps", type=int, default=25, help="diffusion bases (default %(default)s)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance scale (default: 4 for diffusion bases, a GPT's own)")
    parser.add_argument("--write-card", action="store_true", help="write the adapter's evaluation.json and card")
    parser.add_argument("--results", default="lora_new_colour", help="results file name (default %(default)s)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    folder = Path(args.adapter)
    base_name = adapter_base(folder)
    if base_name is None:
        raise SystemExit(f"{folder}: not an adapter folder")
    training = json.loads((folder / "training.json").read_text())
    colour = training["colour"]
    judge = load_or_train_judge()
    model = load_base(base_name).eval()
    load_lora(model, folder, "new", base=base_name)

    groups = prompt_sets(colour)
    real = [p for p in groups[f"{colour}, taught objects"] + groups[f"{colour}, untaught objects"]]
    renders = CaptionedWorld("new_colour").render([(p["object"], p["colour"], p["background"]) for p in real]
                                                  * args.images_per_prompt, REAL_SEED)
    ceiling = judge.score(renders, real * args.images_per_prompt)["rates"]["prompt"]
    print(f"judge on real {colour} renders: {100 * ceiling:.1f} %")

    rows = []
    for name, prompts in groups.items():
        for label, active in (("base", None), ("base + adapter", ["new"])):
            set_lora(model, active)
            row = {"prompts": name, "model": label,
                   **score_group(model, judge, prompts, args.images_per_prompt, args.sampler, args.steps,
                                 args.guidance)}
            rows.append(row)
            extra = (f"  (seen {100 * row['seen_accuracy']:.1f} %, held out {100 * row['held_out_accuracy']:.1f} %)"
                     if "held_out_accuracy" in row else "")
            print(f"{name:28s} {label:15s} prompt {100 * row['prompt_accuracy']:5.1f} %  colour "
                  f"{100 * row['colour_accuracy']:5.1f} %  object {100 * row['object_accuracy']:5.1f} %{extra}",
                  flush=True)
    remove_lora(model)

    command = "python -m benchmarks.lora_new_colour " + " ".join(argv if argv is not None else sys.argv[1:])
    evaluation = {"command": command.strip(), "judge": judge.description, "colour": colour, "base": base_name,
                  "adapter": str(folder),
                  "sampling": (f"the GPT's temperature {model.config.temperature}, guidance "
                               f"{args.guidance or model.config.guidance_scale}" if isinstance(model, TextToCodes)
                               else f"{args.sampler}, {args.steps} steps, guidance {args.guidance or 4.0}"), "images_per_prompt": args.images_per_prompt,
                  "untaught_objects": list(UNTAUGHT), "judge_ceiling": ceiling, "rows": rows,
                  "adapter_training": {k: training.get(k) for k in ("command", "examples", "steps", "batch_size",
                                                                    "train_seconds", "examples_per_s", "device",
                                                                    "torch_threads", "parameters")}}
    path = write_results(args.results, evaluation)
    table = markdown_table(("prompts", "model", "prompt accuracy", "colour right", "object right"),
                           [(r["prompts"], r["model"], f"{100 * r['prompt_accuracy']:.1f} %",
                             f"{100 * r['colour_accuracy']:.1f} %", f"{100 * r['object_accuracy']:.1f} %")
                            for r in rows])
    print(table)
    print(f"results: {path}")
    if args.write_card:
        atomic_write_text(folder / "evaluation.json", json.dumps(evaluation, indent=2) + "\n")
        atomic_write_text(folder / "MODEL_CARD.md", model_card(folder))
        print(f"card: {folder / 'MODEL_CARD.md'}")
    return evaluation


if __name__ == "__main__":
    main()
