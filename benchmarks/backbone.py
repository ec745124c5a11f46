"""Throughput of our block stack against torch.nn.TransformerEncoderLayer and timm's ViT Block.

All three stacks are pre-norm, exact-GELU, qkv-biased, no final norm, and compute the same
function once our weights are copied into the other two (checked before timing, in both modes).
Forward runs in eval mode under ``torch.inference_mode()``: there nn.TransformerEncoderLayer takes
its native fused "fastpath", as users get it. Forward+backward runs in train mode (dropout 0).

    python -m benchmarks.backbone            # full config, writes results/backbone.json
    python -m benchmarks.backbone --quick    # tiny smoke config, writes nothing unless --out
"""

from __future__ import annotations

import argparse
import functools
import os

import timm
import torch
from timm.layers import LayerNorm as TimmLayerNorm
from timm.models.vision_transformer import Block as TimmBlock
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from multimodal.backbone import BackboneConfig, Transformer

from .common import RESULTS, interleaved, markdown_table, median, write_results

FULL = dict(width=384, depth=6, heads=6, seq=256, batch=16, repeats=9, warmup=1)
QUICK = dict(width=64, depth=2, heads=4, seq=32, batch=2, repeats=5, warmup=1)
MODELS = ("ours", "torch", "timm")

# Our per-block parameter -> (nn.TransformerEncoderLayer's, timm Block's). All three keep the fused
# input projection as rows [q | k | v], heads contiguous within each, so it copies unchanged.
WEIGHT_MAP = {
    "norm1.weight": ("norm1.weight", "norm1.weight"),
    "norm1.bias": ("norm1.bias", "norm1.bias"),
    "attn.qkv.weight": ("self_attn.in_proj_weight", "attn.qkv.weight"),
    "attn.qkv.bias": ("self_attn.in_proj_bias", "attn.qkv.bias"),
    "attn.out.weight": ("self_attn.out_proj.weight", "attn.proj.weight"),
    "attn.out.bias": ("self_attn.out_proj.bias", "attn.proj.bias"),
    "norm2.weight": ("norm2.weight", "norm2.weight"),
    "norm2.bias": ("norm2.bias", "norm2.bias"),
    "mlp.fc1.weight": ("linear1.weight", "mlp.fc1.weight"),
    "mlp.fc1.bias": ("linear1.bias", "mlp.fc1.bias"),
    "mlp.fc2.weight": ("linear2.weight", "mlp.fc2.weight"),
    "mlp.fc2.bias": ("linear2.bias", "mlp.fc2.bias"),
}


def build(width: int, depth: int, heads: int) -> dict[str, nn.Module]:
    cfg = BackboneConfig(width=width, depth=depth, heads=heads, mlp="gelu", positions="none", final_norm=False)
    layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=4 * width, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True,
                                       layer_norm_eps=cfg.norm_eps)
    # timm's default LayerNorm eps is 1e-6; use ours (and torch's) 1e-5 so the functions are equal.
    norm = functools.partial(TimmLayerNorm, eps=cfg.norm_eps)
    models = {
        "ours": Transformer(cfg),
        "torch": nn.TransformerEncoder(layer, depth, enable_nested_tensor=False),
        "timm": nn.Sequential(*(TimmBlock(dim=width, num_heads=heads, mlp_ratio=4, qkv_bias=True, norm_layer=norm)
                                for _ in range(depth))),
    }
    copy_weights(models)
    return models


@torch.no_grad()
def copy_weights(models: dict[str, nn.Module]) -> None:
    for ours, ref_torch, ref_timm in zip(models["ours"].blocks, models["torch"].layers, models["timm"]):
        src = dict(ours.named_parameters())
        for column, ref in enumerate((ref_torch, ref_timm)):
            dst = dict(ref.named_parameters())
            names = {v[column] for v in WEIGHT_MAP.values()}
            assert set(src) == set(WEIGHT_MAP) and set(dst) == names, (set(src) ^ set(WEIGHT_MAP), set(dst) ^ names)
            for ours_name, ref_names in WEIGHT_MAP.items():
                dst[ref_names[column]].copy_(src[ours_name])


