#!/usr/bin/env python
"""Scores detections against a ground truth: frame-mAP in a chosen protocol and, optionally, video-mAP.

Scoring mode (any ground truth in the ACT schema: JHMDB-21, UCF101-24, synthetic)::

    python tools/eval_jhmdb.py --gt GT.pkl --detections DETS.npz [--split K] [--protocol act|voc|yowo]
                               [--iou 0.5] [--video-map] [--json OUT.json] [--plots DIR]

The videos evaluated are split K's test list (``split_videos(gt, K, "test")``). The detections' ``videos`` are
matched to it by name: a detection (a ``frame_dets`` or ``tubes`` row) naming a video outside that list is an
error (names no row uses are ignored). ``--protocol`` picks the frame-AP protocol (``s3d_det.evaluation.frame_map``). ``--video-map`` adds
video-mAP at st-IoU 0.2, 0.5, 0.75 and over 0.5:0.05:0.95, on the file's ``tubes`` when it has them, else on
tubes linked from its ``frame_dets`` with the default ``LinkingConfig`` (``s3d_det.evaluation.linking``).

Output: a per-class table (ground-truth boxes, detections, frame-AP) and the mean; ``--json FILE`` writes
``{"protocol", "iou", "frame_mAP", "per_class_AP": {class: AP}, "video_mAP": {"0.2", "0.5", "0.75", "0.5:0.95"}}``
in percent, atomically (``video_mAP`` is null without ``--video-map``); ``--plots DIR`` writes
``per_class_ap.png`` and ``pr_curves.png`` (frame-AP). Only the classes the protocol scores are listed (``voc``
and ``yowo`` leave out classes without ground truth).

Exit codes: 0 done; 2 bad input (an unreadable or malformed ground truth or detections file, a video outside the
test list, a label out of range, NaN/inf, x2 < x1, ...), reported on one line naming the file and the row or
key.

Model mode (``--config-file CFG --weights W [--split 1|2|3|all]``: run a model over the test videos, then score)
is not available yet; it exits with code 2 saying so.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from typing import List, Optional, Sequence

import numpy as np

from s3d_det.data.annotations import load_gt, split_videos
from s3d_det.evaluation.detections import Detections, check_detections, load_detections
from s3d_det.evaluation.frame_map import PROTOCOLS, frame_ap
from s3d_det.evaluation.video_map import video_map
from s3d_det.utils.io import write_json
from s3d_det.utils.table import format_table


class InputError(Exception):
    """Bad input: reported on one line, exit code 2."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt", metavar="GT.pkl", help="ground truth in the ACT schema (scoring mode)")
    source.add_argument("--config-file", metavar="CFG", help="model config (model mode, not available yet)")
    parser.add_argument("--detections", metavar="DETS.npz", help="detections file (scoring mode)")
    parser.add_argument("--weights", metavar="W", help="model weights (model mode, not available yet)")
    parser.add_argument("--split", default="1",
                        help="split whose test list is evaluated, 1-based (default: 1; model mode: also 'all')")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="act", help="frame-AP protocol (default: act)")
    parser.add_argument("--iou", type=float, default=0.5, help="frame-AP IoU threshold (default: 0.5)")
    parser.add_argument("--video-map", action="store_true", help="also compute video-mAP")
    parser.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write per_class_ap.png and pr_curves.png to DIR")
    args = parser.parse_args(argv)
    if args.gt is not None:
        if args.detections is None:
            parser.error("--gt needs --detections")
        if args.weights is not None:
            parser.error("--weights goes with --config-file, not with --gt")
        try:
            args.split = int(args.split)
        except ValueError:
            parser.error(f"--split must be a split number with --gt, got {args.split!r}")
    else:
        if args.weights is None:
            parser.error("--config-file needs --weights")
        if args.detections is not None:
            parser.error("--detections goes with --gt, not with --config-file")
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")
    return args


