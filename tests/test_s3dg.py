"""Tests of the Inception-v1 3D family (s3d_det.modeling.s3dg): structure per variant, shapes, padding,
gating, space-to-depth, freezing, width, presets. Small, seeded, CPU-only.

Expected values are derived by hand in the comments (or come from torchvision), never from the code
under test.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s3d_det.modeling import (
    LAYERS,
    PRESETS,
    S3DG,
    TEMPORAL_LAYERS,
    VARIANTS,
    FeatureGating,
    InceptionBlock3d,
    build_video_backbone,
    build_video_classifier,
    conv_kinds,
    get_preset,
)
from s3d_det.modeling.s3dg import ConvUnit, MaxPool, SpaceToDepth, _Conv3d

ALL_VARIANTS = ("i2d", "i3d", "bottom_heavy_i3d", "top_heavy_i3d", "s3d", "s3dg")
# Hand-written forward order of the layers whose 3x3 (or 7x7) convolutions may be temporal.
HAND_TEMPORAL_LAYERS = (
    "conv_1a", "conv_2c",
    "mixed_3b", "mixed_3c",
    "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f",
    "mixed_5b", "mixed_5c",
)
BLOCKS = HAND_TEMPORAL_LAYERS[2:]
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _conv_kernels(module: nn.Module):
    return [tuple(m.kernel_size) for m in module.modules() if isinstance(m, nn.Conv3d)]


def _pool_kernels(module: nn.Module):
    return [tuple(m.kernel_size) for m in module.modules() if isinstance(m, nn.MaxPool3d)]


def _t3(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


# ------------------------------------------------------------------------------------------------
# Every variant builds; shapes
# ------------------------------------------------------------------------------------------------
def test_variant_list_is_the_six_of_the_paper():
    assert tuple(VARIANTS) == ALL_VARIANTS
    assert tuple(TEMPORAL_LAYERS) == HAND_TEMPORAL_LAYERS


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_gives_logits(variant):
    model = build_video_classifier(variant, num_classes=5, width=0.25).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 6, 32, 32))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    # The two clips differ, so must their logits (the network is not constant).
    assert not torch.allclose(logits[0], logits[1])


# Width 0.25 (min 16): conv_1a 64/4=16; conv_2c 192/4=48;
# mixed_3c (32, 32, 48, 8->16, 24, 16): 32+48+24+16 = 120;
# mixed_4f (64, 40, 80, 8->16, 32, 32): 64+80+32+32 = 208;
# mixed_5c (96, 48, 96, 12->16, 32, 32): 96+96+32+32 = 256.
# Input 8x64x64. Every variant (i2d too: pools and strides are I3D's): T 8 -> 4 (conv_1a) -> 2 (pool_4a) -> 1 (pool_5a).
# H: 64 -> 32 (conv_1a) -> 16 (pool_2a) -> 8 (pool_3a) -> 4 (pool_4a) -> 2 (pool_5a).
_SMALL_EXPECTED = {
    "conv_1a": (16, 4, 32),
    "conv_2c": (48, 4, 16),
    "mixed_3c": (120, 4, 8),
    "mixed_4f": (208, 2, 4),
    "mixed_5c": (256, 1, 2),
}


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_feature_shapes_small_clip(variant):
    names = tuple(_SMALL_EXPECTED)
    model = S3DG(variant, width=0.25, out_features=names).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 64, 64))
    assert tuple(out) == names
    for name, (c, t, h) in _SMALL_EXPECTED.items():
        assert tuple(out[name].shape) == (1, c, t, h, h), name
        assert model.feature_info[name].channels == c
    assert model.output_size((8, 64, 64)) == (1, 2, 2)
    assert model.feature_info["mixed_4f"].stride == (4, 16, 16)
    assert model.feature_info["mixed_5c"].stride == (8, 32, 32)


def test_s3dg_full_width_mixed_4f_and_5c_at_16x224x224():
    model = S3DG("s3dg", out_features=("mixed_4f", "mixed_5c")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 16, 224, 224))
    # 832 = 256+320+128+128 (Mixed_4f), 1024 = 384+384+128+128 (Mixed_5c).
    # T/4 = 4, H/16 = 14; T/8 = 2, H/32 = 7.
    assert tuple(out["mixed_4f"].shape) == (1, 832, 4, 14, 14)
    assert tuple(out["mixed_5c"].shape) == (1, 1024, 2, 7, 7)
    assert model.feature_info["mixed_4f"].channels == 832
    assert model.feature_info["mixed_5c"].channels == 1024


def test_forward_stops_after_last_out_feature():
    model = S3DG("s3dg", width=0.25, out_features="mixed_3c").eval()
    calls = []
    model.mixed_4b.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 64, 64))
    assert list(out) == ["mixed_3c"] and not calls


# ------------------------------------------------------------------------------------------------
# Per-layer convolution kinds, read from the actual modules
# ------------------------------------------------------------------------------------------------
def _hand_kind(variant, layer, split_at="mixed_4b"):
    below = HAND_TEMPORAL_LAYERS.index(layer) < HAND_TEMPORAL_LAYERS.index(split_at)
    return {
        "i2d": "2d",
        "i3d": "3d",
        "bottom_heavy_i3d": "3d" if below else "2d",
        "top_heavy_i3d": "2d" if below else "3d",
        "s3d": "separable",
        "s3dg": "separable",
    }[variant]


_K3 = {"2d": [(1, 3, 3)], "3d": [(3, 3, 3)], "separable": [(1, 3, 3), (3, 1, 1)]}


def _check_layer_kinds(model, variant, split_at):
    for layer in HAND_TEMPORAL_LAYERS:
        kind = _hand_kind(variant, layer, split_at)
        module = getattr(model, layer)
        if layer == "conv_1a":
            # Default stem_style="full": a temporal stem is one 3x7x7 conv (TF-slim S3D-G).
            assert _conv_kernels(module) == [(1, 7, 7) if kind == "2d" else (3, 7, 7)], (variant, layer)
        elif layer == "conv_2c":
            assert _conv_kernels(module) == _K3[kind], (variant, layer)
        else:
            # reduce (fused 1x1s), branch1, branch2, branch3 (1x1 after the pool)
            assert _conv_kernels(module) == [(1, 1, 1)] + _K3[kind] + _K3[kind] + [(1, 1, 1)], (variant, layer)
            assert _conv_kernels(module.branch1) == _K3[kind]
            assert _pool_kernels(module) == [(3, 3, 3)], (variant, layer)  # TF-slim's branch 3, whatever the kind


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_conv_kinds_in_modules(variant):
    model = S3DG(variant, width=0.25)
    _check_layer_kinds(model, variant, "mixed_4b")
    assert conv_kinds(variant) == {layer: _hand_kind(variant, layer) for layer in HAND_TEMPORAL_LAYERS}


def test_i2d_is_i3d_deflated():
    """Every convolution 1 x k x k; the stem still strides 2 in time, and the pools are I3D's, one for one."""
    i2d, i3d = S3DG("i2d", width=0.25), S3DG("i3d", width=0.25)
    convs = [m for m in i2d.modules() if isinstance(m, nn.Conv3d)]
    assert len(convs) == 3 + 9 * 4  # conv_1a, conv_2b, conv_2c; 4 per block
    assert all(m.kernel_size[0] == 1 for m in convs)
    assert i2d.conv_1a.conv.stride == (2, 2, 2)
    assert [m.stride[0] for m in convs if m is not i2d.conv_1a.conv] == [1] * (len(convs) - 1)

    def pools(model):
        return [(_t3(m.kernel_size), _t3(m.stride)) for m in model.modules() if isinstance(m, nn.MaxPool3d)]

    assert len(pools(i2d)) == 4 + 9
    assert pools(i2d) == pools(i3d)
    assert ((3, 3, 3), (2, 2, 2)) in pools(i2d) and ((2, 2, 2), (2, 2, 2)) in pools(i2d)


