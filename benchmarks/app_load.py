"""The app under load: concurrent API requests to every tab, over loopback, against the real app.

The app (``multimodal.app.build()``, its queue and per-tab limits as served by ``make run``) is
launched in this process on 127.0.0.1 and driven through ``gradio_client``:

1. **Per tab**: ``--requests`` (default 20) requests submitted at once to one tab (Classify: the
   shipped example images; Transcribe: the shipped example clips; Text → Image: SiT, 10 steps, one
   image each, fixed seeds), then every answer awaited.
2. **Mixed**: the same number again, spread over the three tabs, at once.
3. **Over the queue**: ``QUEUE_MAX_SIZE + 8`` slow requests at once, to see the ones beyond the
   queue refused at once with a message rather than left waiting.
4. **Still serving**: one request per tab afterwards.

Reported: failures (goal 0 in 1, 2 and 4), p50 / p95 latency from submission to answer, the
requests' wall time, peak resident memory of the server process, and what the refused requests
were told. Nothing leaves the machine; everything is bounded (``--requests`` at most 100).

    python -m benchmarks.app_load                 # -> benchmarks/results/app_load.json
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from typing import Any, Callable

from benchmarks.common import machine_info, markdown_table, write_results


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """The highest resident memory of this process, sampled every 50 ms while running."""

    def __init__(self):
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def run_batch(submit: list[Callable[[], Any]], check: list[Callable[[Any], bool]]) -> dict:
    """Submit every request at once, await each; latency from its submission to its answer."""
    start = time.perf_counter()
    jobs = []
    for fn in submit:
        t0, job = time.perf_counter(), fn()
        finished: list[float] = []
        job.add_done_callback(lambda _, finished=finished: finished.append(time.perf_counter()))
        jobs.append((t0, job, finished))
    latencies, failures, messages = [], 0, {}
    for (t0, job, finished), ok in zip(jobs, check):
        try:
            good = ok(job.result())
        except Exception as e:  # noqa: BLE001 (every failure is counted and its message kept)
            good, message = False, " ".join(str(e).split())[:160]
            messages[message] = messages.get(message, 0) + 1
        if good:
            latencies.append((finished[0] if finished else time.perf_counter()) - t0)
        else:
            failures += 1
    wall = time.perf_counter() - start
    return {"requests": len(submit), "failures": failures, "p50_s": _percentile(latencies, 0.5),
            "p95_s": _percentile(latencies, 0.95), "wall_s": wall, "messages": messages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="concurrent requests per run (default 20)")
    parser.add_argument("--results", default="app_load", help="name of the results file")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100:
        parser.error(f"--requests: expected 1 to 100, found {args.requests}")

    from gradio_client import Client, handle_file

    from multimodal import app
    from multimodal.app import classify, common, transcribe

    images = classify.example_images()
    clips = transcribe.EXAMPLES
    prompts = ["a red circle on a black background", "a yellow sneaker on a navy background",
               "a green t-shirt on a black background"]

    def classify_request(client, i):
        return lambda: client.submit(handle_file(images[i % len(images)]), 3, "none", api_name="/classify")

    def transcribe_request(client, i):
        return lambda: client.submit(handle_file(clips[i % len(clips)]), 1, True, "none", api_name="/transcribe")

    def image_request(client, i, steps=10):
        return lambda: client.submit(prompts[i % len(prompts)], "SiT", "default", steps, 4.0, False, i, 1, 1.0, 0,
                                     1.0, "none", api_name="/generate")

    checks = {
        "classify": lambda r: isinstance(r, (list, tuple)) and bool(r[1].get("label")),
        "transcribe": lambda r: isinstance(r, (list, tuple)) and len(r[0].split()) >= 3,
        "text-to-image": lambda r: isinstance(r, (list, tuple)) and len(r[0]) == 1,
    }
    makers = {"classify": classify_request, "transcribe": transcribe_request, "text-to-image": image_request}

    demo = app.build()
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True,
                max_file_size=common.MAX_FILE_SIZE)
    runs: dict[str, dict] = {}
    try:
        client = Client(demo.local_url, verbose=False)
        for tab, make in makers.items():  # load each model once, outside the timed runs
            make(client, 0)().result()
        baseline = _rss_mb()
        with PeakMemory() as memory:
            for tab, make in makers.items():
                n = args.requests
                runs[tab] = run_batch([make(client, i) for i in range(n)], [checks[tab]] * n)
                print(f"{tab}: {runs[tab]}", flush=True)
            order = list(makers)
            mixed = [order[i % 3] for i in range(args.requests)]
            runs["mixed"] = run_batch([makers[t](client, i) for i, t in enumerate(mixed)], [checks[t] for t in mixed])
            print(f"mixed: {runs['mixed']}", flush=True)
            over = common.QUEUE_MAX_SIZE + 8
            runs["over_the_queue"] = run_batch([image_request(client, i, steps=50) for i in range(over)],
                                               [checks["text-to-image"]] * over)
            print(f"over the queue: {runs['over_the_queue']}", flush=True)
            after = run_batch([make(client, 1) for make in makers.values()], list(checks.values()))
            runs["still_serving"] = after
        peak = memory.peak
    finally:
        demo.close()

    served = ("classify", "transcribe", "text-to-image", "mixed", "still_serving")
    data = {
        "command": "python -m benchmarks.app_load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "queue_max_size": common.QUEUE_MAX_SIZE,
        "concurrency": {"classify": classify.CONCURRENCY, "transcribe": transcribe.CONCURRENCY,
                        "text-to-image": app.text_to_image.CONCURRENCY},
        "runs": runs,
        "failures_served": sum(runs[k]["failures"] for k in served),
        "memory_mb": {"after_loading_models": baseline, "peak": peak},
    }
    path = write_results(args.results, data)
    rows = [[k, r["requests"], r["failures"], f"{r['p50_s']:.2f}" if r["p50_s"] is not None else "-",
             f"{r['p95_s']:.2f}" if r["p95_s"] is not None else "-", f"{r['wall_s']:.1f}"] for k, r in runs.items()]
    print(markdown_table(["run", "requests", "failures", "p50 s", "p95 s", "wall s"], rows))
    print(f"peak memory {peak:.0f} MB (models loaded: {baseline:.0f} MB); refused beyond the queue: "
          f"{runs['over_the_queue']['messages']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
