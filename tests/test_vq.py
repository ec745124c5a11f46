"""The vector quantizer and the VQ-VAE: nearest codes, straight-through gradients, the EMA update
against its formula, dead-code restarts, usage and perplexity, residual levels, and VQ-VAEs of rank
1, 2 and 3 that encode and decode deterministically, save and load, and learn."""

import math

import pytest
import torch
import torch.nn.functional as F

from multimodal.errors import InputError
from multimodal.models import VQVAE, VQVAEConfig
from multimodal.models.autoencoders.quantizer import (QuantizerConfig, ResidualQuantizer, VectorQuantizer,
                                                      codebook_usage, kmeans, perplexity)

pytestmark = pytest.mark.usefixtures("one_thread")


def quantizer(**kwargs) -> VectorQuantizer:
    return VectorQuantizer(QuantizerConfig(**{"codebook_size": 4, "dim": 2, "init": "none", **kwargs}))


def test_lookup_picks_the_nearest_code_and_the_gradient_goes_straight_through():
    q = quantizer(ema=False)
    q.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    z = torch.tensor([[[0.1, -0.1], [0.9, 0.2]], [[0.2, 0.8], [4.0, 4.5]]], requires_grad=True)  # [2, 2, 2]
    out, codes, loss = q.eval()(z)
    assert codes.tolist() == [[0, 1], [2, 3]]
    assert torch.equal(out.detach(), q.codebook.data[codes])
    (out * torch.arange(8.0).reshape(2, 2, 2)).sum().backward()
    assert torch.equal(z.grad, torch.arange(8.0).reshape(2, 2, 2))  # identity: straight through
    assert math.isclose(float(loss.detach()), 0.25 * float(F.mse_loss(z.detach(), out.detach())), rel_tol=1e-6)


