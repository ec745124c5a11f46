"""benchmarks/gpu.py: its FLOPs formula against torch's FlopCounterMode on tiny models of each kind
(ours and the reference libraries'), and its CPU dry run end to end.

FlopCounterMode counts the matmuls, convolutions and attention that a call really runs; SDPA is
pinned to its math backend here, whose matmuls it counts (the CPU's fused kernel it does not)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import gpu
from multimodal.models import Whisper, WhisperConfig
from multimodal.models.dit import DiT, DiTConfig
from multimodal.models.vit import ViT, ViTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

# The formula leaves out biases, norms, activations and the loss, which FlopCounterMode does not count
# either; in training it counts the input gradient of the first layer, which is not computed.
FORWARD_TOLERANCE, TRAINING_TOLERANCE = 0.02, 0.10


def counted(fn) -> int:
    """The FLOPs torch counts while ``fn()`` runs (attention as matmuls)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def assert_close(formula: int, measured: int, tolerance: float = FORWARD_TOLERANCE) -> None:
    assert measured > 0
    assert abs(formula - measured) <= tolerance * measured, f"formula {formula:,} vs FlopCounterMode {measured:,}"


def forward_and_training(model, forward, formula_forward: int, formula_training: int) -> None:
    """The formula's forward and training counts against FlopCounterMode's count of a forward pass
    (eval mode, no autograd) and of a forward plus backward (train mode)."""
    model.eval()
    with torch.no_grad():
        assert_close(formula_forward, counted(forward))
    model.train()
    assert_close(formula_training, counted(lambda: forward().float().square().mean().backward()), TRAINING_TOLERANCE)
    assert formula_training == 3 * formula_forward


def test_transformer_flops_is_the_stated_formula():
    W, D, n, F_ = 8, 3, 5, 32
    forward = 2 * n * D * (4 * W * W + 2 * W * F_) + 4 * D * n * n * W + 2 * n * 100
    assert gpu.transformer_flops(width=W, depth=D, tokens=n, mlp_hidden=F_, linear=[(n, 100)]) == forward
    assert gpu.transformer_flops(width=W, depth=D, tokens=n, mlp_hidden=F_, linear=[(n, 100)],
                                 training=True) == 3 * forward
    cross = gpu.transformer_flops(width=W, depth=D, tokens=1, keys=7, cross_keys=11, mlp_hidden=F_)
    assert cross == 2 * D * (6 * W * W + 2 * W * F_) + 4 * D * (7 + 11) * W


def test_dit_flops_match_flop_counter():
    config = DiTConfig(input_size=8, patch_size=2, width=64, depth=2, heads=4, num_classes=16)
    torch.manual_seed(0)
    model = DiT(config)
    B = 3
    x, t, y = torch.randn(B, 4, 8, 8), torch.randint(0, 1000, (B,)), torch.randint(0, 16, (B,))
    forward_and_training(model, lambda: model(x, t, class_labels=y), B * gpu.dit_flops(config),
                         B * gpu.dit_flops(config, training=True))


def test_gpt_flops_match_flop_counter_for_ours_and_gpt2():
    sizes = dict(width=64, depth=2, heads=4, seq=48, vocab=300)
    ours, theirs = gpu.gpt_models(sizes, "cpu")
    assert not isinstance(theirs, str), theirs
    B, S, V, T = 2, sizes["seq"], sizes["vocab"], gpu.GPT_PROMPT
    g = torch.Generator().manual_seed(0)
    text, codes, ids = (torch.randint(0, V, (B, n), generator=g) for n in (T, S - T, S))
    forward, training = (B * gpu.gpt_flops(64, 2, S, V, training=tr) for tr in (False, True))
    forward_and_training(ours, lambda: ours(text, codes), forward, training)
    forward_and_training(theirs, lambda: theirs(ids).logits, forward, training)


