"""Text to video: the text-to-video pipeline over a tiny video VQ-VAE and GPT trained here on the moving
world, its bad input, the `generate video` command and the app's Text → Video tab."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fake_fashion
from PIL import Image

import multimodal
from multimodal import cli, paths
from multimodal.data.world_video import VIDEO_CAPTION_TEMPLATES, held_out_kinds, parse_clip_caption
from multimodal.errors import InputError
from multimodal.media import video as media_video
from multimodal.media.video import read_video
from multimodal.models.autoencoders.quantizer import QuantizerConfig
from multimodal.models.autoencoders.vq import VQVAEConfig
from multimodal.models.token_gpt import TokenGPTConfig
from multimodal.paths import SHIPPED_CHECKPOINTS
from multimodal.pipelines.text_to_video import TextToVideoPipeline
from multimodal.training.text2codes import train_text2codes
from multimodal.training.vqvae import train_vqvae

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red circle moving right on a black background"
OTHER = "a white star moving up on a navy background"
TINY_VQ = VQVAEConfig(dims=3, channels=16, channel_mult=(1, 2), strides=(2, 2), res_blocks=0, groups=8,
                      quantizer=QuantizerConfig(codebook_size=32, dim=8, codebook_dim=8))
TINY_GPT = TokenGPTConfig(width=32, depth=2, heads=4, text_vocab=4096, text_length=24)
SMALL = dict(eval_every=2, save_every=2, log_every=1, warmup_steps=1, progress=False, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A text-to-video checkpoint folder: a tiny video VQ-VAE and its GPT, 4 steps each."""
    root = tmp_path_factory.mktemp("t2v")
    fashion = fake_fashion()
    vq = train_vqvae(root / "vq", steps=4, batch_size=4, config=TINY_VQ, eval_images=8, world="video",
                     fashion=fashion, **SMALL)
    gpt = train_text2codes(root / "gpt", vq=vq["model_dir"], steps=4, batch_size=4, config=TINY_GPT,
                           tokenizer=SHIPPED_CHECKPOINTS / "text2image-sit" / "tokenizer.json", fashion=fashion,
                           **SMALL)
    return gpt["model_dir"]


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = multimodal.pipeline("text-to-video", model=folder, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _array(video: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(frame) for frame in video])


def test_frames_come_prompt_by_prompt_as_pil_np_and_pt(pipe):
    assert isinstance(pipe, TextToVideoPipeline)
    out = pipe([PROMPT, OTHER], num_videos_per_prompt=2, generator=0, num_inference_steps=10)
    assert len(out.frames) == 4 and out.warnings == []
    for video in out.frames:
        assert len(video) == 16
        assert all(isinstance(f, Image.Image) and f.size == (32, 32) and f.mode == "RGB" for f in video)
    array = pipe([PROMPT, OTHER], num_videos_per_prompt=2, generator=0, output_type="np").frames
    tensor = pipe([PROMPT, OTHER], num_videos_per_prompt=2, generator=0, output_type="pt").frames
    assert array.shape == (4, 16, 32, 32, 3) and 0 <= array.min() and array.max() <= 1
    assert tensor.shape == (4, 16, 3, 32, 32) and torch.equal(tensor.permute(0, 1, 3, 4, 2), torch.from_numpy(array))
    assert np.array_equal(np.stack([_array(v) for v in out.frames]), np.round(array * 255).astype(np.uint8))


def test_seeds_hold_and_batch_order_does_not_change_a_clip(pipe):
    a = pipe([PROMPT, OTHER], generator=[1, torch.Generator().manual_seed(2)], output_type="np").frames
    again = pipe([PROMPT, OTHER], generator=[1, 2], output_type="np").frames
    reverse = pipe([OTHER, PROMPT], generator=[2, 1], output_type="np").frames
    alone = pipe(OTHER, generator=[2], output_type="np").frames
    assert np.array_equal(a, again)
    assert np.allclose(a, reverse[::-1], atol=1 / 255) and np.allclose(a[1], alone[0], atol=1 / 255)
    other_seed = pipe(PROMPT, generator=3, output_type="np").frames
    assert not np.allclose(a[0], other_seed[0], atol=1 / 255)  # sampled: another seed, another clip


@pytest.mark.parametrize("guidance_scale", [1.0, None])
def test_top_k_1_is_greedy_whatever_the_seed(pipe, guidance_scale):
    one, two = (pipe(PROMPT, generator=seed, top_k=1, guidance_scale=guidance_scale, output_type="np").frames
                for seed in (0, 1))
    assert np.allclose(one, two, atol=1 / 255)


