"""The judge of generated images of the captioned world (``multimodal.data.world``).

A text-to-image benchmark asks a generator for "a red sneaker on a navy background" and needs to
know whether it drew one; it also compares the generated images with real renders by a Fréchet
distance (``multimodal.evaluation.frechet``) in the judge's feature space. This file is that judge.
It is deliberately not this project's transformer, and it is trained separately from every
generator, so that a generator cannot be graded by its own biases.

- **Colours** are measured, not learned (``measure_colours``): the background is the per-channel
  median of a ``RING``-pixel border ring, snapped to the nearest ``world.BACKGROUNDS`` entry; the
  object's colour is the per-channel median of the pixels farthest from that background (those at
  least ``TOP_SHARE`` of the distance of the ``TOP_FRACTION``-th farthest pixel), snapped to the
  ``world.COLOURS`` entry nearest to it when laid over the measured background at an opacity
  between ``MIN_OPACITY`` and 1. Farthest-from-background pixels are the most opaque ones, so
  antialiased edges and a garment's semi-transparent folds (its grey intensity is its alpha) do
  not pull the estimate towards the background; the opacity range covers thin garments that are
  nowhere fully opaque.
- **Objects** are classified by ``JudgeNet``, a small VGG-style CNN (3x3 conv + BatchNorm + ReLU,
  max-pooling 32 -> 16 -> 8 -> 4, global average pooling, one linear layer) over the 16
  ``world.OBJECTS``. It trains on fresh renders of split ``"all"``: every colour, background and
  placement, combinations drawn uniformly, so every object is equally frequent and colour carries no
  information about the object. Half of the renders (``JudgeRecipe.soften``) are softened first
  (``soften_images``: a Gaussian blur and grain of random strength), so that the judge reads an
  autoencoder's smoother reconstructions almost as well as crisp renders (about a point lower, against
  two to three points for the crisp-only recipe, ``soften=0``), without ever seeing an autoencoder. ``JudgeRecipe`` holds the whole recipe; the default (4000 steps of 128 renders) trains
  in about 12 minutes on two threads of a Xeon (``benchmarks/results/world_judge.json``).
- **Features** for the Fréchet distance are the global-average-pooled last conv block (``[N, D]``
  float64), like Inception's pool3 features in FID.

``load_or_train_judge()`` keeps the trained weights in ``<cache>/benchmarks/`` (``multimodal.paths``)
as ``world_judge-<key>.safetensors``, ``key`` a short hash of the recipe and of ``world.py``'s
source (a change in rendering retrains the judge). ``evaluate`` scores a judge on fresh real
renders; ``python -m benchmarks.world_judge`` prints that ceiling and writes it to
``benchmarks/results/world_judge.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import paths
from ..checkpoint import check_state_dict, load_tensor_metadata, load_tensors, save_tensors
from ..data import world
from ..data.world import (BACKGROUNDS, COLOURS, NEW_COLOURS, OBJECTS, PALETTE, CaptionedWorld, Combo, check_any,
                          combinations)
from ..errors import InputError

RING = 2              # border pixels that measure the background
TOP_FRACTION = 0.01   # the reference pixel: this share of the image is farther from the background
TOP_SHARE = 0.8       # object pixels: at least this share of the reference pixel's distance
MIN_OPACITY = 0.5     # the object's measured colour may be its colour this transparent over the background
IMAGE_SIZE = 32
FORMAT = 1            # bump when the cached file's layout or the training code changes meaning

_BACKGROUND_NAMES = list(BACKGROUNDS)
_BACKGROUND_RGB = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)  # [4, 3]


# ------------------------------------------------------------------------------------ input checks
def _check_images(images, name: str = "images", size: int | None = None, min_size: int = 1) -> torch.Tensor:
    """uint8 [N, 3, H, W] (torch or numpy), N >= 1 -> a torch tensor, or an InputError naming the problem."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected a uint8 tensor [N, 3, H, W], found {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise InputError(f"{name}: expected dtype uint8 (pixel values 0-255), found {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"{name}: expected shape [N, 3, H, W] (RGB, channels first), found {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise InputError(f"{name}: expected at least one image, found an empty batch {tuple(images.shape)}")
    h, w = images.shape[2:]
    if size is not None and (h, w) != (size, size):
        raise InputError(f"{name}: expected {size}x{size} images (the world's size), found {h}x{w}")
    if min(h, w) < min_size:
        raise InputError(f"{name}: expected images at least {min_size}x{min_size}, found {h}x{w}")
    return images.cpu()


def _check_attributes(attributes, n: int) -> list[Combo]:
    """One combination per image (a list of Combos / tuples / dicts), or one for the whole batch."""
    if isinstance(attributes, (Mapping, Combo)):
        return [check_any(attributes)] * n
    if isinstance(attributes, str) or not isinstance(attributes, Sequence):
        raise InputError(f"attributes: expected one combination per image (a list of attribute dicts, Combos or "
                         f"(object, colour, background) tuples), found {type(attributes).__name__}")
    if len(attributes) != n:
        raise InputError(f"attributes: expected one combination per image ({n}), found {len(attributes)}")
    return [check_any(a) for a in attributes]


def _check_colours(colours) -> list[str]:
    """The colour names the judge may answer: ``None`` is the world's ``COLOURS``."""
    if colours is None:
        return list(COLOURS)
    if isinstance(colours, str) or not isinstance(colours, Sequence) or not colours:
        raise InputError(f"colours: expected a list of colour names, found {colours!r}")
    unknown = [c for c in colours if c not in PALETTE]
    if unknown:
        raise InputError(f"colours: expected names among {', '.join(PALETTE)}, found {', '.join(map(repr, unknown))}")
    return list(dict.fromkeys(colours))


# ---------------------------------------------------------------------------------------- colours
def _nearest(rgb: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """rgb float [N, 3], table [K, 3] -> long [N]: the index of the nearest entry (Euclidean RGB)."""
    return torch.cdist(rgb, table).argmin(1)


def measure_rgb(images) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 3, H, W] -> (background, object) float RGB [N, 3], before snapping to the tables."""
    x = _check_images(images, min_size=2 * RING + 1).float()
    n, _, h, w = x.shape
    border = torch.ones(h, w, dtype=torch.bool)
    border[RING:h - RING, RING:w - RING] = False
    background = x[:, :, border].median(dim=2).values                          # [N, 3]
    flat = x.flatten(2)                                                        # [N, 3, HW]
    distance = (flat - background[:, :, None]).norm(dim=1)                     # [N, HW]
    k = max(1, round(TOP_FRACTION * h * w))
    reference = distance.topk(k, dim=1).values[:, -1:]                         # [N, 1]
    chosen = distance >= TOP_SHARE * reference                                 # never empty: the top k qualify
    obj = flat.masked_fill(~chosen[:, None], float("nan")).nanmedian(dim=2).values
    return background, obj


def _nearest_over(obj: torch.Tensor, background: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """obj, background float [N, 3], colours ``table`` [K, 3] -> long [N]: the entry c for which some
    opacity t in [MIN_OPACITY, 1] makes ``background + t (c - background)`` nearest to ``obj``."""
    direction = table[None] - background[:, None]                                     # [N, K, 3]
    offset = (obj - background)[:, None]                                              # [N, 1, 3]
    t = (offset * direction).sum(-1) / (direction * direction).sum(-1).clamp(min=1e-6)
    t = t.clamp(MIN_OPACITY, 1)[..., None]                                            # [N, K, 1]
    return (offset - t * direction).norm(dim=-1).argmin(1)


def measure_colours(images, colours: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """uint8 [N, 3, H, W] -> (background names, object colour names).

    The background is the nearest ``world.BACKGROUNDS`` entry to the border's median; the object's
    colour is the entry of ``colours`` (names of ``world.PALETTE``; default the world's ``COLOURS``) that, laid over the measured background at an opacity between
    ``MIN_OPACITY`` and 1, comes nearest to the object pixels' median. Thin garments (sandal straps)
    are nowhere fully opaque after antialiasing, and their colour is mixed with the background's; at
    any opacity in that range a colour stays at least 38 RGB units from every other colour's
    mixtures, over every background, against jitter of at most 21, and so does pink (``world.NEW_COLOURS``)."""
    names = _check_colours(colours)
    table = torch.tensor([PALETTE[c] for c in names], dtype=torch.float32)
    background, obj = measure_rgb(images)
    return ([_BACKGROUND_NAMES[i] for i in _nearest(background, _BACKGROUND_RGB).tolist()],
            [names[i] for i in _nearest_over(obj, background, table).tolist()])


# ------------------------------------------------------------------------------------ the network
@dataclass(frozen=True)
class JudgeRecipe:
    """Everything that determines a trained judge (its hash keys the cache)."""
    widths: tuple[int, ...] = (32, 64, 128)   # channels of the conv blocks at 32, 16, 8 pixels
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    seed: int = 0
    objects: tuple[str, ...] = tuple(OBJECTS)
    # The share of training renders softened (``soften_images``: blur and noise of random strength), so that
    # the judge reads an autoencoder's smoother reconstructions as well as crisp renders, without
    # ever seeing an autoencoder (it stays independent of every generator). 0: crisp renders only.
    soften: float = 0.5

    def __post_init__(self):
        ints = {"steps": self.steps, "batch_size": self.batch_size, "warmup": self.warmup, "seed": self.seed}
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name in ("warmup", "seed") else 1):
                raise InputError(f"{name}: expected an int >= {0 if name in ('warmup', 'seed') else 1}, found {v!r}")
        if not self.widths or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.widths):
            raise InputError(f"widths: expected a non-empty tuple of channel counts >= 1, found {self.widths!r}")
        for name in ("lr", "weight_decay", "label_smoothing", "soften"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (name == "label_smoothing" and v >= 1) or (name == "soften" and v > 1):
                bound = {"label_smoothing": " and < 1", "soften": " and <= 1"}.get(name, "")
                raise InputError(f"{name}: expected a finite number >= 0{bound}, found {v!r}")
        unknown = [o for o in self.objects if o not in OBJECTS]
        if len(self.objects) < 2 or unknown or len(set(self.objects)) != len(self.objects):
            raise InputError(f"objects: expected at least two distinct names from {', '.join(OBJECTS)}, found "
                             f"{list(self.objects)!r}")

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        if fields["soften"] == 0:  # a crisp-only recipe keeps the key it has always had
            del fields["soften"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JudgeRecipe":
        fields = {"soften": 0.0, **json.loads(text)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


class JudgeNet(nn.Module):
    """uint8-range float images -> (features [N, widths[-1]], logits [N, classes])."""

    def __init__(self, widths: Sequence[int], classes: int):
        super().__init__()
        layers, channels = [], 3
        for i, width in enumerate(widths):
            for j in range(1 if i == 0 else 2):  # one conv at full resolution: most of the cost is there
                layers += [nn.Conv2d(channels if j == 0 else width, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images.float() / 127.5 - 1).contiguous(memory_format=torch.channels_last)  # [N, 3, 32, 32]
        features = self.body(x).mean(dim=(2, 3))                                       # [N, D]
        return features, self.head(features)


# -------------------------------------------------------------------------------------- the judge
class Judge:
    """A trained ``JudgeNet`` and the colour measurement: classify, featurise and score images."""

    def __init__(self, model: JudgeNet, recipe: JudgeRecipe, batch_size: int = 512, key: str | None = None):
        self.model, self.recipe, self.batch_size = model.eval(), recipe, batch_size
        self.objects = list(recipe.objects)
        self.key = key  # the cache key it was stored under, when it came from load_or_train_judge

    @property
    def description(self) -> str:
        """One line for results files: what the judge is and how it was trained."""
        r = self.recipe
        return (f"multimodal.evaluation.world_judge JudgeNet (widths {list(r.widths)}, {len(r.objects)} objects), "
                f"{r.steps} steps x {r.batch_size} renders of split 'all'"
                + (f" ({100 * r.soften:.0f} % softened)" if r.soften else " (crisp only)") + f", seed {r.seed}"
                + (f", cache key {self.key}" if self.key else ""))

    @torch.inference_mode()
    def _forward(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_images(images, size=IMAGE_SIZE)
        outs = [self.model(part) for part in x.split(self.batch_size)]
        return torch.cat([f for f, _ in outs]), torch.cat([logit for _, logit in outs])

    def logits(self, images) -> torch.Tensor:
        """uint8 [N, 3, 32, 32] -> float [N, len(self.objects)]."""
        return self._forward(images)[1]

    def classify(self, images) -> list[str]:
        """uint8 [N, 3, 32, 32] -> the most likely object name of each image."""
        return [self.objects[i] for i in self.logits(images).argmax(1).tolist()]

    def features(self, images) -> torch.Tensor:
        """uint8 [N, 3, 32, 32] -> float64 [N, D]: the pooled last conv block, for ``frechet_distance``."""
        return self._forward(images)[0].double()

    def score(self, images, attributes, colours: Sequence[str] | None = None) -> dict:
        """Judge images against what they were meant to show: ``attributes`` is a list of one combination
        per image (attribute dicts, Combos or (object, colour, background) tuples), or one dict or Combo
        for the whole batch (a bare tuple would be ambiguous with a list of three). ``colours``: the
        colour names the judge may answer (``measure_colours``); default the world's ``COLOURS``, plus
        ``NEW_COLOURS`` when an image was meant to show one.

        -> ``{"object", "colour", "background"}``: what the judge sees (lists of names);
        ``{"object_correct", "colour_correct", "background_correct", "prompt_correct"}``: numpy bool
        arrays [N] (``prompt_correct``: all three right); ``"rates"``: the mean of each of those four."""
        x = _check_images(images, size=IMAGE_SIZE)
        wanted = _check_attributes(attributes, x.shape[0])
        if colours is None:
            colours = list(COLOURS) + (list(NEW_COLOURS) if any(c.colour in NEW_COLOURS for c in wanted) else [])
        seen_object = self.classify(x)
        seen_background, seen_colour = measure_colours(x, colours)
        out = {"object": seen_object, "colour": seen_colour, "background": seen_background}
        for key, seen in (("object", seen_object), ("colour", seen_colour), ("background", seen_background)):
            out[f"{key}_correct"] = np.array([s == getattr(c, key) for s, c in zip(seen, wanted)], dtype=bool)
        out["prompt_correct"] = out["object_correct"] & out["colour_correct"] & out["background_correct"]
        out["rates"] = {k: float(out[f"{k}_correct"].mean())
                        for k in ("object", "colour", "background", "prompt")}
        return out

    # ---------------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Weights and recipe in one safetensors file, written atomically."""
        save_tensors(path, self.model.state_dict(), metadata={"recipe": self.recipe.to_json(),
                                                              "format": str(FORMAT)})

    @classmethod
    def load(cls, path: str | Path) -> "Judge":
        state = load_tensors(path)  # first: it turns a corrupted file into an InputError
        metadata = load_tensor_metadata(path)
        if metadata.get("format") != str(FORMAT) or "recipe" not in metadata:
            raise InputError(f"{path}: expected a world judge file of format {FORMAT}, found metadata "
                             f"{sorted(metadata)} (format {metadata.get('format')!r})")
        recipe = JudgeRecipe.from_json(metadata["recipe"])
        model = JudgeNet(recipe.widths, len(recipe.objects)).to(memory_format=torch.channels_last)
        check_state_dict(model, state, str(path))
        model.load_state_dict(state)
        return cls(model, recipe, key=Path(path).stem.removeprefix("world_judge-"))


# -------------------------------------------------------------------------------------- training
def soften_images(images: torch.Tensor, generator: torch.Generator, max_sigma: float = 1.2,
                  max_noise: float = 8.0) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8: each image blurred by a Gaussian of its own width (sigma uniform in
    [0, ``max_sigma``] pixels) and given Gaussian noise of its own strength (uniform in [0,
    ``max_noise``] levels of 255): the softened edges and grain of an autoencoder's reconstruction."""
    n, c, h, w = images.shape
    sigma = torch.rand(n, generator=generator) * max_sigma
    noise = torch.rand(n, generator=generator) * max_noise
    offsets = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)  # [N, 5]
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)            # [N*C, 5]
    x = images.float().reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel[:, None, :, None], groups=n * c)
    x = x.reshape(n, c, h, w) + noise[:, None, None, None] * torch.randn(n, c, h, w, generator=generator)
    return x.round().clamp(0, 255).to(torch.uint8)


