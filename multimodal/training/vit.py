"""Training and evaluating the ViT image classifier: ``multimodal train vit`` and ``evaluate_vit``.

Data is an image folder (``DIR/<class>/*.png``, or ``DIR/train/<class>/…`` with optional ``val/``
and ``test/`` beside it) or ``fashion-mnist`` (the Debian package's IDX files). The validation split
that picks the best weights is carved from the training images (seeded by ``--split-seed``, never
from a test split), unless a ``val/`` folder is given.

A run folder (``--out-dir``) holds the trainer's files (``checkpoint/``, ``best/``, metrics.jsonl,
loss.png), ``vit_run.json`` (model config, data and augmentation; a resumed run must match it) and,
at the end, ``model/``: the best weights by validation accuracy as a ``from_pretrained`` folder
(config.json with labels and preprocessing, model.safetensors), ``training.json`` (command, data,
numbers) and what ``evaluate_vit`` writes there: ``eval_<split>.json``, ``confusion_<split>.png``
and ``MODEL_CARD.md``, rebuilt from those files at every evaluation.

The default recipe is sized for 2 CPU cores: Fashion-MNIST at 28x28, patch 4 (49 patch tokens and a
class token), width 128, depth 6, 4 heads, mean-of-patches pooling; 12 epochs of AdamW (lr 1e-3, wd 0.05,
500 warmup steps, cosine to 1 %), batch 128, label smoothing 0.1, random crops after 2 pixels of zero
padding, horizontal flips. Short runs showed the crops slow the first few hundred steps (72 % vs 80 %
validation accuracy after 200 steps without them) in exchange for less overfitting later.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..checkpoint import (CONFIG_NAME, WEIGHTS_NAME, atomic_write_bytes, atomic_write_text, count_parameters,
                          load_tensors)
from ..config import read_json
from ..data.images import (FASHION_MNIST_LABELS, ImageFolderDataset, ImageTensorDataset, TrainAugment,
                           keep_batch, load_fashion_mnist, normalize, split_indices)
from ..devices import default_device, parse_device
from ..errors import InputError
from ..lora import adapter_base, load_lora
from ..models.vit import ViT, ViTConfig
from ..paths import resolve_model
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import (CARD_NAME, MODEL_DIR, TRAINING_NAME, build_model_card, card_notes, check_resume_settings,
                   command_line, markdown_table, publish_model, read_training, run_file)
from .lora import adapter_save, adapter_trainer_options, attach_lora, lora_card_lines, reload_adapter
from .trainer import Trainer

FASHION_MNIST = "fashion-mnist"
SPLITS = ("train", "val", "test")

# The recipe: model dimensions when no --preset is given, and the trainer's defaults.
RECIPE_MODEL = dict(patch_size=4, width=128, depth=6, heads=4, global_pool="avg")
RECIPE_EPOCHS = 12
RECIPE_TRAIN = TrainConfig(out_dir="runs/vit", max_steps=RECIPE_EPOCHS * (55_000 // 128), batch_size=128, lr=1e-3,
                           weight_decay=0.05, warmup_steps=500, min_lr_ratio=0.01, grad_clip=1.0, eval_every=500,
                           save_every=500, log_every=50, select_metric="val_acc", select_mode="max")


# ------------------------------------------------------------------------------------- data
def _is_fashion_mnist(data: str) -> bool:
    return str(data).lower() in (FASHION_MNIST, "fashion_mnist", "fmnist")


def _folder_splits(root: Path) -> dict[str, Path | None]:
    """``root/train`` (+ ``val/``, ``test/``) when present, else ``root`` itself is the training folder."""
    if (root / "train").is_dir():
        return {s: (root / s if (root / s).is_dir() else None) for s in SPLITS}
    return {"train": root, "val": None, "test": None}


def data_classes(data: str) -> tuple[list[str], int | None]:
    """Class names and native image size (None where images vary) of ``data``."""
    if _is_fashion_mnist(data):
        return list(FASHION_MNIST_LABELS), 28
    root = Path(data).expanduser()
    if not root.is_dir():
        raise InputError(f"data: expected {FASHION_MNIST!r} or a folder of class subfolders, found {str(data)!r}, "
                         f"{'a file' if root.exists() else 'which does not exist'}")
    train = _folder_splits(root)["train"]
    return sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")), None


def load_train_val(data: str, config: ViTConfig, *, val_size: int | float,
                   split_seed: int) -> tuple[ImageTensorDataset, ImageTensorDataset | None]:
    """The training and validation images of ``data`` as uint8 tensors at ``config``'s resolution
    and image mode: the folder's own train/ and val/ when it has val/, else ``val_size`` of the
    training images (a count or a fraction; 0: no validation) drawn with ``split_seed``."""
    if _is_fashion_mnist(data):
        images, labels = load_fashion_mnist("train")
        dataset = ImageTensorDataset(_to_config(images, config), labels, FASHION_MNIST_LABELS)
    else:
        folders = _folder_splits(Path(data).expanduser())
        dataset = _folder(folders["train"], config)
        if folders["val"] is not None:
            return dataset, _folder(folders["val"], config, dataset.classes)
    _check_classes(dataset, config)
    train_idx, val_idx = split_indices(len(dataset), val_size, split_seed)
    return dataset.subset(train_idx), dataset.subset(val_idx) if len(val_idx) else None


def load_split(data: str, split: str, config: ViTConfig, *, val_size: int | float,
               split_seed: int) -> ImageTensorDataset:
    """One split of ``data``: ``train`` / ``val`` as ``load_train_val`` draws them, ``test``
    Fashion-MNIST's official test split or the folder's ``test/``."""
    if split not in SPLITS:
        raise InputError(f"split: expected one of {', '.join(SPLITS)}, found {split!r}")
    if split == "test":
        if _is_fashion_mnist(data):
            images, labels = load_fashion_mnist("test")
            dataset = ImageTensorDataset(_to_config(images, config), labels, FASHION_MNIST_LABELS)
        else:
            test = _folder_splits(Path(data).expanduser())["test"]
            if test is None:
                raise InputError(f"data: expected a test/ folder of class subfolders in {data} for the test split, "
                                 "found none")
            dataset = _folder(test, config, config.labels)
        _check_classes(dataset, config)
        return dataset
    train, val = load_train_val(data, config, val_size=val_size, split_seed=split_seed)
    if split == "val" and val is None:
        raise InputError(f"split: expected a validation split of {data}, found none (val_size {val_size})")
    return train if split == "train" else val


def _folder(root: Path, config: ViTConfig, classes: list[str] | None = None) -> ImageFolderDataset:
    return ImageFolderDataset(root, config.image_size, config.image_mode, config.resize, config.crop_pct,
                              config.interpolation, classes=classes)


def _check_classes(dataset: ImageTensorDataset, config: ViTConfig) -> None:
    if config.labels is not None and list(dataset.classes) != list(config.labels):
        raise InputError(f"data: expected the classes the model was trained on ({', '.join(config.labels)}), found "
                         f"{', '.join(dataset.classes)}")


def _to_config(images: torch.Tensor, config: ViTConfig) -> torch.Tensor:
    """uint8 ``[N, 1, h, w]`` grey images -> the config's size and channels (grey -> RGB by copying)."""
    if tuple(images.shape[-2:]) != tuple(config.image_size):
        mode = "bicubic" if config.interpolation == "bicubic" else "bilinear"
        resized = [F.interpolate(chunk.float(), size=config.image_size, mode=mode, antialias=True)
                   for chunk in images.split(4096)]
        images = torch.cat(resized).round().clamp(0, 255).to(torch.uint8)
    if config.in_channels != images.shape[1]:
        if images.shape[1] != 1 or config.image_mode != "RGB":
            raise InputError(f"data: expected images convertible to {config.image_mode}, "
                             f"found {images.shape[1]} channel(s)")
        images = images.expand(-1, 3, -1, -1).contiguous()
    return images


