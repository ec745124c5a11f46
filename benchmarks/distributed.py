"""Data-parallel training on the CPU: the text-to-image recipe on one process against two gloo
processes under torchrun (DDP and FSDP2), same global batch, same steps.

On a machine with 2 cores this measures the launch path and its overhead, not scaling: one
process already uses both cores (2 threads), and two processes get one thread each, so the ideal
ratio is 1.0 and the communication (gradient all-reduce, FSDP's all-gathers and reduce-scatters over
loopback TCP) shows as a loss. Each configuration trains in a fresh run folder; throughput is the
median examples/s of its logged windows (the first window, with start-up, dropped), as the trainer
logs it.

    python -m benchmarks.distributed            # -> results/distributed.json
    python -m benchmarks.distributed --steps 20 # a shorter run; writes only with --out
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import RESULTS, machine_info, markdown_table, write_results

REPO = Path(__file__).resolve().parent.parent
SIT = REPO / "checkpoints" / "text2image-sit"


def recipe(out_dir: Path, steps: int, parallel: str) -> list[str]:
    return ["-m", "multimodal", "train", "text2image", "--vae", str(SIT / "vae"), "--tokenizer",
            str(SIT / "tokenizer.json"), "--width", "128", "--depth", "4", "--heads", "4", "--text-width", "128",
            "--text-depth", "2", "--text-heads", "4", "--max-steps", str(steps), "--batch-size", "32",
            "--log-every", "5", "--eval-every", "0", "--save-every", "0", "--out-dir", str(out_dir),
            "--device", "cpu", "--parallel", parallel, "--no-progress"]


def run(name: str, args: list[str], threads: int, out_dir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["examples_per_s"] for r in records if r.get("kind") == "train"][1:]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    return {"examples_per_s": statistics.median(speeds), "windows": len(speeds), "final_loss": losses[-1],
            "threads_per_process": threads}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per configuration (default 60)")
    p.add_argument("--out", default=None, help="results JSON (default results/distributed.json; none with --steps)")
    args = p.parse_args(argv)
    steps = args.steps or 60
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="multimodal-distributed-") as tmp:
        configs = {"1 process, 2 threads": ([], "ddp", 2), "2 processes DDP, 1 thread each": (torchrun, "ddp", 1),
                   "2 processes FSDP2, 1 thread each": (torchrun, "fsdp", 1)}
        for name, (launcher, parallel, threads) in configs.items():
            out_dir = Path(tmp) / name.split(",")[0].replace(" ", "-")
            results[name] = run(name, [*launcher, *recipe(out_dir, steps, parallel)], threads, out_dir)
            print(f"  {name}: {results[name]['examples_per_s']:.1f} examples/s", flush=True)
    base = results["1 process, 2 threads"]["examples_per_s"]
    rows = [[n, r["examples_per_s"], r["examples_per_s"] / base, r["final_loss"]] for n, r in results.items()]
    table = markdown_table(["text2image (SiT recipe, width 128, depth 4, batch 32)", "examples/s",
                            "vs 1 process", f"loss at step {steps}"], rows)
    print(table)
    result = {"steps": steps, "machine": machine_info(), "results": results, "table": table}
    if args.out or args.steps is None:
        print(f"wrote {write_results('distributed', result, args.out or RESULTS / 'distributed.json')}")
    return result


if __name__ == "__main__":
    main()
