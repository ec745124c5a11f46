"""Config dataclasses that round-trip through JSON.

Every model config is a dataclass deriving from :class:`Config`. ``from_dict`` rebuilds nested
configs from their field types and rejects unknown fields by name, so a config.json written by
another version of a model fails loudly instead of being half-read.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass
class Config:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, where: str = "config") -> C:
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object for {cls.__name__}, found {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise InputError(f"{where}: unknown fields for {cls.__name__}: {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {name: _build(hints[name], value, f"{where}.{name}") for name, value in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as e:  # a required field is missing
            raise InputError(f"{where}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str, *, where: str = "config") -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: expected JSON, found a syntax error ({e})") from None
        return cls.from_dict(data, where=where)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(read_json(path), where=str(path))

    def replace(self: C, **changes) -> C:
        return dataclasses.replace(self, **changes)

    def check_positive_ints(self, *names: str) -> None:
        """``InputError`` naming ``{Class}.{field}`` unless every named field is a positive int (not a bool)."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{type(self).__name__}.{name}: expected a positive integer, found {value!r}")


def read_json(path: str | Path) -> dict:
    """A JSON object from a file; an unreadable file, bad JSON or a non-object is an ``InputError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: expected a readable JSON file, found {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: expected UTF-8 JSON text, found a byte that is not UTF-8 at offset {e.start}") \
            from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: expected JSON, found a syntax error ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _plain(value):
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(hint, value, where: str):
    """Turn a JSON value back into the type a field declares (nested configs and tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            return None
        for arg in args:
            if arg is not type(None):
                return _build(arg, value, where)
    if isinstance(hint, type) and issubclass(hint, Config):
        return hint.from_dict(value, where=where)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is list and args and isinstance(value, list):
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def preset_fields(name: str, family: str, sizes: dict[str, dict], patches: tuple[int, ...],
                  overrides: dict[str, Any]) -> dict[str, Any]:
    """The config fields of a ``{family}-{size}/{patch}`` preset name (e.g. ``vit-s/16``): the
    size's fields, its patch size, then ``overrides``."""
    size, _, patch = str(name).lower().removeprefix(f"{family}-").partition("/")
    if size not in sizes or patch not in {str(p) for p in patches}:
        raise InputError(f"{family} preset: expected {family}-{{{','.join(sizes)}}}/{{{','.join(map(str, patches))}}}, "
                         f"found {name!r}")
    return {**sizes[size], "patch_size": int(patch), **overrides}
