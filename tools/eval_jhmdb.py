#!/usr/bin/env python
"""Scores detections against a ground truth: frame-mAP in a chosen protocol and, optionally, video-mAP.

Scoring mode (any ground truth in the ACT schema: JHMDB-21, UCF101-24, synthetic)::

    python tools/eval_jhmdb.py --gt GT.pkl --detections DETS.npz [--split K] [--protocol act|voc|yowo]
                               [--iou 0.5] [--video-map] [--json OUT.json] [--plots DIR]
                               [--fuse FLOW.npz [--fuse-weights 1 1] [--fuse-iou 0.5]]
                               [--errors [--errors-plot DIR]]

The videos evaluated are split K's test list (``split_videos(gt, K, "test")``). The detections' ``videos`` are
matched to it by name: a detection (a ``frame_dets`` or ``tubes`` row) naming a video outside that list is an
error (names no row uses are ignored). ``--protocol`` picks the frame-AP protocol
(``s3d_det.evaluation.frame_map``). ``--video-map`` adds video-mAP at st-IoU 0.2, 0.5, 0.75 and over
0.5:0.05:0.95, on the file's ``tubes`` when it has them, else on tubes linked from its ``frame_dets`` with the
default ``LinkingConfig`` (``s3d_det.evaluation.linking``).

``--fuse`` scores the two-stream fusion of ``--detections`` (RGB) and ``FLOW.npz`` (``s3d_det.evaluation.fusion``:
each RGB detection paired with the same label's flow detection of highest IoU >= ``--fuse-iou``, scores averaged
with the weights, the RGB box kept; ACT's mean fusion when both score the same boxes).

Output: a per-class table (ground-truth boxes, detections, frame-AP) and the mean; ``--json FILE`` writes
``{"protocol", "iou", "frame_mAP", "per_class_AP": {class: AP}, "video_mAP": {"0.2", "0.5", "0.75", "0.5:0.95"}}``
in percent, atomically (``video_mAP`` is null without ``--video-map``); ``--plots DIR`` writes
``per_class_ap.png`` and ``pr_curves.png`` (frame-AP; with ``--split all`` in ``DIR/split{K}``). Only the
classes the protocol scores are listed (``voc`` and ``yowo`` leave out classes without ground truth).

``--errors`` (protocol ``act`` only) adds ACT-detector's error analysis (``s3d_det.evaluation.errors``): per class
the frame-AP and the AP lost to localisation, classification, time and other errors and to missed GT boxes (they sum
to 100), and frame-MABO on the detections' boxes; ``--json`` gets it under ``"errors"``; ``--errors-plot DIR``
writes it as stacked bars to ``DIR/frame_ap_errors.png``. In model mode (one split) it also runs the model on the
GT boxes and reports ACT's classification accuracy on them (``"gt_box_accuracy"``).

Exit codes: 0 done; 2 bad input (an unreadable or malformed ground truth or detections file, a video outside the
test list, a label out of range, NaN/inf, x2 < x1, ...), reported on one line naming the file and the row or
key.

AVA (v2.1/v2.2 CSV files; ``s3d_det.evaluation.ava``, the official ActivityNet evaluation's numbers)::

    python tools/eval_jhmdb.py --protocol ava --gt GT.csv --detections DETS.csv --labelmap MAP.pbtxt
                               [--exclusions EXCL.csv] [--iou 0.5] [--json OUT.json] [--plots DIR]

scores every keyframe of ``GT.csv`` (rows ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``) on the classes
of ``MAP.pbtxt``; detections are ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` rows. Prints the per-class
table and the frame-mAP; the JSON has the keys above (``protocol`` "ava", ``video_mAP`` null) with the classes
that have ground truth. ``--labelmap`` and ``--exclusions`` go with ``--protocol ava`` only; ``--split``,
``--video-map`` and ``--fuse`` do not go with it. A bad row is reported on one line naming the file and line.
In model mode, ``--protocol ava`` scores the detections on the keyframes of the config's GT pickle (made by
``tools/prepare_data.py ava``: its ``ava`` key gives the action ids, keyframes and person ids; any other GT:
keyframes every 30 frames; ``s3d_det.data.ava_gt.score_ava``), without exclusions and without video-mAP.

Model mode (run a trained detector over every frame of the test videos, then score)::

    python tools/eval_jhmdb.py --config-file CFG --weights W [--split 1|2|3|all] [--out DIR]
                               [--inference per_keyframe|shared]
                               [--protocol ...] [--iou ...] [--json OUT.json] [--plots DIR] [KEY VALUE ...]

``--inference`` picks how the 3D features are computed (``per_keyframe``, the default: one clip per keyframe, as
training evaluates, in float32; ``shared``: 3D windows shared by the keyframes, ``TEST.WINDOW``, under
``SOLVER.AMP_DTYPE`` on CUDA; see ``s3d_det.engine.inference``). Both run ``VideoDetector`` over the test videos, the
one inference path; ``loader``, the DataLoader path of earlier releases, is an alias of ``per_keyframe`` (the same
detections) and prints a one-line deprecation note. The config's dataset and ``INPUT``/``TEST`` settings are used with
``DATASETS.SPLIT`` set to ``--split`` (default: the config's); ``KEY VALUE`` pairs override the config as in
``tools/train_det.py``. Each split's detections are saved to ``DIR/detections_split{K}.npz`` (default DIR:
``OUTPUT_DIR/inference``) and it prints the per-class frame-AP table, frame-mAP and video-mAP (tubes linked from the
frame detections). ``--split all`` evaluates every split of the ground truth (JHMDB: 1, 2, 3) and averages frame-AP per
class, frame-mAP and video-mAP over them, the usual way JHMDB-21 results are reported; since each split has its own
model, ``--config-file`` and ``--weights`` may then contain ``{split}`` (e.g.
``output/jhmdb/split{split}/model_final.pth``), and one weights file for every split is refused: it was trained on the
other splits' test videos. The JSON holds the (averaged) result and, under ``"splits"``, each split's.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from s3d_det.data.annotations import load_gt, split_videos
from s3d_det.evaluation.detections import TUBE_VIDEO, Detections, check_detections, load_detections
from s3d_det.evaluation.frame_map import PROTOCOLS, FrameAPResult, frame_ap
from s3d_det.evaluation.fusion import fuse_detections
from s3d_det.evaluation.video_map import video_map
from s3d_det.utils.errors import run_tool
from s3d_det.utils.io import write_json
from s3d_det.utils.table import format_table


class InputError(ValueError):
    """Bad input: reported on one line, exit code 2."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt", metavar="GT.pkl", help="ground truth in the ACT schema (scoring mode)")
    source.add_argument("--config-file", metavar="CFG", help="model config (model mode; may contain {split})")
    parser.add_argument("--detections", metavar="DETS.npz", help="detections file (scoring mode)")
    parser.add_argument("--weights", metavar="W", help="model weights (model mode; may contain {split})")
    parser.add_argument("--fuse", metavar="FLOW.npz", help="scoring mode: a second stream's detections, fused with "
                                                           "--detections (the RGB stream's) before scoring")
    parser.add_argument("--fuse-weights", metavar=("W_RGB", "W_FLOW"), type=float, nargs=2, default=(1.0, 1.0),
                        help="--fuse: the two streams' weights, normalised to sum 1 (default: 1 1, ACT's mean)")
    parser.add_argument("--fuse-iou", type=float, default=0.5,
                        help="--fuse: the least IoU of an RGB and a flow detection paired into one (default: 0.5)")
    parser.add_argument("--split", default=None,
                        help="split whose test list is evaluated, 1-based (default: 1, in model mode the config's "
                             "DATASETS.SPLIT); model mode also takes 'all'")
    parser.add_argument("--out", metavar="DIR", help="model mode: where detections_split{K}.npz go "
                                                      "(default: OUTPUT_DIR/inference)")
    parser.add_argument("--protocol", choices=PROTOCOLS + ("ava",), default="act",
                        help="frame-AP protocol (default: act); 'ava': AVA CSV files, needs --labelmap")
    parser.add_argument("--labelmap", metavar="MAP.pbtxt", help="--protocol ava: the action list (.pbtxt)")
    parser.add_argument("--exclusions", metavar="EXCL.csv",
                        help="--protocol ava: excluded keyframes (video_id,timestamp rows)")
    parser.add_argument("--iou", type=float, default=0.5, help="frame-AP IoU threshold (default: 0.5)")
    parser.add_argument("--video-map", action="store_true", help="also compute video-mAP")
    parser.add_argument("--json", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--plots", metavar="DIR", help="write per_class_ap.png and pr_curves.png to DIR")
    parser.add_argument("--errors", action="store_true",
                        help="protocol act: ACT's error analysis (AP lost to localisation, classification, time, "
                             "other, missed) and frame-MABO; in model mode also the accuracy on the GT boxes")
    parser.add_argument("--errors-plot", metavar="DIR", help="with --errors: write DIR/frame_ap_errors.png")
    parser.add_argument("--inference", choices=("per_keyframe", "shared", "loader"), default=None,
                        help="model mode: how the 3D features are computed (s3d_det.engine.inference): "
                             "'per_keyframe' (default) one clip per keyframe, as training evaluates; 'shared' windows "
                             "shared by the keyframes (TEST.WINDOW); 'loader' (deprecated): per_keyframe")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="model mode: config overrides, e.g. TEST.BATCH_SIZE 4")
    args = parser.parse_args(argv)
    if args.protocol == "ava" and args.gt is None:  # model mode: AVA's frame-AP on the GT's keyframes
        if str(args.split) == "all":
            parser.error("--split all does not go with --protocol ava (no video-mAP to average; AVA has one split)")
        if args.video_map:
            parser.error("--video-map does not go with --protocol ava (keyframes one second apart form no tubes)")
        for flag, value in (("--labelmap", args.labelmap), ("--exclusions", args.exclusions)):
            if value is not None:
                parser.error(f"{flag} goes with --protocol ava's scoring mode (--gt GT.csv); model mode takes the "
                             f"action ids and keyframes from the GT pickle (its 'ava' key)")
    elif args.protocol == "ava":
        if args.labelmap is None:
            parser.error("--protocol ava needs --labelmap MAP.pbtxt (the AVA action list)")
        for flag, value in (("--split", args.split is not None), ("--video-map", args.video_map),
                            ("--fuse", args.fuse is not None)):
            if value:
                parser.error(f"{flag} does not go with --protocol ava")
    else:
        for flag, value in (("--labelmap", args.labelmap), ("--exclusions", args.exclusions)):
            if value is not None:
                parser.error(f"{flag} goes with --protocol ava, not with --protocol {args.protocol}")
    if args.gt is not None:
        if args.detections is None:
            parser.error("--gt needs --detections")
        for flag, value in (("--weights", args.weights), ("--out", args.out), ("KEY VALUE overrides", args.opts),
                            ("--inference", args.inference is not None)):
            if value:
                parser.error(f"{flag} goes with --config-file, not with --gt")
        if min(args.fuse_weights) < 0 or sum(args.fuse_weights) <= 0:
            parser.error(f"--fuse-weights must be >= 0 and not both 0, got {list(args.fuse_weights)}")
        if not 0.0 < args.fuse_iou <= 1.0:
            parser.error(f"--fuse-iou must be in (0, 1], got {args.fuse_iou}")
        try:
            args.split = int(args.split or 1)
        except ValueError:
            parser.error(f"--split must be a split number with --gt, got {args.split!r}")
    else:
        if args.weights is None:
            parser.error("--config-file needs --weights")
        if args.detections is not None or args.fuse is not None:
            parser.error("--detections and --fuse go with --gt, not with --config-file (a two-stream config, "
                         "MODEL.TWO_STREAM, fuses in model mode)")
        if args.split not in (None, "all"):
            try:
                args.split = int(args.split)
            except ValueError:
                parser.error(f"--split must be a split number or 'all', got {args.split!r}")
        if args.split == "all" and "{split}" not in args.weights:
            parser.error("--split all needs one model per split: put {split} in --weights (e.g. "
                         "output/jhmdb/split{split}/model_final.pth); a single model was trained on the other "
                         "splits' test videos")
        if len(args.opts) % 2:
            parser.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
        if args.inference == "loader":
            print("note: --inference loader is deprecated: it is per_keyframe now (the same detections, through the "
                  "one inference path, VideoDetector); it will be removed in a later release", file=sys.stderr)
        args.inference = "per_keyframe" if args.inference in (None, "loader") else args.inference
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")
    return args


