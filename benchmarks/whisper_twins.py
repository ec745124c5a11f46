"""Reference implementations holding our Whisper's weights: openai-whisper's ``Whisper`` and
transformers' ``WhisperForConditionalGeneration``, for side-by-side comparisons (the ASR benchmark,
and the tests that check our decoding and transcription against openai-whisper's).

Our state dict maps onto openai-whisper's names (fused q/k/v split apart, keys without bias), and
openai-whisper's onto transformers' names one to one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from multimodal.models.whisper import Whisper, WhisperConfig


def openai_state_dict(ours: dict[str, torch.Tensor], config: WhisperConfig) -> dict[str, torch.Tensor]:
    """Our Whisper's state dict under openai-whisper's names (fused q/k/v split apart; keys have no
    bias). The encoder's sinusoid table is a buffer both sides compute themselves."""
    out = {}

    def block(src: str, dst: str, width: int, cross: bool) -> None:
        q, k, v = ours[f"{src}.attn.qkv.weight"].split(width)
        qb, _, vb = ours[f"{src}.attn.qkv.bias"].split(width)
        out.update({f"{dst}.attn.query.weight": q, f"{dst}.attn.query.bias": qb, f"{dst}.attn.key.weight": k,
                    f"{dst}.attn.value.weight": v, f"{dst}.attn.value.bias": vb})
        pairs = {"attn.out": "attn.out", "norm1": "attn_ln", "norm2": "mlp_ln", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.2"}
        if cross:
            ck, cv = ours[f"{src}.cross_attn.kv.weight"].split(width)
            out.update({f"{dst}.cross_attn.key.weight": ck, f"{dst}.cross_attn.value.weight": cv,
                        f"{dst}.cross_attn.value.bias": ours[f"{src}.cross_attn.kv.bias"][width:]})
            pairs.update({"cross_attn.q": "cross_attn.query", "cross_attn.out": "cross_attn.out",
                          "cross_norm": "cross_attn_ln"})
        for a, b in pairs.items():
            out[f"{dst}.{b}.weight"], out[f"{dst}.{b}.bias"] = ours[f"{src}.{a}.weight"], ours[f"{src}.{a}.bias"]

    for name in ("conv1", "conv2"):
        for p in ("weight", "bias"):
            out[f"encoder.{name}.{p}"] = ours[f"encoder.{name}.{p}"]
    for i in range(config.n_audio_layer):
        block(f"encoder.transformer.blocks.{i}", f"encoder.blocks.{i}", config.n_audio_state, cross=False)
    for i in range(config.n_text_layer):
        block(f"decoder.transformer.blocks.{i}", f"decoder.blocks.{i}", config.n_text_state, cross=True)
    for p in ("weight", "bias"):
        out[f"encoder.ln_post.{p}"] = ours[f"encoder.transformer.norm.{p}"]
        out[f"decoder.ln.{p}"] = ours[f"decoder.transformer.norm.{p}"]
    out["decoder.token_embedding.weight"] = ours["decoder.token_embedding.weight"]
    out["decoder.positional_embedding"] = ours["decoder.transformer.pos_embed"]
    return out


def openai_twin(model: Whisper):
    """openai-whisper's Whisper holding our model's weights (float32, eval mode)."""
    from whisper.model import ModelDimensions
    from whisper.model import Whisper as OpenAIWhisper

    cfg = model.config
    dims = ModelDimensions(**{k: v for k, v in cfg.to_dict().items() if k != "alignment_heads"})
    twin = OpenAIWhisper(dims)
    state = {k: v.float() for k, v in openai_state_dict(model.state_dict(), cfg).items()}
    result = twin.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and result.missing_keys == ["encoder.positional_embedding"]
    return twin.eval()


# openai-whisper's block names -> transformers' (within encoder.layers.N / decoder.layers.N)
_HF_BLOCK = {"attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj", "attn.value": "self_attn.v_proj",
             "attn.out": "self_attn.out_proj", "attn_ln": "self_attn_layer_norm",
             "cross_attn.query": "encoder_attn.q_proj", "cross_attn.key": "encoder_attn.k_proj",
             "cross_attn.value": "encoder_attn.v_proj", "cross_attn.out": "encoder_attn.out_proj",
             "cross_attn_ln": "encoder_attn_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2", "mlp_ln": "final_layer_norm"}
_HF_TOP = {"encoder.conv1": "model.encoder.conv1", "encoder.conv2": "model.encoder.conv2",
           "encoder.ln_post": "model.encoder.layer_norm", "decoder.ln": "model.decoder.layer_norm",
           "decoder.token_embedding": "model.decoder.embed_tokens"}


def huggingface_twin(model: Whisper, tokenizer_json: str | Path):
    """transformers' ``WhisperForConditionalGeneration`` holding our model's weights (float32, eval
    mode), its generation config set as the released English-only / multilingual checkpoints set it,
    and a ``WhisperProcessor`` (feature extractor + the ``tokenizer.json`` given) -> (model, processor)."""
    from transformers import WhisperConfig as HFConfig
    from transformers import (WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor,
                              WhisperTokenizerFast)

    from multimodal.tokenizers.whisper_text import WhisperTokenizer

    cfg = model.config
    tok = WhisperTokenizer.from_file(tokenizer_json, multilingual=model.is_multilingual)
    hf = WhisperForConditionalGeneration(HFConfig(
        vocab_size=cfg.n_vocab, num_mel_bins=cfg.n_mels, d_model=cfg.n_audio_state,
        encoder_layers=cfg.n_audio_layer, encoder_attention_heads=cfg.n_audio_head,
        decoder_layers=cfg.n_text_layer, decoder_attention_heads=cfg.n_text_head,
        encoder_ffn_dim=4 * cfg.n_audio_state, decoder_ffn_dim=4 * cfg.n_text_state,
        max_source_positions=cfg.n_audio_ctx, max_target_positions=cfg.n_text_ctx,
        pad_token_id=tok.eot, bos_token_id=tok.eot, eos_token_id=tok.eot, decoder_start_token_id=tok.sot))
    state = {}
    for name, value in openai_state_dict(model.state_dict(), cfg).items():
        if name == "decoder.positional_embedding":
            state["model.decoder.embed_positions.weight"] = value
            continue
        stem, _, param = name.rpartition(".")
        parts = stem.split(".")
        if parts[1] == "blocks":  # encoder.blocks.3.attn.query -> model.encoder.layers.3.self_attn.q_proj
            stem = f"model.{parts[0]}.layers.{parts[2]}.{_HF_BLOCK['.'.join(parts[3:])]}"
        else:
            stem = _HF_TOP[stem]
        state[f"{stem}.{param}"] = value.float()
    state["model.encoder.embed_positions.weight"] = _sinusoids(cfg)  # a table both compute, stored by HF
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and not missing, (missing, unexpected)

    gen = hf.generation_config
    gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id = tok.sot, tok.eot, tok.eot
    gen.no_timestamps_token_id, gen.prev_sot_token_id = tok.no_timestamps, tok.sot_prev
    gen.suppress_tokens = sorted(set(tok.non_speech_tokens) | set(model.generation_config.suppress_tokens or []))
    gen.begin_suppress_tokens = tok.encode(" ") + [tok.eot]
    gen.max_initial_timestamp_index = 50  # 1 s, openai-whisper's default
    gen.alignment_heads = model.alignment_heads
    gen.is_multilingual = model.is_multilingual
    gen.max_length = cfg.n_text_ctx
    if model.is_multilingual:
        gen.lang_to_id = {f"<|{c}|>": tok.language_token(c) for c in list(tok.languages)[:model.num_languages]}
        gen.task_to_id = {"transcribe": tok.transcribe, "translate": tok.translate}
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=cfg.n_mels),
                                 WhisperTokenizerFast(tokenizer_file=str(tokenizer_json)))
    return hf.eval(), processor


def _sinusoids(cfg: WhisperConfig) -> torch.Tensor:
    from whisper.model import sinusoids

    return sinusoids(cfg.n_audio_ctx, cfg.n_audio_state)
