"""Text-to-image with a DiT or SiT checkpoint, or with a token GPT (autoregressive, over VQ-VAE codes).

``TextToImagePipeline`` (task ``"text-to-image"``) follows diffusers' conventions::

    pipe = multimodal.pipeline("text-to-image")                      # the shipped SiT
    images = pipe("a red circle on a black background", num_inference_steps=25, guidance_scale=4.0,
                  sampler="heun", generator=torch.Generator().manual_seed(0), num_images_per_prompt=4)

It returns PIL images (``output_type="pil"``; a list, also as ``.images``), a float array ``[N, H, W, 3]`` in [0, 1]
(``"np"``), or the latents ``[N, C, h, w]`` (``"latent"``), prompt by prompt, each prompt's
``num_images_per_prompt`` images together. The same generator seed gives the same images. An empty
prompt samples the unconditional model; a prompt longer than the text encoder's context is cut.
The PIL result's ``.warnings`` lists, one line each, the words of a prompt that the model never
read in training (from the checkpoint's ``vocabulary.txt`` and its active adapters'; such words
cannot steer the image) and the prompts that were cut; ``pipe.prompt_warnings(prompt)`` gives the
same lines without generating. Samplers: ``ddpm``, ``ddim``, ``dpm++`` for DiT checkpoints; ``euler``, ``heun``,
``sde`` for SiT checkpoints.

A token-GPT checkpoint (``TextToCodes``: ``checkpoints/text2image-gpt``) answers the same call through
``AutoregressiveTextToImagePipeline``, with ``temperature``, ``top_k`` and ``top_p`` instead of a
sampler; ``num_inference_steps`` is accepted and unused there.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..generation.sampling import MAX_STEPS
from ..checkpoint import CONFIG_NAME
from ..config import read_json
from ..generation.autoregressive import check_sampling
from ..generation.sampling import check_guidance
from ..models.text2codes import TextToCodes
from ..models.text2image import MAX_IMAGES_PER_CALL, TextToImage
from .. import lora
from ..data.world_captions import canonical_caption, parse_caption
from ..tokenizers.words import read_vocabulary, unknown_words
from .base import Pipeline, as_generators, check_generators, is_int, text_list

DEFAULT_MODEL = "text2image-sit"
OUTPUT_TYPES = ("pil", "np", "latent")


class ImagePipelineOutput(list):
    """The PIL images, prompt by prompt; ``.images`` names the same list, as in diffusers.
    ``.warnings``: one line per problem with a prompt (words the model never read, a prompt cut to
    the text encoder's length); empty when there is none."""

    warnings: list[str] = []

    @property
    def images(self) -> list[Image.Image]:
        return list(self)


def _check_common(prompt, num_images_per_prompt, generator, output_type, *, empty_ok: bool) -> list[str]:
    """Checks every text-to-image pipeline shares; returns the prompts as a list."""
    prompts = text_list(prompt, "prompt", "a description of the image", empty_ok=empty_ok,
                        hint=' ("" for an unconditional image)' if empty_ok else "")
    if not is_int(num_images_per_prompt) or num_images_per_prompt < 1:
        raise InputError(f"num_images_per_prompt: expected an integer >= 1, found {num_images_per_prompt!r}")
    total = len(prompts) * num_images_per_prompt
    if total > MAX_IMAGES_PER_CALL:
        raise InputError(f"num_images_per_prompt: expected at most {MAX_IMAGES_PER_CALL} images per call, found "
                         f"{len(prompts)} prompt(s) x {num_images_per_prompt} = {total}; split the request")
    check_generators(generator, total, "image")
    if output_type not in OUTPUT_TYPES:
        raise InputError(f"output_type: expected one of {', '.join(OUTPUT_TYPES)}, found {output_type!r}")
    return list(prompts)


def _what_it_read(folder: Path) -> tuple[frozenset[str] | None, bool]:
    """A checkpoint's vocabulary.txt words, and whether it was trained on the captioned world."""
    training = Path(folder) / "training.json"
    data = read_json(training).get("data", "") if training.is_file() else ""
    return read_vocabulary(folder), isinstance(data, str) and data.startswith("captioned world")


def _quote(prompt: str, most: int = 60) -> str:
    """The prompt in quotes, cut with an ellipsis past ``most`` characters."""
    return repr(prompt if len(prompt) <= most else prompt[:most - 1] + "…")


def parses(parse, prompt: str) -> bool:
    """Whether ``parse(prompt)`` (a caption parser of a world) reads the prompt without an InputError."""
    try:
        parse(prompt)
    except InputError:
        return False
    return True


def _to_output(images: torch.Tensor, output_type: str, notes: list[str]):
    """Images in [-1, 1] ``[N, 3, H, W]`` -> PIL images (``ImagePipelineOutput``, with the prompts'
    ``notes`` as ``.warnings``) or a float array."""
    array = ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3]
    if output_type == "np":
        return array
    out = ImagePipelineOutput(Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in array)
    out.warnings = list(notes)
    return out


