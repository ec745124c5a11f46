"""Checkpoints: round trips, validation with named problems, corrupted files, kills mid-save."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from multimodal.backbone import BackboneConfig, Transformer
from multimodal.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, atomic_write_bytes, load_tensors, load_tree,
                                   save_tensors, save_tree)
from multimodal.errors import InputError

CFG = BackboneConfig(width=32, depth=2, heads=4, causal=True, positions="learned", max_len=16,
                     cross_attention=True, k_bias=False)


def make(seed=0, cfg=CFG):
    torch.manual_seed(seed)
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def test_round_trip(tmp_path):
    model = make()
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = Transformer.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    torch.testing.assert_close(loaded(x, context=ctx), model(x, context=ctx), atol=0, rtol=0)


def test_half_precision_storage_loads_as_float32(tmp_path):
    model = make()
    model.save_pretrained(tmp_path, dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in load_tensors(tmp_path / WEIGHTS_NAME).values())
    loaded = Transformer.from_pretrained(tmp_path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 4, 32)
    torch.testing.assert_close(loaded(x, context=x), model(x, context=x), atol=2e-2, rtol=2e-2)
    assert Transformer.from_pretrained(tmp_path, dtype=torch.bfloat16).blocks[0].mlp.fc1.weight.dtype == torch.bfloat16


def test_loading_never_unpickles(tmp_path, monkeypatch):
    make().save_pretrained(tmp_path)

    def refuse(*a, **k):
        raise AssertionError("unpickling during from_pretrained")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr("pickle.loads", refuse)
    monkeypatch.setattr("pickle.load", refuse)
    Transformer.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "header", "empty"])
def test_damaged_weights_are_input_errors(tmp_path, damage):
    make().save_pretrained(tmp_path)
    path = tmp_path / WEIGHTS_NAME
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = data[:8] + b"\x00\xff" * 40 + data[88:]
    elif damage == "header":
        data = (10**12).to_bytes(8, "little") + data[8:]
    else:
        data = b""
    path.write_bytes(data)
    with pytest.raises(InputError, match=WEIGHTS_NAME):
        Transformer.from_pretrained(tmp_path)


def test_missing_pieces_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="nothing"):
        Transformer.from_pretrained(tmp_path / "absent")
    make().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(InputError, match="nothing there"):
        Transformer.from_pretrained(tmp_path)


def test_key_and_shape_problems_are_named(tmp_path):
    model = make()
    model.save_pretrained(tmp_path)
    state = load_tensors(tmp_path / WEIGHTS_NAME)
    state["extra.weight"] = torch.zeros(1)
    del state["norm.weight"]
    state["pos_embed"] = torch.zeros(8, 32)
    save_tensors(tmp_path / WEIGHTS_NAME, state)
    with pytest.raises(InputError) as err:
        Transformer.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "missing keys: norm.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "pos_embed (checkpoint (8, 32), model (16, 32))" in msg


def test_unknown_config_field_is_named(tmp_path):
    make().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    cfg["flux_capacitor"] = 1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="flux_capacitor"):
        Transformer.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        Transformer.from_pretrained(tmp_path)



@pytest.mark.parametrize("config_class, name", [
    ("multimodal.models.token_gpt:TokenGPTConfig", "width"),
    ("multimodal.models.vit:ViTConfig", "depth"),
    ("multimodal.models.dit:DiTConfig", "heads"),
    ("multimodal.models.autoencoders.quantizer:QuantizerConfig", "codebook_size"),
    ("multimodal.models.text2speech_gpt:TextToSpeechGPTConfig", "encoder_depth"),
])
@pytest.mark.parametrize("value", [0, -3, True, 2.0, "4", None])
def test_a_size_that_is_not_a_positive_integer_is_named(config_class, name, value):
    import importlib
    module, cls = config_class.split(":")
    cls = getattr(importlib.import_module(module), cls)
    cls()  # the defaults are valid
    with pytest.raises(InputError, match=rf"^{cls.__name__}\.{name}: expected a positive integer, found {value!r}"):
        cls(**{name: value})

KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys, torch
    from multimodal.backbone import BackboneConfig, Transformer
    import multimodal.checkpoint as ck
    real = pathlib.Path.write_bytes
    def half_then_die(self, data):
        real(self, data[: len(data) // 2])  # the process dies halfway through writing
        os.kill(os.getpid(), signal.SIGKILL)
    pathlib.Path.write_bytes = half_then_die
    cfg = BackboneConfig.load(sys.argv[1] + "/config.json")
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    model.save_pretrained(sys.argv[1])
""")


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    model = make()
    model.save_pretrained(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    loaded = Transformer.from_pretrained(tmp_path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    # the half-written temporary file is left aside, never under the checkpoint's names
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [CONFIG_NAME, WEIGHTS_NAME]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        from multimodal.checkpoint import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"new but incomplete")
            raise Boom
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_tree_round_trip_without_pickle(tmp_path):
    import random
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tree = {"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(), "step": 3, "name": "x", "nested": [1, (2.5, None)]}
    save_tree(tmp_path / "state.safetensors", tree)
    back = load_tree(tmp_path / "state.safetensors")
    assert back["step"] == 3 and back["nested"] == [1, (2.5, None)]
    random.setstate(back["python_rng"])  # tuples come back as tuples
    np.random.set_state(back["numpy_rng"])
    assert torch.equal(back["torch_rng"], tree["torch_rng"])
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for s1, s2 in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_loading_skips_initialisers_and_never_imports_the_compiler(tmp_path):
    """from_pretrained builds on the meta device without running nn.init (whose meta kernels import
    torch._dynamo and sympy, seconds per process); the loaded weights are the saved ones."""
    from multimodal.backbone import BackboneConfig, Transformer
    from multimodal.models.vit import ViT, ViTConfig

    vit = ViT(ViTConfig(image_size=8, patch_size=4, in_channels=1, num_classes=2, width=16, depth=1, heads=2))
    vit.save_pretrained(tmp_path / "vit")
    Transformer(BackboneConfig(width=16, depth=1, heads=2, positions="sinusoidal", max_len=8)).save_pretrained(
        tmp_path / "sin")
    code = (
        "import sys, torch\n"
        "from multimodal.backbone import Transformer\n"
        "from multimodal.models.vit import ViT\n"
        f"v = ViT.from_pretrained({str(tmp_path / 'vit')!r})\n"
        f"t = Transformer.from_pretrained({str(tmp_path / 'sin')!r})\n"
        "assert torch.nn.init.trunc_normal_.__name__ == 'trunc_normal_'\n"
        "print(v.pos_embed.sum().item(), t.pos_embed.sum().item(), 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    vit_sum, sin_sum, dynamo = out.split()
    assert float(vit_sum) == pytest.approx(vit.pos_embed.sum().item(), abs=1e-6)
    assert float(sin_sum) == pytest.approx(Transformer(BackboneConfig(width=16, depth=1, heads=2, positions="sinusoidal",
                                                                      max_len=8)).pos_embed.sum().item(), abs=1e-6)
    assert dynamo == "False"


def test_metadata_of_a_garbage_file_is_an_input_error(tmp_path):
    from multimodal.checkpoint import load_tensor_metadata, save_tensors

    good = tmp_path / "good.safetensors"
    save_tensors(good, {"w": torch.zeros(2)}, metadata={"step": "3"})
    assert load_tensor_metadata(good) == {"step": "3"}
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)  # an 8-byte "header length" of about 1.8e19
    with pytest.raises(InputError, match="unreadable header"):
        load_tensor_metadata(garbage)
    (tmp_path / "list.safetensors").write_bytes((2).to_bytes(8, "little") + b"[]")
    with pytest.raises(InputError, match="not a JSON object"):
        load_tensor_metadata(tmp_path / "list.safetensors")
