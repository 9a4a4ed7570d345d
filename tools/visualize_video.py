#!/usr/bin/env python
"""Detects actions in a video (or draws saved detections) and writes the video with the detections drawn.

    python tools/visualize_video.py --config-file CFG --weights W --input VIDEO_OR_FRAMES --output OUT.mp4
        [--gif OUT.gif] [--sheet OUT.png] [--json OUT.json] [--score-thresh 0.5] [--gt GT.pkl --video NAME]
        [--mode shared|per_keyframe] [--fps FPS] [--flow FLOW_DIR] [KEY VALUE ...]
    python tools/visualize_video.py --detections DETS.npz [--video NAME] --input VIDEO_OR_FRAMES --output OUT.mp4 ...

The input is a video file OpenCV reads (.mp4, .avi, ...) or a folder of frames ``00001.jpg|png``. With a model
(``--config-file`` and ``--weights``; ``KEY VALUE`` pairs override the config as in ``tools/train_det.py``), every
frame is a keyframe (``s3d_det.engine.inference``: ``--mode shared``, the default, shares the 3D network's windows
between keyframes, ``TEST.WINDOW``; ``per_keyframe`` runs one clip per keyframe). ``--detections`` draws the rows of
a detections ``.npz`` instead (e.g. ``OUTPUT_DIR/detections.npz`` of a training run), no model needed; ``--video``
picks the video when the file holds several. A model that reads optical flow (``INPUT.MODALITY`` flow or brox, or
a two-stream config, ``MODEL.TWO_STREAM``; docs/flow.md) takes the video's flow folder with ``--flow``.

Every detection scoring at least ``--score-thresh`` is drawn with its action and score, one colour per tube
(detections linked over frames per action, ``s3d_det.evaluation.linking``), with the frame number. ``--gt GT.pkl
--video NAME`` also draws that video's ground-truth boxes, white and dashed, for error analysis. The video is
written at the source's frame rate (a frame folder has none, and a video header's rate of 0, NaN or above 1000
is taken for none, with a warning: ``--fps``, default 25; an odd-sized video is written padded to even sizes);
``--gif`` adds a GIF, ``--sheet`` a contact sheet PNG of ``--sheet-frames`` evenly spaced frames, ``--json`` the
drawn detections per frame: ``{"input", "video", "fps", "size": [h, w], "num_frames", "classes", "score_thresh",
"frames": [{"frame", "boxes": [[x1, y1, x2, y2], ...] (original pixels), "labels": [action, ...], "label_ids",
"scores", "tubes"}]}``.

Action names come from ``--gt``, else from the config's dataset ground truth, else they are "action K".
Exit codes: 0 done; 2 bad input (a missing, unreadable or empty video, frames of different sizes, a detections
file without the video, ...), reported on one line naming the file.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from typing import List, Optional, Sequence

import numpy as np

from s3d_det.config import ConfigError
from s3d_det.data.annotations import keyframe_boxes, load_gt
from s3d_det.evaluation.detections import FrameDetections
from s3d_det.utils.errors import run_tool
from s3d_det.utils.io import write_json


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", metavar="CFG", help="model config (with --weights)")
    parser.add_argument("--weights", metavar="W", help="model weights")
    parser.add_argument("--detections", metavar="DETS.npz", help="draw these detections instead of running a model")
    parser.add_argument("--input", required=True, metavar="VIDEO_OR_FRAMES", help="a video file or a frame folder")
    parser.add_argument("--flow", metavar="FLOW_DIR", help="the video's optical flow (x/ and y/ JPEGs, or Brox JPEGs), "
                                                          "for a model that reads flow (INPUT.MODALITY, two-stream)")
    parser.add_argument("--output", required=True, metavar="OUT.mp4", help="the video to write (.mp4 or .avi)")
    parser.add_argument("--gif", metavar="OUT.gif", help="also write a GIF")
    parser.add_argument("--sheet", metavar="OUT.png", help="also write a contact sheet of evenly spaced frames")
    parser.add_argument("--sheet-frames", type=int, default=12, help="frames on the contact sheet (default: 12)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the drawn detections, per frame")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="draw detections scoring at least this")
    parser.add_argument("--gt", metavar="GT.pkl", help="also draw the ground truth of --video (ACT schema)")
    parser.add_argument("--video", metavar="NAME", help="the video's name in --gt and --detections")
    parser.add_argument("--mode", choices=("shared", "per_keyframe"), default="shared",
                        help="how the 3D features are computed (default: shared)")
    parser.add_argument("--fps", type=float, help="frame rate of the output (default: the input's, else 25)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if args.detections is None and (args.config_file is None or args.weights is None):
        parser.error("give --config-file and --weights (run a model) or --detections (draw saved detections)")
    if args.detections is not None and (args.config_file or args.weights or args.opts or args.flow):
        parser.error("--detections draws saved detections: --config-file, --weights, --flow and overrides go "
                     "without it")
    if args.gt is not None and args.video is None:
        parser.error("--gt needs --video: the name of the input's video in the ground truth")
    if len(args.opts) % 2:
        parser.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    if args.sheet_frames < 1 or (args.fps is not None and not 0 < args.fps <= 1000):
        parser.error("--sheet-frames must be positive and --fps in (0, 1000]")
    return args


def detect(args, source, gt: Optional[dict]) -> tuple:
    """Runs the model on every frame: (``FrameDetections``, action names)."""
    from s3d_det.config import load_config
    from s3d_det.data.flow import BroxFlowSource, FlowFolderSource
    from s3d_det.engine.defaults import (
        action_names,
        build_model,
        build_two_stream_detector,
        flow_stream,
        with_modality_of,
    )
    from s3d_det.engine.inference import VideoDetector

    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights: no such file: {args.weights}")
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.WEIGHTS", args.weights])
    names = list(gt["labels"]) if gt is not None else action_names(cfg, args.weights)
    flow_cfg = flow_stream(cfg, args.config_file, list(args.opts))  # a two-stream config: ACT's fusion
    data_cfg = with_modality_of(cfg, flow_cfg) if flow_cfg else cfg
    modality = data_cfg.INPUT.MODALITY
    flow = None
    if modality != "rgb":
        if not args.flow:
            raise ValueError(f"{args.config_file}: the model reads optical flow (INPUT.MODALITY {modality!r}): give "
                             "--flow, the video's flow folder (tools/prepare_data.py flow)")
        if not os.path.isdir(args.flow):
            raise FileNotFoundError(f"--flow: no such folder: {args.flow}")
        flow = (FlowFolderSource if modality == "flow" else BroxFlowSource)(args.flow, nframes=source.num_frames)
    elif args.flow:
        raise ValueError(f"--flow given, but {args.config_file} reads RGB only (INPUT.MODALITY 'rgb')")
    model = build_two_stream_detector(cfg, flow_cfg, len(names)) if flow_cfg \
        else build_model(cfg, num_classes=len(names))
    detector = VideoDetector.from_config(model, data_cfg, mode=args.mode)
    detector.model.to(detector.device)
    return detector(source, progress=not args.quiet, clip_source=flow), names


def saved_detections(args, gt: Optional[dict]) -> tuple:
    """The detections of --detections for the input's video: (``FrameDetections``, action names)."""
    from s3d_det.evaluation.detections import load_detections

    dets = load_detections(args.detections)
    if args.video is not None:
        if args.video not in dets.videos:
            raise ValueError(f"{args.detections} has no detections of video {args.video!r}")
        index = dets.videos.index(args.video)
    elif len(dets.videos) == 1:
        index = 0
    else:
        raise ValueError(f"{args.detections} holds {len(dets.videos)} videos: pick the input's with --video")
    per_frame = dets.per_frame
    largest = int(per_frame.label.max()) + 1 if len(per_frame) else 0
    names = list(gt["labels"]) if gt is not None else [f"action {k}" for k in range(largest)]
    if largest > len(names):
        raise ValueError(f"{args.detections}: label {largest - 1} but {args.gt} has {len(names)} actions")
    return per_frame.select(per_frame.video == index), names


