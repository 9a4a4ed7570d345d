"""Public 2D weights loaded through MODEL.WEIGHTS_2D bring their input conventions (issue 25, section 1):
(a) torchvision's Faster R-CNN R50-FPN gives torchvision's own RPN proposals; (b) an MSRA R-50 .pkl (Caffe2 blob
names) gives the C4 features of an independent forward written from detectron2's conventions (BGR minus the pixel
mean, the stride in the 1x1 conv, FrozenBatchNorm's eps), and keeps doing so once saved as our own checkpoint."""
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.models.detection.image_list import ImageList

from s3d_det.config import ConfigError, load_config
from s3d_det.engine.defaults import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize(model, seed):
    """Random weights, BatchNorm affine parameters and running statistics (so that the eps and the statistics
    matter), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() > 1:  # conv / linear weights, He-scaled
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / t[0].numel()))
            else:  # BatchNorm scale
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
    return model.eval()


def _cfg(*overrides):
    return load_config(None, ["MODEL.BACKBONE_3D.WIDTH", "0.25", *overrides])


def test_a_torchvision_frcnn_gives_torchvisions_rpn_proposals(tmp_path):
    torch.manual_seed(0)
    tv = _randomize(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None), seed=1)
    with torch.no_grad():  # small box deltas: proposals stay near their anchors, so hundreds survive the NMS
        tv.rpn.head.bbox_pred.weight.mul_(0.01)
    path = tmp_path / "frcnn_r50_fpn.pth"
    torch.save(tv.state_dict(), path)
    image = torch.rand((3, 256, 320), generator=torch.Generator().manual_seed(2))  # [0, 1], sides divisible by 32
    tv.transform.min_size, tv.transform.max_size = (256,), 2000  # no resize: the same pixels reach both
    with torch.no_grad():
        images, _ = tv.transform([image])
        expected, _ = tv.rpn(images, tv.backbone(images.tensors))

    cfg = _cfg("MODEL.BACKBONE_2D.FPN", "True", "MODEL.WEIGHTS_2D", str(path), "MODEL.RPN.POST_NMS_TOP_N_TEST", "1000")
    model = build_model(cfg, num_classes=3).eval()
    assert model.conventions()["2d"]["channel_order"] == "RGB"
    raw = (image * 255)[None]  # the toolkit's raw form: RGB in [0, 255]
    with torch.no_grad():
        keyframe = model.normalize_2d(raw, [(256, 320)])
        got, _, _ = model.rpn.propose(ImageList(keyframe, [(256, 320)]), model.backbone_2d(keyframe))
    assert len(expected[0]) > 100 and got[0].shape == expected[0].shape
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-3)  # boxes within 1e-3 px, same order


# Caffe2 blob names of an MSRA ResNet-50 (the R-50.pkl detectron2's C4 models start from): conv1_w,
# res_conv1_bn_{s,b}, res{2..5}_{i}_branch2{a,b,c}_{w,bn_s,bn_b}, res{2..5}_0_branch1_{w,bn_s,bn_b}, fc1000_{w,b}.
def _caffe2_blobs(net):
    sd, blobs = net.state_dict(), {"conv1_w": net.conv1.weight, "res_conv1_bn_s": net.bn1.weight,
                                   "res_conv1_bn_b": net.bn1.bias, "fc1000_w": net.fc.weight, "fc1000_b": net.fc.bias}
    for stage in range(1, 5):
        for i, block in enumerate(getattr(net, f"layer{stage}")):
            unit = f"res{stage + 1}_{i}_"
            for j, part in enumerate("abc", start=1):
                blobs[f"{unit}branch2{part}_w"] = getattr(block, f"conv{j}").weight
                blobs[f"{unit}branch2{part}_bn_s"] = getattr(block, f"bn{j}").weight
                blobs[f"{unit}branch2{part}_bn_b"] = getattr(block, f"bn{j}").bias
            if block.downsample is not None:
                blobs[f"{unit}branch1_w"] = block.downsample[0].weight
                blobs[f"{unit}branch1_bn_s"] = block.downsample[1].weight
                blobs[f"{unit}branch1_bn_b"] = block.downsample[1].bias
    assert len(sd) > len(blobs)  # running statistics are not stored: MSRA's BatchNorms are affine only
    return {k: v.detach().numpy().copy() for k, v in blobs.items()}


def _detectron2_c4(raw_rgb, blobs):
    """detectron2's R-50-C4 forward from the blobs: BGR in [0, 255] minus PIXEL_MEAN (std 1), stride in each
    block's 1x1 conv, FrozenBatchNorm2d (scale / sqrt(var + 1e-5), the affine file's var 1, mean 0)."""
    w = {k: torch.from_numpy(v) for k, v in blobs.items()}
    mean = torch.tensor([103.530, 116.280, 123.675]).view(1, 3, 1, 1)

    def bn(x, name):
        return x * (w[name + "_bn_s"] / math.sqrt(1 + 1e-5)).view(1, -1, 1, 1) + w[name + "_bn_b"].view(1, -1, 1, 1)

    x = raw_rgb.flip(1) - mean
    x = F.relu(bn(F.conv2d(x, w["conv1_w"], stride=2, padding=3), "res_conv1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, blocks in ((2, 3), (3, 4), (4, 6)):  # C4: res2..res4
        for i in range(blocks):
            unit, stride = f"res{stage}_{i}_", (2 if stage > 2 and i == 0 else 1)
            y = F.relu(bn(F.conv2d(x, w[unit + "branch2a_w"], stride=stride), unit + "branch2a"))
            y = F.relu(bn(F.conv2d(y, w[unit + "branch2b_w"], padding=1), unit + "branch2b"))
            y = bn(F.conv2d(y, w[unit + "branch2c_w"]), unit + "branch2c")
            short = bn(F.conv2d(x, w[unit + "branch1_w"], stride=stride), unit + "branch1") if i == 0 else x
            x = F.relu(y + short)
    return x


def test_b_msra_r50_pkl_gives_detectron2s_c4_features_and_keeps_them_in_our_checkpoint(tmp_path):
    net = _randomize(resnet50(weights=None), seed=3)
    with torch.no_grad():
        for m in net.modules():  # affine-only BatchNorm, as the MSRA file implies
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    blobs = _caffe2_blobs(net)
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=2)
    raw = torch.rand((1, 3, 96, 128), generator=torch.Generator().manual_seed(4)) * 255
    with torch.no_grad():
        expected = _detectron2_c4(raw, blobs)

    model = build_model(_cfg("MODEL.WEIGHTS_2D", str(path)), num_classes=3).eval()
    conv = model.conventions()["2d"]
    assert conv["channel_order"] == "BGR" and conv["stride_in_1x1"] and conv["std"] == [1.0, 1.0, 1.0]
    with torch.no_grad():
        got = model.backbone_2d(model.normalize_2d(raw))["0"]
    assert got.shape == expected.shape == (1, 1024, 6, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * expected.abs().max().item())

    # Saved as our own checkpoint, the model brings its conventions to a config that names no 2D weights.
    own = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, own)
    again = build_model(_cfg("MODEL.WEIGHTS", str(own)), num_classes=3).eval()
    assert again.conventions() == model.conventions()
    with torch.no_grad():
        torch.testing.assert_close(again.backbone_2d(again.normalize_2d(raw))["0"], got, rtol=0, atol=0)


def test_conventions_that_disagree_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="INPUT.NORM_3D was removed"):
        _cfg("INPUT.NORM_3D", "tfslim")


# ----------------------------------------------------------------------------------------------
# Files written before the conventions were saved, and conventions that disagree
# ----------------------------------------------------------------------------------------------
def _legacy(state):
    """``state`` as a checkpoint written before the input conventions were saved."""
    return {k: v for k, v in state.items() if not k.startswith(("normalize_2d.", "stride_in_1x1_2d"))
            and ".input_norm." not in k}


def _tfslim_file(path, backbone, *, input_norm: bool):
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()
             if input_norm or not k.startswith("input_norm.")}
    torch.save({"state_dict": state, "meta": {"source": "tfslim_s3dg", "preset": "tfslim", "variant": "s3dg"}}, path)


def test_an_old_converted_3d_file_gets_its_presets_convention(tmp_path):
    from s3d_det.checkpoint.video import load_pretrained_3d
    from s3d_det.modeling import build_video_backbone

    source = build_video_backbone("s3dg", preset="tfslim", width=0.25)
    _tfslim_file(tmp_path / "old.pth", source, input_norm=False)
    target = build_video_backbone("s3dg", preset="tfslim", width=0.25)
    with torch.no_grad():  # make the target's convention something else: the file must set [-1, 1]
        target.input_norm.mean.zero_()
        target.input_norm.std.fill_(255.0)
    assert load_pretrained_3d(target, str(tmp_path / "old.pth"), prefix="backbone.") == []
    convention = target.input_norm.convention()
    assert convention["mean"] == [127.5] * 3 and convention["std"] == [127.5] * 3


def test_a_3d_file_of_another_convention_than_the_preset_is_a_config_error(tmp_path):
    from s3d_det.modeling import build_video_backbone

    source = build_video_backbone("s3dg", preset="tfslim", width=0.25)
    with torch.no_grad():
        source.input_norm.mean.zero_()
        source.input_norm.std.fill_(255.0)  # [0, 1], not TF-slim's [-1, 1]
    _tfslim_file(tmp_path / "w3d.pth", source, input_norm=True)
    with pytest.raises(ConfigError, match="PRESET 'tfslim'"):
        build_model(_cfg("MODEL.BACKBONE_3D.PRESET", "tfslim", "MODEL.PROPOSALS", "gt",
                         "MODEL.WEIGHTS_3D", str(tmp_path / "w3d.pth")), num_classes=3)


def test_an_old_checkpoint_loads_with_the_conventions_it_was_trained_with(tmp_path):
    """Before the conventions were saved, keyframes were always ImageNet RGB and no stride moved: an old
    MODEL.WEIGHTS gets those back even where the config's WEIGHTS_2D (an MSRA file) set BGR and strides; and a
    resumed training checkpoint (the trainer loads strictly) too."""
    net = _randomize(resnet50(weights=None), seed=5)
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(_caffe2_blobs(net), f, protocol=2)
    trained = build_model(_cfg(), num_classes=3)
    old = tmp_path / "old_model_final.pth"
    torch.save({"model": _legacy(trained.state_dict())}, old)
    model = build_model(_cfg("MODEL.WEIGHTS_2D", str(path), "MODEL.WEIGHTS", str(old)), num_classes=3)
    conv = model.conventions()["2d"]
    assert conv["channel_order"] == "RGB" and not conv["stride_in_1x1"]
    assert conv["mean"] == [round(255 * m, 4) for m in (0.485, 0.456, 0.406)]
    blocks = [m for m in model.backbone_2d.modules() if type(m).__name__ == "Bottleneck"]
    assert [b.conv1.stride for b in blocks if b.conv1.stride != (1, 1)] == []  # torchvision's strides, in conv2
    assert sum(b.conv2.stride == (2, 2) for b in blocks) == 2  # layer2 and layer3 of the C4 body
    # the trainer's strict load
    fresh = build_model(_cfg("MODEL.WEIGHTS_2D", str(path)), num_classes=3)
    assert fresh.conventions()["2d"]["channel_order"] == "BGR"
    fresh.load_state_dict(_legacy(trained.state_dict()))  # strict: only the convention keys may be missing
    assert fresh.conventions() == trained.conventions()
    with pytest.raises(RuntimeError, match="rpn.head"):
        fresh.load_state_dict({k: v for k, v in _legacy(trained.state_dict()).items() if not k.startswith("rpn.")})