@pytest.mark.parametrize("variant, split_at", [("top_heavy_i3d", "end"), ("bottom_heavy_i3d", "conv_1a")])
def test_i2d_is_the_end_point_of_both_heavy_sweeps(variant, split_at):
    """Top-heavy I3D with the split past the last block, and bottom-heavy with the split before the first, are
    I2D: the same modules (so the same state dict) and, with I2D's weights, the same outputs."""
    torch.manual_seed(0)
    i2d = S3DG("i2d", width=0.25, out_features=("mixed_4f", "mixed_5c")).eval()
    heavy = S3DG(variant, width=0.25, split_at=split_at, out_features=("mixed_4f", "mixed_5c")).eval()
    assert {k: v.shape for k, v in heavy.state_dict().items()} == {k: v.shape for k, v in i2d.state_dict().items()}
    heavy.load_state_dict(i2d.state_dict())
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        a, b = i2d(clip), heavy(clip)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    # The other ends of the sweeps are I3D.
    other = "conv_1a" if variant == "top_heavy_i3d" else "end"
    assert conv_kinds(variant, other) == conv_kinds("i3d")


def test_i3d_mixed_4b_branch1_single_3x3x3():
    model = S3DG("i3d", width=0.25)
    assert _conv_kernels(model.mixed_4b.branch1) == [(3, 3, 3)]
    assert model.mixed_4b.branch1.conv_t is None
    # Stem: 3x7x7, stride 2 in time and space.
    assert model.conv_1a.conv.stride == (2, 2, 2)
    assert _pool_kernels(model.pool_4a) == [(3, 3, 3)]
    assert _pool_kernels(model.pool_5a) == [(2, 2, 2)]


@pytest.mark.parametrize("variant", ["s3d", "s3dg"])
def test_s3d_separable_order(variant):
    model = S3DG(variant, width=0.25)
    for layer in ("conv_2c", "mixed_3b", "mixed_4b", "mixed_5c"):
        unit = model.conv_2c if layer == "conv_2c" else getattr(model, layer).branch2
        assert tuple(unit.conv.kernel_size) == (1, 3, 3)
        assert tuple(unit.conv_t.kernel_size) == (3, 1, 1)
        # The spatial conv comes first in forward order (registration order of the submodules).
        names = [n for n, m in unit.named_children() if isinstance(m, nn.Conv3d)]
        assert names == ["conv", "conv_t"]


def test_separable_stem_for_s3d():
    model = S3DG("s3d", width=0.25, stem_style="separable", first_temporal_kernel=7)
    assert _conv_kernels(model.conv_1a) == [(1, 7, 7), (7, 1, 1)]
    assert model.conv_1a.conv.stride == (1, 2, 2)
    assert model.conv_1a.conv_t.stride == (2, 1, 1)


def test_heavy_variants_split_at_mixed_4b():
    top = S3DG("top_heavy_i3d", width=0.25, split_at="mixed_4b")
    assert _conv_kernels(top.mixed_3c.branch1) == [(1, 3, 3)]
    assert _pool_kernels(top.mixed_3c) == [(3, 3, 3)]  # pools stay I3D's in a deflated block
    assert _conv_kernels(top.mixed_4b.branch1) == [(3, 3, 3)]
    assert _pool_kernels(top.mixed_4b) == [(3, 3, 3)]
    bottom = S3DG("bottom_heavy_i3d", width=0.25, split_at="mixed_4b")
    assert _conv_kernels(bottom.mixed_3c.branch1) == [(3, 3, 3)]
    assert _conv_kernels(bottom.mixed_4b.branch1) == [(1, 3, 3)]
    assert _pool_kernels(bottom.mixed_4b) == [(3, 3, 3)]


