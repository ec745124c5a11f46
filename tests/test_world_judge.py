"""The judge of the captioned world (multimodal/evaluation/world_judge.py): measured colours on real renders of
every combination, the Fréchet distance against its closed form, a tiny judge that learns the shapes,
scoring, the weight cache and bad input. Garments come from a few generated 28x28 items."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multimodal.data.world import BACKGROUNDS, COLOURS, SHAPES, CaptionedWorld, Combo, combinations
from multimodal.errors import InputError
from multimodal.evaluation import world_judge
from multimodal.evaluation.frechet import frechet_distance
from multimodal.evaluation.world_judge import (Judge, JudgeRecipe, evaluate, load_or_train_judge, measure_colours,
                                               train_judge)
from helpers import fake_fashion

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(widths=(8, 16, 32), steps=150, batch_size=32, lr=4e-3, warmup=10, objects=tuple(SHAPES))


@pytest.fixture(scope="module")
def fashion():
    """Garments whose sandals (label 5) are thin straps that antialiasing leaves nowhere fully opaque."""
    return fake_fashion(thin_sandals=True)


@pytest.fixture(scope="module")
def all_world(fashion):
    return CaptionedWorld("all", fashion=fashion)


@pytest.fixture(scope="module")
def tiny_judge(fashion):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_judge(fashion=fashion, **TINY)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------- colours
def test_colours_measured_exactly_on_every_combination(all_world):
    combos = list(combinations("all")) * 3
    images = all_world.render(combos, generator=0)
    backgrounds, colours = measure_colours(images)
    assert backgrounds == [c.background for c in combos]
    assert colours == [c.colour for c in combos]
    # The thin sandal straps are the hard case: nowhere opaque, yet measured right.
    sandals = [i for i, c in enumerate(combos) if c.object == "sandal"]
    _, alpha = all_world.render([combos[i] for i in sandals], generator=0, return_alpha=True)
    assert alpha.amax(dim=(1, 2, 3)).min() < 0.95


def test_colours_of_hand_made_images():
    """A plain square on a plain background, any size: the table entries themselves come back."""
    for size in (9, 32, 48):
        for (bg_name, bg), (c_name, c) in zip(BACKGROUNDS.items(), list(COLOURS.items())[::2]):
            image = torch.tensor(bg, dtype=torch.uint8)[:, None, None].repeat(1, size, size)
            image[:, size // 3:2 * size // 3 + 1, size // 3:2 * size // 3 + 1] = torch.tensor(c, dtype=torch.uint8)[:, None, None]
            assert measure_colours(image[None]) == ([bg_name], [c_name])
    # numpy input works the same
    assert measure_colours(image[None].numpy()) == ([bg_name], [c_name])


# ------------------------------------------------------------------------------ Fréchet distance
def whitened(n: int, d: int, seed: int) -> np.ndarray:
    """n samples of d features with sample mean exactly 0 and unbiased sample covariance exactly I."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x -= x.mean(0)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    return x @ vectors @ np.diag(values ** -0.5) @ vectors.T


def test_frechet_distance_equals_the_closed_form_for_diagonal_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0, 3.0, 0.5]), np.array([1.0, 1.0, 0.0, -1.0, 0.5])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5, 3.0, 1.0]), np.array([2.0, 0.5, 0.5, 1.0, 4.0])
    a = mu_a + whitened(400, 5, 0) * sd_a
    b = mu_b + whitened(300, 5, 1) * sd_b
    expected = ((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
    # A common rotation changes nothing (the covariances no longer commute with the axes).
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((5, 5)))
    assert frechet_distance(a @ q, b @ q) == pytest.approx(expected, rel=1e-9)
    # torch tensors are accepted
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b).float()) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_is_zero_on_itself_symmetric_and_nonnegative():
    rng = np.random.default_rng(3)
    mixing = rng.standard_normal((16, 16))
    x = rng.standard_normal((200, 16)) @ mixing
    y = rng.standard_normal((150, 16)) @ mixing * 1.3 + 0.2
    scale = np.trace(np.cov(x, rowvar=False))
    assert frechet_distance(x, x) <= 1e-6 * scale
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-8)
    assert frechet_distance(x, y) > 0.01 * scale
    # rank-deficient covariances (fewer samples than features, a constant feature) stay finite and >= 0
    low = rng.standard_normal((6, 16))
    low[:, 3] = 1.0
    for p, q in ((low, low), (low, x), (x[:5], y[:7])):
        d = frechet_distance(p, q)
        assert np.isfinite(d) and d >= 0


