"""The moving world: motion the stated way, held-out pairs kept out of training, determinism, captions,
the evaluation list and bad input. Garments come from a few generated 28x28 items, never the package."""

from __future__ import annotations

import pytest
import torch

from helpers import fake_fashion
from multimodal.data import world_video
from multimodal.data.world import BACKGROUNDS, COLOURS, HELD_OUT, OBJECTS
from multimodal.data.world_video import (DIRECTIONS, FRAMES, HELD_OUT_MOTION, VIDEO_CAPTION_TEMPLATES, Motion,
                                         MovingWorld, canonical_clip_caption, check_motion, clip_captions,
                                         clip_combinations, clip_evaluation_prompts, held_out_kinds,
                                         parse_clip_caption)
from multimodal.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fashion():
    return fake_fashion()


@pytest.fixture(scope="module")
def all_world(fashion):
    return MovingWorld("all", fashion=fashion)


def centroids(alpha: torch.Tensor) -> torch.Tensor:
    """alpha [N, 1, T, H, W] -> (x, y) of the object per frame [N, T, 2]."""
    a = alpha[:, 0]
    ys = torch.arange(a.shape[-2], dtype=torch.float32)
    xs = torch.arange(a.shape[-1], dtype=torch.float32)
    total = a.sum((-2, -1))
    return torch.stack([(a.sum(-2) * xs).sum(-1) / total, (a.sum(-1) * ys).sum(-1) / total], -1)


def test_the_object_moves_the_stated_way_across_a_good_part_of_the_frame(all_world):
    motions = [Motion(o, c, b, d) for o in ("circle", "dress", "star", "sneaker") for d in DIRECTIONS
               for c, b in (("orange", "navy"),)]
    clips, alpha = all_world.render(motions, 0, return_alpha=True)
    assert clips.shape == (len(motions), 3, FRAMES, 32, 32) and clips.dtype == torch.uint8
    track = centroids(alpha)
    step = track[:, 1:] - track[:, :-1]                                     # [N, T - 1, 2]
    for i, m in enumerate(motions):
        axis = 0 if m.direction in ("left", "right") else 1
        sign = -1 if m.direction in ("left", "up") else 1
        assert (sign * step[i, :, axis] > 0).all(), m                           # steadily the stated way
        assert (sign * (track[i, -1, axis] - track[i, 0, axis])) > 9, m         # over a good part of 32 px
        assert (track[i, :, 1 - axis].max() - track[i, :, 1 - axis].min()) < 0.5, m  # and only that way
    # orientation, colour and background stay: the object's area is the same in every frame
    area = alpha.sum((1, 3, 4))
    assert torch.allclose(area, area[:, :1].expand_as(area), rtol=0.05)


def test_training_split_never_draws_held_out_pairs(fashion):
    batch = MovingWorld("train", fashion=fashion).sample(512, 1)
    for a in batch.attributes:
        assert (a["object"], a["colour"]) not in HELD_OUT and (a["object"], a["direction"]) not in HELD_OUT_MOTION
    train, held, every = (set(clip_combinations(s)) for s in ("train", "held_out", "all"))
    assert train.isdisjoint(held) and train | held == every
    assert all(held_out_kinds(m) for m in held) and not any(held_out_kinds(m) for m in train)
    assert {(m.object, m.direction) for m in held} >= HELD_OUT_MOTION
    with pytest.raises(InputError, match="held out"):
        MovingWorld("train", fashion=fashion).render([("t-shirt", "red", "black", "up")])
    with pytest.raises(InputError, match="held out"):
        MovingWorld("train", fashion=fashion).render([("sneaker", "red", "black", "left")])


def test_same_seed_same_clips(fashion):
    a, b = MovingWorld("train", fashion=fashion).sample(16, 5), MovingWorld("train", fashion=fashion).sample(16, 5)
    assert torch.equal(a.clips, b.clips) and a.captions == b.captions and a.attributes == b.attributes
    c = MovingWorld("train", fashion=fashion).sample(16, 6)
    assert not torch.equal(a.clips, c.clips)