@pytest.mark.parametrize("split_at", ["conv_1a", "conv_2c", "mixed_3b", "mixed_4d", "mixed_5b", "mixed_5c"])
@pytest.mark.parametrize("variant", ["bottom_heavy_i3d", "top_heavy_i3d"])
def test_heavy_split_sweep(variant, split_at):
    model = S3DG(variant, width=0.25, split_at=split_at)
    _check_layer_kinds(model, variant, split_at)


def test_heavy_variants_still_run():
    for variant, split_at in (("top_heavy_i3d", "mixed_3c"), ("bottom_heavy_i3d", "mixed_4d")):
        model = S3DG(variant, width=0.25, split_at=split_at).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 8, 64, 64))["mixed_5c"].shape == (1, 256, 1, 2, 2)


# ------------------------------------------------------------------------------------------------
# Feature gating
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_feature_gating_only_in_s3dg(variant):
    model = S3DG(variant, width=0.25)
    gates = [m for m in model.modules() if isinstance(m, FeatureGating)]
    if variant != "s3dg":
        assert gates == []
        return
    assert len(gates) == 1 + 4 * 9  # conv_2c + four branches of each of the 9 blocks = 37
    assert isinstance(model.conv_2c.gate, FeatureGating)
    assert model.conv_2c.gate.fc.in_features == 48
    # mixed_3b at width 0.25: branches (16, 32, 16 (8 -> min 16), 16 (8 -> min 16))
    assert [g.fc.in_features for g in model.mixed_3b.gates] == [16, 32, 16, 16]


def test_feature_gating_hand_computed():
    gate = FeatureGating(2)
    with torch.no_grad():
        gate.fc.weight.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.25]]))
        gate.fc.bias.copy_(torch.tensor([-0.5, 1.0]))
    # (B=2, C=2, T=1, H=1, W=2)
    x = torch.tensor([[[[[1.0, 3.0]]], [[[0.0, -4.0]]]],
                      [[[[4.0, 4.0]]], [[[2.0, 0.0]]]]])
    # sample 0: means (2, -2): z0 = 0.5*2 - 1*(-2) - 0.5 = 2.5 ; z1 = 2*2 + 0.25*(-2) + 1 = 4.5
    # sample 1: means (4, 1):  z0 = 0.5*4 - 1*1 - 0.5 = 0.5  ; z1 = 2*4 + 0.25*1 + 1 = 9.25
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731
    g = [[sig(2.5), sig(4.5)], [sig(0.5), sig(9.25)]]
    expected = torch.tensor([[[[[1.0 * g[0][0], 3.0 * g[0][0]]]], [[[0.0, -4.0 * g[0][1]]]]],
                             [[[[4.0 * g[1][0], 4.0 * g[1][0]]]], [[[2.0 * g[1][1], 0.0]]]]])
    torch.testing.assert_close(gate(x), expected)


def test_feature_gating_without_bias():
    gate = FeatureGating(3, bias=False)
    assert gate.fc.bias is None
    with torch.no_grad():
        gate.fc.weight.zero_()
    x = torch.randn(1, 3, 2, 2, 2)
    torch.testing.assert_close(gate(x), 0.5 * x)  # sigmoid(0) = 1/2


def test_gates_are_applied_in_forward():
    model = S3DG("s3dg", width=0.25).eval()
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        before = model(x)["mixed_5c"]
        assert before.abs().sum() > 0
        for gate in model.mixed_5c.gates:
            gate.fc.weight.zero_()
            gate.fc.bias.fill_(-200.0)  # sigmoid(-200) ~ 1e-87 -> 0 in float32
        after = model(x)["mixed_5c"]
    assert torch.count_nonzero(after) == 0


# ------------------------------------------------------------------------------------------------
# The fused reduce conv of InceptionBlock3d
# ------------------------------------------------------------------------------------------------
def _randomize_bn(module):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm3d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


def _f_unit(x, unit, padding):
    """conv (+ conv_t) + BN + ReLU of a ConvUnit, with torch.nn.functional only."""
    bn = unit.bn
    x = F.conv3d(x, unit.conv.weight, padding=padding[0])
    x = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
    if unit.conv_t is not None:
        bn = unit.bn_t
        x = F.conv3d(x, unit.conv_t.weight, padding=padding[1])
        x = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
    return x


def _f_gate(x, gate):
    w = torch.sigmoid(x.mean(dim=(2, 3, 4)) @ gate.fc.weight.T + gate.fc.bias)
    return x * w[:, :, None, None, None]


