"""Exporting the detector (s3d_det.deploy, tools/export.py): the exportable modules give ActionDetector.forward's
eval detections; each format (exported program, TorchScript, ONNX through onnxruntime) gives the eager detections
on frames of a synthetic video (boxes within 0.5 px, scores within 1e-3, the same labels, in the same order); the
3D part's features and the frame part's detections as the eager model's; the tool's bad input ends in one line and
exit 2, and nothing is overwritten. A tiny seeded random detector with thresholds at 0 so that it detects."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from s3d_det.data.clips import clip_frames, resize_frame, to_tensor
from s3d_det.data.dataset import stack_padded
from s3d_det.data.synthetic import plan_video, render_frame
from s3d_det.deploy import Clip3DForExport, DetectorForExport, FrameForExport, export_detector, load_exported
from s3d_det.modeling.detector import build_action_detector
from s3d_det.modeling.fusion import fold_batchnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIG = (120, 160)  # the synthetic video's frames (h, w)
CLIP = 8

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_detector():
    """A seeded ResNet-18 + quarter-width S3D-G detector, scored as the quick start ("person", context 1.5), with
    every threshold at 0 (random weights score low) and BatchNorm statistics that are not the identity. 20 proposals:
    the head's batch of RoIs may reach 16, where the S3D-G convolutions' one-thread CPU path changes (it must not
    decide on the data-dependent size under torch.export)."""
    torch.manual_seed(0)
    model = build_action_detector(num_classes=3, backbone_2d="resnet18", variant_3d="s3dg", width_3d=0.25,
                                  feature_3d="mixed_3c", anchor_sizes=(16, 32), rpn_post_nms_top_n_test=20,
                                  box_score_thresh=0.0, box_detections_per_img=20, scoring="person", roi_context=1.5)
    g = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.05)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) * 0.5 + 0.75)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_detector()


def video_inputs(frame: int, short_side: int = 60, size_divisible: int = 32):
    """Frame ``frame`` of synthetic video 0 as VideoDetector makes it: (keyframe (1, 3, H, W), clip (1, 3, T, H, W),
    image_size, scale, orig_size) as tensors, and the same as a batch dict for ActionDetector.forward."""
    plan = plan_video(seed=0, index=0, size=ORIG)
    n = plan.nframes
    h, w = short_side, round(short_side * ORIG[1] / ORIG[0])

    def rgb(t):
        return resize_frame(np.ascontiguousarray(render_frame(plan, t)[0][:, :, ::-1]), (h, w))

    keyframe = stack_padded([to_tensor(rgb(frame))], size_divisible)
    clip = stack_padded([to_tensor(np.stack([rgb(t) for t in clip_frames(frame, n, CLIP, 2)]))], size_divisible)
    scale = (h / ORIG[0], w / ORIG[1])
    tensors = (keyframe, clip, torch.tensor([h, w]), torch.tensor(scale, dtype=torch.float32), torch.tensor(ORIG))
    batch = {"keyframe": keyframe, "clip": clip, "image_sizes": [(h, w)], "scale": [scale], "flipped": [False],
             "orig_size": [ORIG]}
    return tensors, batch


def assert_same_detections(got, expected, what):
    boxes, scores, labels = (t.detach() for t in got)
    assert len(expected["scores"]) > 0, f"{what}: the eager model detects nothing: the test would be empty"
    assert labels.dtype == torch.int64 and boxes.shape == (len(scores), 4), what
    assert len(scores) == len(expected["scores"]), f"{what}: {len(scores)} detections, eager {len(expected['scores'])}"
    assert torch.equal(labels, expected["labels"]), what
    assert (boxes - expected["boxes"]).abs().max() <= 0.5, what
    assert (scores - expected["scores"]).abs().max() <= 1e-3, what


def test_exportable_modules_equal_the_detector_forward(model):
    """Eager, unfolded: the tensor-only rewrite gives ActionDetector.forward's detections, as it is (exactly up to
    float rounding), on frames at different places in the video; the parts compose to the whole."""
    whole = DetectorForExport(model, fold_bn=False)
    clip_3d, frame_part = Clip3DForExport(model, fold_bn=False), FrameForExport(model, fold_bn=False)
    with torch.no_grad():
        for frame in (5, 17):
            tensors, batch = video_inputs(frame)
            expected = model(batch)[0]
            got = whole(*tensors)
            assert_same_detections(got, expected, f"frame {frame}")
            assert (got[0] - expected["boxes"]).abs().max() < 1e-3
            features = model.backbone_3d(batch["clip"], batch["image_sizes"])[model.feature_3d]
            assert torch.allclose(clip_3d(tensors[1], tensors[2]), features, atol=1e-5)
            keyframe, _, size, scale, orig = tensors
            assert_same_detections(frame_part(keyframe, features, size, scale, orig), expected, "frame part")


@pytest.mark.parametrize("variant", ["fpn-joint", "sigmoid-class-thresholds"])
def test_exportable_modules_equal_the_detector_forward_on_other_heads(variant):
    """The ResNet-FPN RPN (5 levels, per-level top-n and NMS) with Faster R-CNN's joint softmax, and the multi-label
    sigmoid head with per-action thresholds, no context: the same detections as ActionDetector.forward."""
    torch.manual_seed(0)
    kwargs = dict(fpn=True, anchor_sizes=(8, 16, 32, 64, 128), scoring="joint") if variant == "fpn-joint" else \
        dict(anchor_sizes=(16, 32), loss="sigmoid", box_class_score_thresh=(0.4, 0.5, 0.45))
    model = build_action_detector(num_classes=3, backbone_2d="resnet18", variant_3d="s3dg", width_3d=0.25,
                                  feature_3d="mixed_3c", rpn_post_nms_top_n_test=6, box_score_thresh=0.0,
                                  box_detections_per_img=20, **kwargs).eval()
    whole = DetectorForExport(model, fold_bn=False)
    with torch.no_grad():
        for frame in (5, 17):
            tensors, batch = video_inputs(frame)
            assert_same_detections(whole(*tensors), model(batch)[0], f"{variant}, frame {frame}")


def test_exportable_modules_leave_the_model_alone(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    DetectorForExport(model)  # folds BatchNorm in a copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


FORMAT_FILES = {"exported-program": "detector.pt2", "torchscript": "detector.pt", "onnx": "detector.onnx"}


@pytest.mark.parametrize("fmt", ["exported-program", "torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_exported_detector_gives_the_eager_detections(model, fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="the ONNX exporter (torch.onnx.export, dynamo) needs onnxscript")
        pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    path = str(tmp_path / FORMAT_FILES[fmt])
    export_detector(model, fmt, path, height=64, width=96, clip_length=CLIP)
    runner = load_exported(path)
    folded = fold_batchnorm(model)  # what the exported graph runs (and VideoDetector)
    sizes = [60] if fmt == "torchscript" else [60, 90]  # TorchScript is fixed to the traced size; the others not
    for short_side in sizes:
        for frame in (5, 17):
            tensors, batch = video_inputs(frame, short_side)
            with torch.no_grad():
                expected = folded(batch)[0]
            assert_same_detections(runner(*tensors), expected, f"{fmt}, frame {frame}, short side {short_side}")


@pytest.mark.parametrize("fmt", ["exported-program", pytest.param("onnx", marks=pytest.mark.slow)])
def test_exported_parts_give_the_eager_features_and_detections(model, fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="the ONNX exporter (torch.onnx.export, dynamo) needs onnxscript")
        pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    files = export_detector(model, fmt, str(tmp_path), parts=True, height=64, width=96, clip_length=CLIP)
    clip_3d, frame_part = load_exported(files["clip_3d"]), load_exported(files["frame"])
    folded = fold_batchnorm(model)
    for frame in (5, 17):
        tensors, batch = video_inputs(frame)
        keyframe, clip, size, scale, orig = tensors
        with torch.no_grad():
            features = folded.backbone_3d(batch["clip"], batch["image_sizes"])[folded.feature_3d]
            (got_features,) = clip_3d(clip, size)
            assert (got_features - features).abs().max() <= 1e-4 * max(1.0, float(features.abs().max()))
            # the frame part on interpolated features (as the streaming demo feeds it): the eager head on the same
            mixed = torch.lerp(features, features.flip(2), 0.5)
            expected = folded(batch, features=mixed)[0]
        assert_same_detections(frame_part(keyframe, mixed, size, scale, orig), expected, f"{fmt} frame part")


# -- the tool -------------------------------------------------------------------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(ROOT, "tools", "export.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = os.path.join(ROOT, "configs", "synthetic", "s3dg_tiny.yaml")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random weights of the quick-start config (3 actions), as a bare state dict."""
    from s3d_det.config import load_config
    from s3d_det.modeling.build import build_action_detector_from_cfg

    torch.manual_seed(0)
    model = build_action_detector_from_cfg(load_config(TINY), 3)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def run_export(argv, capsys):
    from s3d_det.utils.errors import run_tool

    status = run_tool(_tool().main, argv)
    return status, capsys.readouterr().err


