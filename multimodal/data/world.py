"""The captioned world: 32x32 images of one coloured object on a plain background, with captions.

No captioned image set exists offline, so text-to-image models train on this one. It is small
enough to learn on a CPU and real enough to test composition: a model that has seen red
circles and blue sneakers, but never a red sneaker, must put the two words together itself.

**What is drawn.** One object in one colour on one background colour:

- 16 objects: the ten Fashion-MNIST classes (``FASHION_OBJECTS``, in label order: t-shirt,
  trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot) and six procedural
  ``SHAPES`` (circle, square, triangle, star, heart, cross).
- 8 object ``COLOURS`` (red, orange, yellow, green, cyan, blue, purple, white) and 4
  ``BACKGROUNDS`` (black, white, gray, navy), each a fixed RGB value plus a little per-image
  jitter (``COLOUR_JITTER``, ``BACKGROUND_JITTER``). Never white on white.
- ``NEW_COLOURS`` (pink) lie outside the world: only split ``"new_colour"`` draws them (every object
  in them, on every background). A model trained on the world has never seen them or read their
  names; they are what a LoRA adapter learns to draw, and how the judge checks that it did.

A Fashion-MNIST item is a real image of the **training split** (``load_fashion_mnist("train")``,
Debian ``dataset-fashion-mnist``; or the ``fashion=(images, labels)`` given to ``CaptionedWorld``,
which is how the tests run without the package). Its grey intensity is the object's alpha,
stretched so that the brightest fifth of the garment is opaque (dark garments would otherwise
vanish into the background); its 28x28 frame is scaled to 80-100 % of the image, shifted within
it, rotated by up to 6 degrees and mirrored half the time. A shape is a mask drawn once with
Pillow at 4x and box-filtered down to 128x128 (antialiased), then placed with jitter in size (50-85
% of the image), position (anywhere it fits) and rotation (up to 20 degrees). Both are placed with
one batched ``grid_sample`` at twice the output size followed by 2x2 average pooling, so edges stay
antialiased, and composited as ``background + alpha * (colour - background)``: rendering is a few
tensor operations per batch, not a Python loop per image.

**Held out.** The (object, colour) pairs in ``HELD_OUT`` (red sneaker, blue dress, green bag,
yellow star, purple circle, white trouser, orange heart, cyan ankle boot) are never rendered for
training, on any background: 31 combinations (white trouser on white does not exist). Every
drawing entry point takes a ``split``: ``"train"`` (the default; asking it for a held-out
combination is an InputError), ``"held_out"`` (only those), ``"all"`` or ``"new_colour"``. A judge of generated
images, or the real renders that a Fréchet distance compares against, use ``"all"``.

**Captions.** ``CAPTION_TEMPLATES`` phrase an item in a dozen ways ("red circle, black
background", "a picture of a red circle against black", ...). The first is the canonical form
``a {colour} {object} on a {background} background`` (``canonical_caption``), written literally
even before a vowel ("a orange heart"), so that a prompt anyone formats from that pattern is one the
model has read; the other templates use "an" where English does. Items get the canonical caption
with probability ``canonical_prob`` (0.25) and another template otherwise. ``parse_caption`` reads
any template back into its attributes. ``caption_corpus`` is every template of every combination,
for training the BPE tokenizer.

**Drawing.** ``CaptionedWorld(split).sample(n, generator)`` renders a batch: uint8 images
``[n, 3, 32, 32]``, captions and attributes; ``render(attributes)`` and ``render_prompt(prompt, n)``
draw given combinations (the judge's real renders); ``stream(seed)`` and ``WorldDataset`` (a torch
``IterableDataset``) yield ``(image, caption, attributes)`` forever. The same seed gives the same
items. ``evaluation_prompts()`` is the fixed evaluation list: every held-out combination and a
balanced sample of 64 seen ones, each with canonical caption and attributes.

The vocabulary, combinations and captions are in ``multimodal.data.world_captions`` (and importable
from here). ``python -m multimodal.data.world --out grid.png`` writes a grid of samples with their captions.
"""

from __future__ import annotations

import argparse
import functools
import math
import textwrap
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import InputError
# The vocabulary and captions; world.X names them too, as the world's public face.
from .world_captions import (BACKGROUND_JITTER, BACKGROUNDS, CANONICAL_TEMPLATE, CAPTION_TEMPLATES,  # noqa: F401
                             COLOUR_JITTER, COLOURS, FASHION_OBJECTS, HELD_OUT, NEW_COLOURS, OBJECTS, PALETTE,
                             SHAPES, SPLITS, Combo, _check_split, _format, canonical_caption, caption_corpus,
                             captions, check_any, check_combo, combinations, evaluation_prompts, is_held_out,
                             parse_caption, split_of)