def frames_json(args, source, dets: FrameDetections, tubes: np.ndarray, names: List[str], fps: float) -> dict:
    frames = []
    for f in range(1, source.num_frames + 1):
        sel = dets.frame == f
        labels = dets.label[sel].tolist()
        frames.append({"frame": f, "boxes": dets.boxes[sel].round(2).tolist(),
                       "labels": [names[k] for k in labels], "label_ids": labels,
                       "scores": dets.score[sel].round(4).tolist(), "tubes": tubes[sel].tolist()})
    return {"input": args.input, "video": args.video, "fps": fps, "size": list(source.size),
            "num_frames": source.num_frames, "classes": names, "score_thresh": args.score_thresh, "frames": frames}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from s3d_det.engine.inference import open_video
    from s3d_det.vis import render_video

    try:
        source = open_video(args.input)
        gt = load_gt(args.gt) if args.gt else None
        boxes = None
        if gt is not None:
            if args.video not in gt["nframes"]:
                raise ValueError(f"{args.gt} has no video {args.video!r}")
            if tuple(gt["resolution"][args.video]) != tuple(source.size):
                raise ValueError(f"{args.gt}: video {args.video!r} is {gt['resolution'][args.video]} (h, w), "
                                 f"{args.input} is {tuple(source.size)}")
            boxes = keyframe_boxes(gt, args.video)
        dets, names = saved_detections(args, gt) if args.detections else detect(args, source, gt)
        fps = args.fps or source.fps or 25.0
        dets, tubes = render_video(source, dets, names, output=args.output, fps=fps, score_thresh=args.score_thresh,
                                   gt=boxes, gif=args.gif, sheet=args.sheet, sheet_frames=args.sheet_frames,
                                   progress=not args.quiet)
        if args.json:
            write_json(args.json, frames_json(args, source, dets, tubes, names, fps))
    except (ConfigError, OSError, ValueError, pickle.UnpicklingError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    written = [p for p in (args.output, args.gif, args.sheet, args.json) if p]
    print(f"{len(dets)} detections (score >= {args.score_thresh:g}) on {source.num_frames} frames of {args.input}; "
          f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