def test_tool_bad_input_is_one_line_and_exit_2(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("S3D_DET_DATASETS", str(tmp_path / "no-datasets"))
    out = str(tmp_path / "model.pt2")
    cases = [
        (["--weights", str(tmp_path / "missing.pth"), "--format", "exported-program", out], "missing.pth"),
        (["--weights", tiny_weights, "--format", "tensorrt", out], "tensorrt"),
        (["--weights", tiny_weights, "--format", "onnx", out], ".onnx"),  # the suffix must say the format
        (["--weights", tiny_weights, "--format", "exported-program", "--height", "100", "--width", "96", out],
         "SIZE_DIVISIBLE"),
    ]
    for argv, named in cases:
        status, err = run_export(["--config-file", TINY, *argv], capsys)
        assert status == 2, argv
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
    assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["no-datasets"]
    # an existing OUT is never replaced without --force
    with open(out, "w") as f:
        f.write("a user's file")
    status, err = run_export(["--config-file", TINY, "--weights", tiny_weights, "--format", "exported-program", out],
                             capsys)
    assert status == 2 and "exists" in err and err.count("\n") == 1
    assert open(out).read() == "a user's file"
    # --parts --force replaces an earlier export's folder only, never a folder holding anything else
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep")
    status, err = run_export(["--config-file", TINY, "--weights", tiny_weights, "--format", "torchscript", "--parts",
                              "--height", "64", "--width", "96", "--force", str(folder)], capsys)
    assert status == 2 and "precious.txt" in err and "not replaced" in err and err.count("\n") == 1, err
    assert sorted(os.listdir(folder)) == ["precious.txt"]


def test_tool_writes_the_file_and_its_meta(tiny_weights, tmp_path, capsys, monkeypatch):
    """TorchScript, the quickest to trace (the other formats' export is tested above); --force replaces."""
    monkeypatch.setenv("S3D_DET_DATASETS", str(tmp_path / "no-datasets"))
    out = str(tmp_path / "tiny.pt")
    with open(out, "w") as f:
        f.write("old")
    status, err = run_export(["--config-file", TINY, "--weights", tiny_weights, "--format", "torchscript",
                              "--height", "64", "--width", "96", "--force", out], capsys)
    assert status == 0, err
    meta = json.load(open(out + ".json"))
    assert meta["classes"] == ["action 0", "action 1", "action 2"]
    assert meta["clip_length"] == 8 and meta["clip_stride"] == 2 and meta["export_size"] == [64, 96]
    assert [i["name"] for i in meta["files"]["detector"]["inputs"]] == ["keyframe", "clip", "image_size", "scale",
                                                                        "orig_size"]
    assert meta["files"]["detector"]["inputs"][0]["shape"] == [1, 3, 64, 96]  # TorchScript: the traced size
    assert not meta["dynamic_size"] and meta["torch"] == torch.__version__
    boxes, scores, labels = load_exported(out)(torch.zeros(1, 3, 64, 96), torch.zeros(1, 3, 8, 64, 96),
                                               torch.tensor([60, 80]), torch.tensor([0.5, 0.5]),
                                               torch.tensor([120, 160]))
    assert boxes.shape[1:] == (4,) and scores.shape == labels.shape
    with pytest.raises(ValueError, match="traced at 64x96"):
        load_exported(out)(torch.zeros(1, 3, 96, 96), torch.zeros(1, 3, 8, 96, 96), torch.tensor([96, 96]),
                           torch.tensor([1.0, 1.0]), torch.tensor([96, 96]))
    assert sorted(f for f in os.listdir(tmp_path) if f != "no-datasets") == ["tiny.pt", "tiny.pt.json"]


@pytest.mark.parametrize("fmt,threshold", [("exported-program", 0.99), ("exported-program", "one"),
                                            pytest.param("onnx", "one", marks=pytest.mark.slow)])
def test_exported_detector_takes_frames_with_no_or_one_detection(threshold, fmt, tmp_path):
    # the ONNX file is translated from the same exported program: its no-detection case is the program's
    """torchvision's fake NMS says it keeps at least 2 boxes (torch.export then asserts so at run time): a frame where
    the head keeps no proposal, or the NMS one detection, must still give the eager detections."""
    model = tiny_detector()
    tensors, batch = video_inputs(5)
    if threshold == "one":  # the threshold between the best and the second-best detection
        with torch.no_grad():
            scores = model(batch)[0]["scores"]
        threshold = float(scores[:2].mean())
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="the ONNX exporter (torch.onnx.export, dynamo) needs onnxscript")
        pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    model.roi_head.score_thresh = threshold
    path = str(tmp_path / FORMAT_FILES[fmt])
    export_detector(model, fmt, path, height=64, width=96, clip_length=CLIP)
    with torch.no_grad():
        expected = fold_batchnorm(model)(batch)[0]
    boxes, scores, labels = load_exported(path)(*tensors)
    assert len(scores) == len(expected["scores"]) == (0 if threshold == 0.99 else 1)
    assert torch.equal(labels, expected["labels"]) and torch.allclose(scores, expected["scores"], atol=1e-3)
