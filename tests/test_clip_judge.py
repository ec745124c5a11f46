"""The clip judge (``multimodal.evaluation.clip_judge``) on real clips of the moving world drawn with
fake garments: direction from the centroid track, verdicts of a tiny frame judge, consistency, bad
input; and ``benchmarks/text_to_video.py`` end to end on a tiny trained video GPT."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fake_fashion

from benchmarks import text_to_video
from multimodal.data.world_video import DIRECTIONS, HELD_OUT_MOTION, MovingWorld, clip_evaluation_prompts
from multimodal.errors import InputError
from multimodal.evaluation.clip_judge import (clip_accuracy, clip_direction, frame_drawer, frame_judge_training,
                                              judge_clips, load_or_train_frame_judge, validation_clip_prompts)
from multimodal.evaluation.world_judge import JudgeRecipe
from multimodal.models.autoencoders.quantizer import QuantizerConfig
from multimodal.models.autoencoders.vq import VQVAEConfig
from multimodal.models.text2codes import TextToCodes
from multimodal.models.token_gpt import TokenGPTConfig
from multimodal.paths import SHIPPED_CHECKPOINTS

pytestmark = pytest.mark.usefixtures("one_thread")

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
SHAPES = ("circle", "cross")
TINY_JUDGE = JudgeRecipe(widths=(8, 16, 32), steps=150, batch_size=32, lr=4e-3, warmup=10, objects=SHAPES)


@pytest.fixture(scope="module")
def fashion():
    return fake_fashion()


@pytest.fixture(scope="module")
def moving(fashion):
    return MovingWorld("all", fashion=fashion)


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory, fashion):
    folder = tmp_path_factory.mktemp("judges")
    judge = load_or_train_frame_judge(folder, TINY_JUDGE, fashion=fashion)
    judge.cache_dir = folder
    return judge


def tiny_judge_dir(judge):
    return judge.cache_dir


def _clips(moving, motions, seed=0):
    return moving.render(motions, torch.Generator().manual_seed(seed))


def test_the_direction_of_real_clips_is_read_for_every_direction_and_a_still_clip_is_none(moving):
    motions = [(o, c, b, d) for d in DIRECTIONS
               for o, c, b in (("circle", "red", "black"), ("t-shirt", "yellow", "navy"), ("bag", "white", "gray"),
                               ("star", "blue", "white"), ("sandal", "purple", "gray"))
               if (o, d) not in HELD_OUT_MOTION]
    clips = _clips(moving, motions)
    assert clip_direction(clips) == [m[3] for m in motions]
    still = clips[:, :, 7:8].expand(-1, -1, clips.shape[2], -1, -1)   # one frame held for the whole clip
    assert clip_direction(still) == ["none"] * len(motions)


def test_a_clip_reversed_in_time_moves_the_other_way(moving):
    motions = [("square", "green", "black", d) for d in DIRECTIONS if ("square", d) not in HELD_OUT_MOTION]
    motions += [("dress", "orange", "white", d) for d in DIRECTIONS]
    clips = _clips(moving, motions, seed=3)
    assert clip_direction(clips.flip(2)) == [OPPOSITE[m[3]] for m in motions]


def test_the_frame_judge_trains_on_moving_world_frames_of_its_objects(fashion, tiny_judge, tmp_path):
    frames, names = frame_drawer(fashion, SHAPES)(10, torch.Generator().manual_seed(0))
    assert frames.shape == (10, 3, 32, 32) and frames.dtype == torch.uint8
    assert len(names) == 10 and set(names) <= set(SHAPES)
    assert tiny_judge.objects == list(SHAPES) and tiny_judge.key
    # cached: the second call loads the file the first wrote, with its training record
    again = load_or_train_frame_judge(tiny_judge_dir(tiny_judge), TINY_JUDGE, fashion=fashion)
    assert again.key == tiny_judge.key
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                 tiny_judge.model.state_dict().values()))
    assert frame_judge_training(again, tiny_judge_dir(tiny_judge))["train_seconds"] > 0


def test_the_judge_reads_real_clips_of_several_prompts_right(moving, tiny_judge):
    prompts = [{"object": o, "colour": c, "background": b, "direction": d}
               for o, c, b, d in (("circle", "red", "black", "right"), ("cross", "cyan", "navy", "left"),
                                  ("cross", "white", "black", "left"), ("circle", "orange", "gray", "up"),
                                  ("circle", "purple", "white", "down"), ("cross", "yellow", "navy", "up"))]
    clips = _clips(moving, prompts, seed=5)
    verdicts = judge_clips(tiny_judge, clips, prompts)
    for key in ("object", "colour", "background", "direction"):
        assert verdicts[key] == [p[key] for p in prompts]
    assert verdicts["consistent"].all() and verdicts["prompt_correct"].all()
    assert verdicts["rates"]["prompt"] == 1.0
    # the same clips against prompts that differ in one attribute each: only that attribute is wrong
    wrong = [dict(prompts[0], colour="blue"), dict(prompts[1], background="black"),
             dict(prompts[2], direction="right"), dict(prompts[3], object="cross"), *prompts[4:]]
    verdicts = judge_clips(tiny_judge, clips, [f"a {p['colour']} {p['object']} moving {p['direction']} on a "
                                               f"{p['background']} background" for p in wrong])
    assert verdicts["prompt_correct"].tolist() == [False] * 4 + [True] * 2
    assert [verdicts[f"{k}_correct"][i] for i, k in enumerate(("colour", "background", "direction", "object"))] \
        == [False] * 4
    assert verdicts["object_correct"][:3].all() and verdicts["direction_correct"][[0, 1, 3]].all()


def test_a_clip_that_changes_colour_midway_is_not_consistent(moving, tiny_judge):
    red, blue = _clips(moving, [("circle", "red", "black", "right"), ("circle", "blue", "black", "right")], seed=2)
    spliced = torch.cat([red[:, :8], blue[:, 8:]], dim=1)[None]   # frames 0-7 red, 8-15 blue
    verdicts = judge_clips(tiny_judge, spliced, [("circle", "red", "black", "right")])
    assert verdicts["colour_share"][0] == 0.5 and not verdicts["consistent"][0]
    assert verdicts["object_correct"][0] and verdicts["object_share"][0] == 1.0


def test_clip_accuracy_splits_seen_and_held_out_prompts():
    prompts = [p for p in clip_evaluation_prompts() if not p["held_out"]][:2] + \
        [p for p in clip_evaluation_prompts() if p["held_out"] == ["colour"]][:2] + \
        [p for p in clip_evaluation_prompts() if p["held_out"] == ["direction"]][:2]
    right = np.array([True, False, True, True, False, False])
    verdicts = {"prompt_correct": right, "consistent": np.ones(6, bool), "object_correct": np.ones(6, bool),
                "colour_correct": right, "background_correct": np.ones(6, bool), "direction_correct": np.ones(6, bool)}
    acc = clip_accuracy(verdicts, prompts)
    assert acc["seen_accuracy"] == 0.5 and acc["held_out_colour_accuracy"] == 1.0
    assert acc["held_out_direction_accuracy"] == 0.0
    assert acc["accuracy"] == 0.5 and acc["colour_accuracy"] == 0.5 and acc["object_accuracy"] == 1.0
    assert acc["per_group"]["held_out_colour"]["colour"] == 1.0
    assert acc["per_object"] == {"t-shirt": {"prompt": 0.5, "consistent": 1.0},      # two prompts of each object
                                 "ankle boot": {"prompt": 1.0, "consistent": 1.0},
                                 "bag": {"prompt": 0.0, "consistent": 1.0}}
    # captions work as prompts too: their held-out kinds are worked out
    assert clip_accuracy(verdicts, [p["caption"] for p in prompts])["held_out_direction_accuracy"] == 0.0
    with pytest.raises(InputError, match="prompts"):
        clip_accuracy(verdicts, prompts[:5])


def test_the_validation_prompts_are_seen_and_none_is_evaluated():
    validation = validation_clip_prompts()
    evaluated = {p["caption"] for p in clip_evaluation_prompts()}
    assert len(validation) == 56 and len({p["caption"] for p in validation}) == 56
    assert not evaluated & {p["caption"] for p in validation}
    assert all(p["held_out"] == [] for p in validation)


def test_bad_input_names_the_argument(moving, tiny_judge):
    clips = _clips(moving, [("circle", "red", "black", "right")] * 2)
    with pytest.raises(InputError, match="clips"):
        clip_direction(clips[:, :, 0])                                   # a batch of images, not clips
    with pytest.raises(InputError, match="clips"):
        clip_direction(clips.float())
    with pytest.raises(InputError, match="clips"):
        judge_clips(tiny_judge, clips[..., :16, :16], [("circle", "red", "black", "right")] * 2)
    with pytest.raises(InputError, match="clips"):
        judge_clips(tiny_judge, clips[:, :, :1], [("circle", "red", "black", "right")] * 2)
    with pytest.raises(InputError, match="prompts"):
        judge_clips(tiny_judge, clips, [("circle", "red", "black", "right")] * 3)
    with pytest.raises(InputError, match="prompts"):
        judge_clips(tiny_judge, clips, "a red circle moving right on a black background")
    with pytest.raises(InputError, match="direction"):
        judge_clips(tiny_judge, clips, [("circle", "red", "black", "sideways")] * 2)
    with pytest.raises(InputError, match="judge"):
        judge_clips(None, clips, [("circle", "red", "black", "right")] * 2)


@pytest.fixture(scope="module")
def video_gpt(tmp_path_factory, fashion):
    from multimodal.training.text2codes import train_text2codes
    from multimodal.training.vqvae import train_vqvae

    root = tmp_path_factory.mktemp("t2v")
    small = dict(eval_every=2, save_every=2, log_every=1, warmup_steps=1, progress=False, device="cpu")
    config = VQVAEConfig(dims=3, channels=8, channel_mult=(1, 2), strides=(2, 2), res_blocks=0, groups=4,
                         quantizer=QuantizerConfig(codebook_size=16, dim=8, codebook_dim=8))
    vq = train_vqvae(root / "vq", steps=2, batch_size=2, config=config, eval_images=4, world="video",
                     fashion=fashion, **small)
    gpt = train_text2codes(root / "gpt", vq=vq["model_dir"], steps=2, batch_size=2,
                           config=TokenGPTConfig(width=32, depth=2, heads=4, text_vocab=4096, text_length=24),
                           tokenizer=SHIPPED_CHECKPOINTS / "text2image-sit" / "tokenizer.json", fashion=fashion,
                           **small)
    return Path(gpt["model_dir"])


def test_the_benchmark_runs_end_to_end_on_a_tiny_video_gpt(video_gpt, tiny_judge, fashion, tmp_path):
    out = tmp_path / "text_to_video.json"
    results = text_to_video.main(["--gpt", str(video_gpt), "--prompts-per-group", "1", "--videos-per-prompt", "2",
                                  "--sweep", "--sweep-guidance", "1.0", "2.0", "--sweep-temperature", "1.0",
                                  "--sweep-top-p", "none", "--sweep-videos-per-prompt", "1", "--threads", "1",
                                  "--write-checkpoint", "--out", str(out)], judge=tiny_judge, fashion=fashion)
    written = json.loads(out.read_text())
    assert written["row"] == results["row"] and written["prompts"] == 3 and written["row"]["clips"] == 6
    row = written["row"]
    for key in ("seen_accuracy", "held_out_colour_accuracy", "held_out_direction_accuracy", "object_accuracy",
                "direction_accuracy", "consistency", "codebook_usage"):
        assert 0 <= row[key] <= 1
    assert row["seconds_per_clip"] > 0 and written["vq"]["psnr"] > 0
    assert set(written["ceilings"]) == {"real clips", "real clips through the VQ-VAE"}
    assert written["ceilings"]["real clips"]["direction_accuracy"] == 1.0   # direction needs no trained judge
    sweep = json.loads((tmp_path / "text_to_video_sweep.json").read_text())
    assert len(sweep["rows"]) == 2 and written["setting"] == sweep["chosen"]
    assert sweep["chosen"]["guidance_scale"] in (1.0, 2.0) and sweep["chosen"]["top_p"] is None
    assert json.loads((video_gpt / "evaluation.json").read_text())["row"] == row
    card = (video_gpt / "MODEL_CARD.md").read_text()
    seen = f"{100 * row['seen_accuracy']:.1f} %"
    assert f"| this model | {seen} |" in card and "| real clips |" in card and "s per clip" in card
    assert set(written["targets"]) == {"seen", "held_out_colour", "held_out_direction"}
    # without a GPT: the ceiling on real clips alone, the same as in the full run
    real = text_to_video.main(["--real-only", "--prompts-per-group", "1", "--videos-per-prompt", "2", "--threads", "1",
                               "--out", str(tmp_path / "real.json")], judge=tiny_judge, fashion=fashion)
    assert real["ceilings"] == {"real clips": written["ceilings"]["real clips"]} and "row" not in real
    assert json.loads((tmp_path / "real.json").read_text())["ceilings"] == real["ceilings"]
    # --vq: the ceiling through a named video VQ-VAE, the same as through the GPT's own
    vq = text_to_video.main(["--real-only", "--prompts-per-group", "1", "--videos-per-prompt", "2", "--threads", "1",
                             "--vq", str(video_gpt / "vq"), "--out", str(tmp_path / "vq.json")], judge=tiny_judge,
                            fashion=fashion)
    assert vq["ceilings"][f"real clips through {video_gpt / 'vq'}"] == written["ceilings"]["real clips through the VQ-VAE"]
    with pytest.raises(InputError, match="--vq: expected a VQ-VAE of videos"):
        text_to_video.main(["--real-only", "--vq", str(SHIPPED_CHECKPOINTS / "image-vq"), "--out",
                            str(tmp_path / "bad.json")], judge=tiny_judge, fashion=fashion)


def test_the_benchmark_refuses_an_image_checkpoint(tiny_judge, fashion, tmp_path):
    image_gpt = SHIPPED_CHECKPOINTS / "text2image-gpt"
    if not image_gpt.is_dir():
        pytest.skip("no shipped text2image-gpt")
    assert TextToCodes.from_pretrained(image_gpt).config.kind == "image"
    with pytest.raises(InputError, match="--gpt"):
        text_to_video.main(["--gpt", str(image_gpt), "--out", str(tmp_path / "r.json")], judge=tiny_judge,
                           fashion=fashion)


def test_the_best_of_n_picks_lie_between_one_sample_and_the_oracle(video_gpt, tiny_judge):
    from benchmarks.text_to_video_limits import best_of

    model = TextToCodes.from_pretrained(video_gpt).eval()
    prompts = validation_clip_prompts()[:6]
    picks = ("log_likelihood_pick", "mutual_information_pick", "object_posterior_pick")
    one = best_of(model, tiny_judge, 1, prompts)  # one sample: every way of picking keeps it
    assert (one["prompts"], one["samples_per_prompt"]) == (6, 1)
    assert all(one[k] == one["random_pick"] == one["oracle"] for k in picks)
    three = best_of(model, tiny_judge, 3, prompts)
    assert all(0 <= three[k] <= three["oracle"] for k in picks) and 0 <= three["random_pick"] <= three["oracle"]