def test_free_text_generates_with_warnings(pipe):
    out = pipe(["a dog running through the park", "a red circle on a black background"], generator=0)
    assert len(out.frames) == 2 and all(len(v) == 16 for v in out.frames)
    unknown, image_caption = out.warnings
    assert "'dog'" in unknown and "'park'" in unknown and "never read" in unknown
    assert "not a caption of the kind it was trained on" in image_caption and "moving left" in image_caption
    assert pipe.prompt_warnings(PROMPT) == []
    for template in VIDEO_CAPTION_TEMPLATES:  # every caption form the world writes is known
        caption = template.format(colour="green", object="bag", direction="left", background="gray")
        assert pipe.prompt_warnings(caption) == [], caption


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), r"prompt\[0\]: expected a description"),
    (dict(prompt=[]), "prompt: expected a string or a non-empty list"),
    (dict(prompt=[PROMPT, 3]), r"prompt\[1\]: expected a string"),
    (dict(prompt="red " * 40), "prompt: expected at most 24 tokens"),
    (dict(num_videos_per_prompt=0), "num_videos_per_prompt"), (dict(num_videos_per_prompt=17), "num_videos_per_prompt"),
    (dict(num_videos_per_prompt=1.5), "num_videos_per_prompt"),
    (dict(num_videos_per_prompt=True), "num_videos_per_prompt"),
    (dict(prompt=[PROMPT] * 17, num_videos_per_prompt=16), "num_videos_per_prompt: expected at most 256 videos"),
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"), (dict(top_k=1.5), "top_k"),
    (dict(guidance_scale=-1.0), "guidance_scale"), (dict(guidance_scale=float("nan")), "guidance_scale"),
    (dict(generator="seed"), "generator"), (dict(generator=-1), "generator"),
    (dict(generator=[1, 2]), r"generator: expected one generator per video \(1\)"),
    (dict(num_inference_steps=0), "num_inference_steps"), (dict(output_type="latent"), "output_type"),
])
def test_bad_input_names_the_argument(pipe, kwargs, match):
    kwargs = {"prompt": PROMPT, **kwargs}
    with pytest.raises(InputError, match=match):
        pipe(kwargs.pop("prompt"), **kwargs)


def test_a_checkpoint_that_is_not_text_to_video_is_refused_naming_model(folder, tmp_path):
    image_kind = tmp_path / "image-gpt"
    image_kind.mkdir()
    config = json.loads((Path(folder) / "config.json").read_text())
    (image_kind / "config.json").write_text(json.dumps({**config, "kind": "image"}))
    with pytest.raises(InputError, match="^model: expected a text-to-video checkpoint.*kind 'image'"):
        multimodal.pipeline("text-to-video", model=image_kind, device="cpu")
    with pytest.raises(InputError, match="^model: expected a text-to-video checkpoint.*no token GPT"):
        multimodal.pipeline("text-to-video", model="text2image-sit", device="cpu")
    with pytest.raises(InputError, match="^model:"):
        multimodal.pipeline("text-to-video", model=tmp_path / "missing", device="cpu")
    # and the text-to-image pipeline refuses a video checkpoint
    with pytest.raises(InputError, match="^model: expected a text-to-image checkpoint.*kind 'video'"):
        multimodal.pipeline("text-to-image", model=folder, device="cpu")


# ------------------------------------------------------------------------------------ command
def _generate(folder, *options):
    return cli.main(["generate", "video", PROMPT, "--model", str(folder), "--device", "cpu", *options])


def test_the_command_writes_mp4_and_gif_files_that_read_back(folder, pipe, tmp_path, capsys):
    assert _generate(folder, "-n", "2", "--seed", "4", "--top-p", "0.9", "-o", str(tmp_path / "clip.mp4")) == 0
    printed = capsys.readouterr().out
    for i in range(2):
        path = tmp_path / f"clip-{i}.mp4"
        frames = read_video(path)
        assert len(frames) == 16 and frames[0].size == (128, 128) and str(path) in printed
    assert not (tmp_path / "clip.mp4").exists()

    gif = tmp_path / "out" / "clip.gif"
    assert _generate(folder, "--seed", "4", "--scale", "1", "--fps", "10", "--guidance-scale", "2",
                     "--temperature", "0.9", "--top-k", "8", "-o", str(gif)) == 0
    assert f"to {gif}" in capsys.readouterr().out
    frames = read_video(gif)
    assert len(frames) == 16 and frames[0].size == (32, 32)
    sampling = dict(guidance_scale=2.0, temperature=0.9, top_k=8)
    seeds, other = (pipe(PROMPT, generator=seed, **sampling).frames[0] for seed in (4, 5))
    # the seed's clip, near enough: a GIF reduces a frame of more than 256 colours to 256
    distance = lambda a, b: np.abs(_array(a).astype(float) - _array(b)).mean()  # noqa: E731
    assert distance(frames, seeds) < distance(frames, other) / 3
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["clip-0.mp4", "clip-1.mp4", "clip.gif", "out"]