def test_the_encoders_gradient_reaches_the_encoder_through_a_vqvae():
    model = VQVAE(VQVAEConfig(channels=16, channel_mult=(1,), strides=(2,),
                              quantizer=QuantizerConfig(codebook_size=8, dim=4)))
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    loss, _, _ = model.loss(x)
    loss.backward()
    first = model.encoder.layers[0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_the_ema_update_equals_its_formula():
    decay, eps = 0.9, 1e-5
    q = quantizer(decay=decay, eps=eps, dead_code_steps=0).train()
    start = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    q.codebook.copy_(start)
    q.embed_sum.copy_(start)
    q.cluster_size.fill_(1.0)
    x = torch.tensor([[0.2, 0.0], [0.0, -0.2], [1.2, 0.2], [0.8, 0.0], [0.0, 0.9]])  # codes 0, 0, 1, 1, 2
    q(x)
    counts = torch.tensor([2.0, 2.0, 1.0, 0.0])
    sums = torch.stack([x[:2].sum(0), x[2:4].sum(0), x[4], torch.zeros(2)])
    size = decay * 1.0 + (1 - decay) * counts
    total = decay * start + (1 - decay) * sums
    n = size.sum()
    smoothed = (size + eps) / (n + 4 * eps) * n
    torch.testing.assert_close(q.cluster_size, size)
    torch.testing.assert_close(q.codebook, total / smoothed[:, None])


def test_dead_codes_are_restarted_from_encoder_outputs():
    q = quantizer(dead_code_steps=3).train()
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    q.embed_sum.copy_(q.codebook)
    x = torch.randn(64, 2) * 0.1
    for _ in range(2):
        q(x)
    assert (q.codebook[1:].abs() > 50).all()  # unused for 2 steps: still far away
    q(x)
    # unused for 3 steps: re-seeded at encoder outputs (rows of x), and in use again
    assert all(any(torch.allclose(c, row) for row in x) for c in q.codebook[1:])
    codes = q.eval()(x + 0.01)[1]
    assert codebook_usage(codes, 4) > 0.25


def test_initialization_from_the_first_batch():
    torch.manual_seed(0)
    blobs = torch.cat([torch.randn(50, 2) * 0.05 + torch.tensor(c) for c in ([0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [3.0, 3.0])])
    for init in ("kmeans", "random"):
        q = VectorQuantizer(QuantizerConfig(codebook_size=4, dim=2, init=init, ema=False)).train()
        q(blobs)  # without EMA the step leaves the initial codebook as it is
        assert bool(q.initialized)
        near = torch.cdist(q.codebook.detach(), blobs).min(dim=1).values
        assert (near < (0.2 if init == "kmeans" else 1e-3)).all()  # every code starts at the data
    centres = kmeans(blobs, 4, 10, torch.Generator().manual_seed(0))
    assert sorted(map(tuple, centres.round().tolist())) == [(0, 0), (0, 3), (3, 0), (3, 3)]


def test_usage_and_perplexity_of_known_assignments():
    assert codebook_usage(torch.tensor([0, 1, 1, 3]), 8) == 3 / 8
    assert math.isclose(perplexity(torch.tensor([0, 1, 2, 3]), 8), 4.0, rel_tol=1e-9)
    assert math.isclose(perplexity(torch.tensor([5, 5, 5]), 8), 1.0, rel_tol=1e-9)
    # two codes at 3/4 and 1/4: exp(H)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(perplexity(torch.tensor([1, 1, 1, 2]), 8), math.exp(h), rel_tol=1e-9)
    assert codebook_usage(torch.tensor([[0, -1], [2, -1]]), 4) == 0.5  # -1: a dropped level


def test_l2_normalized_low_dimensional_lookup():
    q = VectorQuantizer(QuantizerConfig(codebook_size=16, dim=8, codebook_dim=3, l2_normalize=True)).train()
    q(torch.randn(100, 8))
    assert q.codebook.shape == (16, 3)
    torch.testing.assert_close(q.codebook.norm(dim=1), torch.ones(16))
    out, codes, _ = q.eval()(torch.randn(4, 5, 8))
    assert out.shape == (4, 5, 8) and codes.shape == (4, 5)


def test_residual_levels_refine_and_dropout_skips_levels():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    errors = []
    for levels in (1, 2, 4):
        rq = ResidualQuantizer(QuantizerConfig(codebook_size=16, dim=4, levels=levels)).train()
        for _ in range(20):
            rq(x)
        rq.eval()
        codes = rq.encode(x[:, None, :])  # [256, levels, 1] or [256, 1]
        assert codes.shape == ((256, 1) if levels == 1 else (256, levels, 1))
        errors.append(float(F.mse_loss(rq.decode(codes)[:, 0], x)))
        torch.testing.assert_close(rq(x[:, None, :])[0], rq.decode(codes))
    assert errors[0] > errors[1] > errors[2]
    rq = ResidualQuantizer(QuantizerConfig(codebook_size=8, dim=4, levels=3, quantizer_dropout=1.0)).train()
    torch.manual_seed(3)
    seen = {int((rq(torch.randn(2, 5, 4))[1] >= 0).all(dim=0).all(dim=-1).sum()) for _ in range(30)}
    assert seen == {1, 2, 3}  # a training step keeps 1, 2 or all 3 levels


@pytest.mark.parametrize("dims,shape,strides,levels", [
    (1, (2, 1, 400), (4, 5), 2),
    (2, (2, 3, 32, 32), (2, 2), 1),
    (3, (2, 3, 4, 16, 16), ((1, 2, 2), (2, 2, 2)), 1),
])
def test_vqvae_of_every_rank(dims, shape, strides, levels, tmp_path):
    torch.manual_seed(0)
    config = VQVAEConfig(dims=dims, in_channels=shape[1], channels=16, channel_mult=(1, 2), strides=strides,
                         quantizer=QuantizerConfig(codebook_size=32, dim=8, levels=levels))
    model = VQVAE(config)
    x = torch.rand(shape) * 2 - 1
    model.loss(x)  # initialises the codebook
    model.eval()
    grid = config.grid(shape[2:])
    codes = model.encode(x)
    assert codes.dtype == torch.long and codes.shape == (2, *((levels,) if levels > 1 else ()), *grid)
    assert torch.equal(model.encode(x), codes)  # deterministic
    out = model.decode(codes)
    assert out.shape == shape and torch.equal(model.decode(codes), out)
    saved = model.save_pretrained(tmp_path / "vq")
    again = VQVAE.from_pretrained(saved)
    assert torch.equal(again.encode(x), codes)
    torch.testing.assert_close(again.decode(codes), out)


def test_vqvae_bad_codes_and_inputs():
    model = VQVAE(VQVAEConfig(channels=16, channel_mult=(1,), strides=(2,),
                              quantizer=QuantizerConfig(codebook_size=8, dim=4))).eval()
    with pytest.raises(InputError, match=r"codes: expected codes in \[0, 8\), found 8"):
        model.decode(torch.full((1, 4, 4), 8))
    with pytest.raises(InputError, match=r"codes: expected codes in \[0, 8\), found -1"):
        model.decode(torch.full((1, 4, 4), -1))
    with pytest.raises(InputError, match="codes: expected an integer tensor"):
        model.decode(torch.zeros(1, 4, 4))
    with pytest.raises(InputError, match="codes: expected"):
        model.decode(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InputError, match="x: expected each axis a positive multiple"):
        model.encode(torch.zeros(1, 3, 7, 8))
    with pytest.raises(InputError, match="x: expected .* with 3 channels"):
        model.encode(torch.zeros(1, 1, 8, 8))


def test_a_vqvae_learns_to_reconstruct():
    torch.manual_seed(0)
    # images of 4 flat colours in quadrants: easy to code, hard to get right by chance
    colours = torch.rand(64, 4, 3) * 2 - 1
    images = colours[:, :, :, None, None].repeat(1, 1, 1, 8, 8)  # [64, 4, 3, 8, 8]
    images = torch.cat([torch.cat([images[:, 0], images[:, 1]], -1), torch.cat([images[:, 2], images[:, 3]], -1)], -2)
    model = VQVAE(VQVAEConfig(channels=16, channel_mult=(1, 2), strides=(2, 2), res_blocks=1,
                              quantizer=QuantizerConfig(codebook_size=32, dim=8)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(120):
        loss, parts, _ = model.loss(images)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else parts["mse"]
    model.eval()
    with torch.no_grad():
        error = float(F.mse_loss(model.decode(model.encode(images)), images))
    assert error < 0.25 * first
