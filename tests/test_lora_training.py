"""LoRA adapters in use: trained on the shared trainer (adapter-only checkpoints, exact resume),
``multimodal train lora``, the pipelines' ``load_lora`` / ``unload_lora`` / ``set_lora`` / merge, an
adapter folder as a model, and ``--lora`` on the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal.checkpoint import load_tensors
from multimodal.cli import main
from multimodal.convert.whisper import default_model_path
from multimodal.errors import InputError
from multimodal.lora import LoraLinear, add_lora, lora_state_dict, save_lora
from multimodal.models.vit import ViT, ViTConfig
from multimodal.pipelines import pipeline
from multimodal.tokenizers.whisper_text import WhisperTokenizer
from multimodal.training.lora import LoraOptions, attach_lora
from test_whisper_training import Interrupted, tiny_whisper, train_tiny, write_clips, write_manifest


@pytest.fixture(scope="module")
def tokenizer() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(default_model_path() / "tokenizer.json")


# ------------------------------------------------------------------------------------ training
def train_adapter(tmp_path, tokenizer, max_steps, resume=False, out="run", stop_after=None):
    """A rank-4 adapter on a tiny frozen Whisper's decoder, trained on generated clips."""
    records = []

    def adapt(model):
        records.append(attach_lora(model, LoraOptions(base="tiny", r=4, alpha=8, target="all"), within=["decoder."]))

    model, trainer, _ = train_tiny(tmp_path, tokenizer, max_steps, resume=resume, out=out, stop_after=stop_after,
                                   save_every=4, adapt=adapt)
    return model, trainer, records[0]


