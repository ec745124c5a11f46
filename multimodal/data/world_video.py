"""The moving world: clips of 16 frames at 32x32 of one coloured object moving across a plain background.

The captioned world (``multimodal.data.world``) set in motion, for text-to-video: the same 16 objects,
8 colours, 4 backgrounds and held-out (object, colour) pairs, each clip one object moving ``left``,
``right``, ``up`` or ``down`` at a steady speed.

**What is drawn.** The object of a clip is placed as in the image world (the same Fashion-MNIST items
and antialiased shape masks, rotation and mirroring, colour and background jitter), but smaller
(``VIDEO_SHAPE_SIZE``, ``VIDEO_FASHION_FRAME``: about half the frame) so that it has room to travel.
It slides along its direction over ``VIDEO_TRAVEL`` (80-100 %) of the room the frame leaves it, which
is 14-21 of the 32 pixels, at a random place across the other axis; orientation, colour and background
stay the same in every frame. Rendering is one batched ``grid_sample`` for all the frames of all the
clips (``CaptionedWorld``'s placement, once per frame).

**Held out.** Two kinds of pairs are never rendered for training:

- the image world's (object, colour) pairs (``world.HELD_OUT``): red sneaker, blue dress, green bag,
  yellow star, purple circle, white trouser, orange heart, cyan ankle boot, moving any way;
- the (object, direction) pairs of ``HELD_OUT_MOTION``: t-shirt up, coat left, sandal right, bag down,
  circle left, square up, triangle right, cross down, in any colour.

Split ``"train"`` draws neither; ``"held_out"`` only clips with at least one of them; ``"all"`` every
clip. ``clip_evaluation_prompts()`` is the fixed evaluation list: 56 seen prompts (one per (object,
direction) pair that is not held out), 32 with a held-out colour pair and 32 with a held-out direction
pair, each marked with what is held out.

**Captions.** ``VIDEO_CAPTION_TEMPLATES``; the first is the canonical ``a {colour} {object} moving
{direction} on a {background} background`` (``canonical_clip_caption``, written literally like the
image world's), drawn with probability ``canonical_prob``. ``parse_clip_caption`` reads any template
back into a ``Motion``.

**Drawing.** ``MovingWorld(split).sample(n, generator)`` -> ``ClipBatch``: uint8 clips ``[n, 3, 16,
32, 32]`` (channels, frames, height, width: what ``VQVAE(dims=3)`` reads after scaling to [-1, 1]),
captions and attributes; ``render(attributes)`` and ``render_prompt(prompt, n)`` draw given ones. The
same seed gives the same clips. ``python -m multimodal.data.world_video --out clips.gif`` writes a
sheet of samples as an animated GIF.
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import Mapping, NamedTuple, Sequence

import torch

from ..errors import InputError
from ..media.video import write_video
from .world import CaptionedWorld, _count, _generator, grid_image, shape_masks
from .world_captions import (BACKGROUND_JITTER, BACKGROUNDS, COLOUR_JITTER, COLOURS, FASHION_OBJECTS, HELD_OUT,
                             OBJECTS, check_combo, clean_caption, is_held_out,
                             template_patterns)

FRAMES = 16
DIRECTIONS = ("left", "right", "up", "down")
HELD_OUT_MOTION = frozenset({("t-shirt", "up"), ("coat", "left"), ("sandal", "right"), ("bag", "down"),
                             ("circle", "left"), ("square", "up"), ("triangle", "right"), ("cross", "down")})
CLIP_SPLITS = ("train", "held_out", "all")
VIDEO_SHAPE_SIZE = (0.35, 0.55)     # a shape's extent, as a share of the frame width
VIDEO_FASHION_FRAME = (0.5, 0.65)   # the 28x28 garment frame's share of the frame width
VIDEO_TRAVEL = (0.8, 1.0)           # the share of the free room the object crosses
SHAPE_EXTENT = 0.75                 # a shape's half-size in its mask's coordinates (as the image world's)

CANONICAL_CLIP_TEMPLATE = "a {colour} {object} moving {direction} on a {background} background"
VIDEO_CAPTION_TEMPLATES = [
    CANONICAL_CLIP_TEMPLATE,
    "{colour} {object} moving {direction}, {background} background",
    "a {colour} {object} moves {direction} across a {background} background",
    "a video of a {colour} {object} moving {direction} on {background}",
    "on a {background} background, a {colour} {object} moving {direction}",
    "a {colour} {object} going {direction} against a {background} background",
    "the {colour} {object} slides {direction} over a {background} background",
    "{background} background, a {colour} {object} drifting {direction}",
]


class Motion(NamedTuple):
    """One clip's attributes; ``motion._asdict()`` is the attributes dict clips carry."""
    object: str
    colour: str
    background: str
    direction: str


