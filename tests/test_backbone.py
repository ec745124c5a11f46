"""The shared backbone: attention against a naive reference, causality, KV cache, adaLN-Zero, positions."""

import math

import pytest
import torch
import torch.nn.functional as F

from multimodal.backbone import (Attention, BackboneConfig, Block, KVCache, Transformer, attend_bf16, sinusoids_1d,
                                 sinusoids_2d)
from multimodal.errors import InputError
from helpers import randomize

torch.manual_seed(0)
W, H = 32, 4


def cfg(**kw) -> BackboneConfig:
    base = dict(width=W, depth=3, heads=H)
    base.update(kw)
    return BackboneConfig(**base)


# ------------------------------------------------------------------------------ naive attention
def naive_attention(attn: Attention, x, context=None, key_padding_mask=None, past=0):
    """softmax(QKᵀ/√d)·V written out from the module's own weights. ``past`` > 0 means x's
    queries sit at absolute positions past..past+L-1 and ``context`` holds all keys' inputs."""
    B, L, _ = x.shape
    d = attn.head_dim
    if attn.cross:
        wq, bq = attn.q.weight, attn.q.bias
        wk, wv = attn.kv.weight.chunk(2)
        bk, bv = attn.kv.bias.chunk(2) if attn.kv.bias is not None else (None, None)
        src = context
    else:
        wq, wk, wv = attn.qkv.weight.chunk(3)
        bq, bk, bv = attn.qkv.bias.chunk(3) if attn.qkv.bias is not None else (None, None, None)
        src = x if context is None else context
    if not attn.k_bias:
        bk = None
    q = F.linear(x, wq, bq).view(B, L, attn.heads, d).transpose(1, 2)
    k = F.linear(src, wk, bk).view(B, src.shape[1], attn.heads, d).transpose(1, 2)
    v = F.linear(src, wv, bv).view(B, src.shape[1], attn.heads, d).transpose(1, 2)
    if attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.rotary is not None:
        q, k = rotate(q, past), rotate(k, 0)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    T = k.shape[2]
    if attn.causal:
        qpos = torch.arange(past, past + L)[:, None]
        scores = scores.masked_fill(torch.arange(T)[None, :] > qpos, float("-inf"))
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.out(y.transpose(1, 2).reshape(B, L, -1))


def rotate(x, start):
    """Rotary position embedding written from its definition: pairs (i, i + D/2) rotated by pos·θ_i."""
    D = x.shape[-1]
    pos = torch.arange(start, start + x.shape[2], dtype=torch.float64)
    theta = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = (pos[:, None] * theta[None]).float()
    a, b = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], dim=-1)


ATTENTION_CASES = {
    "self": dict(),
    "causal": dict(causal=True),
    "no-k-bias": dict(k_bias=False),
    "no-bias": dict(qkv_bias=False, out_bias=False),
    "qk-norm": dict(qk_norm=True),
    "rotary-causal": dict(positions="rotary", causal=True),
    "rmsnorm-qk": dict(qk_norm=True, norm="rmsnorm"),
}


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_self_attention_equals_naive(case):
    attn = randomize(Attention(cfg(**ATTENTION_CASES[case])))
    x = torch.randn(2, 7, W)
    torch.testing.assert_close(attn(x), naive_attention(attn, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["self", "causal", "rotary-causal"])
def test_self_attention_with_padding_equals_naive(case):
    attn = randomize(Attention(cfg(**ATTENTION_CASES[case])))
    x = torch.randn(2, 7, W)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    pad[1, :2] = True  # left padding too
    got, want = attn(x, key_padding_mask=pad), naive_attention(attn, x, key_padding_mask=pad)
    keep = torch.ones(2, 7, dtype=torch.bool)
    if "causal" in case:
        keep[1, :2] = False  # those queries see only padding: undefined in both
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(), dict(k_bias=False), dict(qk_norm=True), dict(context_width=24)])
def test_cross_attention_equals_naive(kw):
    attn = randomize(Attention(cfg(**kw), cross=True))
    x, ctx = torch.randn(2, 5, W), torch.randn(2, 9, kw.get("context_width", W))
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    torch.testing.assert_close(attn(x, context=ctx), naive_attention(attn, x, ctx), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x, context=ctx, key_padding_mask=pad),
                               naive_attention(attn, x, ctx, key_padding_mask=pad), atol=1e-5, rtol=1e-5)


