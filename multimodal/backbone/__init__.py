"""The shared transformer backbone.

Every model in the suite (ViT, DiT/SiT, the token GPT, the Whisper encoder and decoder) is a
tokenizer, this backbone and a head. One config covers the variants that real checkpoints need, so
third-party weights load exactly: LayerNorm eps/affine or RMSNorm, bias per projection (Whisper's
keys have none), exact or tanh GELU or SwiGLU, learned / sinusoidal 1-D / sinusoidal 2-D / rotary
positions, causal self-attention, cross-attention, qk-norm and adaLN-Zero conditioning.

Attention runs on ``F.scaled_dot_product_attention``. Its ``is_causal`` aligns the mask top-left,
which is wrong once a KV cache holds more keys than there are queries; we use it only when queries
and keys have the same length, no mask for a single new token, and an explicit bottom-right mask
otherwise.

Shapes: B batch, L query length, S context length, T keys (cache length + L), W width, H heads,
D head dim.
"""

from .attention import Attention, KVCache, attend, attend_bf16, bottom_right_causal_mask
from .blocks import MLP, Block, DropPath, LayerScale, Transformer
from .config import MLPS, NORMS, POSITIONS, BackboneConfig, make_norm, modulate
from .positions import Rotary, sinusoids_1d, sinusoids_2d

__all__ = ["MLP", "MLPS", "NORMS", "POSITIONS", "Attention", "BackboneConfig", "Block", "DropPath", "KVCache",
           "LayerScale", "Rotary", "Transformer", "attend", "attend_bf16", "bottom_right_causal_mask", "make_norm",
           "modulate", "sinusoids_1d", "sinusoids_2d"]
