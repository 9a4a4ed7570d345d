#!/usr/bin/env python
"""Exported detector speed on the CPU: eager PyTorch, torch.compile, onnxruntime and the torch.export program.

    python benchmarks/bench_export.py [--configs CFG ...] [--repeats 5] [--threads N] [--backends ...]
        [--json OUT.json]

For each config (default: the quick-start ``configs/synthetic/s3dg_tiny.yaml`` and the R50 + S3D-G
``configs/ucf24/s3dg_r50_16x1.yaml``), the detector with random weights (BatchNorm folded, as ``VideoDetector`` and
``tools/export.py``) is wrapped as ``s3d_det.deploy``'s three exportable modules at a 4:3 frame of the config's
``INPUT.SHORT_SIDE_TEST`` (padded to ``SIZE_DIVISIBLE``): the 3D part (clip -> features), the frame part (keyframe +
features -> detections) and the whole detector. Each runs in every backend side by side in one process:

- ``eager``: the module itself (torchvision's RoIAlign kernel in the head; ``ActionDetector`` on the CPU uses the
  sparse product instead);
- ``compile``: ``torch.compile`` (inductor; the NMS and the data-dependent selections break the graph);
- ``onnxruntime``: the module exported to ONNX (``tools/export.py``'s path), onnxruntime's CPU provider with
  ``--threads`` intra-op threads;
- ``exported-program``: the ``torch.export`` program, loaded back (``torch.export.load(...).module()``).

A backend that fails (to compile, export or run) says so in its cell ("failed: <error type>") instead of
stopping the run. Each cell: one warm-up call, then ``--repeats`` timed calls on the same random inputs (random
weights give few detections above the head's score threshold under "person" scoring: time a trained model for the
head's full cost), the median as frames/s (frame part) or clips/s (3D part, whole detector). Run it alone on the
machine. ``--json`` writes the cells.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import torch

from s3d_det.config import load_config
from s3d_det.deploy.export import PARTS, default_size, example_inputs, export_module
from s3d_det.deploy.runtime import load_exported
from s3d_det.engine.defaults import known_num_classes
from s3d_det.modeling.build import build_action_detector_from_cfg
from s3d_det.modeling.fusion import fold_batchnorm
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

CONFIGS = ("configs/synthetic/s3dg_tiny.yaml", "configs/ucf24/s3dg_r50_16x1.yaml")
BACKENDS = ("eager", "compile", "onnxruntime", "exported-program")
PART_ORDER = ("clip_3d", "frame", "detector")
UNITS = {"clip_3d": "clips/s", "frame": "frames/s", "detector": "clips/s"}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), metavar="CFG", help="detector configs")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads, torch and onnxruntime (default: all)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="backends to time")
    parser.add_argument("--json", metavar="OUT.json", help="also write the cells")
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats and --threads must be at least 1")
    return args


def _median_rate(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (compilation, first-call allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def _runner(backend: str, module: torch.nn.Module, inputs: Dict[str, torch.Tensor], part: str, folder: str,
            threads: int, divisible: int) -> Callable[[], object]:
    args = tuple(inputs.values())
    if backend == "eager":
        return lambda: module(*args)
    if backend == "compile":
        # the S3D-G units share their forward's code at many shapes: dynamo's default 8 recompilations of one
        # function would leave most of the network eager
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
        compiled = torch.compile(module, backend="inductor")
        return lambda: compiled(*args)
    fmt = "onnx" if backend == "onnxruntime" else "exported-program"
    path = os.path.join(folder, f"{part}{'.onnx' if fmt == 'onnx' else '.pt2'}")
    export_module(module, inputs, fmt, path, output_names=PARTS[part][2], size_divisible=divisible)
    runner = load_exported(path, threads=threads)
    return lambda: runner(*args)


def bench_config(config: str, args, threads: int) -> List[dict]:
    cfg = load_config(config, ["MODEL.DEVICE", "cpu"])
    classes = cfg.MODEL.ROI_HEAD.NUM_CLASSES or (known_num_classes(cfg) or 10)
    torch.manual_seed(0)
    model = fold_batchnorm(build_action_detector_from_cfg(cfg, classes))
    divisible = cfg.INPUT.SIZE_DIVISIBLE or 1
    height, width = default_size(cfg.INPUT.SHORT_SIDE_TEST, divisible)
    cells = []
    with tempfile.TemporaryDirectory() as folder:
        for part in PART_ORDER:
            inputs = example_inputs(model, part, height=height, width=width, clip_length=cfg.INPUT.CLIP_LENGTH)
            module = PARTS[part][0](model, fold_bn=False).eval()
            for backend in args.backends:
                try:
                    with torch.no_grad(), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        run = _runner(backend, module, inputs, part, folder, threads, divisible)
                        rate = _median_rate(run, args.repeats)
                    cell = {"rate": rate}
                except Exception as e:  # noqa: BLE001 - a backend that fails is a result, not the end of the run
                    first = (str(e).splitlines() or [""])[0][:80]
                    cell = {"rate": None, "short": f"failed: {type(e).__name__}",
                            "error": f"failed: {type(e).__name__}: {first}"}
                    print(f"{os.path.basename(config)} {part} {backend}: {cell['error']}", file=sys.stderr)
                torch._dynamo.reset()
                cells.append({"config": config, "part": part, "backend": backend, "size": [height, width],
                              "clip_length": cfg.INPUT.CLIP_LENGTH, **cell})
    return cells


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    cells = [cell for config in args.configs for cell in bench_config(config, args, threads)]
    rows = []
    for config in args.configs:
        for part in PART_ORDER:
            mine = {c["backend"]: c for c in cells if c["config"] == config and c["part"] == part}
            size = next(iter(mine.values()))
            label = f"{os.path.splitext(os.path.basename(config))[0]} {part} ({size['size'][0]}x{size['size'][1]}, " \
                    f"T={size['clip_length']})"
            rows.append([label, UNITS[part]] + [f"{mine[b]['rate']:.2f}" if mine[b]["rate"] is not None
                                                else mine[b]["short"] for b in args.backends])
    print(f"exported detector, CPU, {threads} threads, torch {torch.__version__}, median of {args.repeats} calls")
    print(format_table(["config / part", "unit", *args.backends], rows))
    if args.json:
        write_json(args.json, {"threads": threads, "repeats": args.repeats, "torch": torch.__version__, "cells": cells})
    return 0


if __name__ == "__main__":
    sys.exit(main())
