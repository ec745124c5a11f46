"""Text to codes to pixels: the token GPT writes a VQ-VAE's codes after a prompt, the VQ-VAE
decodes them. The autoregressive counterpart of ``text2image.py``.

A checkpoint folder holds the GPT (``config.json``, ``model.safetensors``), the prompt tokenizer
(``tokenizer.json``) and the VQ-VAE (``vq/``), loaded together by ``TextToCodes.from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import Part, PretrainedMixin
from ..config import Config
from ..errors import InputError, expect
from ..generation.autoregressive import generate_tokens
from ..tokenizers.text import TextTokenizer
from .autoencoders.vq import VQVAE
from .token_gpt import TokenGPT, TokenGPTConfig

VQ_DIR, TOKENIZER_NAME = "vq", "tokenizer.json"
MAX_ITEMS_PER_CALL = 256


@dataclass
class TextToCodesConfig(Config):
    gpt: TokenGPTConfig = field(default_factory=TokenGPTConfig)
    kind: str = "image"  # what the codes decode to: image ([B, 3, H, W]) or video ([B, 3, T, H, W])
    # The sampling defaults of generate() and the pipeline (a checkpoint's are chosen on validation prompts)
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if isinstance(self.gpt, dict):
            self.gpt = TokenGPTConfig.from_dict(self.gpt, where="TextToCodesConfig.gpt")
        expect(self.kind in ("image", "video"), "TextToCodesConfig.kind", "'image' or 'video'", repr(self.kind))


class TextToCodes(PretrainedMixin, nn.Module):
    """prompts -> codes -> items. ``loss(text_ids, codes)`` trains the GPT; ``generate`` samples."""

    config_class = TextToCodesConfig
    checkpoint_kind = "text-to-codes "
    parts = {"tokenizer": Part(TOKENIZER_NAME, TextTokenizer.from_file, lambda tok, path, dtype: tok.save(path.parent)),
             "vqvae": Part(VQ_DIR, VQVAE.from_pretrained, lambda vq, path, dtype: vq.save_pretrained(path, dtype=dtype))}

    def __init__(self, config: TextToCodesConfig, tokenizer: TextTokenizer, vqvae: VQVAE):
        super().__init__()
        g, q = config.gpt, vqvae.config.quantizer
        expect(tokenizer.vocab_size <= g.text_vocab, "tokenizer", f"at most {g.text_vocab} tokens (the GPT's table)",
               str(tokenizer.vocab_size))
        expect(q.codebook_size == g.codebook_size and q.levels == g.levels, "vqvae",
               f"{g.levels} level(s) of {g.codebook_size} codes (the GPT's)", f"{q.levels} of {q.codebook_size}")
        self.config, self.tokenizer = config, tokenizer
        self.gpt = TokenGPT(g)
        self.vqvae = vqvae.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.vqvae.eval()  # frozen: its quantizer must not update its codebook
        return self

    @property
    def device(self) -> torch.device:
        return self.gpt.head.weight.device

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.gpt.tokenize(self.tokenizer, prompts)

    def forward(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, N, K]``; in training each prompt is dropped with probability
        ``cond_drop`` (classifier-free guidance)."""
        return self.gpt(self.gpt.drop_prompts(text_ids) if self.training else text_ids, codes)

    def loss(self, text_ids: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None = None):
        return self.gpt.loss(text_ids, codes, generator)

    def codes_of(self, items: torch.Tensor) -> torch.Tensor:
        """Items (images or clips in [-1, 1]) -> the GPT's flat code sequences ``[B, num_codes]``."""
        codes = self.vqvae.encode(items)
        return codes.movedim(1, -1).flatten(1) if self.config.gpt.levels > 1 else codes.flatten(1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Flat code sequences ``[B, num_codes]`` -> items (images ``[B, 3, H, W]`` or clips ``[B, 3, T, H, W]`` in [-1, 1])."""
        g = self.config.gpt
        grid = codes.reshape(codes.shape[0], *g.grid, g.levels).movedim(-1, 1) if g.levels > 1 \
            else codes.reshape(codes.shape[0], *g.grid)
        return self.vqvae.decode(grid).clamp(-1, 1)

    @torch.no_grad()
    def generate(self, prompts: list[str], *, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, guidance_scale: float | None = None, generator=None, progress=None,
                 decode: bool = True) -> torch.Tensor:
        """One item per prompt (repeat a prompt for more): images ``[B, 3, H, W]`` (clips ``[B, 3, T, H, W]``
        for kind video) in [-1, 1], or the flat codes ``[B, num_codes]`` when ``decode`` is False. A
        sampling argument left None takes the config's default (``guidance_scale``, ``temperature``,
        ``top_k``, ``top_p``)."""
        c = self.config
        temperature = c.temperature if temperature is None else temperature
        guidance_scale = c.guidance_scale if guidance_scale is None else guidance_scale
        top_k = c.top_k if top_k is None else top_k
        top_p = c.top_p if top_p is None else top_p
        expect(0 < len(prompts) <= MAX_ITEMS_PER_CALL, "prompts", f"1 to {MAX_ITEMS_PER_CALL} items per call",
               str(len(prompts)))
        if any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise InputError("prompt: expected a non-empty text for every item, found an empty one")
        text_ids = self.tokenize(list(prompts))
        null_ids = torch.full_like(text_ids, self.gpt.pad_id)
        codes = generate_tokens(self.gpt, text_ids, self.config.gpt.num_codes, temperature=temperature, top_k=top_k,
                                top_p=top_p, guidance_scale=guidance_scale, null_ids=null_ids, generator=generator,
                                progress=progress)
        return self.decode_codes(codes) if decode else codes
