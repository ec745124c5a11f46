"""Image data: IDX files and Fashion-MNIST, class folders (and their bad input), preprocessing, splits
and batch augmentation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal.data import images as D
from multimodal.media import images as MI
from multimodal.errors import InputError


def idx_gz(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


# ------------------------------------------------------------------------------- IDX / Fashion-MNIST
def test_read_idx(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    idx_gz(tmp_path / "x.gz", images)
    assert torch.equal(D.read_idx(tmp_path / "x.gz"), torch.from_numpy(images.astype(np.uint8)))
    (tmp_path / "plain").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))  # 8-byte header, 3 labels
    assert D.read_idx(tmp_path / "plain").tolist() == [7, 8, 9]
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 4, 7, 8, 9]))
    with pytest.raises(InputError, match=r"expected 12 bytes for shape \[4\], found 11"):
        D.read_idx(tmp_path / "short")
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 0]))
    with pytest.raises(InputError, match="IDX header of unsigned bytes"):
        D.read_idx(tmp_path / "float")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x09abc")[:-6])
    with pytest.raises(InputError, match="bad.gz: expected a readable IDX file"):
        D.read_idx(tmp_path / "bad.gz")


def test_load_fashion_mnist(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        idx_gz(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        idx_gz(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n))
    monkeypatch.setattr(D, "FASHION_MNIST_DIR", tmp_path)
    images, labels = D.load_fashion_mnist("test")
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3]
    assert len(D.load_fashion_mnist("train")[0]) == 6
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        D.load_fashion_mnist("test")
    with pytest.raises(InputError, match="train or test"):
        D.load_fashion_mnist("val")


# ------------------------------------------------------------------------------------ folders
def folder(root, classes=("a", "b"), per_class=3, size=(10, 6)):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, (40 * k, 10 * i, 200)).save(root / name / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    root = folder(tmp_path / "data", classes=("zebra", "ant"))
    (root / "ant" / "notes.txt").write_text("not an image")  # other files are ignored
    (root / ".cache").mkdir()
    dataset = D.ImageFolderDataset(root, 8, mode="RGB")
    assert dataset.classes == ["ant", "zebra"] and len(dataset) == 6 and dataset.skipped == []
    assert dataset.images.shape == (6, 3, 8, 8) and dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    image, label = dataset[4]
    assert label == 1 and image[:, 0, 0].tolist() == [0, 10, 200]  # zebra, file 1
    batch = dataset.__getitems__([5, 0])
    assert batch[1].tolist() == [1, 0] and torch.equal(batch[0][1], dataset.images[0])
    grey = D.ImageFolderDataset(root, (4, 6), mode="L")
    assert grey.images.shape == (6, 1, 4, 6)


def test_image_folder_bad_input(tmp_path):
    (tmp_path / "empty" / "x").mkdir(parents=True)
    (tmp_path / "empty" / "y").mkdir()
    with pytest.raises(InputError, match=r"empty: expected image files"):
        D.ImageFolderDataset(tmp_path / "empty", 8)
    with pytest.raises(InputError, match=r"at least 2 class subfolders of images, found 1 \(a\)"):
        D.ImageFolderDataset(folder(tmp_path / "single", classes=("a",)), 8)
    with pytest.raises(InputError, match="found nothing"):
        D.ImageFolderDataset(tmp_path / "missing", 8)
    root = folder(tmp_path / "broken")
    (root / "a" / "torn.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\): .*torn.jpg"):
        dataset = D.ImageFolderDataset(root, 8)
    assert len(dataset) == 6 and dataset.skipped[0][0].name == "torn.jpg"
    (root / "c").mkdir()
    (root / "c" / "only.png").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"c: expected readable images of class 'c', found 1 unreadable files"):
        D.ImageFolderDataset(root, 8)


def test_image_to_tensor_resizes_and_converts():
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 4, 20))  # a white band on the left tenth
    squashed = MI.image_to_tensor(wide, 8, "RGB", "squash")
    assert squashed.shape == (3, 8, 8) and squashed[0, 4, 0] > 150 and squashed[:, :, 3:].max() == 0
    cropped = MI.image_to_tensor(wide, 8, "RGB", "shorter")  # 16x8 after resizing: the centre 8x8 is black
    assert cropped.shape == (3, 8, 8) and cropped.max() == 0
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent: white behind it
    assert MI.image_to_tensor(rgba, 4, "L", "squash").min() == 255


def test_split_indices():
    train, val = D.split_indices(100, 10, seed=3)
    assert len(train) == 90 and len(val) == 10 and not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(100))
    again, val_again = D.split_indices(100, 10, seed=3)
    assert np.array_equal(val, val_again) and not np.array_equal(val, D.split_indices(100, 10, seed=4)[1])
    assert len(D.split_indices(100, 0.25, seed=0)[1]) == 25 and len(D.split_indices(100, 0, seed=0)[1]) == 0
    for bad in (100, -1, 1.5, True):
        with pytest.raises(InputError, match="val_size"):
            D.split_indices(100, bad, seed=0)


def test_normalize():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1)
    assert MI.normalize(x, (0.5, 0.0), (0.5, 2.0)).flatten().tolist() == [-1.0, 0.5]


# ------------------------------------------------------------------------------- augmentation
def test_random_crop_cuts_windows_of_the_padded_images():
    torch.manual_seed(0)
    x = torch.randn(6, 2, 5, 7)
    for mode in ("reflect", "zeros"):
        out = D.random_crop(x, 2, mode)
        padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect" if mode == "reflect" else "constant")
        for b in range(6):
            windows = [padded[b, :, dy:dy + 5, dx:dx + 7] for dy in range(5) for dx in range(5)]
            assert any(torch.equal(out[b], w) for w in windows)
    assert torch.equal(D.random_crop(x, 0), x)


def test_train_augment_flips_crops_and_normalises():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(64) % 4
    aug = D.TrainAugment(4, (0.5,), (0.5,), crop_padding=0, flip=True)
    x, targets = aug(images, labels)
    plain = MI.normalize(images, (0.5,), (0.5,))
    flipped = torch.tensor([torch.equal(a, p.flip(-1)) and not torch.equal(a, p) for a, p in zip(x, plain)])
    kept = torch.tensor([torch.equal(a, p) for a, p in zip(x, plain)])
    assert (flipped | kept).all() and 16 < flipped.sum() < 48
    assert torch.equal(targets, torch.nn.functional.one_hot(labels, 4).float())


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_keeps_targets_proportional_to_pixels(kind):
    torch.manual_seed(1)
    images = (torch.arange(8) * 30).to(torch.uint8).view(8, 1, 1, 1).expand(8, 1, 8, 8).contiguous()
    labels = torch.arange(8)
    aug = D.TrainAugment(8, (0.0,), (1 / 255,), crop_padding=0, flip=False,
                         mixup_alpha=1.0 if kind == "mixup" else 0.0, cutmix_alpha=1.0 if kind == "cutmix" else 0.0)
    for _ in range(5):
        x, targets = aug(images, labels)  # pixel value = 30 * label: the mix is readable from the pixels
        x = x.double()
        assert torch.allclose(targets.sum(1), torch.ones(8))
        for b in range(8):
            own, other = 30.0 * b, 30.0 * (7 - b)
            if kind == "cutmix":
                assert set(x[b].round().unique().tolist()) <= {own, other}
                share = (x[b].round() == own).double().mean() if own != other else torch.tensor(1.0)
            else:
                share = torch.tensor(1.0) if own == other else (x[b, 0, 0, 0] - other) / (own - other)
            assert abs(targets[b, b] - share) < 1e-4 or own == other


def test_randaugment_runs_on_grey_and_colour():
    torch.manual_seed(0)
    for channels in (1, 3):
        aug = D.TrainAugment(3, (0.5,) * channels, (0.5,) * channels, randaugment=(2, 9))
        x, _ = aug(torch.randint(0, 256, (4, channels, 12, 12), dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))
        assert x.shape == (4, channels, 12, 12) and x.dtype == torch.float32 and torch.isfinite(x).all()
    with pytest.raises(InputError, match="padding_mode"):
        D.TrainAugment(3, (0.5,), (0.5,), padding_mode="wrap")