@pytest.mark.parametrize("gating", [False, True])
def test_fused_reduce_equals_three_separate_convs(gating):
    # channels (b0, b1_reduce, b1, b2_reduce, b2, b3) = (2, 3, 4, 2, 3, 2); reduce has 2+3+2 = 7 outputs.
    block = InceptionBlock3d(6, (2, 3, 4, 2, 3, 2), kind="separable", gating=gating)
    _randomize_bn(block)
    block.eval()
    assert block.reduce.conv.weight.shape == (7, 6, 1, 1, 1)
    x = torch.randn(2, 6, 3, 5, 5)
    W, bn = block.reduce.conv.weight, block.reduce.bn
    parts = []
    for lo, hi in ((0, 2), (2, 5), (5, 7)):  # branch 0, branch 1 reduce, branch 2 reduce
        y = F.conv3d(x, W[lo:hi])
        y = F.batch_norm(y, bn.running_mean[lo:hi], bn.running_var[lo:hi], bn.weight[lo:hi], bn.bias[lo:hi],
                         False, 0.0, bn.eps)
        parts.append(F.relu(y))
    # A 1x1x1 conv is a channel matrix product.
    torch.testing.assert_close(
        F.conv3d(x, W[0:2]), torch.einsum("oc,bcthw->bothw", W[0:2, :, 0, 0, 0], x), rtol=1e-5, atol=1e-5
    )
    sep = ((0, 1, 1), (1, 0, 0))  # 1x3x3 then 3x1x1, symmetric padding
    outs = [
        parts[0],
        _f_unit(parts[1], block.branch1, sep),
        _f_unit(parts[2], block.branch2, sep),
        _f_unit(F.max_pool3d(x, 3, stride=1, padding=1), block.branch3, (0, 0)),
    ]
    if gating:
        outs = [_f_gate(o, g) for o, g in zip(outs, block.gates)]
    expected = torch.cat(outs, dim=1)
    assert expected.shape == (2, 2 + 4 + 3 + 2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Padding: TensorFlow "SAME" and PyTorch symmetric
# ------------------------------------------------------------------------------------------------
def test_same_padding_sizes_are_ceil_on_odd_input():
    model = S3DG("s3dg", width=0.25, same_padding=True, out_features=LAYERS).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 15, 97, 113))
    # ceil(n / stride), layer by layer: T 15 -> 8 (conv_1a) -> 4 (pool_4a) -> 2 (pool_5a);
    # H 97 -> 49 -> 25 (pool_2a) -> 13 (pool_3a) -> 7 (pool_4a) -> 4 (pool_5a);
    # W 113 -> 57 -> 29 -> 15 -> 8 -> 4.
    expected = {
        "conv_1a": (8, 49, 57), "pool_2a": (8, 25, 29), "conv_2b": (8, 25, 29), "conv_2c": (8, 25, 29),
        "pool_3a": (8, 13, 15), "mixed_3b": (8, 13, 15), "mixed_3c": (8, 13, 15),
        "pool_4a": (4, 7, 8), "mixed_4b": (4, 7, 8), "mixed_4f": (4, 7, 8),
        "pool_5a": (2, 4, 4), "mixed_5b": (2, 4, 4), "mixed_5c": (2, 4, 4),
    }
    for name, size in expected.items():
        assert tuple(out[name].shape[2:]) == size, name
    assert model.output_size((15, 97, 113)) == (2, 4, 4)


def test_symmetric_padding_sizes_on_odd_input():
    model = S3DG("s3dg", width=0.25).eval()
    # floor((n-1)/2)+1 for the odd kernels, floor(n/2) for the 2x2x2 pool:
    # T 15 -> 8 -> 4 -> 2; H 97 -> 49 -> 25 -> 13 -> 7 -> 3; W 113 -> 57 -> 29 -> 15 -> 8 -> 4.
    assert model.output_size((15, 97, 113)) == (2, 3, 4)
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 15, 97, 113))["mixed_5c"].shape[2:]) == (2, 3, 4)


def test_same_max_pool_padding_never_wins():
    # kernel 3, stride 2 on n = 6: ceil(6/2) = 3 outputs, total pad (3-1)*2+3-6 = 1, all of it after.
    pool = MaxPool((1, 1, 3), (1, 1, 2), padding="same")
    x = torch.tensor([-6.0, -2.0, -7.0, -9.0, -5.0, -8.0]).view(1, 1, 1, 1, 6)
    # windows [-6,-2,-7], [-7,-9,-5], [-5,-8,pad]
    assert pool(x).flatten().tolist() == [-2.0, -5.0, -5.0]
    # The same along H.
    pool_h = MaxPool((1, 3, 1), (1, 2, 1), padding="same")
    assert pool_h(x.view(1, 1, 1, 6, 1)).flatten().tolist() == [-2.0, -5.0, -5.0]
    # 2x2x2 stride 2 (pool_5a) on n = 5: 3 outputs, one padded position after.
    pool5 = MaxPool(2, 2, padding="same")
    y = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0]).view(1, 1, 1, 1, 5)
    assert pool5(y).flatten().tolist() == [-1.0, -3.0, -5.0]
    # kernel 3, stride 2 on n = 5: total pad (3-1)*2+3-5 = 2, one before and one after.
    z = torch.tensor([-5.0, -3.0, -8.0, -1.0, -7.0]).view(1, 1, 1, 1, 5)
    # windows [pad,-5,-3], [-3,-8,-1], [-1,-7,pad]
    assert pool(z).flatten().tolist() == [-3.0, -1.0, -1.0]


def test_fixed_same_max_pool_hand_values():
    # MIL-NCE's pools: a fixed pad of k - s = 1 after (whatever n), then ceil mode.
    pool = MaxPool((1, 1, 3), (1, 1, 2), padding="fixed_same")
    z = torch.tensor([-5.0, -3.0, -8.0, -1.0, -7.0]).view(1, 1, 1, 1, 5)
    # padded length 6 -> ceil((6-3)/2)+1 = 3 windows: [-5,-3,-8], [-8,-1,-7], [-7,pad] (ceil-mode tail)
    assert pool(z).flatten().tolist() == [-3.0, -1.0, -7.0]
    assert pool.output_size((1, 1, 5)) == (1, 1, 3)
    # n = 6 (divisible by the stride): the same as "SAME".
    x = torch.tensor([-6.0, -2.0, -7.0, -9.0, -5.0, -8.0]).view(1, 1, 1, 1, 6)
    assert pool(x).flatten().tolist() == [-2.0, -5.0, -5.0]
    with pytest.raises(ValueError, match="symmetric"):
        MaxPool(3, 2, padding="valid")


def test_same_conv_padding_puts_larger_half_after():
    unit = ConvUnit(1, 1, 3, kind="2d", stride=2, same_padding=True)
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 1, 4)
    # n = 4, k = 3, s = 2: 2 outputs, total pad 1, after: windows [1,2,3] and [3,4,0].
    # (Symmetric padding 1 would give [0,1,2] and [2,3,4]: 3 and 9.)
    assert unit.conv(x).flatten().tolist() == [6.0, 7.0]
    sym = ConvUnit(1, 1, 3, kind="2d", stride=2)
    with torch.no_grad():
        sym.conv.weight.fill_(1.0)
    assert sym.conv(x).flatten().tolist() == [3.0, 9.0]


