"""Classifier-free guidance (Ho & Salimans): on a denoiser's prediction, and on a token model's logits.

Classifier-free guidance (``classifier_free_guidance``) runs the conditional and the unconditional
(``drop_condition=True``) copies of a batch in one forward pass and extrapolates all C prediction
channels: u + s (c - u); extra channels come from the conditional half.
"""

from __future__ import annotations

import torch

from .sampling import ModelFn, check_guidance


def classifier_free_guidance(model_fn: ModelFn, x: torch.Tensor, t, guidance_scale: float = 1.0,
                             model_kwargs: dict | None = None, channels: int | None = None) -> torch.Tensor:
    """The prediction for x at t, guided: u + s (c - u) over the first ``channels`` (default: x's
    channel count) of the conditional c and unconditional u predictions, computed in one batch of
    2B (conditional rows first, then the same rows with ``drop_condition=True``). Further output
    channels (learned variance) are the conditional ones. Scale 1 is one plain conditional call.

    ``model_kwargs`` tensors whose first dimension is B (labels, text, masks) are repeated for the
    second half; anything else is passed as is."""
    kwargs = dict(model_kwargs or {})
    scale = check_guidance(guidance_scale)
    if scale == 1.0:
        return model_fn(x, t, **kwargs)
    B = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    t = t.expand(B) if t.ndim == 0 else t
    # rows already unconditional (an empty prompt) stay so in the conditional half
    given = kwargs.pop("drop_condition", None)
    given = torch.zeros(B, dtype=torch.bool, device=x.device) if given is None else given.to(x.device)
    twice = {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == B else v
             for k, v in kwargs.items()}
    drop = torch.cat([given, torch.ones(B, dtype=torch.bool, device=x.device)])
    out = model_fn(torch.cat([x, x]), torch.cat([t, t]), drop_condition=drop, **twice)
    cond, uncond = out[:B], out[B:]
    C = channels or x.shape[1]
    guided = uncond[:, :C] + scale * (cond[:, :C] - uncond[:, :C])
    return torch.cat([guided, cond[:, C:]], dim=1) if cond.shape[1] > C else guided


def guide_logits(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Guided next-token logits ``uncond + s (cond - uncond)``; scale 1 gives ``cond`` itself."""
    scale = check_guidance(guidance_scale)
    return cond if scale == 1.0 else uncond + scale * (cond - uncond)
