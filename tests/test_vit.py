"""The ViT: config and presets, forward at any resolution, checkpoints, timm's initialisation; and its
training entry (``multimodal train vit``) end to end on generated image folders and IDX files:
learning, exact resume, the model card, bad input."""

from __future__ import annotations

import argparse
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from multimodal.backbone import Transformer
from multimodal.checkpoint import load_tensors
from multimodal.training import vit as ic
from multimodal.data import images as image_data
from multimodal.media import images as media_images
from multimodal.errors import InputError
from multimodal.models.vit import ViT, ViTConfig
from multimodal.training import TrainConfig
from multimodal.training.trainer import Trainer, param_groups
from helpers import fake_fashion_mnist, randomize


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**changes) -> ViTConfig:
    base = dict(image_size=16, patch_size=4, in_channels=3, num_classes=3, width=32, depth=2, heads=4)
    return ViTConfig(**{**base, **changes})


# ------------------------------------------------------------------------------------- config
def test_presets():
    s16 = ViTConfig.preset("vit-s/16")
    assert (s16.width, s16.depth, s16.heads, s16.patch_size, s16.image_size) == (384, 12, 6, 16, (224, 224))
    ti4 = ViTConfig.preset("ViT-Ti/4", image_size=32, in_channels=1, num_classes=10)
    assert (ti4.width, ti4.heads, ti4.patch_size, ti4.grid, ti4.image_mode) == (192, 3, 4, (8, 8), "L")
    assert ViTConfig.preset("vit-l/32").depth == 24
    with pytest.raises(InputError, match="vit-s/12"):
        ViTConfig.preset("vit-s/12")


def test_config_round_trips_through_json():
    config = tiny(image_size=(16, 24), labels=["a", "b", "c"], global_pool="avg", layer_scale=0.1,
                  image_mean=(0.1, 0.2, 0.3))
    again = ViTConfig.from_json(config.to_json())
    assert again == config
    assert again.image_size == (16, 24) and again.image_mean == (0.1, 0.2, 0.3) and again.use_fc_norm


@pytest.mark.parametrize("changes,message", [
    (dict(image_size=18), "multiples of the patch size 4x4, found 18x18"),
    (dict(labels=["a"]), "expected 3 names"),
    (dict(class_token=False), "'avg' for a model without a class token"),
    (dict(width=30), "multiple of heads"),
    (dict(image_mode="RGB", in_channels=1), "1 channels"),
    (dict(image_std=(0.5, 0.0, 0.5)), "image_std: expected 3 numbers > 0"),
    (dict(global_pool="max"), "token, avg"),
    (dict(stem="resnet"), "stem: expected one of patch, conv"),
    (dict(stem="conv", patch_size=6, image_size=18), "convolutional stem needs a power of two"),
])
def test_bad_configs_are_input_errors(changes, message):
    with pytest.raises(InputError, match=message):
        tiny(**changes)


# ------------------------------------------------------------------------------------ forward
def test_forward_shapes_and_pooling():
    x = torch.randn(2, 3, 16, 16)
    token = ViT(tiny())
    assert isinstance(token.transformer, Transformer) and token.transformer.config.positions == "none"
    assert token(x).shape == (2, 3) and token.pos_embed.shape == (1, 1 + 16, 32)
    avg = ViT(tiny(global_pool="avg", class_token=False)).eval()
    assert avg.cls_token is None and avg.pos_embed.shape == (1, 16, 32)
    assert isinstance(avg.transformer.norm, torch.nn.Identity) and avg(x).shape == (2, 3)  # norm after pooling
    features = ViT(tiny(num_classes=0)).eval()
    assert features(x).shape == (2, 32)


def test_avg_pooling_ignores_the_class_token_and_is_the_mean_of_patches():
    model = randomize(ViT(tiny(global_pool="avg")))
    x = torch.randn(2, 3, 16, 16)
    tokens = model.forward_features(x)
    expected = model.head(model.fc_norm(tokens[:, 1:].mean(1)))
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_any_resolution_equals_set_image_size_and_tracks_weight_changes():
    model = randomize(ViT(tiny()))
    x = torch.randn(2, 3, 24, 20)
    with torch.no_grad():
        dynamic = model(x)
        cached = model.position_table((6, 5))
        assert model.position_table((6, 5)) is cached  # reused while the weights stay the same
        resized = ViT(model.config)
        resized.load_state_dict(model.state_dict())
        resized.set_image_size((24, 20))
        assert resized.config.image_size == (24, 20) and resized.pos_embed.shape == (1, 1 + 30, 32)
        assert torch.allclose(dynamic, resized.eval()(x), atol=1e-6)
        model.pos_embed.mul_(2)  # an in-place update (an optimizer step) must invalidate the cache
        assert not torch.equal(model.position_table((6, 5)), cached)


