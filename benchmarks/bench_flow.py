#!/usr/bin/env python
"""Optical-flow speed per process: TV-L1 and DIS (``s3d_det.data.flow.compute_flow``) on 320x240 frames.

    python benchmarks/bench_flow.py [--algorithms tvl1 dis] [--size 320x240] [--pairs 10] [--repeats 5]
                                    [--opencv-contrib DIR] [--quick] [--json OUT.json]

Frames: a seeded texture (noise smoothed with a 2 px Gaussian) cropped so that its content moves by (+3, -2) px
from each frame to the next, grayscale as ``extract_flow`` feeds them. Each algorithm runs in its own spawned
process with one OpenCV thread (as ``extract_flow``'s workers do), so the figure is what one worker process gives:
``--workers N`` of ``tools/prepare_data.py flow`` gives about N times it on N free cores. TV-L1 runs in a process
that imports cv2 from ``--opencv-contrib DIR`` (default ``$S3D_DET_OPENCV_CONTRIB``) when this cv2 lacks
``cv2.optflow``; without either it is left out, saying why. One pair is computed untimed first; then each repeat
times ``--pairs`` pairs. The table gives the median frames/s over ``--repeats`` (min and max beside it) and the
median end-point error against the known motion in the interior (10 px margin), pixels.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from s3d_det.data.flow import ALGORITHMS, CONTRIB_ENV, contrib_dir, contrib_path, has_tvl1  # noqa: E402
from s3d_det.utils.io import write_json  # noqa: E402
from s3d_det.utils.table import format_table  # noqa: E402

MOTION = (3.0, -2.0)  # (dx, dy) px per frame


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--size", default="320x240", help="W x H of the frames (default: 320x240)")
    parser.add_argument("--pairs", type=int, default=10, help="frame pairs timed per repeat (default: 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default: 5)")
    parser.add_argument("--opencv-contrib", metavar="DIR", default=None,
                        help=f"folder holding opencv-contrib for TV-L1 (default: ${CONTRIB_ENV})")
    parser.add_argument("--quick", action="store_true", help="2 repeats of 2 pairs: checks that it runs")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = parser.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected WxH, e.g. 320x240, got {args.size!r}")
    if w < 32 or h < 32 or args.pairs < 1 or args.repeats < 1:
        parser.error("--size must be at least 32x32, --pairs and --repeats at least 1")
    args.shape = (h, w)
    if args.quick:
        args.pairs, args.repeats = 2, 2
    return args


def moving_frames(n: int, shape, seed: int = 0) -> List[np.ndarray]:
    """n grayscale (H, W) uint8 crops of one smoothed texture, its content moving by MOTION each frame."""
    import cv2

    h, w = shape
    dx, dy = int(MOTION[0]), int(MOTION[1])
    pad_x, pad_y = abs(dx) * n + 8, abs(dy) * n + 8
    noise = np.random.default_rng(seed).integers(0, 256, (h + 2 * pad_y, w + 2 * pad_x)).astype(np.float32)
    tex = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return [np.ascontiguousarray(tex[pad_y - dy * k:pad_y - dy * k + h, pad_x - dx * k:pad_x - dx * k + w])
            for k in range(n)]


def time_algorithm(algorithm: str, shape, pairs: int, repeats: int) -> Dict[str, object]:
    """Runs in a spawned process: {fps: [per repeat], epe: median end-point error px, cv2: where it came from}."""
    import cv2

    from s3d_det.data.flow import compute_flow

    cv2.setNumThreads(1)
    frames = moving_frames(pairs + 1, shape)
    compute_flow(frames[0], frames[1], algorithm)  # untimed: creates the flow object, warms caches
    fps, errors = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        flows = [compute_flow(frames[k], frames[k + 1], algorithm) for k in range(pairs)]
        fps.append(pairs / (time.perf_counter() - start))
        inner = np.stack(flows)[:, 10:-10, 10:-10]
        errors.append(float(np.median(np.linalg.norm(inner - np.array(MOTION, np.float32), axis=-1))))
    return {"fps": fps, "epe": statistics.median(errors), "cv2": f"{cv2.__version__} {os.path.dirname(cv2.__file__)}"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rows, results, notes = [], {}, []
    for algorithm in args.algorithms:
        contrib = None
        if algorithm == "tvl1" and not has_tvl1():
            try:
                contrib = contrib_dir(args.opencv_contrib)
            except (OSError, ValueError) as e:
                notes.append(f"tvl1 left out: {e}")
                continue
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            with contrib_path(contrib):
                future = pool.submit(time_algorithm, algorithm, args.shape, args.pairs, args.repeats)
            result = future.result()
        results[algorithm] = result
        fps = result["fps"]
        rows.append([algorithm, f"{statistics.median(fps):.1f}", f"{min(fps):.1f}", f"{max(fps):.1f}",
                     f"{result['epe']:.3f}"])
    h, w = args.shape
    print(f"optical flow per process, {w}x{h}, 1 OpenCV thread, {args.pairs} pairs x {args.repeats} repeats, "
          f"{platform.processor() or platform.machine()}")
    print(format_table(["algorithm", "frames/s (median)", "min", "max", "median EPE px"], rows))
    for note in notes:
        print(note)
    if args.json:
        write_json(args.json, {"size": [w, h], "pairs": args.pairs, "repeats": args.repeats, "results": results,
                               "notes": notes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
