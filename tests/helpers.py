"""Helpers that several test files share: random weights, closeness to a reference, generated garments.

Test files import them as ``from helpers import ...`` (pytest puts tests/ on ``sys.path``, as it does
for ``conftest``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Every parameter (zero-initialised ones, biases, norms and positions included) drawn from
    N(0, scale^2), seeded; the module in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module.eval()


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> float:
    """Assert that ``ours`` has ``ref``'s shape and differs from it by at most ``tol`` anywhere (in
    float32, whatever the dtypes); returns the largest difference."""
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)}, reference {tuple(ref.shape)}"
    diff = (ours.float() - ref.float()).abs().max().item()
    assert diff <= tol, f"max |ours - reference| = {diff:.3g} > {tol}"
    return diff


def fake_fashion(per_class: int = 2, thin_sandals: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-like garments, uint8 [10 * per_class, 28, 28] and their labels: label c is a bright
    rectangle 6 + 2c pixels wide with a darker stripe across it, its height varying within a class.
    ``thin_sandals``: label 5 (sandal) is instead three thin one-pixel straps, which antialiasing
    leaves nowhere fully opaque."""
    images = np.zeros((10 * per_class, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), per_class)
    for i, c in enumerate(labels):
        half, top = 3 + c, 3 + i % per_class
        images[i, top:25, 14 - half:14 + half] = 220
        images[i, 12:14, 14 - half:14 + half] = 90
    if thin_sandals:
        for i in np.flatnonzero(labels == 5):
            images[i] = 0
            images[i, 10 + i % per_class, 2:26] = 200
            images[i, 18, 4:24] = 160
            images[i, 4:24, 8] = 180
    return images, labels


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root: Path, train: int = 120, test: int = 40, seed: int = 0) -> Path:
    """``root`` (created) holding gzipped IDX files in Fashion-MNIST's layout: ``train`` and ``test``
    garments of ``fake_fashion`` (multiples of 10), each over its own seeded faint noise, so that no
    two images, within a split or across splits, are equal."""
    if train % 10 or test % 10:
        raise ValueError(f"train, test: expected multiples of 10 (one size per class), found {train}, {test}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir()
    for split, n in (("train", train), ("t10k", test)):
        images, labels = fake_fashion(n // 10)
        images = np.maximum(images, rng.integers(0, 60, images.shape))
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(_idx_bytes(images))
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(_idx_bytes(labels))
    return root
