"""Time and peak memory of frame_ap per protocol at full UCF101-24 scale.

Detections are made from the real split-1 test annotations (910 videos, 159,289 frames): on every frame of
every test video, for each GT box a jittered copy with its label, a looser duplicate and a copy with a wrong
label, plus background boxes of random labels, with scores drawn so that true and false positives interleave.
That is over a million rows. Needs ``finalAnnots.mat`` and ``testlist01.txt`` (by default from ../shared/data).

    python benchmarks/bench_eval.py [--repeats 3] [--background 4] [--json OUT]

Prints per protocol: median wall time over the repeats, peak memory that frame_ap allocates (tracemalloc,
which sees numpy's buffers, measured in a separate run), and the mAP.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

from s3d_det.data.annotations import split_videos
from s3d_det.data.converters import ucf24_from_annotations
from s3d_det.evaluation.detections import FrameDetections
from s3d_det.evaluation.frame_map import PROTOCOLS, frame_ap
from s3d_det.utils.io import write_json
from s3d_det.utils.table import format_table

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ucf101_24")


def make_detections(gt, videos, background: int, seed: int = 0) -> np.ndarray:
    """Interchange rows (N, 8) (what ``frame_ap`` reads from a file) over every frame of ``videos``, as described
    in the module docstring."""
    rng = np.random.default_rng(seed)
    num_labels = len(gt["labels"])
    parts = []
    for iv, video in enumerate(videos):
        for label, tubes in gt["gttubes"][video].items():
            for tube in tubes:
                n = len(tube)
                frame, boxes = tube[:, 0].astype(np.float64), tube[:, 1:5].astype(np.float64)
                size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
                for jitter, lab, score in (
                    (0.05, np.full(n, label), rng.uniform(0.3, 1.0, n)),           # mostly true positives
                    (0.25, np.full(n, label), rng.uniform(0.0, 0.8, n)),           # loose duplicates
                    (0.05, (label + rng.integers(1, num_labels, n)) % num_labels, rng.uniform(0.0, 0.7, n)),
                ):
                    b = boxes + rng.normal(0, jitter, (n, 4)) * np.tile(size, 2)
                    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
                    parts.append(FrameDetections(video=np.full(n, iv), frame=frame, label=lab, score=score, boxes=b))
        h, w = gt["resolution"][video]
        n = gt["nframes"][video] * background
        xy = rng.uniform(0, [w - 40, h - 60], (n, 2))
        wh = rng.uniform([20, 40], [80, 120], (n, 2))
        parts.append(FrameDetections(  # keyword arguments are evaluated in order: the same draws as ever
            video=np.full(n, iv), frame=np.repeat(np.arange(1, gt["nframes"][video] + 1), background),
            label=rng.integers(0, num_labels, n), score=rng.uniform(0.0, 0.6, n), boxes=np.hstack([xy, xy + wh]),
        ))
    return FrameDetections.concat(parts).to_rows()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", default=os.path.join(SHARED, "finalAnnots.mat"))
    parser.add_argument("--testlist", default=os.path.join(SHARED, "testlist01.txt"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--background", type=int, default=4, help="background detections per frame")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    for path in (args.annotations, args.testlist):
        if not os.path.isfile(path):
            print(f"error: {path} not found; pass --annotations finalAnnots.mat --testlist testlist01.txt",
                  file=sys.stderr)
            return 2

    gt = ucf24_from_annotations(args.annotations, args.testlist)
    videos = split_videos(gt, 1, "test")
    dets = make_detections(gt, videos, args.background)
    frames = sum(gt["nframes"][v] for v in videos)
    print(f"UCF101-24 split 1: {len(videos)} test videos, {frames:,} frames, {len(dets):,} detections "
          f"({len(dets) / frames:.1f} a frame)\n")

    rows, figures = [], {}
    for protocol in PROTOCOLS:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = frame_ap(gt, videos, dets, protocol)
            times.append(time.perf_counter() - start)
        tracemalloc.start()
        frame_ap(gt, videos, dets, protocol)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        median = statistics.median(times)
        rows.append([protocol, f"{median:.2f}", f"{peak:.0f}", f"{result.mean:.2f}"])
        figures[protocol] = {"seconds": median, "peak_mb": peak, "frame_mAP": result.mean}
    print(format_table(["protocol", "time (s)", "peak MiB", "frame-mAP"], rows))
    print(f"\nmedian of {args.repeats}; peak = what frame_ap allocates on top of the inputs "
          f"({dets.nbytes / 2**20:.0f} MiB of detections)")
    if args.json:
        write_json(args.json, {"rows": len(dets), "frames": frames, "protocols": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
