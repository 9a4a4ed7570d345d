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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _load_tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tf_to_npz_with_a_stand_in_tensorflow(tmp_path, monkeypatch):
    """tf-to-npz writes every variable under its TF name (TensorFlow itself is replaced by a stand-in
    that serves two variables, as tf.train.load_checkpoint's reader does)."""
    import types

    import numpy as np

    variables = {
        "InceptionV1/Conv2d_1a_7x7/weights": np.arange(6, dtype=np.float32).reshape(1, 1, 1, 2, 3),
        "global_step": np.array(7, dtype=np.int64),
    }

    class Reader:
        def get_variable_to_shape_map(self):
            return {k: list(v.shape) for k, v in variables.items()}

        def get_tensor(self, name):
            return variables[name]

    opened = []
    fake_tf = types.SimpleNamespace(train=types.SimpleNamespace(load_checkpoint=lambda p: opened.append(p) or Reader()))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    tool = _load_tool("convert_weights")
    out = tmp_path / "vars.npz"
    assert tool.main(["tf-to-npz", "model.ckpt-1000", str(out)]) == 0
    assert opened == ["model.ckpt-1000"]
    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(variables)
        assert np.array_equal(data["InceptionV1/Conv2d_1a_7x7/weights"], variables["InceptionV1/Conv2d_1a_7x7/weights"])


def test_tf_to_npz_without_tensorflow_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails as if not installed
    tool = _load_tool("convert_weights")
    with pytest.raises(SystemExit, match="needs TensorFlow"):
        tool.main(["tf-to-npz", "model.ckpt", str(tmp_path / "out.npz")])
    assert not (tmp_path / "out.npz").exists()
