"""The helpers of benchmarks/bench_architectures.py and benchmarks/bench_train_cls.py (no training here)."""
import importlib.util
import math
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arch = _load("bench_architectures")
train_cls = _load("bench_train_cls")


def test_heavy_variants_sweep_the_split_points_once_each():
    got = arch.architectures(["i2d", "top_heavy_i3d", "bottom_heavy_i3d@mixed_4c", "top_heavy_i3d@mixed_3b", "i2d"],
                             ["mixed_3b", "end"])
    assert got == [("i2d", "i2d", ""), ("top_heavy_i3d@mixed_3b", "top_heavy_i3d", "mixed_3b"),
                   ("top_heavy_i3d@end", "top_heavy_i3d", "end"),
                   ("bottom_heavy_i3d@mixed_4c", "bottom_heavy_i3d", "mixed_4c")]


@pytest.mark.parametrize("entry, words", [("i4d", "unknown variant"), ("s3dg@mixed_4b", "only bottom_heavy_i3d"),
                                          ("top_heavy_i3d@mixed_9z", "mixed_9z")])
def test_bad_variant_entries_are_named(entry, words):
    with pytest.raises(ValueError, match=words):
        arch.architectures([entry], ["mixed_4b"])


def test_summary_is_the_mean_and_sample_std_over_seeds():
    runs = [{"architecture": "s3dg", "variant": "s3dg", "split_at": None, "seed": s, "top1": t, "params": 10,
             "gflops": 0.5} for s, t in ((0, 50.0), (1, 70.0))]
    runs.append({"architecture": "i2d", "variant": "i2d", "split_at": None, "seed": 0, "top1": 40.0, "params": 5,
                 "gflops": 0.25})
    rows = arch.summarize(runs, ["i3d", "s3dg", "i2d"])  # i3d has no run: no row
    assert [r["architecture"] for r in rows] == ["s3dg", "i2d"]
    assert rows[0]["top1_mean"] == 60.0 and math.isclose(rows[0]["top1_std"], 200 ** 0.5)  # (10^2 + 10^2) / (2 - 1)
    assert rows[1]["top1_std"] == 0.0 and rows[1]["runs"] == 1


def test_size_option():
    assert train_cls.parse_size("64x224") == (64, 224)
    for bad in ("64", "ax224", "0x224"):
        with pytest.raises(Exception, match="64x224|positive"):
            train_cls.parse_size(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_mode_without_cuda_is_one_line_and_status_2(capsys):
    assert train_cls.main(["--device", "cuda", "--amp", "bfloat16", "--size", "64x224"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda") and "\n" not in err
