"""Text to speech: the text front end, the delay-pattern GPT (tiny) and its sampler."""

from __future__ import annotations

import pytest
import torch

from multimodal.errors import InputError
from multimodal.generation.autoregressive import generate_delayed
from multimodal.models.text2speech_gpt import TextToSpeechGPT, TextToSpeechGPTConfig
from multimodal.tokenizers import phonemes

TINY = TextToSpeechGPTConfig(codebook_size=16, levels=3, voices=("a", "b"), front_end="characters", text_length=12,
                             max_frames=10, width=64, depth=2, heads=4, cond_drop=0.0)


def tiny(seed: int = 0, **changes) -> TextToSpeechGPT:
    torch.manual_seed(seed)
    return TextToSpeechGPT(TINY.replace(**changes)).eval()


# ------------------------------------------------------------------------------------ front end
def test_speakable_text_reads_digits_and_skips_what_cannot_be_said():
    assert phonemes.speakable("Call 4071 now!") == "Call four zero seven one now!"
    assert phonemes.speakable("café — naïve 🙂 ok") == "cafe naive ok"
    assert phonemes.speakable("well-known  A/B test") == "well known A B test"
    assert phonemes.speakable("Привет, world") == ", world"
    for bad in ("", "   ", "🙂🙂", "Привет", "…!?"):
        with pytest.raises(InputError, match="text: expected something speakable"):
            phonemes.speakable(bad)
    with pytest.raises(InputError, match="text: expected a string"):
        phonemes.speakable(42)


def test_sentences_fit_the_window_and_keep_every_word():
    text = "First sentence here. " + ", ".join(["a clause of words"] * 12) + "! Last one?"
    pieces = phonemes.sentences(text, max_chars=40)
    assert all(len(p) <= 40 for p in pieces) and pieces[0] == "First sentence here." and pieces[-1] == "Last one?"
    assert " ".join(pieces).replace(",", "").split() == phonemes.speakable(text).replace(",", "").split()


def test_phonemes_are_printable_ascii_ids_and_back():
    symbols = phonemes.phonemize("four two")
    assert symbols and all(32 <= ord(c) <= 126 for c in symbols) and " " in symbols
    ids = phonemes.encode(symbols)
    assert phonemes.decode(ids) == symbols and max(ids) < phonemes.VOCAB
    assert phonemes.front_end("Four", "characters") == "four"
    with pytest.raises(InputError, match="front_end"):
        phonemes.front_end("four", "graphemes")


# -------------------------------------------------------------------------------- delay pattern
def test_delay_and_undelay_round_trip_with_empty_where_the_pattern_says():
    model = tiny()
    codes = torch.randint(0, 16, (2, 3, 5))
    frames = torch.tensor([5, 3])
    tokens = model.delay(codes, frames)
    assert tokens.shape == (2, 5 + 2, 3)
    for i, n in enumerate(frames.tolist()):
        assert torch.equal(model.undelay(tokens[i], n), codes[i, :, :n])
        for level in range(3):
            assert (tokens[i, :level, level] == model.empty_id).all()
            assert (tokens[i, n + level:, level] == model.empty_id).all()


def test_each_frame_says_the_symbol_whose_span_holds_it():
    model = tiny()
    v, t = _inputs(model, ["ab c"], ["a"])
    states, _ = model.encode(v, t)
    durations = torch.zeros_like(t)
    durations[0, -4:] = torch.tensor([2, 1, 0, 3])  # a: frames 0-1, b: 2, the space: none, c: 3-5
    cond = model.frame_condition(states, durations, 8)
    owner = [-4, -4, -3, -1, -1, -1]
    progress = [0, 1 / 2, 0, 0, 1 / 3, 2 / 3]
    with torch.no_grad():
        for f, (j, p) in enumerate(zip(owner, progress)):
            expected = states[0, j] + model.progress_embed(torch.tensor([float(p)]))
            assert torch.allclose(cond[0, f], expected, atol=1e-6)
        assert torch.equal(cond[0, 6], model.tail) and torch.equal(cond[0, 7], model.tail)
        dropped = model.frame_condition(states, durations, 8, drop=torch.tensor([True]))
        assert torch.allclose(dropped[0, 0], model.null + model.progress_embed(torch.tensor([0.0])), atol=1e-6)


def test_a_text_is_encoded_the_same_beside_a_longer_one():
    model = tiny()
    v, t = _inputs(model, ["hi there", "bye"], ["a", "b"])
    with torch.no_grad():
        both, log_both = model.encode(v, t)
        alone, log_alone = model.encode(v[1:], t[1:])
    assert torch.allclose(both[1, -3:], alone[0, -3:], atol=1e-5)
    assert torch.allclose(log_both[1, -3:], log_alone[0, -3:], atol=1e-5)