FASHION_FRAME = (0.8, 1.0)    # the 28x28 frame's share of the image width
FASHION_MAX_ROTATION = 6.0    # degrees
SHAPE_SIZE = (0.5, 0.85)      # the shape's extent as a share of the image width
SHAPE_MAX_ROTATION = 20.0
_PALETTE_NAMES = list(PALETTE)  # the world's colours first: their indices do not depend on NEW_COLOURS
SHAPE_EXTENT = 0.75           # a shape's half-size in its mask's [-1, 1] coordinates
SHAPE_MASK_SIZE = 128
ALPHA_QUANTILE = 0.8          # this quantile of a garment's pixels becomes fully opaque


class WorldBatch(NamedTuple):
    images: torch.Tensor          # uint8 [N, 3, H, W]
    captions: list[str]
    attributes: list[dict]        # {"object", "colour", "background"} per item


# --------------------------------------------------------------------------------- sources
def _shape_polygon(name: str) -> list[tuple[float, float]]:
    """Outline in [-1, 1] coordinates (y down), centred, of half-size about SHAPE_EXTENT."""
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        return list(zip(0.7 * np.cos(t), 0.7 * np.sin(t)))
    if name == "square":
        return [(-0.6, -0.6), (0.6, -0.6), (0.6, 0.6), (-0.6, 0.6)]
    if name == "triangle":  # equilateral, apex up, shifted so its bounding box is centred
        return [(0.8 * math.cos(a), 0.8 * math.sin(a) + 0.2) for a in np.radians([-90, 30, 150])]
    if name == "star":
        points = []
        for k in range(10):
            r, a = (0.8 if k % 2 == 0 else 0.33), math.radians(-90 + 36 * k)
            points.append((r * math.cos(a), r * math.sin(a) + 0.08))
        return points
    if name == "heart":  # the classic parametric heart, flipped to y down
        t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return list(zip(x * 0.75 / 16, (-y - 2.5) * 0.75 / 16))
    if name == "cross":
        a, w = 0.72, 0.22
        return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w),
                (-w, -w)]
    raise InputError(f"shape: expected one of {', '.join(SHAPES)}, found {name!r}")


@functools.cache
def shape_masks() -> torch.Tensor:
    """float [6, 1, 128, 128] alpha masks of ``SHAPES`` in [0, 1]: drawn at 4x with Pillow, box-filtered."""
    big = SHAPE_MASK_SIZE * 4
    masks = []
    for name in SHAPES:
        canvas = Image.new("L", (big, big), 0)
        ImageDraw.Draw(canvas).polygon([((x + 1) / 2 * big, (y + 1) / 2 * big) for x, y in _shape_polygon(name)],
                                       fill=255)
        small = canvas.resize((SHAPE_MASK_SIZE, SHAPE_MASK_SIZE), Image.Resampling.BOX)
        masks.append(torch.from_numpy(np.asarray(small, dtype=np.float32) / 255))
    return torch.stack(masks)[:, None]


class _Fashion(NamedTuple):
    images: torch.Tensor  # uint8 [N, 28, 28], sorted by label
    gain: torch.Tensor    # float [N]: intensity / 255 * gain, clamped to 1, is the alpha
    start: torch.Tensor   # long [10]: first index of each label
    count: torch.Tensor   # long [10]


def _prepare_fashion(fashion) -> _Fashion:
    if not (isinstance(fashion, (tuple, list)) and len(fashion) == 2):
        raise InputError(f"fashion: expected (images, labels), found {type(fashion).__name__}")
    images, labels = (torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a for a in fashion)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if (images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or images.dtype != torch.uint8
            or labels.shape != (images.shape[0],)):
        raise InputError(f"fashion: expected uint8 images [N, 28, 28] (or [N, 1, 28, 28]) and N labels, found "
                         f"{images.dtype} {tuple(images.shape)} and labels {tuple(labels.shape)}")
    labels = labels.long()
    counts = torch.bincount(labels.clamp(0, 10), minlength=11)
    if labels.numel() == 0 or labels.min() < 0 or labels.max() > 9 or (counts[:10] == 0).any():
        raise InputError(f"fashion: expected labels 0-9 with at least one image of each, found per-label counts "
                         f"{counts[:10].tolist()}{' and labels outside 0-9' if counts[10] or labels.min() < 0 else ''}")
    order = torch.argsort(labels, stable=True)
    images = images[order].contiguous()
    # Stretch each garment so that its brightest fifth is opaque: dark garments would otherwise show
    # mostly background, and their colour could not be seen or measured.
    gain = torch.cat([_alpha_gain(part) for part in images.split(8192)])
    count = counts[:10]
    return _Fashion(images, gain, torch.cumsum(count, 0) - count, count)