# --------------------------------------------------------------------------- loss, evaluation
def make_loss_fn(augment: TrainAugment, label_smoothing: float) -> Callable:
    """``loss_fn(model, (images uint8, labels))``: augmented batch, cross-entropy against the (mixed)
    soft targets with label smoothing; logs training accuracy against the unmixed labels."""

    def loss_fn(model, batch):
        images, labels = batch
        x, targets = augment(images, labels)
        logits = model(x)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        return loss, {"acc": (logits.argmax(-1) == labels).float().mean()}

    return loss_fn


@torch.no_grad()
def predict(model: ViT, dataset: ImageTensorDataset, batch_size: int = 512) -> torch.Tensor:
    """Logits ``[N, num_classes]`` (float32, CPU) of every image of ``dataset``, in order."""
    p = next(model.parameters())
    mean, std = model.config.image_mean, model.config.image_std
    out = []
    for start in range(0, len(dataset), batch_size):
        images = dataset.images[start:start + batch_size].to(p.device)
        out.append(model(normalize(images, mean, std).to(p.dtype)).float().cpu())
    return torch.cat(out)


def make_eval_fn(dataset: ImageTensorDataset, batch_size: int) -> Callable:
    """``eval_fn(model) -> {"val_acc", "val_loss"}`` on the validation images."""

    def eval_fn(model):
        logits = predict(model, dataset, batch_size)
        return {"val_acc": (logits.argmax(-1) == dataset.labels).float().mean().item(),
                "val_loss": F.cross_entropy(logits, dataset.labels).item()}

    return eval_fn


