"""The token GPT of text -> video codes on the moving world, judged clip by clip.

1. **Sweep** (``--sweep``): classifier-free guidance, temperature and top-p (``--sweep-guidance``,
   ``--sweep-temperature``, ``--sweep-top-p``) on the 56 validation prompts
   (``clip_judge.validation_clip_prompts()``, seen clips only, none in the evaluation list,
   ``--sweep-videos-per-prompt`` clips each). The setting with the best seen accuracy is chosen (ties:
   the better direction accuracy, then the smaller guidance).
2. **Evaluation**: the chosen setting (or ``--guidance/--temperature/--top-p``, default the
   checkpoint's own) on ``world_video.clip_evaluation_prompts()`` (56 seen prompts, 32 with a held-out
   colour pair, 32 with a held-out direction pair; ``--videos-per-prompt`` clips each): prompt accuracy
   (object, colour, background and direction right: ``clip_judge``) per group, each attribute's
   accuracy, the share of consistent clips (one object and one colour throughout), seconds per clip
   (codes and decoding, in calls of at most 256 prompts), and the codebook usage of the codes written.
3. **Ceilings**: the judge on real clips of the same prompts (``MovingWorld("all")``, a fixed seed),
   and on those clips encoded and decoded by the checkpoint's VQ-VAE, whose PSNR on them is reported
   too. With ``--world-judge`` the image world's judge (``world_judge.load_or_train_judge()``, or a
   judge file) reads the real clips frame by frame as well, to show why the clip judge has its own
   frame judge. ``--real-only`` measures only the ceilings on real clips, with no GPT.

Targets: seen accuracy at least 90 % of the real clips' ceiling, each held-out group at least 70 %.

    python -m benchmarks.text_to_video --gpt runs/text2video-gpt/model --sweep
    python -m benchmarks.text_to_video --gpt text2video-gpt --write-checkpoint
    python -m benchmarks.text_to_video --real-only --world-judge   # the judges on real clips only
    python -m benchmarks.text_to_video --real-only --vq checkpoints/video-vq runs/vq/model   # VQ-VAEs' ceilings

Results: ``benchmarks/results/text_to_video.json`` (``text_to_video_real.json`` with ``--real-only``;
``--results NAME``: ``NAME.json``; the sweep in ``NAME_sweep.json``); ``--out FILE`` writes the
evaluation there instead (and the sweep beside it).
With ``--write-checkpoint`` the evaluation also lands in the GPT folder's ``evaluation.json`` and its
card.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from multimodal.checkpoint import atomic_write_text
from multimodal.data.world_video import MovingWorld, clip_evaluation_prompts
from multimodal.errors import InputError
from multimodal.evaluation.clip_judge import (GROUPS, clip_accuracy, describe, frame_judge_training, judge_clips,
                                              load_or_train_frame_judge, validation_clip_prompts)
from multimodal.evaluation.text_to_image import REAL_SEED, in_calls, to_uint8
from multimodal.evaluation.world_judge import Judge, load_or_train_judge
from multimodal.models import VQVAE
from multimodal.models.autoencoders.quantizer import codebook_usage
from multimodal.models.text2codes import MAX_ITEMS_PER_CALL, TextToCodes
from multimodal.paths import resolve_model
from multimodal.training.runs import read_training
from multimodal.training.text2codes import model_card
from multimodal.training.vqvae import codebook_report

from .common import markdown_table, write_results

GUIDANCE = (1.5, 2.0, 3.0, 4.0, 6.0)
TEMPERATURE = (0.7, 0.85, 1.0)
TOP_P = (None, 0.9)
DECODE_BATCH = 32          # clips per VQ-VAE decode: a Conv3d decoder's activations grow with it
SEEN_TARGET, HELD_OUT_TARGET = 0.9, 0.7  # seen: this share of the real clips' ceiling; held out: this accuracy


def _top_p(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _repeat(prompts: list[dict], per: int) -> list[dict]:
    return [p for p in prompts for _ in range(per)]


def _few(prompts: list[dict], per_group: int | None) -> list[dict]:
    """The first ``per_group`` prompts of each group (seen, held-out colour, held-out direction)."""
    if per_group is None:
        return prompts
    taken: dict[tuple, int] = {}
    out = []
    for p in prompts:
        kind = tuple(p["held_out"])
        if taken.get(kind, 0) < per_group:
            taken[kind] = taken.get(kind, 0) + 1
            out.append(p)
    return out


def _motions(prompts: list[dict]) -> list[tuple]:
    return [(p["object"], p["colour"], p["background"], p["direction"]) for p in prompts]


@torch.no_grad()
def round_trip(vqvae: VQVAE, clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips through a video VQ-VAE (encode, decode) -> uint8 clips."""
    return torch.cat([to_uint8(vqvae.decode(vqvae.encode(part.float() / 127.5 - 1)).clamp(-1, 1))
                      for part in clips.split(DECODE_BATCH)])


