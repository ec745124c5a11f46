"""ViT converters against the reference implementations themselves (timm's VisionTransformer,
transformers' ViTForImageClassification), built with random weights at a tiny size: same images,
logits within 1e-4 in float32, at the trained resolution and at another one."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from multimodal.convert.vit import from_huggingface, from_timm, load_vit
from multimodal.errors import InputError
from multimodal.models.vit import ViT
from helpers import close, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)


pytestmark = pytest.mark.usefixtures("one_thread")


def images(h=32, w=32, channels=3, batch=2, seed=1):
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def timm_vit(seed=0, **changes):
    from timm.models.vision_transformer import VisionTransformer

    return randomize(VisionTransformer(**{**TINY, **changes}), seed, scale=0.5)


# --------------------------------------------------------------------------------------- timm
TIMM_CASES = {
    "token": dict(),
    "avg, no class token": dict(class_token=False, global_pool="avg"),
    "avg with class token": dict(global_pool="avg"),
    "layer scale, pre-norm, no qkv bias": dict(init_values=0.1, pre_norm=True, qkv_bias=False),
    "grey, non-square, mlp 2": dict(in_chans=1, img_size=(32, 24), mlp_ratio=2.0),
}


@pytest.mark.parametrize("case", TIMM_CASES)
def test_from_timm_model(case):
    changes = TIMM_CASES[case]
    ref = timm_vit(**changes)
    ours = from_timm(ref)
    h, w = changes.get("img_size", (32, 32))
    x = images(h, w, changes.get("in_chans", 3))
    with torch.no_grad():
        close(ours(x), ref(x))
    assert ours.config.global_pool == changes.get("global_pool", "token")
    assert ours.config.norm_eps == 1e-6 and ours.config.heads == 4


@pytest.mark.parametrize("case", ["token", "avg, no class token"])
def test_other_resolutions_equal_timm_dynamic_img_size(case):
    ref = timm_vit(dynamic_img_size=True, **TIMM_CASES[case])
    ours = from_timm(ref)
    with torch.no_grad():
        for h, w in ((48, 40), (16, 24)):  # grow and shrink (antialiased, as timm)
            x = images(h, w)
            close(ours(x), ref(x))


def test_from_timm_state_dict_and_files(tmp_path):
    ref = timm_vit(global_pool="avg")
    x = images()
    with torch.no_grad():
        expected = ref(x)
        state = ref.state_dict()
        # the state dict alone: heads default to width / 64 (timm's head size); here they are 4
        close(from_timm(state, heads=4, global_pool="avg", image_size=32)(x), expected)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vit.safetensors")
        close(from_timm(tmp_path / "vit.safetensors", heads=4)(x), expected)
        torch.save({"state_dict": state, "epoch": 3}, tmp_path / "vit.pth")  # a timm training checkpoint
        close(from_timm(tmp_path / "vit.pth", heads=4)(x), expected)
        folder = tmp_path / "hub"
        folder.mkdir()
        save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps({
            "architecture": "vit_tiny_patch8_32", "num_classes": 10, "label_names": [f"c{i}" for i in range(10)],
            "model_args": {"num_heads": 4, "global_pool": "avg", "img_size": 32},
            "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1],
                               "crop_pct": 0.875, "interpolation": "bilinear"}}))
        model = load_vit(folder)
        close(model(x), expected)
    assert model.config.labels[3] == "c3" and model.config.image_mean == (0.1, 0.2, 0.3)
    assert (model.config.resize, model.config.crop_pct, model.config.interpolation) == ("shorter", 0.875, "bilinear")


def test_converted_weights_save_and_load(tmp_path):
    ref = timm_vit()
    from_timm(ref).save_pretrained(tmp_path / "ours")
    x = images()
    with torch.no_grad():
        close(load_vit(tmp_path / "ours")(x), ref(x))


def test_timm_variants_we_do_not_cover_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="register tokens"):
        from_timm(timm_vit(reg_tokens=2, global_pool="avg"))
    with pytest.raises(InputError, match="no_embed_class"):
        from_timm(timm_vit(no_embed_class=True))
    with pytest.raises(InputError, match=r"unexpected keys: .*q_norm"):
        from_timm(timm_vit(qk_norm=True))
    torch.save({"weights": torch.zeros(2), "args": argparse.Namespace(lr=1.0)}, tmp_path / "evil.pt")  # not a tensor
    with pytest.raises(InputError, match="weights_only=True"):
        from_timm(tmp_path / "evil.pt")


# ------------------------------------------------------------------------------ Hugging Face
def hf_vit(tmp_path, seed=0, **changes):
    from transformers import ViTConfig as HFViTConfig
    from transformers import ViTForImageClassification

    config = HFViTConfig(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                   image_size=32, patch_size=8, num_labels=10,
                                   id2label={i: f"label{i}" for i in range(10)},
                                   label2id={f"label{i}": i for i in range(10)}), **changes})
    model = randomize(ViTForImageClassification(config), seed, scale=0.5)
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


@pytest.mark.parametrize("changes", [dict(), dict(qkv_bias=False, num_channels=1)], ids=["default", "no-qkv-bias-grey"])
def test_from_huggingface(tmp_path, changes):
    ref, folder = hf_vit(tmp_path, **changes)
    ours = from_huggingface(folder)
    x = images(channels=changes.get("num_channels", 3))
    with torch.no_grad():
        close(ours(x), ref(pixel_values=x).logits)
    assert ours.config.labels[7] == "label7" and ours.config.norm_eps == 1e-12
    assert isinstance(load_vit(folder), ViT)


def test_huggingface_interpolated_positions(tmp_path):
    ref, folder = hf_vit(tmp_path)
    ours = from_huggingface(folder)
    with torch.no_grad():
        x = images(48, 40)
        close(ours(x), ref(pixel_values=x, interpolate_pos_encoding=True).logits)


def test_huggingface_in_memory_names_and_preprocessing(tmp_path):
    ref, folder = hf_vit(tmp_path)
    # transformers 5 names the layers differently in memory than on disk; both load
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, folder / "model.safetensors")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2,
         "size": {"height": 32, "width": 32}}))
    ours = from_huggingface(folder)
    x = images()
    with torch.no_grad():
        close(ours(x), ref(pixel_values=x).logits)
    assert ours.config.image_mean == (0.485, 0.456, 0.406) and ours.config.interpolation == "bilinear"
    (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                     "model_type": "deit"}))
    with pytest.raises(InputError, match="model_type 'vit', found 'deit'"):
        from_huggingface(folder)
