"""Tests of ``s3d_det.checkpoint.image``: 2D detector weights from torchvision and detectron2 files land in
torchvision's ResNet body, FPN and RPN head.

Source files are made here from torchvision models with random weights and random BatchNorm statistics
(so a misplaced tensor changes the output). detectron2 / Caffe2 files are written with the inverse name
mapping spelled out in this file, independently of the converter's rules. Each converted checkpoint is loaded
into a fresh torchvision model, and tensors and outputs are compared with the source model's.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import shlex

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from s3d_det.checkpoint.image import (
    SOURCES_2D,
    TORCHVISION_FRCNN_PREFIXES,
    convert_2d_checkpoint,
    detect_2d_source,
    load_2d_into,
    load_2d_weights,
    set_stride_in_1x1,
)
from s3d_det.checkpoint.io import UnsafePickleError

BODY_LAYERS = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}


# ----------------------------------------------------------------------------------------------
# Models with random weights
# ----------------------------------------------------------------------------------------------
def _randomize(model: nn.Module, seed: int, *, bn_stats: bool = True) -> nn.Module:
    """Random conv weights/biases and BatchNorm affine parameters; random running statistics, or
    mean 0 / var 1 when ``bn_stats`` is False (the values an affine-only file implies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                c = m.weight.shape[0]
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2 if bn_stats else torch.zeros(c))
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5 if bn_stats else torch.ones(c))
    return model.eval()


def _built(builder, *args, **kwargs) -> nn.Module:
    """A model's structure without torch's initialisation (``_randomize`` sets every weight used here)."""
    with torch.device("meta"):
        model = builder(*args, **kwargs)
    return model.to_empty(device="cpu")


def _bottleneck_net() -> ResNet:
    """A bottleneck ResNet with one block per layer and narrow 3x3 convs, small and fast."""
    return _built(ResNet, Bottleneck, [1, 1, 1, 1], width_per_group=16)


def _frcnn(seed: int, fpn_channels: int = 64) -> FasterRCNN:
    """torchvision's Faster R-CNN on a ResNet FPN (BasicBlock, one block per layer; FrozenBatchNorm2d, like
    the COCO models) with a small box head."""
    def structure():
        body = ResNet(BasicBlock, [1, 1, 1, 1], norm_layer=FrozenBatchNorm2d)
        backbone = BackboneWithFPN(body, BODY_LAYERS, [64, 128, 256, 512], fpn_channels)
        return FasterRCNN(backbone, min_size=96, max_size=128, box_head=TwoMLPHead(fpn_channels * 7 * 7, 16),
                          box_predictor=FastRCNNPredictor(16, 2))

    return _randomize(_built(structure), seed)


def _frcnn_outputs(model: FasterRCNN, image: torch.Tensor):
    """FPN features, RPN head outputs and the RPN's proposals for one image (3, H, W) in [0, 1]."""
    with torch.no_grad():
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        logits, deltas = model.rpn.head(list(features.values()))
        proposals, _ = model.rpn(images, features)
    return list(features.values()) + logits + deltas + proposals


