"""Whisper (Radford et al., 2022): a log-mel audio encoder and a text decoder, both the shared backbone.

Method
------
1. **Audio encoder.** A log-mel spectrogram ``[B, n_mels, T]`` (T = 3000 frames = 30 s for the
   released models) passes two 1-D convolutions with GELU, the second of stride 2, giving
   ``[B, T/2, W]`` audio tokens; Whisper's fixed sinusoidal table is added and a bidirectional
   stack of pre-norm blocks with a final LayerNorm gives the audio features.
2. **Text decoder.** Token embeddings plus learned positions pass a causal stack of blocks that
   cross-attend to the audio features; after a final LayerNorm the logits are the dot products
   with the token embeddings themselves (tied: one matrix serves as input and output embedding).
3. **Decoding interface.** ``embed_audio`` runs once per 30-s window; ``logits`` runs once per
   step with a :class:`~multimodal.backbone.KVCache` from ``new_cache`` that keeps self-attention
   keys/values and the cross-attention keys/values of the audio. Search, timestamps and long-form
   transcription are built on exactly these methods elsewhere.

Keys carry no bias in Whisper; the backbone's ``k_bias=False`` keeps the fused q/k/v bias's key
slice at zero. Everything else (LayerNorm eps 1e-5, exact GELU, 4x MLP) is the backbone's default.

Generation settings that come with converted checkpoints (suppressed tokens, language ids, …) are
not part of the network: they live in ``model.generation_config`` and in ``generation_config.json``
next to ``config.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Attention, BackboneConfig, KVCache, Transformer
from ..checkpoint import CONFIG_NAME, PretrainedMixin, atomic_write_text
from ..config import Config
from ..errors import InputError

GENERATION_CONFIG_NAME = "generation_config.json"
N_VOCAB_ENGLISH = 51864  # GPT-2's 50257 tokens + Whisper's specials and 1501 timestamps


# ------------------------------------------------------------------------------------------ config
@dataclass
class WhisperConfig(Config):
    """openai-whisper's ``ModelDimensions``, plus the decoder's alignment heads.

    ``alignment_heads``: ``[[layer, head], ...]`` of decoder cross-attention heads whose weights
    follow the audio-text alignment (for word timestamps); None = the last half of the layers, all
    heads (openai-whisper's default for unknown models).
    """

    n_mels: int = 80
    n_audio_ctx: int = 1500  # audio tokens = mel frames / 2
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4
    n_vocab: int = 51865
    n_text_ctx: int = 448
    n_text_state: int = 384
    n_text_head: int = 6
    n_text_layer: int = 4
    alignment_heads: list[list[int]] | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "alignment_heads" and not (isinstance(value, int) and value > 0):
                raise InputError(f"whisper config {f.name}: expected a positive integer, found {value!r}")
        for state, head in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
            if getattr(self, state) % getattr(self, head):
                raise InputError(f"whisper config {state}: expected a multiple of {head} "
                                 f"({getattr(self, head)}), found {getattr(self, state)}")
        if self.alignment_heads is not None:
            heads = [list(h) for h in self.alignment_heads]
            bad = [h for h in heads if len(h) != 2 or not 0 <= h[0] < self.n_text_layer
                   or not 0 <= h[1] < self.n_text_head]
            if bad:
                raise InputError(f"whisper config alignment_heads: expected [layer, head] pairs within "
                                 f"{self.n_text_layer} layers x {self.n_text_head} heads, found {bad[:5]}")
            self.alignment_heads = heads

    @classmethod
    def preset(cls, name: str) -> WhisperConfig:
        """The dimensions (and alignment heads) of a released model: ``tiny``, ``tiny.en``, ``base``,
        ``base.en``, ``small``, ``small.en``, ``medium``, ``medium.en``, ``large-v1``, ``large-v2``,
        ``large-v3`` (= ``large``), ``large-v3-turbo`` (= ``turbo``)."""
        key = PRESET_ALIASES.get(name, name)
        if key not in PRESETS:
            raise InputError(f"whisper preset: expected one of {', '.join(sorted(PRESETS) + sorted(PRESET_ALIASES))}, "
                             f"found {name!r}")
        return cls(**PRESETS[key])


def _dims(mels, state, heads, layers, text_layers=None, vocab=51865, align=None):
    return dict(n_mels=mels, n_audio_ctx=1500, n_audio_state=state, n_audio_head=heads, n_audio_layer=layers,
                n_vocab=vocab, n_text_ctx=448, n_text_state=state, n_text_head=heads,
                n_text_layer=text_layers or layers, alignment_heads=align)


# Alignment heads as openai-whisper ships them for each released model.
PRESETS = {
    "tiny.en": _dims(80, 384, 6, 4, vocab=51864,
                     align=[[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]),
    "tiny": _dims(80, 384, 6, 4, align=[[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]),
    "base.en": _dims(80, 512, 8, 6, vocab=51864, align=[[3, 3], [4, 7], [5, 1], [5, 5], [5, 7]]),
    "base": _dims(80, 512, 8, 6, align=[[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]]),
    "small.en": _dims(80, 768, 12, 12, vocab=51864, align=[
        [6, 6], [7, 0], [7, 3], [7, 8], [8, 2], [8, 5], [8, 7], [9, 0], [9, 4], [9, 8], [9, 10], [10, 0],
        [10, 1], [10, 2], [10, 3], [10, 6], [10, 11], [11, 2], [11, 4]]),
    "small": _dims(80, 768, 12, 12, align=[[5, 3], [5, 9], [8, 0], [8, 4], [8, 7], [8, 8], [9, 0], [9, 7],
                                            [9, 9], [10, 5]]),
    "medium.en": _dims(80, 1024, 16, 24, vocab=51864, align=[
        [11, 4], [14, 1], [14, 12], [14, 14], [15, 4], [16, 0], [16, 4], [16, 9], [17, 12], [17, 14],
        [18, 7], [18, 10], [18, 15], [20, 0], [20, 3], [20, 9], [20, 14], [21, 12]]),
    "medium": _dims(80, 1024, 16, 24, align=[[13, 15], [15, 4], [15, 15], [16, 1], [20, 0], [23, 4]]),
    "large-v1": _dims(80, 1280, 20, 32, align=[[9, 19], [11, 2], [11, 4], [11, 17], [22, 7], [22, 11],
                                               [22, 17], [23, 2], [23, 15]]),
    "large-v2": _dims(80, 1280, 20, 32, align=[
        [10, 12], [13, 17], [16, 11], [16, 12], [16, 13], [17, 15], [17, 16], [18, 4], [18, 11], [18, 19],
        [19, 11], [21, 2], [21, 3], [22, 3], [22, 9], [22, 12], [23, 5], [23, 7], [23, 13], [25, 5],
        [26, 1], [26, 12], [27, 15]]),
    "large-v3": _dims(128, 1280, 20, 32, vocab=51866, align=[[7, 0], [10, 17], [12, 18], [13, 12], [16, 1],
                                                             [17, 14], [19, 11], [21, 4], [24, 1], [25, 6]]),
    "large-v3-turbo": _dims(128, 1280, 20, 32, text_layers=4, vocab=51866,
                            align=[[2, 4], [2, 11], [3, 3], [3, 6], [3, 11], [3, 14]]),
}
PRESET_ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}


@dataclass
class WhisperGenerationConfig(Config):
    """Decoding settings found with a converted checkpoint (None where the source had none).
    Names follow transformers' generation_config.json; CTranslate2's ``suppress_ids`` /
    ``suppress_ids_begin`` / ``lang_ids`` land in the first three."""

    suppress_tokens: list[int] | None = None  # never sampled
    begin_suppress_tokens: list[int] | None = None  # not sampled as the first generated token
    lang_ids: list[int] | None = None  # ids of the language tokens
    lang_to_id: dict[str, int] | None = None  # "<|en|>" -> id
    task_to_id: dict[str, int] | None = None  # "transcribe" / "translate" -> id
    decoder_start_token_id: int | None = None  # <|startoftranscript|>
    eos_token_id: int | None = None  # <|endoftext|>
    no_timestamps_token_id: int | None = None
    prev_sot_token_id: int | None = None  # <|startofprev|>
    max_initial_timestamp_index: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


# ----------------------------------------------------------------------------------------- modules
class AudioEncoder(nn.Module):
    """log-mel [B, n_mels, T] -> audio features [B, ceil(T/2), n_audio_state]."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        W = cfg.n_audio_state
        self.conv1 = nn.Conv1d(cfg.n_mels, W, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(W, W, kernel_size=3, stride=2, padding=1)
        self.transformer = Transformer(BackboneConfig(
            width=W, depth=cfg.n_audio_layer, heads=cfg.n_audio_head, k_bias=False,
            positions="sinusoidal", max_len=cfg.n_audio_ctx))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x))  # [B, W, ceil(T/2)]
        return self.transformer(x.transpose(1, 2))  # [B, ceil(T/2), W]


