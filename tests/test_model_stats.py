"""FLOP counting (multiply-adds) and tools/model_stats.py."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from s3d_det.modeling import build_video_classifier
from s3d_det.utils.flops import count_flops, count_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hook_macs(model, clip):
    """Multiply-adds of every Conv3d and Linear, from forward hooks (independent of fvcore)."""
    total = 0

    def conv_hook(m, inputs, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        total += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m, inputs, out):
        nonlocal total
        total += out.numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv3d)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(clip)
    for h in handles:
        h.remove()
    return total


def test_single_conv_count_by_hand():
    conv = nn.Conv3d(4, 8, (3, 3, 3), padding=1, bias=True)
    # 8 outputs x 2*5*5 positions, each 4*27 multiply-adds; the bias is not counted.
    assert count_flops(conv, torch.randn(1, 4, 2, 5, 5)).total == 8 * 2 * 5 * 5 * 4 * 27


@pytest.mark.parametrize("variant", ["i2d", "i3d", "top_heavy_i3d", "s3dg"])
def test_network_count_equals_convs_plus_linears(variant):
    model = build_video_classifier(variant, 10, width=0.25).eval()
    clip = torch.randn(1, 3, 8, 64, 64)
    result = count_flops(model, clip)
    assert result.total == hook_macs(model, clip)
    assert "aten::batch_norm" in result.skipped  # BN is listed as not counted, never silently dropped


def test_torchvision_s3d_matches_its_published_ops():
    # torchvision documents S3D_Weights.KINETICS400_V1 with "_ops": 17.979 (GFLOPs at 16x224x224, multiply-adds).
    clip = torch.randn(1, 3, 16, 224, 224)
    tv = count_flops(torchvision.models.video.s3d().eval(), clip).gflops
    ours = count_flops(build_video_classifier("s3d", 400, preset="torchvision").eval(), clip).gflops
    assert tv == pytest.approx(17.979, abs=5e-4)
    assert ours == pytest.approx(tv, rel=1e-9)


@pytest.mark.slow
def test_model_stats_json(tmp_path):
    out = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, "tools/model_stats.py", "--variants", "s3d", "i3d", "--input", "8", "64", "64",
         "--repeats", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3d" in proc.stdout and "i3d" in proc.stdout
    stats = json.loads(out.read_text())
    assert stats["input"] == [8, 64, 64]
    assert sorted(stats["variants"]) == ["i3d", "s3d"]
    for variant, row in stats["variants"].items():
        model = build_video_classifier(variant, 400).eval()
        assert row["params"] == sum(p.numel() for p in model.parameters()) == count_params(model)
        assert row["gflops"] == pytest.approx(hook_macs(model, torch.randn(1, 3, 8, 64, 64)) / 1e9, rel=1e-9)
        assert row["latency_ms"] > 0


def test_flops_order_as_in_the_paper():
    """The paper's trade-off (Fig. 4/5 and Table 1): I2D < top-heavy I3D < S3D <= S3D-G < bottom-heavy I3D < I3D, at
    the default split (mixed_4b) and full width; counted on 16 x 112 x 112 to keep the test small."""
    clip = torch.randn(1, 3, 16, 112, 112)
    order = ["i2d", "top_heavy_i3d", "s3d", "s3dg", "bottom_heavy_i3d", "i3d"]
    flops = {v: count_flops(build_video_classifier(v, 400).eval(), clip).total for v in order}
    assert flops["i2d"] < flops["top_heavy_i3d"] < flops["s3d"] <= flops["s3dg"] < flops["bottom_heavy_i3d"]
    assert flops["bottom_heavy_i3d"] < flops["i3d"]
