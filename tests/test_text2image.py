"""Text-to-image: the text encoder, the composed model (DiT and SiT objectives), checkpoints, training
(learning, exact resume), the pipeline, ``multimodal generate image``, the app's handler and bad input.
Tiny configs; garments come from generated 28x28 items, never the Fashion-MNIST package."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal import cli, pipelines
from multimodal.checkpoint import load_tensors
from multimodal.data.world import CaptionedWorld, caption_corpus
from multimodal.errors import InputError
from multimodal.paths import SHIPPED_CHECKPOINTS
from multimodal.models.autoencoder import Autoencoder, AutoencoderConfig
from multimodal.models.dit import DiTConfig
from multimodal.models.text2image import TextToImage, TextToImageConfig
from multimodal.models.text_encoder import TextEncoder, TextEncoderConfig, normalize_prompt
from multimodal.app import common as app_common
from multimodal.app import text_to_image as text_to_image_tab
from multimodal.app.text_to_image import generate_images
from multimodal.pipelines.text_to_image import TextToImagePipeline, image_grid
from multimodal.training import runs
from multimodal.training import text2image as training
from conftest import kill_batches_at
from helpers import fake_fashion

pytestmark = pytest.mark.usefixtures("one_thread")

VAE = AutoencoderConfig(block_out_channels=(8, 8, 16), norm_num_groups=4, layers_per_block=1, latent_channels=4)
TEXT = TextEncoderConfig(vocab_size=700, width=32, depth=1, heads=2, max_length=12)
PROMPT = "a red circle on a black background"


def tiny_config(objective: str = "sit", **denoiser) -> TextToImageConfig:
    den = DiTConfig(input_size=8, patch_size=2, in_channels=4, width=32, depth=2, heads=2, context_dim=32,
                    **denoiser)
    return TextToImageConfig(objective=objective, text=TEXT, denoiser=den)


@pytest.fixture(scope="module")
def fashion():
    return fake_fashion()


@pytest.fixture(scope="module")
def tokenizer():
    return training.train_caption_tokenizer(TEXT.vocab_size, corpus=[])


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = Autoencoder(VAE)
    vae.set_latent_scale(1.3, 0.1)
    folder = vae.save_pretrained(tmp_path_factory.mktemp("vae"))
    (folder / "MODEL_CARD.md").write_text("# the tiny autoencoder's card\n")
    return folder


def tiny_model(tokenizer, vae_dir, objective="sit", seed=0, **denoiser) -> TextToImage:
    torch.manual_seed(seed)
    model = TextToImage(tiny_config(objective, **denoiser), tokenizer, Autoencoder.from_pretrained(vae_dir))
    # adaLN-Zero starts at zero output; give the zero-initialised layers weights so outputs depend on inputs
    with torch.no_grad():
        for name, p in model.denoiser.named_parameters():
            if p.abs().sum() == 0 and p.ndim == 2:
                p.normal_(std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tokenizer, vae_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    return {kind: tiny_model(tokenizer, vae_dir, kind).save_pretrained(root / kind) for kind in ("dit", "sit")}


# ---------------------------------------------------------------------------------- text encoder
def test_normalize_prompt():
    assert normalize_prompt("  A Red\tCircle \n on  a BLACK background ") == PROMPT


def test_text_encoder_ignores_padding_and_handles_the_empty_prompt(tokenizer):
    torch.manual_seed(0)
    encoder = TextEncoder(TEXT).eval()
    short, long = "red circle", "a picture of a green ankle boot on navy"
    ids, mask = encoder.tokenize(tokenizer, [short, long, ""])
    assert mask[2].all() and not mask[1].any() and mask[0].sum() > 0
    alone_ids, alone_mask = encoder.tokenize(tokenizer, [short])
    with torch.no_grad():
        batch, alone = encoder(ids, mask), encoder(alone_ids, alone_mask)
    n = alone.shape[1]
    torch.testing.assert_close(batch[0, :n], alone[0], atol=1e-5, rtol=1e-5)  # padding changes nothing
    assert torch.isfinite(batch).all()  # the empty row too
    assert tokenizer.decode(ids[1, ~mask[1]].tolist()) == long


def test_long_prompts_are_truncated_with_a_warning(tokenizer):
    encoder = TextEncoder(TEXT)
    long = " ".join(["red"] * 40)
    with pytest.warns(UserWarning, match="truncated to the first 12"):
        ids, mask = encoder.tokenize(tokenizer, [long, "red"])
    assert ids.shape == (2, 12) and not mask[0].any() and mask[1].sum() == 11
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.tokenize(tokenizer, ["red circle"])  # no warning when it fits


def test_caption_tokenizer_keeps_caption_words_whole(tokenizer):
    for word in (" sneaker", " background", " purple"):
        assert len(tokenizer.encode(word)) == 1, word


# --------------------------------------------------------------------------------------- model
def test_config_checks():
    with pytest.raises(InputError, match="objective"):
        TextToImageConfig(objective="gan", text=TEXT, denoiser=tiny_config().denoiser)
    with pytest.raises(InputError, match="context_dim"):
        TextToImageConfig(text=TEXT, denoiser=tiny_config().denoiser.replace(context_dim=16))
    with pytest.raises(InputError, match="schedule"):
        TextToImageConfig(objective="dit", schedule="sigmoid", text=TEXT, denoiser=tiny_config().denoiser)
    config = tiny_config("dit")
    assert TextToImageConfig.from_json(config.to_json()) == config
    weighted = config.replace(min_snr_gamma=5.0)
    assert TextToImageConfig.from_json(weighted.to_json()) == weighted
    assert weighted.objective_fn().min_snr_gamma == 5.0
    with pytest.raises(InputError, match="min_snr_gamma"):
        tiny_config("sit").replace(min_snr_gamma=5.0)
    with pytest.raises(InputError, match="min_snr_gamma"):
        config.replace(min_snr_gamma=-1.0)
    # a config written before the field existed loads as plain ε-MSE
    old = {k: v for k, v in config.to_dict().items() if k not in ("min_snr_gamma", "time_sampling")}
    assert TextToImageConfig.from_dict(old).min_snr_gamma is None
    assert TextToImageConfig.from_dict(old).time_sampling == "uniform"
    logit = tiny_config("sit").replace(time_sampling="logit-normal")
    assert TextToImageConfig.from_json(logit.to_json()) == logit
    assert logit.objective_fn().time_sampling == "logit-normal"
    with pytest.raises(InputError, match="time_sampling"):
        config.replace(time_sampling="logit-normal")  # a sit option
    with pytest.raises(InputError, match="time_sampling"):
        tiny_config("sit").replace(time_sampling="cosine")


def test_cli_model_flags_reach_the_config():
    import argparse

    parser = training.add_train_text2image_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--vae", "v", "--objective", "sit", "--time-sampling", "logit-normal", "--width", "64",
                              "--heads", "2", "--text-width", "32", "--text-heads", "2"])
    config = training.config_from_args(args, latent_channels=4, latent_size=8)
    assert config.objective == "sit" and config.time_sampling == "logit-normal" and config.min_snr_gamma is None
    assert config.denoiser.width == 64 and config.denoiser.context_dim == config.text.width == 32
    args = parser.parse_args(["--vae", "v", "--min-snr-gamma", "5", "--width", "64", "--heads", "2"])
    config = training.config_from_args(args, latent_channels=4, latent_size=8)
    assert config.objective == "dit" and config.min_snr_gamma == 5.0 and config.time_sampling == "uniform"


def test_model_rejects_a_mismatched_autoencoder(tokenizer):
    other = Autoencoder(VAE.replace(latent_channels=3))
    with pytest.raises(InputError, match="autoencoder"):
        TextToImage(tiny_config(), tokenizer, other)


@pytest.mark.parametrize("objective,sampler", [("dit", "ddim"), ("dit", "dpm++"), ("dit", "ddpm"),
                                               ("sit", "euler"), ("sit", "heun"), ("sit", "sde")])
def test_same_seed_same_images_and_a_saved_model_samples_the_same(checkpoints, objective, sampler):
    model = TextToImage.from_pretrained(checkpoints[objective])
    prompts = [PROMPT, "a blue star on a white background"]

    def draw(m, seed):
        return m.generate(prompts, num_inference_steps=4, sampler=sampler, guidance_scale=3.0,
                          generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(model, 0), draw(model, 0), draw(model, 1)
    assert a.shape == (2, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3
    reloaded = TextToImage.from_pretrained(checkpoints[objective])
    torch.testing.assert_close(draw(reloaded, 0), a, rtol=0, atol=0)


def test_the_empty_prompt_is_unconditional_so_guidance_does_not_change_it(checkpoints):
    model = TextToImage.from_pretrained(checkpoints["sit"])
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = model.generate([""], num_inference_steps=3, guidance_scale=1.0, latents=noise, decode=False)
    guided = model.generate([""], num_inference_steps=3, guidance_scale=7.0, latents=noise, decode=False)
    torch.testing.assert_close(plain, guided, atol=1e-5, rtol=1e-5)
    text = model.generate([PROMPT], num_inference_steps=3, guidance_scale=7.0, latents=noise, decode=False)
    assert (text - plain).abs().max() > 1e-3


def test_checkpoint_layout_and_half_precision(checkpoints, tmp_path):
    folder = checkpoints["dit"]
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "vae"}
    keys = load_tensors(folder / "model.safetensors")
    assert keys and all(k.startswith(("text_encoder.", "denoiser.")) for k in keys)
    model = TextToImage.from_pretrained(folder)
    half = model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert all(v.dtype == torch.float16 for v in load_tensors(half / "model.safetensors").values())
    loaded = TextToImage.from_pretrained(half)
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(q, p.half().float(), rtol=0, atol=0, msg=name)


def test_from_pretrained_errors(checkpoints, tmp_path):
    with pytest.raises(InputError, match="expected a text-to-image checkpoint folder"):
        TextToImage.from_pretrained(tmp_path / "nothing")
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(checkpoints["sit"], broken)
    state = load_tensors(broken / "model.safetensors")
    from multimodal.checkpoint import save_tensors

    save_tensors(broken / "model.safetensors", {k: v for k, v in state.items() if "final" not in k})
    with pytest.raises(InputError, match="missing keys: denoiser.final"):
        TextToImage.from_pretrained(broken)


# ------------------------------------------------------------------------------------ training
TRAIN = dict(warmup_steps=0, log_every=1, eval_every=0, save_every=0, ema_decay=None)


def train(tmp_path, vae_dir, tokenizer_file, fashion, steps, objective="sit", resume=False, **options):
    config = tiny_config(objective)
    tc = training.RECIPE_TRAIN.replace(**{**TRAIN, "out_dir": str(tmp_path), "max_steps": steps, "batch_size": 16,
                                          "lr": 3e-3, **options})
    return training.train_text2image(tmp_path, vae=vae_dir, config=config, train_config=tc, tokenizer=tokenizer_file,
                                     fashion=fashion, progress=False, resume=resume, eval_images=64)


@pytest.fixture(scope="module")
def tokenizer_file(tokenizer, tmp_path_factory):
    return tokenizer.save(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("objective", ["dit", "sit"])
def test_training_learns_and_writes_a_loadable_model_with_a_card(tmp_path, vae_dir, tokenizer_file, fashion,
                                                                  objective):
    result = train(tmp_path, vae_dir, tokenizer_file, fashion, 80, objective, eval_every=80)
    import json

    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in evals if r["kind"] == "train"]
    # SiT's velocity target keeps a large irreducible variance (noise minus data), so its loss falls less
    assert np.mean(train_losses[-10:]) < {"dit": 0.7, "sit": 0.9}[objective] * np.mean(train_losses[:10])
    folder = tmp_path / "model"
    model = TextToImage.from_pretrained(folder)
    assert model.config.objective == objective
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"({objective.upper()})" in card and "80 steps of batch 16" in card and "Not evaluated yet" in card
    assert (folder / "vae" / "MODEL_CARD.md").read_text() == "# the tiny autoencoder's card\n"  # its PSNR travels along
    assert result["final_eval"]["seen_loss"] > 0 and result["final_eval"]["held_out_loss"] > 0


def test_resume_continues_exactly(tmp_path, vae_dir, tokenizer_file, fashion, monkeypatch):
    options = dict(save_every=3, ema_decay=0.9)
    full = train(tmp_path / "full", vae_dir, tokenizer_file, fashion, 6, **options)
    make = training.make_batch_fn
    kill_batches_at(monkeypatch, training, 4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(tmp_path / "cut", vae_dir, tokenizer_file, fashion, 6, **options)
    monkeypatch.setattr(training, "make_batch_fn", make)
    resumed = train(tmp_path / "cut", vae_dir, tokenizer_file, fashion, 6, resume=True, **options)
    assert resumed["steps"] == full["steps"] == 6 and resumed["final_eval"] == full["final_eval"]
    a = load_tensors(tmp_path / "full" / "model" / "model.safetensors")
    b = load_tensors(tmp_path / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_model(tmp_path, vae_dir, tokenizer_file, fashion):
    train(tmp_path, vae_dir, tokenizer_file, fashion, 2, save_every=2)
    with pytest.raises(InputError, match="resume: expected the model"):
        config = tiny_config("dit")
        tc = training.RECIPE_TRAIN.replace(**{**TRAIN, "out_dir": str(tmp_path), "max_steps": 4, "batch_size": 16})
        training.train_text2image(tmp_path, vae=vae_dir, config=config, train_config=tc, tokenizer=tokenizer_file,
                                  fashion=fashion, progress=False, resume=True)


def test_init_from_starts_at_the_folder_weights_and_tokenizer(tmp_path, vae_dir, checkpoints, fashion):
    import json

    source = TextToImage.from_pretrained(checkpoints["sit"])
    tc = training.RECIPE_TRAIN.replace(**{**TRAIN, "out_dir": str(tmp_path), "max_steps": 1, "batch_size": 8,
                                          "lr": 1e-12, "weight_decay": 0.0})
    result = training.train_text2image(tmp_path, vae=vae_dir, config=source.config, train_config=tc, fashion=fashion,
                                       progress=False, eval_images=16, init_from=checkpoints["sit"])
    tuned = TextToImage.from_pretrained(tmp_path / "model")
    a, b = source.state_dict(), tuned.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)  # one step of lr 1e-12
    assert (tmp_path / "tokenizer.json").read_text() == (Path(checkpoints["sit"]) / "tokenizer.json").read_text()
    assert tuned.tokenizer.encode(PROMPT) == source.tokenizer.encode(PROMPT)
    assert result["init_from"]["folder"] == str(checkpoints["sit"])
    assert json.loads((tmp_path / "t2i_run.json").read_text())["init_from"] == str(Path(checkpoints["sit"]).resolve())
    assert f"Started from the weights of `{checkpoints['sit']}`" in (tmp_path / "model" / "MODEL_CARD.md").read_text()
    # a fine-tune of a fine-tune: the card shows the whole chain and the steps of all three runs
    again = training.train_text2image(tmp_path / "again", vae=vae_dir, config=source.config, train_config=tc.replace(
        out_dir=str(tmp_path / "again")), fashion=fashion, progress=False, eval_images=16, init_from=tmp_path / "model")
    assert again["init_from"]["folder"] == str(tmp_path / "model")
    assert again["init_from"]["init_from"]["folder"] == str(checkpoints["sit"])
    card = (tmp_path / "again" / "model" / "MODEL_CARD.md").read_text()
    assert f"Started from the weights of `{tmp_path / 'model'}`, trained for 1 steps" in card
    assert f"; which started from the weights of `{checkpoints['sit']}`. The numbers" in card  # it has no training.json
    assert "In all" not in card  # the first model's steps are unknown
    record = {"folder": "b", "steps": 300, "train_seconds": 60.0, "command": "cmd-b",
              "init_from": {"folder": "a", "steps": 1000, "train_seconds": 120.0, "command": "cmd-a", "init_from": None}}
    assert runs.init_text(record, 20) == (
        "- Started from the weights of `b`, trained for 300 steps (1.0 min of training steps): `cmd-b`; which started "
        "from the weights of `a`, trained for 1,000 steps (2.0 min of training steps): `cmd-a`. The numbers below are "
        "this run's alone (a fresh optimizer and learning-rate schedule). In all, with this run's 20: 1,320 steps.\n")
    # a loss option may change when fine-tuning; the architecture may not
    logit = source.config.replace(time_sampling="logit-normal")
    training.train_text2image(tmp_path / "ln", vae=vae_dir, config=logit, train_config=tc.replace(
        out_dir=str(tmp_path / "ln")), fashion=fashion, progress=False, eval_images=16, init_from=checkpoints["sit"])
    wider = source.config.replace(denoiser=source.config.denoiser.replace(depth=3))
    with pytest.raises(InputError, match="init_from: expected a model of the run's architecture.*denoiser"):
        training.train_text2image(tmp_path / "w", vae=vae_dir, config=wider, train_config=tc.replace(
            out_dir=str(tmp_path / "w")), fashion=fashion, progress=False, init_from=checkpoints["sit"])
    torch.manual_seed(1)
    other_vae = Autoencoder(VAE)
    other_vae.set_latent_scale(1.3, 0.1)
    other = other_vae.save_pretrained(tmp_path / "other-vae")
    with pytest.raises(InputError, match="init_from: expected .* to use the run's autoencoder"):
        training.train_text2image(tmp_path / "v", vae=other, config=source.config, train_config=tc.replace(
            out_dir=str(tmp_path / "v")), fashion=fashion, progress=False, init_from=checkpoints["sit"])


def test_cli_init_from_takes_the_folder_architecture(checkpoints, vae_dir):
    import argparse

    parser = training.add_train_text2image_arguments(argparse.ArgumentParser())
    vae_config = Autoencoder.from_pretrained(vae_dir).config
    folder = str(checkpoints["sit"])

    def config_for(*flags):
        args = parser.parse_args(["--vae", str(vae_dir), "--init-from", folder, *flags])
        return training._config_for_init(args, vae_config)

    source = TextToImageConfig.load(Path(folder) / "config.json")
    assert config_for() == source  # the recipe's width etc. differ from the folder's, and are not asked for
    assert config_for("--time-sampling", "logit-normal") == source.replace(time_sampling="logit-normal")
    assert config_for("--objective", "sit", "--width", "32") == source  # agreeing flags are fine
    folder = str(checkpoints["dit"])  # (a flag at its default reads as not given: ask dit's folder for sit)
    with pytest.raises(InputError, match="--init-from: expected model flags that agree.*objective"):
        config_for("--objective", "sit")
    with pytest.raises(InputError, match="--init-from: expected model flags that agree.*denoiser.width"):
        config_for("--width", "64")


# ------------------------------------------------------------------------------------ pipeline
@pytest.fixture(scope="module")
def pipe(checkpoints):
    p = pipelines.pipeline("text-to-image", model=str(checkpoints["dit"]), device="cpu")
    p.set_progress_bar_config(disable=True)
    return p


def test_pipeline_output_types_and_seeds(pipe):
    images = pipe([PROMPT, "a white cross on a navy background"], num_inference_steps=3, generator=0,
                  num_images_per_prompt=2)
    assert len(images) == 4 and all(isinstance(i, Image.Image) and i.size == (32, 32) for i in images)
    array = pipe([PROMPT, "a white cross on a navy background"], num_inference_steps=3,
                 generator=torch.Generator().manual_seed(0), num_images_per_prompt=2, output_type="np")
    # ddim below: deterministic given the initial noise (the default, ddpm, also draws noise every step)
    deterministic = pipe([PROMPT, "a white cross on a navy background"], num_inference_steps=3, sampler="ddim",
                         generator=torch.Generator().manual_seed(0), num_images_per_prompt=2, output_type="np")
    assert array.shape == (4, 32, 32, 3) and array.dtype == np.float32 and 0 <= array.min() and array.max() <= 1
    assert np.array_equal(np.stack([np.asarray(i) for i in images]), np.round(array * 255).astype(np.uint8))
    latents = pipe(PROMPT, num_inference_steps=3, generator=0, output_type="latent")
    assert latents.shape == (1, 4, 8, 8)
    # prompt-major order: the first prompt's first image is what drawing it alone gives with the same noise
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    alone = pipe(PROMPT, num_inference_steps=3, sampler="ddim", latents=noise[:1], output_type="np")
    assert np.allclose(alone[0], deterministic[0], atol=1e-5)


def test_pipeline_progress_bar(checkpoints, capsys):
    p = TextToImagePipeline.from_pretrained(checkpoints["sit"], device="cpu")
    p(PROMPT, num_inference_steps=2, sampler="euler")
    assert "euler" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=3), "prompt: expected a string or a non-empty list"),
    (dict(prompt=[]), "found an empty list"),
    (dict(prompt=["ok", None]), r"prompt\[1\]: expected a string"),
    (dict(num_inference_steps=0), "num_inference_steps: expected an integer from 1 to 1000"),
    (dict(num_inference_steps=1001), "num_inference_steps: expected an integer from 1 to 1000"),
    (dict(num_inference_steps=2.5), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale: expected a finite number >= 0"),
    (dict(guidance_scale=float("nan")), "guidance_scale"),
    (dict(sampler="heun"), "sampler: expected one of ddpm, ddim, dpm\\+\\+ for this DIT model, found 'heun'"),
    (dict(sampler="fast"), "sampler"),
    (dict(num_images_per_prompt=0), "num_images_per_prompt: expected an integer >= 1"),
    (dict(num_images_per_prompt=300), "at most 256 images per call"),
    (dict(prompt=["a"] * 100, num_images_per_prompt=3), "100 prompt\\(s\\) x 3 = 300"),
    (dict(output_type="pt"), "output_type: expected one of pil, np, latent"),
    (dict(generator="seed"), "generator: expected a torch.Generator"),
    (dict(latents=torch.zeros(2, 4, 8, 8)), r"latents: expected finite float noise of shape \(1, 4, 8, 8\)"),
])
def test_pipeline_bad_input(pipe, kwargs, match):
    args = {"prompt": PROMPT, "num_inference_steps": 2, **kwargs}
    with pytest.raises(InputError, match=match):
        pipe(args.pop("prompt"), **args)


def test_empty_and_long_prompts_work(pipe):
    assert len(pipe("", num_inference_steps=2)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cut is reported in the result, not as a warning
        images = pipe(" ".join(["blue"] * 50), num_inference_steps=2)
    assert len(images) == 1 and re.search(r"^'blue blue .*…': 50 tokens, cut to the first \d+ the text encoder reads$",
                                          images.warnings[0])
    with pytest.warns(UserWarning, match="truncated"):  # the model itself warns
        pipe.model.text_encoder.tokenize(pipe.model.tokenizer, [" ".join(["blue"] * 50)])


def test_image_grid():
    tiles = [Image.new("RGB", (4, 3), (i * 40, 0, 0)) for i in range(5)]
    grid = image_grid(tiles)
    assert grid.size == (12, 6)
    assert grid.getpixel((4, 3)) == (160, 0, 0) and grid.getpixel((8, 0)) == (80, 0, 0)
    with pytest.raises(InputError):
        image_grid([])


# ---------------------------------------------------------------------------------- CLI and app
def test_cli_generate_image(checkpoints, tmp_path, capsys):
    out = tmp_path / "grid.png"
    # --device cpu: the default is CUDA when present, whose images may differ by a pixel level
    args = ["generate", "image", PROMPT, "-n", "4", "--steps", "2", "--seed", "0", "--model",
            str(checkpoints["sit"]), "--sampler", "heun", "--scale", "2", "--device", "cpu", "-o", str(out)]
    assert cli.main(args) == 0
    grid = Image.open(out)
    assert grid.size == (2 * 32 * 2, 2 * 32 * 2)
    first = np.asarray(grid)[:64:2, :64:2]
    pipe = TextToImagePipeline.from_pretrained(checkpoints["sit"], device="cpu")
    expected = pipe(PROMPT, num_inference_steps=2, generator=0, sampler="heun", num_images_per_prompt=4)[0]
    assert np.array_equal(first, np.asarray(expected))
    capsys.readouterr()
    for bad, message in ((["--steps", "0"], "num_inference_steps"), (["--sampler", "ddim"], "sampler"),
                         (["-n", "0"], "num_images_per_prompt")):
        target = tmp_path / "bad.png"
        argv = ["generate", "image", PROMPT, "--model", str(checkpoints["sit"]), "-o", str(target), *bad]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err and not target.exists()
    assert cli.main(["generate", "image", PROMPT, "--model", str(checkpoints["sit"]), "-o", str(tmp_path / "x.jpg")]) == 2
    capsys.readouterr()
    before = out.read_bytes()
    for bad, message in (([], "grid.png already exists; pass --overwrite"),
                         (["--seed", str(2 ** 64)], "--seed: expected an integer from 0 to 2**64 - 1"),
                         (["--seed", "-1"], "--seed: expected an integer from 0 to 2**64 - 1"),
                         (["-o", "/proc/x/a.png"], "--output: expected a folder this user can write")):
        argv = ["generate", "image", PROMPT, "--model", str(checkpoints["sit"]), "--steps", "1", "-o", str(out), *bad]
        assert cli.main(argv + (["--overwrite"] if "--seed" in bad else [])) == 2
        assert message in capsys.readouterr().err
    assert out.read_bytes() == before
    assert cli.main(["generate", "image", PROMPT, "--model", str(checkpoints["sit"]), "--steps", "1", "--device",
                     "cpu", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_app_handler(pipe, monkeypatch):
    monkeypatch.setitem(app_common._APP_PIPELINES, ("text-to-image", "text2image-dit"), pipe)
    images = generate_images(PROMPT, "DiT", "ddim", steps=2, guidance=3, seed=1, count=3)
    assert len(images) == 3 and images[0].size == (128, 128)
    with pytest.raises(InputError, match="model: expected one of SiT, DiT"):
        generate_images(PROMPT, "GAN")
    with pytest.raises(InputError, match="sampler"):
        generate_images(PROMPT, "DiT", "heun", steps=2)
    with pytest.raises(InputError, match=r"seed: expected an integer from 0 to 2\*\*64 - 1"):
        generate_images(PROMPT, "DiT", "ddim", steps=2, seed=2.0 ** 64)
    with pytest.raises(InputError, match="count: expected 1 to 16 images in the app, found 17"):
        generate_images(PROMPT, "DiT", "ddim", steps=2, count=17)
    with pytest.raises(InputError, match="steps: expected 1 to 100 in the app, found 1000"):
        generate_images(PROMPT, "DiT", "ddim", steps=1000)


def test_the_tab_draws_a_seed_shows_it_and_reports_the_prompt(pipe, monkeypatch):
    monkeypatch.setitem(app_common._APP_PIPELINES, ("text-to-image", "text2image-dit"), pipe)
    monkeypatch.setattr(pipe, "vocabulary", frozenset(w for c in caption_corpus("train") for w in c.split()))
    monkeypatch.setattr(pipe, "world", True)
    args = dict(model="DiT", sampler="ddim", steps=2, guidance=3, count=2, temperature=1, top_k=0, top_p=1,
                adapter=None)
    images, notes, seed = text_to_image_tab.generate_for_tab(PROMPT, randomize=True, seed=0, **args)
    assert notes == "" and isinstance(seed, int) and 0 <= seed < text_to_image_tab.RANDOM_SEEDS
    again, _, same = text_to_image_tab.generate_for_tab(PROMPT, randomize=False, seed=seed, **args)
    assert same == seed and [np.asarray(a).tolist() for a in again] == [np.asarray(a).tolist() for a in images]
    _, notes, _ = text_to_image_tab.generate_for_tab("a cat on a blue background", randomize=False, seed=0, **args)
    assert "never read 'cat'" in notes
    _, notes, _ = text_to_image_tab.generate_for_tab("a red circle on a blue background", randomize=False, seed=0,
                                                     **args)
    assert "not a caption of the kind it was trained on" in notes


def test_prompt_warnings_name_unknown_words_odd_forms_and_cuts(tmp_path, capsys):
    """The shipped SiT read the world's captions only; its pink adapter adds the word pink."""
    pipe = pipelines.pipeline("text-to-image", model="text2image-sit", device="cpu")
    assert pipe.prompt_warnings([PROMPT, "a red sneaker on a white background", ""]) == []  # held out: known words
    cat, = pipe.prompt_warnings("A Cat.")
    assert cat == "'A Cat.': the model never read 'cat' in training, so it does not steer the image"
    two, = pipe.prompt_warnings("a dog in a hat")
    assert "never read 'dog', 'hat' in training, so they do not" in two
    odd, = pipe.prompt_warnings("a red circle on a blue background")
    assert "not a caption of the kind it was trained on" in odd
    form, cut = pipe.prompt_warnings(" ".join([PROMPT] * 4))
    assert cut.endswith("tokens, cut to the first 24 the text encoder reads")
    pink = "a pink star on a navy background"
    assert "never read 'pink'" in pipe.prompt_warnings(pink)[0]
    pipe.load_lora(SHIPPED_CHECKPOINTS / "text2image-sit-pink-lora", "pink")
    assert pipe.prompt_warnings(pink) == []
    pipe.set_lora(None)
    assert "never read 'pink'" in pipe.prompt_warnings(pink)[0]
    images = pipe(["a cat", PROMPT], num_inference_steps=1, generator=0)
    assert len(images) == 2 and images.warnings == pipe.prompt_warnings("a cat")
    capsys.readouterr()
    assert cli.main(["generate", "image", "a cat", "--steps", "1", "--device", "cpu", "-o", str(tmp_path / "c.png")]) == 0
    assert "multimodal: warning: 'a cat': the model never read 'cat'" in capsys.readouterr().err


