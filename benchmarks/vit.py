"""Our ViT against timm's VisionTransformer of the same config: inference and training throughput,
and accuracy after training both with the same recipe and budget, in one run.

The config is the ViT recipe's default for Fashion-MNIST (28x28 grey, patch 4, width 128, depth 6, 4 heads,
class token + mean-of-patches pooling with timm's fc_norm). Before timing, timm's model is
converted into ours (``multimodal.convert.vit.from_timm``) and both must give the same logits, so
the two compute the same function. Timing is interleaved (medians), 2 threads by default:

- inference: logits of a batch of 256 in eval mode under ``torch.inference_mode()``;
- training: one AdamW step (forward, backward, update) on a batch of 128 in train mode.

Accuracy: each model is trained from its own initialisation with our trainer, the same data order,
augmentation (crop + flip), label smoothing, AdamW + warmup + cosine schedule and the same number
of steps (``--epochs`` of the 55,000 training images; the recipe's default is 12), then scored
on the official 10,000-image test split. Needs ``apt-get install dataset-fashion-mnist``.

    python -m benchmarks.vit               # writes results/vit.json
    python -m benchmarks.vit --quick       # smoke run: tiny budget, writes nothing unless --out
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import timm
import torch
import torch.nn.functional as F

from multimodal.convert.vit import from_timm
from multimodal.training.vit import RECIPE_MODEL, RECIPE_TRAIN, make_loss_fn
from multimodal.data.images import (FASHION_MNIST_LABELS, ImageTensorDataset, TrainAugment, keep_batch,
                                    load_fashion_mnist, normalize, split_indices)
from multimodal.checkpoint import count_parameters
from multimodal.models.vit import ViT, ViTConfig
from multimodal.training import Trainer

from .common import interleaved, markdown_table, median, write_results

MODELS = ("ours", "timm")


def configs() -> tuple[ViTConfig, dict]:
    ours = ViTConfig(image_size=28, in_channels=1, num_classes=10, image_mode="L", labels=FASHION_MNIST_LABELS,
                     **RECIPE_MODEL)
    timm_kwargs = dict(img_size=28, patch_size=ours.patch_size, in_chans=1, num_classes=10, embed_dim=ours.width,
                       depth=ours.depth, num_heads=ours.heads, mlp_ratio=ours.mlp_ratio, qkv_bias=True,
                       class_token=True, global_pool="avg")
    return ours, timm_kwargs


def build(seed: int) -> dict[str, torch.nn.Module]:
    config, timm_kwargs = configs()
    torch.manual_seed(seed)
    ours = ViT(config)
    torch.manual_seed(seed)
    theirs = timm.models.vision_transformer.VisionTransformer(**timm_kwargs)
    return {"ours": ours, "timm": theirs}


def check_same_function() -> float:
    """Max |logit difference| between timm's model and the same weights converted into ours."""
    config, timm_kwargs = configs()
    theirs = timm.models.vision_transformer.VisionTransformer(**timm_kwargs).eval()
    ours = from_timm(theirs, labels=config.labels).eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.inference_mode():
        diff = (ours(x) - theirs(x)).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"our ViT and timm's differ by {diff:.2e} on the same weights: not the same function")
    return diff


# ----------------------------------------------------------------------------------- speed
def time_models(batch_infer: int, batch_train: int, repeats: int) -> dict:
    models = build(0)
    x_infer = torch.randn(batch_infer, 1, 28, 28)
    x_train = torch.randn(batch_train, 1, 28, 28)
    y_train = torch.randint(0, 10, (batch_train,))
    infer, train = {}, {}
    for name, model in models.items():
        def run_infer(model=model):
            model.eval()
            with torch.inference_mode():
                model(x_infer)

        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run_train(model=model, optimizer=optimizer):
            model.train()
            loss = F.cross_entropy(model(x_train), y_train, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        infer[name], train[name] = run_infer, run_train
    out = {}
    for kind, fns, batch in (("inference", infer, batch_infer), ("training", train, batch_train)):
        times = interleaved(fns, repeats=repeats, warmup=2)
        out[kind] = {name: {"median_s": median(t), "images_per_s": batch / median(t), "runs_s": t}
                     for name, t in times.items()}
        out[kind]["speed_ratio_ours_over_timm"] = out[kind]["timm"]["median_s"] / out[kind]["ours"]["median_s"]
    return out


# -------------------------------------------------------------------------------- accuracy
@torch.no_grad()
def accuracy(model: torch.nn.Module, dataset: ImageTensorDataset, mean, std) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(dataset), 512):
        x = normalize(dataset.images[start:start + 512], mean, std)
        correct += (model(x).argmax(-1) == dataset.labels[start:start + 512]).sum().item()
    return correct / len(dataset)


