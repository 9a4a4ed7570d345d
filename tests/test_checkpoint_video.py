"""Tests of ``s3d_det.checkpoint``: every tensor of each public checkpoint family lands where it should.

For each family a state dict with the family's exact key layout (random, seeded values) is converted,
loaded strictly into our preset model, and our output is compared with a reference forward pass written
here with ``torch.nn.functional`` only, reading the SOURCE-keyed dict directly (so these tests never reuse
the converter's mapping). BatchNorm statistics and affine parameters are random, so a tensor that lands in
the wrong place changes the output.
"""
from __future__ import annotations

import math
import os
import pickle
import shlex
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3d_det.checkpoint.video import (
    SOURCES,
    ConvertedCheckpoint,
    convert_checkpoint,
    load_converted,
    load_pretrained_3d,
    load_state_dict_file,
    save_converted,
)
from s3d_det.modeling import build_video_backbone, build_video_classifier

# Inception-v1 blocks, in forward order: (name, (b0, b1 reduce, b1, b2 reduce, b2, b3)). Written out
# here rather than imported, so that the tests check the network's own table too.
BLOCKS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("3b", (64, 96, 128, 16, 32, 32)),
    ("3c", (128, 128, 192, 32, 96, 64)),
    ("4b", (192, 96, 208, 16, 48, 64)),
    ("4c", (160, 112, 224, 24, 64, 64)),
    ("4d", (128, 128, 256, 24, 64, 64)),
    ("4e", (112, 144, 288, 32, 64, 64)),
    ("4f", (256, 160, 320, 32, 128, 128)),
    ("5b", (256, 160, 320, 32, 128, 128)),
    ("5c", (384, 192, 384, 48, 128, 128)),
)


def _block_inputs() -> List[Tuple[str, int, Tuple[int, ...]]]:
    """(name, input channels, channel row) of each block."""
    out, cin = [], 192
    for name, ch in BLOCKS:
        out.append((name, cin, ch))
        cin = ch[0] + ch[2] + ch[4] + ch[5]
    assert cin == 1024
    return out


# float64 comparisons: rounding noise is ~1e-15 of the output scale, so a tight bound keeps even a
# slightly misplaced tensor (one whose effect is small) from passing. float32 ones use 1e-4.
DOUBLE_TOL = 1e-8


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


class _Rand:
    """Seeded random tensors (float32, as the real files are)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, shape, std=1.0, mean=0.0) -> torch.Tensor:
        return torch.randn(shape, generator=self.g) * std + mean

    def uniform(self, shape, lo, hi) -> torch.Tensor:
        return torch.rand(shape, generator=self.g) * (hi - lo) + lo

    def kaiming(self, shape) -> torch.Tensor:
        """A conv kernel (O, I, *k) whose ReLU outputs keep their scale."""
        fan_in = int(np.prod(shape[1:]))
        return self.normal(shape, math.sqrt(2.0 / fan_in))


# ==============================================================================================
# A. torchvision S3D
# ==============================================================================================
@pytest.fixture(scope="module")
def torchvision_pair():
    """torchvision's S3D with random weights and BN, and ours loaded from its converted state dict."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.video.s3d(weights=None)
    rand = _Rand(1)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.Conv3d):
                m.weight.copy_(rand.kaiming(tuple(m.weight.shape)))
                if m.bias is not None:
                    m.bias.copy_(rand.normal(m.bias.shape, 0.1))
            elif isinstance(m, torch.nn.BatchNorm3d):
                c = m.num_features
                m.weight.copy_(rand.uniform(c, 0.5, 1.5))
                m.bias.copy_(rand.normal(c, 0.2))
                m.running_mean.copy_(rand.normal(c, 0.2))
                m.running_var.copy_(rand.uniform(c, 0.5, 2.0))
                m.num_batches_tracked.fill_(17)
    tv.eval()
    converted = convert_checkpoint(tv.state_dict(), "torchvision_s3d")
    ours = build_video_classifier("s3d", 400, preset="torchvision").eval()
    ours.load_state_dict(converted.state_dict, strict=True)
    return tv, ours, converted


def test_torchvision_conversion_is_complete(torchvision_pair):
    tv, ours, converted = torchvision_pair
    assert converted.source == "torchvision_s3d"
    assert converted.missing_keys == []
    assert converted.unused_keys == []
    assert converted.dropped_keys == []
    assert converted.has_head
    assert set(converted.state_dict) == set(ours.state_dict())
    assert "0 missing, 0 unused" in converted.report()
    # A given model gives the same conversion.
    again = convert_checkpoint(tv.state_dict(), "torchvision_s3d", model=ours)
    assert again.missing_keys == [] and again.unused_keys == []
    for key, value in converted.state_dict.items():
        assert torch.equal(again.state_dict[key], value), key