def test_attention_under_cpu_bf16_autocast_uses_attend_bf16_and_matches():
    """Under CPU autocast attention skips SDPA (its bfloat16 backward is ~10x slower on CPU) for
    ``attend_bf16``: bfloat16 matmuls, float32 softmax. The result is bfloat16, close to float32,
    and gradients flow; with and without a padding mask."""
    attn = randomize(Attention(cfg()), seed=3).train()
    x = torch.randn(2, 7, W, requires_grad=True)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True
    real = F.scaled_dot_product_attention

    def spy(*args, **kw):
        raise AssertionError("SDPA called under CPU autocast")
    for mask in (None, pad):
        F.scaled_dot_product_attention = spy
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = attn(x, key_padding_mask=mask)
        finally:
            F.scaled_dot_product_attention = real
        assert y.dtype == torch.bfloat16
        want = naive_attention(attn, x, key_padding_mask=mask).detach()
        assert ((y.float() - want).norm() / want.norm()).item() < 0.03  # bf16 matmuls: ~1 % relative error
        x.grad = None
        y.float().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("L,T,causal,masked", [(5, 5, True, False), (3, 7, False, True), (6, 6, True, True),
                                                (4, 9, True, False), (6, 6, False, False)])
def test_attend_bf16_equals_sdpa(L, T, causal, masked):
    """``attend_bf16`` has SDPA's semantics (top-left causal mask, boolean keep-mask, a row with no key
    gives zeros): equal in float64 up to its float32 softmax, forward and gradients."""
    g = torch.Generator().manual_seed(L * 10 + T)
    q, k, v = (torch.randn(2, 3, n, 8, dtype=torch.float64, generator=g).requires_grad_() for n in (L, T, T))
    mask = None
    if masked:
        mask = torch.rand(2, 1, L, T, generator=g) > 0.4
        mask[0, :, 0] = False  # a query row with nothing to attend
    got = attend_bf16(q, k, v, mask, causal, 0.0)
    if causal and mask is not None:  # SDPA takes one or the other
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & torch.ones(L, T, dtype=torch.bool).tril())
    else:
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    w = torch.randn(want.shape, dtype=torch.float64, generator=g)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (q, k, v)), torch.autograd.grad((want * w).sum(), (q, k, v))):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    if mask is not None:
        assert (got[0, :, 0] == 0).all()


def test_attend_bf16_dropout_drops_weights_and_rescales():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 4, 8, generator=g), torch.randn(1, 1, 64, 8, generator=g)
    v = torch.eye(64)[None, None]  # the output row is the weight vector itself
    torch.manual_seed(0)
    weights = attend_bf16(q, k, v, None, False, 0.5)
    full = attend_bf16(q, k, v, None, False, 0.0)
    kept = weights != 0
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(weights[kept], 2 * full[kept])


def test_cached_chunk_uses_bottom_right_causal_mask():
    """3 new queries over 4 cached + 3 new keys: query i sees keys 0..4+i (is_causal would be wrong)."""
    for positions in ("none", "rotary"):
        attn = randomize(Attention(cfg(causal=True, positions=positions)))
        x = torch.randn(2, 7, W)
        cache = KVCache(1, 2, H, W // H, 16)
        attn(x[:, :4], cache=cache)
        cache.length = 4
        got = attn(x[:, 4:], cache=cache)
        want = naive_attention(attn, x[:, 4:], context=x, past=4)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_padded_keys_get_no_weight():
    """Whatever padded positions hold, the unpadded outputs do not move."""
    for kw, cross in ((dict(), False), (dict(causal=True), False), (dict(), True)):
        attn = randomize(Attention(cfg(**kw), cross=cross))
        x = torch.randn(2, 6, W)
        pad = torch.zeros(2, 6, dtype=torch.bool)
        pad[:, 4:] = True
        noisy = x.clone()
        noisy[:, 4:] = torch.randn(2, 2, W) * 100
        if cross:
            a = attn(x[:, :3], context=x, key_padding_mask=pad)
            b = attn(x[:, :3], context=noisy, key_padding_mask=pad)
        else:
            a = attn(x, key_padding_mask=pad)[:, :4]
            b = attn(noisy, key_padding_mask=pad)[:, :4]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_key_padding_mask_shape_is_checked():
    attn = Attention(cfg())
    with pytest.raises(InputError, match="key_padding_mask"):
        attn(torch.randn(2, 5, W), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))


