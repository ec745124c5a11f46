"""Image patches: patchify / unpatchify round trips and layout, PatchEmbed as a linear map of patches,
ConvStem's grid and overlapping receptive fields, and position-table resizing against timm's resample_abs_pos_embed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.errors import InputError
from multimodal.tokenizers.patches import ConvStem, PatchEmbed, patchify, resize_pos_embed, unpatchify

shapes = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5),
                   st.integers(1, 4), st.integers(1, 4))  # batch, channels, patch h, patch w, rows, cols


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_round_trips(shape):
    B, C, ph, pw, rows, cols = shape
    images = torch.randn(B, C, rows * ph, cols * pw)
    patch = ph if ph == pw else (ph, pw)
    tokens = patchify(images, patch)
    assert tokens.shape == (B, rows * cols, ph * pw * C)
    assert torch.equal(unpatchify(tokens, patch, (rows * ph, cols * pw), C), images)
    assert torch.equal(patchify(unpatchify(tokens, patch, (rows * ph, cols * pw), C), patch), tokens)


def test_layout_is_row_major_patches_of_row_column_channel():
    # token n is the patch at grid (n // cols, n % cols); inside it, (row, column, channel) order,
    # the layout DiT's final layer and MAE use.
    C, ph, pw, rows, cols = 3, 2, 3, 2, 4
    images = torch.arange(C * rows * ph * cols * pw, dtype=torch.float32).reshape(1, C, rows * ph, cols * pw)
    tokens = patchify(images, (ph, pw))
    for n in range(rows * cols):
        r, c = divmod(n, cols)
        block = images[0, :, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw]  # [C, ph, pw]
        assert torch.equal(tokens[0, n], block.permute(1, 2, 0).reshape(-1))


def test_sizes_that_are_not_multiples_of_the_patch_are_input_errors():
    with pytest.raises(InputError, match=r"multiples of the patch size 4x4, found 30x32"):
        patchify(torch.zeros(1, 3, 30, 32), 4)
    with pytest.raises(InputError, match=r"\[batch, channels, height, width\]"):
        patchify(torch.zeros(3, 32, 32), 4)
    with pytest.raises(InputError, match=r"tokens: expected \[batch, 4, 48\]"):
        unpatchify(torch.zeros(1, 5, 48), 4, 8, 3)
    with pytest.raises(InputError, match="patch"):
        patchify(torch.zeros(1, 3, 8, 8), 0)
    with pytest.raises(InputError, match="3 channels"):
        PatchEmbed(3, 8, 4)(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("patch,size", [(4, (12, 20)), ((2, 3), (6, 9))])
def test_patch_embed_is_a_linear_map_of_patchify(patch, size):
    torch.manual_seed(0)
    embed = PatchEmbed(3, 16, patch)
    images = torch.randn(2, 3, *size)
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(16, -1)  # [D, (p1 p2 c)]
    expected = F.linear(patchify(images, patch), weight, embed.proj.bias)
    assert torch.allclose(embed(images), expected, atol=1e-5)
    assert embed.grid(*size) == (size[0] // embed.patch[0], size[1] // embed.patch[1])


def _changed_tokens(embed, images, pixel):
    """Which tokens (on the row-major grid) change when one pixel of the first channel changes."""
    with torch.no_grad():
        before = embed(images)
        bumped = images.clone()
        bumped[:, 0, pixel[0], pixel[1]] += 5.0
        after = embed(bumped)
    rows, cols = embed.grid(*images.shape[-2:])
    changed = (after - before).abs().amax(dim=(0, 2)) > 1e-6
    return {(int(i) // cols, int(i) % cols) for i in changed.nonzero()}


def test_conv_stem_keeps_the_patch_grid_and_sees_across_patch_borders():
    torch.manual_seed(0)
    stem, patch = ConvStem(2, 16, 4).eval(), PatchEmbed(2, 16, 4)
    images = torch.randn(3, 2, 16, 24)
    assert stem(images).shape == patch(images).shape == (3, 4 * 6, 16)
    assert stem.grid(16, 24) == patch.grid(16, 24) == (4, 6)
    # [channels] of the two 3x3 stride-2 convolutions: width / 2, width
    assert [m.out_channels for m in stem.stem if isinstance(m, torch.nn.Conv2d)] == [8, 16]
    # a pixel at the corner of patch (0, 0): PatchEmbed's token (0, 0) alone sees it; the stem's
    # receptive field (7 pixels for patch 4) reaches into the next patches, but not two patches away
    assert _changed_tokens(patch, images, (3, 3)) == {(0, 0)}
    seen = _changed_tokens(stem, images, (3, 3))
    assert {(0, 0), (1, 1)} <= seen and all(r <= 1 and c <= 1 for r, c in seen)
    assert len(ConvStem(1, 32, 8).stem) == 9  # log2(8) = 3 convolution + BatchNorm + ReLU layers


def test_conv_stem_bad_input():
    for patch in (3, 1, 6, (4, 2)):
        with pytest.raises(InputError, match="power-of-two patch"):
            ConvStem(3, 16, patch)
    with pytest.raises(InputError, match="3 channels"):
        ConvStem(3, 16, 4)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(InputError, match="multiples of the patch size"):
        ConvStem(3, 16, 4)(torch.zeros(1, 3, 8, 10))


@pytest.mark.parametrize("old,new,prefix", [((4, 4), (6, 6), 1), ((4, 4), (3, 5), 1), ((6, 4), (2, 2), 0),
                                            ((5, 5), (8, 7), 2)])
def test_resize_pos_embed_equals_timm(old, new, prefix):
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    pos = torch.randn(1, prefix + old[0] * old[1], 24)
    ours = resize_pos_embed(pos, old, new, num_prefix_tokens=prefix)
    ref = resample_abs_pos_embed(pos, new_size=list(new), old_size=list(old), num_prefix_tokens=prefix)
    assert ours.shape == (1, prefix + new[0] * new[1], 24)
    assert (ours - ref).abs().max() <= 1e-5
    assert torch.equal(ours[:, :prefix], pos[:, :prefix])  # prefix rows unchanged
    flat = resize_pos_embed(pos[0], old, new, num_prefix_tokens=prefix)  # [N, D] in, [N', D] out
    assert torch.equal(flat, ours[0])


def test_resize_pos_embed_keeps_dtype_and_same_grid():
    pos = torch.randn(1 + 16, 8).to(torch.bfloat16)
    assert resize_pos_embed(pos, (4, 4), (4, 4)) is pos
    assert resize_pos_embed(pos, (4, 4), (2, 8)).dtype == torch.bfloat16
    with pytest.raises(InputError, match=r"expected 17 entries \(1 prefix \+ 4x4 grid\), found 16"):
        resize_pos_embed(pos[1:], (4, 4), (2, 2))