def sample_and_judge(model: TextToCodes, judge: Judge, prompts: list[dict], *, guidance_scale: float,
                     temperature: float, top_p: float | None, top_k: int | None = None) -> dict:
    """One row: every prompt sampled with the fixed seed (``in_calls``), timed (codes and decoding),
    judged (``clip_accuracy``), with the codebook usage of the codes written."""
    start = time.perf_counter()
    codes = in_calls(model.generate, prompts, MAX_ITEMS_PER_CALL, guidance_scale=guidance_scale,
                     temperature=temperature, top_k=top_k, top_p=top_p, decode=False)
    with torch.no_grad():
        clips = torch.cat([to_uint8(model.decode_codes(part)) for part in codes.split(DECODE_BATCH)])
    seconds = time.perf_counter() - start
    return {"guidance_scale": guidance_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "clips": len(prompts), "seconds_per_clip": seconds / len(prompts),
            "codebook_usage": codebook_usage(codes, model.config.gpt.codebook_size),
            **clip_accuracy(judge_clips(judge, clips, prompts), prompts)}


def targets(row: dict, ceiling: dict) -> dict:
    """Whether ``row`` meets the targets: seen >= SEEN_TARGET x the ceiling's seen accuracy, each held-out
    group >= HELD_OUT_TARGET."""
    out = {}
    if "seen_accuracy" in row:
        goal = SEEN_TARGET * ceiling["seen_accuracy"]
        out["seen"] = {"goal": goal, "met": row["seen_accuracy"] >= goal}
    for group in GROUPS[1:]:
        if f"{group}_accuracy" in row:
            out[group] = {"goal": HELD_OUT_TARGET, "met": row[f"{group}_accuracy"] >= HELD_OUT_TARGET}
    return out


def _pct(row: dict, key: str) -> str:
    return f"{100 * row[key]:.1f} %" if key in row else ""


def _table(rows: dict[str, dict]) -> str:
    keys = [f"{g}_accuracy" for g in GROUPS] + [f"{a}_accuracy" for a in ("object", "colour", "background",
                                                                          "direction")] + ["consistency"]
    return markdown_table(["clips", "seen", "held-out colour", "held-out direction", "object", "colour",
                           "background", "direction", "consistent"],
                          [[name, *(_pct(r, k) for k in keys)] for name, r in rows.items()])