# Each family's published input convention, written here from its documentation (not from the presets): the
# references get normalised clips x, our networks the raw frames (RGB, [0, 255]) that normalise to x.
def raw_torchvision(x):  # torchvision S3D_Weights.KINETICS400_V1 transforms: [0, 1], then these mean / std
    mean = torch.tensor([0.43216, 0.394666, 0.37645], dtype=x.dtype).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.22803, 0.22145, 0.216989], dtype=x.dtype).view(1, 3, 1, 1, 1)
    return (x * std + mean) * 255


def raw_milnce(x):  # MIL-NCE: RGB in [0, 1]
    return x * 255


def raw_tfslim(x):  # TF-slim S3D-G: [-1, 1]
    return (x + 1) * 127.5


@pytest.mark.parametrize("shape", [(2, 3, 16, 224, 224), (1, 3, 32, 224, 224)])
def test_torchvision_logits_match(torchvision_pair, shape):
    tv, ours, _ = torchvision_pair
    x = _Rand(2).normal(shape)
    with torch.no_grad():
        expected = tv(x)
        got = ours(raw_torchvision(x))
    assert got.shape == expected.shape == (shape[0], 400)
    assert expected.abs().max() > 0.1  # a meaningful output scale
    assert _max_abs_diff(got, expected) <= 1e-4


# ==============================================================================================
# B. MIL-NCE S3D-G (HowTo100M)
# ==============================================================================================
def _milnce_bn(rand: _Rand, prefix: str, c: int) -> Dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": rand.uniform(c, 0.5, 1.5),
        f"{prefix}.bias": rand.normal(c, 0.2),
        f"{prefix}.running_mean": rand.normal(c, 0.2),
        f"{prefix}.running_var": rand.uniform(c, 0.5, 2.0),
        f"{prefix}.num_batches_tracked": torch.tensor(1000, dtype=torch.long),
    }


def _milnce_unit(rand: _Rand, prefix: str, cin: int, cout: int, kernel=(1, 1, 1)) -> Dict[str, torch.Tensor]:
    sd = {f"{prefix}.conv1.weight": rand.kaiming((cout, cin) + tuple(kernel))}
    sd.update(_milnce_bn(rand, f"{prefix}.bn1", cout))
    return sd


def _milnce_separable(rand: _Rand, prefix: str, cin: int, cout: int) -> Dict[str, torch.Tensor]:
    sd = {f"{prefix}.conv1.weight": rand.kaiming((cout, cin, 1, 3, 3))}
    sd.update(_milnce_bn(rand, f"{prefix}.bn1", cout))
    sd[f"{prefix}.conv2.weight"] = rand.kaiming((cout, cout, 3, 1, 1))
    sd.update(_milnce_bn(rand, f"{prefix}.bn2", cout))
    return sd


def _milnce_gating(rand: _Rand, prefix: str, c: int) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.fc.weight": rand.normal((c, c), 1.0 / math.sqrt(c)),
            f"{prefix}.fc.bias": rand.normal(c, 0.5, 1.0)}


def make_milnce_state_dict(seed: int = 10) -> Dict[str, torch.Tensor]:
    """The key layout of MIL-NCE's ``s3d_howto100m.pth`` (text vocabulary shrunk), random values."""
    rand = _Rand(seed)
    sd: Dict[str, torch.Tensor] = {}
    sd.update(_milnce_unit(rand, "conv1", 24, 64, (2, 4, 4)))
    sd.update(_milnce_unit(rand, "conv_2b", 64, 64))
    sd.update(_milnce_separable(rand, "conv_2c", 64, 192))
    sd.update(_milnce_gating(rand, "gating", 192))
    for name, cin, (c0, c1a, c1, c2a, c2, c3) in _block_inputs():
        p = f"mixed_{name}"
        sd.update(_milnce_unit(rand, f"{p}.conv_b0", cin, c0))
        sd.update(_milnce_unit(rand, f"{p}.conv_b1_a", cin, c1a))
        sd.update(_milnce_separable(rand, f"{p}.conv_b1_b", c1a, c1))
        sd.update(_milnce_unit(rand, f"{p}.conv_b2_a", cin, c2a))
        sd.update(_milnce_separable(rand, f"{p}.conv_b2_b", c2a, c2))
        sd.update(_milnce_unit(rand, f"{p}.conv_b3_b", cin, c3))
        for i, c in enumerate((c0, c1, c2, c3)):
            sd.update(_milnce_gating(rand, f"{p}.gating_b{i}", c))
    sd["fc.weight"] = rand.normal((512, 1024), 1.0 / math.sqrt(1024))
    sd["fc.bias"] = rand.normal(512, 0.1)
    sd["text_module.word_embd.weight"] = rand.normal((1000, 300))
    sd["text_module.fc1.weight"] = rand.normal((2048, 300), 0.05)
    sd["text_module.fc1.bias"] = rand.normal(2048, 0.05)
    sd["text_module.fc2.weight"] = rand.normal((512, 2048), 0.05)
    sd["text_module.fc2.bias"] = rand.normal(512, 0.05)
    return sd


MILNCE_TEXT_KEYS = sorted(
    ["text_module.word_embd.weight", "text_module.fc1.weight", "text_module.fc1.bias",
     "text_module.fc2.weight", "text_module.fc2.bias"]
)