def _alpha_gain(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N]: 255 / the ALPHA_QUANTILE quantile of each image's foreground
    (values above 12), read from per-image histograms (a sort of every image costs ten times more)."""
    n, flat = images.shape[0], images.flatten(1).long()
    hist = torch.bincount((torch.arange(n)[:, None] * 256 + flat).flatten(), minlength=n * 256).view(n, 256)
    rank = ((1 - ALPHA_QUANTILE) * hist[:, 13:].sum(1)).long()          # that pixel's place from the top
    at_least = hist.flip(1).cumsum(1)                                   # [:, j]: pixels >= 255 - j
    value = 255 - (at_least <= rank[:, None]).sum(1)
    return 255 / value.float().clamp(min=0.2 * 255)


@functools.cache
def _default_fashion() -> _Fashion:
    from .images import load_fashion_mnist
    return _prepare_fashion(load_fashion_mnist("train"))


def _generator(generator) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise InputError(f"generator: expected a torch.Generator, an int seed or None, found {generator!r}")


def _count(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"{name}: expected a count >= 0, found {n!r}")
    return n


# ------------------------------------------------------------------------------- the world
class CaptionedWorld:
    """Draws the world's items for one ``split`` ("train", "held_out" or "all").

    ``fashion``: (images uint8 [N, 28, 28] or [N, 1, 28, 28], labels [N] in 0-9, every label present)
    to draw garments from; by default Fashion-MNIST's training split, loaded (about 6 s, once per
    process) when a garment is first drawn. ``image_size``: the side of the square images (32).
    ``canonical_prob``: the probability that an item's caption is the canonical one.
    """

    def __init__(self, split: str = "train", fashion=None, image_size: int = 32, canonical_prob: float = 0.25):
        self.split = _check_split(split)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 256:
            raise InputError(f"image_size: expected an int in [8, 256], found {image_size!r}")
        if isinstance(canonical_prob, bool) or not isinstance(canonical_prob, (int, float)) \
                or not 0 <= canonical_prob <= 1:
            raise InputError(f"canonical_prob: expected a probability in [0, 1], found {canonical_prob!r}")
        self.image_size, self.canonical_prob = image_size, float(canonical_prob)
        self._fashion = _prepare_fashion(fashion) if fashion is not None else None
        self.combos = combinations(split)
        self._combo_index = torch.tensor([(OBJECTS.index(c.object), _PALETTE_NAMES.index(c.colour),
                                           list(BACKGROUNDS).index(c.background)) for c in self.combos])
        self._colour_rgb = torch.tensor(list(PALETTE.values()), dtype=torch.float32)
        self._background_rgb = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)

    @property
    def fashion(self) -> _Fashion:
        if self._fashion is None:
            self._fashion = _default_fashion()
        return self._fashion

    # -------------------------------------------------------------------------- public drawing
    def sample(self, n: int, generator=None) -> WorldBatch:
        """``n`` random items of the split, combinations uniform over ``self.combos``."""
        g = _generator(generator)
        n = _count(n)
        pick = torch.randint(len(self.combos), (n,), generator=g)
        combos = [self.combos[i] for i in pick.tolist()]
        texts = random_captions(combos, g, self.canonical_prob)
        images, _ = self._render(self._combo_index[pick], g)
        return WorldBatch(images, texts, [c._asdict() for c in combos])

    def render(self, attributes: Sequence, generator=None, return_alpha: bool = False):
        """Render the given combinations (Combos, 3-tuples or attribute dicts), each checked against the
        split -> uint8 ``[N, 3, H, W]``; with ``return_alpha`` also the object's alpha ``[N, 1, H, W]``
        (float in [0, 1]), the ground truth of which pixels are foreground."""
        if isinstance(attributes, (str, Mapping, Combo)) or not isinstance(attributes, Sequence):
            raise InputError(f"attributes: expected a list of combinations, found {type(attributes).__name__}")
        combos = [check_combo(a, self.split) for a in attributes]
        index = torch.tensor([(OBJECTS.index(c.object), _PALETTE_NAMES.index(c.colour),
                               list(BACKGROUNDS).index(c.background)) for c in combos], dtype=torch.long)
        images, alpha = self._render(index.reshape(-1, 3), _generator(generator))
        return (images, alpha) if return_alpha else images

    def render_prompt(self, prompt, n: int, generator=None) -> torch.Tensor:
        """``n`` real renders of one prompt: a caption of any template, or attributes -> uint8 [n, 3, H, W]."""
        combo = parse_caption(prompt) if isinstance(prompt, str) else check_combo(prompt, self.split)
        return self.render([combo] * _count(n), generator)

    def stream(self, seed: int = 0, chunk: int = 256) -> Iterator[tuple[torch.Tensor, str, dict]]:
        """``(image uint8 [3, H, W], caption, attributes)`` forever, rendered ``chunk`` at a time; the same
        (seed, chunk) gives the same items."""
        g = _generator(seed)
        if g is None:
            raise InputError("seed: expected an int seed or a torch.Generator, found None")
        if _count(chunk, "chunk") == 0:
            raise InputError("chunk: expected a count >= 1, found 0")
        while True:
            batch = self.sample(chunk, g)
            yield from zip(batch.images, batch.captions, batch.attributes)

    # ------------------------------------------------------------------------------ rendering
    def _render(self, index: torch.Tensor, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """index long [N, 3] (object, colour, background) -> images uint8 [N, 3, H, W], alpha [N, 1, H, W].

        Every item draws the same random numbers whatever its object, so one seed gives different
        objects the same placement."""
        n, size = index.shape[0], self.image_size
        u = torch.rand(n, 6, generator=g)  # pick, size, rotation, shift x, shift y, flip
        colour_noise = torch.rand(n, 3, generator=g) * 2 - 1
        background_noise = torch.rand(n, 3, generator=g) * 2 - 1
        alpha = torch.zeros(n, 1, size, size)
        obj = index[:, 0]
        garment = obj < len(FASHION_OBJECTS)
        if garment.any():
            rows = garment.nonzero()[:, 0]
            fashion, label = self.fashion, obj[rows]
            pick = fashion.start[label] + (u[rows, 0] * fashion.count[label]).long().clamp(max=fashion.count[label] - 1)
            source = (fashion.images[pick].float()[:, None] / 255 * fashion.gain[pick, None, None, None]).clamp(0, 1)
            scale = FASHION_FRAME[0] + (FASHION_FRAME[1] - FASHION_FRAME[0]) * u[rows, 1]
            alpha[rows] = self._place(source, scale, scale, FASHION_MAX_ROTATION * (2 * u[rows, 2] - 1),
                                      u[rows, 3:5], u[rows, 5] < 0.5)
        if (~garment).any():
            rows = (~garment).nonzero()[:, 0]
            source = shape_masks()[obj[rows] - len(FASHION_OBJECTS)]
            extent = SHAPE_SIZE[0] + (SHAPE_SIZE[1] - SHAPE_SIZE[0]) * u[rows, 1]
            alpha[rows] = self._place(source, extent / SHAPE_EXTENT, extent, SHAPE_MAX_ROTATION * (2 * u[rows, 2] - 1),
                                      u[rows, 3:5], torch.zeros(len(rows), dtype=torch.bool))
        fg = (self._colour_rgb[index[:, 1]] + COLOUR_JITTER * colour_noise).clamp(0, 255)
        bg = (self._background_rgb[index[:, 2]] + BACKGROUND_JITTER * background_noise).clamp(0, 255)
        fg, bg = fg[:, :, None, None], bg[:, :, None, None]
        images = (bg + alpha * (fg - bg)).round_().to(torch.uint8)  # [N, 3, H, W]
        return images, alpha

    def _place(self, source: torch.Tensor, scale: torch.Tensor, extent: torch.Tensor, degrees: torch.Tensor,
               shift: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Masks [K, 1, S, S] -> alpha [K, 1, H, W]: the mask's [-1, 1] square scaled to ``scale`` of the
        image, rotated, mirrored where ``flip``, and moved by up to the room its ``extent`` leaves."""
        k = source.shape[0]
        theta = torch.deg2rad(degrees)
        room = (1 - extent).clamp(min=0)[:, None]
        offset = (2 * shift - 1) * room                                   # [K, 2], in [-1, 1] image units
        cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
        # Source point = R(-theta) (output - offset) / scale, with x mirrored for flipped items.
        linear = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # [K, 2, 2]
        linear[flip, 0] *= -1
        translation = -(linear @ offset[:, :, None])[:, :, 0]           # [K, 2]
        # F.affine_grid's grid, built as a sum of a row and a column term: it costs a third as much.
        out = 2 * self.image_size  # sample at twice the size, then average 2x2: antialiased edges
        centres = torch.linspace(-1 + 1 / out, 1 - 1 / out, out)
        grid = torch.empty(k, out, out, 2)
        for axis in range(2):
            row = (linear[:, axis, 0, None] * centres)[:, None, :]                                 # [K, 1, W]
            column = (linear[:, axis, 1, None] * centres + translation[:, axis, None])[:, :, None]  # [K, H, 1]
            torch.add(row, column, out=grid[..., axis])
        return F.avg_pool2d(F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False), 2)


