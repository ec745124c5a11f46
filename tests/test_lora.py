"""LoRA adapters (multimodal.lora): a fresh adapter changes nothing, merge and unmerge, only adapters
train, several adapters switched by name, the peft format both ways, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from multimodal.errors import InputError
from multimodal.lora import (LoraLinear, adapters, add_lora, load_lora, lora_targets, mark_only_lora_trainable,
                             merge_lora, remove_lora, save_lora, set_lora, unmerge_lora)
from multimodal.models.token_gpt import TokenGPT, TokenGPTConfig
from multimodal.models.vit import ViT, ViTConfig


def vit(seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, width=32, depth=2, heads=4)).eval()


def gpt(seed: int = 0) -> TokenGPT:
    torch.manual_seed(seed)
    return TokenGPT(TokenGPTConfig(codebook_size=8, grid=(2, 3), text_vocab=6, text_length=2, width=32, depth=2,
                                   heads=4)).eval()


@pytest.fixture
def images():
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def randomize_adapter(model, name="default", seed=3, std=0.2):
    """Give an adapter non-zero B (a fresh one is zero), as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoraLinear) and name in layer.lora_B:
                layer.lora_B[name].weight.normal_(0, std, generator=g)


def test_targets_cover_attention_mlp_or_both():
    model = vit()
    attn, mlp, both = (lora_targets(model, t) for t in ("attn", "mlp", "all"))
    assert len(attn) == 2 * 2 and all(n.rsplit(".", 1)[1] in ("qkv", "out") for n in attn)
    assert len(mlp) == 2 * 2 and all(n.rsplit(".", 1)[1] in ("fc1", "fc2") for n in mlp)
    assert sorted(both) == sorted(attn + mlp)
    assert "head" not in both  # the task head is not the backbone's


def test_a_fresh_adapter_changes_nothing_and_a_trained_one_does(images):
    model = vit()
    want = model(images)
    add_lora(model, r=4, alpha=8, target="all")
    torch.testing.assert_close(model(images), want, atol=0, rtol=0)
    randomize_adapter(model)
    assert (model(images) - want).abs().max() > 1e-3
    set_lora(model, None)  # no active adapter: the base model
    torch.testing.assert_close(model(images), want, atol=0, rtol=0)


def test_the_update_is_alpha_over_r_times_b_a():
    layer = LoraLinear(nn.Linear(6, 5))
    layer.add("x", r=2, alpha=3.0)
    with torch.no_grad():
        layer.lora_B["x"].weight.normal_()
    layer.active = ["x"]
    x = torch.randn(4, 6)
    a, b = layer.lora_A["x"].weight, layer.lora_B["x"].weight
    torch.testing.assert_close(layer(x), layer.base_layer(x) + 1.5 * x @ a.T @ b.T)


def test_merged_equals_unmerged_and_unmerge_restores_exactly(images):
    model = vit()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    add_lora(model, r=8, target="all")
    randomize_adapter(model)
    want = model(images)
    merge_lora(model)
    torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)
    remove_lora(model)
    assert model.state_dict().keys() == base.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.items())  # bit for bit


def test_merge_and_unload_is_a_plain_model_with_the_adapted_outputs(images):
    model = vit()
    add_lora(model, r=4, target="attn")
    randomize_adapter(model)
    want = model(images)
    merge_lora(model, unload=True)
    assert not adapters(model) and not any(isinstance(m, LoraLinear) for m in model.modules())
    fresh = vit(seed=5)
    fresh.load_state_dict(model.state_dict())  # a full checkpoint of the base's shape
    torch.testing.assert_close(fresh(images), want, atol=1e-5, rtol=1e-5)


def test_only_adapter_parameters_get_gradients_and_learn(images):
    model = vit().train()
    with torch.no_grad():  # a head of a trained model's scale (timm's init leaves it at std 0.02)
        model.head.weight.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    add_lora(model, r=4, target="all")
    params = mark_only_lora_trainable(model)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert params and all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    labels = torch.tensor([0, 1, 2])
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # three images memorised through the adapters alone
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_several_adapters_switch_by_name_and_scale(images):
    model = vit()
    want = model(images)
    add_lora(model, "a", r=4, target="attn")
    randomize_adapter(model, "a", seed=1)
    only_a = model(images)
    add_lora(model, "b", r=2, target="mlp")
    randomize_adapter(model, "b", seed=2)
    assert adapters(model) == ["a", "b"]
    only_b = model(images)
    set_lora(model, "a")
    torch.testing.assert_close(model(images), only_a)
    set_lora(model, ["a", "b"])
    both = model(images)
    assert (both - only_a).abs().max() > 1e-3 and (both - only_b).abs().max() > 1e-3
    set_lora(model, "a", scale=0.0)
    torch.testing.assert_close(model(images), want)
    remove_lora(model, "a")
    assert adapters(model) == ["b"]
    set_lora(model, "b")
    torch.testing.assert_close(model(images), only_b)