def test_vit_flops_match_flop_counter_for_ours_and_timm():
    import timm

    sizes = gpu.DRY["vit"]
    config = ViTConfig(**sizes["config"])
    torch.manual_seed(0)
    ours = ViT(config)
    theirs = timm.create_model("vit_base_patch16_224", pretrained=False, **sizes["timm"])
    images = torch.randn(3, 3, 32, 32)
    forward, training = (3 * gpu.vit_flops(config, training=tr) for tr in (False, True))
    for model in (ours, theirs):
        forward_and_training(model, lambda: model(images), forward, training)


def test_whisper_work_counts_encoder_and_cached_decoding():
    config = WhisperConfig(n_mels=80, n_audio_ctx=24, n_audio_state=64, n_audio_head=4, n_audio_layer=2, n_vocab=300,
                           n_text_ctx=16, n_text_state=64, n_text_head=4, n_text_layer=2)
    torch.manual_seed(0)
    model = Whisper(config).eval()
    mel = torch.randn(2, 80, 48)

    def decode():
        audio = model.embed_audio(mel)
        cache = model.new_cache(2)
        model.logits(torch.tensor([[1, 2, 3], [4, 5, 6]]), audio, cache=cache, positions=[-1])
        for token in (7, 8, 9):
            model.logits(torch.full((2, 1), token), None, cache=cache)

    with torch.no_grad():
        with gpu.WhisperWork(model) as work:
            decode()
        assert_close(work.flops, counted(decode))


def test_peak_flops_by_device_name():
    assert gpu.peak_flops("NVIDIA H200") == 989e12
    assert gpu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu.peak_flops("Some Other GPU") is None
    assert gpu.peak_flops(None) is None


def test_dry_run_writes_every_case_with_references(tmp_path):
    out = tmp_path / "gpu.json"
    gpu.main(["--dry-run", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["gpu"] is None and result["peak_tflops"] is None
    assert "training = 3 x forward" in result["flops_formula"]
    assert result["errors"] == {}
    rows = result["rows"]
    for case, tasks in (("dit", ["training"]), ("gpt", ["training"]), ("whisper", ["transcription"]),
                        ("vit", ["inference", "training"])):
        for task in tasks:
            mine = [r for r in rows if r["case"] == case and r["task"] == task]
            assert [r["role"] for r in mine][:1] == ["ours"], (case, task)
            skipped = any(k.startswith(f"{case} ") or k.startswith(f"{case}:") for k in result["skipped"])
            assert len(mine) == (1 if skipped else 2), (case, task, result["skipped"])
            for r in mine:
                assert r["seconds_per_step"] > 0 and r["flops_per_step"] > 0 and r["items_per_s"] > 0
                assert r["mfu"] is None and r["step_memory_gib"] is None
                assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] / r["seconds_per_step"] / 1e12)
            if len(mine) == 2:
                assert mine[1]["role"] == "reference"
                assert mine[0]["flops_per_step"] == mine[1]["flops_per_step"]
                assert mine[0]["speed_ours_over_reference"] == pytest.approx(
                    mine[1]["seconds_per_step"] / mine[0]["seconds_per_step"])
    # diffusers, transformers and timm are installed with the dev extra: their rows must be there
    models = {r["model"] for r in rows}
    assert {"diffusers DiTTransformer2DModel", "transformers GPT2LMHeadModel",
            "timm vit_base_patch16_224"} <= models
    whisper = [r for r in rows if r["case"] == "whisper"]
    assert all(r["wer"] < 0.5 for r in whisper), [(r["model"], r["wer"]) for r in whisper]


def test_peak_tflops_gives_mfu_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    gpu.main(["--dry-run", "--cases", "gpt", "--steps", "1", "--peak-tflops", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["mfu"] == pytest.approx(r["achieved_tflops"] / 1.0) for r in rows)


def test_without_cuda_and_without_dry_run_nothing_is_measured(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) is None
    assert "nothing measured" in capsys.readouterr().out

