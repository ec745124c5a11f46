"""Text to image through codes: the VQ-VAE and GPT recipes (tiny, on a fake world), the text-to-image
pipeline and command with a GPT checkpoint, the codes command, and the shipped checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import kill_batches_at
from helpers import fake_fashion
from PIL import Image

import multimodal
from multimodal import cli, pipelines
from multimodal.data import world
from multimodal.checkpoint import load_tensors
from multimodal.errors import InputError
from multimodal.models import VQVAE
from multimodal.models.autoencoders.quantizer import QuantizerConfig
from multimodal.models.autoencoders.vq import VQVAEConfig
from multimodal.models.text2codes import TextToCodes
from multimodal.lora import read_lora_config
from multimodal.models.token_gpt import TokenGPTConfig, prompt_ids
from multimodal.paths import SHIPPED_CHECKPOINTS
from multimodal.pipelines.text_to_image import AutoregressiveTextToImagePipeline
from multimodal.data.world import CaptionedWorld, canonical_caption
from multimodal.training.text2image_lora import new_colour_combos
from multimodal.training import text2codes as text2codes_recipe
from multimodal.training.text2codes import CODE_CACHE_NAME, CODE_CACHE_SEED, train_text2codes
from multimodal.training.vqvae import to_unit
from multimodal.training import vqvae as vqvae_recipe
from multimodal.training.vqvae import train_vqvae

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red circle on a black background"
TINY_VQ = VQVAEConfig(channels=16, channel_mult=(1, 2), strides=(2, 2), res_blocks=1,
                      quantizer=QuantizerConfig(codebook_size=32, dim=8, codebook_dim=8))
TINY_GPT = TokenGPTConfig(width=32, depth=2, heads=4, text_vocab=4096, text_length=16)
SMALL = dict(eval_every=2, save_every=2, log_every=1, warmup_steps=1, progress=False, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2c")
    fashion = fake_fashion()
    vq = train_vqvae(root / "vq", steps=4, batch_size=8, config=TINY_VQ, eval_images=32, fashion=fashion, **SMALL)
    tokenizer = SHIPPED_CHECKPOINTS / "text2image-sit" / "tokenizer.json"
    gpt = train_text2codes(root / "gpt", vq=vq["model_dir"], steps=4, batch_size=8, config=TINY_GPT,
                           tokenizer=tokenizer, fashion=fashion, **SMALL)
    return {"root": root, "vq": vq, "gpt": gpt, "fashion": fashion, "tokenizer": tokenizer}


def test_the_vqvae_recipe_writes_a_model_with_codebook_numbers(trained):
    vq = trained["vq"]
    for split in ("seen", "held_out"):
        assert 0 < vq[split]["usage"] <= 1 and vq[split]["perplexity"] >= 1 and vq[split]["psnr"] > 0
    card = (trained["root"] / "vq" / "model" / "MODEL_CARD.md").read_text()
    assert "codebook usage" in card and "perplexity" in card and "train_vqvae(" in card
    model = VQVAE.from_pretrained(vq["model_dir"])
    assert model.config.input_size == (32, 32) and model.config.quantizer.codebook_size == 32
    metrics = [json.loads(line) for line in (trained["root"] / "vq" / "metrics.jsonl").read_text().splitlines()]
    assert any("held_out_usage" in m for m in metrics) and any("perplexity" in m for m in metrics)


def test_a_resumed_vqvae_run_equals_an_uninterrupted_one(trained, tmp_path, monkeypatch):
    fashion = trained["fashion"]
    whole = train_vqvae(tmp_path / "whole", steps=4, batch_size=8, config=TINY_VQ, eval_images=16, fashion=fashion,
                        **SMALL)
    kill_batches_at(monkeypatch, vqvae_recipe, 3)  # dies after the checkpoint of step 2
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_vqvae(tmp_path / "part", steps=4, batch_size=8, config=TINY_VQ, eval_images=16, fashion=fashion, **SMALL)
    monkeypatch.undo()
    resumed = train_vqvae(tmp_path / "part", steps=4, batch_size=8, config=TINY_VQ, eval_images=16, fashion=fashion,
                          resume=True, **SMALL)
    a, b = load_tensors(whole["model_dir"] + "/model.safetensors"), load_tensors(resumed["model_dir"] + "/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="resume"):
        train_vqvae(tmp_path / "part", steps=4, batch_size=8, config=TINY_VQ.replace(channels=32), eval_images=16,
                    fashion=fashion, resume=True, **SMALL)


def test_the_gpt_recipe_writes_a_text_to_codes_folder(trained):
    folder = trained["gpt"]["model_dir"]
    model = TextToCodes.from_pretrained(folder)
    assert model.config.gpt.grid == (8, 8) and model.config.gpt.codebook_size == 32
    assert set(trained["gpt"]["eval"]) == {"held_out_loss", "seen_loss"}
    # the frozen VQ-VAE inside equals the one it was trained over
    inner, outer = model.vqvae.state_dict(), VQVAE.from_pretrained(trained["vq"]["model_dir"]).state_dict()
    assert all(torch.equal(inner[k], outer[k]) for k in outer)


def test_shipping_the_pair_stores_float16_measured_and_keeps_the_notes(trained, tmp_path):
    from multimodal.training.text2codes import ship_text2codes
    from multimodal.training.vqvae import ship_vqvae

    vq_dest, gpt_dest = tmp_path / "image-vq", tmp_path / "gpt"
    for dest in (vq_dest, gpt_dest):
        dest.mkdir()
        (dest / "card_notes.md").write_text(f"- notes of {dest.name}")
        (dest / "stale.txt").write_text("gone after shipping")
    check = ship_vqvae(trained["vq"]["model_dir"], vq_dest, fashion=trained["fashion"])
    # float32's measures are the run's own (same renders and seeds); float16's are near them
    assert check["float32"]["seen"] == pytest.approx(trained["vq"]["seen"], rel=1e-4)
    assert check["stored_dtype"] == "float16"
    assert abs(check["float16"]["held_out"]["psnr"] - check["float32"]["held_out"]["psnr"]) <= check["tolerance_db"]
    stored = load_tensors(vq_dest / "model.safetensors")
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    card = (vq_dest / "MODEL_CARD.md").read_text()
    assert "- notes of image-vq" in card and "Stored in float16" in card and not (vq_dest / "stale.txt").exists()

    ship_text2codes(trained["gpt"]["model_dir"], gpt_dest, vq_dest, guidance_scale=1.5, temperature=0.85, top_p=0.9)
    model = TextToCodes.from_pretrained(gpt_dest)
    assert (model.config.guidance_scale, model.config.temperature, model.config.top_k, model.config.top_p) == \
        (1.5, 0.85, None, 0.9)
    for name in ("model.safetensors", "training.json", "MODEL_CARD.md", "config.json"):  # vq/ is the shipped folder
        assert (gpt_dest / "vq" / name).read_bytes() == (vq_dest / name).read_bytes()
    run = TextToCodes.from_pretrained(trained["gpt"]["model_dir"]).gpt.state_dict()
    assert all(torch.equal(v, run[k].half().float()) for k, v in model.gpt.state_dict().items())
    assert "- notes of gpt" in (gpt_dest / "MODEL_CARD.md").read_text()
    with pytest.raises(InputError, match="sampling"):
        ship_text2codes(trained["gpt"]["model_dir"], tmp_path / "x", vq_dest, guidance=2.0)
    other = tmp_path / "other-vq"
    VQVAE(TINY_VQ.replace(res_blocks=2)).save_pretrained(other)
    with pytest.raises(InputError, match="vq"):
        ship_text2codes(trained["gpt"]["model_dir"], tmp_path / "y", other)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_commands_defaults_are_the_shipped_recipes():
    """`multimodal train vqvae` and `train text2codes` with no options train the shipped models' configs."""
    from multimodal.cli import build_parser

    def defaults(*argv):
        return build_parser().parse_args(["train", *argv])

    vq_args = defaults("vqvae")
    vq_config = vqvae_recipe.RECIPE_MODEL.replace(channels=vq_args.channels)
    shipped_vq = json.loads((SHIPPED_CHECKPOINTS / "image-vq" / "training.json").read_text())
    assert vq_config.to_dict() == {**shipped_vq["model"], "input_size": list(vq_config.input_size)}
    assert (vq_args.max_steps, vq_args.batch_size, vq_args.lr) == \
        (shipped_vq["steps"], shipped_vq["batch_size"], shipped_vq["train_config"]["lr"])
    gpt_args = defaults("text2codes", "--vq", "image-vq")
    shipped_gpt = json.loads((SHIPPED_GPT / "training.json").read_text())
    gpt = shipped_gpt["model"]["gpt"]
    assert (gpt_args.width, gpt_args.depth, gpt_args.heads) == (gpt["width"], gpt["depth"], gpt["heads"])
    assert (gpt_args.max_steps, gpt_args.lr, gpt_args.ema_decay) == \
        (shipped_gpt["steps"], shipped_gpt["train_config"]["lr"], shipped_gpt["train_config"]["ema_decay"])
    assert gpt_args.warmup_steps == shipped_gpt["train_config"]["warmup_steps"]
    assert f"{gpt_args.code_cache} renders coded once" in shipped_gpt["data"]