# ------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("positions", ["learned", "rotary", "sinusoidal"])
def test_causal_stack_ignores_the_future(positions):
    model = randomize(Transformer(cfg(causal=True, positions=positions, max_len=16)))
    x = torch.randn(2, 8, W, requires_grad=True)
    y = model(x)
    t = 4
    changed = x.detach().clone()
    changed[:, t + 1:] = torch.randn(2, 8 - t - 1, W)
    torch.testing.assert_close(model(changed)[:, : t + 1], y[:, : t + 1], atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(y[:, t].sum(), x)
    assert grad[:, t + 1:].abs().max() == 0
    assert grad[:, : t + 1].abs().max() > 0


def test_bidirectional_stack_sees_the_future():
    model = randomize(Transformer(cfg()))
    x = torch.randn(1, 6, W, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    assert grad[:, 1:].abs().min() > 0


# -------------------------------------------------------------------------------------- KV cache
DECODER_CASES = {
    "learned": dict(positions="learned", max_len=32),
    "rotary-qknorm": dict(positions="rotary", qk_norm=True, norm="rmsnorm", mlp="swiglu"),
    "whisper-like": dict(positions="learned", max_len=32, k_bias=False, cross_attention=True),
    "cross-rotary": dict(positions="rotary", cross_attention=True, context_width=24),
}


@pytest.mark.parametrize("case", DECODER_CASES)
@pytest.mark.parametrize("chunks", [[1] * 10, [3, 3, 4], [4, 1, 5], [10]])
def test_incremental_decoding_equals_full_forward(case, chunks):
    kw = DECODER_CASES[case]
    model = randomize(Transformer(cfg(causal=True, **kw)))
    x = torch.randn(2, 10, W)
    ctx = torch.randn(2, 9, kw.get("context_width", W)) if kw.get("cross_attention") else None
    with torch.no_grad():
        full = model(x, context=ctx)
        cache = model.new_cache(batch=2, max_len=16)
        outs, start = [], 0
        for n in chunks:
            # the context goes in once; later steps read its keys/values from the cache
            outs.append(model(x[:, start:start + n], context=ctx if start == 0 else None, cache=cache))
            start += n
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_cache_reorder_equals_recompute():
    model = randomize(Transformer(cfg(causal=True, positions="learned", max_len=32, cross_attention=True)))
    x, ctx = torch.randn(3, 8, W), torch.randn(3, 5, W)
    index = torch.tensor([2, 0, 0])
    with torch.no_grad():
        cache = model.new_cache(3, 16)
        model(x[:, :5], context=ctx, cache=cache)
        cache.reorder(index)
        got = model(x[index, 5:], cache=cache)
        want = model(x[index], context=ctx[index])[:, 5:]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_fanned_out_rows_share_their_inputs_cross_attention_keys():
    """Rows fanned out with ``reorder(index, cross=False)`` (three beams for each of two inputs) keep
    one copy of each input's cross-attention keys/values and attend to it together: the same result
    as every row holding its own copy; a context count that does not divide the rows is refused."""
    model = randomize(Transformer(cfg(causal=True, positions="learned", max_len=32, cross_attention=True)))
    x, ctx = torch.randn(2, 8, W), torch.randn(2, 5, W)
    fan_out = torch.tensor([0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        shared, copied = model.new_cache(2, 16), model.new_cache(2, 16)
        model(x[:, :5], context=ctx, cache=shared)
        model(x[:, :5], context=ctx, cache=copied)
        shared.reorder(fan_out, cross=False)
        copied.reorder(fan_out)
        assert shared.cross[0][0].shape[0] == 2 and copied.cross[0][0].shape[0] == 6
        steps = x[fan_out, 5:] + 0.1 * torch.randn(6, 3, W)  # the beams now differ
        got = model(steps, cache=shared)
        want = model(steps, cache=copied)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    attn = randomize(Attention(cfg(), cross=True))
    k, v = attn.context_kv(torch.randn(4, 5, W))
    with pytest.raises(InputError, match="found 4 contexts for 6 rows"):
        attn._attend_shared(torch.randn(6, attn.heads, 1, attn.head_dim), k, v, None, 0.0)


def test_cache_overflow_is_an_input_error():
    model = Transformer(cfg(causal=True))
    cache = model.new_cache(1, 4)
    with pytest.raises(InputError, match="KV cache"):
        model(torch.randn(1, 5, W), cache=cache)


# ------------------------------------------------------------------------------------ adaLN-Zero
@pytest.mark.parametrize("kw", [dict(), dict(cross_attention=True), dict(cond_width=12, mlp="gelu_tanh")])
def test_fresh_adaln_zero_block_is_identity(kw):
    block = Block(cfg(adaln=True, **kw)).eval()
    x = torch.randn(2, 6, W)
    cond = torch.randn(2, kw.get("cond_width", W))
    ctx = torch.randn(2, 4, W) if kw.get("cross_attention") else None
    torch.testing.assert_close(block(x, cond=cond, context=ctx), x, atol=0, rtol=0)
    # ... and it is not stuck there: once trained weights appear, it changes x
    randomize(block)
    assert (block(x, cond=cond, context=ctx) - x).abs().max() > 1e-3


def test_adaln_modulates_with_shift_scale_gate():
    block = randomize(Block(cfg(adaln=True)))
    x, c = torch.randn(2, 5, W), torch.randn(2, W)
    s1, k1, g1, s2, k2, g2 = block.ada(c).chunk(6, -1)
    norm = lambda t: F.layer_norm(t, (W,), eps=1e-5)
    h = x + g1[:, None] * block.attn(norm(x) * (1 + k1[:, None]) + s1[:, None])
    h = h + g2[:, None] * block.mlp(norm(h) * (1 + k2[:, None]) + s2[:, None])
    # float32 sums in another order: values near 1 differ by up to ~2e-5 on some inputs
    torch.testing.assert_close(block(x, cond=c), h, atol=1e-4, rtol=1e-4)


def test_per_block_conditioning():
    model = randomize(Transformer(cfg(adaln=True)))
    x, cs = torch.randn(2, 5, W), [torch.randn(2, W) for _ in range(3)]
    h = x
    for block, c in zip(model.blocks, cs):
        h = block(h, cond=c)
    torch.testing.assert_close(model(x, cond=cs), model.norm(h), atol=1e-6, rtol=1e-6)



def test_mlp_norm_eps_applies_to_the_norm_before_the_mlp_only():
    block = Block(cfg(adaln=True, norm_eps=1e-6, mlp_norm_eps=1e-2))
    assert block.norm1.eps == 1e-6 and block.norm2.eps == 1e-2
    assert Block(cfg(norm_eps=1e-6)).norm2.eps == 1e-6  # default: norm_eps
    randomize(block)
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 5, W, generator=g) * 0.05, torch.randn(2, W, generator=g)  # small: eps matters
    s1, k1, g1, s2, k2, g2 = block.ada(c).chunk(6, -1)
    h = x + g1[:, None] * block.attn(F.layer_norm(x, (W,), eps=1e-6) * (1 + k1[:, None]) + s1[:, None])
    h = h + g2[:, None] * block.mlp(F.layer_norm(h, (W,), eps=1e-2) * (1 + k2[:, None]) + s2[:, None])
    torch.testing.assert_close(block(x, cond=c), h, atol=1e-4, rtol=1e-4)  # eps 1e-6 here differs by > 1e-2

# ------------------------------------------------------------------------------------- positions
def test_sinusoids_1d_match_whisper():
    whisper = pytest.importorskip("whisper.model")
    torch.testing.assert_close(sinusoids_1d(1500, 384), whisper.sinusoids(1500, 384), atol=1e-5, rtol=0)


def test_sinusoids_2d_match_diffusers():
    emb = pytest.importorskip("diffusers.models.embeddings")
    for base_size, scale in ((6, 1.0), (3, 2.0)):  # diffusers divides positions by grid / base_size
        ref = emb.get_2d_sincos_pos_embed(64, 6, base_size=base_size, output_type="pt")
        torch.testing.assert_close(sinusoids_2d(6, 6, 64, scale=scale), ref.float(), atol=1e-5, rtol=0)


def test_sinusoids_2d_layout_is_row_major_with_columns_first():
    table = sinusoids_2d(2, 3, 8)  # row r, column c sits at r * 3 + c
    torch.testing.assert_close(table[1 * 3 + 2, :4], sinusoids_2d(1, 3, 8)[2, :4])  # column part
    torch.testing.assert_close(table[1 * 3 + 2, 4:], sinusoids_2d(2, 1, 8)[1, 4:])  # row part
    torch.testing.assert_close(table[0, :], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def test_learned_and_fixed_positions_are_added_at_the_cache_offset():
    for kw in (dict(positions="learned", max_len=8), dict(positions="sinusoidal", max_len=8),
               dict(positions="sinusoidal_2d", grid=(2, 4))):
        model = Transformer(cfg(**kw))
        x = torch.zeros(1, 8, W)
        table = model.add_positions(x)[0]
        assert table.abs().sum() > 0
        torch.testing.assert_close(model.add_positions(x[:, :3], start=5)[0], table[5:])
        with pytest.raises(InputError, match="positions"):
            model.add_positions(torch.zeros(1, 9, W))


def test_rotary_scores_depend_only_on_relative_position():
    attn = Attention(cfg(positions="rotary"))
    q, k = torch.randn(1, 1, 1, W // H), torch.randn(1, 1, 1, W // H)
    score = lambda m, n: (attn.rotary(q, m) * attn.rotary(k, n)).sum()
    torch.testing.assert_close(score(3, 1), score(10, 8), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))


# ----------------------------------------------------------------------------------- MLP / config
def test_mlp_variants():
    x = torch.randn(2, 3, W)
    for kind, act in (("gelu", lambda h: F.gelu(h)), ("gelu_tanh", lambda h: F.gelu(h, approximate="tanh"))):
        mlp = randomize(Block(cfg(mlp=kind))).mlp
        torch.testing.assert_close(mlp(x), mlp.fc2(act(mlp.fc1(x))))
    mlp = randomize(Block(cfg(mlp="swiglu"))).mlp
    gate, up = mlp.fc1(x).chunk(2, -1)
    torch.testing.assert_close(mlp(x), mlp.fc2(F.silu(gate) * up))
    assert cfg(mlp="swiglu").hidden % 8 == 0


def test_config_round_trips_through_json():
    c = cfg(positions="sinusoidal_2d", grid=(4, 6), adaln=True, cond_width=16, layer_scale=1e-5,
            mlp_hidden=48, cross_attention=True, context_width=24)
    back = BackboneConfig.from_json(c.to_json())
    assert back == c and isinstance(back.grid, tuple)
    model, rebuilt = Transformer(c), Transformer(back)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
           [(k, v.shape) for k, v in rebuilt.state_dict().items()]


@pytest.mark.parametrize("bad, match", [
    (dict(width=30, heads=4), "divisible"),
    (dict(norm="batchnorm"), "norm"),
    (dict(mlp="relu6"), "mlp"),
    (dict(positions="learned"), "max_len"),
    (dict(positions="sinusoidal_2d"), "grid"),
])
def test_bad_config_is_an_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        cfg(**bad)


def test_unknown_config_field_is_named():
    with pytest.raises(InputError, match="colour"):
        BackboneConfig.from_dict({"width": 32, "colour": "red"})


def test_wrong_input_shape_is_an_input_error():
    with pytest.raises(InputError, match="transformer input"):
        Transformer(cfg())(torch.randn(2, 5, W + 1))


def test_drop_path_and_layer_scale_train_but_eval_is_deterministic():
    model = randomize(Transformer(cfg(drop_path=0.5, layer_scale=1e-4)))
    x = torch.randn(4, 5, W)
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.numerics
def test_inference_path_equals_autograd_path():
    """Without autograd the MLP applies GELU in place and the residual lands in place; it must
    compute the same thing. Within float32 rounding, not bit for bit: with autograd on, a library
    may pick another kernel (SDPA's, a GEMM's) that sums in another order."""
    for kind in ("gelu", "gelu_tanh", "swiglu"):
        model = randomize(Transformer(cfg(mlp=kind, k_bias=False)))
        x = torch.randn(2, 5, W)
        with torch.no_grad():
            fast = model(x)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), fast, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model(x), fast, atol=1e-6, rtol=1e-6)


class LowRank(torch.nn.Module):
    """A Linear plus a low-rank update, as a LoRA adapter wraps one."""

    def __init__(self, base: torch.nn.Linear, rank: int = 2):
        super().__init__()
        self.base = base
        g = torch.Generator().manual_seed(3)
        self.down = torch.nn.Parameter(torch.randn(rank, base.in_features, generator=g))
        self.up = torch.nn.Parameter(torch.randn(base.out_features, rank, generator=g))

    def forward(self, x):
        return self.base(x) + x @ self.down.T @ self.up.T

    def merged(self) -> torch.nn.Linear:
        linear = torch.nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.base.weight + self.up @ self.down)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("k_bias", [True, False])
def test_a_wrapped_projection_takes_effect(cross, k_bias):
    """Attention calls its projections as modules: a wrapper around any of them (an adapter, a
    quantised Linear) changes the output exactly as merging its update into the weight would."""
    attn = randomize(Attention(cfg(k_bias=k_bias), cross=cross))
    attn.zero_key_bias()
    x, ctx = torch.randn(2, 5, W), torch.randn(2, 6, W)
    before = attn(x, context=ctx if cross else None)
    for name in (("q", "kv", "out") if cross else ("qkv", "out")):
        wrapped = LowRank(getattr(attn, name))
        setattr(attn, name, wrapped)
        got = attn(x, context=ctx if cross else None)
        assert (got - before).abs().max() > 1e-2, name  # the adapter changes the output
        setattr(attn, name, wrapped.merged())
        torch.testing.assert_close(got, attn(x, context=ctx if cross else None), atol=1e-4, rtol=1e-4)
        before = got


def test_state_dict_names_and_a_loaded_key_bias_is_ignored():
    """Shipped checkpoints load: the names are the projections'. Without key bias, a checkpoint's
    key-slice values load as stored (round trips are exact) but take no effect, and that slice
    never trains."""
    attn = Attention(cfg(k_bias=False))
    assert set(attn.state_dict()) == {"qkv.weight", "qkv.bias", "out.weight", "out.bias"}
    state = {k: torch.randn_like(v) for k, v in attn.state_dict().items()}
    attn.load_state_dict(state)
    assert all(torch.equal(attn.state_dict()[k], v) for k, v in state.items())
    x = torch.randn(2, 5, W)
    with torch.no_grad():
        loaded = attn(x)
        attn.qkv.bias[W:2 * W] = 0.0
    torch.testing.assert_close(loaded, attn(x), atol=1e-4, rtol=1e-4)
    attn(x).square().sum().backward()
    assert not attn.qkv.bias.grad[W:2 * W].any() and attn.qkv.bias.grad[:W].any()