# --------------------------------------------------------------------------------------- the judge
def test_a_tiny_judge_learns_the_shapes(tiny_judge, fashion):
    result = evaluate(tiny_judge, repeats=2, seed=777, fashion=fashion)  # fresh renders, every combination
    assert result["images"] == 2 * 6 * 31
    assert result["rates"]["object"] > 0.6  # chance is 1/6
    assert result["rates"]["colour"] == 1.0 and result["rates"]["background"] == 1.0
    assert set(result["per_object"]) == set(SHAPES)
    features = result["features"]
    assert features.shape == (result["images"], 32) and features.dtype == torch.float64
    # a transform applies to the renders first: the identity changes nothing, a flat grey image of the
    # background colour leaves no object and no object colour to find
    same = evaluate(tiny_judge, repeats=2, seed=777, fashion=fashion, transform=lambda x: x.clone())
    assert same["rates"] == result["rates"] and torch.equal(same["features"], result["features"])
    flat = evaluate(tiny_judge, repeats=2, seed=777, fashion=fashion,
                    transform=lambda x: x[..., :1, :1].expand_as(x).contiguous())
    assert flat["rates"]["colour"] < 0.2 and flat["rates"]["prompt"] < 0.1


def test_judge_outputs(tiny_judge, all_world):
    combos = [Combo(s, "red", "navy") for s in SHAPES]
    images = all_world.render(combos, generator=5)
    names = tiny_judge.classify(images)
    assert len(names) == 6 and set(names) <= set(SHAPES)
    assert tiny_judge.logits(images).shape == (6, 6)
    features = tiny_judge.features(images)
    assert features.dtype == torch.float64 and features.shape == (6, 32)
    # one image at a time gives the same answer (eval mode: BatchNorm uses its running statistics)
    assert torch.allclose(tiny_judge.features(images[:1]), features[:1], atol=1e-5)


def test_score_marks_a_wrong_colour_background_or_object_wrong(tiny_judge, all_world):
    combos = [Combo("circle", "red", "black"), Combo("square", "blue", "white"), Combo("cross", "yellow", "gray")]
    images = all_world.render(combos, generator=1)
    right = tiny_judge.score(images, combos)
    assert right["colour_correct"].all() and right["background_correct"].all()
    assert right["colour"] == ["red", "blue", "yellow"] and right["background"] == ["black", "white", "gray"]
    assert np.array_equal(right["prompt_correct"], right["object_correct"]) and right["prompt_correct"].dtype == bool
    wrong_colour = [c._replace(colour="green") for c in combos]
    scored = tiny_judge.score(images, wrong_colour)
    assert not scored["colour_correct"].any() and not scored["prompt_correct"].any()
    assert scored["background_correct"].all() and np.array_equal(scored["object_correct"], right["object_correct"])
    assert scored["rates"]["colour"] == 0.0 and scored["rates"]["background"] == 1.0
    wrong_background = [c._replace(background="navy")._asdict() for c in combos]
    assert not tiny_judge.score(images, wrong_background)["prompt_correct"].any()
    seen = tiny_judge.classify(images)
    other = [Combo(next(s for s in SHAPES if s != o), c.colour, c.background) for o, c in zip(seen, combos)]
    assert not tiny_judge.score(images, other)["object_correct"].any()
    # one combination for the whole batch
    same = tiny_judge.score(images[:1].repeat(4, 1, 1, 1), {"object": "circle", "colour": "red", "background": "black"})
    assert same["colour_correct"].all() and len(same["object"]) == 4