def test_a_code_cache_holds_the_vq_codes_of_its_renders_and_resumes_exactly(trained, tmp_path, monkeypatch):
    fashion, vq = trained["fashion"], trained["vq"]["model_dir"]
    options = dict(vq=vq, steps=4, batch_size=8, config=TINY_GPT, tokenizer=trained["tokenizer"], fashion=fashion,
                   code_cache=24, **SMALL)
    whole = train_text2codes(tmp_path / "whole", **options)
    cache = load_tensors(tmp_path / "whole" / CODE_CACHE_NAME)
    assert cache["codes"].shape == (24, 64) and cache["text_ids"].shape == (24, 16)
    # the cached codes are the frozen VQ-VAE's codes of the renders drawn from the cache's seed
    renders = CaptionedWorld("train", fashion=fashion).sample(24, torch.Generator().manual_seed(CODE_CACHE_SEED))
    model = TextToCodes.from_pretrained(whole["model_dir"])
    assert torch.equal(cache["codes"].long(), model.codes_of(to_unit(renders.images)))
    assert "24 renders coded once" in whole["data"]
    # killed after the checkpoint of step 2 and resumed: the same weights, the cache read back
    kill_batches_at(monkeypatch, text2codes_recipe, 3, name="make_cached_batch_fn")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_text2codes(tmp_path / "part", **options)
    monkeypatch.undo()
    written = (tmp_path / "part" / CODE_CACHE_NAME).stat().st_mtime_ns
    resumed = train_text2codes(tmp_path / "part", resume=True, **options)
    assert (tmp_path / "part" / CODE_CACHE_NAME).stat().st_mtime_ns == written
    a, b = load_tensors(whole["model_dir"] + "/model.safetensors"), load_tensors(resumed["model_dir"] + "/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="resume"):  # the cache size is part of what a resume must match
        train_text2codes(tmp_path / "part", resume=True, **{**options, "code_cache": 32})


def test_init_from_starts_at_the_folders_gpt_tokenizer_and_vq(trained, tmp_path, capsys, monkeypatch):
    fashion, folder = trained["fashion"], trained["gpt"]["model_dir"]
    source = TextToCodes.from_pretrained(folder)
    tuned_run = train_text2codes(tmp_path / "ft", vq=None, steps=1, batch_size=8, lr=1e-12, weight_decay=0.0,
                                 init_from=folder, fashion=fashion, **SMALL)
    tuned = TextToCodes.from_pretrained(tuned_run["model_dir"])
    a, b = source.gpt.state_dict(), tuned.gpt.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)  # one step of lr 1e-12
    inner, outer = tuned.vqvae.state_dict(), source.vqvae.state_dict()
    assert all(torch.equal(inner[k], outer[k]) for k in outer)  # the folder's VQ-VAE, as --vq was not given
    assert tuned.tokenizer.encode(PROMPT) == source.tokenizer.encode(PROMPT)
    assert (tmp_path / "ft" / "tokenizer.json").read_text() == (Path(folder) / "tokenizer.json").read_text()
    assert tuned_run["init_from"]["folder"] == folder and tuned_run["init_from"]["steps"] == trained["gpt"]["steps"]
    assert f"Started from the weights of `{folder}`, trained for 4 steps" in \
        (tmp_path / "ft" / "model" / "MODEL_CARD.md").read_text()
    # from scratch, the same step lands elsewhere
    scratch = TextToCodes.from_pretrained(train_text2codes(
        tmp_path / "scratch", vq=trained["vq"]["model_dir"], steps=1, batch_size=8, lr=1e-12, weight_decay=0.0,
        config=TINY_GPT, tokenizer=trained["tokenizer"], fashion=fashion, **SMALL)["model_dir"])
    assert not torch.allclose(scratch.gpt.head.weight, tuned.gpt.head.weight)
    # another architecture or another VQ-VAE: refused, nothing written
    monkeypatch.setattr(world, "_default_fashion", lambda: world._prepare_fashion(fashion))
    bad = tmp_path / "bad"
    assert cli.main(["train", "text2codes", "--init-from", folder, "--depth", "3", "--max-steps", "1",
                     "--out-dir", str(bad), "--no-progress", "--device", "cpu"]) == 2
    assert "--init-from" in capsys.readouterr().err and not bad.exists()
    other = tmp_path / "other-vq"
    VQVAE(TINY_VQ).save_pretrained(other)
    with pytest.raises(InputError, match="init_from"):
        train_text2codes(bad, vq=other, steps=1, batch_size=8, init_from=folder, fashion=fashion, **SMALL)
    with pytest.raises(InputError, match="init_from"):
        train_text2codes(bad, vq=None, steps=1, batch_size=8, init_from=folder, fashion=fashion,
                         config=TINY_GPT.replace(width=64), **SMALL)
    assert not bad.exists()


