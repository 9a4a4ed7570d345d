#!/usr/bin/env python
"""Parameters, FLOPs and CPU latency of every variant of the S3D-G family.

Each variant is built with ``build_video_classifier(variant, num_classes)`` (the default architecture,
or ``--preset``), in eval mode, and measured on one random clip of (1, 3, T, H, W), 64x224x224 unless
``--input T H W`` says otherwise.

FLOPs are multiply-adds (the S3D-G paper's convention), counted by fvcore's ``FlopCountAnalysis``
through ``s3d_det.utils.flops.count_flops``:

* counted: every convolution (stem, 1x1 reduces, 2D/3D/separable 3x3s, the head's 1x1x1 projection)
  and every matrix product (the fully connected layers of S3D-G's feature gating).
* skipped: BatchNorm (folds into the convolution at inference; fvcore counts it by default, we do
  not), max pooling (``aten::max_pool3d``), the head's average pooling (``aten::avg_pool3d``), the
  means of gating and head (``aten::mean``), the gate's ``aten::sigmoid`` and its product with the
  features (``aten::mul``), ReLU, padding, concatenation, splits and dropout. fvcore's warnings about
  them are silenced; the operators actually skipped are listed under the table.

Parameters are counted once per tensor (``fvcore.nn.parameter_count``); BN running statistics are
buffers and are not included.

Latency: median of ``--repeats`` timed forwards after one warm-up forward, batch 1, CPU,
``torch.inference_mode``, ``torch.set_num_threads(--threads)`` (default: every core this process
may use).

The paper's figures (Xie et al., ECCV 2018, at 64x224x224: I3D 107.89, S3D 66.38, S3D-G 71.38
GFLOPs) are printed beside ours when the input is 64x224x224.

Examples::

    python tools/model_stats.py
    python tools/model_stats.py --variants s3d s3dg --input 16 224 224 --no-latency
    python tools/model_stats.py --preset torchvision --variants s3d --json stats.json

``--json FILE`` writes ``{"input": [T, H, W], "variants": {name: {"params": int, "gflops": float,
"latency_ms": float}}}`` (``latency_ms`` is null with ``--no-latency``), atomically.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from s3d_det.modeling import VARIANTS, build_video_classifier
from s3d_det.modeling.presets import PRESETS
from s3d_det.utils.errors import run_tool
from s3d_det.utils.flops import clip_input, count_flops, count_params
from s3d_det.utils.io import available_cores
from s3d_det.utils.io import write_json as write_json_atomic
from s3d_det.utils.table import format_table

# GFLOPs (multiply-adds) reported by Xie et al. (ECCV 2018) for a 64x224x224 clip.
PAPER_INPUT = (64, 224, 224)
PAPER_GFLOPS: Dict[str, float] = {"i3d": 107.89, "s3d": 66.38, "s3dg": 71.38}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="VARIANT",
                        help=f"variants to measure (default: all of {', '.join(VARIANTS)})")
    parser.add_argument("--input", nargs=3, type=int, default=list(PAPER_INPUT), metavar=("T", "H", "W"),
                        help="clip size in frames and pixels (default: 64 224 224)")
    parser.add_argument("--num-classes", type=int, default=400, help="classifier outputs (default: 400)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="architecture preset passed to build_video_classifier (default: none)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per variant (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if min(args.input) < 1:
        parser.error(f"--input sizes must be positive, got {args.input}")
    return args


def median_latency_ms(model: nn.Module, clip: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``repeats`` forwards of ``clip``, in ms, after one warm-up forward."""
    times = []
    with torch.inference_mode():
        model(clip)
        for _ in range(repeats):
            start = time.perf_counter()
            model(clip)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_variant(variant: str, args: argparse.Namespace) -> Optional[dict]:
    """Params, GFLOPs, latency and skipped operators of one variant; None if the preset does not apply."""
    try:
        model = build_video_classifier(variant, args.num_classes, preset=args.preset).eval()
    except ValueError as err:
        print(f"[model_stats] {variant}: skipped, preset {args.preset!r} does not apply ({err})", file=sys.stderr)
        return None
    clip = clip_input(args.input)
    flops = count_flops(model, clip)
    latency = None if args.no_latency else median_latency_ms(model, clip, args.repeats)
    return {"params": count_params(model), "gflops": flops.gflops, "latency_ms": latency, "skipped": flops.skipped}


def stats_table(results: Dict[str, dict], input_size: Sequence[int]) -> str:
    """A plain-text table; the paper's columns only when the input is the paper's 64x224x224."""
    with_paper = tuple(input_size) == PAPER_INPUT
    header = ["variant", "params (M)", "GFLOPs"]
    if with_paper:
        header += ["paper GFLOPs", "ours/paper"]
    header += ["latency ms"]
    rows: List[List[str]] = []
    for name, r in results.items():
        row = [name, f"{r['params'] / 1e6:.3f}", f"{r['gflops']:.2f}"]
        if with_paper:
            paper = PAPER_GFLOPS.get(name)
            row += [f"{paper:.2f}", f"{r['gflops'] / paper:.3f}"] if paper else ["-", "-"]
        row += ["-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"]
        rows.append(row)
    return format_table(header, rows)


def skipped_summary(results: Dict[str, dict]) -> str:
    """One line naming the operators left out of the FLOP counts, with their calls summed over variants."""
    total = Counter()
    for r in results.values():
        total.update(r["skipped"])
    ops = ", ".join(f"{name.replace('aten::', '')} x{n}" for name, n in sorted(total.items()))
    return f"not counted (calls over all variants): {ops or 'none'}"


def write_stats_json(path: str, results: Dict[str, dict], input_size: Sequence[int]) -> None:
    """Writes ``{"input": [T, H, W], "variants": {...}}`` to ``path`` via a temp file and os.replace."""
    payload = {
        "input": [int(n) for n in input_size],
        "variants": {
            name: {"params": int(r["params"]), "gflops": float(r["gflops"]), "latency_ms": r["latency_ms"]}
            for name, r in results.items()
        },
    }
    write_json_atomic(path, payload)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    results = {}
    for variant in args.variants:
        stats = measure_variant(variant, args)
        if stats is not None:
            results[variant] = stats
    t, h, w = args.input
    arch = f"preset={args.preset}" if args.preset else "default architecture"
    latency = "latency not measured" if args.no_latency else (
        f"latency: CPU, batch 1, median of {args.repeats}, {threads} threads")
    print(f"input 1x3x{t}x{h}x{w}, {args.num_classes} classes, {arch}; FLOPs = multiply-adds; {latency}")
    print(stats_table(results, args.input))
    print(skipped_summary(results))
    if args.json:
        write_stats_json(args.json, results, args.input)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    sys.exit(run_tool(main))
