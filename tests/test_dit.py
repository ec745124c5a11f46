"""The DiT denoiser: adaLN-Zero start, shapes for every patch size, the paper's parameter counts,
timestep sinusoids against diffusers, condition dropping (null class, null text token, padding),
save / load, and bad input."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from multimodal.errors import InputError
from multimodal.checkpoint import count_parameters
from multimodal.models.dit import DiT, DiTConfig, timestep_sinusoids
from helpers import randomize

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(input_size=8, patch_size=2, in_channels=4, width=32, depth=2, heads=2)


randomize = partial(randomize, scale=0.2)  # every parameter, the zero-initialised adaLN ones included


def latents(batch=3, channels=4, h=8, w=8, seed=1):
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def text(batch=3, length=5, dim=12, seed=2):
    return torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [dict(), dict(num_classes=10), dict(context_dim=12), dict(num_classes=3, context_dim=12)],
                         ids=["uncond", "class", "text", "class+text"])
def test_fresh_model_outputs_zero_and_trains_from_there(kw):
    model = DiT(DiTConfig(**TINY, **kw)).eval()
    extra = {}
    if kw.get("num_classes"):
        extra["class_labels"] = torch.tensor([0, 1, 2])
    if kw.get("context_dim"):
        extra["context"] = text()
    x = latents()
    out = model(x, torch.tensor([1, 500, 999]), **extra)
    assert out.shape == x.shape and out.abs().max() == 0  # adaLN-Zero and a zero final layer
    out.sum().backward()  # gradients reach the final layer, which then moves the output
    assert model.final.linear.weight.grad.abs().max() > 0


@pytest.mark.parametrize("patch", [1, 2, 4, 8])
def test_patch_sizes_and_learn_sigma_shapes(patch):
    cfg = DiTConfig(**{**TINY, "input_size": (8, 16), "patch_size": patch, "learn_sigma": True})
    model = randomize(DiT(cfg))
    assert cfg.out_channels == 8 and model.transformer.pos_embed.shape == ((8 // patch) * (16 // patch), 32)
    out = model(latents(2, 4, 8, 16), torch.tensor([3.5, 700.0]))
    assert out.shape == (2, 8, 8, 16) and torch.isfinite(out).all()


def test_presets_have_the_dit_papers_parameter_counts():
    # DiT (Peebles & Xie), table 1 / README: S 33M, B 130M, L 458M, XL 675M at 256 px (32x32 latents),
    # 1000 classes, learned sigma. Their count includes the fixed position table (a frozen
    # Parameter there, a buffer here).
    paper = {"s": 33e6, "b": 130e6, "l": 458e6, "xl": 675e6}
    for size, expected in paper.items():
        cfg = DiTConfig.preset(f"dit-{size}/2", num_classes=1000, learn_sigma=True)
        with torch.device("meta"):
            model = DiT(cfg)
        ours = count_parameters(model) + model.transformer.pos_embed.numel()
        assert abs(ours - expected) / expected < 0.005, (size, ours)
    cfg = DiTConfig.preset("dit-xl/8")
    assert (cfg.width, cfg.depth, cfg.heads, cfg.patch_size, cfg.grid) == (1152, 28, 16, 8, (4, 4))
    with pytest.raises(InputError, match="preset"):
        DiTConfig.preset("dit-m/2")
    with pytest.raises(InputError, match="preset"):
        DiTConfig.preset("dit-s/3")


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_timestep_sinusoids_match_diffusers(shift):
    emb = pytest.importorskip("diffusers.models.embeddings")
    t = torch.tensor([0.0, 1.0, 17.5, 999.0])
    ref = emb.get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=shift)
    torch.testing.assert_close(timestep_sinusoids(t, 256, shift), ref, atol=1e-6, rtol=0)
    # DiT's own frequencies (shift 0): exp(-ln(10^4) i / 128), cosines first
    freqs = torch.exp(-torch.log(torch.tensor(1e4)) * torch.arange(128) / 128)
    if shift == 0:
        torch.testing.assert_close(timestep_sinusoids(t)[:, :128], (t[:, None] * freqs).cos())


def test_integer_and_float_timesteps_agree_and_scalar_broadcasts():
    model = randomize(DiT(DiTConfig(**TINY)))
    x = latents()
    a = model(x, torch.tensor([5, 5, 5]))
    torch.testing.assert_close(model(x, torch.tensor([5.0, 5.0, 5.0])), a)
    torch.testing.assert_close(model(x, 5), a)
    assert not torch.allclose(model(x, 6), a)


def test_class_conditioning_and_the_null_class():
    model = randomize(DiT(DiTConfig(**TINY, num_classes=10)))
    x, t = latents(), torch.tensor([10, 20, 30])
    a = model(x, t, class_labels=torch.tensor([1, 2, 3]))
    assert not torch.allclose(a, model(x, t, class_labels=torch.tensor([4, 2, 3])))
    null = model(x, t, class_labels=torch.tensor([10, 10, 10]))
    torch.testing.assert_close(model(x, t), null)  # no labels: the null class
    dropped = model(x, t, class_labels=torch.tensor([1, 2, 3]), drop_condition=torch.tensor([True, False, True]))
    torch.testing.assert_close(dropped[[0, 2]], null[[0, 2]])
    torch.testing.assert_close(dropped[1], a[1])


def test_training_mode_drops_conditions_at_the_configured_rate():
    model = randomize(DiT(DiTConfig(**{**TINY, "depth": 1}, num_classes=10, class_dropout_prob=0.5)))
    x, t, y = latents(64), torch.full((64,), 100), torch.full((64,), 4)
    with torch.no_grad():
        cond, null = model(x, t, class_labels=y), model(x, t)
        torch.manual_seed(0)
        out = model.train()(x, t, class_labels=y)
    is_null = (out - null).flatten(1).abs().amax(1) < 1e-6
    is_cond = (out - cond).flatten(1).abs().amax(1) < 1e-6
    assert bool((is_null ^ is_cond).all()) and 16 < int(is_null.sum()) < 48


def test_the_null_token_gets_a_gradient_even_when_no_row_is_dropped():
    """Sharded training reduces every parameter's gradient on every rank alike: the null text token
    takes part in each step (a zero gradient when no row dropped its text), and the output is
    unchanged by it."""
    model = randomize(DiT(DiTConfig(**TINY, context_dim=12, class_dropout_prob=0.0))).train()
    x, t, ctx = latents(), torch.tensor([10, 400, 900]), text()
    model(x, t, context=ctx).square().mean().backward()
    assert model.null_context.grad is not None and torch.count_nonzero(model.null_context.grad) == 0


def test_text_padding_pooling_and_the_null_token():
    model = randomize(DiT(DiTConfig(**TINY, context_dim=12)))
    x, t, ctx = latents(), torch.tensor([10, 400, 900]), text()
    mask = torch.tensor([[False] * 5, [False, False, False, True, True], [True] * 5])  # row 2: empty prompt
    out = model(x, t, context=ctx, context_mask=mask)
    # padded tokens have no influence, whatever they hold
    ctx2 = ctx.clone()
    ctx2[1, 3:] = 100.0
    ctx2[2] = -7.0
    torch.testing.assert_close(model(x, t, context=ctx2, context_mask=mask), out)
    # pooled text defaults to the mean of the unpadded tokens
    pooled = torch.stack([ctx[0].mean(0), ctx[1, :3].mean(0), torch.zeros(12)])
    torch.testing.assert_close(model(x, t, context=ctx, context_mask=mask, pooled=pooled)[:2], out[:2])
    assert not torch.allclose(model(x, t, context=ctx, context_mask=mask, pooled=pooled * 2)[:2], out[:2])
    # an all-padding row, a dropped row and no text at all are the same unconditional prediction
    uncond = model(x, t)
    torch.testing.assert_close(out[2], uncond[2])
    dropped = model(x, t, context=ctx, context_mask=mask, drop_condition=torch.tensor([True, False, False]))
    torch.testing.assert_close(dropped[0], uncond[0])
    torch.testing.assert_close(dropped[1], out[1])
    # text is cross-attended, not only pooled: other tokens with the same mean change the output
    shuffled = ctx.clone()
    shuffled[0, :2] += 1.0
    shuffled[0, 2:4] -= 1.0
    changed = model(x, t, context=shuffled, context_mask=mask, pooled=pooled)
    assert not torch.allclose(changed[0], out[0])


def test_per_block_embedders_with_equal_weights_equal_shared_ones():
    shared = randomize(DiT(DiTConfig(**TINY, num_classes=5)))
    per_block = DiT(DiTConfig(**TINY, num_classes=5, embedder_per_block=True)).eval()
    state = shared.state_dict()
    state.update({k.replace("embedders.0.", "embedders.1."): v for k, v in state.items() if k.startswith("embedders.0.")})
    per_block.load_state_dict(state)
    x, t, y = latents(), torch.tensor([1, 2, 3]), torch.tensor([0, 4, 5])
    torch.testing.assert_close(per_block(x, t, class_labels=y), shared(x, t, class_labels=y))
    with torch.no_grad():
        per_block.embedders[1].label.weight.add_(1.0)
    assert not torch.allclose(per_block(x, t, class_labels=y), shared(x, t, class_labels=y))


def test_save_and_load_round_trip(tmp_path):
    model = randomize(DiT(DiTConfig(**{**TINY, "input_size": (8, 4)}, num_classes=4, context_dim=12, learn_sigma=True)))
    model.save_pretrained(tmp_path / "dit")
    back = DiT.from_pretrained(tmp_path / "dit")
    assert back.config == model.config and back.config.input_size == (8, 4)
    x, t, y, ctx = latents(3, 4, 8, 4), torch.tensor([1, 2, 3]), torch.tensor([0, 1, 4]), text()
    torch.testing.assert_close(back(x, t, class_labels=y, context=ctx), model(x, t, class_labels=y, context=ctx))


@pytest.mark.parametrize("call, match", [
    (lambda m: m(torch.randn(2, 3, 8, 8), torch.tensor([1, 2])), "x: expected"),
    (lambda m: m(torch.randn(2, 4, 16, 16), torch.tensor([1, 2])), "x: expected"),
    (lambda m: m(torch.randn(2, 4, 8, 8), torch.tensor([1, 2, 3])), "t: expected"),
    (lambda m: m(torch.randn(2, 4, 8, 8), 1, class_labels=torch.tensor([1, 11])), "class_labels"),
    (lambda m: m(torch.randn(2, 4, 8, 8), 1, class_labels=torch.tensor([0.5, 1.0])), "class_labels"),
    (lambda m: m(torch.randn(2, 4, 8, 8), 1, context=torch.randn(2, 3, 7)), "context: expected"),
    (lambda m: m(torch.randn(2, 4, 8, 8), 1, context=torch.randn(2, 3, 12), context_mask=torch.ones(2, 4, dtype=torch.bool)),
     "context_mask"),
    (lambda m: m(torch.randn(2, 4, 8, 8), 1, drop_condition=torch.tensor([1, 0])), "drop_condition"),
])
def test_bad_input_is_an_input_error(call, match):
    model = DiT(DiTConfig(**TINY, num_classes=10, context_dim=12)).eval()
    with pytest.raises(InputError, match=match):
        call(model)


@pytest.mark.parametrize("bad, match", [
    (dict(input_size=7), "input_size"),
    (dict(learn_sigma=True, out_channels=5), "out_channels"),
    (dict(width=30), "width"),
    (dict(num_classes=-1), "num_classes"),
    (dict(class_dropout_prob=1.0), "class_dropout_prob"),
])
def test_bad_config_is_an_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        DiTConfig(**{**TINY, **bad})


def test_unconditional_model_rejects_conditions():
    model = DiT(DiTConfig(**TINY)).eval()
    with pytest.raises(InputError, match="num_classes 0"):
        model(latents(), 1, class_labels=torch.tensor([0, 0, 0]))
    with pytest.raises(InputError, match="context_dim 0"):
        model(latents(), 1, context=text())


def test_guidance_with_text_batches_context_masks_and_the_null_token():
    from multimodal.generation.guidance import classifier_free_guidance

    model = randomize(DiT(DiTConfig(**TINY, context_dim=12)))
    x, t, ctx = latents(), torch.tensor([10, 400, 900]), text()
    mask = torch.tensor([[False] * 5, [False, False, False, True, True], [False] * 5])
    kwargs = dict(context=ctx, context_mask=mask)
    cond, uncond = model(x, t, **kwargs), model(x, t)
    torch.testing.assert_close(classifier_free_guidance(model, x, t, 2.5, kwargs), uncond + 2.5 * (cond - uncond),
                               atol=1e-5, rtol=1e-5)
