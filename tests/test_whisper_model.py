"""The Whisper model itself: presets, the decoding interface (KV cache, beam reordering), tied output
embedding, input validation and save/load with generation settings."""

from __future__ import annotations

import json

import pytest
import torch

from multimodal.backbone import KVCache, Transformer
from multimodal.errors import InputError
from multimodal.models import Whisper, WhisperConfig, WhisperGenerationConfig
from multimodal.models.whisper import PRESET_ALIASES, PRESETS

TINY = WhisperConfig(n_mels=80, n_audio_ctx=24, n_audio_state=64, n_audio_head=4, n_audio_layer=2, n_vocab=300,
                     n_text_ctx=16, n_text_state=48, n_text_head=4, n_text_layer=3)


def tiny_model(seed: int = 0, config: WhisperConfig = TINY) -> Whisper:
    torch.manual_seed(seed)
    model = Whisper(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def mel_and_tokens(batch=2, frames=48, length=9, vocab=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=g), torch.randint(0, vocab, (batch, length), generator=g)


# -------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("name", sorted(PRESETS) + sorted(PRESET_ALIASES))
def test_presets_are_consistent(name):
    config = WhisperConfig.preset(name)
    assert config.n_audio_ctx == 1500 and config.n_text_ctx == 448
    assert config.n_audio_state == config.n_text_state and config.n_audio_head == config.n_text_head
    assert config.n_mels == (128 if "v3" in PRESET_ALIASES.get(name, name) else 80)
    assert config.n_vocab == (51864 if name.endswith(".en") else 51866 if config.n_mels == 128 else 51865)
    assert WhisperConfig.from_json(config.to_json()) == config  # alignment heads validated against the dims


def test_preset_dims_of_known_models():
    assert (WhisperConfig.preset("tiny.en").n_audio_state, WhisperConfig.preset("tiny.en").n_audio_layer) == (384, 4)
    assert WhisperConfig.preset("medium").n_audio_layer == 24
    turbo = WhisperConfig.preset("turbo")
    assert (turbo.n_audio_layer, turbo.n_text_layer, turbo.n_audio_state) == (32, 4, 1280)
    assert WhisperConfig.preset("large") == WhisperConfig.preset("large-v3")
    with pytest.raises(InputError, match="tiny.en"):
        WhisperConfig.preset("huge")
    with pytest.raises(InputError, match="n_audio_state"):
        WhisperConfig(n_audio_state=100, n_audio_head=6)
    with pytest.raises(InputError, match="alignment_heads"):
        WhisperConfig(alignment_heads=[[4, 0]])
    with pytest.raises(InputError, match="unknown fields"):
        WhisperConfig.from_dict({"n_mels": 80, "n_layers": 3})


@pytest.mark.parametrize("n_vocab, multilingual, languages", [(51864, False, 99), (51865, True, 99), (51866, True, 100)])
def test_languages_from_vocabulary(n_vocab, multilingual, languages):
    with torch.device("meta"):
        model = Whisper(TINY.replace(n_vocab=n_vocab))
    assert (model.is_multilingual, model.num_languages) == (multilingual, languages)


def test_alignment_heads_default_and_configured():
    with torch.device("meta"):
        assert Whisper(TINY).alignment_heads == [[1, h] for h in range(4)] + [[2, h] for h in range(4)]
        assert Whisper(TINY.replace(alignment_heads=[[2, 3]])).alignment_heads == [[2, 3]]


# ------------------------------------------------------------------------------------ modules
def test_composes_the_backbone_and_ties_the_output_embedding():
    model = tiny_model()
    assert isinstance(model.encoder.transformer, Transformer) and isinstance(model.decoder.transformer, Transformer)
    assert model.encoder.transformer.config.positions == "sinusoidal" and not model.encoder.transformer.config.causal
    assert model.decoder.transformer.config.causal and model.decoder.transformer.config.cross_attention
    assert not model.encoder.transformer.config.k_bias and not model.decoder.transformer.config.k_bias
    # One vocabulary matrix: logits are hidden states times the token embedding.
    assert [n for n, p in model.named_parameters() if p.shape[0] == TINY.n_vocab] == ["decoder.token_embedding.weight"]
    mel, tokens = mel_and_tokens()
    with torch.no_grad():
        audio = model.embed_audio(mel)
        hidden = model.decoder.transformer(model.decoder.token_embedding(tokens), context=audio)
        assert torch.allclose(model.logits(tokens, audio), hidden @ model.decoder.token_embedding.weight.T)


def test_shapes_and_short_audio():
    model = tiny_model()
    mel, tokens = mel_and_tokens()
    with torch.no_grad():
        assert model.embed_audio(mel).shape == (2, 24, 64)
        assert model.embed_audio(mel[..., :31]).shape == (2, 16, 64)  # ceil(31 / 2)
        logits = model(mel, tokens)
    assert logits.shape == (2, 9, 300) and logits.dtype == torch.float32


def test_kv_cache_decoding_equals_the_full_forward():
    model = tiny_model()
    mel, tokens = mel_and_tokens(length=TINY.n_text_ctx)
    with torch.no_grad():
        audio = model.embed_audio(mel)
        full = model.logits(tokens, audio)
        cache = model.new_cache(2)
        assert isinstance(cache, KVCache) and cache.max_len == TINY.n_text_ctx
        steps = [model.logits(tokens[:, :4], audio, cache=cache)]
        steps += [model.logits(tokens[:, i:i + 1], None, cache=cache) for i in range(4, TINY.n_text_ctx)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-4)
    assert cache.length == TINY.n_text_ctx and all(kv is not None for kv in cache.cross)


def test_cache_reorder_follows_beams():
    """Beam search: after reorder(index) the cache continues the chosen rows' prefixes."""
    model = tiny_model()
    mel, tokens = mel_and_tokens(batch=3, length=6)
    with torch.no_grad():
        audio = model.embed_audio(mel)
        cache = model.new_cache(3)
        model.logits(tokens[:, :5], audio, cache=cache)
        index = torch.tensor([2, 2, 0])
        cache.reorder(index)
        step = model.logits(tokens[index, 5:6], None, cache=cache)
        full = model.logits(tokens[index], audio[index])
    assert torch.allclose(step[:, 0], full[:, 5], atol=1e-4)


def test_logits_at_chosen_positions():
    """positions=[...] gives the full forward's logits at those positions only (a prompt's SOT and
    last token), with and without a cache; bad positions are an InputError."""
    model = tiny_model()
    mel, tokens = mel_and_tokens(length=7)
    with torch.no_grad():
        audio = model.embed_audio(mel)
        full = model.logits(tokens, audio)
        some = model.logits(tokens, audio, positions=[1, -1])
        cached = model.logits(tokens, audio, cache=model.new_cache(2), positions=[1, 6])
    assert some.shape == (2, 2, TINY.n_vocab)
    torch.testing.assert_close(some, full[:, [1, 6]], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cached, full[:, [1, 6]], atol=1e-4, rtol=1e-4)
    for bad in ([], [7], [-8], [True], "1", [1.0]):
        with pytest.raises(InputError, match="positions: expected None or a non-empty list of indices into the 7"):
            model.logits(tokens, audio, positions=bad)


def test_float16_and_bfloat16_run():
    model = tiny_model().to(torch.bfloat16)
    mel, tokens = mel_and_tokens()
    with torch.no_grad():
        audio = model.embed_audio(mel)  # float32 mel is cast to the model's dtype
        assert audio.dtype == torch.bfloat16
        logits = model.logits(tokens, audio, cache=model.new_cache(2))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


# -------------------------------------------------------------------------------------- inputs
def test_bad_mel():
    model = tiny_model()
    for bad, match in ((torch.randn(80, 48), "mel: expected shape"), (torch.randn(1, 64, 48), r"\[batch, 80, frames\]"),
                       (torch.randn(1, 80, 49 * 2), "frames <= 48"), (torch.zeros(1, 80, 48, dtype=torch.long), "floating"),
                       (torch.full((1, 80, 48), float("nan")), "finite"), ([[0.0]], "torch.Tensor")):
        with pytest.raises(InputError, match=match):
            model.embed_audio(bad)


def test_bad_tokens_and_cache_use():
    model = tiny_model()
    mel, tokens = mel_and_tokens()
    audio = model.embed_audio(mel)
    cases = [
        (tokens.float(), audio, None, "integer token ids"),
        (tokens[0], audio, None, r"tokens: expected an integer tensor \[batch, length\]"),
        (tokens.bool(), audio, None, "integer token ids"),
        (tokens.clone().fill_(300), audio, None, r"ids in \[0, 300\)"),
        (tokens.clone().fill_(-1), audio, None, r"ids in \[0, 300\)"),
        (torch.zeros(2, 17, dtype=torch.long), audio, None, "at most 16 new tokens"),
        (tokens, None, None, "audio_features: expected"),
        (tokens, audio[:1], None, r"audio_features: expected shape \[2,"),
        (tokens, audio[..., :10], None, "audio_features"),
        (tokens, audio, model.new_cache(3), "batch 2"),
        (tokens, None, model.new_cache(2), "audio_features: expected"),
    ]
    for toks, features, cache, match in cases:
        with pytest.raises(InputError, match=match):
            model.logits(toks, features, cache=cache)
    cache = model.new_cache(2, max_len=10)
    model.logits(tokens, audio, cache=cache)
    with pytest.raises(InputError, match="at most 1 new tokens"):
        model.logits(tokens[:, :2], None, cache=cache)
    for batch, max_len in ((0, None), (1, 17), (1, 0), (1.5, None)):
        with pytest.raises(InputError):
            model.new_cache(batch, max_len)


# --------------------------------------------------------------------------------- checkpoints
def test_save_and_load_with_generation_config(tmp_path):
    model = tiny_model()
    model.config.alignment_heads = [[2, 1], [1, 3]]
    model.generation_config = WhisperGenerationConfig(suppress_tokens=[1, 2], begin_suppress_tokens=[220],
                                                      lang_to_id={"<|en|>": 250}, no_timestamps_token_id=299)
    model.save_pretrained(tmp_path / "ckpt", dtype=torch.float16)
    assert json.loads((tmp_path / "ckpt" / "generation_config.json").read_text())["lang_to_id"] == {"<|en|>": 250}
    loaded = Whisper.from_pretrained(tmp_path / "ckpt")
    assert loaded.dtype == torch.float32 and loaded.config == model.config
    assert loaded.generation_config == model.generation_config
    assert loaded.alignment_heads == [[2, 1], [1, 3]]
    assert loaded.decoder.token_embedding.weight.data_ptr() != 0
    mel, tokens = mel_and_tokens()
    with torch.no_grad():
        expected = model.half().float()(mel, tokens)
        assert torch.allclose(loaded(mel, tokens), expected, atol=1e-4)
    # Saving a model without generation settings removes a stale file.
    loaded.generation_config = WhisperGenerationConfig()
    loaded.save_pretrained(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "generation_config.json").exists()
    assert Whisper.from_pretrained(tmp_path / "ckpt").generation_config.is_empty()


def test_load_errors(tmp_path):
    with pytest.raises(InputError):
        Whisper.from_pretrained(tmp_path / "missing")
    with pytest.raises(InputError, match="config.json"):
        Whisper.from_pretrained(tmp_path)
    tiny_model().save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "generation_config.json").write_text('{"suppress_tokens": [1], "temperature": 0.5}')
    with pytest.raises(InputError, match="temperature"):
        Whisper.from_pretrained(tmp_path / "ckpt")