# ------------------------------------------------------------------------------------ the CLI
def _val_size(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a count or a fraction, found {text!r}") from None


def _optional(kind):
    return lambda text: None if text.lower() == "none" else kind(text)


def add_train_vit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train vit``: data, model, augmentation, and every TrainConfig flag."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True,
                      help=f"{FASHION_MNIST!r} (apt-get install dataset-fashion-mnist) or a folder: DIR/<class>/*.png, "
                           "or DIR/train/<class>/… with optional DIR/val/ and DIR/test/")
    data.add_argument("--val-size", type=_val_size, default=None,
                      help="validation images carved from the training images: a count or a fraction "
                           "(default: 5000 for Fashion-MNIST, 0.1 for folders; 0: no validation)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    model = parser.add_argument_group("model (defaults: the recipe, patch 4, width 128, depth 6, 4 heads, avg pooling)")
    model.add_argument("--preset", default=None, help="vit-{ti,s,b,l}/{4,8,16,32}, e.g. vit-s/16; flags below override")
    model.add_argument("--image-size", type=int, nargs="+", default=None, metavar="N",
                       help="input resolution, N or H W (default: 28 for Fashion-MNIST, 32 for folders)")
    model.add_argument("--image-mode", choices=("L", "RGB"), default=None,
                       help="convert images to grey (L) or RGB (default: L for Fashion-MNIST, RGB for folders)")
    for flag, kind, text in (("--patch-size", int, "patch side"), ("--width", int, "token width"),
                             ("--depth", int, "blocks"), ("--heads", int, "attention heads"),
                             ("--mlp-ratio", float, "MLP hidden width / width"),
                             ("--drop-path", float, "stochastic depth at the last block"),
                             ("--dropout", float, "dropout inside the blocks"),
                             ("--head-dropout", float, "dropout before the classifier")):
        model.add_argument(flag, type=kind, default=None, help=text)
    model.add_argument("--stem", choices=("patch", "conv"), default=None,
                       help="tokenizer: patch (linear map per patch, default) or conv (early convolutions, "
                            "Xiao et al. 2021)")
    model.add_argument("--global-pool", choices=("token", "avg"), default=None, help="class token or mean of patches")
    model.add_argument("--layer-scale", type=_optional(float), default=None, help="LayerScale init (default: off)")
    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--crop-padding", type=int, default=2,
                     help="random crop after this much padding (default 2; 0: off)")
    aug.add_argument("--padding-mode", choices=("reflect", "zeros"), default="zeros",
                     help="(default zeros: Fashion-MNIST's background is black)")
    aug.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="random horizontal flips")
    aug.add_argument("--randaugment", type=int, nargs=2, default=None, metavar=("OPS", "MAGNITUDE"),
                     help="RandAugment, e.g. 2 9 (default: off)")
    aug.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (default 0: off)")
    aug.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (default 0: off)")
    aug.add_argument("--mix-prob", type=float, default=1.0, help="probability of mixing a batch (default 1)")
    aug.add_argument("--label-smoothing", type=float, default=0.1, help="(default 0.1)")
    run = parser.add_argument_group("run")
    run.add_argument("--epochs", type=float, default=None,
                     help=f"run length in epochs of the training images; overrides --max-steps "
                          f"(whose default is {RECIPE_EPOCHS} epochs of Fashion-MNIST)")
    run.add_argument("--eval-batch-size", type=int, default=512, help="(default 512)")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser


