"""LoRA: what using peft's own layers would cost, against ``multimodal.lora``.

    python -m benchmarks.lora              # -> results/lora_import.json

Each import is timed in a fresh interpreter (``python -c "import torch, X"``), interleaved, and its
peak memory read from the child's resource usage; beside them, the packages each one requires that
a plain install of this suite does not already bring (``importlib.metadata``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import time

from .common import markdown_table, median, write_results

IMPORTS = {"torch": "import torch", "torch + multimodal.lora": "import torch, multimodal.lora",
           "torch + peft": "import torch, peft"}


def _seconds(code: str) -> float:
    """Wall seconds of a fresh interpreter running ``code``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _peak_mb(code: str) -> float:
    """Peak resident MB of a fresh interpreter after ``code``."""
    out = subprocess.run([sys.executable, "-c", code + "; import resource; "
                          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def _requires(name: str) -> list[str]:
    return sorted({re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in md.requires(name) or []
                   if "extra ==" not in r})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    seconds: dict[str, list[float]] = {k: [] for k in IMPORTS}
    for i in range(args.repeats):
        names = list(IMPORTS)
        for name in names[i % len(names):] + names[:i % len(names)]:
            seconds[name].append(_seconds(IMPORTS[name]))
    memory = {name: _peak_mb(code) for name, code in IMPORTS.items()}
    ours = set(_requires("multimodal"))
    extra = [r for r in _requires("peft") if r not in ours and r != "torch"]
    rows = [[name, f"{median(seconds[name]):.2f}", f"{memory[name]:.0f}"] for name in IMPORTS]
    print(markdown_table(["import", "s (median)", "peak MB"], rows))
    print(f"peft requires beyond this suite's own dependencies: {', '.join(extra)}")
    data = {"repeats": args.repeats, "seconds": seconds, "median_seconds": {k: median(v) for k, v in seconds.items()},
            "peak_mb": memory, "peft_version": md.version("peft"), "peft_extra_requirements": extra}
    print(f"wrote {write_results('lora_import', data, args.out)}")
    return data


if __name__ == "__main__":
    main()
