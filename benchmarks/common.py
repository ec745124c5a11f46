"""Helpers shared by the benchmarks: interleaved timing, machine info, results JSON, tables.

Timings on a shared machine drift (other jobs, turbo, thermal), so candidates are timed
round-robin within each repeat (the starting candidate rotates between repeats) and compared by
their medians, never by runs taken minutes apart.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import shutil
import sys
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from multimodal.checkpoint import atomic_write_text, fresh_tmp_dir, publish_dir
from multimodal.paths import resolve_model
from multimodal.training.runs import read_training

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                number: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each ``fns[name]``: ``warmup`` untimed calls each, then ``repeats``
    rounds in which every function is timed over ``number`` calls in turn, with Python's garbage
    collector paused (as timeit does). -> {name: [s, ...]}"""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                for _ in range(number):
                    fns[name]()
                times[name].append((time.perf_counter() - start) / number)
    finally:
        if was_enabled:
            gc.enable()
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: the machine, its load (other jobs) and the threading and
    allocator settings of the environment."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OMP_", "MKL_", "KMP_", "MALLOC_")) or k == "LD_PRELOAD"},
    }


def write_results(name: str, data: Mapping[str, Any], path: str | Path | None = None) -> Path:
    """Write ``data`` to ``path`` (default ``results/<name>.json``) atomically, stamped with the
    time and the machine."""
    stamped = {"benchmark": name,
               "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), **data}
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(stamped, indent=2) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table; floats get 0 decimals from 100 up, else 3 significant digits."""
    def cell(v: Any) -> str:
        if not isinstance(v, float):
            return str(v)
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:#.3g}"
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vs: "| " + " | ".join(v.ljust(w) for v, w in zip(vs, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells)])


def ship_float16(model_class, source: Path, dest: Path) -> Path:
    """``dest``: the checkpoint ``source`` of ``model_class`` stored in float16 (what users get), with
    its training.json and card notes."""
    tmp = fresh_tmp_dir(dest)
    model_class.from_pretrained(source).save_pretrained(tmp, dtype=torch.float16)
    for name in ("training.json", "card_notes.md"):
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    publish_dir(tmp, dest)
    return dest


def add_checkpoint_benchmark_args(p, what: str, results: str) -> None:
    """The flags of a benchmark that judges one checkpoint: --threads, --write-checkpoint, --ship,
    --results."""
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write-checkpoint", action="store_true", help=f"write evaluation.json into the {what} folder")
    p.add_argument("--ship", default=None, help=f"write the {what} in float16 to this folder and measure that copy")
    p.add_argument("--results", default=results, help="results file name in benchmarks/results/")


def checkpoint_to_judge(args, argv, module: str, model_class, model: str) -> tuple[str, Path]:
    """(the command line, the folder to judge) of such a benchmark: threads set, and with ``--ship``
    the float16 copy written first (and evaluation.json written into it at the end)."""
    torch.set_num_threads(args.threads)
    command = " ".join([f"python -m benchmarks.{module}", *(sys.argv[1:] if argv is None else argv)])
    folder = resolve_model(model)
    if args.ship:
        folder = ship_float16(model_class, folder, Path(args.ship))
        args.write_checkpoint = True
    return command, folder


def publish_judgement(args, folder: Path, result: dict, model_card) -> Path:
    """Write the results file and, with ``--write-checkpoint``, the folder's evaluation.json and its
    MODEL_CARD.md rebuilt by ``model_card(training, folder)``."""
    path = write_results(args.results, result)
    if args.write_checkpoint:
        atomic_write_text(folder / "evaluation.json", json.dumps(result, indent=2) + "\n")
        atomic_write_text(folder / "MODEL_CARD.md", model_card(read_training(folder), folder))
    return path