class ClipBatch(NamedTuple):
    clips: torch.Tensor           # uint8 [N, 3, T, H, W]
    captions: list[str]
    attributes: list[dict]        # {"object", "colour", "background", "direction"} per clip


def is_held_out_motion(object: str, direction: str) -> bool:
    """Whether this (object, direction) pair is kept out of training in every colour."""
    return (object, direction) in HELD_OUT_MOTION


def held_out_kinds(motion: Motion) -> list[str]:
    """What of ``motion`` is held out of training: ``"colour"`` (its object/colour pair), ``"direction"``
    (its object/direction pair), both or neither."""
    return ([k for k, held in (("colour", is_held_out(motion.object, motion.colour)),
                              ("direction", is_held_out_motion(motion.object, motion.direction))) if held])


def _check_clip_split(split) -> str:
    if split not in CLIP_SPLITS:
        raise InputError(f"split: expected one of {', '.join(CLIP_SPLITS)}, found {split!r}")
    return split


def check_motion(attributes, split: str = "all") -> Motion:
    """``attributes`` (a Motion, a 4-tuple or a dict) -> Motion, or an InputError naming what is wrong:
    an unknown object, colour, background or direction, white on white, or a clip outside ``split``."""
    _check_clip_split(split)
    if isinstance(attributes, Mapping):
        missing = [k for k in Motion._fields if k not in attributes]
        if missing:
            raise InputError(f"attributes: expected the keys object, colour, background and direction, found "
                             f"{sorted(attributes)} (missing {', '.join(missing)})")
        motion = Motion(*(attributes[k] for k in Motion._fields))
    elif isinstance(attributes, (tuple, list)) and len(attributes) == 4:
        motion = Motion(*attributes)
    else:
        raise InputError(f"attributes: expected a Motion, an (object, colour, background, direction) tuple or a "
                         f"dict with those keys, found {attributes!r}")
    check_combo(motion[:3], "all")  # object, colour and background as the image world knows them
    if motion.direction not in DIRECTIONS:
        raise InputError(f"direction: expected one of {', '.join(DIRECTIONS)}, found {motion.direction!r}")
    held = bool(held_out_kinds(motion))
    if split == "train" and held:
        raise InputError(f"{motion.colour} {motion.object} moving {motion.direction}: expected a training clip, "
                         f"found one held out of training ({' and '.join(held_out_kinds(motion))}); use "
                         f"split='held_out' or 'all' to draw it")
    if split == "held_out" and not held:
        raise InputError(f"{motion.colour} {motion.object} moving {motion.direction}: expected a held-out clip, "
                         f"found a training one")
    return motion


@functools.cache
def clip_combinations(split: str = "train") -> tuple[Motion, ...]:
    """Every valid clip of ``split``, in a fixed order (object, colour, background, direction)."""
    _check_clip_split(split)
    out = []
    for o in OBJECTS:
        for c in COLOURS:
            for b in BACKGROUNDS:
                for d in DIRECTIONS:
                    motion = Motion(o, c, b, d)
                    held = bool(held_out_kinds(motion))
                    if (c, b) != ("white", "white") and (split == "all" or held == (split == "held_out")):
                        out.append(motion)
    return tuple(out)


# -------------------------------------------------------------------------------- captions
def _format_clip(template: str, motion: Motion) -> str:
    text = template.format(**motion._asdict())
    return text if template == CANONICAL_CLIP_TEMPLATE else re.sub(r"\ba (?=[aeiou])", "an ", text)


def canonical_clip_caption(attributes) -> str:
    """``a {colour} {object} moving {direction} on a {background} background`` of a Motion, tuple or dict."""
    return _format_clip(CANONICAL_CLIP_TEMPLATE, check_motion(attributes))


def clip_captions(attributes) -> list[str]:
    """Every template's caption of ``attributes``; the first is the canonical one."""
    motion = check_motion(attributes)
    return [_format_clip(t, motion) for t in VIDEO_CAPTION_TEMPLATES]


@functools.cache
def _clip_patterns():
    return template_patterns(VIDEO_CAPTION_TEMPLATES, {"object": OBJECTS, "colour": list(COLOURS),
                                                       "background": list(BACKGROUNDS), "direction": DIRECTIONS})


def parse_clip_caption(text: str) -> Motion:
    """A clip caption of any template (any case, spaces and a final full stop ignored) -> its Motion;
    InputError when it is not one."""
    clean = clean_caption(text)
    for pattern in _clip_patterns():
        match = pattern.fullmatch(clean)
        if match:
            return check_motion(match.groupdict())
    example = canonical_clip_caption(("circle", "red", "black", "left"))
    raise InputError(f"caption: expected a caption of the moving world such as {example!r}, found {text!r}")


