"""The captioned world: determinism, the held-out split, captions, measured colours, shapes, the
evaluation list and bad input. Garments come from a few generated 28x28 items, never the package."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from multimodal.data import world
from multimodal.data.world import (BACKGROUND_JITTER, BACKGROUNDS, CAPTION_TEMPLATES, COLOUR_JITTER, COLOURS,
                                   FASHION_OBJECTS, HELD_OUT, OBJECTS, SHAPES, CaptionedWorld, Combo, WorldDataset,
                                   canonical_caption, caption_corpus, captions, check_combo, combinations,
                                   evaluation_prompts, parse_caption)
from multimodal.errors import InputError
from helpers import fake_fashion

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fashion():
    return fake_fashion()


@pytest.fixture(scope="module")
def train_world(fashion):
    return CaptionedWorld("train", fashion=fashion)


@pytest.fixture(scope="module")
def all_world(fashion):
    return CaptionedWorld("all", fashion=fashion)


def test_same_seed_same_items(fashion, train_world):
    a, b = train_world.sample(64, 3), CaptionedWorld("train", fashion=fashion).sample(64, 3)
    assert a.images.shape == (64, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.attributes == b.attributes
    c = train_world.sample(64, 4)
    assert not torch.equal(a.images, c.images) and a.captions != c.captions
    first = list(itertools.islice(train_world.stream(seed=7, chunk=50), 120))
    again = list(itertools.islice(WorldDataset("train", seed=7, fashion=fashion, chunk=50), 120))
    assert all(torch.equal(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(first, again))
    image, caption, attributes = first[0]
    assert image.shape == (3, 32, 32) and parse_caption(caption) == Combo(**attributes)


def test_dataset_batches_through_a_dataloader(fashion):
    images, texts, attributes = next(iter(DataLoader(WorldDataset(seed=1, fashion=fashion, chunk=16), batch_size=8)))
    assert images.shape == (8, 3, 32, 32) and len(texts) == 8 and len(attributes["object"]) == 8


def test_training_split_never_yields_held_out(train_world):
    batch = train_world.sample(3000, 0)
    seen = {Combo(**a) for a in batch.attributes}
    assert not any((c.object, c.colour) in HELD_OUT for c in seen)
    assert seen <= set(combinations("train")) and len(seen) > 400  # 465 training combinations
    for text in batch.captions[:500]:
        combo = parse_caption(text)
        assert (combo.object, combo.colour) not in HELD_OUT
    assert len(combinations("train")) + len(combinations("held_out")) == len(combinations("all")) == 16 * 8 * 4 - 16
    assert len(combinations("held_out")) == 8 * 4 - 1  # no white trouser on white


def test_held_out_and_all_splits(fashion, all_world):
    held = CaptionedWorld("held_out", fashion=fashion).sample(300, 0).attributes
    assert all((a["object"], a["colour"]) in HELD_OUT for a in held)
    assert any((a["object"], a["colour"]) in HELD_OUT for a in all_world.sample(500, 0).attributes)


def test_never_white_on_white(all_world):
    assert not [c for c in combinations("all") if c.colour == c.background == "white"]
    assert not [a for a in all_world.sample(2000, 1).attributes if a["colour"] == a["background"] == "white"]


def test_canonical_caption_is_a_template_and_parses_back():
    assert canonical_caption("circle", "red", "black") == "a red circle on a black background"
    assert canonical_caption({"object": "heart", "colour": "orange", "background": "navy"}) == \
        "a orange heart on a navy background"
    for combo in combinations("all"):
        texts = captions(combo)
        assert texts[0] == canonical_caption(*combo) == canonical_caption(combo) and len(set(texts)) == len(texts)
        assert all(parse_caption(t) == combo for t in texts)
    assert parse_caption("  An Orange heart on a navy background. ") == Combo("heart", "orange", "navy")
    assert parse_caption("a white shirt on a gray background") == Combo("shirt", "white", "gray")
    assert parse_caption("a white t-shirt on a gray background") == Combo("t-shirt", "white", "gray")


def test_caption_corpus():
    corpus = caption_corpus()
    assert len(corpus) == len(combinations("train")) * len(CAPTION_TEMPLATES)
    assert "a red circle on a black background" in corpus and "a red sneaker on a black background" not in corpus
    assert "a red sneaker on a black background" in caption_corpus("all")


def test_pixels_have_the_object_and_background_colours(all_world):
    combos = list(combinations("all"))
    images, alpha = all_world.render(combos, generator=0, return_alpha=True)
    assert images.shape == (len(combos), 3, 32, 32) and alpha.shape == (len(combos), 1, 32, 32)
    pixels = images.float()
    for i, combo in enumerate(combos):
        fg, bg = alpha[i, 0] > 0.999, alpha[i, 0] == 0
        assert fg.sum() >= 20 and bg.sum() >= 20, combo
        colour, background = torch.tensor(COLOURS[combo.colour]), torch.tensor(BACKGROUNDS[combo.background])
        assert (pixels[i][:, fg].T - colour).abs().max() <= COLOUR_JITTER + 1, combo
        assert (pixels[i][:, bg].T - background).abs().max() <= BACKGROUND_JITTER + 1, combo
        # the corners of the foreground (its mean colour) are close to the named colour, not another one
        mean = pixels[i][:, fg].mean(1)
        nearest = min(COLOURS, key=lambda c: (torch.tensor(COLOURS[c]) - mean).norm())
        assert nearest == combo.colour


def test_shapes_differ(all_world):
    for seed in range(3):
        # one seed gives every object the same size, place and rotation: only the shape differs
        _, alpha = all_world.render([(s, "red", "black") for s in SHAPES], generator=seed, return_alpha=True)
        masks = alpha[:, 0] > 0.5
        for i, j in itertools.combinations(range(len(SHAPES)), 2):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.85, (SHAPES[i], SHAPES[j], float(iou))
    canonical = world.shape_masks()[:, 0] > 0.5
    assert all((canonical[i] ^ canonical[j]).float().mean() > 0.05 for i, j in itertools.combinations(range(6), 2))


def test_garments_come_from_the_given_images(all_world):
    # label c's fake garment is 6 + 2c pixels wide: a wider class gives more foreground
    # (one seed per call places every class alike)
    area = torch.stack([all_world.render([(o, "green", "black")] * 4, generator=0, return_alpha=True)[1].sum()
                        for o in FASHION_OBJECTS])
    assert torch.all(area[1:] > area[:-1])


def test_evaluation_prompts():
    prompts = evaluation_prompts()
    held = [p for p in prompts if p["held_out"]]
    seen = [p for p in prompts if not p["held_out"]]
    as_combo = lambda p: Combo(p["object"], p["colour"], p["background"])  # noqa: E731
    assert {as_combo(p) for p in held} == set(combinations("held_out"))
    assert {(o, c) for o, c, _ in map(as_combo, held)} == set(HELD_OUT)
    assert len(seen) == 64 and len({as_combo(p) for p in seen}) == 64
    assert all(as_combo(p) in combinations("train") for p in seen)
    assert {p["object"] for p in seen} == set(OBJECTS) and {p["background"] for p in seen} == set(BACKGROUNDS)
    assert {p["colour"] for p in seen} == set(COLOURS)
    assert all(p["caption"] == canonical_caption(as_combo(p)) and parse_caption(p["caption"]) == as_combo(p)
               for p in prompts)
    assert evaluation_prompts() == prompts and len(evaluation_prompts(16)) == 31 + 16


def test_render_prompt(all_world, train_world):
    images = all_world.render_prompt("a red sneaker on a gray background", 5, generator=0)
    assert images.shape == (5, 3, 32, 32)
    assert torch.equal(images, all_world.render_prompt({"object": "sneaker", "colour": "red", "background": "gray"},
                                                       5, generator=0))
    with pytest.raises(InputError, match="red sneaker"):
        train_world.render_prompt("a red sneaker on a gray background", 2)


@pytest.mark.parametrize("attributes, match", [
    (("hat", "red", "black"), "object"),
    (("circle", "pink", "black"), "colour"),
    (("circle", "red", "green"), "background"),
    (("circle", "white", "white"), "white on white"),
    (("purple", "circle", "black"), "object"),
    ({"object": "circle", "colour": "red"}, "background"),
    ("circle", "attributes"),
])
def test_bad_attributes(attributes, match):
    with pytest.raises(InputError, match=match):
        check_combo(attributes)


def test_bad_input(fashion, train_world):
    with pytest.raises(InputError, match="blue dress"):
        train_world.render([("dress", "blue", "gray")])
    with pytest.raises(InputError, match="blue dress"):
        check_combo(("dress", "blue", "gray"), split="train")
    with pytest.raises(InputError, match="held-out"):
        check_combo(("dress", "red", "gray"), split="held_out")
    with pytest.raises(InputError, match="split"):
        CaptionedWorld("test", fashion=fashion)
    with pytest.raises(InputError, match="caption"):
        parse_caption("a red circle")
    with pytest.raises(InputError, match="caption"):
        parse_caption(3)
    with pytest.raises(InputError, match="n:"):
        train_world.sample(-1)
    with pytest.raises(InputError, match="generator"):
        train_world.sample(2, generator="0")
    with pytest.raises(InputError, match="attributes"):
        train_world.render(("circle", "red", "black"))
    with pytest.raises(InputError, match="fashion"):
        CaptionedWorld(fashion=(np.zeros((5, 28, 28), np.uint8), np.zeros(5)))  # only label 0
    with pytest.raises(InputError, match="fashion"):
        CaptionedWorld(fashion=(np.zeros((5, 32, 32), np.uint8), np.arange(5)))
    with pytest.raises(InputError, match="image_size"):
        CaptionedWorld(image_size=4, fashion=fashion)
    with pytest.raises(InputError, match="seen"):
        evaluation_prompts(65)


def test_grid_command(tmp_path, monkeypatch, fashion):
    from PIL import Image
    monkeypatch.setattr(world, "_default_fashion", lambda: world._prepare_fashion(fashion))
    out = tmp_path / "grid.png"
    world.main(["--out", str(out), "-n", "6", "--columns", "3", "--scale", "2"])
    assert Image.open(out).size[0] == 3 * (32 * 2 + 4)
    world.main(["--out", str(out), "--objects", "--scale", "1"])
    assert Image.open(out).size[0] == 8 * (32 + 4)


# --------------------------------------------------------------------------------- new colours
def test_new_colours_are_a_split_of_their_own(fashion):
    pink = combinations("new_colour")
    assert len(pink) == len(OBJECTS) * len(world.NEW_COLOURS) * len(BACKGROUNDS)
    assert {c.colour for c in pink} == set(world.NEW_COLOURS) and not set(world.NEW_COLOURS) & set(COLOURS)
    assert all(c.colour in COLOURS for split in ("train", "held_out", "all") for c in combinations(split))
    assert list(world.PALETTE)[:len(COLOURS)] == list(COLOURS)  # the world's colour indices are unchanged
    for split in ("train", "held_out", "all"):
        with pytest.raises(InputError, match="new colour: split 'new_colour'"):
            check_combo(("star", "pink", "navy"), split)
    with pytest.raises(InputError, match="colour"):
        check_combo(("star", "red", "navy"), "new_colour")
    # captions of every template name it and parse back
    combo = Combo("star", "pink", "white")  # pink on white exists
    assert [parse_caption(c) for c in captions(combo)] == [combo] * len(CAPTION_TEMPLATES)
    assert canonical_caption(combo) == "a pink star on a white background"
    # rendered in pink: the opaque pixels are within jitter of its RGB value
    drawer = CaptionedWorld("new_colour", fashion=fashion)
    images, alpha = drawer.render(list(pink), generator=0, return_alpha=True)
    for i, c in enumerate(pink):
        fg = alpha[i, 0] > 0.999
        assert (images[i].float()[:, fg].T - torch.tensor(world.NEW_COLOURS[c.colour])).abs().max() <= COLOUR_JITTER + 1
    assert {a["colour"] for a in drawer.sample(32, 0).attributes} == set(world.NEW_COLOURS)
    with pytest.raises(InputError, match="new colour"):
        CaptionedWorld("all", fashion=fashion).render_prompt("a pink star on a navy background", 1)


def test_random_captions_are_what_sample_uses(train_world):
    batch = train_world.sample(40, 7)
    g = torch.Generator().manual_seed(7)
    pick = torch.randint(len(train_world.combos), (40,), generator=g)
    assert world.random_captions([train_world.combos[i] for i in pick.tolist()], g) == list(batch.captions)
    all_canonical = world.random_captions([Combo("star", "pink", "navy")] * 5, torch.Generator().manual_seed(0), 1.0)
    assert all_canonical == ["a pink star on a navy background"] * 5
