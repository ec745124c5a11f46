"""Ship a trained VQ-VAE (of images or of clips) and the text -> codes GPT trained on its codes as
checkpoint folders.

    python -m benchmarks.ship_text2image_gpt --vq runs/vq/model --gpt runs/gpt/model \
        --guidance 1.5 --temperature 0.85 --top-p 0.9
    python -m benchmarks.ship_text2image_gpt --vq runs/video-vq/model --vq-dest checkpoints/video-vq
    python -m benchmarks.ship_text2image_gpt --vq-dest checkpoints/video-vq --gpt runs/text2video-gpt/model \
        --gpt-dest checkpoints/text2video-gpt --guidance 3 --temperature 1.0   # a GPT trained on a shipped VQ-VAE

1. With ``--vq``, the VQ-VAE goes to ``--vq-dest`` (default ``checkpoints/image-vq``) in float16 when its PSNR on the
   training run's final renders stays within ``STORAGE_TOLERANCE_DB`` of float32's (``ship_vqvae``);
   the measures land in its training.json, its card and ``benchmarks/results/<dest name>_storage.json``
   (``image_vq_storage.json`` for ``checkpoints/image-vq``).
2. With ``--gpt``, the GPT goes to ``--gpt-dest`` (default ``checkpoints/text2image-gpt``) in float16
   with that shipped VQ-VAE as ``vq/`` and the sampling defaults given (``ship_text2codes``).

Each destination keeps its ``card_notes.md``. Then score the shipped GPT (float16) beside its run
folder (float32) and write its evaluation and card:

    python -m benchmarks.text_to_image_gpt --gpt checkpoints/text2image-gpt runs/gpt/model \
        --guidance 1.5 --temperature 0.85 --top-p 0.9 --images-per-prompt 8 --write-checkpoint
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multimodal.training.text2codes import ship_text2codes
from multimodal.training.vqvae import ship_vqvae

from .common import write_results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vq", default=None, help="trained VQ-VAE folder (`multimodal train vqvae`'s model/); none: "
                                                   "--vq-dest is already shipped and the GPT was trained on it")
    parser.add_argument("--gpt", default=None, help="trained GPT folder on that VQ-VAE's codes (none: the VQ-VAE only)")
    parser.add_argument("--vq-dest", default="checkpoints/image-vq")
    parser.add_argument("--gpt-dest", default="checkpoints/text2image-gpt")
    parser.add_argument("--guidance", type=float, default=None, help="sampling default: guidance scale (with --gpt)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling default (with --gpt)")
    parser.add_argument("--top-k", type=int, default=None, help="sampling default (none: off)")
    parser.add_argument("--top-p", type=float, default=None, help="sampling default (none: off)")
    args = parser.parse_args(argv)
    if args.gpt and (args.guidance is None or args.temperature is None):
        parser.error("--gpt needs the sampling defaults --guidance and --temperature")
    if not (args.vq or args.gpt):
        parser.error("expected --vq, --gpt or both")
    command = " ".join(["python -m benchmarks.ship_text2image_gpt", *(sys.argv[1:] if argv is None else argv)])
    if args.vq:
        ship_vq(args, command)
    if args.gpt:
        ship_text2codes(args.gpt, args.gpt_dest, args.vq_dest, guidance_scale=args.guidance,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        print(f"{args.gpt_dest}: written with vq/ = {args.vq_dest}")


def ship_vq(args, command: str) -> None:
    check = ship_vqvae(args.vq, args.vq_dest)
    for name in ("seen", "held_out"):
        print(f"{name}: PSNR float32 {check['float32'][name]['psnr']:.3f} dB, "
              f"float16 {check['float16'][name]['psnr']:.3f} dB")
    print(f"{args.vq_dest}: stored in {check['stored_dtype']}")
    write_results(f"{Path(args.vq_dest).name.replace('-', '_')}_storage",
                  {"command": command, "source": args.vq, "dest": args.vq_dest, **check})


if __name__ == "__main__":
    main()