@pytest.mark.parametrize("options,match", [
    (["-o", "clip.avi"], "--output: expected a file name ending in .gif or .mp4"),
    (["--fps", "0"], "--fps"), (["--scale", "0"], "--scale"), (["-n", "0"], "-n/--num-videos"),
    (["-n", "17"], "num_videos_per_prompt"), (["--seed", "-1"], "--seed"), (["--temperature", "0"], "temperature"),
    (["--top-p", "2"], "top_p"), (["--top-k", "-3"], "top_k"), (["--guidance-scale", "-1"], "guidance_scale"),
])
def test_bad_options_fail_before_any_work_and_write_nothing(folder, tmp_path, capsys, monkeypatch, options, match):
    monkeypatch.chdir(tmp_path)
    target = ["-o", "clip.mp4"] if "-o" not in options else []
    assert _generate(folder, *target, *options) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_file_and_an_existing_one_as_it_was(folder, tmp_path, capsys, monkeypatch):
    real, writes, fail_at = media_video.write_video, [], [2]

    def disk_fills(frames, path, fps=8, *, scale=1):
        writes.append(path)
        if len(writes) in fail_at:
            raise OSError(28, "No space left on device")
        return real(frames, path, fps, scale=scale)

    monkeypatch.setattr(media_video, "write_video", disk_fills)
    assert _generate(folder, "-n", "2", "--seed", "0", "-o", str(tmp_path / "clip.gif")) == 2
    assert "No space left on device" in capsys.readouterr().err and len(writes) == 2
    assert list(tmp_path.iterdir()) == []  # neither clip-0.gif, written first, nor a temporary file

    old = tmp_path / "kept.mp4"
    old.write_bytes(b"an older clip")
    assert _generate(folder, "--seed", "0", "-o", str(old)) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    writes.clear()
    fail_at[:] = [1]
    assert _generate(folder, "--seed", "0", "--overwrite", "-o", str(old)) == 2
    assert old.read_bytes() == b"an older clip" and [p.name for p in tmp_path.iterdir()] == ["kept.mp4"]


# -------------------------------------------------------------------------------------- app
@pytest.fixture
def installed(folder, tmp_path, monkeypatch):
    """The tiny checkpoint installed as the shipped text2video-gpt (and nothing else), the app's
    pipelines not yet loaded."""
    from multimodal.app import common

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "text2video-gpt").symlink_to(folder, target_is_directory=True)
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINTS", shipped)
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(common, "_APP_PIPELINES", {})
    return folder


def test_the_app_makes_playable_mp4_and_gif_files(installed):
    from multimodal.app import text_to_video

    defaults = text_to_video.sampling_defaults()
    files = text_to_video.generate_video(PROMPT, defaults["guidance"], defaults["temperature"],
                                         float(defaults["top_k"]), defaults["top_p"], seed=3.0)
    assert files.mp4.suffix == ".mp4" and files.gif.suffix == ".gif" and files.warnings == []
    for path in (files.mp4, files.gif):
        frames = read_video(path)
        assert len(frames) == 16 and frames[0].size == (128, 128)
    greedy = text_to_video.generate_video("a dog on the moon", top_k=1.0, seed=0)
    assert any("'dog'" in line for line in greedy.warnings) and len(read_video(greedy.mp4)) == 16


def test_the_apps_handler_shows_bad_input_and_time_limits_as_messages(installed, monkeypatch):
    import gradio as gr

    from multimodal.app import common, gradio_errors, text_to_video

    handler = gradio_errors(text_to_video.generate_for_tab)
    played, downloads, notes, seed = handler(PROMPT, 3.0, 1.0, 0.0, 1.0, False, 7)
    assert played.endswith(".mp4") and sorted(p[-4:] for p in downloads) == [".gif", ".mp4"] and seed == 7
    with pytest.raises(gr.Error, match="temperature"):
        handler(PROMPT, 3.0, 0.0, 0.0, 1.0, False, 7)
    with pytest.raises(gr.Error, match="top_k"):
        handler(PROMPT, 3.0, 1.0, 2.5, 1.0, False, 7)
    with pytest.raises(gr.Error, match="prompt"):
        handler("", 3.0, 1.0, 0.0, 1.0, True, 0)
    monkeypatch.setitem(common.TIME_LIMITS, "text-to-video", 0)
    with pytest.raises(gr.Error, match="time limit: this request was stopped after 0 s"):
        handler(PROMPT, 3.0, 1.0, 0.0, 1.0, False, 7)