def _remap(index: np.ndarray, table: np.ndarray, dets: Detections, key: str, path: str, split: int) -> np.ndarray:
    """``index`` (positions in ``dets.videos``) turned into positions in ``test``; the first row naming a video
    outside ``test`` is an error."""
    mapped = table[index.astype(np.int64)]
    bad = np.flatnonzero(mapped < 0)
    if len(bad):
        row = int(bad[0])
        video = dets.videos[int(index[row])]
        raise InputError(f"{path}: {key} row {row}: video {video!r} is not in the test list of split {split}")
    return mapped.astype(np.float64)


def load_for_split(gt: dict, path: str, split: int, test: List[str]) -> Detections:
    """Reads ``path`` and re-indexes its rows onto ``test``; every problem is an :class:`InputError`."""
    try:
        dets = load_detections(path)
    except (OSError, ValueError) as e:
        raise InputError(str(e)) from None
    position = {video: i for i, video in enumerate(test)}
    table = np.array([position.get(v, -1) for v in dets.videos] or [-1], dtype=np.int64)
    frame_dets = dets.frame_dets.copy()
    frame_dets[:, 0] = _remap(frame_dets[:, 0], table, dets, "frame_dets", path, split)
    tubes = None
    if dets.tubes is not None:
        tubes = dets.tubes.copy()
        tubes[:, 0] = _remap(tubes[:, 0], table, dets, "tubes", path, split)
    mapped = Detections(videos=test, frame_dets=frame_dets, tubes=tubes, tube_boxes=dets.tube_boxes)
    try:
        check_detections(mapped, gt=gt, source=path)
    except ValueError as e:
        raise InputError(str(e)) from None
    return mapped


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.config_file is not None:
        print("error: model mode (--config-file/--weights) is not available yet; run the model yourself and score "
              "its detections with --gt GT.pkl --detections DETS.npz", file=sys.stderr)
        return 2
    try:
        try:
            gt = load_gt(args.gt)
            test = split_videos(gt, args.split, "test")
        except (OSError, ValueError, pickle.UnpicklingError) as e:
            raise InputError(f"{args.gt}: {e}" if args.gt not in str(e) else str(e)) from None
        dets = load_for_split(gt, args.detections, args.split, test)
        vmap = None
        if args.video_map:
            try:
                vmap = video_map(gt, test, frame_dets=dets.frame_dets, tubes=dets.tubes, tube_boxes=dets.tube_boxes)
            except ValueError as e:  # tubes without boxes, a frame twice in a tube
                raise InputError(f"{args.detections}: {e}") from None
    except InputError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2

    result = frame_ap(gt, test, dets.frame_dets, protocol=args.protocol, iou=args.iou)
    rows = [[name, result.num_gt[name], result.num_dets[name], f"{result.ap[name]:.2f}"] for name in result.classes]
    print(f"{args.detections}: {len(test)} test videos of split {args.split}, frame-AP protocol {args.protocol}, "
          f"IoU {args.iou:g}")
    print(format_table(["class", "GT boxes", "detections", "frame-AP"], rows))
    print(f"frame-mAP@{args.iou:g}: {result.mean:.2f}")

    if vmap is not None:
        source = "the file's tubes" if dets.tubes is not None else "tubes linked from frame_dets"
        print(f"video-mAP ({source}): " + ", ".join(f"@{k} {v:.2f}" for k, v in vmap.items()))

    if args.json:
        write_json(args.json, {**result.to_dict(), "video_mAP": vmap})
        print(f"wrote {args.json}")
    if args.plots:
        from s3d_det.vis import plot_per_class_ap, plot_pr_curves  # matplotlib only when plotting

        title = f"frame-AP ({args.protocol}, IoU {args.iou:g})"
        plot_per_class_ap(result.ap, os.path.join(args.plots, "per_class_ap.png"), mean=result.mean, title=title)
        plot_pr_curves(result.precision, result.recall, os.path.join(args.plots, "pr_curves.png"), ap=result.ap,
                       title=title)
        print(f"wrote {args.plots}/per_class_ap.png, pr_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