def _assert_same_outputs(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def _image(seed: int = 3) -> torch.Tensor:
    return torch.rand((3, 80, 112), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Inverse mappings, written out here: torchvision key -> detectron2 / Caffe2 key (None: not stored)
# ----------------------------------------------------------------------------------------------
def _d2_name(tv_key: str, body_prefix: str = "backbone.bottom_up.") -> str:
    rules = [
        (r"backbone\.body\.conv1\.weight", lambda m: "stem.conv1.weight"),
        (r"backbone\.body\.bn1\.(\w+)", lambda m: f"stem.conv1.norm.{m[1]}"),
        (r"backbone\.body\.layer(\d)\.(\d+)\.conv(\d)\.weight",
         lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight"),
        (r"backbone\.body\.layer(\d)\.(\d+)\.bn(\d)\.(\w+)",
         lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
        (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.0\.weight",
         lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight"),
        (r"backbone\.body\.layer(\d)\.(\d+)\.downsample\.1\.(\w+)",
         lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
    ]
    for pattern, name in rules:
        m = re.fullmatch(pattern, tv_key)
        if m:
            return body_prefix + name(m)
    heads = [
        (r"backbone\.fpn\.inner_blocks\.(\d)\.0\.(\w+)", lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}"),
        (r"backbone\.fpn\.layer_blocks\.(\d)\.0\.(\w+)", lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}"),
        (r"rpn\.head\.conv\.0\.0\.(\w+)", lambda m: f"proposal_generator.rpn_head.conv.{m[1]}"),
        (r"rpn\.head\.cls_logits\.(\w+)", lambda m: f"proposal_generator.rpn_head.objectness_logits.{m[1]}"),
        (r"rpn\.head\.bbox_pred\.(\w+)", lambda m: f"proposal_generator.rpn_head.anchor_deltas.{m[1]}"),
        (r"roi_heads\.(.+)", lambda m: f"roi_heads.{m[1]}"),
    ]
    for pattern, name in heads:
        m = re.fullmatch(pattern, tv_key)
        if m:
            return name(m)
    raise AssertionError(f"test mapping has no rule for {tv_key}")


def _caffe2_name(tv_key: str):
    """torchvision ResNet key -> MSRA Caffe2 blob name; None for running statistics (not stored)."""
    branch2 = {"1": "a", "2": "b", "3": "c"}
    if tv_key.endswith(("running_mean", "running_var")):
        return None
    fixed = {"conv1.weight": "conv1_w", "bn1.weight": "res_conv1_bn_s", "bn1.bias": "res_conv1_bn_b",
             "fc.weight": "fc1000_w", "fc.bias": "fc1000_b"}
    if tv_key in fixed:
        return fixed[tv_key]
    m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(weight|bias)", tv_key)
    if m:
        unit = f"res{int(m[1]) + 1}_{m[2]}_branch2{branch2[m[4]]}"
        return unit + ("_w" if m[3] == "conv" else "_bn_s" if m[5] == "weight" else "_bn_b")
    m = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.([01])\.(weight|bias)", tv_key)
    unit = f"res{int(m[1]) + 1}_{m[2]}_branch1"
    return unit + ("_w" if m[3] == "0" else "_bn_s" if m[4] == "weight" else "_bn_b")


def _d2_resnet_name(tv_key: str):
    """torchvision ResNet key -> detectron2 name of an ImageNet file (no backbone prefix); None: not stored."""
    if tv_key.endswith(("running_mean", "running_var")):
        return None
    if tv_key.startswith("fc."):
        return "linear." + tv_key[3:]
    return _d2_name("backbone.body." + tv_key, body_prefix="")


def _write_pickle(path, payload, protocol):
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=protocol)
    return str(path)


# ----------------------------------------------------------------------------------------------
# torchvision Faster R-CNN
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frcnn_source():
    return _frcnn(seed=0)


def test_torchvision_frcnn_round_trip(frcnn_source, tmp_path):
    path = str(tmp_path / "frcnn.pth")
    torch.save(frcnn_source.state_dict(), path)
    converted = load_2d_weights(path)
    assert converted.source == "torchvision_frcnn"
    assert converted.missing_keys == [] and converted.unused_keys == [] and converted.filled_keys == []
    assert converted.dropped_keys == sorted(k for k in frcnn_source.state_dict() if k.startswith("roi_heads."))
    assert converted.meta["arch"] is None and converted.meta["blocks_per_layer"] == (1, 1, 1, 1)
    assert converted.meta["input_format"] == "RGB01-imagenet" and converted.meta["stride_in_1x1"] is False
    assert converted.meta["fpn_returned_layers"] == [1, 2, 3, 4] and converted.meta["fpn_out_channels"] == 64
    assert converted.meta["num_anchors"] == 3
    assert "0 missing, 0 unused, 8 dropped" in converted.report()

    fresh = _frcnn(seed=1)
    key = "backbone.fpn.layer_blocks.2.0.weight"
    assert not torch.equal(fresh.state_dict()[key], frcnn_source.state_dict()[key])
    loaded = load_2d_into(converted, fresh, prefixes=TORCHVISION_FRCNN_PREFIXES)
    assert loaded.missing == [] and loaded.unused == [] and loaded.absent_parts == []
    expected = {k: v for k, v in frcnn_source.state_dict().items() if not k.startswith("roi_heads.")}
    assert sorted(loaded.loaded) == sorted(expected)
    assert converted.state_dict(TORCHVISION_FRCNN_PREFIXES).keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(fresh.state_dict()[k], v), k
    _assert_same_outputs(_frcnn_outputs(fresh, _image()), _frcnn_outputs(frcnn_source, _image()))


def test_torchvision_frcnn_pre_013_names(frcnn_source):
    """Files written before torchvision 0.13: rpn.head.conv.weight, backbone.fpn.inner_blocks.0.weight."""
    state = frcnn_source.state_dict()
    old = {re.sub(r"^(rpn\.head\.conv|backbone\.fpn\.(?:inner|layer)_blocks\.\d)\.0\.(?:0\.)?", r"\1.", k): v
           for k, v in state.items()}
    assert "rpn.head.conv.weight" in old and "backbone.fpn.inner_blocks.0.weight" in old
    new = convert_2d_checkpoint(state, "torchvision_frcnn")
    converted = convert_2d_checkpoint(old, "torchvision_frcnn")
    assert converted.unused_keys == [] and converted.missing_keys == []
    for part in ("body", "fpn", "rpn"):
        assert converted.part(part).keys() == new.part(part).keys()
        for k, v in new.part(part).items():
            assert torch.equal(converted.part(part)[k], v)
    assert converted.origin["rpn.conv.0.0.weight"] == "rpn.head.conv.weight"


@pytest.mark.filterwarnings("ignore::UserWarning")  # loading into meta tensors is a no-op, and torch says so
@pytest.mark.parametrize("builder", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"])
def test_torchvision_coco_layouts(builder):
    """The real COCO models' key layouts (built on the meta device: no memory, no weights)."""
    import torchvision.models.detection as det

    with torch.device("meta"):
        model = getattr(det, builder)(weights=None, weights_backbone=None)
    state = model.state_dict()
    assert detect_2d_source(state) == "torchvision_frcnn"
    converted = convert_2d_checkpoint(state, "torchvision_frcnn")
    assert converted.meta["arch"] == "resnet50" and converted.missing_keys == [] and converted.unused_keys == []
    loaded = load_2d_into(converted, model, prefixes=TORCHVISION_FRCNN_PREFIXES)
    assert loaded.missing == [] and loaded.unused == []
    assert len(converted.rpn) == (8 if builder.endswith("v2") else 6)  # v2: two RPN convs


# ----------------------------------------------------------------------------------------------
# torchvision ImageNet ResNets
# ----------------------------------------------------------------------------------------------
def test_torchvision_resnet_round_trip(tmp_path):
    source = _randomize(_built(resnet18), seed=4)
    state = source.state_dict()
    path = str(tmp_path / "resnet18.pth")
    torch.save(state, path)
    converted = load_2d_weights(path)
    assert converted.source == "torchvision_resnet" and converted.fpn is None and converted.rpn is None
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert converted.dropped_keys == sorted(["fc.weight", "fc.bias"] + counters)
    assert converted.missing_keys == [] and converted.unused_keys == []

    fresh = _randomize(IntermediateLayerGetter(_built(resnet18), {"layer4": "out"}), seed=5)
    loaded = load_2d_into(converted, fresh, prefixes={"body": "", "fpn": "unused.", "rpn": "unused."})
    assert loaded.missing == [] and loaded.unused == [] and loaded.absent_parts == ["fpn", "rpn"]
    x = torch.randn((2, 3, 64, 96), generator=torch.Generator().manual_seed(6))
    reference = IntermediateLayerGetter(source, {"layer4": "out"}).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)["out"], reference(x)["out"], rtol=0, atol=1e-5)

    c4 = IntermediateLayerGetter(_built(resnet18), {"layer3": "out"})
    loaded = load_2d_into(converted, c4, prefixes={"body": ""})
    assert loaded.missing == [] and sorted(loaded.unused) == sorted(f"body.{k}" for k in converted.body
                                                                   if k.startswith("layer4."))


def test_missing_and_unused_keys_are_reported(tmp_path):
    state = _built(resnet18).state_dict()  # values do not matter here
    del state["layer2.0.bn1.running_var"]
    state["extra.weight"] = torch.zeros(3)
    converted = convert_2d_checkpoint(state, "torchvision_resnet", path="r18.pth")
    assert converted.missing_keys == ["body.layer2.0.bn1.running_var"]
    assert converted.unused_keys == ["extra.weight"]
    report = converted.report()
    assert "missing: body.layer2.0.bn1.running_var" in report and "unused:  extra.weight" in report
    body = IntermediateLayerGetter(_built(resnet18), {"layer4": "out"})
    with pytest.raises(ValueError, match=r"r18\.pth leaves 1 model keys unfilled.*layer2\.0\.bn1\.running_var"):
        load_2d_into(converted, body, prefixes={"body": ""})
    assert load_2d_into(converted, body, prefixes={"body": ""}, strict=False).missing == ["layer2.0.bn1.running_var"]


@pytest.mark.parametrize("name, arch", [
    ("resnet34", "resnet34"), ("resnet50", "resnet50"), ("resnet101", "resnet101"),
    ("resnext50_32x4d", "resnet50 (groups=32, width_per_group=4)"),
    ("wide_resnet50_2", "resnet50 (groups=1, width_per_group=128)"),
])
def test_resnet_architectures_are_recognised(name, arch):
    import torchvision.models as tvm

    with torch.device("meta"):
        state = getattr(tvm, name)(weights=None).state_dict()
    converted = convert_2d_checkpoint(state, detect_2d_source(state))
    assert converted.source == "torchvision_resnet"
    assert converted.meta["arch"] == arch and converted.missing_keys == [] and converted.unused_keys == []


# ----------------------------------------------------------------------------------------------
# detectron2
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4])
def test_detectron2_fpn_pickle(frcnn_source, tmp_path, protocol):
    state = frcnn_source.state_dict()
    model = {_d2_name(k): v.numpy() for k, v in state.items()}
    model["backbone.top_block.p6.weight"] = np.zeros((2, 2), np.float32)  # RetinaNet-only: no rule
    path = _write_pickle(tmp_path / "model_final.pkl", {"model": model, "__author__": "Detectron2 Model Zoo",
                                                        "matching_heuristics": True}, protocol)
    converted = load_2d_weights(path)
    assert converted.source == "detectron2" and converted.meta["author"] == "Detectron2 Model Zoo"
    assert converted.meta["input_format"] == "BGR255" and any("BGR" in n for n in converted.notes)
    assert converted.meta["stride_in_1x1"] is False  # basic blocks: no 1x1 conv to stride in
    assert converted.unused_keys == ["backbone.top_block.p6.weight"]
    assert converted.dropped_keys == sorted(_d2_name(k) for k in state if k.startswith("roi_heads."))
    assert converted.missing_keys == [] and converted.filled_keys == []
    assert converted.origin["fpn.inner_blocks.0.0.weight"] == "backbone.fpn_lateral2.weight"

    fresh = _frcnn(seed=8)
    loaded = load_2d_into(converted, fresh, prefixes=TORCHVISION_FRCNN_PREFIXES)
    assert loaded.missing == [] and loaded.unused == []
    _assert_same_outputs(_frcnn_outputs(fresh, _image()), _frcnn_outputs(frcnn_source, _image()))


@pytest.mark.parametrize("naming", ["caffe2", "detectron2"])
def test_msra_imagenet_pickle_without_running_stats(tmp_path, naming):
    """MSRA R-50.pkl style: affine-only BatchNorm; running_mean 0 / running_var 1 are filled and reported."""
    source = _randomize(_bottleneck_net(), seed=9, bn_stats=False)
    rename = _caffe2_name if naming == "caffe2" else _d2_resnet_name
    blobs = {rename(k): v.numpy() for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked") and rename(k) is not None}
    payload = blobs if naming == "caffe2" else {"model": blobs, "__author__": "MSRA"}
    path = _write_pickle(tmp_path / "R-50.pkl", payload, protocol=2)

    converted = load_2d_weights(path)
    assert converted.source == "detectron2"
    bn_units = [k[: -len(".running_mean")] for k in source.state_dict() if k.endswith("running_mean")]
    assert sorted(converted.filled_keys) == sorted(f"body.{u}.{f}" for u in bn_units
                                                   for f in ("running_mean", "running_var"))
    assert converted.missing_keys == [] and converted.unused_keys == []
    classifier = ["fc1000_b", "fc1000_w"] if naming == "caffe2" else ["linear.bias", "linear.weight"]
    assert converted.dropped_keys == classifier
    assert converted.meta["input_format"] == "BGR255" and converted.meta["stride_in_1x1"] is True
    assert "filled:  body.bn1.running_var" in converted.report()

    fresh = _randomize(IntermediateLayerGetter(_bottleneck_net(), {"layer4": "out"}), seed=10)
    assert load_2d_into(converted, fresh, prefixes={"body": ""}).missing == []
    x = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(11))
    reference = IntermediateLayerGetter(source, {"layer4": "out"}).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)["out"], reference(x)["out"], rtol=0, atol=1e-5)