def _remap(index: np.ndarray, table: np.ndarray, dets: Detections, key: str, path: str, split: int) -> np.ndarray:
    """``index`` (positions in ``dets.videos``) turned into positions in ``test`` (int64); the first row naming a video
    outside ``test`` is an error."""
    mapped = table[index.astype(np.int64)]
    bad = np.flatnonzero(mapped < 0)
    if len(bad):
        row = int(bad[0])
        video = dets.videos[int(index[row])]
        raise InputError(f"{path}: {key} row {row}: video {video!r} is not in the test list of split {split}")
    return mapped


def load_for_split(gt: dict, path: str, split: int, test: List[str]) -> Detections:
    """Reads ``path`` and re-indexes its rows onto ``test``; every problem is an :class:`InputError`."""
    try:
        dets = load_detections(path)
    except (OSError, ValueError) as e:
        raise InputError(str(e)) from None
    position = {video: i for i, video in enumerate(test)}
    table = np.array([position.get(v, -1) for v in dets.videos] or [-1], dtype=np.int64)
    per_frame = dets.per_frame
    per_frame = dataclasses.replace(per_frame, video=_remap(per_frame.video, table, dets, "frame_dets", path, split))
    tubes = None
    if dets.tubes is not None:
        tubes = dets.tubes.copy()
        tubes[:, TUBE_VIDEO] = _remap(tubes[:, TUBE_VIDEO], table, dets, "tubes", path, split)
    mapped = Detections(videos=test, frame_dets=per_frame, tubes=tubes, tube_boxes=dets.tube_boxes)
    try:
        check_detections(mapped, gt=gt, source=path)
    except ValueError as e:
        raise InputError(str(e)) from None
    return mapped