def test_adapter_training_learns_keeps_the_base_and_checkpoints_only_the_adapter(tmp_path, tokenizer, one_thread):
    base = tiny_whisper().state_dict()
    model, trainer, record = train_adapter(tmp_path, tokenizer, max_steps=12)
    losses = [r["loss"] for r in trainer.history if r.get("kind") == "train"]
    assert losses[-1] < 0.5 * losses[0]
    assert record["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not any(name.startswith("encoder.") for name, _ in model.named_parameters() if ".lora_" in name)
    # the frozen base is untouched: every base weight equals the tiny model's
    for name, tensor in model.state_dict().items():
        plain = name.replace(".base_layer.", ".")
        if ".lora_" not in name:
            assert torch.equal(tensor, base[plain]), name
    saved = load_tensors(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    assert sum(t.numel() for t in saved.values()) == record["trainable_parameters"]


def test_adapter_resume_equals_an_uninterrupted_run(tmp_path, tokenizer, one_thread):
    straight, _, _ = train_adapter(tmp_path, tokenizer, max_steps=8, out="straight")
    with pytest.raises(Interrupted):
        train_adapter(tmp_path, tokenizer, max_steps=8, out="resumed", stop_after=6)
    resumed, _, _ = train_adapter(tmp_path, tokenizer, max_steps=8, out="resumed", resume=True)
    a, b = lora_state_dict(straight), lora_state_dict(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_lora_command_writes_a_peft_adapter_that_loads_as_a_model(tmp_path, tokenizer, one_thread):
    base = tmp_path / "tiny-whisper"
    tiny_whisper().save_pretrained(base)
    shutil.copyfile(default_model_path() / "tokenizer.json", base / "tokenizer.json")
    write_manifest(tmp_path / "m.jsonl", write_clips(tmp_path))
    out = tmp_path / "lora-run"
    args = ["train", "lora", "--base", str(base), "--rank", "2", "--target", "all", "--manifest",
            str(tmp_path / "m.jsonl"), "--out-dir", str(out), "--max-steps", "3", "--batch-size", "3",
            "--lr", "1e-2", "--warmup-steps", "1", "--save-every", "2", "--no-progress"]
    assert main(args) == 0
    folder = out / "model"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["base_model_name_or_path"] == str(base)
    assert all(m.startswith("decoder.") for m in config["target_modules"])  # the encoder is frozen
    training = json.loads((folder / "training.json").read_text())
    assert training["command"].startswith("multimodal train lora ") and f"--base {base}" in training["command"]
    assert training["lora"]["r"] == 2
    assert "LoRA adapter" in (folder / "MODEL_CARD.md").read_text()
    assert not (folder / "model.safetensors").exists()
    # the adapter folder as a model: the base it names, plus the adapter's trained weights
    pipe = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    assert pipe.adapters == ["default"]
    saved = load_tensors(folder / "adapter_model.safetensors")
    for k, v in lora_state_dict(pipe.model).items():
        assert torch.equal(v, saved[k]), k
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not fresh
    # --resume reads the adapter-only checkpoint back (a finished run publishes the same adapter)
    assert main([*args, "--resume"]) == 0
    assert json.loads((folder / "training.json").read_text())["resumed"] is True
    again = load_tensors(folder / "adapter_model.safetensors")
    assert all(torch.equal(again[k], saved[k]) for k in saved)


def test_train_lora_refuses_bad_options(tmp_path, capsys):
    assert main(["train", "lora", "--base", "tiny.en", "--rank", "0", "--manifest", "m.jsonl"]) == 2
    assert "rank" in capsys.readouterr().err
    gpt_folder = tmp_path / "gpt"
    (gpt_folder).mkdir()
    (gpt_folder / "config.json").write_text(json.dumps({"gpt": {}, "kind": "audio"}))  # no recipe for audio yet
    assert main(["train", "lora", "--base", str(gpt_folder), "--manifest", "m.jsonl"]) == 2
    assert "Whisper, ViT, text-to-image (DiT/SiT or token GPT), text-to-video or text-to-speech" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option no recipe knows
        main(["train", "vit", "--no-such-option"])


# ------------------------------------------------------------------------------------ pipelines
@pytest.fixture
def classifier(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "vit-small"
    ViT(ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, width=32, depth=2, heads=4)) \
        .save_pretrained(folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return folder, image


def make_adapter(base_folder, folder, seed, base_name=None, r=4):
    model = ViT.from_pretrained(base_folder)
    add_lora(model, r=r, target="all", seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoraLinear):
                layer.lora_B["default"].weight.normal_(0, 0.3, generator=g)
    save_lora(model, folder, base=base_name or str(base_folder))
    return folder


def scores(pipe, image):
    return [r["score"] for r in sorted(pipe(image, top_k=5), key=lambda r: r["label"])]


def test_pipelines_load_switch_merge_and_unload_adapters(tmp_path, classifier):
    folder, image = classifier
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    plain = scores(pipe, image)
    one = make_adapter(folder, tmp_path / "one", seed=1)
    two = make_adapter(folder, tmp_path / "two", seed=2)
    pipe.load_lora(one, adapter_name="one")
    with_one = scores(pipe, image)
    assert max(abs(a - b) for a, b in zip(with_one, plain)) > 1e-3
    pipe.load_lora(two, adapter_name="two")  # the newest is the active one
    with_two = scores(pipe, image)
    assert pipe.adapters == ["one", "two"] and with_two != pytest.approx(with_one, abs=1e-4)
    pipe.set_lora("one")
    assert scores(pipe, image) == pytest.approx(with_one, abs=1e-6)
    pipe.set_lora("one", scale=0.0)
    assert scores(pipe, image) == pytest.approx(plain, abs=1e-6)
    pipe.set_lora("one", scale=1.0)
    pipe.merge_lora()
    assert scores(pipe, image) == pytest.approx(with_one, abs=1e-5)
    pipe.unmerge_lora()
    pipe.set_lora(None)
    assert scores(pipe, image) == pytest.approx(plain, abs=1e-6)
    pipe.unload_lora()
    assert pipe.adapters == [] and not any(isinstance(m, LoraLinear) for m in pipe.model.modules())
    assert scores(pipe, image) == pytest.approx(plain, abs=0)
    # the adapter folder as the model: its base, then the adapter
    direct = pipeline("image-classification", model=str(one), device="cpu")
    assert direct.adapters == ["default"] and scores(direct, image) == pytest.approx(with_one, abs=1e-6)


def test_bad_adapters_leave_the_pipeline_working(tmp_path, classifier):
    folder, image = classifier
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    plain = scores(pipe, image)
    other = tmp_path / "vit-wide"
    ViT(ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, width=64, depth=2, heads=4)) \
        .save_pretrained(other)
    with pytest.raises(InputError, match="another model"):
        pipe.load_lora(make_adapter(other, tmp_path / "wide", seed=1, base_name=str(folder)))
    with pytest.raises(InputError, match="base model"):  # same shapes, but made for another base
        pipe.load_lora(make_adapter(folder, tmp_path / "renamed", seed=1, base_name="vit-other"))
    with pytest.raises(InputError, match="adapter_config.json"):
        pipe.load_lora(tmp_path / "missing")
    broken = make_adapter(folder, tmp_path / "broken", seed=1)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="adapter_model.safetensors"):
        pipe.load_lora(broken)
    with pytest.raises(InputError, match="not loaded"):
        pipe.set_lora("nobody")
    with pytest.raises(InputError, match="not loaded"):
        pipe.unload_lora("nobody")
    nameless = make_adapter(folder, tmp_path / "nameless", seed=1)
    config = json.loads((nameless / "adapter_config.json").read_text())
    (nameless / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    with pytest.raises(InputError, match="names no base model"):
        pipeline("image-classification", model=str(nameless))
    assert pipe.adapters == [] and scores(pipe, image) == pytest.approx(plain, abs=0)


def test_classify_takes_lora_on_the_command_line(tmp_path, classifier, capsys):
    folder, image = classifier
    image.save(tmp_path / "x.png")
    adapter = make_adapter(folder, tmp_path / "one", seed=1)
    assert main(["classify", str(tmp_path / "x.png"), "--model", str(folder), "--json", "--device", "cpu"]) == 0
    plain = json.loads(capsys.readouterr().out)["predictions"]
    assert main(["classify", str(tmp_path / "x.png"), "--model", str(folder), "--json", "--device", "cpu",
                 "--lora", str(adapter)]) == 0
    adapted = json.loads(capsys.readouterr().out)["predictions"]
    pipe = pipeline("image-classification", model=str(adapter), device="cpu")
    assert adapted == pipe(image, top_k=5) and adapted != plain
    assert main(["classify", str(tmp_path / "x.png"), "--model", str(folder), "--lora", str(tmp_path / "nope")]) == 2
    assert "adapter" in capsys.readouterr().err


def test_the_app_offers_the_adapters_of_a_model_and_runs_them(tmp_path, classifier, monkeypatch):
    from multimodal.app import classify as classify_tab
    from multimodal.app.common import NO_ADAPTER

    folder, image = classifier
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    shipped = tmp_path / "cache" / "checkpoints"
    shipped.mkdir(parents=True)
    make_adapter(folder, shipped / "vit-small-lora", seed=1)
    make_adapter(folder, shipped / "other-lora", seed=1, base_name="some-other-model")
    from multimodal.lora import available_adapters

    assert available_adapters("vit-small") == ["vit-small-lora"]
    assert available_adapters("vit-nothing") == []
    monkeypatch.setattr(classify_tab, "adapted_pipeline",
                        lambda task, adapter: pipeline(task, model=str(folder) if adapter in (None, NO_ADAPTER)
                                                       else adapter, device="cpu"))
    plain = classify_tab.classify_image(image, 5)
    adapted = classify_tab.classify_image(image, 5, adapter="vit-small-lora")
    assert adapted == {r["label"]: r["score"] for r in pipeline("image-classification", model=str(
        shipped / "vit-small-lora"), device="cpu")(image, top_k=5)}
    assert adapted != plain and classify_tab.classify_image(image, 5, adapter=NO_ADAPTER) == plain


# ------------------------------------------------------------------------------ shipped adapter
def test_the_shipped_digits_adapter_is_small_names_its_base_and_hears_digits():
    from multimodal.data.speech_digits import FSDD_ROOT
    from multimodal.evaluation.wer import digit_word
    from multimodal.paths import SHIPPED_CHECKPOINTS

    folder = SHIPPED_CHECKPOINTS / "whisper-tiny.en-digits-lora"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5e6
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "whisper-tiny.en" and config["peft_type"] == "LORA"
    assert "98.0 %" in (folder / "MODEL_CARD.md").read_text()  # benchmarks/results/whisper_digits_lora.json
    if not (FSDD_ROOT / "recordings").is_dir():
        pytest.skip(f"the FSDD recordings are not at {FSDD_ROOT} (../shared/data/fsdd beside the repository)")
    # take 1 of the held-out speaker's two, three, four, seven, eight: tiny.en hears "tool.", "See?",
    # "forward.", "saving.", "paid." (far from any digit), the adapter the digits
    words = {2: "two", 3: "three", 4: "four", 7: "seven", 8: "eight"}
    clips = {d: FSDD_ROOT / "recordings" / f"{d}_george_1.wav" for d in words}
    adapted = pipeline("automatic-speech-recognition", model="whisper-tiny.en-digits-lora", device="cpu")
    base = pipeline("automatic-speech-recognition", device="cpu")
    assert adapted.adapters == ["default"] and base.adapters == []
    for pipe in (adapted, base):
        pipe.set_progress_bar_config(disable=True)
    right = lambda pipe: sum(digit_word(pipe(str(clips[d]))["text"]) == w for d, w in words.items())  # noqa: E731
    assert right(adapted) >= 4 and right(base) <= 1


def test_train_lora_on_a_vit_base_and_its_evaluation(tmp_path, capsys):
    from test_vit import TINY, shape_folder

    data = shape_folder(tmp_path / "shapes", per_class=4)
    assert main(["train", "vit", "--data", str(data), "--out-dir", str(tmp_path / "base"), "--max-steps", "4",
                 *TINY]) == 0
    base = tmp_path / "base" / "model"
    out = tmp_path / "adapter"
    train = ["--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "1", "--no-progress", "--device", "cpu"]
    assert main(["train", "lora", "--base", str(base), "--rank", "2", "--target", "all", "--data", str(data),
                 "--out-dir", str(out), "--max-steps", "4", *train]) == 0
    folder = out / "model"
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    assert "LoRA adapter" in (folder / "MODEL_CARD.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", "vit", str(folder), "--split", "train"]) == 0  # the base with the adapter
    assert "train accuracy:" in capsys.readouterr().out
    assert "Accuracy" in (folder / "MODEL_CARD.md").read_text() and (folder / "eval_train.json").is_file()
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    saved = load_tensors(folder / "adapter_model.safetensors")
    assert pipe.adapters == ["default"] and all(torch.equal(v, saved[k]) for k, v in lora_state_dict(pipe.model).items())
    # an adapter cannot change the classes: data with other classes is refused
    other = shape_folder(tmp_path / "other", per_class=4)
    (other / "square").rename(other / "box")
    assert main(["train", "lora", "--base", str(base), "--data", str(other), "--out-dir", str(tmp_path / "x"),
                 "--max-steps", "2", *train]) == 2
    assert "classes of the base model" in capsys.readouterr().err
