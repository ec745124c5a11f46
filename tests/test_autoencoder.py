"""The image autoencoder: our wrapper against diffusers' AutoencoderKL, checkpoints, the measured
latent scale, learning on the captioned world, exact resume and bad input. Tiny configs; garments
come from generated 28x28 items, never the Fashion-MNIST package."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from diffusers import AutoencoderKL

from multimodal.checkpoint import load_tensors
from multimodal.data.world import CaptionedWorld
from multimodal.errors import InputError
from multimodal.models.autoencoder import Autoencoder, AutoencoderConfig, measure_latent_scale, reconstruction_psnr
from multimodal.training import autoencoder as training
from conftest import kill_batches_at
from helpers import fake_fashion

pytestmark = pytest.mark.usefixtures("one_thread")

# 32x32 -> 8x8x4 like the real one, at a few thousand parameters.
TINY = AutoencoderConfig(block_out_channels=(8, 8, 16), norm_num_groups=4, layers_per_block=1, latent_channels=4)
# device cpu: the learning thresholds below are float32's. On a GPU the trainer's default is bf16
# autocast, which cut the L1 error by 34 % (not 40 %) in the same 48 steps on an H200.
TRAIN = dict(lr=1e-2, warmup_steps=0, log_every=1, eval_every=0, save_every=0, scale_images=64, eval_images=32,
             progress=False, device="cpu")


@pytest.fixture(scope="module")
def fashion():
    return fake_fashion()


@pytest.fixture(scope="module")
def images(fashion):
    return CaptionedWorld("train", fashion=fashion).sample(48, 0).images


def tiny(scale: float = 1.0, shift: float = 0.0, seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    model = Autoencoder(TINY).eval()
    model.set_latent_scale(scale, shift)
    return model


# ------------------------------------------------------------------------------- against diffusers
def test_encode_decode_equal_diffusers_with_the_same_weights(images):
    model = tiny(scale=0.7, shift=0.2)
    reference = AutoencoderKL(**TINY.diffusers_kwargs()).eval()
    reference.load_state_dict(model.vae.state_dict())
    x = images[:4].float() / 127.5 - 1
    with torch.no_grad():
        latents = model.encode(images[:4])
        assert latents.shape == (4, 4, 8, 8)
        expected = (reference.encode(x).latent_dist.mode() - 0.2) * 0.7
        torch.testing.assert_close(latents, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.encode(x), latents, rtol=0, atol=1e-6)  # float input, same images
        sampled = model.encode(x, sample=True, generator=torch.Generator().manual_seed(5))
        draw = reference.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(sampled, (draw - 0.2) * 0.7, rtol=0, atol=1e-6)
        decoded = model.decode(latents)
        assert decoded.shape == (4, 3, 32, 32) and decoded.dtype == torch.float32
        assert decoded.min() >= -1 and decoded.max() <= 1
        expected = reference.decode(latents / 0.7 + 0.2).sample.clamp(-1, 1)
        torch.testing.assert_close(decoded, expected, rtol=0, atol=1e-6)
    assert reference.config.scaling_factor != model.vae.config.scaling_factor == 0.7  # ours tracks the measurement


def test_config_json_round_trip_and_checkpoint(tmp_path, images):
    assert AutoencoderConfig.from_json(TINY.to_json()) == TINY
    model = tiny(scale=1.3, shift=-0.05)
    folder = model.save_pretrained(tmp_path / "vae")
    saved = json.loads((folder / "config.json").read_text())
    assert (saved["scaling_factor"], saved["shift_factor"], saved["block_out_channels"]) == (1.3, -0.05, [8, 8, 16])
    assert all(k.startswith("vae.") for k in load_tensors(folder / "model.safetensors"))
    loaded = Autoencoder.from_pretrained(folder)
    assert loaded.config == model.config
    with torch.no_grad():
        latents = model.encode(images[:3])
        assert torch.equal(loaded.encode(images[:3]), latents)
        assert torch.equal(loaded.decode(latents), model.decode(latents))


def test_measured_scale_gives_unit_variance_latents(images):
    model = tiny()
    scale, shift = measure_latent_scale(model, images, batch_size=20)  # batches of 20, 20, 8
    assert scale > 0 and scale != 1.0
    model.set_latent_scale(scale, shift)
    with torch.no_grad():
        latents = model.encode(images).double()
    assert abs(latents.mean().item()) < 1e-4
    assert abs(latents.std(unbiased=False).item() - 1) < 1e-4


# ------------------------------------------------------------------------------------------ training
def test_training_on_the_world_learns_and_writes_a_model(tmp_path, fashion):
    held = CaptionedWorld("held_out", fashion=fashion).sample(32, training.HELD_OUT_SEED).images
    before = reconstruction_psnr(tiny(), held)
    result = training.train_autoencoder(tmp_path / "run", steps=48, batch_size=16, seed=0, config=TINY,
                                        fashion=fashion, **TRAIN)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rec = [r["rec"] for r in log if r["kind"] == "train"]
    assert len(rec) == 48 and sum(rec[-5:]) < 0.6 * sum(rec[:5])  # L1 error down by 40 %+
    assert result["held_out_psnr"] > before + 3  # dB, on combinations it never saw
    folder = tmp_path / "run" / "model"
    model = Autoencoder.from_pretrained(folder)
    assert model.config.scaling_factor == pytest.approx(result["scaling_factor"])
    assert model.config.shift_factor == pytest.approx(result["shift_factor"])
    assert reconstruction_psnr(model, held) == pytest.approx(result["held_out_psnr"], abs=1e-4)  # same 32 images
    card = (folder / "MODEL_CARD.md").read_text()
    assert "train_autoencoder(" in card and "PSNR" in card and f"{result['scaling_factor']:.5f}" in card
    assert json.loads((folder / "training.json").read_text())["steps"] == 48


def test_resume_continues_exactly(tmp_path, fashion, monkeypatch):
    options = dict(steps=6, batch_size=4, seed=1, config=TINY, fashion=fashion, **{**TRAIN, "save_every": 2})
    full = training.train_autoencoder(tmp_path / "full", **options)

    make = training.make_batch_fn
    kill_batches_at(monkeypatch, training, 3)
    with pytest.raises(RuntimeError, match="simulated kill"):
        training.train_autoencoder(tmp_path / "cut", **options)
    monkeypatch.setattr(training, "make_batch_fn", make)
    resumed = training.train_autoencoder(tmp_path / "cut", resume=True, **options)
    assert resumed["held_out_psnr"] == full["held_out_psnr"] and resumed["scaling_factor"] == full["scaling_factor"]
    a = load_tensors(tmp_path / "full" / "model" / "model.safetensors")
    b = load_tensors(tmp_path / "cut" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="kl_weight"):
        training.train_autoencoder(tmp_path / "cut", resume=True, **{**options, "kl_weight": 0.1})


def test_cli_arguments_reach_the_run(tmp_path, fashion, monkeypatch):
    seen = {}
    monkeypatch.setattr(training, "train_autoencoder", lambda *a, **k: seen.update(args=a, kwargs=k) or {})
    parser = training.add_train_autoencoder_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out-dir", str(tmp_path), "--max-steps", "7", "--block-out-channels", "8", "16",
                              "--norm-num-groups", "4", "--no-mid-attention", "--loss", "mse", "--kl-weight", "0.01",
                              "--resume", "--no-progress"])
    training.run_train_autoencoder(args)
    k = seen["kwargs"]
    assert seen["args"] == (str(tmp_path),) and k["steps"] == 7 and k["resume"] and not k["progress"]
    assert k["config"].block_out_channels == (8, 16) and not k["config"].mid_block_add_attention
    assert k["loss"] == "mse" and k["kl_weight"] == 0.01 and k["warmup_steps"] == training.RECIPE_TRAIN.warmup_steps
    assert k["command"].startswith("multimodal train vae ") and f"--out-dir {tmp_path}" in k["command"]
    assert "--block-out-channels 8 16" in k["command"] and "--no-mid-attention" in k["command"]


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), r"images: expected images \[batch >= 1, 3, H, W\].*\(2, 1, 32, 32"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), r"images: .*shape \(3, 32, 32\)"),
    (torch.zeros(1, 3, 30, 32), r"images: .*multiples of 4"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int64), r"images: expected uint8 .* found dtype torch.int64"),
    (torch.full((1, 3, 32, 32), float("nan")), r"images: expected finite values, found NaN"),
    (torch.full((1, 3, 32, 32), 255.0), r"images: expected float images in \[-1, 1\]"),
    ([[0.0]], r"images: expected a tensor"),
])
def test_bad_images(bad, match):
    with pytest.raises(InputError, match=match):
        tiny().encode(bad)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(1, 3, 8, 8), r"latents: expected float latents \[batch >= 1, 4, h, w\], found shape \(1, 3, 8, 8\)"),
    (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), r"latents: .*torch.uint8"),
    (torch.full((1, 4, 8, 8), float("inf")), r"latents: expected finite values"),
    ("latents", r"latents: .*found str"),
])
def test_bad_latents(bad, match):
    with pytest.raises(InputError, match=match):
        tiny().decode(bad)


def test_bad_config_and_options(tmp_path, fashion):
    with pytest.raises(InputError, match="norm_num_groups"):
        AutoencoderConfig(block_out_channels=(8, 12), norm_num_groups=8)
    with pytest.raises(InputError, match="block_out_channels"):
        AutoencoderConfig(block_out_channels=())
    with pytest.raises(InputError, match="scaling_factor"):
        AutoencoderConfig(scaling_factor=0.0)
    with pytest.raises(InputError, match="unknown fields"):
        AutoencoderConfig.from_dict({"block_out_channel": [8]})
    for bad, match in (({"loss": "lpips"}, "loss"), ({"kl_weight": -1.0}, "kl_weight"),
                       ({"eval_images": 0}, "eval_images"), ({"ema": 0.9}, "train_options")):
        with pytest.raises(InputError, match=match):
            training.train_autoencoder(tmp_path, steps=1, config=TINY, fashion=fashion, **{**TRAIN, **bad})