def _model_config(args, classes: list[str], native_size: int | None) -> ViTConfig:
    fashion = _is_fashion_mnist(args.data)
    fields: dict[str, Any] = {}
    if args.preset is None:
        fields.update(RECIPE_MODEL)
    mode = args.image_mode or ("L" if fashion else "RGB")
    size = args.image_size or [native_size or 32]
    if len(size) not in (1, 2):
        raise InputError(f"--image-size: expected N or H W, found {len(size)} numbers")
    fields.update(image_size=tuple(size) if len(size) == 2 else size[0], in_channels=3 if mode == "RGB" else 1,
                  image_mode=mode, num_classes=len(classes), labels=classes)
    for name in ("patch_size", "width", "depth", "heads", "mlp_ratio", "drop_path", "dropout", "head_dropout",
                 "global_pool", "layer_scale", "stem"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.preset is not None:
        return ViTConfig.preset(args.preset, **fields)
    return ViTConfig(**fields)


def run_train_vit(args: argparse.Namespace) -> dict:
    """``multimodal train vit``: train, keep the best weights by validation accuracy, and write
    ``<out-dir>/model`` with its MODEL_CARD.md (test accuracy where a test split exists)."""
    fashion = _is_fashion_mnist(args.data)
    classes, native_size = data_classes(args.data)
    lora = getattr(args, "lora", None)  # set by `multimodal train lora`: adapt the base, same classes
    base = ViT.from_pretrained(resolve_model(lora.base)) if lora else None
    config = base.config if lora else _model_config(args, classes, native_size)
    if lora and list(config.labels or []) != list(classes):
        raise InputError(f"--data: expected the classes of the base model {lora.base} ({', '.join(config.labels or [])})"
                         f" for an adapter, found {', '.join(classes)}")
    val_size = args.val_size if args.val_size is not None else (5000 if fashion else 0.1)
    data = FASHION_MNIST if fashion else str(Path(args.data).expanduser().resolve())
    train_set, val_set = load_train_val(data, config, val_size=val_size, split_seed=args.split_seed)

    train_config = train_config_from_args(args)
    if args.epochs is not None:
        if args.epochs <= 0:
            raise InputError(f"--epochs: expected a number > 0, found {args.epochs}")
        per_epoch = len(train_set) // train_config.batch_size
        if per_epoch == 0:
            raise InputError(f"--batch-size: expected at most the {len(train_set)} training images, "
                             f"found {train_config.batch_size}")
        train_config = train_config.replace(max_steps=max(1, round(args.epochs * per_epoch)))
    if val_set is None and train_config.select_metric == "val_acc":
        train_config = train_config.replace(select_metric=None)

    run = {"data": data, "val_size": val_size, "split_seed": args.split_seed, "label_smoothing": args.label_smoothing,
           "augment": dict(crop_padding=args.crop_padding, padding_mode=args.padding_mode, flip=args.flip,
                           randaugment=args.randaugment, mixup_alpha=args.mixup, cutmix_alpha=args.cutmix,
                           mix_prob=args.mix_prob),
           "model": config.to_dict(), **({"lora": lora.to_dict()} if lora else {})}
    out_dir = Path(train_config.out_dir)
    if args.resume:
        check_resume_settings(run_file(out_dir, "vit"), run, "the data, model and augmentation",
                              configs={"model": ViTConfig})
    augment = TrainAugment(config.num_classes, config.image_mean, config.image_std, **run["augment"])
    torch.manual_seed(train_config.seed)  # the initial weights (of the adapter, with --base)
    model = base if lora else ViT(config)
    lora_record = attach_lora(model, lora) if lora else None
    trainer = Trainer(model, train_config, make_loss_fn(augment, args.label_smoothing), dataset=train_set,
                      collate_fn=keep_batch, resume=args.resume, progress=args.progress,
                      eval_fn=make_eval_fn(val_set, args.eval_batch_size) if val_set is not None else None,
                      **adapter_trainer_options(lora))
    summary, seconds = trainer.train_run(run_file(out_dir, "vit"), run)
    if not trainer.is_main:
        return summary

    final = trainer.final_model(lambda folder: reload_adapter(model, folder) if lora else ViT.from_pretrained(folder))
    evals = [r for r in trainer.history if r.get("kind") == "eval"]
    best_eval = max(evals, key=lambda r: r.get("val_acc", 0)) if evals and val_set is not None else None
    training = {
        "command": command_line(args, "multimodal train lora" if lora else "multimodal train vit"), "data": data,
        "val_size": val_size,
        "split_seed": args.split_seed,
        "train_images": len(train_set), "val_images": len(val_set) if val_set is not None else 0,
        "val_source": "folder" if not fashion and _folder_splits(Path(data))["val"] is not None else "carved",
        **trainer.run_record(seconds), "epochs": trainer.step * train_config.batch_size / len(train_set),
        "best_step": best_eval["step"] if best_eval else trainer.step,
        "val_acc": best_eval["val_acc"] if best_eval else None, "parameters": count_parameters(final),
        "augment": run["augment"], "label_smoothing": args.label_smoothing,
        **({"lora": lora_record, "parameters": lora_record["trainable_parameters"]} if lora else {}),
    }
    folder = publish_model(out_dir / MODEL_DIR, final, training, model_card,
                           save=adapter_save(final, lora))
    has_test = fashion or _folder_splits(Path(data))["test"] is not None
    for split in ("test",) if has_test else ():
        result = evaluate_vit(folder, split, batch_size=args.eval_batch_size, device=trainer.device)
        summary[f"{split}_acc"] = result["accuracy"]
        print(f"{split} accuracy: {100 * result['accuracy']:.2f} % ({result['correct']} / {result['images']})")
    print(f"model: {folder}")
    return {**summary, "model": str(folder)}


# -------------------------------------------------------------------------------- evaluation
def evaluate_vit(checkpoint: str | os.PathLike, split: str = "test", *, data: str | None = None,
                 batch_size: int = 512, device: str | torch.device | None = None, write: bool = True) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix of a ViT checkpoint on ``split``
    (``test``: Fashion-MNIST's official 10,000 images or the folder's test/; ``val`` / ``train``: the
    partition recorded in training.json). ``data`` defaults to what training.json names. With
    ``write``, saves ``eval_<split>.json`` and ``confusion_<split>.png`` into the checkpoint and
    rebuilds its MODEL_CARD.md."""
    folder = Path(checkpoint).expanduser()
    model = load_vit(folder).to(parse_device(device) if device is not None else default_device())
    info = read_training(folder)
    data = data or info.get("data")
    if data is None:
        raise InputError(f"data: expected a data set ({FASHION_MNIST!r} or a folder) for {folder}, which has no "
                         f"{TRAINING_NAME} naming one, found none")
    val_size = info.get("val_size", 5000 if _is_fashion_mnist(data) else 0.1)
    dataset = load_split(data, split, model.config, val_size=val_size, split_seed=info.get("split_seed", 0))
    predicted = predict(model, dataset, batch_size).argmax(-1)
    K = model.config.num_classes
    confusion = torch.bincount(dataset.labels * K + predicted, minlength=K * K).reshape(K, K)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    result = {"split": split, "data": data, "images": len(dataset), "correct": int(confusion.diag().sum()),
              "accuracy": float(confusion.diag().sum()) / max(len(dataset), 1),
              "per_class": {label: {"accuracy": float(a), "images": int(n)}
                            for label, a, n in zip(model.labels, per_class, confusion.sum(1))},
              "confusion": confusion.tolist(), "labels": model.labels}
    if write:
        atomic_write_text(folder / f"eval_{split}.json", json.dumps(result, indent=2) + "\n")
        atomic_write_bytes(folder / f"confusion_{split}.png", _confusion_png(confusion, model.labels, split))
        atomic_write_text(folder / CARD_NAME, model_card(folder))
    return result


def load_vit(folder: Path) -> ViT:
    """A ViT checkpoint folder, or a LoRA adapter folder (its base with the adapter loaded)."""
    base = adapter_base(folder)
    if base is not None:
        model = ViT.from_pretrained(resolve_model(base))
        load_lora(model, folder, base=base)
        return model.eval()
    if not (folder / CONFIG_NAME).is_file():
        raise InputError(f"{folder}: expected a ViT checkpoint folder with {CONFIG_NAME}, found none")
    return ViT.from_pretrained(folder)


def _confusion_png(confusion: torch.Tensor, labels: list[str], split: str) -> bytes:
    import io

    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    K = len(labels)
    fig = Figure(figsize=(1.2 + 0.6 * K, 1.0 + 0.55 * K), dpi=100)
    ax = fig.add_subplot()
    rates = confusion.float() / confusion.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(K):
        for j in range(K):
            if confusion[i, j]:
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(K), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(K), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({split})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def model_card(folder: Path) -> str:
    """MODEL_CARD.md from the folder's config.json (an adapter's: its base's), training.json, eval_*.json
    and card_notes.md."""
    base = adapter_base(folder)
    config = ViTConfig.load((resolve_model(base) if base else folder) / CONFIG_NAME)
    info = read_training(folder)
    data = str(info.get("data", "unknown data"))
    fashion = _is_fashion_mnist(data)
    source = "Fashion-MNIST" if fashion else f"the image folder {data}"
    pool = "class-token" if config.global_pool == "token" else "mean-of-patches"
    h, w = config.image_size
    stem = ", convolutional stem (3x3 stride-2 convolutions, Xiao et al. 2021)" if config.stem == "conv" else ""
    facts = [("architecture", f"ViT: patch {config.patch_size}{stem}, width {config.width}, depth {config.depth}, "
                              f"{config.heads} heads, MLP {config.mlp_ratio:g}x, {pool} pooling"),
             ("input", f"{h} x {w} {config.image_mode}, normalised with mean {list(config.image_mean)}, "
                       f"std {list(config.image_std)}"),
             ("classes", f"{config.num_classes}: {', '.join(config.labels or [])}")]
    results, training_data = [], None
    if info:
        held_out = (f"{info['val_images']:,} validation images from val/" if info.get("val_source") == "folder" else
                    f"{info['val_images']:,} validation images drawn from the training split (seed "
                    f"{info['split_seed']})")
        training_data = f"{source}: {info['train_images']:,} training images + {held_out}"
        results.append(("selection", f"best validation accuracy {100 * info['val_acc']:.2f} % at step "
                                     f"{info['best_step']:,}" if info.get("val_acc") is not None else
                                     "final weights (no validation split)"))
    stored = sorted({str(t.dtype).removeprefix("torch.") for t in load_tensors(folder / WEIGHTS_NAME).values()
                     if t.is_floating_point()}) if (folder / WEIGHTS_NAME).is_file() else []
    if stored and stored != ["float32"]:
        results.append(("stored weights", f"{', '.join(stored)}; loaded as float32 by default; the evaluation below "
                                          "ran on these stored weights"))
    licence = " (Zalando Research, MIT licence; Debian package dataset-fashion-mnist)" if fashion else ""
    evaluation = []
    evals = [(s, read_json(folder / f"eval_{s}.json")) for s in SPLITS if (folder / f"eval_{s}.json").is_file()]
    if not evals:
        evaluation += ["Not evaluated yet: `evaluate_vit(folder, split)` writes the numbers here.", ""]
    for split, result in evals:
        what = {"test": "the official 10,000-image test split" if _is_fashion_mnist(str(result["data"])) else "test/",
                "val": "the validation images", "train": "the training images"}[split]
        per_class = [(label, f"{100 * v['accuracy']:.1f} %", f"{v['images']:,}")
                     for label, v in result["per_class"].items()]
        evaluation += [f"### {split} ({what})", "",
                       f"Accuracy **{100 * result['accuracy']:.2f} %** ({result['correct']:,} / {result['images']:,}).",
                       "", *markdown_table(("class", "accuracy", "images"), per_class, "lrr"), "",
                       f"![confusion matrix](confusion_{split}.png)", ""]
    title, summary = f"ViT image classifier: {source}", \
        f"A Vision Transformer (`multimodal.models.vit`) trained from scratch on {source}{licence}."
    if base:
        title, summary = f"LoRA adapter for the ViT {base}: {source}", \
            f"A LoRA adapter for the Vision Transformer `{base}`, trained on {source}{licence}."
    return build_model_card(title, summary, info, data=training_data, facts=facts, results=results, unit="images",
                            details=lora_card_lines(info) if "lora" in info else (),
                            usage='Load: `multimodal.pipeline("image-classification", model=this_folder)`.',
                            evaluation="\n".join(evaluation), notes=card_notes(folder))


# ---------------------------------------------------------------------------- evaluate CLI
def add_evaluate_vit_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal evaluate vit``."""
    parser.add_argument("checkpoint", help="a ViT checkpoint folder (e.g. runs/vit/model)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="(default test)")
    parser.add_argument("--data", default=None, help="data set (default: the one in the checkpoint's training.json)")
    parser.add_argument("--batch-size", type=int, default=512, help="(default 512)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    return parser


def run_evaluate_vit(args: argparse.Namespace) -> dict:
    """``multimodal evaluate vit``: print the accuracy; per-class numbers and the card go into the folder."""
    result = evaluate_vit(args.checkpoint, args.split, data=args.data, batch_size=args.batch_size, device=args.device)
    print(f"{args.split} accuracy: {100 * result['accuracy']:.2f} % ({result['correct']} / {result['images']})")
    for label, v in result["per_class"].items():
        print(f"  {label:<16} {100 * v['accuracy']:6.2f} %  ({v['images']})")
    return result