def test_world_is_what_training_draws(fashion):
    batch_fn = training.make_batch_fn(CaptionedWorld("train", fashion=fashion), 8, seed=0)
    images, captions = batch_fn(5, 0, 1)
    again, same = batch_fn(5, 0, 1)
    assert torch.equal(images, again) and captions == same and images.shape == (8, 3, 32, 32)


def test_the_app_has_a_text_to_image_tab():
    import gradio as gr

    import app

    demo = app.build()  # the real registry: every shipped task's tab
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert "Text → Image" in tabs and "Classify" in tabs and "Transcribe" in tabs
    radios = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "model"]
    gpt = ["GPT"] if (SHIPPED_CHECKPOINTS / "text2image-gpt").is_dir() else []
    assert radios and [c[0] for c in radios[0].choices] == ["SiT", "DiT", *gpt]
    if (SHIPPED_CHECKPOINTS / "text2image-sit-pink-lora").is_dir():
        adapters = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "LoRA adapter"
                    and any(c[0] == "text2image-sit-pink-lora" for c in b.choices)]
        assert adapters
    assert any(isinstance(b, gr.Gallery) for b in demo.blocks.values())


def test_benchmark_times_the_same_function_as_diffusers():
    from benchmarks.text_to_image import denoiser_step_time

    result = denoiser_step_time(tiny_config().denoiser, batch=4, repeats=1)
    assert result["max_abs_difference"] < 1e-4 and result["ours_ms"] > 0 and result["diffusers_ms"] > 0


