"""The package's floors: a part of ``multimodal`` imports only from its own floor or below, so no
import (counting those inside functions) runs back up and no two parts depend on each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "multimodal"

# From the ground up; a part may import parts of its own floor or any floor below.
FLOORS = [
    {"errors"},
    {"config", "paths", "devices", "checkpoint"},
    {"backbone", "media"},
    {"tokenizers", "data", "lora"},
    {"generation"},
    {"models"},
    {"convert", "evaluation"},
    {"pipelines", "training"},
    {"cli", "app", "__init__", "__main__"},
]
FLOOR = {part: level for level, parts in enumerate(FLOORS) for part in parts}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path, text: str | None = None) -> set[str]:
    """The parts of multimodal that ``path`` (or ``text``, as if it were that file) imports, anywhere
    in the file."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders between the package and the file
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module] if node.module and node.module.startswith("multimodal.") else []
                found.update(n.split(".")[1] for n in names)
                if node.module == "multimodal":
                    found.update(a.name for a in node.names)
                continue
            up = node.level - 1  # levels above the file's own folder
            if up > depth:
                continue
            prefix = list(path.relative_to(PACKAGE).parts[:depth - up])
            target = prefix + (node.module.split(".") if node.module else [])
            if target:
                found.add(target[0])
            else:  # "from .. import x" at the package root
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("multimodal."))
    return found


def dependencies() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        part = part_of(path)
        graph.setdefault(part, set()).update(p for p in imported_parts(path) if p != part)
    return graph


def test_every_part_has_a_floor():
    assert set(dependencies()) <= set(FLOOR), f"parts without a floor: {set(dependencies()) - set(FLOOR)}"


def test_no_import_runs_up_a_floor():
    upward = sorted(f"{part} -> {dep}" for part, deps in dependencies().items() for dep in deps
                    if dep in FLOOR and FLOOR[dep] > FLOOR[part])
    assert not upward, f"imports that run up a floor: {upward}"


def test_no_cycles_among_parts():
    graph = dependencies()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path + [node, dep]
            if dep not in state and (cycle := visit(dep, path + [node])):
                return cycle
        state[node] = 2
        return None

    for part in sorted(graph):
        if part not in state:
            cycle = visit(part, [])
            assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_checker_sees_every_kind_of_import():
    text = """
from ..errors import InputError
from . import registry
import multimodal.media.audio

def late():
    from ..training import vit
    from multimodal import app
"""
    assert imported_parts(PACKAGE / "pipelines" / "example.py", text) == {
        "errors", "pipelines", "media", "training", "app"}
    assert imported_parts(PACKAGE / "example.py", "from .models import ViT\nfrom . import cli") == {"models", "cli"}
