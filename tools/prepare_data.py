#!/usr/bin/env python
"""Builds and checks ground-truth pickles (ACT schema) and frame folders from the original releases.

    python tools/prepare_data.py check GT.pkl [--frames ROOT]
    python tools/prepare_data.py ucf24 finalAnnots.mat --testlist testlist01.txt --out UCF101v2-GT.pkl
    python tools/prepare_data.py jhmdb JHMDB_RELEASE_ROOT --out JHMDB-GT.pkl
    python tools/prepare_data.py yowo-labels groundtruths_jhmdb.zip --dataset jhmdb [--testlist F] --out GT.pkl
    python tools/prepare_data.py csv ANNOTATIONS.csv --labels LABELS.txt --split SPLIT.csv [--split SPLIT2.csv]
                                 (--frames ROOT | --videos VIDEOS_ROOT) [--max-gap G] --out GT.pkl
    python tools/prepare_data.py cvat ANNOTATIONS.xml [MORE.xml ...] --labels LABELS.txt --split SPLIT.csv
                                 (--frames ROOT | --videos VIDEOS_ROOT) [--video NAME] [--action-attribute NAME]
                                 [--max-gap G] --out GT.pkl
    python tools/prepare_data.py ava ava_train_v2.2.csv --labelmap MAP.pbtxt [--val ava_val_v2.2.csv] --frames ROOT
                                 [--fps 30] [--start 900] [--max-gap 30] --out GT.pkl
    python tools/prepare_data.py ava-export GT.pkl --out DIR [--split 1] [--fps 30] [--start 900]
                                 [--detections DETS.npz]
    python tools/prepare_data.py frames VIDEOS_ROOT --out FRAMES_ROOT
    python tools/prepare_data.py flow FRAMES_ROOT --out FLOW_ROOT [--algorithm tvl1|dis] [--bound 20] [--workers N]
                                 [--opencv-contrib DIR]

``check`` prints every problem ``validate_gt`` finds (with ``--frames``, also frames missing under
``ROOT/Frames/<video>/``, empty or truncated frame files there) and a summary per split; it exits with 1 when
there are problems. The other tools refuse such a ground truth when they load it (``load_gt``), with one line
naming the first bad box. The converters (see ``s3d_det.data.converters``) check the boxes they made the same
way, then write the pickle atomically and print one line: videos, tubes, boxes.
``csv`` and ``cvat`` convert your own annotations (docs/own-data.md; ``s3d_det.data.own_annotations``).
``ava`` converts AVA's ground-truth CSVs (train: split 1's train videos; ``--val``: its test videos) on the classes
of the label map, frames at ``--fps`` from second ``--start`` in ``ROOT/Frames/<video_id>/`` (docs/datasets.md, AVA;
``s3d_det.data.ava_gt``). ``ava-export`` writes a GT pickle (AVA's or any other: keyframes every ``--fps`` frames)
as AVA files into ``DIR``: ``train.csv`` and ``val.csv`` (split ``--split``'s train and test videos),
``labelmap.pbtxt`` and, with ``--detections``, ``detections.csv`` (the rows on keyframes), for
``tools/eval_jhmdb.py --protocol ava``; it refuses to overwrite files there.
``frames`` decodes ``VIDEOS_ROOT/<class>/<video>.avi|.mp4`` into ``FRAMES_ROOT/Frames/<class>/<video>/``,
skipping videos already complete. ``flow`` computes the optical flow of ``FRAMES_ROOT/Frames/<class>/<video>/``
into ``FLOW_ROOT/<class>/<video>/x/`` and ``y/`` (see docs/flow.md; TV-L1 needs opencv-contrib, which
``--opencv-contrib DIR`` can name), skipping videos already complete. Bad input exits with 2 and names the file,
video or line.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Mapping, Optional

import numpy as np

from s3d_det.checkpoint.io import UnsafePickleError
from s3d_det.data.annotations import check_gt, load_gt, save_gt, validate_gt
from s3d_det.data.ava_gt import gt_from_ava
from s3d_det.data.converters import extract_frames, from_yowo_labels, jhmdb_from_release, ucf24_from_annotations
from s3d_det.data.flow import ALGORITHMS, CONTRIB_ENV, CONTRIB_PIP, extract_flow
from s3d_det.data.own_annotations import gt_from_csv, gt_from_cvat
from s3d_det.utils.errors import run_tool
from s3d_det.utils.table import format_table


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate a GT pickle and summarise it")
    check.add_argument("gt", help="ground-truth pickle in the ACT schema")
    check.add_argument("--frames", metavar="ROOT", help="also check that ROOT/Frames/<video>/ holds every frame")

    ucf = commands.add_parser("ucf24", help="UCF101-24 from finalAnnots.mat or pyannot*.pkl")
    ucf.add_argument("annotations", help="finalAnnots.mat or pyannot.pkl / pyannot_with_class_names.pkl")
    ucf.add_argument("--testlist", required=True, help="the split's test videos (testlist01.txt)")
    ucf.add_argument("--out", required=True, help="GT pickle to write")

    jhmdb = commands.add_parser("jhmdb", help="JHMDB-21 from the release (puppet_mask/, splits/)")
    jhmdb.add_argument("root", help="release folder holding puppet_mask/ and splits/")
    jhmdb.add_argument("--out", required=True, help="GT pickle to write")

    yowo = commands.add_parser("yowo-labels", help="from YOWO's per-frame label files (folder or .zip)")
    yowo.add_argument("labels", help="folder or .zip of <class>_<video>_<frame>.txt files")
    yowo.add_argument("--dataset", required=True, choices=("jhmdb", "ucf24"), help="class names to match")
    yowo.add_argument("--testlist", default=None, help="test videos (class/video a line); default: all are test")
    yowo.add_argument("--out", required=True, help="GT pickle to write")

    own = commands.add_parser("csv", help="your own data: video,frame,x1,y1,x2,y2,action[,person_id] rows")
    own.add_argument("annotations", help="CSV of boxes (docs/own-data.md)")
    cvat = commands.add_parser("cvat", help="your own data: CVAT for video 1.1 XML exports, one video each")
    cvat.add_argument("annotations", nargs="+", help="annotations.xml of CVAT's 'CVAT for video 1.1' export")
    cvat.add_argument("--video", default=None, help="the video's name under Frames/ (default: the task's <name>)")
    cvat.add_argument("--action-attribute", metavar="NAME", default=None,
                      help="the action is this attribute of each box, not the track's label")
    for sub in (own, cvat):
        sub.add_argument("--labels", required=True, help="action names, one a line (the order gives the label)")
        sub.add_argument("--split", required=True, action="append", metavar="SPLIT.csv",
                         help="video,subset rows (train or test); once per split")
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--frames", metavar="ROOT", help="frame counts and sizes from ROOT/Frames/<video>/")
        source.add_argument("--videos", metavar="VIDEOS_ROOT",
                            help="frame counts and sizes by decoding VIDEOS_ROOT/<video>.avi|.mp4")
        sub.add_argument("--max-gap", type=int, default=1,
                         help="a tube ends where its next annotated frame is more than this many frames on "
                              "(default 1: runs of consecutive frames)")
        sub.add_argument("--out", required=True, help="GT pickle to write")

    ava = commands.add_parser("ava", help="AVA's ground-truth CSVs (v2.1, v2.2)")
    ava.add_argument("annotations", help="ava_train_v2.x.csv: video_id,timestamp,x1,y1,x2,y2,action_id,person_id")
    ava.add_argument("--labelmap", required=True, help="the action list (.pbtxt); its classes are the labels")
    ava.add_argument("--val", default=None, help="ava_val_v2.x.csv: the test videos of split 1")
    ava.add_argument("--frames", metavar="ROOT", required=True, help="frame counts and sizes from ROOT/Frames/<id>/")
    ava.add_argument("--max-gap", type=int, default=30,
                     help="a person's keyframes of one action more than this many frames apart start a new tube "
                          "(default 30: one keyframe a second)")
    export = commands.add_parser("ava-export", help="a GT pickle (and detections) as AVA CSV files")
    export.add_argument("gt", help="ground-truth pickle in the ACT schema")
    export.add_argument("--out", required=True, help="folder for train.csv, val.csv, labelmap.pbtxt, detections.csv")
    export.add_argument("--split", type=int, default=1, help="which split's train and test videos (default 1)")
    export.add_argument("--detections", metavar="DETS.npz", default=None, help="also write these as detections.csv")
    for sub in (ava, export):
        sub.add_argument("--fps", type=int, default=30,
                         help="frames a second: a keyframe every FPS frames, frame 1 at second START (default 30; "
                              "a GT made by 'ava' keeps its own)")
        sub.add_argument("--start", type=int, default=900, help="the second of frame 1 (default 900, AVA's)")
    ava.add_argument("--out", required=True, help="GT pickle to write")

    frames = commands.add_parser("frames", help="extract JPEG frames from videos with OpenCV")
    frames.add_argument("videos_root", help="folder of <class>/<video>.avi|.mp4")
    frames.add_argument("--out", required=True, help="frames root: frames go to OUT/Frames/<class>/<video>/")

    flow = commands.add_parser("flow", help="optical flow of extracted frames as grayscale JPEGs (x/, y/)")
    flow.add_argument("frames_root", help="frames root: frames are read from FRAMES_ROOT/Frames/<class>/<video>/")
    flow.add_argument("--out", required=True, help="flow root: flow goes to OUT/<class>/<video>/x/ and y/")
    flow.add_argument("--algorithm", choices=ALGORITHMS, default="tvl1",
                      help="tvl1 (I3D's and S3D-G's flow; needs opencv-contrib) or dis (core OpenCV, fast)")
    flow.add_argument("--bound", type=float, default=20.0, help="flow clipped to +-BOUND px before the JPEG mapping")
    flow.add_argument("--workers", type=int, default=1, help="processes computing flow (default: 1)")
    flow.add_argument("--opencv-contrib", metavar="DIR", default=None,
                      help=f"folder holding opencv-contrib for TV-L1 ({CONTRIB_PIP}); default: ${CONTRIB_ENV}")
    return parser.parse_args(argv)


def count_boxes(gt: Mapping, videos) -> dict:
    """Tubes, boxes and frames (all, and with >= 1 box) of ``videos``."""
    tubes = boxes = annotated = 0
    for video in videos:
        per_label = gt["gttubes"].get(video, {})
        rows = [np.asarray(t) for ts in per_label.values() for t in ts]
        tubes += len(rows)
        boxes += sum(len(r) for r in rows)
        annotated += len({int(f) for r in rows for f in r[:, 0]})
    frames = sum(int(gt["nframes"].get(v, 0)) for v in videos)
    return {"videos": len(videos), "tubes": tubes, "frames": frames, "annotated frames": annotated, "boxes": boxes}


def summary_table(gt: Mapping) -> str:
    rows = [["all", *count_boxes(gt, list(gt["nframes"])).values()]]
    for k, (train, test) in enumerate(zip(gt["train_videos"], gt["test_videos"]), start=1):
        rows.append([f"split {k} train", *count_boxes(gt, train).values()])
        rows.append([f"split {k} test", *count_boxes(gt, test).values()])
    header = ["subset", "videos", "tubes", "frames", "annotated frames", "boxes"]
    return format_table(header, rows)


def one_line(gt: Mapping) -> str:
    counts = count_boxes(gt, list(gt["nframes"]))
    return (f"{counts['videos']} videos, {counts['tubes']} tubes, {counts['boxes']} boxes, "
            f"{len(gt['labels'])} classes")


def ava_export(args) -> int:
    """``ava-export``: the GT's split as AVA files in ``args.out`` (none of them there before)."""
    import os

    from s3d_det.data.ava import write_ava_detections
    from s3d_det.data.ava_gt import detections_to_ava, gt_to_ava, write_ava_gt, write_ava_labelmap
    from s3d_det.evaluation.detections import check_detections, load_detections

    gt = load_gt(args.gt)
    names = ["train.csv", "val.csv", "labelmap.pbtxt"] + (["detections.csv"] if args.detections else [])
    taken = [n for n in names if os.path.exists(os.path.join(args.out, n))]
    if taken:
        raise ValueError(f"{args.out}: already holds {', '.join(taken)}; expected a folder without them (nothing "
                         f"is overwritten)")
    train, labelmap = gt_to_ava(gt, split=args.split, subset="train", fps=args.fps, start=args.start)
    test, _ = gt_to_ava(gt, split=args.split, subset="test", fps=args.fps, start=args.start)
    dets = None
    if args.detections:
        found = load_detections(args.detections)
        check_detections(found, gt, source=args.detections)
        dets = detections_to_ava(gt, found, fps=args.fps, start=args.start)
    os.makedirs(args.out, exist_ok=True)
    write_ava_labelmap(os.path.join(args.out, "labelmap.pbtxt"), labelmap)
    write_ava_gt(os.path.join(args.out, "train.csv"), train)
    write_ava_gt(os.path.join(args.out, "val.csv"), test)
    if dets is not None:
        write_ava_detections(os.path.join(args.out, "detections.csv"), dets)
    print(f"ava-export: {len(train)} train rows, {len(test)} val rows, {len(labelmap)} actions"
          f"{f', {len(dets)} detection rows on keyframes' if dets is not None else ''} -> {args.out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "check":
            gt = load_gt(args.gt, check_boxes=False)  # every problem is listed below, not only the first
            problems = validate_gt(gt, frames_root=args.frames)
            print(summary_table(gt))
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problems in {args.gt}")
            return 1 if problems else 0
        if args.command == "ava-export":
            return ava_export(args)
        if args.command == "frames":
            counts = extract_frames(args.videos_root, args.out)
            print(f"{counts['videos']} videos ({counts['extracted']} extracted, {counts['skipped']} already "
                  f"complete), {counts['frames']} frames in {args.out}/Frames")
            return 0
        if args.command == "flow":
            counts = extract_flow(args.frames_root, args.out, algorithm=args.algorithm, bound=args.bound,
                                  workers=args.workers, opencv_contrib=args.opencv_contrib)
            print(f"{counts['videos']} videos ({counts['computed']} computed, {counts['skipped']} already complete), "
                  f"{counts['flow_frames']} flow frames ({args.algorithm}, bound {args.bound:g} px) in {args.out}")
            return 0
        if args.command == "ucf24":
            gt, source = ucf24_from_annotations(args.annotations, args.testlist), args.annotations
        elif args.command == "jhmdb":
            gt, source = jhmdb_from_release(args.root), args.root
        elif args.command == "csv":
            gt, source = gt_from_csv(args.annotations, labels=args.labels, split_files=args.split,
                                     frames_root=args.frames, videos_root=args.videos,
                                     max_gap=args.max_gap), args.annotations
        elif args.command == "ava":
            gt, source = gt_from_ava(args.annotations, labelmap=args.labelmap, val_csv=args.val,
                                     frames_root=args.frames, fps=args.fps, start=args.start,
                                     max_gap=args.max_gap), args.annotations
        elif args.command == "cvat":
            gt, source = gt_from_cvat(args.annotations, labels=args.labels, split_files=args.split,
                                      frames_root=args.frames, videos_root=args.videos, max_gap=args.max_gap,
                                      video=args.video, action_attribute=args.action_attribute), args.annotations[0]
        else:
            gt, source = from_yowo_labels(args.labels, dataset=args.dataset, testlist=args.testlist), args.labels
        check_gt(gt, source)
    except (FileNotFoundError, ValueError, UnsafePickleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_gt(gt, args.out)
    print(f"{args.command}: {one_line(gt)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
