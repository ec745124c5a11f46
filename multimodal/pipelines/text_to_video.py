"""Text-to-video with a token GPT over the codes of a video VQ-VAE (``TextToCodes`` of kind video:
``checkpoints/text2video-gpt``).

``TextToVideoPipeline`` (task ``"text-to-video"``) answers as diffusers' ``TextToVideoSDPipeline``::

    pipe = multimodal.pipeline("text-to-video")
    out = pipe("a red circle moving left on a black background", num_videos_per_prompt=2,
               generator=torch.Generator().manual_seed(0))
    out.frames[0]      # the first video: 16 PIL frames of 32x32
    out.warnings       # one line per problem with a prompt (words the model never read, ...)

Videos come prompt by prompt, each prompt's ``num_videos_per_prompt`` together. ``output_type``:
``"pil"`` (``.frames[i]`` is video i's list of frames), ``"np"`` (``.frames`` a float array
``[N, T, H, W, 3]`` in [0, 1]) or ``"pt"`` (a float tensor ``[N, T, 3, H, W]`` in [0, 1]).
``multimodal.media.video.write_video(out.frames[0], "clip.mp4")`` writes one as a file.

Sampling: ``guidance_scale`` (classifier-free, against the empty prompt), ``temperature``, ``top_k``
(``1``: greedy) and ``top_p``; left None, each takes the checkpoint's default (its ``config.json``).
``num_inference_steps`` is accepted and unused: the GPT writes one code per step, every code of the
clip. ``generator``: a ``torch.Generator``, an int seed, or a list of either, one per video; the same
seed gives the same videos, and with a list a video does not depend on the other videos of the call.

The model knows the moving world's captions (``multimodal.data.world_video``: an object, a colour, a
direction and a background). Any other text still generates, with a warning: words the model never
read in training (from the checkpoint's ``vocabulary.txt``) cannot steer the video.
``pipe.prompt_warnings(prompt)`` gives the same lines without generating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..checkpoint import CONFIG_NAME
from ..config import read_json
from ..data.world_video import canonical_clip_caption, parse_clip_caption
from ..errors import InputError
from ..generation.autoregressive import check_sampling
from ..generation.sampling import check_guidance
from ..models.text2codes import MAX_ITEMS_PER_CALL, TextToCodes
from ..tokenizers.words import read_vocabulary, unknown_words
from .base import Pipeline, as_generators, check_generators, is_int, text_list
from .text_to_image import _quote, parses

DEFAULT_MODEL = "text2video-gpt"
OUTPUT_TYPES = ("pil", "np", "pt")
MAX_VIDEOS_PER_PROMPT = 16


@dataclass
class VideoPipelineOutput:
    """``frames``: the videos, prompt by prompt: a list of lists of PIL frames (``output_type="pil"``),
    a float array ``[N, T, H, W, 3]`` (``"np"``) or a float tensor ``[N, T, 3, H, W]`` (``"pt"``),
    in [0, 1]. ``warnings``: one line per problem with a prompt; empty when there is none."""

    frames: list[list[Image.Image]] | np.ndarray | torch.Tensor
    warnings: list[str] = field(default_factory=list)


def _to_output(clips: torch.Tensor, output_type: str, notes: list[str]) -> VideoPipelineOutput:
    """Clips in [-1, 1] ``[N, 3, T, H, W]`` -> the frames as ``output_type`` asks."""
    frames = ((clips.float() + 1) / 2).clamp(0, 1).transpose(1, 2).cpu()  # [N, T, 3, H, W]
    if output_type == "pt":
        return VideoPipelineOutput(frames, list(notes))
    array = frames.permute(0, 1, 3, 4, 2).numpy()  # [N, T, H, W, 3]
    if output_type == "np":
        return VideoPipelineOutput(array, list(notes))
    pixels = np.round(array * 255).astype(np.uint8)
    return VideoPipelineOutput([[Image.fromarray(f) for f in video] for video in pixels], list(notes))


class TextToVideoPipeline(Pipeline):
    """``pipe(prompt_or_list, num_videos_per_prompt=1, generator=None, guidance_scale=None,
    temperature=None, top_k=None, top_p=None, num_inference_steps=None, output_type="pil")`` ->
    ``VideoPipelineOutput`` (see the module docstring)."""

    def __init__(self, model: TextToCodes, vocabulary: frozenset[str] | None = None, world: bool = False):
        super().__init__()
        self.model = model.eval()
        self.vocabulary = vocabulary  # the words of the training captions (the checkpoint's vocabulary.txt)
        self.world = world  # trained on the moving world: prompts are checked against its caption forms

    @classmethod
    def _load(cls, folder: Path) -> TextToVideoPipeline:
        folder = Path(folder)
        config = read_json(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else {}
        if not isinstance(config.get("gpt"), dict) or config.get("kind") != "video":
            found = f"a token GPT of kind {config.get('kind', 'image')!r}" if isinstance(config.get("gpt"), dict) \
                else "no token GPT (config.json has no 'gpt')"
            raise InputError(f"model: expected a text-to-video checkpoint (a token GPT of kind 'video', such as "
                             f"{DEFAULT_MODEL}), found {found} in {folder.name}")
        training = folder / "training.json"
        data = read_json(training).get("data", "") if training.is_file() else ""
        return cls(TextToCodes.from_pretrained(folder), read_vocabulary(folder),
                   isinstance(data, str) and data.startswith("moving world"))

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """The checkpoint's sampling defaults: what an argument left None takes."""
        c = self.model.config
        return {"guidance_scale": c.guidance_scale, "temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p}

    def prompt_warnings(self, prompt: str | list[str]) -> list[str]:
        """One line per problem with the prompts: words the model never read in training (they cannot
        steer the video), or text that is not a caption of the moving world."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        example = canonical_clip_caption(("circle", "red", "black", "left"))
        notes = []
        for p in prompts:
            unknown = unknown_words(p, self.vocabulary) if self.vocabulary is not None else []
            if unknown:
                notes.append(f"{_quote(p)}: the model never read {', '.join(map(repr, unknown))} in training, so "
                             f"{'it does' if len(unknown) == 1 else 'they do'} not steer the video")
            elif self.world and p.strip() and not parses(parse_clip_caption, p):
                notes.append(f"{_quote(p)}: not a caption of the kind it was trained on (a colour, an object, a "
                             f"direction and a background, as in {example!r}), so the video may not follow it")
        return notes

    def validate(self, prompt, num_videos_per_prompt: int = 1, generator=None, guidance_scale: float | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 num_inference_steps: int | None = None, output_type: str = "pil") -> None:
        prompts = text_list(prompt, "prompt", "a description of the video")
        if not is_int(num_videos_per_prompt) or not 1 <= num_videos_per_prompt <= MAX_VIDEOS_PER_PROMPT:
            raise InputError(f"num_videos_per_prompt: expected an integer from 1 to {MAX_VIDEOS_PER_PROMPT}, "
                             f"found {num_videos_per_prompt!r}")
        total = len(prompts) * num_videos_per_prompt
        if total > MAX_ITEMS_PER_CALL:
            raise InputError(f"num_videos_per_prompt: expected at most {MAX_ITEMS_PER_CALL} videos per call, found "
                             f"{len(prompts)} prompt(s) x {num_videos_per_prompt} = {total}; split the request")
        check_generators(generator, total, "video")
        if guidance_scale is not None:
            check_guidance(guidance_scale)
        check_sampling(1.0 if temperature is None else temperature, top_k, top_p)
        if num_inference_steps is not None and (not is_int(num_inference_steps) or num_inference_steps < 1):
            raise InputError(f"num_inference_steps: expected None or an integer >= 1 (unused by autoregressive "
                             f"decoding), found {num_inference_steps!r}")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type: expected one of {', '.join(OUTPUT_TYPES)}, found {output_type!r}")
        self.model.tokenize(prompts)  # an over-long prompt is refused here, before any work

    def _run(self, prompt, num_videos_per_prompt: int = 1, generator=None, guidance_scale: float | None = None,
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             num_inference_steps: int | None = None, output_type: str = "pil") -> VideoPipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        rows = [p for p in prompts for _ in range(num_videos_per_prompt)]
        generator = as_generators(generator)
        clips = self.model.generate(rows, temperature=temperature, top_k=top_k, top_p=top_p,
                                    guidance_scale=guidance_scale, generator=generator, progress=self.progress)
        return _to_output(clips, output_type, self.prompt_warnings(prompts))
