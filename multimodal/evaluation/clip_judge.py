"""The judge of generated clips of the moving world (``multimodal.data.world_video``).

A text-to-video benchmark asks a generator for "a red circle moving left on a black background" and
needs to know whether it drew one. This file reads a clip (uint8 ``[N, 3, T, 32, 32]``) on four
attributes and one property:

- **object, colour, background**: per frame, as the world judge (``world_judge``) reads an image: the
  object by a ``JudgeNet``, colours measured (``measure_colours``); the clip's answer is the majority
  over its frames (a tie in the object goes to the larger summed log-probability);
- **direction** (``clip_direction``): the track of the object's centroid. The object's pixels in a
  frame are those at least ``FOREGROUND_SHARE`` of the distance of its farthest 1 % from the
  background (the median of the frame's border ring, ``measure_rgb``) and at least
  ``MIN_FOREGROUND_DISTANCE`` RGB units from it; their centroid is taken per frame; the Theil-Sen
  slope (the median of the slopes between every two frames with an object) times the clip's length
  is the displacement, robust to a few frames gone wrong. Its larger axis and its sign give left,
  right, up or down; a displacement under ``MIN_TRAVEL`` pixels is ``"none"`` (well under what real
  clips travel: the benchmark's direction accuracy on real clips shows it);
- **consistency**: the majority object and the majority colour each hold in at least
  ``CONSISTENT_SHARE`` of the frames (12 of 16): an object that turns into another, or changes colour,
  midway.

A clip is **right** when object, colour, background and direction match the prompt. Consistency is
reported beside it, not made part of it: on real clips of the evaluation prompts colours are
consistent in every clip, and the clips the rule flags (about 2 %) are the frame judge's own
flickers between similar garments (a shirt read as a t-shirt in a few frames), most of them with the
majority right; counting them would lower the ceiling for a property real clips have by
construction (``benchmarks/results/text_to_video_real.json``).

**The frame judge.** The world judge, trained on the image world, misreads the moving world's
objects, which are smaller (about half the frame); ``python -m benchmarks.text_to_video --real-only
--world-judge`` records how often (``benchmarks/results/text_to_video_real.json``).
``load_or_train_frame_judge`` trains the world judge's network and recipe (``FRAME_JUDGE_RECIPE``:
``JudgeRecipe()`` with 1,500 steps instead of 4,000, half of the images softened) on frames of the
moving world instead (``frame_drawer``): each image is one random frame of its own clip of split
``"all"`` (every object, colour, background and direction, drawn uniformly), rendered with
``DRAWN_FRAMES`` frames rather than 16, which is four times cheaper. The frames of one clip are
nearly the same image, so a batch made of a few clips' frames teaches little: one frame per clip
keeps every image of a batch its own draw. The judge is cached as
``<cache>/benchmarks/clip_frame_judge-<key>.safetensors``, ``key`` a hash of the recipe, the
garments, ``DRAWN_FRAMES``, the sources of ``world.py`` and ``world_captions.py`` and how
``world_video.py`` draws (``frame_judge_key``), beside a ``.json`` record of its training time.

``judge_clips(judge, clips, prompts)`` returns the verdicts; ``clip_accuracy(verdicts, prompts)``
the accuracies over the seen prompts and over those with a held-out colour pair or direction pair
(``clip_evaluation_prompts()`` marks them); ``validation_clip_prompts()`` is the list sampling
settings are chosen on, disjoint from the evaluation list.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..checkpoint import atomic_write_text
from ..data import world_video
from ..data.world_captions import BACKGROUNDS, COLOURS, OBJECTS, is_held_out
from ..data.world_video import DIRECTIONS, MovingWorld, Motion, canonical_clip_caption, check_motion, \
    clip_combinations, clip_evaluation_prompts, held_out_kinds, is_held_out_motion, parse_clip_caption
from ..errors import InputError
from .world_judge import (IMAGE_SIZE, TOP_FRACTION, Judge, JudgeRecipe, measure_colours, measure_rgb, recipe_key,
                          train_judge)

FOREGROUND_SHARE = 0.5           # object pixels: at least this share of the distance of the frame's farthest 1 %
MIN_FOREGROUND_DISTANCE = 30.0   # and at least this far from the background (RGB units; noise stays under it)
MIN_TRAVEL = 3.0                 # pixels: a smaller displacement over the clip is no motion
CONSISTENT_SHARE = 0.75          # the majority object and colour must each hold in this share of the frames
DRAWN_FRAMES = 4                 # the frame judge trains on one frame of each clip, rendered with this many frames
FRAME_JUDGE_RECIPE = JudgeRecipe(steps=1500)
GROUPS = ("seen", "held_out_colour", "held_out_direction")
ATTRIBUTES = ("object", "colour", "background", "direction")


# ------------------------------------------------------------------------------------ input checks
def _check_clips(clips, name: str = "clips") -> torch.Tensor:
    """uint8 [N, 3, T, 32, 32] (torch or numpy), N >= 1, T >= 2 -> a CPU tensor, or an InputError."""
    if isinstance(clips, np.ndarray):
        clips = torch.from_numpy(clips)
    if not isinstance(clips, torch.Tensor):
        raise InputError(f"{name}: expected a uint8 tensor [N, 3, T, H, W], found {type(clips).__name__}")
    if clips.dtype != torch.uint8:
        raise InputError(f"{name}: expected dtype uint8 (pixel values 0-255), found {clips.dtype}")
    if clips.ndim != 5 or clips.shape[1] != 3:
        raise InputError(f"{name}: expected shape [N, 3, T, H, W] (RGB, channels first), found {tuple(clips.shape)}")
    n, _, t, h, w = clips.shape
    if n == 0:
        raise InputError(f"{name}: expected at least one clip, found an empty batch {tuple(clips.shape)}")
    if t < 2:
        raise InputError(f"{name}: expected at least 2 frames per clip, found {t}")
    if (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"{name}: expected {IMAGE_SIZE}x{IMAGE_SIZE} frames (the world's size), found {h}x{w}")
    return clips.cpu()


def _check_prompts(prompts, n: int) -> list[Motion]:
    """One prompt per clip: captions, Motions, (object, colour, background, direction) tuples or dicts
    with those keys (``clip_evaluation_prompts()``'s)."""
    if isinstance(prompts, (str, Mapping, Motion)) or not isinstance(prompts, Sequence):
        raise InputError(f"prompts: expected a list of one prompt per clip, found {type(prompts).__name__}")
    if len(prompts) != n:
        raise InputError(f"prompts: expected one prompt per clip ({n}), found {len(prompts)}")
    return [parse_clip_caption(p) if isinstance(p, str) else check_motion(p) for p in prompts]


# ---------------------------------------------------------------------------------------- direction
def _frames(clips: torch.Tensor) -> torch.Tensor:
    """[N, 3, T, H, W] -> [N * T, 3, H, W], clip by clip."""
    return clips.transpose(1, 2).flatten(0, 1)


def centroid_track(clips) -> torch.Tensor:
    """uint8 clips [N, 3, T, H, W] -> float [N, T, 2]: the (x, y) centroid of each frame's object
    pixels, in pixels from the top-left corner; NaN where a frame shows no object."""
    x = _check_clips(clips)
    n, _, t, h, w = x.shape
    frames = _frames(x).float()                                                   # [NT, 3, H, W]
    background, _ = measure_rgb(_frames(x))                                       # [NT, 3]
    distance = (frames - background[:, :, None, None]).norm(dim=1).flatten(1)    # [NT, HW]
    k = max(1, round(TOP_FRACTION * h * w))
    reference = distance.topk(k, dim=1).values[:, -1:]                           # [NT, 1]
    mask = (distance >= FOREGROUND_SHARE * reference) & (distance >= MIN_FOREGROUND_DISTANCE)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    count = mask.sum(1).float()                                                   # [NT]
    cx = (mask * xs.flatten()).sum(1) / count
    cy = (mask * ys.flatten()).sum(1) / count                                     # NaN where count is 0
    return torch.stack([cx, cy], -1).view(n, t, 2)


def displacement(track: torch.Tensor) -> torch.Tensor:
    """Centroids [N, T, 2] (NaN: no object) -> [N, 2]: the Theil-Sen slope per axis (the median of the
    slopes between every two frames that show an object) times T - 1; 0 where fewer than two do."""
    n, t, _ = track.shape
    i, j = torch.triu_indices(t, t, offset=1)                                     # every pair i < j
    slopes = (track[:, j] - track[:, i]) / (j - i).float()[None, :, None]        # [N, pairs, 2]
    out = slopes.nanmedian(dim=1).values * (t - 1)
    return torch.nan_to_num(out, nan=0.0)


def direction_of(moved: torch.Tensor) -> list[str]:
    """Displacements [N, 2] (x right, y down, pixels) -> ``left``, ``right``, ``up``, ``down`` by the
    larger axis and its sign, or ``none`` under ``MIN_TRAVEL`` pixels."""
    out = []
    for dx, dy in moved.tolist():
        if max(abs(dx), abs(dy)) < MIN_TRAVEL:
            out.append("none")
        elif abs(dx) >= abs(dy):
            out.append("right" if dx > 0 else "left")
        else:
            out.append("down" if dy > 0 else "up")
    return out


def clip_direction(clips) -> list[str]:
    """uint8 clips [N, 3, T, 32, 32] -> the direction each object moves: left, right, up, down or none."""
    return direction_of(displacement(centroid_track(clips)))


# ---------------------------------------------------------------------------------------- verdicts
def _majority(names: np.ndarray, tie_score: Mapping[str, float] | None = None) -> tuple[str, float]:
    """names [T] -> (the most frequent name, its share of the frames); ties go to the larger
    ``tie_score[name]`` when given, else to the name seen first."""
    values, first, counts = np.unique(names, return_index=True, return_counts=True)
    best = counts.max()
    tied = [v for v, f, c in sorted(zip(values, first, counts), key=lambda r: r[1]) if c == best]
    pick = max(tied, key=lambda v: tie_score[v]) if tie_score is not None and len(tied) > 1 else tied[0]
    return str(pick), float(best / len(names))


def judge_clips(judge: Judge, clips, prompts) -> dict:
    """Judge clips against their prompts (one each: captions, Motions, 4-tuples or dicts such as
    ``clip_evaluation_prompts()``'s) with a frame ``judge`` (``load_or_train_frame_judge()``).

    -> ``{"object", "colour", "background", "direction"}``: what the judge sees in each clip (lists of
    names; direction may be ``none``); ``"object_share"``, ``"colour_share"``: float arrays [N], the
    share of frames that agree with the majority; ``"{attribute}_correct"`` for the four attributes,
    ``"consistent"`` and ``"prompt_correct"`` (all four right; consistency is not part of it): numpy
    bool arrays [N]; ``"rates"``: the mean of each of those six."""
    if not isinstance(judge, Judge):
        raise InputError(f"judge: expected a frame judge (a world_judge.Judge, as load_or_train_frame_judge() "
                         f"returns), found {type(judge).__name__}")
    x = _check_clips(clips)
    wanted = _check_prompts(prompts, x.shape[0])
    n, _, t = x.shape[:3]
    frames = _frames(x)
    log_p = judge.logits(frames).log_softmax(-1).view(n, t, -1)                   # [N, T, K]
    objects = np.array(judge.objects)[log_p.argmax(-1).numpy()]                   # [N, T]
    backgrounds, colours = (np.array(v).reshape(n, t) for v in measure_colours(frames))
    summed = log_p.sum(1).numpy()                                                 # [N, K]
    out: dict = {key: [] for key in ("object", "colour", "background", "object_share", "colour_share")}
    for i in range(n):
        obj, obj_share = _majority(objects[i], dict(zip(judge.objects, summed[i])))
        colour, colour_share = _majority(colours[i])
        out["object"].append(obj)
        out["colour"].append(colour)
        out["background"].append(_majority(backgrounds[i])[0])
        out["object_share"].append(obj_share)
        out["colour_share"].append(colour_share)
    out["direction"] = clip_direction(x)
    out["object_share"], out["colour_share"] = np.array(out["object_share"]), np.array(out["colour_share"])
    for key in ATTRIBUTES:
        out[f"{key}_correct"] = np.array([s == getattr(m, key) for s, m in zip(out[key], wanted)], dtype=bool)
    out["consistent"] = (out["object_share"] >= CONSISTENT_SHARE) & (out["colour_share"] >= CONSISTENT_SHARE)
    out["prompt_correct"] = np.logical_and.reduce([out[f"{k}_correct"] for k in ATTRIBUTES])
    out["rates"] = {k: float(out[f"{k}_correct"].mean()) for k in (*ATTRIBUTES, "prompt")}
    out["rates"]["consistent"] = float(out["consistent"].mean())
    return out


def _motions_and_kinds(prompts: Sequence) -> tuple[list[Motion], list[set[str]]]:
    """Each prompt's Motion and held-out kinds (a dict's ``held_out`` list when it has one)."""
    motions = [parse_clip_caption(p) if isinstance(p, str) else check_motion(p) for p in prompts]
    kinds = [set(p["held_out"]) if isinstance(p, Mapping) and isinstance(p.get("held_out"), (list, tuple))
             else set(held_out_kinds(m)) for p, m in zip(prompts, motions)]
    return motions, kinds


def clip_accuracy(verdicts: dict, prompts: Sequence) -> dict:
    """``judge_clips``' verdicts on clips of ``prompts`` -> ``{group}_accuracy`` (prompt accuracy over
    the seen prompts, those with a held-out colour pair and those with a held-out direction pair; a
    group with no prompt has no entry), ``accuracy`` over all, ``{attribute}_accuracy`` for the four
    attributes, ``consistency`` (the share of consistent clips), ``per_group``: every one of those
    rates within each group, and ``per_object``: prompt accuracy and consistency over the clips of
    each object, in the order the objects first appear."""
    correct = np.asarray(verdicts["prompt_correct"], dtype=bool)
    if isinstance(prompts, (str, Mapping)) or not isinstance(prompts, Sequence) or len(prompts) != len(correct):
        listed = isinstance(prompts, Sequence) and not isinstance(prompts, str)
        found = len(prompts) if listed else type(prompts).__name__
        raise InputError(f"prompts: expected one prompt per judged clip ({len(correct)}), found {found}")
    columns = {"prompt": correct, **{k: np.asarray(verdicts[f"{k}_correct"], dtype=bool) for k in ATTRIBUTES},
               "consistent": np.asarray(verdicts["consistent"], dtype=bool)}
    motions, kinds = _motions_and_kinds(prompts)
    groups = {"seen": np.array([not k for k in kinds], dtype=bool),
              "held_out_colour": np.array(["colour" in k for k in kinds], dtype=bool),
              "held_out_direction": np.array(["direction" in k for k in kinds], dtype=bool)}
    out = {f"{g}_accuracy": float(correct[mask].mean()) for g, mask in groups.items() if mask.any()}
    out["accuracy"] = float(correct.mean())
    out.update({f"{k}_accuracy": float(columns[k].mean()) for k in ATTRIBUTES})
    out["consistency"] = float(columns["consistent"].mean())
    out["per_group"] = {g: {k: float(v[mask].mean()) for k, v in columns.items()}
                        for g, mask in groups.items() if mask.any()}
    objects = np.array([m.object for m in motions])
    out["per_object"] = {o: {k: float(columns[k][objects == o].mean()) for k in ("prompt", "consistent")}
                         for o in dict.fromkeys(objects.tolist())}
    return out


def validation_clip_prompts() -> list[dict]:
    """56 seen clips for choosing sampling settings, none of them in ``clip_evaluation_prompts()``: one per
    (object, direction) pair not held out, colour ``(object + 3 x direction + 4) % 8`` and background
    ``(object + direction + 2) % 4``, the colour moved on past held-out pairs, white on white and
    evaluated clips. Same dict layout as the evaluation list (``held_out`` always empty)."""
    evaluated = {tuple(p[k] for k in Motion._fields) for p in clip_evaluation_prompts()}
    colours, backgrounds, prompts = list(COLOURS), list(BACKGROUNDS), []
    for o, obj in enumerate(OBJECTS):
        for d, direction in enumerate(DIRECTIONS):
            if is_held_out_motion(obj, direction):
                continue
            background, c = backgrounds[(o + d + 2) % len(backgrounds)], (o + 3 * d + 4) % len(colours)
            while is_held_out(obj, colours[c]) or (colours[c], background) == ("white", "white") \
                    or (obj, colours[c], background, direction) in evaluated:
                c = (c + 1) % len(colours)
            motion = Motion(obj, colours[c], background, direction)
            prompts.append({"caption": canonical_clip_caption(motion), **motion._asdict(), "held_out": []})
    return prompts


# ------------------------------------------------------------------------------------ the frame judge
def frame_drawer(fashion=None, objects: Sequence[str] = OBJECTS, frames: int = DRAWN_FRAMES):
    """``draw(batch_size, generator)`` for ``world_judge.train_judge``: one random frame of each of
    ``batch_size`` clips of the moving world's split "all" showing ``objects`` (every colour, background
    and direction; combinations drawn uniformly), rendered with ``frames`` frames -> (uint8
    [batch_size, 3, 32, 32], the object of each frame)."""
    moving = MovingWorld("all", fashion=fashion, frames=frames, image_size=IMAGE_SIZE)
    combos = [m for m in clip_combinations("all") if m.object in objects]

    def draw(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        motions = [combos[i] for i in torch.randint(len(combos), (batch_size,), generator=generator).tolist()]
        clips = moving.render(motions, generator)                                  # [B, 3, frames, H, W]
        pick = torch.randint(frames, (batch_size,), generator=generator)
        return clips[torch.arange(batch_size), :, pick].contiguous(), [m.object for m in motions]
    return draw


def frame_judge_key(recipe: JudgeRecipe, fashion=None) -> str:
    """A short hash of the recipe, the garments and the image world's code (``world_judge.recipe_key``),
    of how the moving world draws (the source of ``MovingWorld._render``, its sizes, the clips of split
    "all") and of ``DRAWN_FRAMES``: what the frame judge learns from, and nothing else of world_video.py."""
    drawing = [inspect.getsource(MovingWorld._render), world_video.VIDEO_SHAPE_SIZE, world_video.VIDEO_FASHION_FRAME,
               world_video.VIDEO_TRAVEL, world_video.SHAPE_EXTENT, [list(m) for m in clip_combinations("all")]]
    text = json.dumps([recipe_key(recipe, fashion), hashlib.sha256(json.dumps(drawing).encode()).hexdigest(),
                       DRAWN_FRAMES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def frame_judge_path(recipe: JudgeRecipe | None = None, cache_dir: str | Path | None = None, fashion=None,
                     key: str | None = None) -> Path:
    """Where the frame judge of ``recipe`` (default ``FRAME_JUDGE_RECIPE``) is cached (``key``: its
    ``frame_judge_key``, when already computed)."""
    key = key or frame_judge_key(recipe or FRAME_JUDGE_RECIPE, fashion)
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "benchmarks"
    return folder / f"clip_frame_judge-{key}.safetensors"


def describe(judge: Judge) -> str:
    """One line for results files: the frame judge and how it was trained."""
    r = judge.recipe
    return (f"multimodal.evaluation.clip_judge: JudgeNet (widths {list(r.widths)}, {len(r.objects)} objects), "
            f"{r.steps} steps x {r.batch_size} frames of the moving world's split 'all' (one of each clip of "
            f"{DRAWN_FRAMES} frames, {100 * r.soften:.0f} % softened), seed {r.seed}"
            + (f", cache key {judge.key}" if judge.key else "")
            + "; colours measured; direction from the object's centroid track")


def load_or_train_frame_judge(cache_dir: str | Path | None = None, recipe: JudgeRecipe | None = None, fashion=None,
                              log_every: int = 0, device: str = "cpu") -> Judge:
    """The frame judge of ``recipe`` (default ``FRAME_JUDGE_RECIPE``) from ``cache_dir`` (default
    ``<cache>/benchmarks``), trained on the moving world's frames and saved there first when it is not
    there yet."""
    recipe = recipe or FRAME_JUDGE_RECIPE
    if not isinstance(recipe, JudgeRecipe):
        raise InputError(f"recipe: expected a JudgeRecipe, found {type(recipe).__name__}")
    key = frame_judge_key(recipe, fashion)  # once: the sources it hashes may change while it trains
    path = frame_judge_path(recipe, cache_dir, fashion, key=key)
    if path.is_file():
        judge = Judge.load(path)
    else:
        start = time.perf_counter()
        judge = train_judge(recipe, log_every=log_every, device=device,
                            draw=frame_drawer(fashion, recipe.objects))
        seconds = time.perf_counter() - start
        judge.save(path)
        atomic_write_text(path.with_suffix(".json"), json.dumps({
            "train_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(), "device": device,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}) + "\n")
    judge.key = key
    return judge


def frame_judge_training(judge: Judge, cache_dir: str | Path | None = None) -> dict:
    """What training the cached frame judge ``judge`` took (seconds, threads, device, the machine's load
    average at the end), as recorded when it was trained; empty when no record is there."""
    if judge.key is None:
        return {}
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "benchmarks"
    record = folder / f"clip_frame_judge-{judge.key}.json"
    return json.loads(record.read_text()) if record.is_file() else {}