def main(argv=None, *, judge: Judge | None = None, fashion=None) -> dict:
    """Run the benchmark (see the module docstring); ``judge`` (a frame judge) and ``fashion`` (garments
    for ``MovingWorld``) replace the cached judge and Fashion-MNIST, for tests. -> the results written."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_to_video", description=__doc__.split("\n")[0])
    parser.add_argument("--gpt", default="text2video-gpt", help="text -> video codes folder or name")
    parser.add_argument("--videos-per-prompt", type=int, default=4, help="clips of each evaluation prompt")
    parser.add_argument("--guidance", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--temperature", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--top-p", type=_top_p, default="none",
                        help="a number in (0, 1] (1: off); default: the checkpoint's")
    parser.add_argument("--sweep", action="store_true", help="choose guidance, temperature and top-p first")
    parser.add_argument("--sweep-videos-per-prompt", type=int, default=2, help="clips of each validation prompt")
    parser.add_argument("--sweep-guidance", type=float, nargs="+", default=list(GUIDANCE))
    parser.add_argument("--sweep-temperature", type=float, nargs="+", default=list(TEMPERATURE))
    parser.add_argument("--sweep-top-p", type=_top_p, nargs="+", default=list(TOP_P), help="numbers or none")
    parser.add_argument("--prompts-per-group", type=int, default=None,
                        help="only the first N prompts of each group (a quick look; the full lists by default)")
    parser.add_argument("--world-judge", nargs="?", const="cached", default=None,
                        help="also read the real clips with the image world's judge (the cached one, or this file)")
    parser.add_argument("--real-only", action="store_true",
                        help="only the judge's ceilings on real clips (no GPT; results: text_to_video_real)")
    parser.add_argument("--vq", nargs="+", default=[], metavar="FOLDER",
                        help="also the ceiling of real clips through these video VQ-VAEs (e.g. with --real-only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-checkpoint", action="store_true", help="write evaluation.json into the GPT folder")
    parser.add_argument("--results", default=None,
                        help="name of the results file in benchmarks/results/ (default text_to_video, or "
                             "text_to_video_real with --real-only)")
    parser.add_argument("--out", default=None, help="results JSON path (default benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    for name in ("videos_per_prompt", "sweep_videos_per_prompt", "prompts_per_group", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')}: expected an int >= 1, found {value}")
    args.results = args.results or ("text_to_video_real" if args.real_only else "text_to_video")
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m benchmarks.text_to_video", *(sys.argv[1:] if argv is None else argv)])
    if args.real_only and (args.sweep or args.write_checkpoint):
        raise InputError("--real-only: expected without --sweep and --write-checkpoint (there is no GPT to run), "
                         "found them together")
    folder = model = None
    if not args.real_only:
        folder = resolve_model(args.gpt)
        model = TextToCodes.from_pretrained(folder).eval()
        if model.config.kind != "video":
            raise InputError(f"--gpt: expected a text -> video codes checkpoint (kind 'video'), found kind "
                             f"{model.config.kind!r} in {folder}")
    judge = judge or load_or_train_frame_judge()
    out = Path(args.out) if args.out else None
    results = {"command": command, "gpt": str(folder) if folder else None, "judge": describe(judge),
               "judge_training": frame_judge_training(judge), "videos_per_prompt": args.videos_per_prompt}

    # the ceilings: the judge on real clips of the evaluation prompts
    prompts = _repeat(_few(clip_evaluation_prompts(), args.prompts_per_group), args.videos_per_prompt)
    results["prompts"] = len(prompts) // args.videos_per_prompt
    real = MovingWorld("all", fashion=fashion).render(_motions(prompts), REAL_SEED)
    ceilings = {"real clips": clip_accuracy(judge_clips(judge, real, prompts), prompts)}
    if args.world_judge:
        image_judge = load_or_train_judge() if args.world_judge == "cached" else Judge.load(args.world_judge)
        name = "real clips, the image world's judge per frame"
        ceilings[name] = {**clip_accuracy(judge_clips(image_judge, real, prompts), prompts),
                          "judge": image_judge.description}
    if model is not None:
        ceilings["real clips through the VQ-VAE"] = clip_accuracy(judge_clips(judge, round_trip(model.vqvae, real),
                                                                              prompts), prompts)
    for name in args.vq:
        vqvae = VQVAE.from_pretrained(resolve_model(name)).eval()
        if vqvae.config.dims != 3:
            raise InputError(f"--vq: expected a VQ-VAE of videos (dims 3), found dims {vqvae.config.dims} in {name}")
        ceilings[f"real clips through {name}"] = clip_accuracy(judge_clips(judge, round_trip(vqvae, real), prompts),
                                                               prompts)
    results["ceilings"] = ceilings
    if model is None:
        print(_table(ceilings))
        path = write_results(args.results, results, path=out)
        print(f"wrote {path}")
        return results

    c = model.config
    chosen = {"guidance_scale": c.guidance_scale if args.guidance is None else args.guidance,
              "temperature": c.temperature if args.temperature is None else args.temperature,
              "top_p": c.top_p if args.top_p is None else args.top_p}
    if args.sweep:
        validation = _repeat(_few(validation_clip_prompts(), args.prompts_per_group), args.sweep_videos_per_prompt)
        rows = []
        for g, t, p in itertools.product(args.sweep_guidance, args.sweep_temperature, args.sweep_top_p):
            row = sample_and_judge(model, judge, validation, guidance_scale=g, temperature=t, top_p=p)
            rows.append(row)
            print(f"guidance {g}, temperature {t}, top-p {p}: seen {100 * row['seen_accuracy']:.1f} %, "
                  f"direction {100 * row['direction_accuracy']:.1f} %", flush=True)
        best = min(rows, key=lambda r: (-r["seen_accuracy"], -r["direction_accuracy"], r["guidance_scale"]))
        chosen = {k: best[k] for k in ("guidance_scale", "temperature", "top_p")}
        print(f"chosen {chosen} (validation seen {100 * best['seen_accuracy']:.1f} %)")
        write_results(f"{args.results}_sweep", {
            "command": command, "gpt": str(folder), "judge": describe(judge),
            "prompts": f"validation_clip_prompts() x {args.sweep_videos_per_prompt}", "rows": rows, "chosen": chosen},
            path=out.with_name(out.stem + "_sweep.json") if out else None)

    row = sample_and_judge(model, judge, prompts, **chosen)
    report = codebook_report(model.vqvae, real)
    vq = {"psnr": report["psnr"], "usage_on_real_clips": report["usage"], "perplexity": report["perplexity"]}
    met = targets(row, ceilings["real clips"])
    print()
    print(_table({"generated": row, **ceilings}))
    print()
    print(f"setting: guidance {chosen['guidance_scale']}, temperature {chosen['temperature']}, "
          f"top-p {chosen['top_p']}; "
          f"{row['seconds_per_clip']:.4f} s per clip; codebook usage of the written codes "
          f"{100 * row['codebook_usage']:.1f} %; VQ-VAE PSNR on the real clips {vq['psnr']:.2f} dB")
    for group, t in met.items():
        print(f"target {group}: {100 * row[f'{group}_accuracy']:.1f} % >= {100 * t['goal']:.1f} %: "
              f"{'met' if t['met'] else 'NOT met'}")
    results.update(setting=chosen, row=row, vq=vq, targets=met)
    path = write_results(args.results, results, path=out)
    if args.write_checkpoint:
        atomic_write_text(folder / "evaluation.json", json.dumps(results, indent=2) + "\n")
        info = read_training(folder)
        if info:  # a trained folder: its card gains the evaluation
            atomic_write_text(folder / "MODEL_CARD.md", model_card(info, folder))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
