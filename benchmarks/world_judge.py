"""The world judge's ceiling: how well ``multimodal.evaluation.world_judge`` (its CNN for the object
kind, measured colours and backgrounds) scores fresh real renders of the captioned world.

    python -m benchmarks.world_judge           # trains or loads the judge, scores it on fresh real
                                               # renders, writes results/world_judge.json

The printout is the ceiling a generator can reach: the judge's object, colour, background and
whole-prompt accuracy on fresh real renders of every combination (split "all"), once with garments
from Fashion-MNIST's training split (what the world draws and generators learn from) and once with
garments from its test split (items the judge never saw), and the Fréchet distance between two
independent sets of real renders (the floor at that sample size).

Then the judge and the same recipe trained on crisp renders only (``soften=0``) side by side on
renders passed through the shipped autoencoders: the image VQ-VAE (``checkpoints/image-vq``, what
the token GPT writes) and the diffusion models' KL autoencoder (``checkpoints/text2image-sit``), as
well as on the renders themselves. A generator's images are at best such reconstructions, so a
judge that reads them worse than crisp renders would grade the autoencoder, not the generator.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

from multimodal.data.images import load_fashion_mnist
from multimodal.evaluation.frechet import frechet_distance
from multimodal.evaluation.text_to_image import to_uint8
from multimodal.evaluation.world_judge import JudgeRecipe, evaluate, judge_path, load_or_train_judge, recipe_key
from multimodal.models import VQVAE
from multimodal.models.text2image import TextToImage
from multimodal.paths import SHIPPED_CHECKPOINTS

from .common import markdown_table, write_results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.world_judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="renders of every combination per evaluation")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation renders")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="where the judge trains when it is not cached (default cpu)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (a different cache key)")
    parser.add_argument("--no-reconstructions", action="store_true",
                        help="skip the judges on renders through the shipped autoencoders")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/world_judge.json)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = JudgeRecipe() if args.steps is None else JudgeRecipe(steps=args.steps)
    path = judge_path(recipe)
    cached = path.is_file()
    start = time.perf_counter()
    judge = load_or_train_judge(recipe=recipe, log_every=0 if cached else 100, device=args.device)
    train_s = None if cached else time.perf_counter() - start
    print(f"judge: {path} ({'loaded' if cached else f'trained in {train_s:.0f} s'}), recipe {recipe.to_json()}")

    sets = {"train garments": None, "test garments": load_fashion_mnist("test")}
    results = {}
    for i, (name, fashion) in enumerate(sets.items()):
        results[name] = evaluate(judge, args.repeats, args.seed + 1000 * i, fashion)
    again = evaluate(judge, args.repeats, args.seed + 5000)
    floor = frechet_distance(results["train garments"].pop("features"), again.pop("features"))
    results["test garments"].pop("features")

    rows = [[o, *(results[s]["per_object"][o]["object"] for s in sets)] for o in judge.objects]
    print(markdown_table(["object accuracy", *sets], rows))
    print()
    rows = [[k, *(results[s]["rates"][k] for s in sets)] for k in ("object", "colour", "background", "prompt")]
    print(markdown_table(["accuracy", *sets], rows))
    print()
    for s in sets:
        print(f"{s}: top confusions " + ", ".join(f"{c['object']} -> {c['seen_as']} {c['share']:.1%}"
                                                  for c in results[s]["confusions"][:6]))
        if results[s]["colour_misses"]:
            print(f"{s}: colour/background misses (first {len(results[s]['colour_misses'])}): "
                  + "; ".join(f"{m['wanted']} seen {m['seen']}" for m in results[s]["colour_misses"]))
    print(f"Fréchet distance between two independent sets of {again['images']} real renders: {floor:.4f}")
    data = {"recipe": json.loads(recipe.to_json()), "cache_key": recipe_key(recipe), "train_seconds": train_s,
            "threads": torch.get_num_threads(), "repeats": args.repeats, "seed": args.seed,
            "evaluation": results, "frechet_real_vs_real": floor}
    if not args.no_reconstructions:
        data["reconstructions"] = reconstructions(judge, args.repeats, args.seed + 7000)
    print(f"wrote {write_results('world_judge', data, args.out)}")


@torch.no_grad()
def reconstructions(judge, repeats: int, seed: int) -> dict:
    """Object and prompt accuracy of ``judge`` and of the crisp-only judge on the same fresh renders:
    as rendered, and through each shipped autoencoder; printed as a table."""
    vq = VQVAE.from_pretrained(SHIPPED_CHECKPOINTS / "image-vq").eval()
    kl = TextToImage.from_pretrained(SHIPPED_CHECKPOINTS / "text2image-sit").autoencoder
    ways = {"renders": None,
            "through the image VQ-VAE": lambda x: to_uint8(vq.decode(vq.encode(x.float() / 127.5 - 1)).clamp(-1, 1)),
            "through the KL autoencoder": lambda x: torch.cat([to_uint8(kl.decode(kl.encode(p))) for p in x.split(256)])}
    judges = [judge, *([load_or_train_judge(recipe=JudgeRecipe(soften=0))] if judge.recipe.soften > 0 else [])]
    out, rows = {}, []
    for j in judges:
        label = f"judge, {100 * j.recipe.soften:.0f} % softened" if j.recipe.soften else "crisp-only judge"
        out[label] = {"judge": j.description, "cache_key": j.key}
        for way, transform in ways.items():
            rates = evaluate(j, repeats, seed, transform=transform)["rates"]
            out[label][way] = rates
            rows.append([label, way, f"{100 * rates['object']:.1f} %", f"{100 * rates['prompt']:.1f} %"])
    print(markdown_table(["", "images", "object", "prompt"], rows))
    return out


if __name__ == "__main__":
    main()
