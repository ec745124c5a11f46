"""The image-classification pipeline, ``multimodal classify`` and the Classify tab: results equal the
model's own softmax, every kind of input and PIL mode gives the right pixels, and bad images are
InputErrors that name them."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import multimodal
from multimodal import cli
from multimodal.media import images as media_images
from multimodal.errors import InputError
from multimodal.models.vit import ViT, ViTConfig
from multimodal.paths import SHIPPED_CHECKPOINTS
from multimodal.app import classify as classify_tab
from multimodal.app import common as app_common
from multimodal.pipelines import image_classification as ic

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["ant", "bee", "cat", "dog", "eel"]


def make_model(image_mode: str = "RGB", seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    channels = {"L": 1, "RGB": 3}[image_mode]
    config = ViTConfig(image_size=16, patch_size=4, in_channels=channels, num_classes=len(LABELS), width=32,
                       depth=2, heads=4, labels=LABELS, image_mode=image_mode, image_mean=(0.3,) * channels,
                       image_std=(0.2,) * channels)
    model = ViT(config)
    with torch.no_grad():  # a random head: the classes get distinct scores
        model.head.weight.normal_(0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit")
    make_model().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = multimodal.pipeline("image-classification", model=str(folder), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def picture(mode: str = "RGB", size=(20, 12), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def reference(model: ViT, image: Image.Image) -> torch.Tensor:
    """The model's own probabilities on the pipeline's preprocessing, done by hand: convert, resize
    bicubic to 16x16, normalise."""
    rgb = np.asarray(image.convert(model.config.image_mode).resize((16, 16), Image.BICUBIC), dtype=np.float32)
    rgb = rgb[:, :, None] if rgb.ndim == 2 else rgb
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255 - 0.3) / 0.2
    with torch.no_grad():
        return model(x).softmax(-1)[0]


def as_vector(result) -> torch.Tensor:
    scores = {r["label"]: r["score"] for r in result}
    return torch.tensor([scores[label] for label in LABELS])


# ---------------------------------------------------------------------------------- results
def test_scores_are_the_models_softmax_sorted(pipe):
    image = picture()
    expected = reference(pipe.model, image)
    result = pipe(image, top_k=None)
    assert [r["label"] for r in result] == [LABELS[i] for i in expected.argsort(descending=True)]
    torch.testing.assert_close(as_vector(result), expected, atol=1e-5, rtol=0)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-5)


def test_top_k_keeps_the_best_and_clips_to_the_classes(pipe):
    image = picture(seed=1)
    everything = pipe(image, top_k=None)
    assert pipe(image, top_k=2) == everything[:2]
    assert pipe(image) == everything  # the default 5 is every class here
    assert pipe(image, top_k=50) == everything


def test_lists_give_one_result_per_image_in_order_whatever_the_batch_size(pipe):
    images = [picture(seed=s) for s in range(5)]
    singles = [pipe(i, top_k=3) for i in images]
    for batch_size in (1, 2, 64):
        batched = pipe(images, top_k=3, batch_size=batch_size)
        assert len(batched) == 5
        for got, want in zip(batched, singles):
            assert [r["label"] for r in got] == [r["label"] for r in want]
            assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-6)


def test_every_kind_of_input_gives_the_same_result(pipe, tmp_path):
    image = picture(seed=2)
    path = tmp_path / "x.png"
    image.save(path)
    array = np.array(image)
    expected = as_vector(pipe(image, top_k=None))
    for source in (str(path), path, path.read_bytes(), io.BytesIO(path.read_bytes()), array,
                   array.astype(np.float32) / 255, (array.astype(np.uint16) * 257),
                   torch.from_numpy(array).permute(2, 0, 1)):
        torch.testing.assert_close(as_vector(pipe(source, top_k=None)), expected, atol=1e-5, rtol=0)


def test_grey_model_takes_colour_and_colour_model_takes_grey(tmp_path):
    grey = ic.ImageClassificationPipeline(make_model("L"))
    image = picture(seed=3)
    torch.testing.assert_close(as_vector(grey(image, top_k=None)), reference(grey.model, image), atol=1e-5, rtol=0)
    colour = ic.ImageClassificationPipeline(make_model("RGB"))
    l_image = picture("L", seed=4)
    torch.testing.assert_close(as_vector(colour(l_image, top_k=None)), reference(colour.model, l_image),
                               atol=1e-5, rtol=0)


def test_the_config_decides_the_preprocessing(folder):
    model = make_model()
    model.config = model.config.replace(resize="shorter")
    pipe = ic.ImageClassificationPipeline(model)
    wide = Image.new("RGB", (32, 16), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 8, 16))  # white only outside the centre crop
    black = Image.new("RGB", (16, 16), (0, 0, 0))
    assert as_vector(pipe(wide, top_k=None)).tolist() == pytest.approx(as_vector(pipe(black, top_k=None)).tolist(),
                                                                       abs=1e-6)


# ------------------------------------------------------------------------------------ modes
def same(pipe, a, b):
    torch.testing.assert_close(as_vector(pipe(a, top_k=None)), as_vector(pipe(b, top_k=None)), atol=1e-5, rtol=0)


def test_palette_cmyk_and_bilevel_images_are_their_rgb(pipe, tmp_path):
    image = picture(seed=5)
    palette = image.convert("P", palette=Image.ADAPTIVE, colors=64)
    same(pipe, palette, palette.convert("RGB"))
    cmyk = image.convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    same(pipe, tmp_path / "cmyk.jpg", Image.open(tmp_path / "cmyk.jpg").convert("RGB"))
    same(pipe, cmyk, cmyk.convert("RGB"))
    bilevel = image.convert("1")
    same(pipe, bilevel, bilevel.convert("RGB"))


def test_transparency_is_composited_onto_white(pipe, tmp_path):
    rgba = picture("RGBA", seed=6)
    alpha = np.zeros((12, 20), np.uint8)
    alpha[:, :10] = 255  # left half opaque, right half transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba.convert("RGB").crop((0, 0, 10, 12)), (0, 0))
    same(pipe, tmp_path / "rgba.png", white)
    same(pipe, np.asarray(rgba), white)


def test_sixteen_bit_images_are_scaled_not_clipped(pipe, tmp_path):
    grey8 = np.random.default_rng(7).integers(0, 256, (12, 20), dtype=np.uint8)
    grey16 = grey8.astype(np.uint16) * 257  # the same picture in 16 bits
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    assert Image.open(path).mode.startswith("I")
    same(pipe, path, Image.fromarray(grey8))
    same(pipe, grey16, grey8)


def test_an_animated_gif_gives_its_first_frame(pipe, tmp_path):
    frames = [picture(seed=s).convert("P", palette=Image.ADAPTIVE) for s in (8, 9, 10)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = tmp_path / "first.gif"
    frames[0].save(first)
    same(pipe, path, first)
    opened = Image.open(path)
    opened.seek(2)  # a PIL animation left on a later frame still gives its first
    same(pipe, opened, first)


def test_any_size_works(pipe):
    for size in ((1, 1), (3, 500), (640, 480)):
        result = pipe(picture(size=size), top_k=1)
        assert result[0]["label"] in LABELS and 0 < result[0]["score"] <= 1


# -------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kind, message", [
    ("empty file", "0-byte"),
    ("not an image", "broken or unknown"),
    ("truncated png", "broken or truncated"),
    ("missing", "nothing there"),
    ("folder", "a folder"),
])
def test_bad_files_are_input_errors_that_name_them(pipe, tmp_path, kind, message):
    path = tmp_path / "bad.png"
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "not an image":
        path.write_text("hello, I am text")
    elif kind == "truncated png":
        picture(size=(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(InputError, match=message) as error:
        pipe([picture(), str(path)])
    assert str(path) in str(error.value)


@pytest.mark.parametrize("image, message", [
    (Image.new("RGB", (0, 5)), "at least 1x1 pixels, found 0x5"),
    (np.zeros((0, 4, 3), np.uint8), "at least 1x1 pixels"),
    (np.zeros((4, 4, 2), np.uint8), "1\\|3\\|4 channels"),
    (np.full((4, 4), np.nan, np.float32), "finite"),
    (np.full((4, 4), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((4, 4), np.int64), "dtype int64"),
    (b"", "0 bytes"),
    (b"GIF89a", "broken"),
    (42, "found int"),
    ([], "empty list"),
])
def test_bad_images_are_input_errors(pipe, image, message):
    with pytest.raises(InputError, match=message):
        pipe(image)


def test_a_decompression_bomb_is_refused_before_decoding(pipe, tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (200, 100)).save(path)
    monkeypatch.setattr(media_images, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(InputError, match="decompression-bomb guard.*200x100 = 20,000"):
        pipe(path)
    monkeypatch.setattr(media_images, "MAX_IMAGE_PIXELS", 20_000)
    assert pipe(path, top_k=1)[0]["label"] in LABELS


def test_pillow_s_own_bomb_error_is_an_input_error(pipe, tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (200, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses at 2x, warns above
    with pytest.raises(InputError, match=str(path)):
        pipe(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k"), ({"top_k": 1.5}, "top_k"), ({"top_k": True}, "top_k"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_options_are_input_errors(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe(picture(), **kwargs)


# ------------------------------------------------------------------------------- CLI and app
def test_cli_prints_top_k_for_each_image(folder, tmp_path, capsys):
    paths = []
    for seed in range(3):
        paths.append(str(tmp_path / f"{seed}.png"))
        picture(seed=seed).save(paths[-1])
    assert cli.main(["classify", *paths, "--model", str(folder), "--top-k", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    pipe = ic.ImageClassificationPipeline(ViT.from_pretrained(folder))
    for path, line in zip(paths, lines):
        best = pipe(path, top_k=2)
        assert line == f"{path}: " + ", ".join(f"{r['label']} {100 * r['score']:.1f}%" for r in best)
    assert cli.main(["classify", paths[0], "--model", str(folder), "--json", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["image"] == paths[0] and len(record["predictions"]) == 5


def test_cli_bad_image_exits_2_naming_it_and_prints_nothing(folder, tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    picture().save(good)
    bad.write_bytes(b"not a png")
    assert cli.main(["classify", str(good), str(bad), "--model", str(folder), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(bad) in captured.err


def test_app_handler_and_tab(pipe, monkeypatch):
    monkeypatch.setitem(app_common._APP_PIPELINES, ("image-classification", None), pipe)
    image = picture(seed=11)
    scores = classify_tab.classify_image(image, 3)
    assert list(scores) == [r["label"] for r in pipe(image, top_k=3)]
    with pytest.raises(InputError, match="uploaded image"):
        classify_tab.classify_image(None)
    import gradio as gr

    with gr.Blocks():
        classify_tab.classify_tab()


# -------------------------------------------------------------------------- shipped checkpoint
SHIPPED = SHIPPED_CHECKPOINTS / ic.DEFAULT_MODEL


def test_the_shipped_model_loads_by_default_and_knows_its_examples():
    pipe = multimodal.pipeline("image-classification", device="cpu")
    examples = classify_tab.example_images()
    assert len(examples) == 10
    results = pipe(examples, top_k=1)
    truth = [re.sub(r"^\d+-", "", p.rsplit("/", 1)[-1][:-4]).replace("_", " ") for p in examples]
    assert sorted(truth) == sorted(label.lower().replace("/", " ") for label in pipe.labels)
    correct = sum(r[0]["label"].lower().replace("/", " ") == t for r, t in zip(results, truth))
    assert correct >= 8, list(zip(truth, results))


# ----------------------------------------------------------------------- out of distribution
def test_the_shipped_model_says_when_a_picture_is_not_one_of_its_kinds(tmp_path, capsys):
    pipe = multimodal.pipeline("image-classification", device="cpu")
    assert pipe.ood is not None and pipe.ood.score == "mahalanobis"
    examples = [r.out_of_distribution for r in pipe(classify_tab.example_images(), top_k=1)]
    assert examples == [False] * 10
    blank = pipe(Image.new("RGB", (64, 64)), top_k=1)  # "Sandal 87 %" without the check
    assert blank.out_of_distribution is True and blank.ood_score == float("-inf")
    noise = pipe(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), top_k=1)
    assert noise.out_of_distribution is True and np.isfinite(noise.ood_score)
    path = tmp_path / "blank.png"
    Image.new("L", (28, 28), 0).save(path)
    assert cli.main(["classify", str(path), classify_tab.example_images()[0], "--json", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["out_of_distribution"] for r in rows] == [True, False]
    assert rows[0]["ood_score"] is None and isinstance(rows[1]["ood_score"], float)
    assert cli.main(["classify", str(path), "--device", "cpu"]) == 0
    assert "not one of these" in capsys.readouterr().out


def test_ood_detector_scores_save_and_load(tmp_path):
    torch.manual_seed(0)
    features, labels = torch.randn(300, 4), torch.arange(300) % 3
    features[labels == 1] += 5
    means, precision = ic.OutOfDistribution.fit_gaussians(features, labels, 3)
    assert torch.allclose(means[1], features[labels == 1].mean(0), atol=1e-5)
    centred = features - means[labels]
    assert torch.allclose(precision @ (centred.T @ centred / 300 + 1e-3 * torch.eye(4)), torch.eye(4), atol=1e-4)
    detector = ic.OutOfDistribution("mahalanobis", -10.0, means, precision, {"note": "x"}, min_contrast=0.1)
    x = torch.tensor([[0.0, 0, 0, 0], [5, 5, 5, 5], [40, 0, 0, 0]])
    d = [min(float((row - m) @ precision @ (row - m)) for m in means) for row in x]
    inputs = torch.stack([torch.randn(1, 8, 8), torch.randn(1, 8, 8), torch.zeros(1, 8, 8)])
    got = detector.scores(torch.zeros(3, 3), x, inputs)
    assert torch.allclose(got[:2], -torch.tensor(d[:2]), rtol=1e-4) and got[2] == float("-inf")
    logits = torch.tensor([[2.0, 0, 0], [0, 0, 0]])
    assert torch.allclose(ic.OutOfDistribution("msp", 0.5).scores(logits), logits.softmax(-1).amax(-1))
    assert torch.allclose(ic.OutOfDistribution("energy", 0.5).scores(logits), logits.logsumexp(-1))
    detector.save(tmp_path)
    again = ic.OutOfDistribution.load(tmp_path)
    assert again.threshold == -10 and again.min_contrast == 0.1 and again.info == {"note": "x"}
    assert torch.equal(again.scores(torch.zeros(3, 3), x, inputs), got)
    assert ic.OutOfDistribution.load(tmp_path / "nothing") is None
    (tmp_path / ic.OOD_NAME).write_text('{"score": "vibes", "threshold": 1}')
    with pytest.raises(InputError, match="ood.json: expected"):
        ic.OutOfDistribution.load(tmp_path)
    with pytest.raises(InputError, match="mahalanobis: expected the class means"):
        ic.OutOfDistribution("mahalanobis", 0.0)
