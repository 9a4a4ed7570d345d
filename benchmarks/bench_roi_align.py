#!/usr/bin/env python
"""Tube RoIAlign on the CPU: torchvision's kernel, frame by frame, against ``s3d_det.modeling.roi_align`` (one
sparse matrix for all time steps), forward and forward + backward, side by side.

Shapes (random features and boxes of a person's size, seeded):

- ``tiny, training``: the quick start's training step: 4 clips, 8 RoIs each, ``mixed_3c`` at width 0.25 (120
  channels, T' = 4, 16 x 20 cells at stride 8), forward + backward.
- ``tiny, test``: 8 keyframes, 30 proposals each, forward only.
- ``R50 + S3D-G, training``: the JHMDB config's shapes: 2 clips, 32 RoIs each, ``mixed_4f`` (832 channels, T' = 8,
  15 x 20 cells at stride 16), forward + backward.

The two ops alternate within each repeat; figures are medians over ``--repeats`` of the mean of ``--iters``
calls. The last column is the largest difference of outputs and input gradients between the two.
Options: ``--threads`` (default: all cores), ``--repeats`` (5), ``--iters`` (10), ``--quick`` (2 repeats of
2 calls), ``--json FILE``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from s3d_det.modeling.roi_align import torchvision_tube_roi_align, tube_roi_align
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

CASES = {  # name: (clips, boxes a clip, channels, T', h, w, stride, backward)
    "tiny, training": (4, 8, 120, 4, 16, 20, 8, True),
    "tiny, test": (8, 30, 120, 4, 16, 20, 8, False),
    "R50 + S3D-G, training": (2, 32, 832, 8, 15, 20, 16, True),
}


def make_case(clips: int, per_clip: int, channels: int, t: int, h: int, w: int, stride: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(clips, channels, t, h, w, generator=g).contiguous(memory_format=torch.channels_last_3d)
    height, width = h * stride, w * stride
    boxes = []
    for _ in range(clips):  # people: 30-55% of the frame tall, 40% as wide
        bh = (torch.rand(per_clip, generator=g) * 0.25 + 0.3) * height
        bw = bh * 0.4
        x1 = torch.rand(per_clip, generator=g) * (width - bw)
        y1 = torch.rand(per_clip, generator=g) * (height - bh)
        boxes.append(torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1))
    return features, boxes


def time_call(fn: Callable[[], None], iters: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters * 1e3


def run_case(name: str, args) -> Dict[str, float]:
    clips, per_clip, channels, t, h, w, stride, backward = CASES[name]
    features, boxes = make_case(clips, per_clip, channels, t, h, w, stride)
    kw = dict(output_size=7, spatial_scale=1 / stride)
    grad = torch.randn(clips * per_clip, channels, t, 7, 7, generator=torch.Generator().manual_seed(1))
    ops = {"torchvision": lambda x: torchvision_tube_roi_align(x, boxes, **kw),
           "sparse": lambda x: tube_roi_align(x, boxes, **kw)}

    def call(op):
        if not backward:
            with torch.no_grad():
                return lambda: op(features)
        x = features.detach().requires_grad_()
        return lambda: torch.autograd.grad(op(x), x, grad)

    times: Dict[str, List[float]] = {key: [] for key in ops}
    for r in range(args.repeats):
        for key in (list(ops) if r % 2 == 0 else list(ops)[::-1]):
            times[key].append(time_call(call(ops[key]), args.iters))
    x = features.detach().requires_grad_()
    outs = {key: op(x) for key, op in ops.items()}
    diff = (outs["torchvision"] - outs["sparse"]).abs().max().item()
    if backward:
        grads = [torch.autograd.grad(o, x, grad)[0] for o in outs.values()]
        diff = max(diff, (grads[0] - grads[1]).abs().max().item())
    result = {f"{key}_ms": statistics.median(v) for key, v in times.items()}
    return {**result, "speedup": result["torchvision_ms"] / result["sparse_ms"], "max_abs_diff": diff}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per op (default: 5)")
    parser.add_argument("--iters", type=int, default=10, help="calls per repeat (default: 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats of 2 calls")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write every figure to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.iters = 2, 2
    if args.repeats < 1 or args.iters < 1:
        parser.error("--repeats and --iters must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or available_cores())
    results = {name: run_case(name, args) for name in CASES}
    rows = [[name, "forward + backward" if CASES[name][-1] else "forward", f"{r['torchvision_ms']:.2f}",
             f"{r['sparse_ms']:.2f}", f"{r['speedup']:.2f}x", f"{r['max_abs_diff']:.1e}"]
            for name, r in results.items()]
    print(f"tube RoIAlign, CPU, {torch.get_num_threads()} threads, median of {args.repeats} x {args.iters} calls (ms)")
    print(format_table(["case", "pass", "torchvision", "sparse", "speed-up", "max |diff|"], rows))
    if args.json:
        write_json(args.json, {"threads": torch.get_num_threads(), "cases": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
