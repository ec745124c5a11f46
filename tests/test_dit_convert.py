"""DiT converter against diffusers' ``DiTTransformer2DModel`` itself, built with random weights (the
zero-initialised adaLN and output layers included) at a tiny size: same latents, timesteps and class
labels, outputs within 1e-4 in float32, with and without learned sigma; from the object, from its
folder and from a pipeline folder; guidance as diffusers' DiTPipeline computes it."""

from __future__ import annotations

import json
import os

import pytest
import torch

from multimodal.convert.dit import from_diffusers
from multimodal.errors import InputError
from multimodal.generation.guidance import classifier_free_guidance
from multimodal.models.dit import DiT
from helpers import close, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, num_attention_heads=2, attention_head_dim=16,
            num_embeds_ada_norm=10)


def diffusers_dit(seed=0, **changes):
    from diffusers import DiTTransformer2DModel

    return randomize(DiTTransformer2DModel(**{**TINY, **changes}), seed, scale=0.2)  # adaLN-Zero layers too


def inputs(batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8, generator=g)
    t = torch.tensor([0, 1, 500, 999])[:batch]
    y = torch.tensor([0, 9, 3, 10])[:batch]  # 10: the null class
    return x, t, y


@pytest.mark.parametrize("out_channels", [None, 8], ids=["eps", "learn-sigma"])
def test_from_diffusers_model_equals_diffusers(out_channels):
    ref = diffusers_dit(out_channels=out_channels)
    ours = from_diffusers(ref)
    assert ours.config.learn_sigma == (out_channels == 8) and ours.config.out_channels == (out_channels or 4)
    assert ours.config.embedder_per_block  # a fresh diffusers model has different embedders per block
    x, t, y = inputs()
    with torch.no_grad():
        expected = ref(x, timestep=t, class_labels=y).sample
        close(ours(x, t, class_labels=y), expected)
        # fractional timesteps (SiT-style continuous times) embed identically
        tf = torch.tensor([0.25, 10.5, 333.3, 998.9])
        close(ours(x, tf, class_labels=y), ref(x, timestep=tf, class_labels=y).sample)
        # dropping the condition is the null class in both
        close(ours(x, t, class_labels=y, drop_condition=torch.ones(4, dtype=torch.bool)),
              ref(x, timestep=t, class_labels=torch.full((4,), 10)).sample)


def test_shared_embedders_collapse_to_one(tmp_path):
    ref = diffusers_dit()
    with torch.no_grad():  # what checkpoints converted from facebookresearch/DiT look like
        first = ref.transformer_blocks[0].norm1.emb
        for block in ref.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first.state_dict())
    ours = from_diffusers(ref)
    assert not ours.config.embedder_per_block and len(ours.embedders) == 1
    x, t, y = inputs()
    with torch.no_grad():
        close(ours(x, t, class_labels=y), ref(x, timestep=t, class_labels=y).sample)


def test_from_folders_and_saved_conversion(tmp_path):
    ref = diffusers_dit(out_channels=8, norm_eps=1e-6)
    ref.save_pretrained(tmp_path / "pipe" / "transformer")  # safetensors + config.json
    x, t, y = inputs()
    with torch.no_grad():
        expected = ref(x, timestep=t, class_labels=y).sample
        for folder in (tmp_path / "pipe" / "transformer", tmp_path / "pipe"):  # its own, or a pipeline folder
            model = from_diffusers(folder)
            close(model(x, t, class_labels=y), expected)
        assert model.config.mlp_norm_eps == 1e-6
        model.save_pretrained(tmp_path / "ours")
        close(DiT.from_pretrained(tmp_path / "ours")(x, t, class_labels=y), expected)


def test_guidance_equals_diffusers_pipeline_arithmetic():
    ref = diffusers_dit(out_channels=8)
    ours = from_diffusers(ref)
    x, t, y = inputs(batch=2)
    scale = 4.0
    with torch.no_grad():
        cond = ref(x, timestep=t, class_labels=y).sample
        uncond = ref(x, timestep=t, class_labels=torch.full((2,), 10)).sample
        # DiTPipeline guides ε (here all 4 latent channels) and keeps the conditional variance channels
        expected = torch.cat([uncond[:, :4] + scale * (cond[:, :4] - uncond[:, :4]), cond[:, 4:]], dim=1)
        close(classifier_free_guidance(ours, x, t, scale, dict(class_labels=y)), expected)


def test_what_is_not_a_diffusers_dit_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="DiTTransformer2DModel"):
        from_diffusers(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="found nothing"):
        from_diffusers(tmp_path / "missing")
    ref = diffusers_dit()
    ref.save_pretrained(tmp_path / "dit")
    config = json.loads((tmp_path / "dit" / "config.json").read_text())
    (tmp_path / "dit" / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(InputError, match="_class_name"):
        from_diffusers(tmp_path / "dit")
    (tmp_path / "dit" / "config.json").write_text(json.dumps({**config, "activation_fn": "geglu"}))
    with pytest.raises(InputError, match="activation_fn"):
        from_diffusers(tmp_path / "dit")
