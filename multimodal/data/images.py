"""Image data: class folders, Fashion-MNIST's IDX files and batch augmentation.

Images are held as ``uint8`` tensors ``[N, C, H, W]`` at the model's resolution, decoded once:
training then never touches a file, and a bad file is found before the first step, not in the middle
of a run. decoding and resizing come from ``multimodal.media.images``.

``ImageFolderDataset(root)`` reads ``root/<class>/<image>`` (class = subfolder name, sorted).
Unreadable image files are **skipped with a warning** that names them (``dataset.skipped`` lists
them): a few broken files in a large folder should not stop a run, and the warning keeps it from
happening silently. A class left without images, a root without image files and a single class are
InputErrors.

``TrainAugment`` works on whole batches on the training device: optional RandAugment (torchvision,
per image, on uint8), random crop with padding, horizontal flip, normalisation, then optional
mixup / CutMix, returning soft targets. All randomness comes from torch's global generator, which
the trainer checkpoints, so a resumed run draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import InputError
from ..media.images import image_to_tensor, normalize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                        "Ankle boot"]


# ---------------------------------------------------------------------------------- datasets
class ImageTensorDataset(Dataset):
    """``(image uint8 [C, H, W], label)`` pairs from in-memory tensors. ``__getitems__`` hands the
    DataLoader a whole batch ``(images [B, C, H, W], labels [B])`` at once; pair it with
    ``collate_fn=keep_batch``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]):
        if images.ndim != 4 or images.dtype != torch.uint8 or labels.shape != (images.shape[0],):
            raise InputError(f"images: expected uint8 [N, C, H, W] with N labels, found {images.dtype} "
                             f"{tuple(images.shape)} and labels {tuple(labels.shape)}")
        self.images, self.labels, self.classes = images, labels.long(), list(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageTensorDataset:
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageTensorDataset(self.images[index], self.labels[index], self.classes)


def keep_batch(batch):
    """The collate_fn for ``ImageTensorDataset``: its ``__getitems__`` already returns the batch."""
    return batch


def split_indices(n: int, val_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) index arrays over ``n`` examples; ``val_size`` a count, or a
    fraction in (0, 1)."""
    count = round(val_size * n) if isinstance(val_size, float) and 0 <= val_size < 1 else val_size
    if isinstance(count, bool) or not (isinstance(count, int) and 0 <= count < n):
        raise InputError(f"val_size: expected a count in [0, {n}) or a fraction in [0, 1) of the {n} training "
                         f"images, found {val_size!r}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])


# ------------------------------------------------------------------------------ image folders
class ImageFolderDataset(ImageTensorDataset):
    """``root/<class>/<image>`` decoded into uint8 ``[N, C, H, W]`` at ``image_size``.

    Classes are the subfolder names in sorted order (hidden folders ignored); files whose names end
    in one of ``IMAGE_EXTENSIONS`` are images, other files are ignored. ``mode``, ``resize``,
    ``crop_pct`` and ``interpolation`` as in ``image_to_tensor``.
    """

    def __init__(self, root: str | os.PathLike, image_size: int | tuple[int, int], mode: str = "RGB",
                 resize: str = "squash", crop_pct: float = 1.0, interpolation: str = "bicubic",
                 classes: Sequence[str] | None = None):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise InputError(f"{root}: expected a folder with one subfolder of images per class, found "
                             f"{'a file' if root.exists() else 'nothing'}")
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if classes is not None and sorted(found) != sorted(classes):
            raise InputError(f"{root}: expected the class folders {', '.join(classes)}, "
                             f"found {', '.join(found) or 'none'}")
        classes = list(classes) if classes is not None else found
        if len(classes) < 2:
            raise InputError(f"{root}: expected at least 2 class subfolders of images, found "
                             f"{len(classes)}{' (' + classes[0] + ')' if classes else ''}")
        files = {c: sorted(p for p in (root / c).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not p.name.startswith(".")) for c in classes}
        if not any(files.values()):
            raise InputError(f"{root}: expected image files ({', '.join(IMAGE_EXTENSIONS)}) in its class "
                             f"subfolders, found none")
        images, labels, self.skipped = [], [], []
        for label, c in enumerate(classes):
            kept = 0
            for path in files[c]:
                try:
                    images.append(image_to_tensor(path, image_size, mode, resize, crop_pct, interpolation))
                except InputError as e:
                    self.skipped.append((path, str(e)))
                    continue
                labels.append(label)
                kept += 1
            if kept == 0:
                raise InputError(f"{root / c}: expected readable images of class {c!r}, found "
                                 f"{'none' if not files[c] else f'{len(files[c])} unreadable files'}")
        if self.skipped:
            names = ", ".join(str(p) for p, _ in self.skipped[:5])
            warnings.warn(f"{root}: skipped {len(self.skipped)} unreadable image file(s): {names}"
                          f"{' …' if len(self.skipped) > 5 else ''}", stacklevel=2)
        super().__init__(torch.stack(images), torch.tensor(labels), classes)
        self.root = root


# ------------------------------------------------------------------------------ Fashion-MNIST
def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """An IDX file (gzip-compressed or not) of unsigned bytes -> uint8 tensor of its shape.

    Header: two zero bytes, the type (0x08 = uint8), the number of dimensions n, n big-endian
    uint32 sizes; the data follows (offset 16 for images, 8 for labels)."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: expected an IDX file, found nothing there") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: expected a readable IDX file, found a broken one ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise InputError(f"{path}: expected an IDX header of unsigned bytes (00 00 08 n), found {data[:4].hex(' ')}")
    ndim = data[3]
    offset = 4 + 4 * ndim
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != offset + math.prod(shape):
        raise InputError(f"{path}: expected {offset + math.prod(shape)} bytes for shape {shape}, found {len(data)}")
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def load_fashion_mnist(split: str = "train",
                       root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST's official ``train`` (60,000) or ``test`` (10,000) split from the IDX files of the
    Debian package ``dataset-fashion-mnist`` -> images uint8 ``[N, 1, 28, 28]``, labels int64 ``[N]``."""
    if split not in FASHION_MNIST_FILES:
        raise InputError(f"split: expected train or test for Fashion-MNIST, found {split!r}")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    paths = [root / name for name in FASHION_MNIST_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{root}: expected the Fashion-MNIST files {', '.join(missing)}, found "
                         f"{'no such folder' if not root.is_dir() else 'them missing'}; install them with "
                         "`apt-get install dataset-fashion-mnist` (as root)")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"{root}: expected N images [N, 28, 28] and N labels, found {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.numel() and int(labels.max()) >= len(FASHION_MNIST_LABELS):
        raise InputError(f"{paths[1]}: expected labels 0-9, found {int(labels.max())}")
    return images[:, None].contiguous(), labels.long()


# ------------------------------------------------------------------------------ augmentation
class TrainAugment:
    """uint8 ``[B, C, H, W]`` images + int labels -> normalised float images + soft targets ``[B, K]``.

    In order: RandAugment (``randaugment`` = (num_ops, magnitude), or None), random crop after
    ``crop_padding`` pixels of ``padding_mode`` padding (reflect or zeros), horizontal flip with
    probability 0.5 (``flip``), ``normalize``, then mixup (``mixup_alpha``) or CutMix
    (``cutmix_alpha``), each batch one of the two (enabled ones, evenly) with probability
    ``mix_prob``; a batch is mixed with itself reversed (timm's way). Label smoothing belongs to the
    loss (``F.cross_entropy(..., label_smoothing=...)`` accepts these soft targets).
    """

    def __init__(self, num_classes: int, mean: Sequence[float], std: Sequence[float], crop_padding: int = 4,
                 padding_mode: str = "reflect", flip: bool = True, randaugment: tuple[int, int] | None = None,
                 mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, mix_prob: float = 1.0):
        if padding_mode not in ("reflect", "zeros"):
            raise InputError(f"padding_mode: expected reflect or zeros, found {padding_mode!r}")
        for name, value in (("crop_padding", crop_padding), ("mixup_alpha", mixup_alpha),
                            ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise InputError(f"{name}: expected a number >= 0, found {value}")
        if not 0 <= mix_prob <= 1:
            raise InputError(f"mix_prob: expected a probability in [0, 1], found {mix_prob}")
        self.num_classes, self.mean, self.std = num_classes, tuple(mean), tuple(std)
        self.crop_padding, self.padding_mode, self.flip = crop_padding, padding_mode, flip
        self.mixup_alpha, self.cutmix_alpha, self.mix_prob = mixup_alpha, cutmix_alpha, mix_prob
        self.randaugment = None
        if randaugment is not None:
            from torchvision.transforms import v2

            num_ops, magnitude = randaugment
            self.randaugment = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.randaugment is not None:  # one draw of operations per image
            images = torch.stack([self.randaugment(image) for image in images])
        x = images.float()
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.padding_mode)
        if self.flip:
            flipped = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        x = normalize(x, self.mean, self.std)
        targets = F.one_hot(labels, self.num_classes).float()
        return self.mix(x, targets)

    def mix(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kinds = [k for k, a in (("mixup", self.mixup_alpha), ("cutmix", self.cutmix_alpha)) if a > 0]
        if not kinds or float(torch.rand(())) >= self.mix_prob:
            return x, targets
        kind = kinds[int(torch.randint(len(kinds), ()))]
        alpha = self.mixup_alpha if kind == "mixup" else self.cutmix_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        if kind == "mixup":
            x = lam * x + (1 - lam) * x.flip(0)
        else:  # paste a box of area ~ (1 - lam) from the reversed batch; lam becomes the kept area
            H, W = x.shape[-2:]
            cut = math.sqrt(1 - lam)
            ch, cw = int(H * cut), int(W * cut)
            cy, cx = int(torch.randint(H, ())), int(torch.randint(W, ()))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (H * W)
        return x, lam * targets + (1 - lam) * targets.flip(0)


def random_crop(x: torch.Tensor, padding: int, padding_mode: str = "reflect") -> torch.Tensor:
    """Pad ``[B, C, H, W]`` by ``padding`` on every side and cut an ``H x W`` window at a random
    offset per image (the CIFAR-style crop), all images at once."""
    B, C, H, W = x.shape
    mode = "reflect" if padding_mode == "reflect" and padding < min(H, W) else "constant"
    padded = F.pad(x, (padding,) * 4, mode=mode)
    dy = torch.randint(2 * padding + 1, (B, 1), device=x.device)
    dx = torch.randint(2 * padding + 1, (B, 1), device=x.device)
    rows = (dy + torch.arange(H, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx + torch.arange(W, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(B, device=x.device)[:, None, None, None]
    channel = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]