def _msra_block(x, sd, p, stride):
    """A bottleneck block with the stride in its first 1x1 conv (MSRA), from torch.nn.functional."""
    def bn(y, n):
        return F.batch_norm(y, sd[n + ".running_mean"], sd[n + ".running_var"], sd[n + ".weight"], sd[n + ".bias"],
                            False, 0.0, 1e-5)

    y = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"], stride=stride), p + "bn1"))
    y = F.relu(bn(F.conv2d(y, sd[p + "conv2.weight"], padding=1), p + "bn2"))
    y = bn(F.conv2d(y, sd[p + "conv3.weight"]), p + "bn3")
    return F.relu(y + bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), p + "downsample.1"))


def test_set_stride_in_1x1():
    net = _randomize(_bottleneck_net(), seed=12)
    x = torch.randn((1, 256, 16, 16), generator=torch.Generator().manual_seed(13))
    sd = net.state_dict()
    with torch.no_grad():
        before = net.layer2[0](x)
        assert set_stride_in_1x1(net) == 3  # layer2..4; layer1 has stride 1
        after = net.layer2[0](x)
        expected = _msra_block(x, sd, "layer2.0.", 2)
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    assert after.shape == before.shape == (1, 512, 8, 8)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)
    assert (before - expected).abs().max() > 0.1