def test_symmetric_padding_matches_torchvision_s3d():
    tv = pytest.importorskip("torchvision.models.video").s3d()
    ours = build_video_backbone("s3d", preset="torchvision")

    def geometry(model, cls):
        rows = []
        for m in model.modules():
            if isinstance(m, cls) and _t3(m.kernel_size) != (1, 1, 1):
                rows.append((_t3(m.kernel_size), _t3(m.stride), _t3(m.padding)))
        return sorted(rows)

    assert geometry(ours, nn.Conv3d) == geometry(tv, nn.Conv3d)
    assert geometry(ours, nn.MaxPool3d) == geometry(tv, nn.MaxPool3d)
    for m in ours.modules():  # padding (k-1)//2 per axis everywhere
        if isinstance(m, (nn.Conv3d, nn.MaxPool3d)):
            assert _t3(m.padding) == tuple((k - 1) // 2 for k in _t3(m.kernel_size)), m


# ------------------------------------------------------------------------------------------------
# Space-to-depth stem
# ------------------------------------------------------------------------------------------------
def _stem_parts(model):
    """The SpaceToDepth modules and the Conv3d modules inside conv_1a."""
    mods = list(model.conv_1a.modules())
    return [m for m in mods if isinstance(m, SpaceToDepth)], [m for m in mods if isinstance(m, nn.Conv3d)]


def test_space_to_depth_channel_order():
    C, T, H, W = 2, 4, 4, 6
    x = torch.arange(C * T * H * W, dtype=torch.float32).view(1, C, T, H, W)
    y = SpaceToDepth()(x)
    assert y.shape == (1, 8 * C, T // 2, H // 2, W // 2)
    for dt in range(2):
        for dh in range(2):
            for dw in range(2):
                for c in range(C):
                    oc = ((dt * 2 + dh) * 2 + dw) * C + c
                    torch.testing.assert_close(y[0, oc], x[0, c, dt::2, dh::2, dw::2])
    # Spot values: x[c, t, h, w] = c*96 + t*24 + h*6 + w.
    assert y[0, 1, 0, 0, 0].item() == 96.0   # c=1, offsets 0
    assert y[0, 2, 0, 0, 0].item() == 1.0    # dw=1, c=0
    assert y[0, 15, 1, 1, 2].item() == 191.0  # dt=dh=dw=1, c=1 -> x[1, 3, 3, 5]


@pytest.mark.parametrize("size", [(7, 64, 64), (8, 63, 64), (8, 64, 65)])
def test_space_to_depth_needs_even_sizes(size):
    model = S3DG("s3dg", width=0.25, stem_style="space_to_depth", same_padding=True)
    with pytest.raises(ValueError, match="even"):
        model(torch.randn(1, 3, *size))


def test_space_to_depth_stem_runs():
    model = S3DG("s3dg", width=0.25, stem_style="space_to_depth", same_padding=True).eval()
    s2d, convs = _stem_parts(model)
    assert len(s2d) == 1 and len(convs) == 1
    assert convs[0].in_channels == 24 and tuple(convs[0].kernel_size) == (2, 4, 4)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 64, 64))["mixed_5c"]
    # T 8 -> 4 (s2d) -> 2 (pool_4a) -> 1; H 64 -> 32 (s2d) -> 16 -> 8 -> 4 -> 2.
    assert out.shape == (1, 256, 1, 2, 2)
    assert model.feature_info["conv_1a"].stride == (2, 2, 2)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def test_unknown_variant_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        S3DG("s4d")
    for name in ALL_VARIANTS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="s3dg"):
        build_video_classifier("r3d", 10)


def test_wrong_input_rank_and_channels():
    model = S3DG("s3dg", width=0.25)
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        model(torch.randn(3, 8, 64, 64))
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 4, 8, 64, 64))
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 8, 64, 64))


# Default s3dg (symmetric padding, 3x7x7 stem stride 2) up to mixed_5c.
# T: conv_1a (k3,s2,p1) gives floor((n-1)/2)+1; pool_4a (k3,s2,p1) the same; pool_5a (k2,s2) floor(n/2),
#    which needs >= 2: before pool_4a >= 3, before conv_1a >= 5.           -> T_min = 5
# H: four halvings floor((n-1)/2)+1 (conv_1a, pool_2a, pool_3a, pool_4a), then floor(n/2) >= 1 needs 2:
#    2 <- 3 <- 5 <- 9 <- 17.                                             -> H_min = W_min = 17
@pytest.mark.parametrize("variant", ["s3dg", "i3d"])
def test_too_small_clip_names_the_minimum(variant):
    model = S3DG(variant, width=0.25).eval()
    assert model.min_input_size() == (5, 17, 17)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 5, 17, 17))["mixed_5c"]
    assert out.shape[2:] == (1, 1, 1)
    for size in [(4, 17, 17), (5, 16, 17), (5, 17, 16), (1, 1, 1)]:
        with pytest.raises(ValueError, match=r"\(T, H, W\) = \(5, 17, 17\)"):
            model(torch.randn(1, 3, *size))


def test_i2d_minimum_is_i3ds():
    # T: 5 -> 3 (conv_1a, 1x7x7 stride 2, pad 0 in time) -> 2 (pool_4a, 3x3x3 stride 2, pad 1) -> 1 (pool_5a).
    model = S3DG("i2d", width=0.25).eval()
    assert model.min_input_size() == (5, 17, 17)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 5, 17, 17))["mixed_5c"].shape[2:] == (1, 1, 1)
    with pytest.raises(ValueError, match=r"\(5, 17, 17\)"):
        model(torch.randn(1, 3, 4, 17, 17))


