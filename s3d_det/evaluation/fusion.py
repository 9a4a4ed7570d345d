"""Fusing two streams' detection files (``tools/eval_jhmdb.py --fuse``), pure numpy.

ACT's late fusion averages the two streams' class probabilities on the *same* boxes before NMS and keeps the RGB
boxes (``s3d_det.modeling.two_stream``; a two-stream config does exactly that). Two detection files hold boxes
after NMS, each stream's own, so the file form pairs them first: per video, frame and label, RGB detections in
order of score take the unpaired flow detection of highest IoU, if it is at least ``iou``. A pair becomes one
detection with the RGB box and score ``w s_rgb + (1 - w) s_flow``; an unpaired detection keeps its box and scores
its stream's share alone (``w s_rgb``, or ``(1 - w) s_flow``), as if the other stream had given it 0. When both
files score the same boxes (IoU 1) this is ACT's mean of the two scores.
"""
from __future__ import annotations

import numpy as np

from .detections import Detections, FrameDetections

__all__ = ["fuse_detections", "box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes x1, y1, x2, y2 in continuous pixel coordinates -> (N, M) IoU (0 where the union is 0)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def fuse_detections(rgb: Detections, flow: Detections, *, rgb_weight: float = 0.5, iou: float = 0.5) -> Detections:
    """The fused frame detections of two streams over the same videos (see the module docstring).

    Args:
        rgb, flow: detections of the two streams; their ``videos`` must be the same list (names, in order).
        rgb_weight: w in [0, 1]; ACT's: 0.5.
        iou: the least IoU of a pair.

    Returns ``Detections(videos=rgb.videos, frame_dets=...)`` sorted by video, frame, then score (no tubes: link
    the fused frame detections for video-mAP).
    """
    if list(rgb.videos) != list(flow.videos):
        raise ValueError("the two detection files list different videos (or in another order): "
                         f"{len(rgb.videos)} and {len(flow.videos)} videos")
    if not 0.0 <= rgb_weight <= 1.0 or not 0.0 < iou <= 1.0:
        raise ValueError(f"rgb_weight must lie in [0, 1] and iou in (0, 1], got {rgb_weight} and {iou}")
    a, b = rgb.per_frame, flow.per_frame
    w = float(rgb_weight)
    keys_a = np.stack([a.video, a.frame, a.label], axis=1)
    keys_b = np.stack([b.video, b.frame, b.label], axis=1)
    groups = {}
    for side, keys in ((0, keys_a), (1, keys_b)):
        for i, key in enumerate(map(tuple, keys)):
            groups.setdefault(key, ([], []))[side].append(i)
    rows = []
    for (video, frame, label), (ia, ib) in groups.items():
        ia = sorted(ia, key=lambda i: -a.score[i])
        ib = np.array(sorted(ib, key=lambda i: -b.score[i]), np.int64)
        free = np.ones(len(ib), bool)
        overlaps = box_iou(a.boxes[ia], b.boxes[ib]) if len(ia) and len(ib) else np.zeros((len(ia), len(ib)))
        for row, i in enumerate(ia):
            candidates = np.where(free, overlaps[row], -1.0)
            j = int(np.argmax(candidates)) if len(ib) else -1
            if j >= 0 and candidates[j] >= iou:
                free[j] = False
                score = w * a.score[i] + (1 - w) * b.score[ib[j]]
            else:
                score = w * a.score[i]
            rows.append([video, frame, label, score, *a.boxes[i]])
        for j in np.flatnonzero(free):
            rows.append([video, frame, label, (1 - w) * b.score[ib[j]], *b.boxes[ib[j]]])
    fused = FrameDetections.from_rows(np.array(rows, np.float64).reshape(-1, 8))
    order = np.lexsort((-fused.score, fused.frame, fused.video))
    return Detections(videos=list(rgb.videos), frame_dets=fused.select(order))