class TextDecoder(nn.Module):
    """tokens [B, L] + audio features [B, S, n_audio_state] -> logits [B, L, n_vocab] (float32)."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        W = cfg.n_text_state
        self.token_embedding = nn.Embedding(cfg.n_vocab, W)
        # Learned positions are offset by the cache length inside the backbone.
        self.transformer = Transformer(BackboneConfig(
            width=W, depth=cfg.n_text_layer, heads=cfg.n_text_head, k_bias=False, causal=True,
            cross_attention=True, context_width=cfg.n_audio_state, positions="learned", max_len=cfg.n_text_ctx))
        self.output: nn.Module | None = None  # an int8 copy of the tied embedding (``quantize_int8``)

    def forward(self, tokens: torch.Tensor, audio_features: torch.Tensor | None,
                cache: KVCache | None = None, positions: list[int] | None = None) -> torch.Tensor:
        x = self.transformer(self.token_embedding(tokens), context=audio_features, cache=cache)
        if positions is not None:
            x = x[:, positions]
        if self.output is not None:
            return self.output(x).float()
        # Tied output embedding; logits in float32 as openai-whisper returns them, so that
        # log-softmax over 51k entries stays accurate under float16 / bfloat16 weights.
        return (x @ self.token_embedding.weight.to(x.dtype).T).float()


# ------------------------------------------------------------------------------------------- model
class Whisper(PretrainedMixin, nn.Module):
    """The Whisper encoder-decoder. See the module docstring; shapes: B batch, T mel frames,
    S = ceil(T/2) audio tokens, L new tokens, V = n_vocab.

    Decoding with a cache::

        audio = model.embed_audio(mel)                       # [B, S, W], once per window
        cache = model.new_cache(B)                           # or B * beams, audio repeated to match
        logits = model.logits(prompt, audio, cache=cache)    # [B, len(prompt), V]
        while ...:
            logits = model.logits(next_tokens[:, None], None, cache=cache)  # [B, 1, V]
            cache.reorder(beam_index)                        # beam search keeps rows `beam_index`
    """

    config_class = WhisperConfig

    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config)
        self.decoder = TextDecoder(config)
        self.generation_config = WhisperGenerationConfig()

    # --------------------------------------------------------------------------------- properties
    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.token_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.token_embedding.weight.device

    @property
    def is_multilingual(self) -> bool:
        """51864 tokens = English-only; 51865 (99 languages) or 51866 (100, large-v3) = multilingual."""
        return self.config.n_vocab >= N_VOCAB_ENGLISH + 1

    @property
    def num_languages(self) -> int:
        """Language tokens in the vocabulary: 99, or 100 for large-v3. English-only vocabularies
        still reserve the 99 language tokens (openai-whisper's count), though only <|en|> is trained."""
        return self.config.n_vocab - 51765 - int(self.is_multilingual)

    @property
    def alignment_heads(self) -> list[list[int]]:
        """``[[layer, head], ...]`` of the decoder's alignment heads (config, or the last half of the
        layers with all heads)."""
        if self.config.alignment_heads is not None:
            return [list(h) for h in self.config.alignment_heads]
        n, h = self.config.n_text_layer, self.config.n_text_head
        return [[layer, head] for layer in range(n // 2, n) for head in range(h)]

    # ------------------------------------------------------------------------------------ encoder
    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[B, n_mels, T]`` (float; 1 <= T <= 2 * n_audio_ctx, 3000 for the released
        models, which were trained on exactly 30-s windows) -> audio features ``[B, ceil(T/2),
        n_audio_state]`` in the model's dtype."""
        cfg = self.config
        if not isinstance(mel, torch.Tensor):
            raise InputError(f"mel: expected a torch.Tensor [batch, {cfg.n_mels}, frames], found {type(mel).__name__}")
        if mel.ndim != 3 or mel.shape[0] < 1 or mel.shape[1] != cfg.n_mels or not 1 <= mel.shape[2] <= 2 * cfg.n_audio_ctx:
            raise InputError(f"mel: expected shape [batch, {cfg.n_mels}, frames] with 1 <= frames <= "
                             f"{2 * cfg.n_audio_ctx}, found {tuple(mel.shape)}")
        if not mel.is_floating_point():
            raise InputError(f"mel: expected a floating-point tensor, found {mel.dtype}")
        if not torch.isfinite(mel).all():
            raise InputError("mel: expected finite values, found NaN or infinity")
        return self.encoder(mel.to(device=self.device, dtype=self.dtype))

    # ------------------------------------------------------------------------------------ decoder
    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` tokens (default and
        maximum n_text_ctx), in the model's dtype and device. ``cache.length`` is the number of
        tokens decoded so far; ``cache.reorder(index)`` keeps rows ``index`` (beam search);
        ``cache.reset()`` empties it, including the audio's cross-attention keys/values."""
        limit = self.config.n_text_ctx
        max_len = limit if max_len is None else max_len
        if not (isinstance(batch, int) and batch >= 1):
            raise InputError(f"batch: expected a positive integer, found {batch!r}")
        if not (isinstance(max_len, int) and 1 <= max_len <= limit):
            raise InputError(f"max_len: expected an integer in [1, {limit}] (n_text_ctx), found {max_len!r}")
        return self.decoder.transformer.new_cache(batch, max_len)

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor | None,
               cache: KVCache | None = None, positions: list[int] | None = None) -> torch.Tensor:
        """Next-token logits ``[B, L, n_vocab]`` (float32) for ``tokens`` ``[B, L]`` (integer ids).

        Without a cache, ``tokens`` is the whole sequence from position 0. With a cache, ``tokens``
        are the next L tokens at positions ``cache.length ..``; the cache advances by L. On the
        cache's first call ``audio_features`` ``[B, S, n_audio_state]`` is required and its
        cross-attention keys/values are stored in the cache; later calls may pass None (features
        passed then are ignored: the cache's are used until ``cache.reset()``).

        ``positions``: only the logits at these indices of ``tokens`` (``[B, len(positions), n_vocab]``);
        the projection onto the vocabulary is most of a step's work, and a decoder prompt needs it at
        one or two of its positions.
        """
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.numel() == 0:
            found = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise InputError(f"tokens: expected an integer tensor [batch, length], found {found}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise InputError(f"tokens: expected integer token ids, found dtype {tokens.dtype}")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= cfg.n_vocab:
            raise InputError(f"tokens: expected ids in [0, {cfg.n_vocab}), found values from {lo} to {hi}")
        B, L = tokens.shape
        start = 0 if cache is None else cache.length
        room = (cfg.n_text_ctx if cache is None else min(cfg.n_text_ctx, cache.max_len)) - start
        if L > room:
            raise InputError(f"tokens: expected at most {room} new tokens (n_text_ctx {cfg.n_text_ctx}, cache "
                             f"holds {start}), found {L}")
        if cache is not None and cache.batch != B:
            raise InputError(f"cache: expected a cache for batch {B}, found one for batch {cache.batch}")
        has_cross = cache is not None and cache.cross[0] is not None
        if audio_features is None:
            if not has_cross:
                raise InputError("audio_features: expected [batch, audio tokens, n_audio_state] features from "
                                 "embed_audio (required unless the cache already holds them), found None")
        elif not has_cross:
            if (not isinstance(audio_features, torch.Tensor) or audio_features.ndim != 3
                    or audio_features.shape[0] != B or not 1 <= audio_features.shape[1] <= cfg.n_audio_ctx
                    or audio_features.shape[2] != cfg.n_audio_state):
                found = (tuple(audio_features.shape) if isinstance(audio_features, torch.Tensor)
                         else type(audio_features).__name__)
                raise InputError(f"audio_features: expected shape [{B}, <= {cfg.n_audio_ctx}, {cfg.n_audio_state}], "
                                 f"found {found}")
            audio_features = audio_features.to(device=self.device, dtype=self.dtype)
        else:
            audio_features = None  # the cache's keys/values are used
        if positions is not None and (not isinstance(positions, (list, tuple)) or not positions or any(
                isinstance(i, bool) or not isinstance(i, int) or not -L <= i < L for i in positions)):
            raise InputError(f"positions: expected None or a non-empty list of indices into the {L} tokens, "
                             f"found {positions!r}")
        return self.decoder(tokens.to(device=self.device, dtype=torch.long), audio_features, cache,
                            None if positions is None else list(positions))

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, L, n_vocab]`` for mel ``[B, n_mels, T]`` and tokens ``[B, L]``."""
        return self.logits(tokens, self.embed_audio(mel))

    # ---------------------------------------------------------------------------------- alignment
    @torch.no_grad()
    def cross_attention_scores(self, tokens: torch.Tensor, audio_features: torch.Tensor,
                               heads: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, L, V]`` and the pre-softmax cross-attention scores q·k/√d of ``heads``
        (default ``alignment_heads``) as ``[B, len(heads), L, S]`` float32, for word timestamps
        (openai-whisper's ``find_alignment`` softmaxes these over the frames it keeps). One full
        forward without a cache; the scores are recomputed from each block's cross-attention input."""
        heads = self.alignment_heads if heads is None else [list(h) for h in heads]
        cfg = self.config
        if not heads or any(len(h) != 2 or not 0 <= h[0] < cfg.n_text_layer or not 0 <= h[1] < cfg.n_text_head
                            for h in heads):
            raise InputError(f"heads: expected [layer, head] pairs within {cfg.n_text_layer} layers x "
                             f"{cfg.n_text_head} heads, found {heads}")
        scores: dict[int, torch.Tensor] = {}
        owner = threading.get_ident()  # another thread decoding with this model meanwhile is not captured

        def capture(layer):
            def hook(attn, args, kwargs, output):
                if threading.get_ident() != owner:
                    return
                x, context = args[0], kwargs["context"]  # normalised queries' input, audio features
                B, L, _ = x.shape
                q = attn.q(x).view(B, L, attn.heads, attn.head_dim).transpose(1, 2)
                k, _ = attn.context_kv(context)
                scores[layer] = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(attn.head_dim)
            return hook

        layers = sorted({h[0] for h in heads})
        blocks = self.decoder.transformer.blocks
        handles = [blocks[i].cross_attn.register_forward_hook(capture(i), with_kwargs=True) for i in layers]
        try:
            logits = self.logits(tokens, audio_features)
        finally:
            for handle in handles:
                handle.remove()
        return logits, torch.stack([scores[layer][:, head] for layer, head in heads], dim=1)

    # ------------------------------------------------------------------------------- quantization
    def quantize_int8(self) -> Whisper:
        """A copy for CPU inference with int8 weights: torch's dynamic quantization (per output
        channel weight scales; activations quantized per call, one scale per tensor) of every
        attention projection, the MLPs and the output embedding, the bulk of the multiply-adds and,
        in the decoder's steps, of the weights read.

        The encoder's MLP down-projections (``fc2``) stay float32: their inputs, GELU outputs over
        1500 frames, hold a few channels hundreds of times larger than the rest (tiny.en's last
        block: 561 against an RMS of 3), and one activation scale per tensor at 7 bits (FBGEMM's
        ``reduce_range``, which keeps AVX2's 16-bit accumulation from saturating) rounds everything
        else to zero or one step: quantised, that layer alone takes the encoder's output 11 % off
        float32's, against 5 % for all other layers together. The token embedding's lookups and the
        norms stay float32 too. The copy cannot be trained or saved."""
        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise InputError(f"quantize: expected a float32 model on the CPU, found {self.dtype} on {self.device}")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        model = copy.deepcopy(self).eval()
        head = nn.Linear(self.config.n_text_state, self.config.n_vocab, bias=False)
        head.weight = model.decoder.token_embedding.weight
        model.decoder.output = head
        for module in model.modules():
            if isinstance(module, Attention):  # a quantised projection has no key slice to cancel
                module.zero_key_bias()
        names = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and not (name.startswith("encoder.") and name.endswith(".mlp.fc2"))}
        return quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)

    @property
    def is_quantized(self) -> bool:
        return self.decoder.output is not None

    # -------------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """config.json + model.safetensors, and generation_config.json when the model has one."""
        if self.is_quantized:
            raise InputError("model: expected a float model to save, found an int8-quantized copy (save the original)")
        folder = super().save_pretrained(folder, dtype=dtype)
        path = folder / GENERATION_CONFIG_NAME
        if self.generation_config.is_empty():
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, self.generation_config.to_json() + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> Whisper:
        """Load a folder written by ``save_pretrained`` (float32 unless ``dtype`` says otherwise)."""
        folder = Path(path)
        if folder.is_dir() and not (folder / CONFIG_NAME).is_file():
            raise InputError(f"{path}: expected a Whisper checkpoint folder with {CONFIG_NAME}, found none")
        model = super().from_pretrained(path, device=device, dtype=dtype)
        gen = folder / GENERATION_CONFIG_NAME
        if gen.is_file():
            model.generation_config = WhisperGenerationConfig.load(gen)
        return model
