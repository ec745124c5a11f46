"""Does the image classifier know when a picture is not one of its ten kinds? An out-of-distribution
score and threshold for ``checkpoints/vit-fashion-mnist``, chosen on one half of the data and
measured on the other.

In distribution: the Fashion-MNIST **test** split (never trained on), even indices to choose, odd
indices to measure. Out of distribution, each kind split so that nothing measured was seen while
choosing:

- **glyphs**: letters and digits rendered from the installed fonts, light on black like the
  garments (choose: DejaVu Sans; measure: every other family);
- **shapes**: the captioned world's coloured shapes on coloured backgrounds (choose: seed 0;
  measure: seed 1);
- **photos**: random crops of scikit-image's bundled photos (choose: the first half of them by
  name; measure: the rest), when scikit-image is installed;
- **noise**: uniform and Gaussian noise (different seeds);
- **blank**: images of one grey level (choose: even levels; measure: odd levels).

Three scores, higher meaning "one of mine" (``OutOfDistribution``): the largest softmax probability
(MSP), the negative free energy ``logsumexp(logits)`` (Liu et al., 2020) and the negative
Mahalanobis distance of the penultimate features to the nearest class mean (Lee et al., 2018), its
class means and shared covariance fitted on 20,000 Fashion-MNIST **training** images. The one with
the larger area under the ROC curve on the choosing half wins; its threshold keeps 95 % of the
choosing half's Fashion-MNIST images. Before any score, an image whose normalised pixels vary
less than half as much as the flattest of those training images (a blank picture) is out. Reported on the measuring half: Fashion-MNIST images kept and accuracy (all, and among the
kept), each kind of out-of-distribution image caught, and the AUROC.

    python -m benchmarks.classifier_ood            # -> benchmarks/results/classifier_ood.json
    python -m benchmarks.classifier_ood --write    # also the checkpoint's ood.json / ood.safetensors,
                                                   # which the pipeline reads
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from benchmarks.common import machine_info, markdown_table, write_results
from multimodal.data.images import load_fashion_mnist
from multimodal.data.world import SHAPES, CaptionedWorld, combinations
from multimodal.media.images import preprocess
from multimodal.models.vit import ViT
from multimodal.paths import resolve_model
from multimodal.pipelines.image_classification import DEFAULT_MODEL, OOD_SCORES, OutOfDistribution

KEEP = 0.95  # share of in-distribution images the threshold keeps (on the choosing half)
FIT_IMAGES, FIT_SEED = 20000, 0  # training images the Mahalanobis score's Gaussians are fitted on
CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FONT_DIRS = [Path("/usr/share/fonts")]


# ------------------------------------------------------------------------------------------- data
def fashion(half: str) -> tuple[list[Image.Image], np.ndarray]:
    images, labels = load_fashion_mnist("test")
    pick = slice(0, None, 2) if half == "choose" else slice(1, None, 2)
    return [Image.fromarray(a[0].numpy()) for a in images[pick]], labels[pick].numpy()


def _fonts() -> list[Path]:
    return sorted(p for d in FONT_DIRS for p in d.rglob("*.ttf"))


def glyphs(half: str) -> list[Image.Image]:
    fonts = [p for p in _fonts() if (p.stem.startswith("DejaVuSans") and "Mono" not in p.stem) == (half == "choose")]
    out = []
    for path in fonts:
        font = ImageFont.truetype(str(path), 22)
        for ch in CHARACTERS:
            canvas = Image.new("L", (28, 28), 0)
            draw = ImageDraw.Draw(canvas)
            box = draw.textbbox((0, 0), ch, font=font)
            x, y = (28 - (box[2] - box[0])) // 2 - box[0], (28 - (box[3] - box[1])) // 2 - box[1]
            draw.text((x, y), ch, fill=255, font=font)
            out.append(canvas)
    return out


def shapes(half: str, n: int = 600) -> list[Image.Image]:
    combos = [c for c in combinations("all") if c.object in SHAPES]
    seed = 0 if half == "choose" else 1
    rng = np.random.default_rng(seed)
    chosen = [combos[i] for i in rng.integers(0, len(combos), n)]
    images = CaptionedWorld("all").render(chosen, torch.Generator().manual_seed(seed))
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in images]


def photos(half: str, crops: int = 24) -> list[Image.Image]:
    try:
        import skimage.data as data
    except ImportError:
        return []
    names = ["astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
             "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "text"]
    chosen = names[:len(names) // 2] if half == "choose" else names[len(names) // 2:]
    rng = np.random.default_rng(0 if half == "choose" else 1)
    out = []
    for name in chosen:
        photo = Image.fromarray(np.asarray(getattr(data, name)()))
        out.append(photo)  # the whole photo, and crops of it
        for _ in range(crops - 1):
            side = int(rng.integers(min(photo.size) // 4, min(photo.size) + 1))
            x, y = rng.integers(0, photo.width - side + 1), rng.integers(0, photo.height - side + 1)
            out.append(photo.crop((int(x), int(y), int(x) + side, int(y) + side)))
    return out


def noise(half: str, n: int = 300) -> list[Image.Image]:
    rng = np.random.default_rng(0 if half == "choose" else 1)
    uniform = rng.integers(0, 256, (n // 2, 28, 28), dtype=np.uint8)
    gauss = np.clip(rng.normal(rng.uniform(40, 200, (n // 2, 1, 1)), rng.uniform(10, 80, (n // 2, 1, 1)),
                               (n // 2, 28, 28)), 0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in np.concatenate([uniform, gauss])]


def blank(half: str) -> list[Image.Image]:
    levels = range(0, 256, 2) if half == "choose" else range(1, 256, 2)
    return [Image.new("L", (28, 28), v) for v in levels] + [Image.new("RGB", (40, 30), (v, 255 - v, v // 2))
                                                            for v in levels]


OOD_KINDS = {"glyphs": glyphs, "shapes": shapes, "photos": photos, "noise": noise, "blank": blank}


# ------------------------------------------------------------------------------------- measuring
@torch.no_grad()
def outputs_of(model: ViT, images: list[Image.Image], batch: int = 256) -> tuple[torch.Tensor, ...]:
    """(logits ``[N, classes]``, penultimate features ``[N, width]``, normalised inputs), as the
    pipeline computes them."""
    logits, features, inputs = [], [], []
    for i in range(0, len(images), batch):
        x = preprocess(images[i:i + batch], model.config)
        f = model.forward_head(model.forward_features(x), pre_logits=True)
        features.append(f.float())
        logits.append(model.head(f).float())
        inputs.append(x)
    if not images:
        return torch.empty(0, len(model.labels)), torch.empty(0, model.config.width), torch.empty(0)
    return torch.cat(logits), torch.cat(features), torch.cat(inputs)


def fit_statistics(model: ViT) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The class means and shared precision of the Mahalanobis score, and the least contrast an
    image may have (half the flattest training image's), from ``FIT_IMAGES`` training images."""
    images, labels = load_fashion_mnist("train")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(FIT_SEED))[:FIT_IMAGES]
    _, features, inputs = outputs_of(model, [Image.fromarray(a[0].numpy()) for a in images[pick]])
    min_contrast = 0.5 * float(inputs.flatten(1).std(dim=1).min())
    return (*OutOfDistribution.fit_gaussians(features, labels[pick], len(model.labels)), min_contrast)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an in-distribution image > score of an out-of-distribution one), ties half."""
    scores = np.concatenate([inside, outside])
    ranks = scores.argsort().argsort() + 1.0
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    n_in, n_out = len(inside), len(outside)
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"ViT checkpoint (default {DEFAULT_MODEL})")
    parser.add_argument("--write", action="store_true", help="write the chosen score and threshold to the "
                                                             "checkpoint's ood.json")
    parser.add_argument("--results", default="classifier_ood")
    args = parser.parse_args(argv)
    folder = resolve_model(args.model)
    model = ViT.from_pretrained(folder).eval()

    means, precision, min_contrast = fit_statistics(model)
    detectors = {name: OutOfDistribution(name, 0.0, means, precision, min_contrast=min_contrast)
                 for name in OOD_SCORES}
    halves = {}
    for half in ("choose", "measure"):
        images, labels = fashion(half)
        ood = {kind: outputs_of(model, make(half)) for kind, make in OOD_KINDS.items()}
        halves[half] = {"labels": labels, "fashion": outputs_of(model, images),
                        "ood": {k: v for k, v in ood.items() if len(v[0])}}
        print(f"{half}: {len(images)} Fashion-MNIST, " + ", ".join(f"{len(v[0])} {k}" for k, v in ood.items()),
              flush=True)

    def scores(name, outputs):
        return detectors[name].scores(*outputs).numpy()

    choose = halves["choose"]
    aurocs = {name: auroc(scores(name, choose["fashion"]),
                          np.concatenate([scores(name, v) for v in choose["ood"].values()])) for name in OOD_SCORES}
    score = max(aurocs, key=aurocs.get)
    threshold = float(np.quantile(scores(score, choose["fashion"]), 1 - KEEP))

    measure = halves["measure"]
    inside = scores(score, measure["fashion"])
    kept = inside >= threshold
    right = measure["fashion"][0].argmax(-1).numpy() == measure["labels"]
    caught = {kind: float((scores(score, v) < threshold).mean()) for kind, v in measure["ood"].items()}
    all_out = np.concatenate([scores(score, v) for v in measure["ood"].values()])
    result = {
        "command": "python -m benchmarks.classifier_ood " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "model": str(folder),
        "choose": {"auroc": aurocs, "score": score, "threshold": threshold, "keep_target": KEEP,
                   "gaussians_fitted_on": f"{FIT_IMAGES} Fashion-MNIST training images (seed {FIT_SEED})",
                   "min_contrast": min_contrast,
                   "sizes": {"fashion": len(choose["labels"]), **{k: len(v[0]) for k, v in choose["ood"].items()}}},
        "measure": {
            "fashion_kept": float(kept.mean()),
            "accuracy_all": float(right.mean()),
            "accuracy_kept": float(right[kept].mean()),
            "caught": caught,
            "caught_all": float((all_out < threshold).mean()),
            "auroc": auroc(inside, all_out),
            "auroc_of_each_score": {name: auroc(scores(name, measure["fashion"]),
                                                np.concatenate([scores(name, v) for v in measure["ood"].values()]))
                                    for name in OOD_SCORES},
            "sizes": {"fashion": len(measure["labels"]), **{k: len(v[0]) for k, v in measure["ood"].items()}},
        },
    }
    path = write_results(args.results, result)
    m = result["measure"]
    rows = [["Fashion-MNIST kept (in distribution)", f"{100 * m['fashion_kept']:.1f} %"],
            ["accuracy, all / kept", f"{100 * m['accuracy_all']:.2f} % / {100 * m['accuracy_kept']:.2f} %"],
            *[[f"{kind} caught", f"{100 * v:.1f} %"] for kind, v in caught.items()],
            ["all out-of-distribution caught", f"{100 * m['caught_all']:.1f} %"], ["AUROC", f"{m['auroc']:.4f}"]]
    print(f"score: {score} (AUROC on the choosing half: " + ", ".join(f"{k} {v:.4f}" for k, v in aurocs.items())
          + f"); threshold {threshold:.4f}")
    print(markdown_table(["measured on the other half", "value"], rows))
    print(f"results: {path}")
    if args.write:
        OutOfDistribution(score, threshold, means, precision, min_contrast=min_contrast, info={
            "keep": KEEP, "chosen_on": "even-indexed Fashion-MNIST test images and the choosing half of "
                                       "benchmarks/classifier_ood.py's out-of-distribution kinds",
            "gaussians_fitted_on": result["choose"]["gaussians_fitted_on"], "measured": m,
            "command": result["command"]}).save(folder)
        print(f"wrote the detector to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