def test_detectron2_c4_and_anchor_order():
    """A C4 model: body res2-res4 under backbone., res5 in roi_heads, 5 sizes x 3 ratios per location."""
    body = _built(resnet18).state_dict()  # only the RPN values are checked
    state = {}
    for k, v in body.items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        name = _d2_name("backbone.body." + k, body_prefix="backbone.")
        state[name.replace("backbone.res5.", "roi_heads.res5.")] = v
    sizes, ratios, c = 5, 3, 8
    g = torch.Generator().manual_seed(15)
    rpn = "proposal_generator.rpn_head."
    state[rpn + "conv.weight"], state[rpn + "conv.bias"] = torch.randn((c, c, 3, 3), generator=g), torch.zeros(c)
    state[rpn + "objectness_logits.weight"] = torch.randn((sizes * ratios, c, 1, 1), generator=g)
    # detectron2 anchor index = size * 3 + ratio; the bias encodes (size, ratio, coordinate).
    state[rpn + "objectness_logits.bias"] = torch.tensor([10.0 * s + r for s in range(sizes) for r in range(ratios)])
    state[rpn + "anchor_deltas.weight"] = torch.randn((sizes * ratios * 4, c, 1, 1), generator=g)
    state[rpn + "anchor_deltas.bias"] = torch.tensor(
        [100.0 * s + 10 * r + i for s in range(sizes) for r in range(ratios) for i in range(4)])

    assert detect_2d_source(state) == "detectron2"
    converted = convert_2d_checkpoint(state, "detectron2")
    assert converted.meta["blocks_per_layer"] == (2, 2, 2, 0) and converted.meta["arch"] == "resnet18"
    assert converted.missing_keys == [] and converted.unused_keys == []
    assert all(k.startswith("roi_heads.res5.") for k in converted.dropped_keys) and converted.dropped_keys
    assert any("no layer4" in n for n in converted.notes) and any("ratio-major" in n for n in converted.notes)
    cls, box = converted.rpn["cls_logits.bias"], converted.rpn["bbox_pred.bias"]
    for s in range(sizes):
        for r in range(ratios):
            t = r * sizes + s  # torchvision anchor index
            assert cls[t] == 10 * s + r
            source_row = state[rpn + "objectness_logits.weight"][s * 3 + r]
            assert torch.equal(converted.rpn["cls_logits.weight"][t], source_row)
            assert box[t * 4: t * 4 + 4].tolist() == [100.0 * s + 10 * r + i for i in range(4)]
    assert torch.equal(converted.rpn["conv.0.0.weight"], state[rpn + "conv.weight"])

    # torchvision's cell anchors really are ratio-major: anchor r * 5 + s has size s and ratio (h / w) r.
    gen = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    cell = gen.cell_anchors[0]
    for s, size in enumerate((32, 64, 128, 256, 512)):
        for r, ratio in enumerate((0.5, 1.0, 2.0)):
            w, h = (cell[r * 5 + s, 2:] - cell[r * 5 + s, :2]).tolist()
            # (rounded to whole pixels: within 10%, where neighbouring sizes and ratios differ by 2x)
            assert abs(math.log(math.sqrt(w * h) / size)) < 0.1 and abs(math.log(h / w / ratio)) < 0.1

    c4 = IntermediateLayerGetter(_built(resnet18), {"layer3": "out"})
    loaded = load_2d_into(converted, c4, prefixes={"body": ""})
    assert loaded.missing == [] and loaded.unused == [f"rpn.{k}" for k in converted.rpn]


