"""What limits the text -> video GPT: how much of the object it has learned, and how fast 2 cores train it.

1. **The GPT as an object classifier.** Real clips of the 56 validation prompts
   (``clip_judge.validation_clip_prompts()``, seen combinations, none in the evaluation list;
   ``--clips-per-prompt`` renders each, a fixed seed) are coded by the GPT's VQ-VAE, and the GPT scores
   their codes under the canonical caption of each of the 16 objects (the clip's own colour, background
   and direction). The object whose caption gives the codes the highest likelihood is the GPT's guess:
   its accuracy says how much of "which object" the GPT has learned, with no sampling involved
   (chance: 1 in 16). Also the guess from the first time slice of codes alone, and the teacher-forced
   nats per code under the true caption.
2. **Picking the best of several samples by the GPT's own scores** (``--best-of N``): N clips of each
   validation prompt are sampled at the checkpoint's sampling defaults (a fixed seed), scored
   teacher-forced by the GPT, and read by the clip judge (``clip_judge.load_or_train_frame_judge()``).
   Three ways to keep one clip per prompt: the highest log-likelihood under the prompt; the highest
   pointwise mutual information with the prompt (log-likelihood under the prompt minus under the
   empty prompt); the highest posterior of the asked object (the codes scored under the prompt with
   each of the 16 objects, as in part 1). Against them: a random pick (the mean accuracy of all the
   samples) and the oracle (some sample of the prompt is right). If a score picks better than random,
   the pipeline could sample N and keep the best.
3. **Compute** (``--compute``): one training step of the GPT (forward, backward, AdamW; float32, the CPU
   default) at ``--batch-size`` clips, its floating-point operations counted by
   ``torch.utils.flop_counter.FlopCounterMode``, against a float32 matmul of 1024 x 1024 matrices on the
   same threads, timed interleaved (``benchmarks.common.interleaved``). -> the step's rate as a share of
   the matmul rate, and the clips an hour of training steps sees at that pace.

    python -m benchmarks.text_to_video_limits --gpt text2video-gpt runs/other/model --compute
    python -m benchmarks.text_to_video_limits --gpt text2video-gpt --best-of 8 --results text_to_video_best_of

Results: ``benchmarks/results/text_to_video_limits.json`` (``--results NAME``: ``NAME.json``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from multimodal.data.world_video import OBJECTS, MovingWorld, canonical_clip_caption
from multimodal.errors import InputError
from multimodal.evaluation.clip_judge import judge_clips, load_or_train_frame_judge, validation_clip_prompts
from multimodal.evaluation.text_to_image import in_calls, to_uint8
from multimodal.evaluation.world_judge import Judge
from multimodal.models.text2codes import MAX_ITEMS_PER_CALL, TextToCodes
from multimodal.paths import resolve_model

from .common import interleaved, median, write_results
from .text_to_video import DECODE_BATCH

SEED = 1234
MATMUL = 1024


def code_log_likelihoods(model: TextToCodes, captions: list[str] | torch.Tensor, codes: torch.Tensor,
                         batch: int = 64) -> torch.Tensor:
    """log p(code i | caption, codes before i) under the GPT, teacher-forced: ``[N, num_codes]``.
    ``captions``: texts, or their token ids ``[N, P]`` (such as the empty prompt of guidance)."""
    ids = model.tokenize(list(captions)) if not isinstance(captions, torch.Tensor) else captions
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            c = codes[start:start + batch]
            logits = model.gpt(ids[start:start + batch], c).float()
            out.append(F.log_softmax(logits, -1).gather(-1, c[..., None])[..., 0])
    return torch.cat(out)


def object_scores(model: TextToCodes, prompts: list[dict], codes: torch.Tensor) -> torch.Tensor:
    """``[N, 16, num_codes]``: log p(code i | the canonical caption of each object, with the prompt's
    colour, background and direction, and the codes before i)."""
    return torch.stack([code_log_likelihoods(model, [canonical_clip_caption((obj, p["colour"], p["background"],
                                                                             p["direction"])) for p in prompts],
                                             codes) for obj in OBJECTS], 1)


def object_classifier(model: TextToCodes, clips_per_prompt: int, fashion=None) -> dict:
    """Part 1 of the module docstring for one GPT (``fashion``: garments for the world, for tests)."""
    prompts = [p for p in validation_clip_prompts() for _ in range(clips_per_prompt)]
    clips = MovingWorld("all", fashion=fashion).render([(p["object"], p["colour"], p["background"], p["direction"]) for p in prompts],
                                      torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        codes = torch.cat([model.codes_of(part.float() / 127.5 - 1) for part in clips.split(64)])
    first_slice = codes.shape[1] // model.config.gpt.grid[0]
    log_p = object_scores(model, prompts, codes)
    whole, first = log_p.sum(2), log_p[..., :first_slice].sum(2)
    truth = torch.tensor([OBJECTS.index(p["object"]) for p in prompts])
    rows = torch.arange(len(prompts))
    return {"clips": len(prompts),
            "object_accuracy": float((whole.argmax(1) == truth).float().mean()),
            "object_accuracy_first_slice": float((first.argmax(1) == truth).float().mean()),
            "nats_per_code_true_caption": float(-whole[rows, truth].mean() / codes.shape[1])}


def best_of(model: TextToCodes, judge: Judge, n: int, prompts: list[dict] | None = None) -> dict:
    """Part 2 of the module docstring, on ``prompts`` (default the validation prompts)."""
    base = validation_clip_prompts() if prompts is None else prompts
    prompts = [p for p in base for _ in range(n)]
    codes = in_calls(model.generate, prompts, MAX_ITEMS_PER_CALL, decode=False)  # the checkpoint's defaults
    with torch.no_grad():
        clips = torch.cat([to_uint8(model.decode_codes(part)) for part in codes.split(DECODE_BATCH)])
    verdicts = judge_clips(judge, clips, prompts)
    right = np.asarray(verdicts["prompt_correct"], dtype=bool).reshape(-1, n)
    obj = np.asarray(verdicts["object_correct"], dtype=bool).reshape(-1, n)
    ids = model.tokenize([p["caption"] for p in prompts])
    cond = code_log_likelihoods(model, ids, codes).sum(1)
    uncond = code_log_likelihoods(model, torch.full_like(ids, model.gpt.pad_id), codes).sum(1)
    truth = torch.tensor([OBJECTS.index(p["object"]) for p in prompts])
    posterior = F.log_softmax(object_scores(model, prompts, codes).sum(2), 1)[torch.arange(len(prompts)), truth]
    rows = np.arange(len(base))
    out = {"prompts": len(base), "samples_per_prompt": n, "random_pick": float(right.mean()),
           "random_pick_object": float(obj.mean()), "oracle": float(right.any(1).mean())}
    for name, score in (("log_likelihood", cond), ("mutual_information", cond - uncond),
                        ("object_posterior", posterior)):
        pick = score.reshape(-1, n).argmax(1).numpy()
        out[f"{name}_pick"], out[f"{name}_pick_object"] = float(right[rows, pick].mean()), float(obj[rows, pick].mean())
    return out


def compute(model: TextToCodes, batch_size: int, repeats: int) -> dict:
    """Part 3 of the module docstring."""
    gpt = model.gpt.float().train()
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(SEED)
    c = model.config.gpt
    codes = torch.randint(0, c.codebook_size, (batch_size, c.num_codes), generator=g)
    text_ids = torch.randint(0, c.text_vocab, (batch_size, c.text_length), generator=g)

    def step():
        optimizer.zero_grad(set_to_none=True)
        gpt.loss(text_ids, codes, generator=g).backward()
        optimizer.step()

    a, b = torch.randn(MATMUL, MATMUL, generator=g), torch.randn(MATMUL, MATMUL, generator=g)
    with FlopCounterMode(display=False) as counter:
        step()
    step_flops = counter.get_total_flops()
    times = interleaved({"step": step, "matmul": lambda: a @ b}, repeats=repeats, number=1)
    gpt.eval()
    step_s, matmul_s = median(times["step"]), median(times["matmul"])
    step_rate, matmul_rate = step_flops / step_s, 2 * MATMUL ** 3 / matmul_s
    return {"batch_size": batch_size, "tokens_per_clip": c.num_codes + c.text_length,
            "step_gflop": step_flops / 1e9, "step_seconds": step_s, "step_gflop_per_s": step_rate / 1e9,
            "matmul_gflop_per_s": matmul_rate / 1e9, "share_of_matmul_rate": step_rate / matmul_rate,
            "clips_per_hour": 3600 * batch_size / step_s}


def main(argv=None, *, judge: Judge | None = None) -> dict:
    """Run the benchmark; ``judge`` replaces the cached frame judge (for tests)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_to_video_limits",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--gpt", nargs="+", default=["text2video-gpt"], help="text -> video codes folders or names")
    parser.add_argument("--clips-per-prompt", type=int, default=2)
    parser.add_argument("--best-of", type=int, default=None, metavar="N",
                        help="also pick the best of N samples per validation prompt by the GPT's own scores")
    parser.add_argument("--compute", action="store_true", help="also time a training step of the first GPT")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", default="text_to_video_limits")
    args = parser.parse_args(argv)
    for name in ("clips_per_prompt", "batch_size", "repeats", "threads", "best_of"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: expected an int >= 1, found {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    results = {"command": " ".join(["python -m benchmarks.text_to_video_limits",
                                    *(sys.argv[1:] if argv is None else argv)]), "classifier": {}}
    models = {}
    for name in args.gpt:
        folder = resolve_model(name)
        model = models[name] = TextToCodes.from_pretrained(folder).eval()
        if model.config.kind != "video":
            raise InputError(f"--gpt: expected a text -> video codes checkpoint (kind 'video'), found kind "
                             f"{model.config.kind!r} in {folder}")
        row = results["classifier"][name] = object_classifier(model, args.clips_per_prompt)
        print(f"{name}: object from the GPT's likelihoods {100 * row['object_accuracy']:.1f} % "
              f"(first slice {100 * row['object_accuracy_first_slice']:.1f} %), "
              f"{row['nats_per_code_true_caption']:.3f} nats per code", flush=True)
    if args.best_of:
        judge = judge or load_or_train_frame_judge()
        results["best_of"] = {}
        for name, model in models.items():
            row = results["best_of"][name] = best_of(model, judge, args.best_of)
            print(f"{name}: best of {args.best_of} by log-likelihood {100 * row['log_likelihood_pick']:.1f} %, by "
                  f"mutual information {100 * row['mutual_information_pick']:.1f} %, by object posterior "
                  f"{100 * row['object_posterior_pick']:.1f} %; random pick {100 * row['random_pick']:.1f} %, "
                  f"oracle {100 * row['oracle']:.1f} %", flush=True)
    if args.compute:
        row = results["compute"] = {"gpt": args.gpt[0], **compute(models[args.gpt[0]], args.batch_size, args.repeats)}
        print(f"training step of {args.batch_size} clips: {row['step_gflop']:.1f} GFLOP in {row['step_seconds']:.3f} s "
              f"= {row['step_gflop_per_s']:.1f} GFLOP/s, {100 * row['share_of_matmul_rate']:.0f} % of a "
              f"{MATMUL}x{MATMUL} matmul's {row['matmul_gflop_per_s']:.1f} GFLOP/s; "
              f"{row['clips_per_hour']:,.0f} clips per hour")
    print(f"wrote {write_results(args.results, results)}")
    return results


if __name__ == "__main__":
    main()