def train_judge(recipe: JudgeRecipe | None = None, fashion=None, log_every: int = 0, device: str = "cpu",
                draw: Callable[[int, torch.Generator], tuple[torch.Tensor, list[str]]] | None = None,
                **overrides) -> Judge:
    """Train a judge on fresh renders of split "all" (``recipe``, with ``overrides`` of its fields), a
    share ``recipe.soften`` of them softened (``soften_images``).

    ``fashion``: (images, labels) garments for ``CaptionedWorld`` (default: Fashion-MNIST's training
    split). Each step renders ``batch_size`` new items, combinations (restricted to
    ``recipe.objects``) drawn uniformly; AdamW with linear warmup and cosine decay. Deterministic for a
    given recipe, device and thread count. ``log_every`` > 0 prints the running loss. ``device``: where
    the network trains (renders are drawn on the CPU); the judge returned is on the CPU. ``draw``, when
    given, replaces the renders: ``draw(batch_size, generator)`` -> (uint8 [batch_size, 3, 32, 32], the
    object name of each image, among ``recipe.objects``); ``multimodal.evaluation.clip_judge`` trains
    on the moving world's frames this way."""
    recipe = dataclasses.replace(recipe or JudgeRecipe(), **overrides)
    g = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    label_of = {o: i for i, o in enumerate(recipe.objects)}
    if draw is None:
        drawer = CaptionedWorld("all", fashion=fashion, image_size=IMAGE_SIZE)
        combos = [c for c in combinations("all") if c.object in recipe.objects]
        labels_all = torch.tensor([label_of[c.object] for c in combos])
    model = JudgeNet(recipe.widths, len(recipe.objects)).to(device, memory_format=torch.channels_last).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=recipe.lr)

    def lr_factor(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    running = None
    for step in range(recipe.steps):
        if draw is None:
            pick = torch.randint(len(combos), (recipe.batch_size,), generator=g)
            images, labels = drawer.render([combos[i] for i in pick.tolist()], g), labels_all[pick]
        else:
            images, names = draw(recipe.batch_size, g)
            labels = torch.tensor([label_of[o] for o in names])
        if recipe.soften > 0:
            softened = torch.rand(recipe.batch_size, generator=g) < recipe.soften
            images = torch.where(softened[:, None, None, None], soften_images(images, g), images)
        images = images.to(device)
        _, logits = model(images)
        loss = F.cross_entropy(logits, labels.to(device), label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{recipe.steps}  loss {running:.3f}", flush=True)
    return Judge(model.cpu().eval(), recipe)


def _fashion_digest(fashion) -> str:
    if fashion is None:
        return "fashion-mnist-train"
    if not (isinstance(fashion, (tuple, list)) and len(fashion) == 2):
        raise InputError(f"fashion: expected (images, labels), found {type(fashion).__name__}")
    h = hashlib.sha256()
    for part in fashion:
        h.update(np.ascontiguousarray(np.asarray(part)).tobytes())
    return h.hexdigest()


def recipe_key(recipe: JudgeRecipe, fashion=None) -> str:
    """A short hash of the recipe, the garments and the world's code (the sources of world.py and of
    world_captions.py, its vocabulary)."""
    source = Path(world.__file__).read_bytes() + Path(world.__file__).with_name("world_captions.py").read_bytes()
    text = json.dumps([FORMAT, recipe.to_json(), _fashion_digest(fashion), hashlib.sha256(source).hexdigest()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def judge_path(recipe: JudgeRecipe | None = None, cache_dir: str | Path | None = None, fashion=None) -> Path:
    recipe = recipe or JudgeRecipe()
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "benchmarks"
    return folder / f"world_judge-{recipe_key(recipe, fashion)}.safetensors"


def load_or_train_judge(cache_dir: str | Path | None = None, recipe: JudgeRecipe | None = None, fashion=None,
                        log_every: int = 0, device: str = "cpu") -> Judge:
    """The judge of ``recipe`` (default ``JudgeRecipe()``) from ``cache_dir`` (default
    ``<cache>/benchmarks``), trained and saved there first when it is not there yet."""
    recipe = recipe or JudgeRecipe()
    path = judge_path(recipe, cache_dir, fashion)
    if path.is_file():
        return Judge.load(path)
    judge = train_judge(recipe, fashion=fashion, log_every=log_every, device=device)
    judge.save(path)
    judge.key = recipe_key(recipe, fashion)
    return judge


# -------------------------------------------------------------------------------------- evaluation
def evaluate(judge: Judge, repeats: int = 20, seed: int = 12345, fashion=None,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None, split: str = "all") -> dict:
    """The judge on fresh real renders: ``repeats`` renders of every combination of ``split`` (seeded by
    ``seed``; ``fashion`` as for ``CaptionedWorld``) -> accuracies overall, per object, per colour and
    per background, the most frequent object confusions, and the renders' features. ``transform``
    (uint8 [N, 3, H, W] -> the same), when given, is applied to each batch of renders first: an
    autoencoder's round trip, say, to score the judge on reconstructions."""
    drawer = CaptionedWorld(split, fashion=fashion, image_size=IMAGE_SIZE)
    combos = [c for c in combinations(split) if c.object in judge.objects] * repeats
    transform = transform or (lambda x: x)
    images = torch.cat([transform(drawer.render(part, seed + i)) for i, part in
                        enumerate(combos[j:j + 2048] for j in range(0, len(combos), 2048))])
    scored = judge.score(images, combos)
    result = {"images": len(combos), "rates": scored["rates"], "per_object": {}, "per_colour": {},
              "per_background": {}}
    for key, names in (("object", judge.objects), ("colour", list(PALETTE)), ("background", _BACKGROUND_NAMES)):
        for name in names:
            rows = np.array([getattr(c, key) == name for c in combos], dtype=bool)
            if rows.any():
                result[f"per_{key}"][name] = {k: float(scored[f"{k}_correct"][rows].mean())
                                              for k in ("object", "colour", "background", "prompt")}
    confusions: dict[tuple[str, str], int] = {}
    for c, seen in zip(combos, scored["object"]):
        if seen != c.object:
            confusions[(c.object, seen)] = confusions.get((c.object, seen), 0) + 1
    per_object_count = len(combos) / len(judge.objects)
    result["confusions"] = [{"object": o, "seen_as": s, "share": n / per_object_count}
                            for (o, s), n in sorted(confusions.items(), key=lambda kv: -kv[1])[:10]]
    result["colour_misses"] = [{"wanted": f"{c.colour} {c.object} on {c.background}", "seen": f"{s} on {b}"}
                               for c, s, b in zip(combos, scored["colour"], scored["background"])
                               if s != c.colour or b != c.background][:10]
    result["features"] = judge.features(images)
    return result
