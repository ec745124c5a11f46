"""Autoregressive decoding for every modality: one token per step through a KV cache, with
temperature, top-k, top-p (nucleus) and classifier-free guidance on logits.

The model is anything with ``prefix(text_ids) -> [B, P, W]``, ``embed_codes(codes) -> [B, L, W]``,
``logits(x, cache) -> [B, L, K]`` and ``new_cache(batch)`` (``TokenGPT`` is one).

Randomness is drawn per row before the loop: row i's uniform numbers come from its own generator
(``generator`` may be a list, one per row as in diffusers, or one generator that seeds a stream per
row), and a token is chosen by inverse-CDF sampling of the filtered distribution. So the same seed
gives the same tokens, a row's tokens do not depend on the other rows in the batch or their order,
and decoding through the cache equals recomputing the whole prefix at every step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError
from .guidance import guide_logits
from .sampling import check_guidance, progress_or_plain


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """InputError for a temperature <= 0, a negative or non-integer top_k, or top_p outside (0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise InputError(f"temperature: expected a finite number > 0, found {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise InputError(f"top_k: expected None, 0 (off) or a positive integer, found {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not (0 < top_p <= 1)):
        raise InputError(f"top_p: expected None or a number in (0, 1], found {top_p!r}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Probabilities ``[B, K]`` after temperature, top-k (the k most likely tokens; 0 or None: all)
    and top-p (the smallest set of most likely tokens whose mass reaches p)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # float32 at least
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens ranked above
        keep_sorted = before < top_p  # a token stays while the mass before it is short of p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = probs * keep
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_from(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: for rows ``probs [B, K]`` and uniforms ``u [B]`` in [0, 1), the first
    token whose cumulative probability exceeds u (never a token of probability 0)."""
    cdf = probs.double().cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]
    index = torch.searchsorted(cdf, u.double()[:, None].to(cdf.device), right=True).clamp_max(probs.shape[-1] - 1)
    # A token of zero mass has the same cdf as the one before it; searchsorted(right) skips it.
    return index.squeeze(-1)


def row_uniforms(batch: int, length: int, generator) -> torch.Tensor:
    """``[batch, length]`` uniforms, row i from its own stream (see the module docstring)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch:
            raise InputError(f"generator: expected one generator per image ({batch}), found {len(generator)}")
        gens = list(generator)
    else:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(f"generator: expected a torch.Generator, a list of them or None, "
                             f"found {type(generator).__name__}")
        seeds = torch.randint(0, 2 ** 62, (batch,), generator=generator)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return torch.stack([torch.rand(length, generator=g, device=g.device).cpu() for g in gens])


@torch.no_grad()
def generate_tokens(model, text_ids: torch.Tensor, length: int, *, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None, guidance_scale: float = 1.0,
                    null_ids: torch.Tensor | None = None, generator=None, use_cache: bool = True,
                    progress: Callable | None = None) -> torch.Tensor:
    """``length`` tokens ``[B, length]`` after the prompts ``text_ids [B, P]``.

    ``guidance_scale`` != 1 runs the prompts and ``null_ids`` (the empty prompt, same shape) in one
    batch of 2B and samples from ``uncond + s (cond - uncond)``. ``top_k=1`` is greedy.
    ``use_cache=False`` recomputes the whole sequence at every step (slow; for checking the cache).
    """
    check_sampling(temperature, top_k, top_p)
    scale = check_guidance(guidance_scale)
    B = text_ids.shape[0]
    guided = scale != 1.0
    if guided:
        if null_ids is None or null_ids.shape != text_ids.shape:
            raise InputError(f"null_ids: expected the empty prompt in the shape of text_ids {tuple(text_ids.shape)} "
                             f"for guidance, found {None if null_ids is None else tuple(null_ids.shape)}")
        text_ids = torch.cat([text_ids, null_ids.to(text_ids.device)])
    u = row_uniforms(B, length, generator)
    out = torch.empty(B, length, dtype=torch.long, device=text_ids.device)
    prefix = model.prefix(text_ids)
    cache = model.new_cache(prefix.shape[0]) if use_cache else None
    logits = model.logits(prefix, cache)[:, -1]
    for t in progress_or_plain(progress)(range(length), desc="tokens"):
        step = guide_logits(logits[:B], logits[B:], scale) if guided else logits
        token = sample_from(filter_logits(step, temperature, top_k, top_p), u[:, t]).to(out.device)
        out[:, t] = token
        if t == length - 1:
            break
        token = torch.cat([token, token]) if guided else token
        if use_cache:
            logits = model.logits(model.embed_codes(token[:, None]), cache)[:, -1]
        else:
            codes = torch.cat([out[:, :t + 1]] * (2 if guided else 1))
            logits = model.logits(torch.cat([prefix, model.embed_codes(codes)], dim=1))[:, -1]
    return out


@torch.no_grad()
def generate_delayed(model, voice_ids: torch.Tensor, text_ids: torch.Tensor, *, max_frames: int | None = None,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     guidance_scale: float = 1.0, generator=None, use_cache: bool = True,
                     progress: Callable | None = None) -> list[torch.Tensor]:
    """Residual codes of a delay-pattern model with durations (``TextToSpeechGPT``): the text encoder
    says how many frames each symbol lasts, then one step writes a token of every level, level l
    lagging l frames, until every level of every row has written its frames (at most ``max_frames``:
    longer speech is cut there). Returns one ``[levels, frames]`` LongTensor per row.

    Sampling is per level, as ``generate_tokens`` samples a token (temperature, top-k, top-p,
    guidance against the same voice and durations with the empty text), from row i's own uniforms:
    the same seed gives the same codes, a row does not depend on the rest of the batch, and the KV
    cache equals recomputing the sequence. EMPTY is never sampled.
    """
    check_sampling(temperature, top_k, top_p)
    scale = check_guidance(guidance_scale)
    c = model.config
    max_frames = c.max_frames if max_frames is None else max_frames
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or not 1 <= max_frames <= c.max_frames:
        raise InputError(f"max_frames: expected a whole number from 1 to {c.max_frames}, found {max_frames!r}")
    B, L = text_ids.shape[0], c.levels
    states, log_frames = model.encode(voice_ids, text_ids)
    durations = model.durations(log_frames, text_ids)
    frames = durations.sum(-1).clamp(1, max_frames).cpu()  # [B]
    steps = c.steps(int(frames.max()))
    condition = model.frame_condition(states, durations, steps)
    guided = scale != 1.0
    if guided:
        null = model.frame_condition(states, durations, steps, drop=torch.ones(B, dtype=torch.bool))
        voice_ids, condition = torch.cat([voice_ids, voice_ids]), torch.cat([condition, null])
    u = row_uniforms(B, steps * L, generator).view(B, steps, L)
    tokens = torch.full((B, steps, L), model.empty_id, dtype=torch.long)
    empty = torch.arange(steps)[:, None] - torch.arange(L)[None]  # [steps, L]: the frame each level writes
    empty = (empty[None] < 0) | (empty[None] >= frames[:, None, None])  # [B, steps, L]
    cache = model.new_cache(condition.shape[0]) if use_cache else None
    previous = model.bos(condition.shape[0])
    for s in progress_or_plain(progress)(range(steps), desc="frames"):
        if use_cache:
            x = model.step_inputs(previous, condition[:, s:s + 1], voice_ids)
            logits = model.logits(x, cache)[:, -1]
        else:
            seq = torch.cat([tokens[:, :s]] * (2 if guided else 1)).to(condition.device)
            x = model.step_inputs(torch.cat([model.bos(condition.shape[0]), seq], dim=1), condition[:, :s + 1],
                                  voice_ids)
            logits = model.logits(x)[:, -1]
        step = (guide_logits(logits[:B], logits[B:], scale) if guided else logits).float().cpu()  # [B, L, K]
        probs = filter_logits(step.reshape(B * L, -1), temperature, top_k, top_p)
        token = sample_from(probs, u[:, s].reshape(-1)).view(B, L)
        token = torch.where(empty[:, s], torch.full_like(token, model.empty_id), token)
        tokens[:, s] = token
        feed = torch.cat([token, token]) if guided else token
        previous = feed[:, None].to(condition.device)
    return [model.undelay(tokens[i], int(frames[i])) for i in range(B)]