def test_pipeline_and_command_with_a_gpt_checkpoint(trained, tmp_path, capsys):
    folder = trained["gpt"]["model_dir"]
    pipe = multimodal.pipeline("text-to-image", model=folder, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe, AutoregressiveTextToImagePipeline)
    out = pipe([PROMPT, "a white star on a navy background"], num_images_per_prompt=2, generator=0,
               guidance_scale=2.0, top_p=0.9, num_inference_steps=10)
    assert len(out.images) == 4 and all(isinstance(i, Image.Image) and i.size == (32, 32) for i in out.images)
    again = pipe([PROMPT, "a white star on a navy background"], num_images_per_prompt=2, generator=0,
                 guidance_scale=2.0, top_p=0.9, output_type="np")
    assert np.array_equal(np.stack([np.asarray(i) for i in out.images]), np.round(again * 255).astype(np.uint8))
    codes = pipe(PROMPT, generator=[torch.Generator().manual_seed(5)], output_type="latent", top_k=1)
    assert codes.shape == (1, 64) and codes.dtype == torch.long
    target = tmp_path / "gpt.png"
    assert cli.main(["generate", "image", PROMPT, "--model", folder, "-n", "2", "--temperature", "0.9", "--top-k", "5",
                     "--guidance-scale", "2", "--seed", "1", "--device", "cpu", "-o", str(target)]) == 0
    assert Image.open(target).size == (2 * 32 * 4, 32 * 4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), "prompt\\[0\\]: expected a description"),
    (dict(prompt="red " * 40), "prompt: expected at most 16 tokens"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"),
    (dict(temperature=0.0), "temperature"), (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(num_images_per_prompt=0), "num_images_per_prompt"),
    (dict(generator=[torch.Generator()] * 3), "generator: expected one generator per image"),
])
def test_bad_input_to_the_gpt_pipeline(trained, kwargs, match):
    pipe = multimodal.pipeline("text-to-image", model=trained["gpt"]["model_dir"], device="cpu")
    prompt = kwargs.pop("prompt", PROMPT)
    with pytest.raises(InputError, match=match):
        pipe(prompt, **kwargs)


