#!/usr/bin/env python
"""The tiny detector on one CPU thread: our convolution route against PyTorch's own, side by side.

    python benchmarks/bench_one_thread.py [--config-file CFG] [--steps 8] [--repeats 5] [--json OUT.json]

On one thread PyTorch runs a 3D convolution whose spatial kernel is 1x1 on its reference kernel, which also
drops the ``channels_last_3d`` layout for every later layer; ``s3d_det.modeling.s3dg._Conv3d`` keeps such
convolutions on oneDNN (its docstring says how). This script builds the config's detector with random weights
(``configs/synthetic/s3dg_tiny.yaml`` by default), sets one torch thread, and times, with each route in turn
(``_Conv3d.forward`` or ``nn.Conv3d.forward``, swapped in the same process, alternating every repeat):

- a training step (``Trainer.run_step``, the 2D backbone still training) on ``--steps`` fixed batches of the
  config's input size (the batch ``benchmarks/bench_train.py`` times), and
- a test forward (eval mode, no gradient) of a batch of ``TEST.BATCH_SIZE`` keyframes of the same size.

It prints the median milliseconds and the ratio. Several threads (``torch.get_num_threads() > 1``) take
PyTorch's oneDNN route in both cases, so there the two are the same code.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402  (the fixed batch and the trainer, as bench_train builds them)

from s3d_det.config import load_config  # noqa: E402
from s3d_det.engine.defaults import known_num_classes  # noqa: E402
from s3d_det.modeling import s3dg  # noqa: E402
from s3d_det.utils.io import write_json  # noqa: E402
from s3d_det.utils.table import format_table  # noqa: E402

ROUTES = {"ours (_Conv3d)": s3dg._Conv3d.forward, "PyTorch's (nn.Conv3d)": nn.Conv3d.forward}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default="configs/synthetic/s3dg_tiny.yaml", metavar="CFG")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per repeat (default: 8)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per route (default: 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    return parser.parse_args(argv)


def _timed(fn, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count * 1000


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    args = parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit("--steps and --repeats must be at least 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(args.config_file, [])
    bench_args = bench_train.parse_args(["--device", "cpu", "--warmup", "1"])
    run = bench_train.prepare_config(args.config_file, cfg, bench_args, torch.device("cpu"), tempfile.mkdtemp())
    trainer, batch = run["trainer"], next(run["streams"]["fixed"])
    model = trainer.model
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.SOLVER.BATCH_SIZE = cfg.TEST.BATCH_SIZE  # fixed_batch makes SOLVER.BATCH_SIZE clips
    num_classes = cfg.MODEL.ROI_HEAD.NUM_CLASSES or known_num_classes(cfg)
    test_batch = bench_train.fixed_batch(test_cfg, num_classes, torch.Generator().manual_seed(1))
    n, (h, w) = cfg.TEST.BATCH_SIZE, test_batch["image_sizes"][0]
    test_batch.update(scale=[(1.0, 1.0)] * n, flipped=[False] * n, orig_size=[(h, w)] * n)  # frames at their own size
    times: Dict[str, Dict[str, List[float]]] = {name: {"train": [], "test": []} for name in ROUTES}
    try:
        for name, forward in ROUTES.items():  # warm-up, untimed
            s3dg._Conv3d.forward = forward
            trainer.run_step(batch, 0)
        for repeat in range(args.repeats):
            order = list(ROUTES) if repeat % 2 == 0 else list(reversed(ROUTES))
            for name in order:
                s3dg._Conv3d.forward = ROUTES[name]
                times[name]["train"].append(_timed(lambda: trainer.run_step(batch, 0), args.steps))
                model.eval()
                with torch.no_grad():
                    times[name]["test"].append(_timed(lambda: model(test_batch), 3))
                model.train()
    finally:
        s3dg._Conv3d.forward = ROUTES["ours (_Conv3d)"]
    result = {name: {key: statistics.median(values) for key, values in parts.items()} for name, parts in times.items()}
    ours, theirs = (result[name] for name in ROUTES)
    rows = [[name, f"{r['train']:.0f}", f"{r['test']:.0f}"] for name, r in result.items()]
    rows.append(["PyTorch's / ours", *(f"{theirs[key] / ours[key]:.2f}x" for key in ("train", "test"))])
    print(f"{args.config_file}, one thread ({platform.processor() or platform.machine()}, torch {torch.__version__}); "
          f"median of {args.repeats}, milliseconds")
    print(format_table(["convolution route", f"training step (batch {cfg.SOLVER.BATCH_SIZE})",
                        f"test forward (batch {cfg.TEST.BATCH_SIZE})"], rows))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
