"""Video-AP: ACT-detector's ``videoAP`` of tubes against ground-truth tubes.

A set of tubes travels in the detections format (:mod:`.detections`): ``tubes`` (K, 3)
``video_index, label, score`` and ``tube_boxes`` (P, 6) ``tube_index, frame (1-based), x1, y1, x2, y2`` in pixels
of the original frame; the tubes come from a file or from :func:`~.linking.link_tubes` of per-frame detections.

- :func:`video_ap` is ACT's ``videoAP``: a class's tubes ranked by ``numpy.argsort(-score)`` (numpy's default
  sort, over the class's tubes in file order), each matched to the remaining GT tube of its video with the
  highest st-IoU (:func:`~.tubes.iou3dt`; the first one on ties), a true positive at st-IoU >= the threshold,
  that GT tube then removed; PR points in float32 from (recall 0, precision 1); AP = trapezoids under them. The
  mean runs over every class of ``gt["labels"]``. A class without ground truth scores 0 (without detections
  ACT's code gives 0 too; with detections it would divide by zero). ACT's ``videoAP`` also ran ``nms3dt(0.3)``
  on each video's tubes before ranking; here that step belongs to the linking (``LinkingConfig.tube_nms``), so
  :func:`video_ap` scores the tubes it is given as they are.
- :func:`video_map` gives the video-mAP at several thresholds and averaged over 0.5:0.05:0.95.

Pure numpy; st-IoUs are computed one tube against many, once for all thresholds. Inputs are never modified.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .detections import (
    TUBE_BOX_BOX,
    TUBE_BOX_FRAME,
    TUBE_BOX_TUBE,
    TUBE_LABEL,
    TUBE_SCORE,
    TUBE_VIDEO,
    Detections,
    FrameDetections,
    check_detections,
)
from .frame_map import act_pr_ap
from .linking import LinkingConfig, link_tubes
from .tubes import TubeSet

__all__ = ["VideoAPResult", "video_ap", "video_map", "COCO_STYLE_THRESHOLDS"]

COCO_STYLE_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.5, 0.95, 10), 2))


@dataclasses.dataclass
class VideoAPResult:
    """Video-AP at one st-IoU threshold.

    Attributes:
        iou: the st-IoU threshold.
        classes: every class name of ``gt["labels"]``, in label order (all count in the mean).
        ap: class name -> AP in percent; mean: video-mAP in percent.
        precision, recall: class name -> float32 PR points in rank order, starting with (recall 0, precision 1).
        num_gt: class name -> GT tubes; num_dets: class name -> tubes ranked.
    """

    iou: float
    classes: List[str]
    ap: Dict[str, float]
    mean: float
    precision: Dict[str, np.ndarray]
    recall: Dict[str, np.ndarray]
    num_gt: Dict[str, int]
    num_dets: Dict[str, int]

    def to_dict(self) -> dict:
        """``{"iou", "video_mAP", "per_class_AP"}`` in percent."""
        return {"iou": self.iou, "video_mAP": self.mean, "per_class_AP": dict(self.ap)}


def _split_tubes(tubes: np.ndarray, tube_boxes: np.ndarray) -> List[np.ndarray]:
    """The (n, 5) box array of each tube, rows sorted by frame; a tube without boxes or with a frame twice is an
    error naming it."""
    order = np.lexsort((tube_boxes[:, TUBE_BOX_FRAME], tube_boxes[:, TUBE_BOX_TUBE]))
    index = tube_boxes[order, TUBE_BOX_TUBE].astype(np.int64)
    rows = np.column_stack([tube_boxes[order, TUBE_BOX_FRAME], tube_boxes[order, TUBE_BOX_BOX]])  # frame, x1..y2
    bounds = np.searchsorted(index, np.arange(len(tubes) + 1))
    out = []
    for k in range(len(tubes)):
        boxes = rows[bounds[k]:bounds[k + 1]]
        if len(boxes) == 0:
            raise ValueError(f"tubes row {k}: the tube has no rows in tube_boxes")
        repeated = boxes[1:, 0][boxes[1:, 0] == boxes[:-1, 0]]
        if len(repeated):
            raise ValueError(f"tubes row {k}: frame {repeated[0]:g} appears twice in tube_boxes")
        out.append(boxes)
    return out


def _video_aps(gt: Mapping, videos: Sequence[str], tubes: np.ndarray, tube_boxes: np.ndarray,
               thresholds: Sequence[float]) -> List[VideoAPResult]:
    """:func:`video_ap` at several thresholds, the st-IoUs computed once."""
    for th in thresholds:
        if not 0.0 < th <= 1.0:
            raise ValueError(f"st-IoU threshold must be in (0, 1], got {th}")
    videos = list(videos)
    tubes = np.asarray(tubes, dtype=np.float64).reshape(-1, 3)
    tube_boxes = np.asarray(tube_boxes, dtype=np.float64).reshape(-1, 6)
    check_detections(Detections(videos, FrameDetections.empty(), tubes, tube_boxes), gt=gt, source="tubes")
    boxes = _split_tubes(tubes, tube_boxes)
    t_video = tubes[:, TUBE_VIDEO].astype(np.int64)
    t_label = tubes[:, TUBE_LABEL].astype(np.int64)

    labels = list(gt["labels"])
    per_class = []  # (ranked tubes, st-IoUs with their video's GT tubes, GT tubes per video, number of GT tubes)
    for c in range(len(labels)):
        gt_tubes = {iv: gt["gttubes"].get(v, {}).get(c, []) for iv, v in enumerate(videos)}
        rows = np.flatnonzero(t_label == c)
        ranked = rows[np.argsort(-tubes[rows, TUBE_SCORE])]
        ious = np.zeros((len(ranked), max(map(len, gt_tubes.values()), default=0)))  # [tube, GT tube of its video]
        for v in np.unique(t_video[ranked]):
            g = len(gt_tubes[v])
            if g == 0:
                continue
            at = np.flatnonzero(t_video[ranked] == v)
            pairs = TubeSet(list(gt_tubes[v]) + [boxes[j] for j in ranked[at]])
            for k in range(g):
                ious[at, k] = pairs.iou3dt(np.arange(g, g + len(at)), np.full(len(at), k))
        per_class.append((ranked, ious, gt_tubes, sum(len(g) for g in gt_tubes.values())))

    results = []
    for th in thresholds:
        names, ap, precision, recall, num_gt, num_dets, values = [], {}, {}, {}, {}, {}, []
        for c, (ranked, ious, gt_tubes, n_gt) in enumerate(per_class):
            left = {iv: np.ones(len(g), dtype=bool) for iv, g in gt_tubes.items()}
            tp = np.zeros(len(ranked), dtype=bool)
            for rank, j in enumerate(ranked):
                free = left[t_video[j]]
                if not free.any():
                    continue
                masked = np.where(free, ious[rank, :len(free)], -np.inf)
                best = int(np.argmax(masked))
                if masked[best] >= th:
                    tp[rank] = True
                    free[best] = False
            name = labels[c]
            precision[name], recall[name], value = act_pr_ap(tp, n_gt)
            names.append(name)
            num_gt[name], num_dets[name] = n_gt, len(ranked)
            values.append(value)
        percent = 100 * np.array(values, dtype=np.float32)  # ACT keeps float32 to the end
        ap = {name: float(v) for name, v in zip(names, percent)}
        mean = float(np.mean(percent)) if len(percent) else 0.0
        results.append(VideoAPResult(float(th), names, ap, mean, precision, recall, num_gt, num_dets))
    return results


def video_ap(gt: Mapping, videos: Sequence[str], tubes: np.ndarray, tube_boxes: np.ndarray,
             iou: float = 0.5) -> VideoAPResult:
    """ACT-detector's video-AP of ``tubes`` against ``gt`` over ``videos`` (see the module docstring).

    Args:
        gt: ground truth in the ACT schema.
        videos: the evaluated video names (a split's test list); the tubes' video index points into it.
        tubes: (K, 3) ``video_index, label (0-based), score``.
        tube_boxes: (P, 6) ``tube_index, frame (1-based), x1, y1, x2, y2`` in pixels of the original frame.
        iou: st-IoU threshold in (0, 1]; a tube matches at st-IoU >= ``iou``.
    Returns:
        :class:`VideoAPResult` with APs in percent.
    """
    return _video_aps(gt, videos, tubes, tube_boxes, [iou])[0]


def video_map(
    gt: Mapping,
    videos: Sequence[str],
    frame_dets=None,
    tubes: Optional[np.ndarray] = None,
    tube_boxes: Optional[np.ndarray] = None,
    linking: Optional[LinkingConfig] = None,
    thresholds: Sequence[float] = (0.2, 0.5, 0.75),
) -> Dict[str, float]:
    """Video-mAP in percent at each of ``thresholds`` and averaged over 0.5:0.05:0.95.

    The tubes are ``tubes``/``tube_boxes`` when given, else :func:`~.linking.link_tubes` of ``frame_dets`` (a
    :class:`~.detections.FrameDetections` or its rows (N, 8)) with
    ``linking`` (default :class:`~.linking.LinkingConfig`).

    Returns:
        ``{"0.2": mAP, "0.5": mAP, "0.75": mAP, "0.5:0.95": mean of the mAPs at 0.5, 0.55, ..., 0.95}``
        (a key per threshold, written with ``"{:g}"``).
    """
    if tubes is None:
        if frame_dets is None:
            raise ValueError("video_map needs frame_dets (to link into tubes) or tubes and tube_boxes")
        tubes, tube_boxes = link_tubes(videos, frame_dets, linking)
    elif tube_boxes is None:
        raise ValueError("tubes and tube_boxes go together: give both or neither")
    thresholds = [float(t) for t in thresholds]
    results = _video_aps(gt, videos, tubes, tube_boxes, thresholds + list(COCO_STYLE_THRESHOLDS))
    out = {f"{th:g}": r.mean for th, r in zip(thresholds, results)}
    out["0.5:0.95"] = float(np.mean([r.mean for r in results[len(thresholds):]]))
    return out
