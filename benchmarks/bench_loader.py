#!/usr/bin/env python
"""Data loading speed: 16-frame clips at 320x240 from JPEG folders, per DataLoader worker count.

Writes its own dataset in a temporary folder: ``--videos`` videos of 64 frames (smooth gradients plus
moving noisy blobs, JPEG quality 95, written with ``cv2.imwrite``), every frame a keyframe with one box.
A ``TrainClipDataset`` (T=16, stride 1, no resize, no augmentation, ImageNet / [0, 1] normalisation)
is read through a ``DataLoader`` (batch 8, ``collate``) for each worker count in ``--workers``; each
repeat is one full pass with fresh workers (their start-up included).

Per worker count it prints the median clips/s over ``--repeats``, the share of the per-sample time
(inside ``__getitem__``) spent in OpenCV reading and decoding JPEGs, and the decodes per clip beside
the distinct frames per clip: equal for every clip when no frame is decoded twice (clips at the video
ends repeat edge frames, so they hold fewer than 16 distinct frames).

Options: ``--repeats`` (default 5), ``--workers`` (default 0 1 2), ``--videos`` (default 4), ``--quick``
(2 videos, 2 repeats), ``--json FILE`` (every figure, written atomically).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from s3d_det.data.annotations import make_gt
from s3d_det.data.clips import ClipTransform, clip_frames
from s3d_det.data.dataset import TrainClipDataset, collate
from s3d_det.utils.io import available_cores, write_json
from s3d_det.utils.table import format_table

H, W, FRAMES, T, BATCH = 240, 320, 64, 16, 8


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="full passes per worker count (default: 5)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default: 0 1 2)")
    parser.add_argument("--videos", type=int, default=4, help="videos of 64 frames to write (default: 4)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 videos, 2 repeats")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write every figure to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.repeats = 2, min(args.repeats, 2)
    if args.repeats < 1 or args.videos < 1 or min(args.workers) < 0:
        parser.error("--repeats and --videos must be at least 1, --workers at least 0")
    return args


def write_dataset(root: str, videos: int) -> dict:
    """``videos`` JPEG folders of 64 frames at 320x240 under ``root/Frames``; returns their GT (one box
    per frame)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    names = [f"bench/v{i:02d}" for i in range(videos)]
    for i, name in enumerate(names):
        folder = os.path.join(root, "Frames", name)
        os.makedirs(folder)
        base = (np.stack([xx / W, yy / H, (xx + yy) / (W + H)], -1) * 200 + 20 * i).astype(np.float32)
        for k in range(1, FRAMES + 1):
            img = base + rng.normal(0, 8, (H, W, 3)).astype(np.float32)
            for j in range(4):  # blobs that move with k
                cx, cy = (40 + 60 * j + 3 * k) % W, (30 + 50 * j + 2 * k) % H
                img[max(cy - 20, 0):cy + 20, max(cx - 15, 0):cx + 15] = 255 - 50 * j
            cv2.imwrite(os.path.join(folder, f"{k:05d}.jpg"), np.clip(img, 0, 255).astype(np.uint8))
    box = [100, 60, 180, 200]
    return make_gt(labels=["act"], nframes={n: FRAMES for n in names}, resolution={n: (H, W) for n in names},
                   gttubes={n: {0: [np.array([[k, *box] for k in range(1, FRAMES + 1)])]} for n in names},
                   train_videos=names, test_videos=[])


class CountingDataset(TrainClipDataset):
    """Adds to each sample its decode count, OpenCV decode seconds and ``__getitem__`` seconds (deltas
    of the frame source's counters, so they come back from any worker)."""

    def __getitem__(self, index: int) -> dict:
        video, _ = self.samples[index]
        src = self.source(video)
        decodes, decode_s = src.decode_count, src.decode_seconds
        start = time.perf_counter()
        sample = super().__getitem__(index)
        sample["item_s"] = time.perf_counter() - start
        sample["decodes"] = src.decode_count - decodes
        sample["decode_s"] = src.decode_seconds - decode_s
        return sample

    def distinct_frames(self, video: str, frame: int) -> int:
        """Distinct frames in the clip of keyframe ``frame``: the decodes it should cost."""
        return len(set(clip_frames(frame, self.nframes[video], self.clip_length, self.clip_stride, self.boundary)))


def one_pass(ds: CountingDataset, workers: int) -> Dict[str, object]:
    loader = DataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=collate)
    stats: Dict[str, List[float]] = {"item_s": [], "decodes": [], "decode_s": []}
    distinct: List[int] = []
    start = time.perf_counter()
    for batch in loader:
        for key in stats:
            stats[key].extend(batch[key])
        distinct.extend(ds.distinct_frames(v, f) for v, f in zip(batch["video"], batch["frame"]))
    wall = time.perf_counter() - start
    redecoded = sum(d != n for d, n in zip(stats["decodes"], distinct))
    return {"clips_per_s": len(ds) / wall, "decode_share": sum(stats["decode_s"]) / sum(stats["item_s"]),
            "ms_per_clip": 1e3 * statistics.mean(stats["item_s"]),
            "decodes_per_clip": statistics.mean(stats["decodes"]),
            "distinct_per_clip": statistics.mean(distinct), "clips_decoding_a_frame_twice": redecoded}


def bench(ds: CountingDataset, workers: Sequence[int], repeats: int) -> List[dict]:
    rows = []
    for w in workers:
        runs = [one_pass(ds, w) for _ in range(repeats)]
        row = {"workers": w, "clips": len(ds)}
        row.update({key: statistics.median(r[key] for r in runs) for key in runs[0]})
        row["clips_decoding_a_frame_twice"] = max(r["clips_decoding_a_frame_twice"] for r in runs)
        rows.append(row)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"{available_cores()} cores")
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as root:
        gt = write_dataset(root, args.videos)
        ds = CountingDataset(gt=gt, frames_root=root, clip_length=T, transform=ClipTransform(short_side=H))
        rows = bench(ds, args.workers, args.repeats)
    print(f"\n== {T}-frame clips at {W}x{H} from JPEG folders, {args.videos} videos x {FRAMES} frames, "
          f"batch {BATCH}, median of {args.repeats}")
    print(format_table(
        ["workers", "clips/s", "ms/clip in __getitem__", "decode share", "decodes/clip", "distinct frames/clip",
         "clips decoding a frame twice"],
        [[r["workers"], f"{r['clips_per_s']:.1f}", f"{r['ms_per_clip']:.1f}", f"{100 * r['decode_share']:.0f}%",
          f"{r['decodes_per_clip']:.2f}", f"{r['distinct_per_clip']:.2f}", r["clips_decoding_a_frame_twice"]]
         for r in rows]))
    results = {"repeats": args.repeats, "videos": args.videos, "frames": FRAMES, "clip_length": T,
               "size": [H, W], "batch": BATCH, "cores": available_cores(), "rows": rows}
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