def test_same_padding_minimum_is_one():
    model = S3DG("s3dg", width=0.25, same_padding=True).eval()
    assert model.min_input_size() == (1, 1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1, 1))["mixed_5c"].shape == (1, 256, 1, 1, 1)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="space_to_depth"):
        S3DG("s3dg", stem_style="depthwise")
    with pytest.raises(ValueError, match="mixed_5c"):
        S3DG("top_heavy_i3d", split_at="mixed_4a")
    with pytest.raises(ValueError, match="split_at"):
        S3DG("bottom_heavy_i3d", split_at="pool_4a")  # a layer, but without temporal convs
    with pytest.raises(ValueError, match="out_features"):
        S3DG("s3dg", out_features=("mixed_6a",))
    with pytest.raises(ValueError, match="out_features"):
        S3DG("s3dg", out_features=())
    with pytest.raises(ValueError, match="out_features"):
        S3DG("s3dg", out_features=("mixed_4f", "Mixed_5c"))
    for bad in (-1, 6):
        with pytest.raises(ValueError, match="frozen_stages"):
            S3DG("s3dg", width=0.25, frozen_stages=bad)
    S3DG("s3dg", width=0.25, frozen_stages=5)  # all five stages: allowed
    with pytest.raises(ValueError, match="width"):
        S3DG("s3dg", width=0.0)
    with pytest.raises(ValueError, match="space_to_depth"):
        S3DG("i2d", stem_style="space_to_depth")
    with pytest.raises(ValueError):
        build_video_classifier("s3dg", 10, out_features=("mixed_4f",))


def test_single_string_out_features():
    model = S3DG("s3dg", width=0.25, out_features="conv_1a")
    assert model.out_features == ("conv_1a",)


def test_even_temporal_kernel_symmetric_padding_is_refused():
    # pad (k-1)//2 = 0 would shorten T in the 3x3 branches but not in the 1x1 ones.
    with pytest.raises(ValueError, match="temporal_kernel=2 is even"):
        S3DG("s3d", width=0.25, temporal_kernel=2)


def test_even_temporal_kernel_with_same_padding_keeps_t():
    model = S3DG("s3d", width=0.25, temporal_kernel=2, same_padding=True).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 64, 64))["mixed_5c"]
    assert out.shape[2] == 1  # 8 -> 4 (stem) -> 2 (pool_4a) -> 1 (pool_5a), ceil each time
    assert out.shape[2] == model.output_size((8, 64, 64))[0]


# ------------------------------------------------------------------------------------------------
# Freezing
# ------------------------------------------------------------------------------------------------
def test_frozen_stages_2():
    model = S3DG("s3dg", width=0.25, frozen_stages=2, bn_momentum=0.5)
    frozen = ("conv_1a", "conv_2b", "conv_2c")
    for name, p in model.named_parameters():
        assert p.requires_grad == (name.split(".")[0] not in frozen), name
    assert not model.conv_2c.gate.fc.weight.requires_grad
    assert model.mixed_3b.reduce.conv.weight.requires_grad

    model.train()
    frozen_bns = [m for n in frozen for m in getattr(model, n).modules() if isinstance(m, nn.BatchNorm3d)]
    live_bns = [m for n in ("mixed_3b", "mixed_5c") for m in getattr(model, n).modules()
                if isinstance(m, nn.BatchNorm3d)]
    assert len(frozen_bns) == 1 + 1 + 2  # conv_1a (full stem), conv_2b, conv_2c (separable)
    assert all(not m.training for m in frozen_bns)
    assert all(m.training for m in live_bns)
    before = [m.running_mean.clone() for m in frozen_bns + live_bns]
    model(torch.randn(2, 3, 8, 64, 64))
    after = [m.running_mean for m in frozen_bns + live_bns]
    for i, (b, a) in enumerate(zip(before, after)):
        if i < len(frozen_bns):
            assert torch.equal(a, b), "a frozen BN updated its running stats"
        else:
            assert not torch.equal(a, b), "an unfrozen BN kept its running stats"
    # eval() then train() again: still frozen.
    model.eval().train()
    assert all(not m.training for m in frozen_bns) and all(m.training for m in live_bns)


# ------------------------------------------------------------------------------------------------
# Width multiplier
# ------------------------------------------------------------------------------------------------
def test_width_half():
    model = S3DG("s3dg", width=0.5)
    assert model.conv_1a.conv.out_channels == 32
    assert model.conv_2b.conv.out_channels == 32
    assert model.conv_2c.conv.out_channels == 96
    # mixed_3b (64, 96, 128, 16, 32, 32) * 0.5 = (32, 48, 64, 8 -> 16, 16, 16)
    assert model.mixed_3b.reduce.conv.out_channels == 32 + 48 + 16
    assert model.mixed_3b.branch1.conv.out_channels == 64
    assert model.mixed_3b.branch2.conv.in_channels == 16
    assert model.mixed_3b.branch2.conv.out_channels == 16
    assert model.mixed_3b.branch3.conv.out_channels == 16
    assert model.mixed_3b.out_channels == 32 + 64 + 16 + 16
    # mixed_4b (192, 96, 208, 16, 48, 64) * 0.5 = (96, 48, 104, 8 -> 16, 24, 32)
    assert model.mixed_4b.reduce.conv.in_channels == 240  # mixed_3c: (64 + 96 + 48 + 32)
    assert model.mixed_4b.out_channels == 96 + 104 + 24 + 32
    assert model.feature_info["mixed_5c"].channels == 512
    # int() floors: at width 0.3, 64 -> 19 (19.2), 96 -> 28 (28.8), 16 -> 4 (4.8) -> min 16.
    odd = S3DG("s3dg", width=0.3)
    assert odd.conv_1a.conv.out_channels == 19
    assert odd.mixed_3b.reduce.conv.out_channels == 19 + 28 + 16
    # A lower floor: 16 * 0.25 = 4 survives with min_channels=4.
    small = S3DG("s3dg", width=0.25, min_channels=4)
    assert small.mixed_3b.reduce.conv.out_channels == 16 + 24 + 4