def test_the_tab_is_listed_only_with_its_checkpoint_and_starts_at_its_defaults(installed, tmp_path, monkeypatch):
    import gradio as gr

    from multimodal import app
    from multimodal.app import text_to_video

    assert "Text → Video" in [t.title for t in app.tabs()]
    config = json.loads((Path(installed) / "config.json").read_text())
    with gr.Blocks() as demo:
        text_to_video.text_to_video_tab()
    sliders = {b.label: b.value for b in demo.blocks.values() if isinstance(b, gr.Slider)}
    assert sliders == {"guidance scale": config["guidance_scale"], "temperature": config["temperature"],
                       "top k (0: off)": config["top_k"] or 0, "top p": config["top_p"] or 1.0}
    assert any(isinstance(b, gr.Video) for b in demo.blocks.values())
    for prompt in text_to_video.EXAMPLE_PROMPTS:  # the examples are seen captions of the moving world
        assert held_out_kinds(parse_clip_caption(prompt)) == []
    monkeypatch.setattr(paths, "SHIPPED_CHECKPOINTS", tmp_path / "nothing")
    assert "Text → Video" not in [t.title for t in app.tabs()]


# ------------------------------------------------------------------------------ shipped model
@pytest.mark.skipif(not (SHIPPED_CHECKPOINTS / "text2video-gpt").is_dir(),
                    reason="the text2video-gpt checkpoint is not shipped yet")