class TextToImagePipeline(Pipeline):
    """``pipe(prompt_or_list, num_inference_steps=25, guidance_scale=4.0, sampler=None, generator=None,
    num_images_per_prompt=1, output_type="pil", latents=None)`` -> images (see the module docstring).
    A token-GPT checkpoint loads as ``AutoregressiveTextToImagePipeline``."""

    def __init__(self, model: TextToImage, vocabulary: frozenset[str] | None = None, world: bool = False):
        super().__init__()
        self.model = model.eval()
        self.vocabulary = vocabulary  # the words of the training captions (the checkpoint's vocabulary.txt)
        self.world = world  # trained on the captioned world: prompts are checked against its caption forms
        self._adapter_words: dict[str, frozenset[str]] = {}

    @classmethod
    def _load(cls, folder: Path) -> TextToImagePipeline:
        if cls is TextToImagePipeline and "gpt" in read_json(Path(folder) / CONFIG_NAME):
            return AutoregressiveTextToImagePipeline._load(folder)
        return cls(TextToImage.from_pretrained(folder), *_what_it_read(folder))

    # ------------------------------------------------------------------ what the model has read
    def load_lora(self, path: str | Path, adapter_name: str = "default", scale: float = 1.0) -> list[str]:
        names = super().load_lora(path, adapter_name, scale)
        self._adapter_words[adapter_name] = read_vocabulary(path) or frozenset()
        return names

    def known_words(self) -> frozenset[str] | None:
        """The words the model read in training, with those of its active adapters (None: the
        checkpoint has no vocabulary.txt, so unknown words are not reported)."""
        if self.vocabulary is None:
            return None
        active = lora.active_adapters(self.model)
        return self.vocabulary.union(*(self._adapter_words.get(name, frozenset()) for name in active))

    def _token_limit(self, prompts: list[str]) -> tuple[list[int], int] | None:
        """Each prompt's token count and the length beyond which it is cut (None: never cut)."""
        encoder = self.model.text_encoder
        return encoder.token_counts(self.model.tokenizer, prompts), encoder.config.max_length

    def prompt_warnings(self, prompt: str | list[str]) -> list[str]:
        """One line per problem with the prompts: words the model never read in training (they
        cannot steer the image), a prompt longer than the text encoder reads (cut)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        notes = []
        known = self.known_words()
        for p in prompts:
            unknown = unknown_words(p, known) if known is not None else []
            if unknown:
                notes.append(f"{_quote(p)}: the model never read {', '.join(map(repr, unknown))} in training, so "
                             f"{'it does' if len(unknown) == 1 else 'they do'} not steer the image")
            elif self.world and p.strip() and not parses(parse_caption, p):
                notes.append(f"{_quote(p)}: not a caption of the kind it was trained on (an object, a colour and a "
                             f"background, as in {canonical_caption('circle', 'red', 'black')!r}), so the image "
                             f"may not follow it")
        limit = self._token_limit(prompts)
        if limit is not None:
            counts, most = limit
            notes += [f"{_quote(p)}: {n} tokens, cut to the first {most} the text encoder reads"
                      for p, n in zip(prompts, counts) if n > most]
        return notes

    @property
    def samplers(self) -> tuple[str, ...]:
        return self.model.config.samplers

    def validate(self, prompt, num_inference_steps: int = 25, guidance_scale: float = 4.0, sampler: str | None = None,
                 generator=None, num_images_per_prompt: int = 1, output_type: str = "pil", latents=None) -> None:
        prompts = _check_common(prompt, num_images_per_prompt, generator, output_type, empty_ok=True)
        if not is_int(num_inference_steps) or not 1 <= num_inference_steps <= MAX_STEPS:
            raise InputError(f"num_inference_steps: expected an integer from 1 to {MAX_STEPS}, "
                             f"found {num_inference_steps!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise InputError(f"guidance_scale: expected a finite number >= 0 (1: no guidance), found {guidance_scale!r}")
        if sampler is not None and sampler not in self.samplers:
            raise InputError(f"sampler: expected one of {', '.join(self.samplers)} for this "
                             f"{self.model.config.objective.upper()} model, found {sampler!r}")
        total = len(prompts) * num_images_per_prompt
        if latents is not None:
            den = self.model.config.denoiser
            shape = (total, den.in_channels, *den.input_size)
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape \
                    or not latents.is_floating_point() or not torch.isfinite(latents).all():
                found = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise InputError(f"latents: expected finite float noise of shape {shape}, found {found}")

    def _run(self, prompt, num_inference_steps: int = 25, guidance_scale: float = 4.0, sampler: str | None = None,
             generator=None, num_images_per_prompt: int = 1, output_type: str = "pil", latents=None) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        rows = [p for p in prompts for _ in range(num_images_per_prompt)]
        generator = as_generators(generator)
        with warnings.catch_warnings():  # a cut prompt is reported in the result's .warnings instead
            warnings.filterwarnings("ignore", message=r"prompt \d+ \(\d+ tokens\)")
            out = self.model.generate(rows, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                      sampler=sampler, generator=generator, latents=latents,
                                      decode=output_type != "latent", progress=self.progress)
        if output_type == "latent":
            return out.float().cpu()
        return _to_output(out, output_type, self.prompt_warnings(prompts))


class AutoregressiveTextToImagePipeline(TextToImagePipeline):
    """A token-GPT checkpoint (``TextToCodes``): ``pipe(prompt_or_list, num_images_per_prompt=1,
    generator=None, guidance_scale=None, temperature=None, top_k=None, top_p=None, output_type="pil")``;
    a sampling argument left None takes the checkpoint's default (its config). ``num_inference_steps``
    is accepted and unused (one code per step); ``output_type="latent"`` returns the codes
    ``[N, num_codes]``. Prompts must not be empty."""

    def __init__(self, model: TextToCodes, vocabulary: frozenset[str] | None = None, world: bool = False):
        super().__init__(model, vocabulary, world)

    @classmethod
    def _load(cls, folder: Path) -> AutoregressiveTextToImagePipeline:
        model = TextToCodes.from_pretrained(folder)
        if model.config.kind != "image":
            raise InputError(f"model: expected a text-to-image checkpoint, found a token GPT of kind "
                             f"{model.config.kind!r} ({folder}); the {model.config.kind} pipeline reads it")
        return cls(model, *_what_it_read(folder))

    def _token_limit(self, prompts: list[str]) -> None:
        return None  # a prompt longer than the GPT's prefix is refused, never cut

    def validate(self, prompt, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator=None, num_images_per_prompt: int = 1, output_type: str = "pil",
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None) -> None:
        prompts = _check_common(prompt, num_images_per_prompt, generator, output_type, empty_ok=False)
        check_sampling(1.0 if temperature is None else temperature, top_k, top_p)
        if guidance_scale is not None:
            check_guidance(guidance_scale)
        if num_inference_steps is not None and (not is_int(num_inference_steps) or num_inference_steps < 1):
            raise InputError(f"num_inference_steps: expected None or an integer >= 1 (unused by autoregressive "
                             f"decoding), found {num_inference_steps!r}")
        self.model.tokenize(prompts)  # an over-long prompt is refused here, before any work

    def _run(self, prompt, num_inference_steps: int | None = None, guidance_scale: float | None = None,
             generator=None, num_images_per_prompt: int = 1, output_type: str = "pil",
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        rows = [p for p in prompts for _ in range(num_images_per_prompt)]
        generator = as_generators(generator)
        out = self.model.generate(rows, temperature=temperature, top_k=top_k, top_p=top_p,
                                  guidance_scale=guidance_scale, generator=generator, progress=self.progress,
                                  decode=output_type != "latent")
        return out.cpu() if output_type == "latent" else _to_output(out, output_type, self.prompt_warnings(prompts))


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """Images of one size side by side, ``columns`` per row (default: about square)."""
    if not images:
        raise InputError("images: expected at least one image for a grid, found none")
    columns = columns or math.ceil(math.sqrt(len(images)))
    w, h = images[0].size
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * w, (i // columns) * h))
    return grid