def test_save_and_load_round_trip_in_peft_layout(tmp_path, images):
    model = vit()
    add_lora(model, r=4, alpha=12, target="all")
    randomize_adapter(model)
    want = model(images)
    folder = save_lora(model, tmp_path / "adapter", base="vit-test")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 12
    assert config["base_model_name_or_path"] == "vit-test" and sorted(config["target_modules"]) == \
        sorted(lora_targets(vit(), "all"))
    other = vit()
    covered = load_lora(other, folder, "mine", base="vit-test")
    assert sorted(covered) == sorted(config["target_modules"]) and adapters(other) == ["mine"]
    torch.testing.assert_close(other(images), want, atol=0, rtol=0)
    remove_lora(other)
    load_lora(other, folder, scale=0.5)
    half = other(images)
    assert (half - want).abs().max() > 1e-4 and (half - vit()(images)).abs().max() > 1e-4


def test_peft_loads_our_adapter_and_we_load_peft_s(tmp_path, images):
    peft = pytest.importorskip("peft")
    model = vit()
    add_lora(model, r=4, alpha=8, target="all")
    randomize_adapter(model)
    want = model(images)
    save_lora(model, tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(vit(), str(tmp_path / "ours"))
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), want, atol=1e-6, rtol=1e-6)
    # and the other way: an adapter peft made and saved, on a model with a KV-cached decoder
    base = gpt()
    config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=lora_targets(base, "all"), init_lora_weights=False)
    made = peft.get_peft_model(gpt(), config)
    made.save_pretrained(str(tmp_path / "peft"))
    codes = torch.randint(0, 8, (2, 6), generator=torch.Generator().manual_seed(0))
    text = torch.randint(0, 6, (2, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = made(text, codes)
    load_lora(base, tmp_path / "peft")
    with torch.no_grad():
        torch.testing.assert_close(base(text, codes), expected, atol=1e-6, rtol=1e-6)


def test_whisper_takes_adapters_on_its_fused_projections_without_key_bias():
    """Whisper's fused q/k/v Linear has no key bias (attention cancels that slice of the bias): an
    adapter there must leave a fresh model's logits as they were, train alone, and merge."""
    from multimodal.models.whisper import Whisper, WhisperConfig

    torch.manual_seed(0)
    model = Whisper(WhisperConfig(n_mels=80, n_audio_ctx=24, n_audio_state=64, n_audio_head=4, n_audio_layer=2,
                                  n_vocab=300, n_text_ctx=16, n_text_state=48, n_text_head=4, n_text_layer=2)).eval()
    mel = torch.randn(2, 80, 48, generator=torch.Generator().manual_seed(1))
    tokens = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(mel, tokens)
    names = add_lora(model, r=4, target="all")
    assert any(n.endswith("cross_attn.kv") for n in names) and any(n.endswith("attn.qkv") for n in names)
    with torch.no_grad():
        torch.testing.assert_close(model(mel, tokens), want, atol=0, rtol=0)
    randomize_adapter(model, std=0.5)
    mark_only_lora_trainable(model)
    loss = model(mel, tokens).logsumexp(-1).mean()
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_" in n for n in grads)
    with torch.no_grad():
        adapted = model(mel, tokens)
        assert (adapted - want).abs().max() > 1e-3
        merge_lora(model)
        torch.testing.assert_close(model(mel, tokens), adapted, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------------- bad input
def test_bad_adapters_are_input_errors_and_leave_the_model_working(tmp_path, images):
    model = vit()
    want = model(images)
    with pytest.raises(InputError, match="rank"):
        add_lora(model, r=0)
    with pytest.raises(InputError, match="target"):
        add_lora(model, target="everything")
    with pytest.raises(InputError, match="target"):
        add_lora(model, target=["blocks.0.norm1"])
    with pytest.raises(InputError, match="adapter name"):
        add_lora(model, "a b")
    with pytest.raises(InputError, match="adapter_config.json"):
        load_lora(model, tmp_path / "missing")
    # an adapter of another model: widths differ
    wide = ViT(ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, width=64, depth=2, heads=4))
    add_lora(wide, r=4)
    save_lora(wide, tmp_path / "wide", base="vit-wide")
    with pytest.raises(InputError, match="another model"):
        load_lora(model, tmp_path / "wide")
    with pytest.raises(InputError, match="base model"):
        load_lora(model, tmp_path / "wide", base="vit-small")
    # corrupt files
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_lora(model, bad)
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    (bad / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="adapter"):
        load_lora(model, bad)
    (bad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 0}))
    with pytest.raises(InputError, match="rank"):
        load_lora(model, bad)
    with pytest.raises(InputError, match="not loaded"):
        set_lora(model, "nobody")
    with pytest.raises(InputError, match="not loaded"):
        remove_lora(model, "nobody")
    assert not adapters(model) and not any(isinstance(m, LoraLinear) for m in model.modules())
    torch.testing.assert_close(model(images), want, atol=0, rtol=0)


def _fine_tuned(model, seed=5, std=0.05, rank=None):
    """A copy of ``model`` whose backbone Linear weights moved (by a rank-``rank`` change each, or a
    full-rank one), as a full fine-tune would move them."""
    import copy

    tuned = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in lora_targets(tuned, "all"):
            w = tuned.get_submodule(name).weight
            if rank is None:
                w += torch.randn(w.shape, generator=g) * std
            else:
                w += torch.randn(w.shape[0], rank, generator=g) @ torch.randn(rank, w.shape[1], generator=g) * std
    return tuned