def test_benchmark_scores_real_renders_as_the_judge_does(fashion):
    from multimodal.evaluation.text_to_image import evaluate_images
    from multimodal.evaluation.world_judge import train_judge
    from multimodal.data.world import SHAPES

    judge = train_judge(widths=(8, 16, 32), steps=60, batch_size=32, lr=4e-3, warmup=5, objects=tuple(SHAPES),
                        fashion=fashion)
    held_out = {("star", "yellow"), ("circle", "purple"), ("heart", "orange")}
    prompts = [dict(object=o, colour=c, background=b, held_out=(o, c) in held_out)
               for o, c, b in [("circle", "red", "black"), ("star", "yellow", "navy"), ("circle", "purple", "gray"),
                               ("heart", "orange", "white"), ("cross", "blue", "black"), ("square", "green", "gray")]]
    world = CaptionedWorld("all", fashion=fashion)
    real = world.render([(p["object"], p["colour"], p["background"]) for p in prompts], 0)
    other = world.render([(p["object"], p["colour"], p["background"]) for p in prompts], 1)
    row = evaluate_images(judge, other, prompts, judge.features(real))
    score = judge.score(other, prompts)
    held = np.array([p["held_out"] for p in prompts])
    assert row["seen_accuracy"] == score["prompt_correct"][~held].mean()
    assert row["held_out_accuracy"] == score["prompt_correct"][held].mean()
    assert row["colour_accuracy"] == 1.0 and row["background_accuracy"] == 1.0  # measured, not learned
    assert row["frechet"] >= 0

    # the autoencoder ceiling: an exact autoencoder keeps the judge's score, one that loses the
    # image (a flat grey) scores nothing
    from types import SimpleNamespace

    from multimodal.evaluation.text_to_image import autoencoder_ceiling, prompt_accuracy

    exact = SimpleNamespace(encode=lambda x: x.float() / 127.5 - 1, decode=lambda z: z)
    flat = SimpleNamespace(encode=lambda x: x.float() / 127.5 - 1, decode=lambda z: torch.zeros_like(z))
    assert autoencoder_ceiling(SimpleNamespace(autoencoder=exact), judge, other, prompts) == \
        prompt_accuracy(score, prompts)
    assert autoencoder_ceiling(SimpleNamespace(autoencoder=flat), judge, other, prompts) == \
        {"seen_accuracy": 0.0, "held_out_accuracy": 0.0}


