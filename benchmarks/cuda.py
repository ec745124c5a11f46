"""The suite on a CUDA GPU: what the CPU benchmarks and tests cannot check. Needs a CUDA device.

- **denoiser**: our DiT's forward against diffusers' ``DiTTransformer2DModel`` (weights converted,
  outputs compared) in float32 and under bf16 autocast, at the shipped text-to-image config (batch
  190: the 95 evaluation prompts with their unconditional twins) and at DiT-XL/2's (256 px images:
  32x32x4 latents, width 1152, depth 28, 16 heads, patch 2; batch 32);
- **train step**: one step (forward, backward, AdamW) of the text-to-image recipe and of the ViT
  recipe shape, batch 128, float32 and bf16 autocast (``benchmarks.train_step``'s cases);
- **training**: the real trainer (``train_text2image``, device ``cuda``, its default bf16) runs the
  text-to-image recipe from scratch for ``--train-steps`` steps on the shipped autoencoder and
  tokenizer: throughput (data rendering included), the loss before and after, and the published
  model loaded back and sampled on the GPU;
- **pipelines**: each shipped text-to-image model makes the same images on the GPU and on the CPU
  (8 prompts, 25 steps, guidance 4, seed 0; the noise comes from a CPU generator on both), for each
  of its samplers: the largest and mean pixel difference (0-255), whether two GPU runs agree exactly,
  and seconds per image on each device.

The world's garments come from Fashion-MNIST's training split, or ``--fashion FILE.npz`` (arrays
``images`` uint8 [N, 28, 28] and ``labels``; a subset, for a machine without the Debian package).

    python -m benchmarks.cuda                            # writes results/cuda.json (without CUDA: nothing)
    python -m benchmarks.cuda --fashion subset.npz --out /tmp/cuda.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from multimodal import pipeline
from multimodal.data.world import evaluation_prompts
from multimodal.models.dit import DiTConfig
from multimodal.models.text2image import TextToImage
from multimodal.paths import resolve_model

from .common import interleaved, markdown_table, median, write_results
from .text_to_image import denoiser_step_time, dit_pair
from .train_step import text2image_case, training_step, vit_case

XL2 = "dit-xl/2"  # 256 px images: 32x32x4 latents


def synchronized(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def denoiser_rows(repeats: int) -> list[dict]:
    shipped = TextToImage.from_pretrained(resolve_model("text2image-dit")).config.denoiser
    rows = []
    for config, batch in ((shipped, 2 * len(evaluation_prompts())), (DiTConfig.preset(XL2), 32)):
        for amp in (None, torch.bfloat16):
            rows.append(denoiser_step_time(config, batch, repeats, device="cuda", amp=amp))
    return rows


def profile_xl_bf16(top: int = 12) -> dict:
    """Where the time of one DiT-XL/2 forward goes under bf16 autocast, ours and diffusers': the
    ``top`` CUDA kernels by total time (torch.profiler, 5 calls after 3 warm-ups)."""
    from torch.profiler import ProfilerActivity, profile

    ours, theirs, x, t, y = dit_pair(DiTConfig.preset(XL2), 32, "cuda")
    out = {}
    for name, fn in (("ours", lambda: ours(x, t, class_labels=y)),
                     ("diffusers", lambda: theirs(x, timestep=t, class_labels=y).sample)):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    fn()
                torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
        events.sort(key=lambda e: -e.self_device_time_total)
        total = sum(e.self_device_time_total for e in events)
        out[name] = {"cuda_ms_per_call": total / 5 / 1000,
                     "kernels": [{"name": e.key[:90], "calls_per_forward": e.count / 5,
                                  "ms_per_forward": e.self_device_time_total / 5 / 1000} for e in events[:top]]}
        print(f"{name}: {out[name]['cuda_ms_per_call']:.1f} ms of kernels per forward")
        for k in out[name]["kernels"]:
            print(f"  {k['ms_per_forward']:7.2f} ms  x{k['calls_per_forward']:<5g} {k['name']}")
    return out


def train_step_rows(fashion, repeats: int, batch: int = 128) -> dict:
    out = {}
    for name, case in (("text2image", text2image_case), ("vit", vit_case)):
        torch.manual_seed(0)
        model, loss_fn, description = case(batch, False, device="cuda", fashion=fashion)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        times = interleaved({"float32": synchronized(training_step(loss_fn, optimizer, False, "cuda")),
                             "bf16": synchronized(training_step(loss_fn, optimizer, True, "cuda"))},
                            repeats=repeats, warmup=3)
        out[name] = {**description, "batch": batch,
                     "rows": [{"variant": v, "seconds_per_step": median(t), "images_per_s": batch / median(t)}
                              for v, t in times.items()]}
    return out


def training_run(fashion, steps: int, device: str = "cuda") -> dict:
    import json

    from multimodal.training import text2image as t2i
    shipped = Path(resolve_model("text2image-dit"))
    config = TextToImage.from_pretrained(shipped).config  # the recipe's architecture, trained afresh
    with tempfile.TemporaryDirectory() as tmp:
        tc = t2i.RECIPE_TRAIN.replace(out_dir=tmp, max_steps=steps, device=device, eval_every=0, save_every=0,
                                      log_every=10, warmup_steps=min(100, steps // 4))
        start = time.perf_counter()
        info = t2i.train_text2image(tmp, vae=shipped / "vae", config=config, train_config=tc,
                                    tokenizer=shipped / "tokenizer.json", fashion=fashion, progress=False)
        wall = time.perf_counter() - start
        logged = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in logged if r.get("kind") == "train"]
        pipe = pipeline("text-to-image", model=str(Path(tmp) / "model"), device=device)
        pipe.set_progress_bar_config(disable=True)
        images = pipe(["a red circle on a black background"] * 4, num_inference_steps=10, generator=0,
                      output_type="np")
    return {"steps": steps, "batch_size": tc.batch_size, "wall_seconds": wall, "amp": info["train_config"]["amp"],
            "examples_per_s": info["examples_per_s"], "device": info["device"],
            "first_logged_losses": losses[:3], "last_logged_losses": losses[-3:], "final_eval": info["final_eval"],
            "sampled_after_training": {"shape": list(images.shape), "finite": bool(np.isfinite(images).all()),
                                       "pixel_std": float(images.std())}}


def pipeline_rows(prompts: list[str], steps: int = 25, guidance: float = 4.0, device: str = "cuda") -> list[dict]:
    rows = []
    for name in ("text2image-dit", "text2image-sit"):
        pipes = {"cpu": pipeline("text-to-image", model=name, device="cpu"),
                 "gpu": pipeline("text-to-image", model=name, device=device)}
        for pipe in pipes.values():
            pipe.set_progress_bar_config(disable=True)
        for sampler in pipes["cpu"].samplers:
            def run(device):
                start = time.perf_counter()
                out = pipes[device](prompts, num_inference_steps=steps, guidance_scale=guidance, sampler=sampler,
                                    generator=0, output_type="np")
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                return np.round(out * 255), (time.perf_counter() - start) / len(prompts)
            run("gpu")  # warm-up
            cpu, cpu_s = run("cpu")
            gpu, gpu_s = run("gpu")
            again, _ = run("gpu")
            diff = np.abs(cpu - gpu)
            rows.append({"model": name, "sampler": sampler, "steps": steps, "images": len(prompts),
                         "max_pixel_difference": float(diff.max()), "mean_pixel_difference": float(diff.mean()),
                         "gpu_repeat_identical": bool((gpu == again).all()),
                         "cpu_seconds_per_image": cpu_s, "gpu_seconds_per_image": gpu_s})
            print(rows[-1], flush=True)
    return rows


def load_fashion(path: str | None):
    if path is None:
        return None
    data = np.load(path)
    return data["images"], data["labels"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda", description=__doc__.split("\n")[0])
    parser.add_argument("--fashion", default=None, help="garments .npz (images, labels); default Fashion-MNIST")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--parts", nargs="+", default=["denoiser", "train_step", "training", "pipelines"],
                        choices=["denoiser", "profile", "train_step", "training", "pipelines"])
    parser.add_argument("--out", default=None, help="results JSON (default results/cuda.json)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():  # not a failure: `make bench` runs every benchmark on any machine
        print("benchmarks.cuda: no CUDA device here; nothing measured")
        return
    fashion = load_fashion(args.fashion)
    results = {"gpu": torch.cuda.get_device_name(0)}
    if "denoiser" in args.parts:
        results["denoiser"] = rows = denoiser_rows(args.repeats)
        print(markdown_table(["config", "batch", "dtype", "ours ms", "diffusers ms", "ours / diffusers", "max diff"],
                             [[f"w{r['config']['width']} d{r['config']['depth']} p{r['config']['patch_size']} "
                               f"{r['config']['latent']}", r["config"]["batch"], r["dtype"], r["ours_ms"],
                               r["diffusers_ms"], r["ours_over_diffusers_time"], r["max_abs_difference"]]
                              for r in rows]), flush=True)
    if "profile" in args.parts:
        results["profile_xl_bf16"] = profile_xl_bf16()
    if "train_step" in args.parts:
        results["train_step"] = steps = train_step_rows(fashion, args.repeats)
        print(markdown_table(["model", "variant", "s / step", "images / s"],
                             [[name, r["variant"], r["seconds_per_step"], r["images_per_s"]]
                              for name, v in steps.items() for r in v["rows"]]), flush=True)
    if "training" in args.parts:
        results["training"] = run = training_run(fashion, args.train_steps)
        print(run, flush=True)
    if "pipelines" in args.parts:
        prompts = [p["caption"] for p in evaluation_prompts()[::12]][:8]
        results["pipelines"] = pipeline_rows(prompts)
    path = write_results("cuda", results, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