def test_extracting_a_fine_tune_reproduces_it_and_saves_small(tmp_path, images):
    from multimodal.lora import extract_lora

    base = vit()
    tuned = _fine_tuned(base, rank=3)
    want = tuned(images)
    model = vit()
    report = extract_lora(model, tuned, r=4)  # rank 4 holds a rank-3 change exactly
    assert sorted(report["layers"]) == sorted(lora_targets(base, "all")) and report["not_carried"] == []
    assert report["kept"] == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(model(images), want, atol=1e-5, rtol=1e-5)
    merge_lora(model)  # merged: the fine-tune's weights
    for name in report["layers"]:
        torch.testing.assert_close(model.get_submodule(name).weight, tuned.get_submodule(name).weight,
                                   atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    folder = save_lora(model, tmp_path / "half", base="vit-test", dtype=torch.float16)
    full = save_lora(model, tmp_path / "full", base="vit-test")
    half_bytes, full_bytes = ((f / "adapter_model.safetensors").stat().st_size for f in (folder, full))
    assert half_bytes < 0.6 * full_bytes
    other = vit()
    load_lora(other, folder)
    torch.testing.assert_close(other(images), want, atol=2e-3, rtol=2e-3)  # float16 storage, close


def test_extraction_keeps_the_largest_directions_of_a_full_rank_change(images):
    from multimodal.lora import extract_lora

    base = vit()
    tuned = _fine_tuned(base)
    errors, kept = [], []
    for r in (2, 8, 32):
        model = vit()
        report = extract_lora(model, tuned, r=r)
        kept.append(report["kept"])
        errors.append(max((model.get_submodule(n).weight + model.get_submodule(n).delta("default")
                           - tuned.get_submodule(n).weight).norm().item() for n in report["layers"]))
        # the best rank-r approximation: its error is the energy of the dropped singular values
        name = next(iter(report["layers"]))
        delta = tuned.get_submodule(name).weight - base.get_submodule(name).weight
        s = torch.linalg.svdvals(delta)
        got = model.get_submodule(name).delta("default")
        assert (delta - got).norm().item() == pytest.approx(s[r:].norm().item(), rel=1e-4, abs=1e-5)
    assert kept[0] < kept[1] < kept[2] and errors[0] > errors[1] > errors[2]
    assert kept[2] == pytest.approx(1.0, abs=1e-6)  # 32 >= every layer's rank in this model


def test_extraction_names_what_it_cannot_carry_and_rejects_bad_input(images):
    from multimodal.lora import extract_lora

    base = vit()
    tuned = _fine_tuned(base, rank=2)
    with torch.no_grad():
        tuned.head.weight += 0.1  # the head is a Linear outside the backbone: extracted too when it differs
        tuned.transformer.blocks[0].norm1.weight += 0.1  # a norm: no adapter can hold it
    model = vit()
    report = extract_lora(model, tuned, r=2)
    assert "head" in report["layers"]
    assert report["not_carried"] == ["transformer.blocks.0.norm1.weight"]
    for bad, match in ((dict(r=0), "rank"), (dict(r=2.5), "rank")):
        with pytest.raises(InputError, match=match):
            extract_lora(vit(), tuned, **bad)
    with pytest.raises(InputError, match="same architecture"):
        extract_lora(vit(), gpt(), r=2)
    with pytest.raises(InputError, match="nothing to extract"):
        extract_lora(vit(), vit(), r=2)
    fresh = vit()
    with pytest.raises(InputError, match="already loaded"):
        extract_lora(model, tuned, r=2)
    assert adapters(fresh) == [] and torch.equal(fresh(images), vit()(images))


def test_the_extract_command_writes_an_adapter_that_reproduces_the_fine_tune(tmp_path, images, capsys):
    from multimodal.cli import main

    base, tuned = vit(), _fine_tuned(vit(), rank=2)
    base.save_pretrained(tmp_path / "base")
    tuned.save_pretrained(tmp_path / "tuned")
    out = tmp_path / "adapter"
    assert main(["lora", "extract", str(tmp_path / "base"), str(tmp_path / "tuned"), "-o", str(out), "--rank", "2",
                 "--dtype", "float32"]) == 0
    assert "100.0 % of the change kept" in capsys.readouterr().out
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "base") and config["r"] == 2
    model = vit()
    load_lora(model, out)
    torch.testing.assert_close(model(images), tuned(images), atol=1e-5, rtol=1e-5)
    ViT(ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, width=48, depth=2, heads=4)).save_pretrained(
        tmp_path / "other")  # not a fine-tune of the base (another width): refused, nothing written
    assert main(["lora", "extract", str(tmp_path / "base"), str(tmp_path / "other"), "-o", str(tmp_path / "bad")]) == 2
    assert "tuned" in capsys.readouterr().err and not (tmp_path / "bad").exists()