def test_predicted_durations_are_whole_frames_with_every_sounding_symbol_heard():
    model = tiny()
    v, t = _inputs(model, ["ab c", "b"], ["a", "b"])
    log_frames = torch.full(t.shape, -3.0)  # rounds to 0 frames
    log_frames[0, -4] = float(torch.log1p(torch.tensor(2.6)))  # 3 frames
    d = model.durations(log_frames, t)
    assert d[0, -4:].tolist() == [3, 1, 0, 1] and d[1, -1] == 1 and d[:, :-4].sum() == 0


# ------------------------------------------------------------------------------------- sampler
def _inputs(model, texts=("hi there", "bye"), voices=("a", "b")):
    return torch.tensor([model.voice_id(v) for v in voices]), model.text_ids(list(texts))


def test_generation_through_the_cache_equals_recomputing_and_seeds_hold():
    model = tiny()
    v, t = _inputs(model)
    kwargs = dict(temperature=1.0, top_p=0.9, max_frames=8)
    cached = generate_delayed(model, v, t, generator=torch.Generator().manual_seed(3), **kwargs)
    full = generate_delayed(model, v, t, generator=torch.Generator().manual_seed(3), use_cache=False, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(cached, full))
    again = generate_delayed(model, v, t, generator=torch.Generator().manual_seed(3), **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(cached, again))
    with torch.no_grad():
        planned = model.durations(model.encode(v, t)[1], t).sum(-1).clamp_max(8)
    for codes, n in zip(cached, planned.tolist()):  # as many frames as the durations say
        assert codes.shape == (3, n) and int(codes.max()) < 16 and int(codes.min()) >= 0
    # a row does not depend on the rest of the batch
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    both = generate_delayed(model, v, t, generator=gens, **kwargs)
    alone = generate_delayed(model, v[1:], t[1:], generator=[torch.Generator().manual_seed(6)], **kwargs)
    assert torch.equal(both[1], alone[0])


def test_guidance_runs_against_the_empty_text_and_greedy_is_argmax():
    model = tiny()
    v, t = _inputs(model)
    greedy = generate_delayed(model, v, t, top_k=1, max_frames=6)
    assert all(torch.equal(a, b) for a, b in zip(greedy, generate_delayed(model, v, t, top_k=1, max_frames=6,
                                                                          generator=torch.Generator().manual_seed(9))))
    guided = generate_delayed(model, v, t, top_k=1, max_frames=6, guidance_scale=3.0)
    guided_cache = generate_delayed(model, v, t, top_k=1, max_frames=6, guidance_scale=3.0, use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(guided, guided_cache))
    # the first frame of greedy decoding is the argmax of the first step's logits
    with torch.no_grad():
        states, log_frames = model.encode(v, t)
        cond = model.frame_condition(states, model.durations(log_frames, t), 1)
        first = model.logits(model.step_inputs(model.bos(2), cond, v))[:, -1]
    assert torch.equal(greedy[0][0, 0], first[0, 0].argmax())


def test_the_gpt_learns_to_say_two_texts_in_two_voices_for_as_long_as_taught():
    model = tiny(seed=1)
    model.train()
    texts, voices = ["one two", "three"], ["a", "b"]
    v, t = _inputs(model, texts, voices)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (2, 3, 8), generator=g)
    frames = torch.tensor([8, 5])
    durations = torch.zeros_like(t)
    durations[0, -7:] = torch.tensor([1, 1, 2, 0, 1, 2, 1])
    durations[1, -5:] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss, parts = model.loss(v, t, codes, frames, durations)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["codes_loss"] < 0.05 and parts["duration_loss"] < 0.01
    out = generate_delayed(model.eval(), v, t, top_k=1)
    assert torch.equal(out[0], codes[0]) and torch.equal(out[1], codes[1, :, :5])  # as long as taught