def milnce_reference(sd: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """MIL-NCE's ``video_embedding`` of clips x (B, 3, T, H, W), T, H, W even, in float64."""
    p = {k: v.double() for k, v in sd.items() if not k.startswith("text_module.") and not k.endswith("_tracked")}
    x = x.double()

    def bn(y, key):
        return F.batch_norm(y, p[f"{key}.running_mean"], p[f"{key}.running_var"], p[f"{key}.weight"],
                            p[f"{key}.bias"], training=False, eps=1e-5)

    def unit(y, key, padding=0):
        return F.relu(bn(F.conv3d(y, p[f"{key}.conv1.weight"], padding=padding), f"{key}.bn1"))

    def separable(y, key):
        y = F.relu(bn(F.conv3d(y, p[f"{key}.conv1.weight"], padding=(0, 1, 1)), f"{key}.bn1"))
        return F.relu(bn(F.conv3d(y, p[f"{key}.conv2.weight"], padding=(1, 0, 0)), f"{key}.bn2"))

    def gating(y, key):
        w = torch.sigmoid(F.linear(y.mean(dim=(2, 3, 4)), p[f"{key}.fc.weight"], p[f"{key}.fc.bias"]))
        return y * w[:, :, None, None, None]

    def pool(y, kernel, stride):
        pads = []
        for k, s in zip(kernel, stride):
            total = max(k - s, 0)
            pads.append((total // 2, total - total // 2))
        y = F.pad(y, [*pads[2], *pads[1], *pads[0]])  # zeros, as MIL-NCE pads
        return F.max_pool3d(y, kernel, stride, ceil_mode=True)

    # Space-to-depth, written channel by channel: channel ((dt*2+dh)*2+dw)*3 + c.
    chans = [x[:, c, dt::2, dh::2, dw::2] for dt in range(2) for dh in range(2) for dw in range(2) for c in range(3)]
    x = torch.stack(chans, dim=1)
    x = unit(x, "conv1", padding=(1, 2, 2))[:, :, 1:, 1:, 1:]
    x = pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(x, "conv_2b")
    x = separable(x, "conv_2c")
    x = gating(x, "gating")
    x = pool(x, (1, 3, 3), (1, 2, 2))
    for name, _, _ in _block_inputs():
        if name == "4b":
            x = pool(x, (3, 3, 3), (2, 2, 2))
        elif name == "5b":
            x = pool(x, (2, 2, 2), (2, 2, 2))
        b = f"mixed_{name}"
        b0 = unit(x, f"{b}.conv_b0")
        b1 = separable(unit(x, f"{b}.conv_b1_a"), f"{b}.conv_b1_b")
        b2 = separable(unit(x, f"{b}.conv_b2_a"), f"{b}.conv_b2_b")
        b3 = unit(F.max_pool3d(x, 3, stride=1, padding=1), f"{b}.conv_b3_b")
        x = torch.cat([gating(y, f"{b}.gating_b{i}") for i, y in enumerate((b0, b1, b2, b3))], dim=1)
    return F.linear(x.mean(dim=(2, 3, 4)), p["fc.weight"], p["fc.bias"])


@pytest.fixture(scope="module")
def milnce():
    sd = make_milnce_state_dict()
    converted = convert_checkpoint(sd, "milnce_s3dg")
    return sd, converted


def test_milnce_conversion_is_complete(milnce):
    sd, converted = milnce
    assert converted.missing_keys == []
    assert converted.unused_keys == []
    assert converted.dropped_keys == MILNCE_TEXT_KEYS
    assert converted.has_head
    assert not any(k.startswith("text_module") for k in converted.state_dict)
    model = build_video_classifier("s3dg", 512, preset="milnce")
    assert set(converted.state_dict) == set(model.state_dict())
    model.load_state_dict(converted.state_dict, strict=True)
    assert "0 missing, 0 unused, 5 dropped" in converted.report()
    # The source dict is left as it was.
    assert set(sd) >= set(MILNCE_TEXT_KEYS)


@pytest.mark.parametrize("shape", [(2, 3, 16, 64, 64), (1, 3, 8, 96, 96)])
def test_milnce_embedding_matches_reference(milnce, shape):
    sd, converted = milnce
    model = build_video_classifier("s3dg", 512, preset="milnce")
    model.load_state_dict(converted.state_dict, strict=True)
    model = model.double().eval()
    x = _Rand(11).normal(shape)
    with torch.no_grad():
        expected = milnce_reference(sd, x)
        got = model(raw_milnce(x.double()))
    assert got.shape == expected.shape == (shape[0], 512)
    scale = expected.abs().max().item()
    assert scale > 1e-2
    assert _max_abs_diff(got, expected) <= DOUBLE_TOL * max(scale, 1.0)
    # The two clips of the batch are told apart (gating is per clip).
    if shape[0] == 2:
        assert _max_abs_diff(expected[0], expected[1]) > 1e-3


@pytest.mark.parametrize("shape", [(1, 3, 16, 72, 72), (1, 3, 10, 64, 64)])
def test_milnce_embedding_other_even_sizes(milnce, shape):
    sd, converted = milnce
    model = build_video_classifier("s3dg", 512, preset="milnce")
    model.load_state_dict(converted.state_dict, strict=True)
    model = model.double().eval()
    x = _Rand(13).normal(shape)
    with torch.no_grad():
        expected = milnce_reference(sd, x)
        got = model(raw_milnce(x.double()))
    assert _max_abs_diff(got, expected) <= DOUBLE_TOL * max(expected.abs().max().item(), 1.0)


def test_milnce_reference_detects_a_swap(milnce):
    """The comparison is sensitive: two same-shaped tensors swapped in the source change the output."""
    sd, converted = milnce
    swapped = dict(sd)
    a, b = "mixed_4c.conv_b1_b.bn2.running_var", "mixed_4c.conv_b1_b.bn1.running_var"
    swapped[a], swapped[b] = sd[b], sd[a]
    model = build_video_classifier("s3dg", 512, preset="milnce")
    model.load_state_dict(converted.state_dict, strict=True)
    model = model.double().eval()
    x = _Rand(12).normal((1, 3, 16, 64, 64)).double()
    with torch.no_grad():
        assert _max_abs_diff(model(raw_milnce(x)), milnce_reference(swapped, x)) > 1e-3


# ==============================================================================================
# C. TF-slim S3D-G
# ==============================================================================================
def _tf_unit(rand: _Rand, prefix: str, cin: int, cout: int, kernel=(1, 1, 1)) -> Dict[str, np.ndarray]:
    """A conv (DHWIO) + BatchNorm without gamma."""
    fan_in = cin * int(np.prod(kernel))
    return {
        f"{prefix}/weights": rand.normal(tuple(kernel) + (cin, cout), math.sqrt(2.0 / fan_in)).numpy(),
        f"{prefix}/BatchNorm/beta": rand.normal(cout, 0.2).numpy(),
        f"{prefix}/BatchNorm/moving_mean": rand.normal(cout, 0.2).numpy(),
        f"{prefix}/BatchNorm/moving_variance": rand.uniform(cout, 0.5, 2.0).numpy(),
    }


def _tf_separable(rand: _Rand, prefix: str, cin: int, cout: int) -> Dict[str, np.ndarray]:
    sd = _tf_unit(rand, prefix, cin, cout, (1, 3, 3))
    sd[f"{prefix}/temporal/weights"] = rand.normal((3, 1, 1, cout, cout), math.sqrt(2.0 / (3 * cout))).numpy()
    sd[f"{prefix}/temporal/biases"] = rand.normal(cout, 0.1).numpy()
    return sd


def _tf_gating(rand: _Rand, unit: str, c: int) -> Dict[str, np.ndarray]:
    w = rand.normal((1, 1, 1, c, c), 1.0 / math.sqrt(c)) + torch.eye(c) * 0.5  # sigmoid well away from 0
    return {f"{unit}/self_gating/transformer_W/weights": w.numpy()}


def make_tfslim_state_dict(num_classes=13, seed=20, head=True, junk=True, in_channels=3) -> Dict[str, np.ndarray]:
    """Variables of TF-slim's S3D-G (``InceptionV1/...``) as numpy arrays, random values; ``in_channels`` 2: a
    flow network (its first kernel (3, 7, 7, 2, 64))."""
    rand = _Rand(seed)
    s = "InceptionV1"
    sd: Dict[str, np.ndarray] = {}
    sd.update(_tf_unit(rand, f"{s}/Conv2d_1a_7x7", in_channels, 64, (3, 7, 7)))
    sd.update(_tf_unit(rand, f"{s}/Conv2d_2b_1x1", 64, 64))
    sd.update(_tf_separable(rand, f"{s}/Conv2d_2c_3x3", 64, 192))
    sd.update(_tf_gating(rand, f"{s}/Conv2d_2c_3x3", 192))
    for name, cin, (c0, c1a, c1, c2a, c2, c3) in _block_inputs():
        m = f"{s}/Mixed_{name}"
        sd.update(_tf_unit(rand, f"{m}/Branch_0/Conv2d_0a_1x1", cin, c0))
        sd.update(_tf_unit(rand, f"{m}/Branch_1/Conv2d_0a_1x1", cin, c1a))
        sd.update(_tf_separable(rand, f"{m}/Branch_1/Conv2d_0b_3x3", c1a, c1))
        sd.update(_tf_unit(rand, f"{m}/Branch_2/Conv2d_0a_1x1", cin, c2a))
        sd.update(_tf_separable(rand, f"{m}/Branch_2/Conv2d_0b_3x3", c2a, c2))
        sd.update(_tf_unit(rand, f"{m}/Branch_3/Conv2d_0b_1x1", cin, c3))
        for unit, c in (("Branch_0/Conv2d_0a_1x1", c0), ("Branch_1/Conv2d_0b_3x3", c1),
                        ("Branch_2/Conv2d_0b_3x3", c2), ("Branch_3/Conv2d_0b_1x1", c3)):
            sd.update(_tf_gating(rand, f"{m}/{unit}", c))
    if head:
        sd[f"{s}/Logits/Conv2d_0c_1x1/weights"] = rand.normal((1, 1, 1, 1024, num_classes), 0.05).numpy()
        sd[f"{s}/Logits/Conv2d_0c_1x1/biases"] = rand.normal(num_classes, 0.1).numpy()
    if junk:
        sd["global_step"] = np.array(123456, dtype=np.int64)
        sd[f"{s}/Conv2d_1a_7x7/weights/Momentum"] = np.zeros_like(sd[f"{s}/Conv2d_1a_7x7/weights"])
    return sd


TF_JUNK_KEYS = sorted(["global_step", "InceptionV1/Conv2d_1a_7x7/weights/Momentum"])


def tfslim_reference(sd: Dict[str, np.ndarray], x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """TF-slim S3D-G in float64: (mixed_5c features, logits or None); every conv and pool "SAME"."""
    s = "InceptionV1"
    p = {k: torch.from_numpy(np.asarray(v)).double() for k, v in sd.items()}
    x = x.double()

    def same_pad(y, kernel, stride, value=0.0):
        pads = []
        for n, k, st in zip(y.shape[2:], kernel, stride):
            out = -(-n // st)
            total = max((out - 1) * st + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return F.pad(y, [*pads[2], *pads[1], *pads[0]], value=value)

    def conv(y, key, stride=(1, 1, 1), bias=None):
        w = p[key].permute(4, 3, 0, 1, 2)  # DHWIO -> (out, in, d, h, w)
        return F.conv3d(same_pad(y, w.shape[2:], stride), w, bias, stride)

    def bn(y, unit):
        mean = p[f"{unit}/BatchNorm/moving_mean"][None, :, None, None, None]
        var = p[f"{unit}/BatchNorm/moving_variance"][None, :, None, None, None]
        beta = p[f"{unit}/BatchNorm/beta"][None, :, None, None, None]
        return (y - mean) / torch.sqrt(var + 1e-3) + beta

    def unit(y, name, stride=(1, 1, 1)):
        return F.relu(bn(conv(y, f"{name}/weights", stride), name))

    def separable(y, name):
        y = unit(y, name)
        return F.relu(conv(y, f"{name}/temporal/weights", bias=p[f"{name}/temporal/biases"]))

    def gating(y, name):
        w = p[f"{name}/self_gating/transformer_W/weights"][0, 0, 0]  # (in, out)
        g = torch.sigmoid(y.mean(dim=(2, 3, 4)) @ w)
        return y * g[:, :, None, None, None]

    def pool(y, kernel, stride):
        return F.max_pool3d(same_pad(y, kernel, stride, value=-math.inf), kernel, stride)

    x = unit(x, f"{s}/Conv2d_1a_7x7", stride=(2, 2, 2))
    x = pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(x, f"{s}/Conv2d_2b_1x1")
    x = gating(separable(x, f"{s}/Conv2d_2c_3x3"), f"{s}/Conv2d_2c_3x3")
    x = pool(x, (1, 3, 3), (1, 2, 2))
    for name, _, _ in _block_inputs():
        if name == "4b":
            x = pool(x, (3, 3, 3), (2, 2, 2))
        elif name == "5b":
            x = pool(x, (2, 2, 2), (2, 2, 2))
        m = f"{s}/Mixed_{name}"
        b0 = unit(x, f"{m}/Branch_0/Conv2d_0a_1x1")
        b1 = separable(unit(x, f"{m}/Branch_1/Conv2d_0a_1x1"), f"{m}/Branch_1/Conv2d_0b_3x3")
        b2 = separable(unit(x, f"{m}/Branch_2/Conv2d_0a_1x1"), f"{m}/Branch_2/Conv2d_0b_3x3")
        b3 = unit(pool(x, (3, 3, 3), (1, 1, 1)), f"{m}/Branch_3/Conv2d_0b_1x1")
        x = torch.cat([
            gating(b0, f"{m}/Branch_0/Conv2d_0a_1x1"), gating(b1, f"{m}/Branch_1/Conv2d_0b_3x3"),
            gating(b2, f"{m}/Branch_2/Conv2d_0b_3x3"), gating(b3, f"{m}/Branch_3/Conv2d_0b_1x1"),
        ], dim=1)
    features = x
    head = f"{s}/Logits/Conv2d_0c_1x1"
    if f"{head}/weights" not in p:
        return features, None
    kernel = tuple(min(k, n) for k, n in zip((2, 7, 7), x.shape[2:]))
    y = F.avg_pool3d(x, kernel, stride=1)  # VALID
    bias = p[f"{head}/biases"][None, :, None, None, None]
    y = torch.einsum("bcthw,ck->bkthw", y, p[f"{head}/weights"][0, 0, 0]) + bias
    return features, y.mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def tfslim():
    sd = make_tfslim_state_dict()
    converted = convert_checkpoint(sd, "tfslim_s3dg")
    return sd, converted


def test_tfslim_conversion_is_complete(tfslim):
    sd, converted = tfslim
    assert converted.missing_keys == []
    assert converted.unused_keys == TF_JUNK_KEYS
    assert converted.dropped_keys == []
    assert converted.has_head
    model = build_video_classifier("s3dg", 13, preset="tfslim")
    assert set(converted.state_dict) == set(model.state_dict())
    model.load_state_dict(converted.state_dict, strict=True)
    # scale=False: gamma is one everywhere; the temporal convs carry no BN.
    for key, value in converted.state_dict.items():
        if key.endswith("bn.weight"):
            assert torch.equal(value, torch.ones_like(value)), key
    assert not any(".bn_t." in k for k in converted.state_dict)
    assert "0 missing, 2 unused" in converted.report()
    for key in TF_JUNK_KEYS:
        assert key in converted.report()


def test_tfslim_logits_match_reference_odd_sizes(tfslim):
    """Odd T, H, W: "SAME" padding is asymmetric at every stride-2 conv and pool."""
    sd, converted = tfslim
    model = build_video_classifier("s3dg", 13, preset="tfslim")
    model.load_state_dict(converted.state_dict, strict=True)
    model = model.double().eval()
    x = _Rand(21).normal((2, 3, 19, 65, 81))
    assert model.backbone.output_size((19, 65, 81)) == (3, 3, 3)  # the head averages 2 positions in time
    with torch.no_grad():
        features, expected = tfslim_reference(sd, x)
        got_features = model.backbone(raw_tfslim(x.double()))["mixed_5c"]
        got = model.head(got_features)
    assert got_features.shape == features.shape == (2, 1024, 3, 3, 3)
    fscale = features.abs().max().item()
    assert fscale > 1e-2
    assert _max_abs_diff(got_features, features) <= DOUBLE_TOL * max(fscale, 1.0)
    scale = expected.abs().max().item()
    assert got.shape == expected.shape == (2, 13)
    assert scale > 1e-2
    assert _max_abs_diff(got, expected) <= DOUBLE_TOL * max(scale, 1.0)


def test_tfslim_flow_checkpoint_converts_to_a_two_channel_network():
    """A flow S3D-G in TF-slim's layout (first kernel (3, 7, 7, 2, 64)) converts to a 2-channel network whose
    logits on flow in [-1, 1] (I3D's convention: +-20 px) match the reference."""
    sd = make_tfslim_state_dict(num_classes=5, seed=23, junk=False, in_channels=2)
    converted = convert_checkpoint(sd, "tfslim_s3dg")
    assert converted.missing_keys == [] and converted.unused_keys == []
    assert converted.state_dict["backbone.conv_1a.conv.weight"].shape == (64, 2, 3, 7, 7)
    model = build_video_classifier("s3dg", 5, preset="tfslim", in_channels=2)
    model.load_state_dict(converted.state_dict, strict=True)
    model.eval()
    assert model.backbone.input_norm.convention()["mean"] == [127.5, 127.5]
    x = torch.rand(1, 2, 8, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        _, expected = tfslim_reference(sd, x)
        got = model(raw_tfslim(x.double()).float())
    assert _max_abs_diff(got.double(), expected) < 1e-3


def test_tfslim_headless():
    sd = make_tfslim_state_dict(head=False, junk=False, seed=22)
    converted = convert_checkpoint(sd, "tfslim_s3dg")
    assert not converted.has_head
    assert converted.missing_keys == [] and converted.unused_keys == []
    assert converted.state_dict and all(k.startswith("backbone.") for k in converted.state_dict)
    assert "no classifier head" in converted.report()
    backbone = build_video_backbone("s3dg", preset="tfslim")
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in converted.state_dict.items()}, strict=True)
    backbone = backbone.double().eval()
    x = _Rand(23).normal((1, 3, 7, 33, 47))
    with torch.no_grad():
        expected, logits = tfslim_reference(sd, x)
        got = backbone(raw_tfslim(x.double()))["mixed_5c"]
    assert logits is None
    scale = expected.abs().max().item()
    assert got.shape == expected.shape
    assert scale > 1e-2
    assert _max_abs_diff(got, expected) <= DOUBLE_TOL * max(scale, 1.0)


def test_tfslim_npz_round_trip(tmp_path, tfslim):
    """Slash-containing TF names survive an .npz, and the file converts as the dict does."""
    sd, converted = tfslim
    path = str(tmp_path / "s3dg_tf.npz")
    np.savez(path, **sd)
    loaded = load_state_dict_file(path)
    assert set(loaded) == set(sd)
    for key in sd:
        np.testing.assert_array_equal(np.asarray(loaded[key]), sd[key])
    again = convert_checkpoint(loaded, "tfslim_s3dg")
    assert again.unused_keys == TF_JUNK_KEYS and again.missing_keys == []
    for key, value in converted.state_dict.items():
        assert torch.equal(again.state_dict[key], value), key


# ==============================================================================================
# Errors and reports
# ==============================================================================================
def test_shape_mismatch_names_key_and_shapes(milnce):
    sd, _ = milnce
    bad = dict(sd)
    key = "mixed_4b.conv_b1_b.conv2.weight"
    bad[key] = torch.zeros(208, 208, 5, 1, 1)
    with pytest.raises(ValueError) as info:
        convert_checkpoint(bad, "milnce_s3dg")
    msg = str(info.value)
    assert key in msg
    assert str((208, 208, 5, 1, 1)) in msg
    assert str((208, 208, 3, 1, 1)) in msg


def test_shape_mismatch_in_a_fused_reduce_conv(milnce):
    sd, _ = milnce
    bad = dict(sd)
    key = "mixed_3c.conv_b2_a.conv1.weight"
    bad[key] = torch.zeros(33, 256, 1, 1, 1)
    with pytest.raises(ValueError) as info:
        convert_checkpoint(bad, "milnce_s3dg")
    msg = str(info.value)
    assert key in msg and str((33, 256, 1, 1, 1)) in msg
    assert str((128 + 128 + 32, 256, 1, 1, 1)) in msg  # our fused reduce conv


def test_shape_mismatch_tfslim_reports_source_layout(tfslim):
    sd, _ = tfslim
    bad = dict(sd)
    key = "InceptionV1/Conv2d_1a_7x7/weights"
    bad[key] = np.zeros((3, 5, 5, 3, 64), dtype=np.float32)
    with pytest.raises(ValueError) as info:
        convert_checkpoint(bad, "tfslim_s3dg")
    msg = str(info.value)
    assert key in msg and str((3, 5, 5, 3, 64)) in msg and str((64, 3, 3, 7, 7)) in msg


def test_unknown_source_lists_sources():
    assert set(SOURCES) == {"torchvision_s3d", "milnce_s3dg", "tfslim_s3dg"}
    with pytest.raises(ValueError) as info:
        convert_checkpoint({}, "caffe2_s3d")
    msg = str(info.value)
    assert "caffe2_s3d" in msg
    for source in SOURCES:
        assert source in msg


def test_missing_key_is_reported(milnce):
    sd, _ = milnce
    partial = dict(sd)
    del partial["mixed_4c.conv_b2_b.bn2.running_var"]
    converted = convert_checkpoint(partial, "milnce_s3dg")
    assert converted.missing_keys == ["backbone.mixed_4c.branch2.bn_t.running_var"]
    assert converted.unused_keys == []
    assert "1 missing" in converted.report()
    assert "backbone.mixed_4c.branch2.bn_t.running_var" in converted.report()
    model = build_video_classifier("s3dg", 512, preset="milnce")
    with pytest.raises(RuntimeError):
        model.load_state_dict(converted.state_dict, strict=True)
    result = model.load_state_dict(converted.state_dict, strict=False)
    assert list(result.missing_keys) == ["backbone.mixed_4c.branch2.bn_t.running_var"]


def test_missing_part_of_a_fused_key(milnce):
    """A reduce conv fuses three source units: one part missing leaves our key missing and the other
    two parts unused (they went nowhere)."""
    sd, _ = milnce
    partial = dict(sd)
    del partial["mixed_3b.conv_b1_a.bn1.bias"]
    converted = convert_checkpoint(partial, "milnce_s3dg")
    assert converted.missing_keys == ["backbone.mixed_3b.reduce.bn.bias"]
    assert converted.unused_keys == ["mixed_3b.conv_b0.bn1.bias", "mixed_3b.conv_b2_a.bn1.bias"]


def test_optional_counters_default(milnce):
    """Files without BN step counters convert fully; the counters become zeros."""
    sd, _ = milnce
    no_counters = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    converted = convert_checkpoint(no_counters, "milnce_s3dg")
    assert converted.missing_keys == [] and converted.unused_keys == []
    counters = [v for k, v in converted.state_dict.items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(v) == 0 for v in counters)


def test_non_array_value_is_refused(milnce):
    sd, _ = milnce
    bad = dict(sd)
    bad["conv_2b.conv1.weight"] = "not a tensor"
    with pytest.raises(ValueError, match="conv_2b.conv1.weight"):
        convert_checkpoint(bad, "milnce_s3dg")


# ==============================================================================================
# Files
# ==============================================================================================
class _Arbitrary:
    """A harmless class that is not a tensor: weights-only loading must refuse it."""

    def __init__(self):
        self.value = 3


class _Malicious:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def test_load_state_dict_file_plain_and_wrapped(tmp_path):
    state = {"a.weight": torch.arange(6.0).view(2, 3), "a.bias": torch.ones(2)}
    plain = str(tmp_path / "plain.pth")
    torch.save(state, plain)
    loaded = load_state_dict_file(plain)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    wrapped = str(tmp_path / "wrapped.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    loaded = load_state_dict_file(wrapped)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    model_wrapped = str(tmp_path / "model_wrapped.pth")
    torch.save({"model": state}, model_wrapped)
    assert set(load_state_dict_file(model_wrapped)) == set(state)


def test_load_state_dict_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(str(tmp_path / "absent.pth"))
    not_a_dict = str(tmp_path / "list.pth")
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ValueError, match="list.pth"):
        load_state_dict_file(not_a_dict)
    garbage = str(tmp_path / "garbage.pth")
    with open(garbage, "wb") as f:
        f.write(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_state_dict_file(garbage)


def test_load_state_dict_file_refuses_arbitrary_objects(tmp_path):
    path = str(tmp_path / "object.pth")
    torch.save({"x": _Arbitrary(), "w": torch.zeros(2)}, path)
    with pytest.raises(ValueError) as info:
        load_state_dict_file(path)
    assert path in str(info.value)


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_load_state_dict_file_never_runs_code(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = str(tmp_path / f"evil_{writer}.pth")
    payload = {"x": _Malicious(str(marker)), "w": torch.zeros(2)}
    if writer == "torch_save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    assert not marker.exists()
    with pytest.raises(ValueError) as info:
        load_state_dict_file(path)
    assert path in str(info.value)
    assert not marker.exists()
    with pytest.raises(ValueError) as info:
        load_converted(path)
    assert path in str(info.value)
    assert not marker.exists()
    # The payload is live: an unrestricted load does run it (so the checks above are not vacuous).
    if writer == "torch_save":
        torch.load(path, weights_only=False)
    else:
        with open(path, "rb") as f:
            pickle.load(f)
    assert marker.exists()


def test_load_state_dict_file_refuses_pickled_npz(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.npz")
    np.savez(path, w=np.zeros(2, dtype=np.float32), x=np.array([_Malicious(str(marker))], dtype=object))
    with pytest.raises(ValueError) as info:
        load_state_dict_file(path)
    assert path in str(info.value)
    assert not marker.exists()


def test_save_and_load_converted_round_trip(tmp_path, milnce):
    _, converted = milnce
    path = str(tmp_path / "out" / "milnce_converted.pth")
    save_converted(converted, path)
    assert os.listdir(tmp_path / "out") == ["milnce_converted.pth"]  # no temp file left behind
    state, meta = load_converted(path)
    assert meta == {"source": "milnce_s3dg", "preset": "milnce", "variant": "s3dg", "has_head": True}
    assert set(state) == set(converted.state_dict)
    for key, value in converted.state_dict.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    # A plain state dict is not a converted file.
    plain = str(tmp_path / "plain.pth")
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="plain.pth"):
        load_converted(plain)
    with pytest.raises(FileNotFoundError):
        load_converted(str(tmp_path / "absent.pth"))


def test_load_pretrained_3d(tmp_path, milnce):
    _, converted = milnce
    path = str(tmp_path / "milnce.pth")
    save_converted(converted, path)

    # Strict, into a backbone (default prefix).
    backbone = build_video_backbone("s3dg", preset="milnce")
    assert load_pretrained_3d(backbone, path) == []
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, converted.state_dict["backbone." + key]), key

    # Strict, into a whole classifier.
    classifier = build_video_classifier("s3dg", 512, preset="milnce")
    assert load_pretrained_3d(classifier, path, prefix="") == []
    assert torch.equal(classifier.head.proj.weight, converted.state_dict["head.proj.weight"])

    # A key missing from the file: strict refuses, naming the file; non-strict loads the rest.
    partial = ConvertedCheckpoint(dict(converted.state_dict), converted.source)
    gone = "backbone.mixed_5c.branch1.conv_t.weight"
    del partial.state_dict[gone]
    partial_path = str(tmp_path / "partial.pth")
    save_converted(partial, partial_path)
    fresh = build_video_backbone("s3dg", preset="milnce")
    before = fresh.state_dict()["mixed_5c.branch1.conv_t.weight"].clone()
    with pytest.raises(ValueError) as info:
        load_pretrained_3d(fresh, partial_path)
    assert partial_path in str(info.value) and "mixed_5c.branch1.conv_t.weight" in str(info.value)
    missing = load_pretrained_3d(fresh, partial_path, strict=False)
    assert missing == ["mixed_5c.branch1.conv_t.weight"]
    assert torch.equal(fresh.mixed_5c.branch1.conv_t.weight, before)  # untouched
    assert torch.equal(fresh.conv_1a.conv.weight, converted.state_dict["backbone.conv_1a.conv.weight"])

    # A shape mismatch is refused even when not strict, naming the file, the key and both shapes.
    narrow = build_video_backbone("s3dg", preset="milnce", width=0.5)
    for strict in (True, False):
        with pytest.raises(ValueError) as info:
            load_pretrained_3d(narrow, path, strict=strict)
        msg = str(info.value)
        assert path in msg and "backbone.conv_1a.conv.weight" in msg
        assert str((64, 24, 2, 4, 4)) in msg and str((32, 24, 2, 4, 4)) in msg