class OpNames(TorchDispatchMode):
    """Records the aten ops that run (the ones that reach the kernels, after autograd)."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def verify(models: dict[str, nn.Module], x: torch.Tensor, tol: float = 1e-4) -> dict:
    """Outputs of the references against ours in eval (inference mode) and train mode; also whether
    torch's eval forward ran its fused fastpath."""
    diffs = {}
    for mode in ("eval", "train"):
        outs = {}
        for name, model in models.items():
            model.train(mode == "train")
            with torch.inference_mode(mode == "eval"), OpNames() as ops:
                outs[name] = model(x).detach()
            if name == "torch" and mode == "eval":  # the fastpath is one fused op per layer
                fastpath = "aten._transformer_encoder_layer_fwd" in ops.names
        for name in MODELS[1:]:
            diffs[f"{mode}/{name}"] = d = (outs[name] - outs["ours"]).abs().max().item()
            assert d <= tol, f"{name} differs from ours in {mode} mode by {d:.3g} > {tol}"
    return {"max_abs_diff": diffs, "tolerance": tol, "torch_eval_fastpath": fastpath}


def forward_fn(model: nn.Module, x: torch.Tensor):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def train_fn(model: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    def run():
        model.zero_grad(set_to_none=True)
        model(x).backward(grad)
    return run


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in FULL:
        p.add_argument(f"--{flag}", type=int, default=None, help=f"default {FULL[flag]} ({QUICK[flag]} with --quick)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny smoke config")
    p.add_argument("--out", default=None, help="results JSON (default results/backbone.json; none with --quick)")
    args = p.parse_args(argv)
    cfg = {k: v if (v := getattr(args, k)) is not None else (QUICK if args.quick else FULL)[k] for k in FULL}
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models = build(cfg["width"], cfg["depth"], cfg["heads"])
    x = torch.randn(cfg["batch"], cfg["seq"], cfg["width"])
    check = verify(models, x)
    tokens = cfg["batch"] * cfg["seq"]
    grad = torch.randn_like(x)

    raw = {}
    for model in models.values():
        model.eval()
    raw["forward"] = interleaved({n: forward_fn(m, x) for n, m in models.items()}, cfg["repeats"], cfg["warmup"])
    for model in models.values():
        model.train()
    raw["forward+backward"] = interleaved({n: train_fn(m, x, grad) for n, m in models.items()},
                                          cfg["repeats"], cfg["warmup"])

    medians = {mode: {n: median(ts) for n, ts in times.items()} for mode, times in raw.items()}
    rows, summary, ratios = [], [], {}
    for mode, med in medians.items():
        best = min(MODELS[1:], key=med.get)
        # Throughput ratio of the medians, and the median of per-repeat ratios (each repeat times
        # ours and the reference back to back, so drift between repeats cancels).
        ratio = med[best] / med["ours"]
        paired = median([b / o for b, o in zip(raw[mode][best], raw[mode]["ours"])])
        ratios[mode] = {"faster_reference": best, "ours_over_faster": ratio, "paired_median": paired}
        for n in MODELS:
            label = n + (" (fastpath)" if n == "torch" and mode == "forward" and check["torch_eval_fastpath"] else "")
            rows.append([mode, label, 1e3 * med[n], 1e3 * min(raw[mode][n]), 1e3 * max(raw[mode][n]),
                         tokens / med[n], med[n] / med["ours"]])
        summary.append([mode, best, f"{ratio:.3f}", f"{paired:.3f}", "yes" if ratio >= 1 else "NO"])

    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads, float32 CPU; "
          f"width {cfg['width']}, depth {cfg['depth']}, heads {cfg['heads']}, batch {cfg['batch']} x seq {cfg['seq']}, "
          f"median of {cfg['repeats']} interleaved repeats; load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores")
    print("max |ref - ours|: " + ", ".join(f"{k} {v:.2g}" for k, v in check["max_abs_diff"].items())
          + f"; torch eval fastpath used: {check['torch_eval_fastpath']}\n")
    print(markdown_table(["mode", "model", "ms/iter", "min ms", "max ms", "tokens/s", "its ms / ours"], rows))
    print()
    print(markdown_table(["mode", "faster reference", "ours / faster", "paired per-repeat", "goal >= 1.0"], summary))

    result = {"config": {**cfg, "threads": args.threads, "dtype": "float32", "device": "cpu", "quick": args.quick},
              "versions": {"torch": torch.__version__, "timm": timm.__version__},
              "verification": check, "median_s": medians, "raw_s": raw, "ratios": ratios,
              "tokens_per_s": {mode: {n: tokens / t for n, t in med.items()} for mode, med in medians.items()},
              "notes": "forward: eval + torch.inference_mode(), torch model on its native fastpath when "
                       "torch_eval_fastpath; forward+backward: train mode, dropout 0, grads set to None each iter"}
    if args.out or not args.quick:
        print(f"\nwrote {write_results('backbone', result, args.out or RESULTS / 'backbone.json')}")
    return result


if __name__ == "__main__":
    main()
