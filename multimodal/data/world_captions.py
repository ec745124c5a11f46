"""The captioned world's vocabulary and captions: objects, colours, backgrounds, the held-out
(object, colour) pairs, the new colours (outside the world), the combinations of each split, the
caption templates and their parser, and the fixed evaluation prompts. ``multimodal.data.world`` draws the images; see its docstring."""

from __future__ import annotations

import functools
import re
from typing import Mapping, NamedTuple

from ..errors import InputError

FASHION_OBJECTS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]  # index = Fashion-MNIST label
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross"]
OBJECTS = FASHION_OBJECTS + SHAPES
COLOURS = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (245, 220, 20), "green": (30, 180, 40),
           "cyan": (0, 210, 220), "blue": (30, 70, 235), "purple": (140, 40, 190), "white": (245, 245, 245)}
# Colours outside the world: no model trained on splits "train" or "all" has seen them or read their
# names. Split "new_colour" draws every object in them on every background, to teach a trained model a
# new word (a LoRA adapter) and to judge whether it learned it.
NEW_COLOURS = {"pink": (255, 105, 180)}
PALETTE = {**COLOURS, **NEW_COLOURS}  # every colour that can be drawn, the world's first
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "navy": (10, 20, 100)}
COLOUR_JITTER = 12      # +- per channel, uniform, per image
BACKGROUND_JITTER = 6
HELD_OUT = frozenset({("sneaker", "red"), ("dress", "blue"), ("bag", "green"), ("star", "yellow"),
                      ("circle", "purple"), ("trouser", "white"), ("heart", "orange"), ("ankle boot", "cyan")})
SPLITS = ("train", "held_out", "all", "new_colour")

CANONICAL_TEMPLATE = "a {colour} {object} on a {background} background"
CAPTION_TEMPLATES = [
    CANONICAL_TEMPLATE,
    "{colour} {object}, {background} background",
    "a picture of a {colour} {object} against {background}",
    "on a {background} background, a {colour} {object}",
    "a {colour} {object} against a {background} background",
    "an image of a {colour} {object} on {background}",
    "{background} background with a {colour} {object}",
    "a photo of a {colour} {object} on a {background} background",
    "the {object} is {colour} and the background is {background}",
    "a {object} in {colour} on a {background} background",
    "{colour} {object} on {background}",
    "a drawing of a {colour} {object}, {background} backdrop",
]

class Combo(NamedTuple):
    """One combination of attributes; ``combo._asdict()`` is the attributes dict items carry."""
    object: str
    colour: str
    background: str


# ---------------------------------------------------------------------------- combinations
def _check_split(split) -> str:
    if split not in SPLITS:
        raise InputError(f"split: expected one of {', '.join(SPLITS)}, found {split!r}")
    return split


def is_held_out(object: str, colour: str) -> bool:
    """Whether this (object, colour) pair is kept out of training on every background."""
    return (object, colour) in HELD_OUT


def _as_combo(attributes) -> Combo:
    if isinstance(attributes, Mapping):
        missing = [k for k in Combo._fields if k not in attributes]
        if missing:
            raise InputError(f"attributes: expected the keys object, colour and background, found "
                             f"{sorted(attributes)} (missing {', '.join(missing)})")
        return Combo(*(attributes[k] for k in Combo._fields))
    if isinstance(attributes, (tuple, list)) and len(attributes) == 3:
        return Combo(*attributes)
    raise InputError(f"attributes: expected a Combo, a (object, colour, background) tuple or a dict with those "
                     f"keys, found {attributes!r}")


def check_combo(attributes, split: str = "all") -> Combo:
    """``attributes`` (a Combo, a 3-tuple or a dict) -> Combo, or an InputError naming what is wrong:
    an unknown object, colour or background, white on white, or a combination outside ``split``
    (a ``NEW_COLOURS`` colour belongs to split "new_colour" alone)."""
    _check_split(split)
    combo = _as_combo(attributes)
    colours = NEW_COLOURS if split == "new_colour" else COLOURS
    for name, known in (("object", OBJECTS), ("colour", colours), ("background", BACKGROUNDS)):
        value = getattr(combo, name)
        if value not in known:
            hint = (f" ({value!r} is a new colour: split 'new_colour' draws it)" if name == "colour"
                    and value in NEW_COLOURS else "")
            raise InputError(f"{name}: expected one of {', '.join(known)}, found {value!r}{hint}")
    if combo.colour == "white" and combo.background == "white":
        raise InputError(f"colour and background: expected different colours (never white on white), found "
                         f"a white {combo.object} on a white background")
    held = is_held_out(combo.object, combo.colour)
    if split == "train" and held:
        raise InputError(f"{combo.colour} {combo.object}: expected a training combination, found one held out of "
                         f"training on every background; use split='held_out' or 'all' to draw it")
    if split == "held_out" and not held:
        raise InputError(f"{combo.colour} {combo.object}: expected a held-out combination "
                         f"({', '.join(sorted(f'{c} {o}' for o, c in HELD_OUT))}), found a training one")
    return combo