@pytest.mark.parametrize("author, input_format, stride_in_1x1", [
    ("MSRA", "BGR255", True), ("torchvision", "RGB01-imagenet", False),
])
def test_detectron2_conventions_follow_the_author(author, input_format, stride_in_1x1):
    """Files made by detectron2's torchvision converter hold RGB weights that stride in the 3x3 conv."""
    with torch.device("meta"):
        tv_state = ResNet(Bottleneck, [3, 4, 6, 3]).state_dict()
    state = {name: v for k, v in tv_state.items()
             if not k.endswith("num_batches_tracked") and (name := _d2_resnet_name(k))}
    converted = convert_2d_checkpoint(state, "detectron2", author=author)
    assert converted.meta["arch"] == "resnet50" and converted.meta["author"] == author
    assert converted.meta["input_format"] == input_format and converted.meta["stride_in_1x1"] is stride_in_1x1
    assert any("set_stride_in_1x1" in n for n in converted.notes) is stride_in_1x1


def test_a_file_without_body():
    state = {"proposal_generator.rpn_head.conv.weight": torch.zeros((8, 8, 3, 3)),
             "proposal_generator.rpn_head.conv.bias": torch.zeros(8)}
    converted = convert_2d_checkpoint(state, "detectron2")
    assert converted.body is None and converted.fpn is None and "no ResNet body in the file" in converted.notes
    assert sorted(converted.rpn) == ["conv.0.0.bias", "conv.0.0.weight"]