def test_the_default_model_generates_clips_of_the_moving_world():
    pipe = multimodal.pipeline("text-to-video", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    out = pipe([PROMPT, OTHER], generator=[0, 1])
    assert len(out.frames) == 2 and all(len(v) == 16 and v[0].size == (32, 32) for v in out.frames)
    assert out.warnings == []
    again = pipe([OTHER, PROMPT], generator=[1, 0]).frames  # the same seeds in the other order
    for a, b in ((again[0], out.frames[1]), (again[1], out.frames[0])):
        assert np.abs(_array(a).astype(int) - _array(b)).max() <= 1


def test_the_video_gpt_and_vq_cards_say_what_they_are(folder):
    card = (Path(folder) / "MODEL_CARD.md").read_text()
    assert card.startswith("# Text -> video codes GPT for the moving world")
    assert 'pipeline("text-to-video"' in card and "multimodal generate video" in card and "4x8x8 code grid" in card
    training = json.loads((Path(folder) / "training.json").read_text())
    assert training["data"].startswith("moving world, split train") and training["model"]["kind"] == "video"


def test_a_lora_adapter_trains_on_the_video_gpt_with_its_recipe_and_the_tab_offers_it(installed, tmp_path):
    """`train lora` takes a text-to-video base to the text2video recipe; only the GPT's adapter trains
    and is stored; the adapter folder works as a model whose base is left untouched, and the app's tab
    offers it once it is installed beside its base."""
    import gradio as gr
    from safetensors.torch import load_file

    from multimodal.app import text_to_video
    from multimodal.training.lora import LoraOptions, base_kind

    assert base_kind("text2video-gpt") == "text2video"
    lora = LoraOptions(base="text2video-gpt", r=2, alpha=4.0, target="all")
    result = train_text2codes(tmp_path / "lora", vq=None, steps=4, batch_size=4, lr=1e-2, fashion=fake_fashion(),
                              lora=lora, **SMALL)
    adapter = Path(result["model_dir"])
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "text2video-gpt"
    assert all(m.startswith("gpt.") for m in config["target_modules"])
    assert not (adapter / "model.safetensors").exists() and result["parameters"] == result["lora"]["trainable_parameters"]
    assert any(v.abs().max() > 0 for k, v in load_file(adapter / "adapter_model.safetensors").items() if ".lora_B." in k)
    base = multimodal.pipeline("text-to-video", device="cpu")
    adapted = multimodal.pipeline("text-to-video", model=str(adapter), device="cpu")
    for p in (base, adapted):
        p.set_progress_bar_config(disable=True)
    clip = lambda p: _array(p(PROMPT, generator=torch.Generator().manual_seed(0)).frames[0])  # noqa: E731
    plain = clip(base)
    assert adapted.adapters == ["default"] and not np.array_equal(clip(adapted), plain)
    adapted.unload_lora()
    assert np.array_equal(clip(adapted), plain)

    (paths.SHIPPED_CHECKPOINTS / "t2v-lora").symlink_to(adapter, target_is_directory=True)
    with gr.Blocks() as demo:
        text_to_video.text_to_video_tab()
    menus = [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "LoRA adapter"]
    assert [c[0] for c in menus[0].choices] == ["none", "t2v-lora"]
    frames = {a: _array(read_video(text_to_video.generate_video(PROMPT, seed=3, adapter=a).mp4))
              for a in ("none", "t2v-lora")}
    assert not np.array_equal(frames["none"], frames["t2v-lora"])


def test_each_train_command_refuses_the_other_kinds_vq(folder, tmp_path, capsys):
    for argv, match in ((["train", "text2video", "--vq", "image-vq"], "--vq: expected a VQ-VAE of videos"),
                        (["train", "text2codes", "--vq", str(Path(folder) / "vq")], "--vq: expected a VQ-VAE of images")):
        assert cli.main([*argv, "--out-dir", str(tmp_path / "run"), "--device", "cpu"]) != 0
        assert match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_shipped_video_vq_codes_clips_of_the_moving_world():
    from multimodal.data.world_video import Motion, MovingWorld
    from multimodal.models import VQVAE
    from multimodal.training.vqvae import codebook_report

    folder = SHIPPED_CHECKPOINTS / "video-vq"
    vq = VQVAE.from_pretrained(folder)
    training = json.loads((folder / "training.json").read_text())
    assert training["seen"]["usage"] >= 0.9 and training["held_out"]["usage"] >= 0.9
    assert training["storage_check"]["stored_dtype"] == "float16"
    motions = [Motion(o, c, b, d) for o, c, b in (("circle", "red", "black"), ("star", "white", "navy"))
               for d in ("left", "right", "up", "down")]
    clips = MovingWorld("all", fashion=fake_fashion()).render(motions, 0)
    codes = vq.encode(clips.float() / 127.5 - 1)
    assert codes.shape == (8, 4, 8, 8) and codes.dtype == torch.long
    assert torch.equal(codes, vq.encode(clips.float() / 127.5 - 1))  # deterministic
    report = codebook_report(vq, clips)
    assert report["psnr"] > training["seen"]["psnr"] - 3  # shapes code about as well as the card's mix
    assert "Video VQ-VAE for the moving world" in (folder / "MODEL_CARD.md").read_text()


def test_train_videovq_strides_set_the_code_grid_per_axis():
    from multimodal.cli import build_parser
    from multimodal.training.vqvae import RECIPE_VIDEO_MODEL, config_from_args

    def config(*argv):
        return config_from_args(build_parser().parse_args(["train", "videovq", *argv]))

    assert config() == RECIPE_VIDEO_MODEL and config().grid((16, 32, 32)) == (4, 8, 8)
    assert config("--strides", "4,2,2", "2").grid((16, 32, 32)) == (2, 8, 8)
    assert config("--strides", "4,2,2", "4,2,2").grid((16, 32, 32)) == (1, 8, 8)
    assert config("--strides", "1,2,2", "2").strides == ((1, 2, 2), 2)
    with pytest.raises(InputError, match="strides: expected one per stage of --channel-mult"):
        config("--strides", "2")
    with pytest.raises(InputError, match="strides"):
        config("--strides", "4,2", "2")  # two axes for a clip's three
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "videovq", "--strides", "2,x", "2"])


def test_the_limits_benchmark_scores_codes_as_the_training_loss_does(folder):
    import torch.nn.functional as F

    from benchmarks.text_to_video_limits import code_log_likelihoods, object_classifier
    from multimodal.data.world_video import MovingWorld
    from multimodal.models.text2codes import TextToCodes

    model = TextToCodes.from_pretrained(folder).eval()
    fashion = fake_fashion()
    batch = MovingWorld("train", fashion=fashion).sample(5, 0)
    with torch.no_grad():
        codes = model.codes_of(batch.clips.float() / 127.5 - 1)
        log_p = code_log_likelihoods(model, list(batch.captions), codes, batch=2)  # in three calls
        logits = model.gpt(model.tokenize(list(batch.captions)), codes)
    assert log_p.shape == codes.shape and bool((log_p <= 0).all())
    assert float(-log_p.mean()) == pytest.approx(float(F.cross_entropy(logits.flatten(0, 1), codes.flatten())), abs=1e-5)
    result = object_classifier(model, 1, fashion=fashion)
    assert result["clips"] == 56 and 0 <= result["object_accuracy"] <= 1
    assert 0 <= result["object_accuracy_first_slice"] <= 1 and result["nats_per_code_true_caption"] > 0

