"""The command-line tools, run as a user runs them (subprocess), on files the tests make."""
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from s3d_det.checkpoint import load_converted
from s3d_det.config import get_cfg
from s3d_det.modeling import build_video_backbone_from_cfg, build_video_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "s3d-random.pth"
    torch.save(torchvision.models.video.s3d().state_dict(), path)
    return path


def test_convert_weights_torchvision_roundtrip(torchvision_file, tmp_path):
    out = tmp_path / "converted.pth"
    proc = run_tool("tools/convert_weights.py", "torchvision_s3d", str(torchvision_file), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "0 missing, 0 unused" in proc.stdout
    state, meta = load_converted(str(out))
    assert meta == {"source": "torchvision_s3d", "preset": "torchvision", "variant": "s3d", "has_head": True}
    model = build_video_classifier("s3d", 400, preset="torchvision")
    model.load_state_dict(state, strict=True)
    # A tensor picked by hand: torchvision's Mixed_4b branch 1 temporal conv is features.8.branch1.1.1.0.
    source = torch.load(torchvision_file, weights_only=True)
    assert torch.equal(state["backbone.mixed_4b.branch1.conv_t.weight"], source["features.8.branch1.1.1.0.weight"])


def test_convert_weights_refuses_missing_keys_and_writes_nothing(torchvision_file, tmp_path):
    source = torch.load(torchvision_file, weights_only=True)
    del source["features.5.branch0.0.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(source, broken)
    out = tmp_path / "out.pth"
    proc = run_tool("tools/convert_weights.py", "torchvision_s3d", str(broken), str(out))
    assert proc.returncode == 1
    assert "missing: backbone.mixed_3b.reduce.conv.weight" in proc.stdout
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp_")]


def test_convert_weights_names_unreadable_file(tmp_path):
    bad = tmp_path / "not_a_checkpoint.pth"
    bad.write_bytes(b"this is not a checkpoint")
    proc = run_tool("tools/convert_weights.py", "milnce_s3dg", str(bad), str(tmp_path / "out.pth"))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr


def test_config_adapter_follows_preset_and_overrides():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE_3D.VARIANT = "s3d"
    cfg.MODEL.BACKBONE_3D.PRESET = "torchvision"
    cfg.MODEL.BACKBONE_3D.OUT_FEATURES = ["mixed_4f"]
    backbone = build_video_backbone_from_cfg(cfg)
    assert backbone.conv_1a.conv.kernel_size == (1, 7, 7)  # torchvision's separable 7x7 stem
    assert backbone.conv_1a.conv_t.kernel_size == (7, 1, 1)
    assert backbone.out_features == ("mixed_4f",)
    cfg.MODEL.BACKBONE_3D.STEM_STYLE = "full"  # a key set in the config wins over the preset
    assert build_video_backbone_from_cfg(cfg).conv_1a.conv.kernel_size == (7, 7, 7)


def test_config_yaml_inherits_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("MODEL:\n  BACKBONE_3D:\n    VARIANT: i3d\n    WIDTH: 0.5\n")
    leaf = tmp_path / "leaf.yaml"
    leaf.write_text("_BASE_: base.yaml\nMODEL:\n  BACKBONE_3D:\n    WIDTH: 0.25\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(leaf))
    assert cfg.MODEL.BACKBONE_3D.VARIANT == "i3d"
    assert cfg.MODEL.BACKBONE_3D.WIDTH == 0.25
    with pytest.raises((KeyError, AssertionError), match="NOT_A_KEY"):
        cfg.merge_from_list(["MODEL.BACKBONE_3D.NOT_A_KEY", 1])