def test_positions_train_at_other_resolutions():
    model = ViT(tiny()).train()
    model(torch.randn(2, 3, 8, 12)).sum().backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0


def test_bad_images_are_input_errors():
    model = ViT(tiny())
    with pytest.raises(InputError, match=r"\[batch, 3, height, width\], found \(2, 1, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(InputError, match="floating-point"):
        model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(InputError, match="multiples of the patch size"):
        model(torch.randn(2, 3, 16, 18))


def test_timm_initialisation_and_no_weight_decay():
    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=32, patch_size=4, num_classes=10, width=64, depth=2, heads=4))
    # timm's (and torch's) trunc_normal_ cuts at +-2 absolute, not +-2 std: at std .02 a plain normal
    assert abs(model.pos_embed.std().item() - 0.02) < 0.003
    assert model.cls_token.abs().max() < 1e-4
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    assert all(abs(m.weight.std().item() - 0.02) < 0.004 for m in linears)
    names = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(names)
    groups = param_groups(model, 0.05)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(names["pos_embed"]) in no_decay and id(names["cls_token"]) in no_decay
    assert id(names["head.weight"]) not in no_decay


def test_save_and_load(tmp_path):
    model = randomize(ViT(tiny(labels=["cat", "dog", "fox"], image_size=(16, 20))))
    model.save_pretrained(tmp_path / "m")
    loaded = ViT.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and loaded.labels == ["cat", "dog", "fox"]
    x = torch.randn(1, 3, 16, 20)
    assert torch.equal(loaded(x), model(x))


def test_conv_stem_model_runs_at_any_resolution_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = ViT(tiny(stem="conv", global_pool="avg"))
    assert type(model.patch_embed).__name__ == "ConvStem"
    model.train()
    for _ in range(3):  # move the BatchNorm running statistics away from their initial values
        model(torch.randn(4, 3, 16, 16) * 2 + 1).sum().backward()
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = ViT.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.stem == "conv"
    bn = "patch_embed.stem.1.running_mean"
    assert torch.equal(loaded.state_dict()[bn], model.state_dict()[bn]) and model.state_dict()[bn].abs().sum() > 0
    for size in ((16, 16), (24, 20)):
        x = torch.randn(2, 3, *size)
        assert torch.equal(loaded(x), model(x))
    assert ViT(tiny()).patch_embed.__class__.__name__ == "PatchEmbed"  # the default stays timm's layout


def test_preprocess_follows_the_config():
    config = tiny(image_size=(8, 12), image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.25, 1.0))
    image = Image.new("RGB", (24, 16), (255, 0, 128))
    x = media_images.preprocess([image, image], config)
    assert x.shape == (2, 3, 8, 12)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, -1.0, 128 / 255]), atol=1e-6)


# ----------------------------------------------------------------------------- training entry
SHAPES = ("square", "disc", "bar")