def report(result, vmap: Optional[dict], args, header: str, video_map_source: str,
           plots: Optional[str] = None) -> None:
    """Prints the per-class table, frame-mAP and video-mAP; writes the plots to ``plots`` (a folder) if given."""
    rows = [[name, result.num_gt[name], result.num_dets[name], f"{result.ap[name]:.2f}"] for name in result.classes]
    print(header)
    print(format_table(["class", "GT boxes", "detections", "frame-AP"], rows))
    print(f"frame-mAP@{args.iou:g}: {result.mean:.2f}")
    if vmap is not None:
        print(f"video-mAP ({video_map_source}): " + ", ".join(f"@{k} {v:.2f}" for k, v in vmap.items()))
    if plots:
        from s3d_det.vis import plot_per_class_ap, plot_pr_curves  # matplotlib only when plotting

        title = f"frame-AP ({args.protocol}, IoU {args.iou:g})"
        plot_per_class_ap(result.ap, os.path.join(plots, "per_class_ap.png"), mean=result.mean, title=title)
        plot_pr_curves(result.precision, result.recall, os.path.join(plots, "pr_curves.png"), ap=result.ap,
                       title=title)
        print(f"wrote {plots}/per_class_ap.png, pr_curves.png")


def ava_mode(args) -> int:
    """Scoring mode for ``--protocol ava`` (AVA CSV files)."""
    from s3d_det.data.ava import read_ava_detections, read_ava_exclusions, read_ava_gt, read_ava_labelmap
    from s3d_det.evaluation.ava import ava_frame_ap, detections_off_gt

    try:
        labelmap = read_ava_labelmap(args.labelmap)
        excluded = read_ava_exclusions(args.exclusions) if args.exclusions else set()
        gt = read_ava_gt(args.gt)
        dets = read_ava_detections(args.detections)
        result: FrameAPResult = ava_frame_ap(gt, dets, labelmap, excluded=excluded, iou=args.iou)
        if not result.classes:
            raise InputError(f"{args.gt}: no class of {args.labelmap} has a ground-truth box"
                             + (f" off the keyframes excluded by {args.exclusions}" if excluded else ""))
    except (OSError, ValueError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    ids = list(labelmap)
    outside = int((~np.isin(dets.action, ids)).sum())
    if outside:
        print(f"note: {outside} detection rows of actions outside {args.labelmap} are left out (as the official "
              "evaluation does)")
    off = detections_off_gt(gt, dets, labelmap, excluded)
    if off:
        print(f"note: {off} detection rows fall on keyframes without a ground-truth box of the label map; they count "
              "as false positives (as the official evaluation does)")
    left_out = [name for i, name in labelmap.items() if name not in result.ap]
    report(result, None, args, f"{args.detections}: {len(gt.keyframes)} keyframes in {args.gt}"
                               f"{f', {len(excluded)} excluded' if excluded else ''}, AVA frame-AP (official "
                               f"ActivityNet rules), IoU {args.iou:g}", "", plots=args.plots)
    if left_out:
        print(f"left out of the mean (no ground truth): {', '.join(left_out)}")
    if args.json:
        write_json(args.json, {**result.to_dict(), "video_mAP": None})
        print(f"wrote {args.json}")
    return 0


def errors_problem(args) -> Optional[str]:
    """Why ``--errors``/``--errors-plot`` cannot run with these arguments, or None."""
    if args.errors_plot and not args.errors:
        return "--errors-plot needs --errors"
    if args.errors and args.config_file is not None and args.split == "all":
        return "--errors with --config-file takes one split, not --split all"
    if args.errors and args.protocol != "act":
        return (f"--errors is ACT-detector's error analysis and needs --protocol act, got --protocol "
                f"{args.protocol} (its matching and AP differ; the error areas would not add up)")
    return None


def report_errors(gt: dict, test: List[str], dets: Detections, args) -> dict:
    """Prints ACT's error table and frame-MABO (on the detections' boxes), writes the plot if asked; returns
    the ``"errors"`` JSON entry."""
    from s3d_det.evaluation.errors import ERROR_TYPES, frame_ap_errors, frame_mabo

    errors = frame_ap_errors(gt, test, dets.frame_dets, iou=args.iou)
    mabo = frame_mabo(gt, test, dets.frame_dets)
    heads = ["AP", "Loc.", "Cls.", "Time", "Other", "missed"]
    rows = [[name, errors.counts[name]["gt"], errors.counts[name]["detections"], f"{errors.ap[name]:.2f}"]
            + [f"{errors.lost[name][t]:.2f}" for t in ERROR_TYPES]
            + [f"{mabo.abo[name]:.2f}" if name in mabo.abo else "-"] for name in errors.classes]
    rows.append(["mean", "", "", f"{errors.mean['AP']:.2f}"] + [f"{errors.mean[t]:.2f}" for t in ERROR_TYPES]
                + [f"{mabo.mean:.2f}"])
    print(f"error analysis (ACT's frameAP_error, IoU {args.iou:g}), percent: AP, the AP lost to each error type, "
          f"missed GT boxes;\nABO: mean best overlap of the class's GT boxes with the detections' boxes")
    print(format_table(["class", "GT boxes", "detections"] + heads + ["ABO"], rows))
    print(f"frame-MABO (detections' boxes): {mabo.mean:.2f}")
    if args.errors_plot:
        from s3d_det.vis import plot_frame_ap_errors  # matplotlib only when plotting

        path = os.path.join(args.errors_plot, "frame_ap_errors.png")
        plot_frame_ap_errors(errors, path, title=f"frame-AP error analysis (ACT, IoU {args.iou:g})")
        print(f"wrote {path}")
    return {**errors.to_dict(), "frame_MABO": mabo.to_dict()}


def score_mode(args) -> int:
    if args.protocol == "ava":
        return ava_mode(args)
    try:
        try:
            gt = load_gt(args.gt)
            test = split_videos(gt, args.split, "test")
        except (OSError, ValueError, pickle.UnpicklingError) as e:
            raise InputError(f"{args.gt}: {e}" if args.gt not in str(e) else str(e)) from None
        dets = load_for_split(gt, args.detections, args.split, test)
        if args.fuse:
            w_rgb, w_flow = args.fuse_weights
            dets = fuse_detections(dets, load_for_split(gt, args.fuse, args.split, test),
                                   rgb_weight=w_rgb / (w_rgb + w_flow), iou=args.fuse_iou)
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
    source = "the file's tubes" if dets.tubes is not None else "tubes linked from frame_dets"
    name = f"{args.detections} fused with {args.fuse}" if args.fuse else args.detections
    report(result, vmap, args, f"{name}: {len(test)} test videos of split {args.split}, frame-AP "
                               f"protocol {args.protocol}, IoU {args.iou:g}", source, plots=args.plots)
    errors = report_errors(gt, test, dets, args) if args.errors else None
    if args.json:
        write_json(args.json, {**result.to_dict(), "video_mAP": vmap, **({"errors": errors} if args.errors else {})})
        print(f"wrote {args.json}")
    return 0


def _mean_results(results: Dict[int, dict]) -> dict:
    """The per-split ``--json`` dicts averaged: frame-mAP, each class's AP and each video-mAP threshold."""
    first = next(iter(results.values()))
    return {
        "protocol": first["protocol"],
        "iou": first["iou"],
        "frame_mAP": float(np.mean([r["frame_mAP"] for r in results.values()])),
        "per_class_AP": {name: float(np.mean([r["per_class_AP"][name] for r in results.values()]))
                         for name in first["per_class_AP"]},
        "video_mAP": {key: float(np.mean([r["video_mAP"][key] for r in results.values()]))
                      for key in first["video_mAP"]},
    }


def evaluate_split(config_file: str, weights: str, split: Optional[int], args) -> tuple:
    """Runs the model of ``config_file`` with ``weights`` over the test videos of ``split`` (None: the config's);
    saves the detections; returns (split, FrameAPResult, video-mAP dict, detections path, the ``--errors`` JSON
    entry or None: ACT's error table and, for one stream, the accuracy on the GT boxes)."""
    import torch

    from s3d_det.config import load_config
    from s3d_det.engine.defaults import (
        build_datasets,
        build_model,
        build_two_stream_detector,
        flow_stream,
        load_dataset_gt,
        resolve_device,
        with_modality_of,
    )
    from s3d_det.engine.inference import VideoDetector, detect_dataset
    from s3d_det.evaluation.detections import save_detections
    from s3d_det.utils.io import available_cores

    if not os.path.isfile(weights):
        raise InputError(f"--weights: no such file: {weights}")
    opts = list(args.opts) + ["MODEL.WEIGHTS", weights] + (["DATASETS.SPLIT", str(split)] if split else [])
    cfg = load_config(config_file, opts)
    device = resolve_device(cfg.MODEL.DEVICE)
    if device.type == "cpu":
        # every core, less one for the read-ahead thread (DATALOADER.NUM_WORKERS > 0): oversubscribed OpenMP
        # threads spin-wait for a core they do not get
        torch.set_num_threads(max(1, available_cores() - (cfg.DATALOADER.NUM_WORKERS > 0)))
    gt, root = load_dataset_gt(cfg, make_synthetic=False)
    split = cfg.DATASETS.SPLIT
    flow_cfg = flow_stream(cfg, config_file, opts)  # MODEL.TWO_STREAM: ACT's fusion with a flow stream
    data_cfg = with_modality_of(cfg, flow_cfg) if flow_cfg else cfg
    _, test_set = build_datasets(data_cfg, gt, root)
    num_classes = len(gt["labels"])
    model = (build_two_stream_detector(cfg, flow_cfg, num_classes) if flow_cfg
             else build_model(cfg, num_classes=num_classes)).to(device).eval()
    # per keyframe in float32, as training evaluates (tools/train_det.py); shared under the config's AMP on CUDA
    amp = {"amp_dtype": None} if args.inference == "per_keyframe" else {}
    detector = VideoDetector.from_config(model, data_cfg, mode=args.inference, device=device, **amp)
    from s3d_det.engine.evaluation import keyframes_to_detect

    dets = detect_dataset(detector, test_set, frames=keyframes_to_detect(gt, args.protocol))  # AVA: keyframes only
    out = args.out or os.path.join(cfg.OUTPUT_DIR, "inference")
    path = os.path.join(out, f"detections_split{split}.npz")
    save_detections(path, dets)
    if args.protocol == "ava":  # AVA's frame-AP on the keyframes; no video-mAP on its sparse tubes
        from s3d_det.data.ava_gt import score_ava

        result, vmap = score_ava(gt, dets, split=split, iou=args.iou), None
    else:
        result = frame_ap(gt, dets.videos, dets.frame_dets, protocol=args.protocol, iou=args.iou)
        vmap = video_map(gt, dets.videos, frame_dets=dets.frame_dets)
    report(result, vmap, args, f"{weights}: {len(dets.videos)} test videos of split {split}, frame-AP protocol "
                               f"{args.protocol}, IoU {args.iou:g}; detections in {path}",
           "tubes linked from the frame detections",
           plots=os.path.join(args.plots, f"split{split}") if args.plots and args.split == "all" else args.plots)
    errors = None
    if args.errors:
        errors = report_errors(gt, dets.videos, dets, args)
        if flow_cfg:
            print("accuracy on the GT boxes: not for a two-stream config (run it on each stream's config)")
        else:
            errors["gt_box_accuracy"] = report_gt_box_accuracy(config_file, opts, data_cfg, gt, test_set, device)
    return split, result, vmap, path, errors


def report_gt_box_accuracy(config_file: str, opts: List[str], data_cfg, gt: dict, test_set, device) -> dict:
    """ACT's classification accuracy on the GT boxes (``frameCLASSIF``) of a model: the same weights with the GT
    boxes as proposals (``MODEL.PROPOSALS gt``), every class's score kept (no threshold, no NMS), each box's
    scores gathered into a vector (``s3d_det.evaluation.errors.gt_box_accuracy``). Prints the table; returns
    its JSON entry."""
    from s3d_det.config import load_config
    from s3d_det.engine.defaults import build_model
    from s3d_det.engine.inference import VideoDetector, detect_dataset
    from s3d_det.evaluation.errors import ScoredBoxes, gt_box_accuracy

    oracle = load_config(config_file, list(opts) + [
        "MODEL.PROPOSALS", "gt", "MODEL.ROI_HEAD.SCORE_THRESH", "0.0", "MODEL.ROI_HEAD.CLASS_SCORE_THRESH", "[]",
        "MODEL.ROI_HEAD.NMS_THRESH", "1.0", "MODEL.ROI_HEAD.DETECTIONS_PER_IMG", "100000",
        # MODEL.WEIGHTS holds every weight: no 2D part to fill, no 3D file to load first
        "MODEL.WEIGHTS_2D", "", "MODEL.WEIGHTS_3D", ""])
    model = build_model(oracle, num_classes=len(gt["labels"])).to(device).eval()
    detector = VideoDetector.from_config(model, data_cfg, mode="per_keyframe", device=device, amp_dtype=None,
                                         smooth_frames=0)  # each box's own scores, not its neighbours' mean
    rows = detect_dataset(detector, test_set).per_frame
    keys = np.column_stack([rows.video, rows.frame, np.round(rows.boxes * 1000)])
    unique, box_index = np.unique(keys, axis=0, return_inverse=True)
    scores = np.zeros((len(unique), len(gt["labels"])))
    scores[box_index.reshape(-1), rows.label] = rows.score
    boxes = np.zeros((len(unique), 4))
    boxes[box_index.reshape(-1)] = rows.boxes
    accuracy = gt_box_accuracy(gt, test_set.videos, ScoredBoxes(video=unique[:, 0].astype(np.int64),
                                                                 frame=unique[:, 1].astype(np.int64),
                                                                 boxes=boxes, scores=scores))
    print("classification accuracy on the GT boxes (ACT's frameCLASSIF: the class scores of the model on each GT "
          "box), percent:")
    print(format_table(["class", "GT boxes", "accuracy"],
                       [[name, accuracy.num_gt[name], f"{accuracy.accuracy[name]:.2f}"] for name in accuracy.classes]
                       + [["mean", "", f"{accuracy.mean:.2f}"]]))
    return {"classes": accuracy.classes, "accuracy": accuracy.accuracy, "mean": accuracy.mean,
            "num_gt": accuracy.num_gt, "num_correct": accuracy.num_correct, "num_no_box": accuracy.num_no_box}


def model_mode(args) -> int:
    from s3d_det.config import ConfigError, load_config

    try:
        if args.split == "all":
            from s3d_det.engine.defaults import load_dataset_gt

            cfg = load_config(args.config_file.replace("{split}", "1"), list(args.opts))
            two = cfg.MODEL.TWO_STREAM
            if two.FLOW_CONFIG and "{split}" not in two.FLOW_CONFIG + two.FLOW_WEIGHTS:
                raise InputError("--split all needs one flow model per split: put {split} in "
                                 "MODEL.TWO_STREAM.FLOW_WEIGHTS (or FLOW_CONFIG)")
            gt, _ = load_dataset_gt(cfg, make_synthetic=False)
            splits: List[Optional[int]] = list(range(1, len(gt["test_videos"]) + 1))
        elif args.split is None and "{split}" in args.config_file + args.weights:
            raise InputError("--config-file/--weights contain {split}: give --split")
        else:
            splits = [args.split]
        results = {}
        for split in splits:
            name = str(split if split is not None else 1)
            split, result, vmap, _, errors = evaluate_split(args.config_file.replace("{split}", name),
                                                            args.weights.replace("{split}", name), split, args)
            results[split] = {**result.to_dict(), "video_mAP": vmap, **({"errors": errors} if errors else {})}
    except (ConfigError, InputError, OSError, ValueError, pickle.UnpicklingError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    payload = next(iter(results.values()))
    if len(results) > 1:
        payload = _mean_results(results)
        rows = [[name] + [f"{r['per_class_AP'][name]:.2f}" for r in results.values()] + [f"{ap:.2f}"]
                for name, ap in payload["per_class_AP"].items()]
        rows.append(["frame-mAP"] + [f"{r['frame_mAP']:.2f}" for r in results.values()]
                    + [f"{payload['frame_mAP']:.2f}"])
        rows += [[f"video-mAP@{k}"] + [f"{r['video_mAP'][k]:.2f}" for r in results.values()] + [f"{v:.2f}"]
                 for k, v in payload["video_mAP"].items()]
        print(f"mean over splits {', '.join(map(str, results))}:")
        print(format_table(["class"] + [f"split {k}" for k in results] + ["mean"], rows))
    if args.json:
        write_json(args.json, {**payload, "splits": {str(k): v for k, v in results.items()}})
        print(f"wrote {args.json}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    problem = errors_problem(args)
    if problem:
        print("error: " + problem, file=sys.stderr)
        return 2
    return model_mode(args) if args.config_file is not None else score_mode(args)


if __name__ == "__main__":
    sys.exit(run_tool(main))