def clip_caption_corpus(split: str = "train") -> list[str]:
    """Every template's caption of every clip of ``split``: text for training a BPE tokenizer."""
    return [_format_clip(t, m) for m in clip_combinations(split) for t in VIDEO_CAPTION_TEMPLATES]


def random_clip_captions(motions: Sequence[Motion], generator, canonical_prob: float = 0.25) -> list[str]:
    n = len(motions)
    template = torch.randint(1, len(VIDEO_CAPTION_TEMPLATES), (n,), generator=generator)
    template[torch.rand(n, generator=generator) < canonical_prob] = 0
    return [_format_clip(VIDEO_CAPTION_TEMPLATES[t], m) for t, m in zip(template.tolist(), motions)]


def clip_evaluation_prompts() -> list[dict]:
    """The fixed evaluation list, each ``{"caption", "object", "colour", "background", "direction",
    "held_out": [kinds]}`` with the canonical caption:

    - 56 seen: one per (object, direction) pair not held out, colour ``(object + 3 x direction) % 8``
      moved on past held-out pairs, background cycling (never white on white);
    - 32 with a held-out colour pair: each of the 8 pairs in 4 directions that are not held out for
      the object (repeating the first where one is), backgrounds cycling;
    - 32 with a held-out direction pair: each of the 8 pairs in 4 colours (seen with the object),
      backgrounds cycling."""
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    out: list[Motion] = []

    def background_for(i: int, colour: str) -> str:
        b = backgrounds[i % 4]
        return backgrounds[(i + 1) % 4] if (colour, b) == ("white", "white") else b

    for o, obj in enumerate(OBJECTS):
        for d, direction in enumerate(DIRECTIONS):
            if is_held_out_motion(obj, direction):
                continue
            c = (o + 3 * d) % len(colours)
            while is_held_out(obj, colours[c]):
                c = (c + 1) % len(colours)
            out.append(Motion(obj, colours[c], background_for(o + d, colours[c]), direction))
    for i, (obj, colour) in enumerate(sorted(HELD_OUT)):
        free = [d for d in DIRECTIONS if not is_held_out_motion(obj, d)]
        for j in range(4):
            out.append(Motion(obj, colour, background_for(i + j, colour), free[j % len(free)]))
    for i, (obj, direction) in enumerate(sorted(HELD_OUT_MOTION)):
        seen = [c for c in colours if not is_held_out(obj, c)]
        for j in range(4):
            colour = seen[(i + 2 * j) % len(seen)]
            out.append(Motion(obj, colour, background_for(i + j + 1, colour), direction))
    return [{"caption": canonical_clip_caption(m), **m._asdict(), "held_out": held_out_kinds(m)} for m in out]