def test_captions_parse_back_and_the_canonical_one_is_literal():
    motion = Motion("heart", "orange", "navy", "up")
    texts = clip_captions(motion)
    assert texts[0] == "a orange heart moving up on a navy background" == canonical_clip_caption(motion)
    assert len(texts) == len(VIDEO_CAPTION_TEMPLATES) and len(set(texts)) == len(texts)
    for text in texts:
        assert parse_clip_caption(text.upper() + ".") == motion
    assert "an orange heart" in texts[2]
    with pytest.raises(InputError, match="caption"):
        parse_clip_caption("a red circle on a black background")  # an image caption: no motion
    with pytest.raises(InputError, match="caption"):
        parse_clip_caption("a red circle moving sideways on a black background")


def test_sampled_captions_describe_their_clips(fashion):
    batch = MovingWorld("all", fashion=fashion).sample(64, 2)
    for text, a in zip(batch.captions, batch.attributes):
        assert parse_clip_caption(text)._asdict() == a
    assert sum(t == canonical_clip_caption(a) for t, a in zip(batch.captions, batch.attributes)) >= 4


def test_evaluation_prompts():
    prompts = clip_evaluation_prompts()
    kinds = [tuple(p["held_out"]) for p in prompts]
    assert kinds.count(()) == 56 and kinds.count(("colour",)) == 32 and kinds.count(("direction",)) == 32
    assert len({p["caption"] for p in prompts}) == len(prompts)
    for p in prompts:
        motion = parse_clip_caption(p["caption"])
        assert motion == check_motion(p) and list(p["held_out"]) == held_out_kinds(motion)
    seen = [p for p in prompts if not p["held_out"]]
    assert {(p["object"], p["direction"]) for p in seen} == {(o, d) for o in OBJECTS for d in DIRECTIONS} - HELD_OUT_MOTION
    assert {(p["object"], p["colour"]) for p in prompts if p["held_out"] == ["colour"]} == set(HELD_OUT)
    assert {(p["object"], p["direction"]) for p in prompts if p["held_out"] == ["direction"]} == set(HELD_OUT_MOTION)
    assert clip_evaluation_prompts() == prompts


@pytest.mark.parametrize("attributes, match", [
    (("circle", "red", "black", "sideways"), "direction"),
    (("hat", "red", "black", "left"), "object"),
    (("circle", "pink", "black", "left"), "colour"),
    (("circle", "white", "white", "left"), "white"),
    (("circle", "red", "black"), "attributes"),
    ({"object": "circle", "colour": "red"}, "missing"),
])
def test_bad_attributes(attributes, match):
    with pytest.raises(InputError, match=match):
        check_motion(attributes)


def test_bad_input(fashion, all_world):
    with pytest.raises(InputError, match="split"):
        MovingWorld("new_colour", fashion=fashion)
    with pytest.raises(InputError, match="frames"):
        MovingWorld("all", fashion=fashion, frames=1)
    with pytest.raises(InputError, match="attributes"):
        all_world.render(Motion("circle", "red", "black", "left"))
    with pytest.raises(InputError, match="n"):
        all_world.sample(-1)
    assert all_world.render_prompt("red circle moving left, black background", 2).shape == (2, 3, FRAMES, 32, 32)
    assert all_world.sample(0).clips.shape == (0, 3, FRAMES, 32, 32)


def test_clip_sheet_command(tmp_path, monkeypatch, fashion):
    from PIL import Image
    monkeypatch.setattr(world_video, "MovingWorld", lambda split: MovingWorld(split, fashion=fashion))
    out = tmp_path / "clips.gif"
    world_video.main(["--out", str(out), "-n", "4", "--columns", "2"])
    with Image.open(out) as gif:
        assert gif.n_frames == FRAMES


def test_every_colour_and_background_appear(fashion):
    attrs = MovingWorld("all", fashion=fashion).sample(1024, 3).attributes
    assert {a["colour"] for a in attrs} == set(COLOURS) and {a["background"] for a in attrs} == set(BACKGROUNDS)
    assert {a["direction"] for a in attrs} == set(DIRECTIONS)