@pytest.mark.parametrize("half_loses", [False, True])
def test_benchmark_ships_float16_only_when_it_costs_no_accuracy(tmp_path, vae_dir, tokenizer_file, fashion,
                                                                 half_loses):
    import json

    from multimodal.training.shipping import ship

    train(tmp_path / "run", vae_dir, tokenizer_file, fashion, 2)
    source, dest = tmp_path / "run" / "model", tmp_path / "shipped" / "text2image-dit"
    reference = {"sampler": "ddim", "steps": 25, "seen_accuracy": 0.9, "held_out_accuracy": 0.7}
    seen = []

    def score(model):
        seen.append({p.dtype for p in model.parameters()})
        return {**reference, "held_out_accuracy": 0.68 if half_loses else 0.695}

    evaluation = {"command": "python -m benchmarks.text_to_image --ship x", "judge": "a judge", "guidance_scale": 4.0,
                  "images_per_prompt": 2, "seen_prompts": 64, "held_out_prompts": 31,
                  "judge_ceiling": {"seen_accuracy": 0.95, "held_out_accuracy": 0.94},
                  "autoencoder_ceiling": {"seen_accuracy": 0.925, "held_out_accuracy": 0.935},
                  "rows": [{**reference, "frechet": 1.5, "seconds_per_image": 0.01}]}
    check = ship(source, dest, evaluation, reference, score)
    stored = "float32" if half_loses else "float16"
    assert check["stored_dtype"] == stored and seen == [{torch.float32}]  # scored as loaded: float32 compute
    weights = load_tensors(dest / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {getattr(torch, stored)}
    original = TextToImage.from_pretrained(source)
    shipped = TextToImage.from_pretrained(dest)
    for (name, a), b in zip(original.state_dict().items(), shipped.state_dict().values()):
        torch.testing.assert_close(b, a.to(getattr(torch, stored)).float(), msg=name)
    assert json.loads((dest / "evaluation.json").read_text())["storage_check"] == check
    assert (dest / "vae" / "MODEL_CARD.md").read_text() == (source / "vae" / "MODEL_CARD.md").read_text()
    card = (dest / "MODEL_CARD.md").read_text()
    assert "through this model's autoencoder (encoded, decoded) the same renders score 92.5 % (seen)" in card.lower()
    assert f"Stored in {stored}" in card and "95.0 % (seen)" in card and "| ddim | 25 | 90.0 % | 70.0 % |" in card
    assert (dest / "training.json").read_text() == (source / "training.json").read_text()


# ------------------------------------------------------------------------- guidance benchmark
def test_guidance_validation_prompts_are_seen_and_disjoint_from_evaluation():
    from multimodal.evaluation.text_to_image import best_scale, validation_prompts
    from multimodal.data.world import BACKGROUNDS, COLOURS, OBJECTS, Combo, canonical_caption, combinations, \
        evaluation_prompts

    as_combo = lambda p: Combo(p["object"], p["colour"], p["background"])  # noqa: E731
    prompts = validation_prompts()
    combos = [as_combo(p) for p in prompts]
    assert len(combos) == 64 and len(set(combos)) == 64
    assert all(c in combinations("train") and not p["held_out"] for c, p in zip(combos, prompts))
    assert not set(combos) & {as_combo(p) for p in evaluation_prompts()}  # tuning never sees an evaluated prompt
    assert {(c.object, c.background) for c in combos} == {(o, b) for o in OBJECTS for b in BACKGROUNDS}
    assert {c.colour for c in combos} == set(COLOURS)
    assert all(p["caption"] == canonical_caption(as_combo(p)) for p in prompts) and validation_prompts() == prompts
    rows = [{"guidance_scale": g, "seen_accuracy": a} for g, a in ((2.0, 0.5), (6.0, 0.8), (4.0, 0.8), (8.0, 0.7))]
    assert best_scale(rows) == 4.0  # the best accuracy; a tie goes to the smaller scale
    from multimodal.evaluation.text_to_image import prompt_accuracy
    flags = [{"held_out": h} for h in (False, False, True, False)]
    assert prompt_accuracy({"prompt_correct": [True, False, False, True]}, flags) == \
        {"seen_accuracy": 2 / 3, "held_out_accuracy": 0.0}
    assert prompt_accuracy({"prompt_correct": [True, False]}, flags[:2]) == {"seen_accuracy": 0.5}  # none held out
    from multimodal.evaluation.text_to_image import per_object_accuracy
    objects = [{"object": o} for o in ("star", "bag", "star", "star")]
    assert per_object_accuracy({"prompt_correct": [True, True, False, True]}, objects) == {"star": 2 / 3, "bag": 1.0}



def test_benchmark_generates_past_the_per_call_limit_in_calls_from_one_generator():
    from multimodal.evaluation.text_to_image import in_calls
    calls = []

    def generate(captions, generator, scale):  # one random number per caption, as a sampler draws
        calls.append(list(captions))
        return torch.rand(len(captions), generator=generator) * scale

    prompts = [{"caption": f"c{i}"} for i in range(5)]
    out = in_calls(generate, prompts, 2, scale=3.0)
    assert calls == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    whole = in_calls(generate, prompts, 256, scale=3.0)  # one call: the same numbers, in the same order
    torch.testing.assert_close(out, whole)
    assert len(set(out.tolist())) == 5  # the calls continue one stream instead of restarting the seed

# -------------------------------------------------------------------------- shipped checkpoints
@pytest.mark.parametrize("name", ["text2image-dit", "text2image-sit"])
def test_the_shipped_checkpoints_draw_the_asked_colours(name):
    """The shipped weights (SiT through the default model) follow the prompt's colours: measured, the way
    the benchmark's judge measures them, on prompts of the evaluation list."""
    from multimodal.evaluation.world_judge import measure_colours
    from multimodal.data.world import evaluation_prompts
    from multimodal.paths import SHIPPED_CHECKPOINTS

    folder = SHIPPED_CHECKPOINTS / name
    pipe = pipelines.pipeline("text-to-image", **({} if name == "text2image-sit" else {"model": name}), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    prompts = evaluation_prompts()[::12]
    images = pipe([p["caption"] for p in prompts], num_inference_steps=25, guidance_scale=4.0, generator=0,
                  output_type="np")
    first, again = (pipe([p["caption"] for p in prompts[:2]], num_inference_steps=10, generator=1, output_type="np")
                    for _ in range(2))
    np.testing.assert_array_equal(again, first)  # the same seed gives the same images
    pixels = torch.from_numpy(np.round(images * 255).astype(np.uint8)).permute(0, 3, 1, 2)
    backgrounds, colours = measure_colours(pixels)
    assert backgrounds == [p["background"] for p in prompts]
    right = sum(c == p["colour"] for c, p in zip(colours, prompts))
    assert right >= len(prompts) - 1, list(zip(colours, [p["caption"] for p in prompts]))
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## Evaluation" in card and "Not evaluated yet" not in card and (folder / "vae" / "MODEL_CARD.md").is_file()


# --------------------------------------------------------------------- LoRA: a new colour word
def train_new_colour(base, out, *extra):
    return cli.main(["train", "lora", "--base", str(base), "--target", "all", "--rank", "4", "--examples", "24",
                     "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "2", "--eval-every", "0",
                     "--no-progress", "--out-dir", str(out), *extra])


@pytest.fixture
def fake_world_fashion(fashion, monkeypatch):
    from multimodal.data import world

    monkeypatch.setattr(world, "_default_fashion", lambda: world._prepare_fashion(fashion))


@pytest.mark.filterwarnings("ignore:prompt")  # the tiny tokenizer spells "pink" in many tokens
def test_train_lora_teaches_a_text_to_image_base_a_new_colour(tmp_path, checkpoints, fake_world_fashion):
    from multimodal.training.text2image_lora import new_colour_combos
    from multimodal.data.world import WorldBatch, canonical_caption

    base = checkpoints["sit"]
    weights = load_tensors(base / "model.safetensors")
    assert train_new_colour(base, tmp_path / "run", "--max-steps", "60") == 0
    folder = tmp_path / "run" / "model"
    assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "MODEL_CARD.md",
                                                  "training.json"}
    after = load_tensors(base / "model.safetensors")
    assert all(torch.equal(weights[k], after[k]) for k in weights)  # the base is untouched
    card = (folder / "MODEL_CARD.md").read_text()
    assert '"pink"' in card and "24 fixed renders of pink objects" in card and "--examples 24" in card

    # the adapter lowers the loss on pink examples it was taught (fixed noise and times)
    combos = new_colour_combos("pink")
    taught = CaptionedWorld("new_colour").render(combos, generator=5)
    batch = WorldBatch(taught, [canonical_caption(c) for c in combos], [c._asdict() for c in combos])
    eval_fn = training.make_eval_fn({"taught": batch}, len(combos))
    model = TextToImage.from_pretrained(base).eval()
    before = eval_fn(model)["taught_loss"]
    pipe = pipelines.pipeline("text-to-image", model=str(folder), device="cpu")  # base + adapter
    assert pipe.adapters == ["default"]
    assert eval_fn(pipe.model)["taught_loss"] < 0.9 * before

    # it changes what a pink prompt draws; unloaded, the base draws what it did
    pipe.set_progress_bar_config(disable=True)
    plain = pipelines.pipeline("text-to-image", model=str(base), device="cpu")
    plain.set_progress_bar_config(disable=True)
    prompt = "a pink star on a navy background"
    adapted = np.asarray(pipe(prompt, num_inference_steps=3, generator=1).images[0])
    original = np.asarray(plain(prompt, num_inference_steps=3, generator=1).images[0])
    assert not np.array_equal(adapted, original)
    pipe.unload_lora()
    assert np.array_equal(np.asarray(pipe(prompt, num_inference_steps=3, generator=1).images[0]), original)


def test_the_app_draws_with_an_adapter_of_the_chosen_model_only(tmp_path, checkpoints, fake_world_fashion,
                                                                monkeypatch):
    from multimodal.app import text_to_image as tab

    assert train_new_colour(checkpoints["sit"], tmp_path / "run", "--max-steps", "2") == 0
    folder = str(tmp_path / "run" / "model")
    monkeypatch.setattr(tab, "DIFFUSION_MODELS", {"SiT": checkpoints["sit"].name, "DiT": checkpoints["dit"].name})
    monkeypatch.setattr(app_common, "_APP_PIPELINES", {})
    images = generate_images("a pink star on a navy background", "SiT", steps=2, count=2, adapter=folder)
    assert len(images) == 2 and list(app_common._APP_PIPELINES) == [("text-to-image", folder)]
    assert app_common._APP_PIPELINES[("text-to-image", folder)].adapters == ["default"]
    with pytest.raises(InputError, match="adapter: expected an adapter of DiT"):
        generate_images("a pink star on a navy background", "DiT", steps=2, adapter=folder)


def test_new_colour_adapter_resume_is_exact(tmp_path, checkpoints, fake_world_fashion, monkeypatch):
    from multimodal.training import text2image_lora

    base = checkpoints["dit"]
    assert train_new_colour(base, tmp_path / "full", "--max-steps", "6", "--save-every", "3") == 0
    make = text2image_lora.make_batch_fn
    kill_batches_at(monkeypatch, text2image_lora, 4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_new_colour(base, tmp_path / "cut", "--max-steps", "6", "--save-every", "3")
    monkeypatch.setattr(text2image_lora, "make_batch_fn", make)
    assert train_new_colour(base, tmp_path / "cut", "--max-steps", "6", "--save-every", "3", "--resume") == 0
    a = load_tensors(tmp_path / "full" / "model" / "adapter_model.safetensors")
    b = load_tensors(tmp_path / "cut" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, match", [
    (["--examples", "0"], "examples"), (["--examples", "5000"], "examples"), (["--prior-share", "1"], "prior-share"),
    (["--rank", "0"], "rank"),
])
def test_new_colour_adapter_bad_options(tmp_path, checkpoints, fake_world_fashion, capsys, extra, match):
    assert train_new_colour(checkpoints["sit"], tmp_path / "run", "--max-steps", "2", *extra) != 0
    assert match in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


def test_the_shipped_pink_adapter_draws_pink_where_the_base_does_not():
    from multimodal.data.world import PALETTE
    from multimodal.evaluation.text_to_image import to_uint8
    from multimodal.evaluation.world_judge import measure_colours
    from multimodal.lora import adapter_base

    folder = SHIPPED_CHECKPOINTS / "text2image-sit-pink-lora"
    assert adapter_base(folder) == "checkpoints/text2image-sit"
    assert (folder / "adapter_model.safetensors").stat().st_size < 5e6
    pipe = pipelines.pipeline("text-to-image", model=str(folder), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a pink star on a navy background", "a pink coat on a black background"]  # untaught, taught

    def colours():
        images = torch.as_tensor(pipe(prompts, num_inference_steps=10, generator=0, output_type="np"))
        return measure_colours(to_uint8(images.permute(0, 3, 1, 2) * 2 - 1), list(PALETTE))[1]
    assert colours() == ["pink", "pink"]
    pipe.set_lora(None)
    assert "pink" not in colours()