@functools.cache
def combinations(split: str = "train") -> tuple[Combo, ...]:
    """Every valid combination of ``split``, in a fixed order (object, then colour, then background)."""
    _check_split(split)
    if split == "new_colour":
        return tuple(Combo(o, c, b) for o in OBJECTS for c in NEW_COLOURS for b in BACKGROUNDS)
    out = []
    for o in OBJECTS:
        for c in COLOURS:
            for b in BACKGROUNDS:
                held = is_held_out(o, c)
                if (c, b) != ("white", "white") and (split == "all" or held == (split == "held_out")):
                    out.append(Combo(o, c, b))
    return tuple(out)


# -------------------------------------------------------------------------------- captions
def _article(text: str) -> str:
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def split_of(attributes) -> str:
    """The widest split that holds ``attributes``: "new_colour" for a ``NEW_COLOURS`` colour, else "all"."""
    combo = _as_combo(attributes)
    return "new_colour" if combo.colour in NEW_COLOURS else "all"


def check_any(attributes) -> Combo:
    """``check_combo`` against the split that can hold ``attributes``: any drawable combination."""
    return check_combo(attributes, split_of(attributes))


def _format(template: str, combo: Combo) -> str:
    text = template.format(**combo._asdict())
    return text if template == CANONICAL_TEMPLATE else _article(text)


def canonical_caption(object, colour: str | None = None, background: str | None = None) -> str:
    """``a {colour} {object} on a {background} background``; takes the three names, or one Combo /
    attributes dict as the first argument."""
    combo = check_any(object if colour is None and background is None else (object, colour, background))
    return _format(CANONICAL_TEMPLATE, combo)


def captions(attributes) -> list[str]:
    """Every template's caption of ``attributes``; the first is the canonical one."""
    combo = check_any(attributes)
    return [_format(t, combo) for t in CAPTION_TEMPLATES]


def template_patterns(templates, names: Mapping[str, list[str]]) -> list[re.Pattern]:
    """One regex per caption template: each ``{field}`` matches one of ``names[field]`` (longest first,
    as the named group ``field``), each literal "a " also "an "."""
    patterns = []
    for template in templates:
        parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
        regex = ""
        for i, part in enumerate(parts):
            if i % 2:
                options = sorted(names[part], key=len, reverse=True)
                regex += f"(?P<{part}>{'|'.join(re.escape(v) for v in options)})"
            else:
                regex += re.sub(r"\ba ", "an? ", re.escape(part).replace("\\ ", " "))
        patterns.append(re.compile(regex))
    return patterns


def clean_caption(text) -> str:
    """A caption as the parsers read it: lower case, single spaces, no final full stop."""
    if not isinstance(text, str):
        raise InputError(f"caption: expected a string, found {type(text).__name__}")
    return " ".join(text.lower().split()).rstrip(".")


@functools.cache
def _caption_patterns() -> list[re.Pattern]:
    return template_patterns(CAPTION_TEMPLATES, {"object": OBJECTS, "colour": list(PALETTE),
                                                 "background": list(BACKGROUNDS)})


def parse_caption(text: str) -> Combo:
    """A caption of any template (any case, surrounding spaces and a final full stop ignored) -> its
    Combo; InputError when it is not one."""
    clean = clean_caption(text)
    for pattern in _caption_patterns():
        match = pattern.fullmatch(clean)
        if match:
            return check_any(match.groupdict())
    example = canonical_caption("circle", "red", "black")
    raise InputError(f"caption: expected a caption of the world such as {example!r}, found {text!r}")


def caption_corpus(split: str = "train") -> list[str]:
    """Every template's caption of every combination of ``split``, one per line: text for training the
    BPE tokenizer (mix it with a general corpus)."""
    return [_format(t, combo) for combo in combinations(split) for t in CAPTION_TEMPLATES]


def evaluation_prompts(seen: int = 64) -> list[dict]:
    """The fixed evaluation list: every held-out combination (31) and ``seen`` (<= 64) seen ones, each
    ``{"caption", "object", "colour", "background", "held_out"}`` with the canonical caption.

    The seen ones are one per (object, background), colour ``(object + 3 * background) % 8`` moved on
    past held-out and white-on-white pairs: every object 4 times, every background 16 times, every
    colour 5-10 times. ``seen < 64`` keeps every (64 // seen)-th of them."""
    if isinstance(seen, bool) or not isinstance(seen, int) or not 0 <= seen <= 64:
        raise InputError(f"seen: expected a count in [0, 64], found {seen!r}")
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    pool = []
    for o, obj in enumerate(OBJECTS):
        for b, background in enumerate(backgrounds):
            c = (o + 3 * b) % len(colours)
            while is_held_out(obj, colours[c]) or (colours[c], background) == ("white", "white"):
                c = (c + 1) % len(colours)
            pool.append(Combo(obj, colours[c], background))
    chosen = pool[::max(1, len(pool) // seen)][:seen] if seen else []
    return [{"caption": canonical_caption(c), **c._asdict(), "held_out": held}
            for held, combos in ((True, combinations("held_out")), (False, chosen)) for c in combos]
