"""Scores of text-to-image models on the captioned world, as the world judge
(``multimodal.evaluation.world_judge``) sees their images.

- ``prompt_accuracy``: the share of images whose object, colour and background the judge finds
  right, over the seen and over the held-out prompts (``world.evaluation_prompts()`` marks them);
- ``evaluate_images``: that, the per-attribute accuracies, the accuracy per object and a Fréchet
  distance in the judge's feature space against real renders of the same prompts;
- ``sample_and_score``: one evaluation row, every prompt sampled with a fixed seed, timed, scored
  (``sample_and_score_gpt`` for a token GPT, with the codebook usage of the codes it wrote);
- ``autoencoder_ceiling``: the judge on real renders passed through a model's autoencoder (or
  VQ-VAE), what a perfect denoiser of those latents (or writer of those codes) would score;
- ``validation_prompts`` and ``best_scale``: the prompts on which sampling settings (guidance) are
  chosen, disjoint from the evaluation prompts, and the choice itself.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..data.world import BACKGROUNDS, COLOURS, OBJECTS, Combo, canonical_caption, evaluation_prompts, is_held_out
from ..models.autoencoders.quantizer import codebook_usage
from ..models.text2codes import MAX_ITEMS_PER_CALL, TextToCodes
from ..models.text2image import MAX_IMAGES_PER_CALL, TextToImage
from .frechet import frechet_distance

REAL_SEED, SAMPLE_SEED = 30_001, 30_002  # the real renders compared against, and the generated samples


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def prompt_accuracy(score: dict, prompts: list[dict]) -> dict:
    """A judge score's prompt accuracy over the seen and over the held-out prompts (a group with no
    prompt has no entry)."""
    correct = np.asarray(score["prompt_correct"], dtype=bool)
    held = np.array([p["held_out"] for p in prompts])
    return {f"{name}_accuracy": float(correct[mask].mean())
            for name, mask in (("seen", ~held), ("held_out", held)) if mask.any()}


@torch.no_grad()
def vq_ceiling(model: TextToCodes, judge, real: torch.Tensor, prompts: list[dict]) -> dict:
    """The judge on real renders encoded to codes and decoded by the model's VQ-VAE."""
    with torch.no_grad():
        coded = model.vqvae.decode(model.vqvae.encode(real.float() / 127.5 - 1)).clamp(-1, 1)
    return prompt_accuracy(judge.score(to_uint8(coded), prompts), prompts)


def in_calls(generate, prompts: list[dict], limit: int, **options) -> torch.Tensor:
    """``generate`` on the prompts' captions with the fixed seed: in one call, or, past ``limit``
    prompts, in calls of ``limit`` in turn drawing from one generator; the outputs concatenated."""
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    captions = [p["caption"] for p in prompts]
    return torch.cat([generate(captions[i:i + limit], generator=generator, **options)
                      for i in range(0, len(captions), limit)])


def sample_and_score_gpt(model: TextToCodes, judge, prompts: list[dict], real_features: np.ndarray, *,
                         guidance_scale: float, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, keep_images: bool = False) -> dict:
    """One evaluation row of a token GPT: every prompt sampled with the fixed seed (``in_calls``),
    timed (codes and decoding), scored; with the codebook usage of the codes it wrote (and, with ``keep_images``, the
    uint8 images under ``"images"``, for another judge)."""
    start = time.perf_counter()
    codes = in_calls(model.generate, prompts, MAX_ITEMS_PER_CALL, guidance_scale=guidance_scale,
                     temperature=temperature, top_k=top_k, top_p=top_p, decode=False)
    with torch.no_grad():
        images = model.decode_codes(codes)
    seconds = time.perf_counter() - start
    images = to_uint8(images)
    return {"guidance_scale": guidance_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "seconds_per_image": seconds / len(prompts),
            "codebook_usage": codebook_usage(codes, model.config.gpt.codebook_size),
            **evaluate_images(judge, images, prompts, real_features), **({"images": images} if keep_images else {})}


def autoencoder_ceiling(model: TextToImage, judge, real: torch.Tensor, prompts: list[dict]) -> dict:
    """The judge on real renders passed through the model's autoencoder: what a perfect denoiser of
    these latents would score."""
    coded = torch.cat([model.autoencoder.decode(model.autoencoder.encode(part)) for part in real.split(256)])
    return prompt_accuracy(judge.score(to_uint8(coded), prompts), prompts)


def per_object_accuracy(score: dict, prompts: list[dict]) -> dict:
    """Prompt accuracy over the images of each object, in the order the objects first appear."""
    correct = np.asarray(score["prompt_correct"], dtype=bool)
    objects = np.array([p["object"] for p in prompts])
    return {o: float(correct[objects == o].mean()) for o in dict.fromkeys(objects.tolist())}


def evaluate_images(judge, images: torch.Tensor, prompts: list[dict], real_features: np.ndarray) -> dict:
    """uint8 images [N, 3, 32, 32], one prompt dict each -> prompt accuracies (seen / held out), object,
    colour and background accuracy, the Fréchet distance to ``real_features`` and accuracy per object."""
    score = judge.score(images, prompts)
    return {**prompt_accuracy(score, prompts),
            "object_accuracy": score["rates"]["object"], "colour_accuracy": score["rates"]["colour"],
            "background_accuracy": score["rates"]["background"],
            "frechet": float(frechet_distance(judge.features(images), real_features)),
            "per_object": per_object_accuracy(score, prompts)}


def sample_and_score(model: TextToImage, sampler: str, steps: int, guidance: float, judge, prompts: list[dict],
                     real_features: np.ndarray, keep_images: bool = False) -> dict:
    """One evaluation row: every prompt sampled with the fixed seed (``in_calls``), timed, scored by the judge (with
    ``keep_images``, the uint8 images under ``"images"``)."""
    start = time.perf_counter()
    images = in_calls(model.generate, prompts, MAX_IMAGES_PER_CALL, num_inference_steps=steps,
                      guidance_scale=guidance, sampler=sampler)
    seconds = time.perf_counter() - start
    images = to_uint8(images)
    return {"sampler": sampler, "steps": steps, "seconds_per_image": seconds / len(prompts),
            **evaluate_images(judge, images, prompts, real_features), **({"images": images} if keep_images else {})}


def validation_prompts() -> list[dict]:
    """64 seen combinations for tuning sampling settings, disjoint from ``world.evaluation_prompts()``
    and with no held-out combination: one per (object, background), colour ``(object + 3 *
    background + 4) % 8`` moved on past held-out, white-on-white and evaluated combinations. Same
    dict layout as ``evaluation_prompts`` (``held_out`` always False). It lives here, not in
    world.py, because world.py's source keys the judge's cache."""
    evaluated = {(p["object"], p["colour"], p["background"]) for p in evaluation_prompts()}
    colours, prompts = list(COLOURS), []
    for o, obj in enumerate(OBJECTS):
        for b, background in enumerate(BACKGROUNDS):
            c = (o + 3 * b + 4) % len(colours)
            while is_held_out(obj, colours[c]) or (colours[c], background) == ("white", "white") \
                    or (obj, colours[c], background) in evaluated:
                c = (c + 1) % len(colours)
            combo = Combo(obj, colours[c], background)
            prompts.append({"caption": canonical_caption(combo), **combo._asdict(), "held_out": False})
    return prompts


def best_scale(rows: list[dict]) -> float:
    """The scale of the row with the highest seen accuracy; ties go to the smaller scale."""
    return min(rows, key=lambda r: (-r["seen_accuracy"], r["guidance_scale"]))["guidance_scale"]