def train_both(epochs: float, limit: int | None, seed: int) -> dict:
    config, _ = configs()
    images, labels = load_fashion_mnist("train")
    full = ImageTensorDataset(images, labels, FASHION_MNIST_LABELS)
    train_idx, _ = split_indices(len(full), 5000, 0)  # the shipped run's split: the same 55,000 images
    train_set = full.subset(train_idx[:limit] if limit else train_idx)
    test_images, test_labels = load_fashion_mnist("test")
    test_set = ImageTensorDataset(test_images, test_labels, FASHION_MNIST_LABELS)
    if limit:
        test_set = test_set.subset(range(min(limit, len(test_set))))
    steps = max(1, round(epochs * len(train_set) / RECIPE_TRAIN.batch_size))
    out = {"epochs": epochs, "steps": steps, "train_images": len(train_set), "test_images": len(test_set)}
    for name, model in build(seed).items():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = replace(RECIPE_TRAIN, out_dir=tmp, max_steps=steps, warmup_steps=min(RECIPE_TRAIN.warmup_steps,
                                                                                       steps // 5),
                          eval_every=0, save_every=0, select_metric=None, seed=seed)
            augment = TrainAugment(10, config.image_mean, config.image_std, crop_padding=2, padding_mode="zeros",
                                   flip=True)
            torch.manual_seed(seed)  # the same augmentation draws for both
            trainer = Trainer(model, cfg, make_loss_fn(augment, 0.1), dataset=train_set, collate_fn=keep_batch,
                              progress=False)
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
        out[name] = {"test_accuracy": accuracy(model, test_set, config.image_mean, config.image_std),
                     "train_seconds": seconds, "parameters": count_parameters(model)}
    out["accuracy_ours_minus_timm"] = out["ours"]["test_accuracy"] - out["timm"]["test_accuracy"]
    out["train_time_ratio_timm_over_ours"] = out["timm"]["train_seconds"] / out["ours"]["train_seconds"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget smoke run; writes nothing unless --out")
    parser.add_argument("--epochs", type=float, default=1.0, help="training budget of each model (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per model (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="results file (default results/vit.json; --quick: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    diff = check_same_function()
    print(f"same function: max |logit difference| {diff:.2e}")
    speed = time_models(256, 128, 3 if args.quick else args.repeats)
    acc = train_both(0.02 if args.quick else args.epochs, 2000 if args.quick else None, args.seed)
    rows = [[name, f"{speed['inference'][name]['images_per_s']:.0f}", f"{speed['training'][name]['images_per_s']:.0f}",
             f"{100 * acc[name]['test_accuracy']:.2f} %", f"{acc[name]['train_seconds']:.0f}"] for name in MODELS]
    rows.append(["ours / timm", f"{speed['inference']['speed_ratio_ours_over_timm']:.3f}×",
                 f"{speed['training']['speed_ratio_ours_over_timm']:.3f}×",
                 f"{100 * acc['accuracy_ours_minus_timm']:+.2f} pts", f"{acc['train_time_ratio_timm_over_ours']:.3f}× faster"])
    table = markdown_table(["model", "inference img/s (batch 256)", "training img/s (batch 128)",
                            f"test accuracy after {acc['epochs']:g} epoch(s)", "training s"], rows)
    print(table)
    if not args.quick or args.out:
        path = write_results("vit", {"config": configs()[0].to_dict(), "threads": args.threads,
                                     "max_logit_difference": diff, "speed": speed, "accuracy": acc, "table": table},
                             args.out)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