def shape_folder(root, per_class=11, size=16, seed=0, corrupt=0):
    """Classes of coloured shapes on noisy grey: red squares, green discs, blue horizontal bars,
    at random places and sizes."""
    rng = np.random.default_rng(seed)
    colours = {"square": (220, 40, 40), "disc": (40, 200, 40), "bar": (40, 60, 220)}
    for name in SHAPES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = rng.integers(90, 160, (size, size, 3)).astype(np.uint8)
            image = Image.fromarray(base)
            draw = ImageDraw.Draw(image)
            s = int(rng.integers(6, 10))
            x0, y0 = (int(v) for v in rng.integers(0, size - s, 2))
            jitter = tuple(int(c + rng.integers(-20, 20)) for c in colours[name])
            if name == "square":
                draw.rectangle([x0, y0, x0 + s, y0 + s], fill=jitter)
            elif name == "disc":
                draw.ellipse([x0, y0, x0 + s, y0 + s], fill=jitter)
            else:
                draw.rectangle([0, y0, size - 1, y0 + 3], fill=jitter)
            image.save(root / name / f"{i}.png")
        for i in range(corrupt):
            (root / name / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def train_args(*argv) -> argparse.Namespace:
    parser = ic.add_train_vit_arguments(argparse.ArgumentParser(prog="multimodal train vit"))
    return parser.parse_args(list(argv))


TINY = ("--image-size", "16", "--patch-size", "4", "--width", "32", "--depth", "2", "--heads", "2",
        "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5", "--log-every", "5", "--no-progress",
        "--device", "cpu")


def test_train_vit_learns_coloured_shapes(tmp_path):
    data = shape_folder(tmp_path / "shapes")
    out = tmp_path / "run"
    summary = ic.run_train_vit(train_args("--data", str(data), "--out-dir", str(out), "--max-steps", "60",
                                          "--eval-every", "20", "--save-every", "0", "--val-size", "3", *TINY))
    folder = out / "model"
    assert summary["model"] == str(folder)
    result = ic.evaluate_vit(folder, "train", device="cpu")
    assert result["images"] == 30 and result["accuracy"] > 0.9
    model = ViT.from_pretrained(folder)
    assert model.labels == sorted(SHAPES) and model.config.image_mode == "RGB"
    training = json.loads((folder / "training.json").read_text())
    assert training["train_images"] == 30 and training["val_images"] == 3 and training["steps"] == 60
    assert training["command"].startswith(f"multimodal train vit --data {data}")
    assert "--max-steps 60" in training["command"] and "--resume" not in training["command"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert training["command"] in card and "### train (the training images)" in card
    assert (folder / "confusion_train.png").read_bytes().startswith(b"\x89PNG")
    # the weights kept are the best on validation, and the trainer's best/ holds the same ones
    assert torch.equal(load_tensors(folder / "model.safetensors")["head.weight"],
                       load_tensors(out / "best" / "model.safetensors")["head.weight"])


@pytest.mark.parametrize("stem", ["patch", "conv"])  # conv: BatchNorm's running statistics resume too
def test_train_vit_resumes_exactly(tmp_path, monkeypatch, stem):
    data = shape_folder(tmp_path / "shapes", per_class=6)
    common = ("--data", str(data), "--max-steps", "16", "--save-every", "8", "--eval-every", "8",
              "--mixup", "0.4", "--cutmix", "1.0", "--randaugment", "2", "5", "--stem", stem, *TINY)
    ic.run_train_vit(train_args("--out-dir", str(tmp_path / "straight"), *common))

    step = Trainer._optimizer_step

    def killed_after_step_10(self, batches):
        if self.step == 10:
            raise KeyboardInterrupt
        return step(self, batches)

    monkeypatch.setattr(Trainer, "_optimizer_step", killed_after_step_10)
    with pytest.raises(KeyboardInterrupt):
        ic.run_train_vit(train_args("--out-dir", str(tmp_path / "killed"), *common))
    monkeypatch.setattr(Trainer, "_optimizer_step", step)
    ic.run_train_vit(train_args("--out-dir", str(tmp_path / "killed"), "--resume", *common))
    a = load_tensors(tmp_path / "straight" / "checkpoint" / "model.safetensors")
    b = load_tensors(tmp_path / "killed" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "killed" / "model" / "training.json").read_text())["resumed"] is True
    assert ViT.from_pretrained(tmp_path / "killed" / "model").config.stem == stem
    assert ("convolutional stem" in (tmp_path / "killed" / "model" / "MODEL_CARD.md").read_text()) == (stem == "conv")

    with pytest.raises(InputError, match=r"resume: expected the data, model and augmentation .* model"):
        ic.run_train_vit(train_args("--out-dir", str(tmp_path / "killed"), "--resume", *common, "--width", "16"))


def test_train_vit_on_fashion_mnist_files_reports_the_test_split(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(image_data, "FASHION_MNIST_DIR", fake_fashion_mnist(tmp_path / "fm"))
    out = tmp_path / "run"
    ic.run_train_vit(train_args("--data", "fashion-mnist", "--out-dir", str(out), "--val-size", "20",
                                "--max-steps", "6", *TINY, "--image-size", "28"))
    assert "test accuracy:" in capsys.readouterr().out
    folder = out / "model"
    result = json.loads((folder / "eval_test.json").read_text())
    assert result["images"] == 40 and set(result["per_class"]) == set(image_data.FASHION_MNIST_LABELS)
    assert np.array(result["confusion"]).sum() == 40
    card = (folder / "MODEL_CARD.md").read_text()
    assert "### test (the official 10,000-image test split)" in card and "| Ankle boot |" in card
    assert "100 training images + 20 validation images drawn from the training split (seed 0)" in card
    config = ViTConfig.load(folder / "config.json")
    assert config.in_channels == 1 and config.labels == image_data.FASHION_MNIST_LABELS
    # the validation images come from the training split, seeded, and never from the test split
    train = ic.load_split("fashion-mnist", "train", config, val_size=20, split_seed=0)
    val = ic.load_split("fashion-mnist", "val", config, val_size=20, split_seed=0)
    test = ic.load_split("fashion-mnist", "test", config, val_size=20, split_seed=0)
    all_train, _ = image_data.load_fashion_mnist("train")
    rows = {bytes(x.numpy()) for x in all_train}
    assert len(train) == 100 and len(val) == 20 and len(test) == 40
    assert all(bytes(x.numpy()) in rows for x in val.images)
    assert not {bytes(x.numpy()) for x in val.images} & {bytes(x.numpy()) for x in train.images}
    assert torch.equal(val.images, ic.load_split("fashion-mnist", "val", config, val_size=20, split_seed=0).images)
    # a copy stored in float16 (as shipped checkpoints are) says so in its card, evaluated as stored
    assert "stored weights" not in card
    half = tmp_path / "half"
    ViT.from_pretrained(folder).save_pretrained(half, dtype=torch.float16)
    shutil.copy(folder / "training.json", half / "training.json")
    ic.evaluate_vit(half, "test", device="cpu")
    assert "| stored weights | float16; loaded as float32" in (half / "MODEL_CARD.md").read_text()
    (half / "card_notes.md").write_text("Made by casting to float16.\n")
    ic.evaluate_vit(half, "test", device="cpu")
    assert (half / "MODEL_CARD.md").read_text().endswith("## Notes\n\nMade by casting to float16.\n")


def test_train_vit_bad_input(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(InputError, match=r"empty: expected image files"):
        ic.run_train_vit(train_args("--data", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "r1"), *TINY))
    shape_folder(tmp_path / "one", per_class=4)
    for name in ("disc", "bar"):
        for f in (tmp_path / "one" / name).iterdir():
            f.unlink()
        (tmp_path / "one" / name).rmdir()
    with pytest.raises(InputError, match=r"one: expected at least 2 class subfolders of images, found 1 \(square\)"):
        ic.run_train_vit(train_args("--data", str(tmp_path / "one"), "--out-dir", str(tmp_path / "r2"), *TINY))
    with pytest.raises(InputError, match="fashion-mnist' or a folder"):
        ic.run_train_vit(train_args("--data", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "r3"), *TINY))
    corrupt = shape_folder(tmp_path / "corrupt", per_class=4, corrupt=1)
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable image file\(s\)"):
        ic.run_train_vit(train_args("--data", str(corrupt), "--out-dir", str(tmp_path / "r4"), "--max-steps", "2",
                                    "--val-size", "0", *TINY))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same skipped files
        with pytest.raises(InputError, match="expected at most the 12 training images"):
            ic.run_train_vit(train_args("--data", str(corrupt), "--out-dir", str(tmp_path / "r5"), "--epochs", "1",
                                        "--val-size", "0", *TINY, "--batch-size", "16"))
        with pytest.raises(InputError, match="test/ folder"):
            ic.evaluate_vit(tmp_path / "r4" / "model", "test")


def test_train_config_defaults_are_the_recipe():
    args = train_args("--data", "fashion-mnist")
    assert (args.batch_size, args.lr, args.select_metric, args.label_smoothing) == (128, 1e-3, "val_acc", 0.1)
    assert TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__}) == ic.RECIPE_TRAIN


def test_cli_train_and_evaluate_vit(tmp_path, capsys):
    from multimodal import cli

    data = shape_folder(tmp_path / "shapes", per_class=4)
    out = tmp_path / "run"
    assert cli.main(["train", "vit", "--data", str(data), "--out-dir", str(out), "--max-steps", "4", *TINY]) == 0
    assert cli.main(["train", "vit", "--data", str(data), "--out-dir", str(out), "--max-steps", "4", *TINY]) == 2
    assert "resume=True" in capsys.readouterr().err
    assert cli.main(["evaluate", "vit", str(out / "model"), "--split", "train"]) == 0
    assert "train accuracy:" in capsys.readouterr().out
    assert cli.main(["train", "vit", "--data", str(tmp_path / "none"), "--out-dir", str(tmp_path / "r")]) == 2