def random_captions(combos: Sequence[Combo], generator: torch.Generator | None, canonical_prob: float = 0.25) -> list[str]:
    """One caption per combination: the canonical one with probability ``canonical_prob``, else one of
    the other templates, uniformly (what ``CaptionedWorld.sample`` captions its items with)."""
    n = len(combos)
    template = torch.randint(1, len(CAPTION_TEMPLATES), (n,), generator=generator)
    template[torch.rand(n, generator=generator) < canonical_prob] = 0
    return [_format(CAPTION_TEMPLATES[t], c) for t, c in zip(template.tolist(), combos)]


class WorldDataset(IterableDataset):
    """A torch ``IterableDataset`` of ``(image uint8 [3, H, W], caption, attributes)``, endless.

    Same seed, same items. Under a DataLoader with workers, worker ``i`` streams seed
    ``seed * 1009 + i + 1`` (so its items depend on the number of workers)."""

    def __init__(self, split: str = "train", seed: int = 0, fashion=None, image_size: int = 32,
                 canonical_prob: float = 0.25, chunk: int = 256):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed: expected an int, found {seed!r}")
        self.world = CaptionedWorld(split, fashion, image_size, canonical_prob)
        self.seed, self.chunk = seed, _count(chunk, "chunk")

    def __iter__(self):
        worker = get_worker_info()
        seed = self.seed if worker is None else self.seed * 1009 + worker.id + 1
        return self.world.stream(seed, self.chunk)


