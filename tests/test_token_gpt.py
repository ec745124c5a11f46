"""The token GPT and the one autoregressive sampler: greedy is argmax, top-p keeps the smallest set
reaching p, guidance 1 is the conditional model, the KV cache equals recomputation, seeds and batch
order, bad sampling arguments, and a GPT that learns prompt -> codes on a tiny problem."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.errors import InputError
from multimodal.generation.autoregressive import check_sampling, filter_logits, generate_tokens, sample_from
from multimodal.generation.guidance import guide_logits
from multimodal.models.token_gpt import TokenGPT, TokenGPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(seed: int = 0, **kwargs) -> TokenGPT:
    torch.manual_seed(seed)
    config = TokenGPTConfig(**{"codebook_size": 16, "grid": (3, 3), "text_vocab": 20, "text_length": 4,
                               "width": 32, "depth": 2, "heads": 4, **kwargs})
    model = TokenGPT(config).eval()
    with torch.no_grad():  # large logits: top-2 margins far above float rounding on any CPU
        model.head.weight.mul_(40)
    return model


def prompts(model: TokenGPT, n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, model.config.text_vocab, (n, model.config.text_length),
                         generator=torch.Generator().manual_seed(seed))


def test_greedy_is_the_argmax_of_the_guided_logits():
    model = tiny_gpt()
    ids = prompts(model)
    null = torch.full_like(ids, model.pad_id)
    out = generate_tokens(model, ids, 9, top_k=1, guidance_scale=2.0, null_ids=null,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # replay: each token is the argmax given the tokens before it
        for t in range(9):
            cond = model(ids, out[:, :t + 1])[:, t]  # reads the tokens before t only
            uncond = model(null, out[:, :t + 1])[:, t]
            assert torch.equal(out[:, t], guide_logits(cond, uncond, 2.0).argmax(-1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2, max_size=12), st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p(logits, p):
    logits = torch.tensor([logits], dtype=torch.float64)
    full = torch.softmax(logits, -1)[0]
    kept = filter_logits(logits, top_p=p)[0] > 0
    order = full.argsort(descending=True)
    n = int(kept.sum())
    assert kept[order[:n]].all()  # the most likely tokens
    assert float(full[kept].sum()) >= p - 1e-6  # their mass reaches p
    without_last = float(full[order[:n - 1]].sum())
    assert n == 1 or without_last < p + 1e-6  # and one fewer would not (ties aside)
    torch.testing.assert_close(filter_logits(logits, top_p=p)[0][kept].sum(), torch.tensor(1.0, dtype=torch.float64))


def test_top_k_and_temperature():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert (filter_logits(logits, top_k=2)[0] > 0).tolist() == [False, True, True, False]
    cold = filter_logits(logits, temperature=0.05)[0]
    assert float(cold[1]) > 0.999
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), torch.softmax(logits / 2, -1))


def test_inverse_cdf_sampling_never_picks_a_token_of_zero_mass():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5]] * 5)
    u = torch.tensor([0.0, 0.25, 0.4999, 0.5, 0.9999])
    assert sample_from(probs, u).tolist() == [1, 1, 1, 3, 3]


def test_guidance_one_is_the_conditional_model():
    model = tiny_gpt()
    ids = prompts(model)
    plain = generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(5))
    guided = generate_tokens(model, ids, 9, guidance_scale=1.0, null_ids=torch.full_like(ids, model.pad_id),
                             generator=torch.Generator().manual_seed(5))
    assert torch.equal(plain, guided)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_the_kv_cache_equals_recomputing_the_prefix(positions):
    model = tiny_gpt(positions=positions)
    ids = prompts(model)
    null = torch.full_like(ids, model.pad_id)
    kwargs = dict(guidance_scale=3.0, null_ids=null, top_p=0.9, temperature=0.8)
    cached = generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(2), **kwargs)
    full = generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(2), use_cache=False, **kwargs)
    assert torch.equal(cached, full)


def test_seeds_and_batch_order():
    model = tiny_gpt()
    ids = prompts(model, 4)
    a = generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(a, generate_tokens(model, ids, 9, generator=torch.Generator().manual_seed(8)))
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(4)]  # noqa: E731
    forward = generate_tokens(model, ids, 9, generator=gens())
    backward = generate_tokens(model, ids.flip(0), 9, generator=gens()[::-1])
    assert torch.equal(forward, backward.flip(0))
    alone = generate_tokens(model, ids[2:3], 9, generator=gens()[2:3])
    assert torch.equal(alone[0], forward[2])


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(top_k=-1), "top_k"), (dict(top_k=1.5), "top_k"),
    (dict(top_p=0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"),
])
def test_bad_sampling_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        check_sampling(**kwargs)
    model = tiny_gpt()
    with pytest.raises(InputError, match=match):
        generate_tokens(model, prompts(model), 9, **kwargs)


def test_guidance_needs_the_empty_prompt_and_generators_must_fit():
    model = tiny_gpt()
    ids = prompts(model)
    with pytest.raises(InputError, match="null_ids"):
        generate_tokens(model, ids, 9, guidance_scale=2.0)
    with pytest.raises(InputError, match="generator: expected one generator per image"):
        generate_tokens(model, ids, 9, generator=[torch.Generator()])
    with pytest.raises(InputError, match="guidance_scale"):
        generate_tokens(model, ids, 9, guidance_scale=-1.0)


def test_a_gpt_learns_prompt_to_codes():
    torch.manual_seed(0)
    model = TokenGPT(TokenGPTConfig(codebook_size=8, grid=(2, 3), text_vocab=6, text_length=2, width=32, depth=2,
                                    heads=4, cond_drop=0.0))
    ids = torch.tensor([[0, 1], [2, 3], [4, 5]])
    targets = torch.tensor([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], [0, 0, 7, 7, 0, 0]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss(ids, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert float(loss.detach()) < 0.05
    assert torch.equal(generate_tokens(model, ids, 6, top_k=1), targets)
