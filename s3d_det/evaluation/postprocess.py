"""Temporal smoothing of frame detections: each detection's score averaged along its action over nearby frames.

A detection of action c at frame f with box b and score s gets the mean, over the frames f' of the video within
``window`` frames of f, of s on f itself and elsewhere of the highest score among the detections of c on f' whose
box overlaps b with IoU at least ``iou`` (0 where none does). Frames outside the video do not count: near its
ends the mean runs over fewer frames. Boxes and labels are kept; only scores change. This is the frame-level
counterpart of scoring a tubelet by its mean (ACT): a person's action holds over many frames, a false detection
rarely does.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import torch
from torchvision.ops import box_iou

from .detections import NUM_COLUMNS, Detections, FrameDetections

__all__ = ["smooth_detections", "smooth_rows", "smooth_scores"]


def smooth_detections(dets: FrameDetections, nframes: Mapping[int, int], *, window: int,
                      iou: float = 0.5) -> FrameDetections:
    """``dets`` with every score replaced by its temporal mean (module docstring), in the same order. ``nframes``
    maps each video index of ``dets`` to its number of frames; ``window`` is frames to each side (0: unchanged);
    ``iou`` the least IoU for a detection on another frame to count as the same person."""
    if window < 0:
        raise ValueError(f"window must be at least 0 frames, got {window}")
    if not 0 < iou <= 1:
        raise ValueError(f"iou must lie in (0, 1], got {iou}")
    if window == 0 or len(dets) == 0:
        return dets
    missing = sorted(set(np.unique(dets.video).tolist()) - set(int(k) for k in nframes))
    if missing:
        raise KeyError(f"no frame count for video index(es) {missing[:5]} of the detections")
    smoothed = dets.score.copy()
    order = np.lexsort((dets.frame, dets.label, dets.video))  # by video, label, frame
    video, label = dets.video[order], dets.label[order]
    starts = np.flatnonzero(np.r_[True, (video[1:] != video[:-1]) | (label[1:] != label[:-1])])
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)]):
        idx = order[lo:hi]
        frame, score = dets.frame[idx], dets.score[idx]
        index = int(dets.video[idx[0]])
        last = int(nframes[index])
        if frame.min() < 1 or frame.max() > last:
            raise ValueError(f"video index {index}: detections on frame(s) outside 1..{last}")
        boxes = torch.from_numpy(dets.boxes[idx])
        overlap = (box_iou(boxes, boxes) >= iou).numpy()
        total = score.copy()  # the detection's own frame: its own score
        for d in [*range(-window, 0), *range(1, window + 1)]:  # each other frame: the best overlapping detection
            hit = overlap & (frame[None, :] == frame[:, None] + d)
            total += np.max(np.where(hit, score[None, :], 0.0), axis=1)
        span = np.minimum(frame + window, last) - np.maximum(frame - window, 1) + 1
        smoothed[idx] = total / span
    return dataclasses.replace(dets, score=smoothed)


def smooth_rows(rows: np.ndarray, nframes: Mapping[int, int], *, window: int, iou: float = 0.5) -> np.ndarray:
    """``smooth_detections`` on interchange rows (N, 8) ``video_index, frame, label, score, x1, y1, x2, y2``:
    a new array, the rows in the same order, only the scores changed."""
    dets = FrameDetections.from_rows(np.asarray(rows, dtype=np.float64).reshape(-1, NUM_COLUMNS))
    return smooth_detections(dets, nframes, window=window, iou=iou).to_rows()


def smooth_scores(dets: Detections, nframes: Mapping[str, int], *, window: int, iou: float = 0.5) -> Detections:
    """``dets`` with every score smoothed by ``smooth_detections``; ``nframes`` maps video names (the GT's
    ``nframes``) to frame counts. Rows keep their order; tubes, if any, are dropped (linked from the old
    scores)."""
    missing = [v for v in dets.videos if v not in nframes]
    if missing:
        raise KeyError(f"nframes has no entry for video(s) {missing[:3]} of the detections")
    counts = {i: int(nframes[v]) for i, v in enumerate(dets.videos)}
    return Detections(videos=dets.videos,
                      frame_dets=smooth_detections(dets.per_frame, counts, window=window, iou=iou))