# ------------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------------
def _split_fused_shapes(model):
    """Parameter shapes with each fused reduce split back into its three 1x1 convolutions."""
    shapes = []
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, InceptionBlock3d)}
    for name, p in model.named_parameters():
        owner = name.rsplit(".reduce.", 1)[0] if ".reduce." in name else None
        if owner in blocks:
            for c in blocks[owner].splits:
                shapes.append((c,) + tuple(p.shape[1:]))
        else:
            shapes.append(tuple(p.shape))
    return sorted(shapes)


def test_torchvision_preset_parameters():
    video = pytest.importorskip("torchvision.models.video")
    ours = build_video_classifier("s3d", 400, preset="torchvision")
    tv = video.s3d()
    n = sum(p.numel() for p in ours.parameters())
    assert n == 8_320_048  # torchvision's documented num_params of S3D_Weights.KINETICS400_V1
    assert n == sum(p.numel() for p in tv.parameters())
    assert _split_fused_shapes(ours) == sorted(tuple(p.shape) for p in tv.parameters())
    assert ours.head.pool_size == (2, 7, 7) and ours.head.dropout.p == 0.2
    bn = ours.backbone.mixed_3b.reduce.bn
    assert (bn.eps, bn.momentum) == (1e-3, 1e-3)


def _tv_to_ours(tv_sd):
    """torchvision S3D state dict -> our backbone/head keys (written from the two module trees)."""
    out = {}

    def unit(dst, src, separable):
        if separable:
            out[f"{dst}.conv.weight"] = tv_sd[f"{src}.0.0.weight"]
            out[f"{dst}.conv_t.weight"] = tv_sd[f"{src}.1.0.weight"]
            for k in BN_KEYS:
                out[f"{dst}.bn.{k}"] = tv_sd[f"{src}.0.1.{k}"]
                out[f"{dst}.bn_t.{k}"] = tv_sd[f"{src}.1.1.{k}"]
        else:
            out[f"{dst}.conv.weight"] = tv_sd[f"{src}.0.weight"]
            for k in BN_KEYS:
                out[f"{dst}.bn.{k}"] = tv_sd[f"{src}.1.{k}"]

    unit("backbone.conv_1a", "features.0", True)
    unit("backbone.conv_2b", "features.2", False)
    unit("backbone.conv_2c", "features.3", True)
    indices = (5, 6, 8, 9, 10, 11, 12, 14, 15)  # features.{4,7,13} are pools
    for name, i in zip(BLOCKS, indices):
        src, dst = f"features.{i}", f"backbone.{name}"
        parts = (f"{src}.branch0", f"{src}.branch1.0", f"{src}.branch2.0")
        out[f"{dst}.reduce.conv.weight"] = torch.cat([tv_sd[f"{p}.0.weight"] for p in parts])
        for k in BN_KEYS:
            out[f"{dst}.reduce.bn.{k}"] = torch.cat([tv_sd[f"{p}.1.{k}"] for p in parts])
        unit(f"{dst}.branch1", f"{src}.branch1.1", True)
        unit(f"{dst}.branch2", f"{src}.branch2.1", True)
        unit(f"{dst}.branch3", f"{src}.branch3.1", False)
    out["head.proj.weight"] = tv_sd["classifier.1.weight"]
    out["head.proj.bias"] = tv_sd["classifier.1.bias"]
    return out


def test_torchvision_preset_computes_torchvision_s3d():
    video = pytest.importorskip("torchvision.models.video")
    tv = video.s3d()
    _randomize_bn(tv)
    with torch.no_grad():
        tv.classifier[1].bias.normal_()
    tv.eval()
    ours = build_video_classifier("s3d", 400, preset="torchvision").eval()
    mapped = _tv_to_ours(tv.state_dict())
    sd = ours.state_dict()
    assert set(mapped) == {k for k in sd if not k.endswith("num_batches_tracked") and ".input_norm." not in k}
    sd.update(mapped)
    ours.load_state_dict(sd)

    # Odd sizes, so that every padding counts. T 13 -> 7 -> 4 -> 2; H 33 -> 17 -> 9 -> 5 -> 3 -> 1;
    # W 49 -> 25 -> 13 -> 7 -> 4 -> 2.
    x = torch.randn(1, 3, 13, 33, 49)
    # ours takes raw frames: torchvision's transform divides by 255, then normalises with its documented mean/std
    mean = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        expected = tv.features(x)
        got = ours.backbone((x * std + mean) * 255)["mixed_5c"]
        assert got.shape == expected.shape == (1, 1024, 2, 1, 2)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
        feats = torch.randn(2, 1024, 3, 7, 7)
        tv_logits = tv.classifier(tv.avgpool(feats)).mean(dim=(2, 3, 4))
        torch.testing.assert_close(ours.head(feats), tv_logits, rtol=1e-4, atol=1e-5)


def test_unknown_preset():
    with pytest.raises(ValueError) as info:
        build_video_classifier("s3d", 400, preset="kinetics")
    for name in ("torchvision", "milnce", "tfslim"):
        assert name in str(info.value)
    with pytest.raises(ValueError):
        get_preset("tf-slim")
    assert set(PRESETS) == {"torchvision", "milnce", "tfslim"}


def test_tfslim_preset_layout():
    model = build_video_backbone("s3dg", preset="tfslim", width=0.25)
    units = [m for m in model.modules() if isinstance(m, ConvUnit) and m.conv_t is not None]
    assert len(units) == 1 + 2 * 9  # conv_2c + two 3x3 branches per block (stem is full 3D)
    for unit in units:
        assert unit.conv_t.bias is not None, "TF-slim temporal convs have a bias"
        assert unit.bn_t is None, "TF-slim temporal convs have no BN"
        assert unit.conv.bias is None  # the spatial conv is followed by BN
    gates = [m for m in model.modules() if isinstance(m, FeatureGating)]
    assert len(gates) == 37 and all(g.fc.bias is None for g in gates)
    assert _conv_kernels(model.conv_1a) == [(3, 7, 7)]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 15, 97, 113))["mixed_5c"].shape[2:] == (2, 4, 4)  # SAME


