"""One training step (forward, backward, AdamW) in float32 and under bf16 autocast, with three attentions.

Two models, each at its shipped recipe:

- ``text2image``: ``TextToImageConfig()`` with the recipe autoencoder's shape (an 8.7 M parameter DiT
  over 8x8x4 latents, text encoder, frozen autoencoder), batch 128 images and captions of the world;
- ``vit``: the shipped Fashion-MNIST ViT (patch 4, width 128, depth 6; 50 tokens), batch 128 of
  random 28x28 grey images and labels.

Variants, timed interleaved:

- ``float32``: no autocast (what ``--amp none`` trains in);
- ``bf16``: ``torch.autocast("cpu", bfloat16)`` as ``--amp bf16`` trains; attention is
  ``multimodal.backbone.attention.attend``, which under CPU autocast runs ``attend_bf16`` (the two attention
  matmuls in bfloat16 around a float32 softmax);
- ``bf16, float32 SDPA``: attention as SDPA on float32 copies (what ``attend`` did before);
- ``bf16, bf16 SDPA``: SDPA left in bfloat16, as plain autocast would run it.

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

import multimodal.backbone.attention as backbone_attention
from multimodal.training.vit import RECIPE_MODEL
from multimodal.data.world import CaptionedWorld
from multimodal.models.autoencoder import Autoencoder, AutoencoderConfig
from multimodal.models.text2image import TextToImage, TextToImageConfig
from multimodal.models.vit import ViT, ViTConfig
from multimodal.training.text2image import train_caption_tokenizer

from .common import interleaved, markdown_table, median, write_results

VAE_SHAPE = dict(block_out_channels=(16, 32, 64), norm_num_groups=8)  # the recipe autoencoder's (README)


def _bf16_sdpa(q, k, v, mask, is_causal, dropout_p):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)


def _float32_sdpa(q, k, v, mask, is_causal, dropout_p):
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                              is_causal=is_causal, dropout_p=dropout_p).to(q.dtype)


def cpu_has_amx() -> bool:
    try:
        return "amx_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def text2image_case(batch_size: int, quick: bool, device: str = "cpu", fashion=None):
    """(model, loss function, description) of the text-to-image recipe on ``device``; ``fashion``: the
    world's garments (default Fashion-MNIST's)."""
    config = TextToImageConfig()
    if quick:
        config = dataclasses.replace(config, denoiser=config.denoiser.replace(width=64, depth=2, heads=2))
    autoencoder = Autoencoder(AutoencoderConfig(**VAE_SHAPE, latent_channels=config.denoiser.in_channels))
    tokenizer = train_caption_tokenizer(config.text.vocab_size, corpus=[])
    model = TextToImage(config, tokenizer, autoencoder).to(device).train()
    batch = CaptionedWorld("train", fashion=fashion).sample(batch_size, torch.Generator().manual_seed(0))

    def loss():
        return model.loss(batch.images, list(batch.captions), generator=torch.Generator().manual_seed(1))
    return model, loss, {"denoiser": config.denoiser.to_dict()}


def vit_case(batch_size: int, quick: bool, device: str = "cpu", fashion=None):
    """(model, loss function, description) of the recipe's Fashion-MNIST ViT shape (28x28, patch 4,
    linear patch map; drop-path 0.05 as the runs use), which the recorded results measured. (The
    shipped checkpoint uses a patch-8 convolutional stem: 17 tokens, a far cheaper step.) Random
    images: ``fashion`` is not used."""
    config = ViTConfig(image_size=28, in_channels=1, num_classes=10, image_mode="L", drop_path=0.05, **RECIPE_MODEL)
    if quick:
        config = config.replace(width=64, depth=2)
    model = ViT(config).to(device).train()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, config.in_channels, *config.image_size, generator=g).to(device)
    labels = torch.randint(0, config.num_classes, (batch_size,), generator=g).to(device)

    def loss():
        return F.cross_entropy(model(images), labels, label_smoothing=0.1)
    return model, loss, {"vit": config.to_dict()}


CASES = {"text2image": text2image_case, "vit": vit_case}


def training_step(loss_fn, optimizer, amp: bool, device: str = "cpu", attention=None):
    """A function that runs one step (forward under ``device``'s bf16 autocast when ``amp``,
    backward, AdamW); ``attention`` replaces ``multimodal.backbone.attention.attend`` for the step."""
    def run():
        patch = contextlib.nullcontext() if attention is None else _patched(attention)
        with patch, torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=["text2image", "vit"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny models and batch; writes nothing unless --out")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.repeats = 8, 3
    results = {}
    for name in args.models:
        torch.manual_seed(0)
        model, loss_fn, description = CASES[name](args.batch, args.quick)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(amp: bool, attention=None):
            return training_step(loss_fn, optimizer, amp, attention=attention)

        variants = {"float32": step(False), "bf16": step(True), "bf16, float32 SDPA": step(True, _float32_sdpa),
                    "bf16, bf16 SDPA": step(True, _bf16_sdpa)}
        times = interleaved(variants, repeats=args.repeats, warmup=1)
        base = median(times["float32"])
        rows = [{"variant": v, "seconds_per_step": median(t), "images_per_s": args.batch / median(t),
                 "speedup_vs_float32": base / median(t)} for v, t in times.items()]
        print(f"{name} ({'quick' if args.quick else 'recipe'}), batch {args.batch}:")
        print(markdown_table(["variant", "s / step", "images / s", "× float32"],
                             [[r["variant"], r["seconds_per_step"], r["images_per_s"], r["speedup_vs_float32"]]
                              for r in rows]))
        results[name] = {**description, "quick": args.quick, "rows": rows, "raw_seconds": times}
    if not args.quick or args.out:
        path = write_results("train_step", {"batch_size": args.batch, "repeats": args.repeats,
                                            "cpu_has_amx_bf16": cpu_has_amx(), "models": results}, args.out)
        print(f"wrote {path}")


@contextlib.contextmanager
def _patched(attention):
    real = backbone_attention.attend
    backbone_attention.attend = attention
    try:
        yield
    finally:
        backbone_attention.attend = real


if __name__ == "__main__":
    main()