# ------------------------------------------------------------------------------- the world
class MovingWorld:
    """Draws clips of one ``split`` ("train", "held_out" or "all"); ``fashion`` as ``CaptionedWorld``'s.
    ``frames``: frames per clip (16); ``image_size``: the frame side (32)."""

    def __init__(self, split: str = "train", fashion=None, frames: int = FRAMES, image_size: int = 32,
                 canonical_prob: float = 0.25):
        self.split = _check_clip_split(split)
        if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= 64:
            raise InputError(f"frames: expected an int in [2, 64], found {frames!r}")
        self.images = CaptionedWorld("all", fashion=fashion, image_size=image_size, canonical_prob=canonical_prob)
        self.frames, self.image_size, self.canonical_prob = frames, image_size, self.images.canonical_prob
        self.combos = clip_combinations(split)

    def sample(self, n: int, generator=None) -> ClipBatch:
        """``n`` random clips of the split, uniform over ``self.combos``."""
        g = _generator(generator)
        pick = torch.randint(len(self.combos), (_count(n),), generator=g)
        motions = [self.combos[i] for i in pick.tolist()]
        texts = random_clip_captions(motions, g, self.canonical_prob)
        clips, _ = self._render(motions, g)
        return ClipBatch(clips, texts, [m._asdict() for m in motions])

    def render(self, attributes: Sequence, generator=None, return_alpha: bool = False):
        """Render the given clips (Motions, 4-tuples or dicts), each checked against the split -> uint8
        ``[N, 3, T, H, W]``; with ``return_alpha`` also the object's alpha ``[N, 1, T, H, W]``."""
        if isinstance(attributes, (str, Mapping, Motion)) or not isinstance(attributes, Sequence):
            raise InputError(f"attributes: expected a list of clips, found {type(attributes).__name__}")
        motions = [check_motion(a, self.split) for a in attributes]
        clips, alpha = self._render(motions, _generator(generator))
        return (clips, alpha) if return_alpha else clips

    def render_prompt(self, prompt, n: int, generator=None) -> torch.Tensor:
        """``n`` real clips of one prompt (a caption of any template, or attributes) -> uint8 [n, 3, T, H, W]."""
        motion = parse_clip_caption(prompt) if isinstance(prompt, str) else check_motion(prompt, self.split)
        return self.render([motion] * _count(n), generator)

    def _render(self, motions: Sequence[Motion], g) -> tuple[torch.Tensor, torch.Tensor]:
        n, t, size, w = len(motions), self.frames, self.image_size, self.images
        if n == 0:
            return torch.zeros(0, 3, t, size, size, dtype=torch.uint8), torch.zeros(0, 1, t, size, size)
        u = torch.rand(n, 6, generator=g)  # pick, size, rotation, across, travel, flip
        colour_noise = torch.rand(n, 3, generator=g) * 2 - 1
        background_noise = torch.rand(n, 3, generator=g) * 2 - 1
        obj = torch.tensor([OBJECTS.index(m.object) for m in motions])
        direction = torch.tensor([DIRECTIONS.index(m.direction) for m in motions])
        # shift in [0, 1] of the room per axis and frame: along the motion from one side to the other
        progress = torch.linspace(0, 1, t)[None, :] - 0.5                              # [1, T]
        travel = VIDEO_TRAVEL[0] + (VIDEO_TRAVEL[1] - VIDEO_TRAVEL[0]) * u[:, 4:5]     # [N, 1]
        sign = torch.where((direction == 0) | (direction == 2), -1.0, 1.0)[:, None]    # left and up go to lower x / y
        along = 0.5 + sign * travel * progress                                        # [N, T]
        across = u[:, 3:4].expand(n, t)
        horizontal = (direction < 2)[:, None]
        shift = torch.stack([torch.where(horizontal, along, across), torch.where(horizontal, across, along)], -1)
        alpha = torch.zeros(n, t, 1, size, size)
        garment = obj < len(FASHION_OBJECTS)
        frames = lambda x: x.repeat_interleave(t, 0)  # noqa: E731  per clip -> per frame
        if garment.any():
            rows = garment.nonzero()[:, 0]
            fashion, label = w.fashion, obj[rows]
            pick = fashion.start[label] + (u[rows, 0] * fashion.count[label]).long().clamp(max=fashion.count[label] - 1)
            source = (fashion.images[pick].float()[:, None] / 255 * fashion.gain[pick, None, None, None]).clamp(0, 1)
            scale = VIDEO_FASHION_FRAME[0] + (VIDEO_FASHION_FRAME[1] - VIDEO_FASHION_FRAME[0]) * u[rows, 1]
            placed = w._place(frames(source), frames(scale), frames(scale), frames(6.0 * (2 * u[rows, 2] - 1)),
                              shift[rows].flatten(0, 1), frames(u[rows, 5] < 0.5))
            alpha[rows] = placed.view(len(rows), t, 1, size, size)
        if (~garment).any():
            rows = (~garment).nonzero()[:, 0]
            source = shape_masks()[obj[rows] - len(FASHION_OBJECTS)]
            extent = VIDEO_SHAPE_SIZE[0] + (VIDEO_SHAPE_SIZE[1] - VIDEO_SHAPE_SIZE[0]) * u[rows, 1]
            placed = w._place(frames(source), frames(extent / SHAPE_EXTENT), frames(extent),
                              frames(20.0 * (2 * u[rows, 2] - 1)), shift[rows].flatten(0, 1),
                              torch.zeros(len(rows) * t, dtype=torch.bool))
            alpha[rows] = placed.view(len(rows), t, 1, size, size)
        colour = torch.tensor([list(COLOURS).index(m.colour) for m in motions])
        background = torch.tensor([list(BACKGROUNDS).index(m.background) for m in motions])
        fg = (w._colour_rgb[colour] + COLOUR_JITTER * colour_noise).clamp(0, 255)[:, None, :, None, None]
        bg = (w._background_rgb[background] + BACKGROUND_JITTER * background_noise).clamp(0, 255)[:, None, :, None, None]
        clips = (bg + alpha * (fg - bg)).round_().to(torch.uint8)   # [N, T, 3, H, W]
        return clips.transpose(1, 2).contiguous(), alpha.transpose(1, 2).contiguous()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m multimodal.data.world_video",
                                     description="Write an animated GIF sheet of the moving world's clips.")
    parser.add_argument("--out", required=True, help="GIF file to write")
    parser.add_argument("--split", default="train", choices=CLIP_SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", "--count", type=int, default=16)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--scale", type=int, default=3, help="pixel magnification")
    args = parser.parse_args(argv)
    batch = MovingWorld(args.split).sample(args.count, args.seed)
    sheets = [grid_image(batch.clips[:, :, f], batch.captions, args.columns, args.scale)
              for f in range(batch.clips.shape[2])]
    write_video(sheets, args.out, fps=8)
    print(f"wrote {args.count} clips to {args.out}")


if __name__ == "__main__":
    main()