def test_training_is_deterministic(fashion):
    a = train_judge(fashion=fashion, **{**TINY, "steps": 3})
    b = train_judge(fashion=fashion, **{**TINY, "steps": 3})
    c = train_judge(fashion=fashion, **{**TINY, "steps": 3, "seed": 1})
    sa, sb, sc = (j.model.state_dict() for j in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_cache_round_trip(tmp_path, fashion, monkeypatch, all_world):
    recipe = JudgeRecipe(**{**TINY, "steps": 4})
    first = load_or_train_judge(tmp_path, recipe, fashion=fashion)
    files = list(tmp_path.glob("world_judge-*.safetensors"))
    assert len(files) == 1 and files[0] == world_judge.judge_path(recipe, tmp_path, fashion)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached judge should have been loaded")

    monkeypatch.setattr(world_judge, "train_judge", no_training)
    again = load_or_train_judge(tmp_path, recipe, fashion=fashion)
    assert again.recipe == recipe and again.objects == list(SHAPES)
    assert again.key == first.key == files[0].stem.removeprefix("world_judge-") and again.key in again.description
    images = all_world.render([Combo(s, "cyan", "black") for s in SHAPES], generator=2)
    assert torch.equal(first.logits(images), again.logits(images))
    # another recipe or other garments -> another file
    assert world_judge.judge_path(JudgeRecipe(**{**TINY, "steps": 5}), tmp_path, fashion) != files[0]
    assert world_judge.judge_path(recipe, tmp_path, fake_fashion(3, thin_sandals=True)) != files[0]
    # a file that is not a judge is an InputError, not a crash
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError):
        Judge.load(bad)


def test_softening_blurs_and_adds_grain_like_a_reconstruction(all_world):
    images = all_world.render([Combo(s, "yellow", "navy") for s in SHAPES] * 4, generator=3)
    g = torch.Generator().manual_seed(0)
    soft = world_judge.soften_images(images, g)
    assert soft.dtype == torch.uint8 and soft.shape == images.shape
    assert torch.equal(world_judge.soften_images(images, torch.Generator().manual_seed(0)), soft)  # seeded
    # no blur and no noise: the renders themselves
    assert torch.equal(world_judge.soften_images(images, g, max_sigma=0.0, max_noise=0.0), images)

    def edges(x):  # energy of the differences between horizontal neighbours: blur spreads a step thinner
        return (x[..., 1:].float() - x[..., :-1].float()).pow(2).mean(dim=(1, 2, 3))

    blurred = world_judge.soften_images(images, g, max_noise=0.0)
    assert (edges(blurred) <= edges(images) + 1e-6).all() and edges(blurred).mean() < 0.9 * edges(images).mean()
    # blur moves pixels, not colours: each image's mean stays within rounding of the render's
    assert (blurred.float().mean(dim=(1, 2, 3)) - images.float().mean(dim=(1, 2, 3))).abs().max() < 1.0
    grainy = world_judge.soften_images(images, g, max_sigma=0.0)
    assert not torch.equal(grainy, images) and (grainy.float() - images.float()).abs().mean() < 8


def test_a_crisp_only_recipe_keeps_its_key_and_old_files_read_as_crisp():
    crisp = JudgeRecipe(soften=0)
    assert "soften" not in json.loads(crisp.to_json())
    assert JudgeRecipe.from_json(crisp.to_json()) == crisp
    assert JudgeRecipe.from_json(JudgeRecipe().to_json()) == JudgeRecipe() and JudgeRecipe().soften > 0
    assert world_judge.recipe_key(crisp) != world_judge.recipe_key(JudgeRecipe())