# -------------------------------------------------------------------------------- the grid
def grid_image(images: torch.Tensor, texts: Sequence[str], columns: int = 8, scale: int = 4) -> Image.Image:
    """uint8 [N, 3, H, W] images with a caption under each -> one PIL image, for eyeballing."""
    n, _, h, w = images.shape
    font = ImageFont.load_default(size=11)
    tile_w, text_h = w * scale, 40
    rows = math.ceil(n / columns)
    sheet = Image.new("RGB", (columns * (tile_w + 4), rows * (h * scale + text_h + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = (i % columns) * (tile_w + 4), (i // columns) * (h * scale + text_h + 4)
        tile = Image.fromarray(images[i].permute(1, 2, 0).numpy()).resize((tile_w, h * scale), Image.Resampling.NEAREST)
        sheet.paste(tile, (x, y))
        lines = textwrap.wrap(texts[i], width=max(8, tile_w // 6))[:3]
        draw.multiline_text((x + 1, y + h * scale + 1), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=1)
    return sheet


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m multimodal.data.world",
                                     description="Write a grid of the captioned world's samples for eyeballing.")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", "--count", type=int, default=64)
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4, help="pixel magnification")
    parser.add_argument("--objects", action="store_true",
                        help="one row per object, one column per colour (split 'all'), instead of random samples")
    args = parser.parse_args(argv)
    if args.objects:
        world = CaptionedWorld("all")
        backgrounds = list(BACKGROUNDS)
        combos = [Combo(o, c, backgrounds[(i + j) % 4] if (c, backgrounds[(i + j) % 4]) != ("white", "white")
                        else "black") for i, o in enumerate(OBJECTS) for j, c in enumerate(COLOURS)]
        images, texts, columns = world.render(combos, args.seed), [canonical_caption(c) for c in combos], len(COLOURS)
    else:
        batch = CaptionedWorld(args.split).sample(args.count, args.seed)
        images, texts, columns = batch.images, batch.captions, args.columns
    grid_image(images, texts, columns, args.scale).save(args.out)
    print(f"wrote {len(texts)} samples to {args.out}")


if __name__ == "__main__":
    main()