def test_the_generate_command_refuses_options_of_the_other_kind(trained, tmp_path, capsys):
    target = tmp_path / "x.png"
    assert cli.main(["generate", "image", PROMPT, "--model", trained["gpt"]["model_dir"], "--sampler", "heun",
                     "--device", "cpu", "-o", str(target)]) == 2
    assert "--sampler" in capsys.readouterr().err and not target.exists()
    assert cli.main(["generate", "image", PROMPT, "--model", "text2image-sit", "--top-p", "0.9",
                     "--device", "cpu", "-o", str(target)]) == 2
    assert "--top-p" in capsys.readouterr().err and not target.exists()


def test_codes_command_round_trip(trained, tmp_path, capsys):
    vq = trained["vq"]["model_dir"]
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    codes = tmp_path / "codes.json"
    assert cli.main(["codes", "encode", str(image), "--model", vq, "-o", str(codes)]) == 0
    data = json.loads(codes.read_text())
    grid = torch.tensor(data["codes"])
    assert grid.shape == (1, 8, 8)
    model = VQVAE.from_pretrained(vq)
    x = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert torch.equal(model.encode(x), grid)
    out = tmp_path / "out.png"
    assert cli.main(["codes", "decode", str(codes), "--model", vq, "-o", str(out), "--scale", "1"]) == 0
    expected = ((model.decode(grid).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(Image.open(out)).astype(int) - expected.astype(int)).max() <= 1
    bad = tmp_path / "bad.png"
    assert cli.main(["codes", "decode", "[[[99]]]", "--model", vq, "-o", str(bad)]) == 2
    assert "codes: expected codes in [0, 32)" in capsys.readouterr().err and not bad.exists()


# ------------------------------------------------------------------------------ shipped checkpoints
SHIPPED_GPT = SHIPPED_CHECKPOINTS / "text2image-gpt"


def test_the_shipped_gpt_draws_what_is_asked_and_its_seeds_hold():
    pipe = multimodal.pipeline("text-to-image", model="text2image-gpt", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red circle on a black background", "a yellow square on a white background"]
    gens = [torch.Generator().manual_seed(i) for i in (3, 4)]
    images = pipe(prompts, generator=gens, output_type="np")
    reverse = pipe(prompts[::-1], generator=[torch.Generator().manual_seed(i) for i in (4, 3)], output_type="np")
    assert np.allclose(images, reverse[::-1], atol=1 / 255)  # batch order does not change an image
    # colours: the drawn object's pixels (far from the background) are near the asked colour
    red = images[0].reshape(-1, 3)
    far = np.abs(red - 0).sum(1) > 0.5
    assert far.mean() > 0.05 and np.median(red[far], axis=0)[0] > 0.6 and np.median(red[far], axis=0)[1] < 0.4
    square = images[1].reshape(-1, 3)
    inside = np.abs(square - 1).sum(1) > 0.5  # not white: the yellow object
    assert np.median(square[inside], axis=0)[2] < 0.4


def test_the_shipped_vq_is_the_gpts_and_is_carded():
    a = load_tensors(SHIPPED_CHECKPOINTS / "image-vq" / "model.safetensors")
    b = load_tensors(SHIPPED_GPT / "vq" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for folder in (SHIPPED_CHECKPOINTS / "image-vq", SHIPPED_GPT):
        assert (folder / "MODEL_CARD.md").is_file()
    usage = json.loads((SHIPPED_CHECKPOINTS / "image-vq" / "training.json").read_text())["seen"]["usage"]
    assert usage >= 0.9


def test_the_card_reports_both_judges_when_both_scored(tmp_path):
    from multimodal.training.text2codes import model_card

    info = json.loads((SHIPPED_GPT / "training.json").read_text())
    acc = lambda seen, held: {"seen_accuracy": seen, "held_out_accuracy": held}  # noqa: E731
    row = {"guidance_scale": 3.0, "temperature": 0.85, "top_p": None, "frechet": 2.5, "seconds_per_image": 0.03,
           "codebook_usage": 1.0, **acc(0.9, 0.8), "crisp_judge": acc(0.7, 0.6)}
    evaluation = {"command": "python -m benchmarks.text_to_image_gpt", "judge": "robust", "images_per_prompt": 2,
                  "judge_ceiling": acc(0.97, 0.99), "vq_ceiling": acc(0.95, 0.98), "row": row}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    card = model_card(info, tmp_path)
    assert "| this model | 90.0 % | 80.0 % |" in card and "crisp" not in card
    evaluation.update(crisp_judge="crisp", crisp_judge_ceiling=acc(0.94, 0.96), crisp_vq_ceiling=acc(0.8, 0.85))
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    card = model_card(info, tmp_path)
    assert "| this model | 90.0 % | 80.0 % | 70.0 % | 60.0 % |" in card
    assert "| the judge on real renders | 97.0 % | 99.0 % | 94.0 % | 96.0 % |" in card
    assert "| real renders through the VQ-VAE | 95.0 % | 98.0 % | 80.0 % | 85.0 % |" in card
    assert "trained on crisp renders only (crisp)" in card


def test_the_app_draws_with_the_shipped_gpt():
    from multimodal.app.text_to_image import app_models, generate_images

    assert "GPT" in app_models()
    images = generate_images(PROMPT, "GPT", seed=1, count=2, guidance=3.0, temperature=0.85, top_k=0, top_p=1.0)
    assert len(images) == 2 and images[0].size == (128, 128)
    with pytest.raises(InputError, match="prompt"):
        generate_images("", "GPT")


def test_the_apps_gpt_controls_start_at_the_checkpoints_sampling_defaults():
    from multimodal.app.text_to_image import _controls_for

    config = TextToCodes.config_class.from_dict(json.loads((SHIPPED_GPT / "config.json").read_text()))
    _, _, temperature, top_k, top_p, guidance, _ = _controls_for("GPT")
    assert (guidance["value"], temperature["value"], top_k["value"], top_p["value"]) == \
        (config.guidance_scale, config.temperature, config.top_k or 0, config.top_p or 1.0)
    assert temperature["visible"] and top_p["visible"]
    sampler, steps, temperature, _, _, guidance, _ = _controls_for("SiT")
    assert sampler["visible"] and not temperature["visible"] and guidance["value"] == 4.0


def test_train_lora_teaches_the_token_gpt_a_new_colour(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(world, "_default_fashion", lambda: world._prepare_fashion(trained["fashion"]))
    base = trained["gpt"]["model_dir"]
    code = cli.main(["train", "lora", "--base", str(base), "--target", "all", "--rank", "4", "--examples", "24",
                     "--max-steps", "40", "--batch-size", "8", "--lr", "1e-2", "--warmup-steps", "2",
                     "--eval-every", "0", "--no-progress", "--out-dir", str(tmp_path / "run")])
    assert code == 0
    folder = tmp_path / "run" / "model"
    adapted = pipelines.pipeline("text-to-image", model=str(folder), device="cpu")
    assert adapted.adapters == ["default"]
    assert all(name.startswith("gpt.") for name in read_lora_config(folder)["target_modules"])
    # the adapter lowers the GPT's loss on pink renders' codes
    combos = new_colour_combos("pink")
    images = CaptionedWorld("new_colour").render(combos, generator=3)
    ids = prompt_ids(adapted.model.tokenizer, [canonical_caption(c) for c in combos], adapted.model.config.gpt)
    eval_fn = text2codes_recipe.make_eval_fn({"pink": (images, ids)})
    after = eval_fn(adapted.model)["pink_loss"]
    adapted.unload_lora()
    assert after < eval_fn(adapted.model)["pink_loss"] - 0.05  # deterministic: fixed renders, eval mode