# ------------------------------------------------------------------------------------- bad input
def test_bad_images_are_input_errors(tiny_judge):
    good = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    cases = {
        "dtype": good.float(),
        "shape": torch.zeros(2, 1, 32, 32, dtype=torch.uint8),
        "[N, 3, H, W]": torch.zeros(3, 32, 32, dtype=torch.uint8),
        "empty": torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
        "tensor": [[1, 2, 3]],
    }
    for words, images in cases.items():
        for fn in (measure_colours, tiny_judge.classify, tiny_judge.features, lambda x: tiny_judge.score(x, [])):
            with pytest.raises(InputError, match=r"images: expected") as err:
                fn(images)
            assert words in str(err.value) or words == "tensor"
    with pytest.raises(InputError, match="32x32"):
        tiny_judge.classify(torch.zeros(1, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(InputError, match="at least 5x5"):
        measure_colours(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_bad_attributes_and_features_are_input_errors(tiny_judge):
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(InputError, match=r"one combination per image \(2\), found 1"):
        tiny_judge.score(images, [("circle", "red", "black")])
    with pytest.raises(InputError, match="colour: expected one of"):
        tiny_judge.score(images, [("circle", "mauve", "black")] * 2)
    with pytest.raises(InputError, match="never white on white"):
        tiny_judge.score(images, Combo("circle", "white", "white"))
    with pytest.raises(InputError, match="attributes"):
        tiny_judge.score(images, "a red circle on a black background")
    x = np.zeros((10, 4))
    with pytest.raises(InputError, match="features_b: expected 4 features"):
        frechet_distance(x, np.zeros((10, 5)))
    with pytest.raises(InputError, match="N >= 2"):
        frechet_distance(x, np.zeros((1, 4)))
    with pytest.raises(InputError, match="features_a: expected a float array"):
        frechet_distance(np.zeros(10), x)
    with pytest.raises(InputError, match="finite"):
        frechet_distance(x, np.full((10, 4), np.nan))
    with pytest.raises(InputError, match="features_a"):
        frechet_distance("features", x)


def test_bad_recipes_are_input_errors():
    for bad, words in (({"steps": 0}, "steps"), ({"widths": ()}, "widths"), ({"lr": float("nan")}, "lr"),
                       ({"objects": ("circle", "unicorn")}, "objects"), ({"label_smoothing": 1.0}, "label_smoothing"),
                       ({"batch_size": True}, "batch_size"), ({"soften": 1.5}, "soften"), ({"soften": -0.1}, "soften")):
        with pytest.raises(InputError, match=words):
            JudgeRecipe(**bad)
    with pytest.raises(InputError, match="fashion"):
        world_judge.judge_path(JudgeRecipe(), fashion="garments")


def test_new_colours_are_measured_only_when_in_the_palette(fashion, all_world):
    from multimodal.data.world import NEW_COLOURS, PALETTE

    pink = list(combinations("new_colour")) * 2
    images = CaptionedWorld("new_colour", fashion=fashion).render(pink, generator=1)
    backgrounds, colours = measure_colours(images, list(PALETTE))
    assert backgrounds == [c.background for c in pink] and colours == [c.colour for c in pink]
    assert not set(measure_colours(images)[1]) & set(NEW_COLOURS)  # the world's palette never answers pink
    # the world's renders keep their colours with the extended palette
    combos = list(combinations("all"))
    assert measure_colours(all_world.render(combos, generator=2), list(PALETTE))[1] == [c.colour for c in combos]
    for bad in ("pink", [], ["red", "mauve"]):
        with pytest.raises(InputError, match="colours"):
            measure_colours(images[:1], bad)


def test_score_extends_the_palette_for_new_colour_prompts(tiny_judge, fashion):
    combos = [Combo("star", "pink", b) for b in BACKGROUNDS]
    images = CaptionedWorld("new_colour", fashion=fashion).render(combos, generator=0)
    assert tiny_judge.score(images, combos)["rates"]["colour"] == 1.0
    # asked for red, a pink star is wrong; with the world's palette only it is read as some world colour
    red = [c._replace(colour="red") for c in combos]
    assert tiny_judge.score(images, red, colours=list(COLOURS) + ["pink"])["rates"]["colour"] == 0.0
    assert set(tiny_judge.score(images, red)["colour"]) <= set(COLOURS)
