"""One text-to-image training step (forward, backward, AdamW) in float32 and under bf16 autocast.

The model is the recipe's (``TextToImageConfig()`` with the recipe autoencoder's shape: an 8.7 M
parameter DiT over 8x8x4 latents, text encoder, frozen autoencoder), the batch the recipe's (128
images and captions of the captioned world). Three variants, timed interleaved:

- ``float32``: no autocast (what ``--amp none`` trains in);
- ``bf16``: ``torch.autocast("cpu", bfloat16)`` as ``--amp bf16`` trains, where our attention
  (``multimodal.backbone.attend``) runs SDPA in float32;
- ``bf16, bf16 attention``: the same, but SDPA left in bfloat16 as plain autocast would run it.

On CPUs with AMX (``amx_bf16``) bf16 matmuls are several times faster; without native bf16 the
bf16 rows are slower than float32, and ``--amp none`` (the CPU default) is the right choice.

    python -m benchmarks.train_step --threads 1        # writes results/train_step.json
    python -m benchmarks.train_step --quick            # a smoke run, writes nothing unless --out
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

import torch
import torch.nn.functional as F

import multimodal.backbone as backbone
from multimodal.data.world import CaptionedWorld
from multimodal.models.autoencoder import Autoencoder, AutoencoderConfig
from multimodal.models.text2image import TextToImage, TextToImageConfig
from multimodal.training.text2image import train_caption_tokenizer

from .common import interleaved, markdown_table, median, write_results

VAE_SHAPE = dict(block_out_channels=(16, 32, 64), norm_num_groups=8)  # the recipe autoencoder's (README)


def _bf16_attention(q, k, v, mask, is_causal, dropout_p):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)


def cpu_has_amx() -> bool:
    try:
        return "amx_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a tiny model and batch; writes nothing unless --out")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TextToImageConfig()
    if args.quick:
        config = dataclasses.replace(config, denoiser=config.denoiser.replace(width=64, depth=2, heads=2))
        args.batch, args.repeats = 8, 3
    autoencoder = Autoencoder(AutoencoderConfig(**VAE_SHAPE, latent_channels=config.denoiser.in_channels))
    tokenizer = train_caption_tokenizer(config.text.vocab_size, corpus=[])
    model = TextToImage(config, tokenizer, autoencoder).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = CaptionedWorld("train").sample(args.batch, torch.Generator().manual_seed(0))

    def step(amp: bool, attention=None):
        def run():
            patch = (contextlib.nullcontext() if attention is None else _patched(attention))
            with patch, torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = model.loss(batch.images, list(batch.captions), generator=torch.Generator().manual_seed(1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return run

    variants = {"float32": step(False), "bf16": step(True), "bf16, bf16 attention": step(True, _bf16_attention)}
    times = interleaved(variants, repeats=args.repeats, warmup=1)
    base = median(times["float32"])
    rows = [{"variant": name, "seconds_per_step": median(t), "images_per_s": args.batch / median(t),
             "speedup_vs_float32": base / median(t)} for name, t in times.items()]
    print(markdown_table(["variant", "s / step", "images / s", "× float32"],
                         [[r["variant"], r["seconds_per_step"], r["images_per_s"], r["speedup_vs_float32"]]
                          for r in rows]))
    if not args.quick or args.out:
        path = write_results("train_step", {
            "model": "TextToImage recipe config" + (" (quick: tiny)" if args.quick else ""),
            "denoiser": config.denoiser.to_dict(), "batch_size": args.batch, "repeats": args.repeats,
            "cpu_has_amx_bf16": cpu_has_amx(), "rows": rows, "raw_seconds": times}, args.out)
        print(f"wrote {path}")


@contextlib.contextmanager
def _patched(attention):
    real = backbone.attend
    backbone.attend = attention
    try:
        yield
    finally:
        backbone.attend = real


if __name__ == "__main__":
    main()