def test_token_noise_changes_only_the_inputs_of_training():
    """With token noise the training loss reads corrupted codes (so it changes) but scores the clean
    ones; evaluation reads them clean; a noiseless model's loss does not depend on the generator."""
    model, noisy = tiny(seed=2), tiny(seed=2, token_noise=0.5)
    v, t = _inputs(model, ["one two", "three"], ["a", "b"])
    codes = torch.randint(0, 16, (2, 3, 8), generator=torch.Generator().manual_seed(0))
    frames, durations = torch.tensor([8, 5]), torch.zeros_like(t)
    durations[0, -7:] = torch.tensor([1, 1, 2, 0, 1, 2, 1])
    durations[1, -5:] = 1
    def loss(m, seed):
        return float(m.loss(v, t, codes, frames, durations, torch.Generator().manual_seed(seed))[0].detach())
    assert loss(model, 0) == loss(noisy, 0)  # eval: no noise
    model.train(), noisy.train()
    assert loss(model, 0) == loss(model, 1) == loss(model.eval(), 0)
    noisy.train()
    assert loss(noisy, 0) != loss(model.train(), 0) and loss(noisy, 0) == loss(noisy, 0) != loss(noisy, 1)
    with pytest.raises(InputError, match="token_noise"):
        TINY.replace(token_noise=1.0)


def test_bad_sampling_and_text_are_input_errors():
    model = tiny()
    v, t = _inputs(model)
    for kwargs, match in ((dict(temperature=0), "temperature"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"),
                          (dict(max_frames=0), "max_frames"), (dict(max_frames=11), "max_frames"),
                          (dict(guidance_scale=float("nan")), "guidance")):
        with pytest.raises(InputError, match=match):
            generate_delayed(model, v, t, **kwargs)
    with pytest.raises(InputError, match="voice: expected one of a, b"):
        model.voice_id("slt")
    with pytest.raises(InputError, match="at most 12 symbols"):
        model.text_ids(["a much longer text than twelve"])


# ------------------------------------------------------------------------ judgement and its card
def test_score_rows_sum_each_kind_over_voices():
    from benchmarks.text_to_speech import score_rows
    from benchmarks.asr import normaliser

    texts = {"digits": ["407", "12"], "sentence": ["the cat sat", "a dog ran far"]}
    heard = {("v1", "digits"): ["four oh seven", "12"], ("v1", "sentence"): ["the cat sat", "a dog ran far"],
             ("v2", "digits"): ["407", "1"], ("v2", "sentence"): ["the bat sat", "dog ran"]}
    rows = {(r["voice"], r["kind"]): r for r in score_rows(texts, ["v1", "v2"], heard, normaliser())}
    assert rows["v1", "sentence"]["errors"] == 0 and rows["v2", "sentence"]["errors"] == 3
    assert rows["v2", "digits"]["errors"] == 1 and rows["v2", "digits"]["strings_right"] == 0.5  # "1" heard as "one"
    total = rows["all", "sentence"]
    assert (total["words"], total["errors"]) == (14, 3) and total["wer"] == pytest.approx(3 / 14)


def test_digit_scores_keep_leading_zeros_on_both_sides():
    from benchmarks.text_to_speech import score, spoken_digits
    from benchmarks.asr import normaliser

    norm = normaliser()
    assert spoken_digits("00885209", norm) == list("00885209")
    for heard in ("0994", " zero nine nine four", "0, 9, 9, 4.", "Oh nine nine four"):
        assert spoken_digits(heard, norm) == list("0994"), heard
    right = score("digits", ["00885209", "0994"], [" 0 0 8 8 5 2 0 9", "0994"], norm)
    assert (right["words"], right["errors"], right["strings_right"]) == (12, 0, 1.0)
    dropped = score("digits", ["0994"], ["994"], norm)
    assert (dropped["words"], dropped["errors"], dropped["strings_right"]) == (4, 1, 0.0)


def test_card_shows_the_voices_as_read_beside_the_model(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from multimodal.training.text2speech import model_card

    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "text2speech-gpt"
    shutil.copy(shipped / "training.json", tmp_path / "training.json")
    judged = json.loads((shipped / "evaluation.json").read_text())
    judged.pop("held_out_voices", None)  # added back below
    info = json.loads((tmp_path / "training.json").read_text())
    (tmp_path / "evaluation.json").write_text(json.dumps({k: v for k, v in judged.items() if k != "as_read"}))
    assert "as read by the voice's engine" not in model_card(info, tmp_path)
    judged["as_read"] = [{**r, "wer": 0.5 * r["wer"]} for r in judged["rows"]]
    (tmp_path / "evaluation.json").write_text(json.dumps(judged))
    card = model_card(info, tmp_path)
    first = judged["rows"][0]
    assert "as read by the voice's engine" in card
    assert f"| {100 * first['wer']:.1f} % | {50 * first['wer']:.1f} % |" in card
    assert "held-out voice" not in card
    judged["held_out_voices"] = [{"kind": "digits", "voice": "pico-en-US", "words": 96, "errors": 9, "wer": 9 / 96}]
    (tmp_path / "evaluation.json").write_text(json.dumps(judged))
    assert "| digits | pico-en-US | 96 | 9.4 % |" in model_card(info, tmp_path)