def test_detectron2_anchor_count_must_fit_ratios():
    state = {"proposal_generator.rpn_head.objectness_logits.weight": torch.zeros((4, 8, 1, 1))}
    with pytest.raises(ValueError, match=r"4 anchors per location, not a multiple of num_aspect_ratios=3"):
        convert_2d_checkpoint(state, "detectron2")


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "evil.pkl", {"model": {"stem.conv1.weight": _Payload(str(marker))}}, protocol=4)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*posix\.system|evil\.pkl.*os\.system"):
        load_2d_weights(path)
    assert not marker.exists()


def test_shape_mismatch_in_the_file(tmp_path, frcnn_source):
    model = {_d2_name(k): v.numpy() for k, v in frcnn_source.state_dict().items()}
    model["backbone.bottom_up.res3.0.conv1.norm.weight"] = np.ones(64, np.float32)  # needs 128
    path = _write_pickle(tmp_path / "bad.pkl", {"model": model}, protocol=4)
    with pytest.raises(ValueError) as info:
        load_2d_weights(path)
    message = str(info.value)
    for part in (path, "backbone.bottom_up.res3.0.conv1.norm.weight", "body.layer2.0.bn1.weight", "(64,)", "(128,)"):
        assert part in message


def test_shape_mismatch_with_the_model(tmp_path, frcnn_source):
    model = {_d2_name(k): v.numpy() for k, v in frcnn_source.state_dict().items()}
    path = _write_pickle(tmp_path / "fpn64.pkl", {"model": model}, protocol=4)
    converted = load_2d_weights(path)
    narrow = _frcnn(seed=16, fpn_channels=32)
    with pytest.raises(ValueError) as info:
        load_2d_into(converted, narrow, prefixes=TORCHVISION_FRCNN_PREFIXES)
    message = str(info.value)
    for part in (path, "backbone.fpn_lateral2.weight", "backbone.fpn.inner_blocks.0.0.weight", "(64, 64, 1, 1)",
                 "(32, 64, 1, 1)"):
        assert part in message


def test_missing_file_and_unknown_family(tmp_path):
    for name in ("nothing.pkl", "nothing.pth"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / name))):
            load_2d_weights(str(tmp_path / name))
    path = str(tmp_path / "other.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError) as info:
        load_2d_weights(path)
    assert path in str(info.value) and all(s in str(info.value) for s in SOURCES_2D)
    with pytest.raises(ValueError, match="unknown 2D checkpoint source 'mmdet'"):
        convert_2d_checkpoint({}, "mmdet")
    assert load_2d_weights(path, source="torchvision_resnet").unused_keys == ["encoder.weight"]