def test_milnce_preset_layout():
    model = build_video_classifier("s3dg", 512, preset="milnce", width=0.25)
    s2d, convs = _stem_parts(model.backbone)
    assert len(s2d) == 1 and len(convs) == 1
    assert convs[0].in_channels == 24  # 8 * 3 after space-to-depth
    assert tuple(convs[0].weight.shape) == (16, 24, 2, 4, 4)
    gates = [m for m in model.modules() if isinstance(m, FeatureGating)]
    assert len(gates) == 37 and all(g.fc.bias is not None for g in gates)
    assert model.head.pool_size is None
    full = build_video_backbone("s3dg", preset="milnce")
    assert tuple(_stem_parts(full)[1][0].weight.shape) == (64, 24, 2, 4, 4)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------
def test_gradients_reach_every_trainable_parameter():
    model = build_video_classifier("s3dg", 3, width=0.25, frozen_stages=1, dropout=0.0).train()
    # T 6 -> 3 -> 2 -> 1; H 32 -> 16 -> 8 -> 4 -> 2 -> 1. Two clips, so BN sees 2 values per channel.
    logits = model(torch.randn(2, 3, 6, 32, 32))
    (logits * torch.randn_like(logits)).sum().backward()
    n_frozen = 0
    for name, p in model.named_parameters():
        if name.startswith("backbone.conv_1a."):
            assert not p.requires_grad and p.grad is None, name
            n_frozen += 1
            continue
        assert p.requires_grad, name
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert n_frozen == 3  # conv weight, BN weight and bias


# ------------------------------------------------------------------------------------------------
# Memory format and stem style
# ------------------------------------------------------------------------------------------------
def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    fast = S3DG("s3dg", width=0.25, out_features=("mixed_4f", "mixed_5c")).eval()
    plain = S3DG("s3dg", width=0.25, out_features=("mixed_4f", "mixed_5c"), channels_last=False).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        a, b = fast(x), plain(x)
    # every layer stays in the memory format (mixed_4f is 2x4x4 here, so the two formats differ)
    assert a["mixed_4f"].is_contiguous(memory_format=torch.channels_last_3d) and not a["mixed_4f"].is_contiguous()
    assert b["mixed_4f"].is_contiguous()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kernel, stride, padding, bias", [
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), False),  # the separable temporal convolution
    ((3, 1, 1), (2, 1, 1), (1, 0, 0), True),  # a strided temporal stem
    ((1, 1, 1), (1, 1, 1), (0, 0, 0), True),  # the Inception branches' reductions
    ((1, 3, 3), (1, 1, 1), (0, 1, 1), False),  # not 1x1 in space: nn.Conv3d itself
])
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv3d_on_one_thread_matches_torch_and_keeps_the_layout(one_thread, kernel, stride, padding, bias,
                                                                   channels_last):
    torch.manual_seed(0)
    conv = _Conv3d(6, 5, kernel, stride, padding=padding, bias=bias)
    x = torch.randn(2, 6, 5, 4, 3)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(True)
    out = conv(x)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.conv3d(ref_x, conv.weight, conv.bias, stride, padding)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
    grad = torch.randn_like(ref)
    (weight_grad, *bias_grad, x_grad) = torch.autograd.grad(out, [conv.weight, *([conv.bias] if bias else []), x],
                                                            grad)
    ref_grads = torch.autograd.grad(ref, [conv.weight, *([conv.bias] if bias else []), ref_x], grad)
    for a, b in zip((weight_grad, *bias_grad, x_grad), ref_grads):
        assert torch.allclose(a, b, atol=1e-4)


def test_one_thread_keeps_every_layer_in_channels_last(one_thread, monkeypatch):
    torch.manual_seed(0)
    net = S3DG("s3dg", width=0.25, out_features=("mixed_3c", "mixed_4f", "mixed_5c")).eval()
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        fast = net(x)
        monkeypatch.setattr(_Conv3d, "forward", nn.Conv3d.forward)  # PyTorch's own one-thread route
        ref = net(x)
    for name in fast:
        assert fast[name].is_contiguous(memory_format=torch.channels_last_3d), name
        assert torch.allclose(fast[name], ref[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("channels_last", [True, False])
def test_one_thread_route_leaves_flop_counts_alone(one_thread, monkeypatch, channels_last):
    from s3d_det.utils.flops import count_flops

    net = S3DG("s3dg", width=0.25, out_features=("mixed_3c",), channels_last=channels_last).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    ours = count_flops(net, x).total
    monkeypatch.setattr(_Conv3d, "forward", nn.Conv3d.forward)
    assert ours == count_flops(net, x).total


def test_stem_style_applies_to_every_temporal_stem():
    i3d = S3DG("i3d", width=0.25, stem_style="separable", first_temporal_kernel=5)
    assert i3d.conv_1a.conv.kernel_size == (1, 7, 7)
    assert i3d.conv_1a.conv_t.kernel_size == (5, 1, 1)
    s3d = S3DG("s3d", width=0.25, stem_style="full", first_temporal_kernel=5)
    assert s3d.conv_1a.conv.kernel_size == (5, 7, 7) and s3d.conv_1a.conv_t is None
    top = S3DG("top_heavy_i3d", width=0.25, stem_style="separable")  # 2D stem: the style has nothing to split
    assert top.conv_1a.conv.kernel_size == (1, 7, 7) and top.conv_1a.conv_t is None
