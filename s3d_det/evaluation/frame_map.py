"""Frame-AP in the three published protocols, reproducing each evaluation code's numbers exactly.

========  ===================================  =========  =================================  ===========================
protocol  reproduces                           frames     matching                           AP
========  ===================================  =========  =================================  ===========================
``act``   ACT-detector ``frameAP`` (also MOC)  all        best *remaining* GT box of the     trapezoids under the raw PR
                                                          frame; a matched box is removed    points from (recall 0,
                                                                                             precision 1), in float32
``voc``   MultiSports ``frameAP``              all        best GT box; a second hit on it    VOC all-points (monotone
          (mmaction2)                                     is a false positive                envelope)
``yowo``  YOWO (Object-Detection-Metrics)      with a GT  as ``voc``                         VOC all-points
========  ===================================  =========  =================================  ===========================

IoU: ``act`` counts pixels inclusively (+1 on widths and heights), ``voc`` does not, ``yowo`` counts them
inclusively and gives 0 to boxes that do not touch (the +1 widths of a gap under one pixel are not counted).
Classes: ``act`` averages over every class of ``gt["labels"]`` (a class without ground truth scores 0, where
ACT's code would divide by zero); ``voc`` and ``yowo`` leave classes without ground truth out of the mean, as
their codes do. Only ``yowo`` drops detections on frames that hold no ground-truth box (YOWO never runs on them).

Ties in score: ``act`` and ``voc`` rank a class's detections with ``numpy.argsort(-score)`` (numpy's default
sort, not stable) over that class's rows in file order, the very call their codes make, so ties fall the same
way as in those codes on the same machine; ``yowo`` sorts stably, ties in the order YOWO's evaluator reads them:
by frame-file name ``<class>_<video>_<frame:05d>`` and then by row.

Everything is pure numpy and vectorised: detections are matched rank by rank across all frames at once, so the
Python loop runs over classes and over the largest number of detections one frame has for one class, never
over detections. Inputs are never modified.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Sequence

import numpy as np

from .detections import FrameDetections, checked_frame_detections

__all__ = ["PROTOCOLS", "FrameAPResult", "act_pr_ap", "frame_ap", "iou2d"]

PROTOCOLS = ("act", "voc", "yowo")


@dataclasses.dataclass
class FrameAPResult:
    """Frame-AP of one protocol and IoU threshold.

    Attributes:
        classes: the class names that count in the mean, in label order.
        ap: class name -> AP in percent (for ``classes``).
        mean: frame-mAP in percent.
        precision, recall: class name -> the PR points the AP was computed from, in rank order (``act``: float32,
            starting with the point (recall 0, precision 1); ``voc``/``yowo``: float64, one point a detection).
        num_gt: class name -> number of ground-truth boxes; num_dets: class name -> detections ranked.
    """

    protocol: str
    iou: float
    classes: List[str]
    ap: Dict[str, float]
    mean: float
    precision: Dict[str, np.ndarray]
    recall: Dict[str, np.ndarray]
    num_gt: Dict[str, int]
    num_dets: Dict[str, int]

    def to_dict(self) -> dict:
        """``{"protocol", "iou", "frame_mAP", "per_class_AP"}`` with APs in percent (the ``--json`` format)."""
        return {
            "protocol": self.protocol,
            "iou": self.iou,
            "frame_mAP": self.mean,
            "per_class_AP": {name: self.ap[name] for name in self.classes},
        }


def iou2d(boxes: np.ndarray, box: np.ndarray, protocol: str = "act") -> np.ndarray:
    """IoU of ``boxes`` (..., 4) with ``box`` (..., 4) (broadcast), x1,y1,x2,y2 in pixels, as ``protocol``
    computes it: ``act`` +1 pixel, ``voc`` none, ``yowo`` +1 pixel and 0 for boxes that do not touch.
    ``boxes`` plays the ground truth's part, ``box`` the detection's (the order of the published formulas)."""
    g = np.asarray(boxes, dtype=np.float64)
    d = np.asarray(box, dtype=np.float64)
    gx1, gy1, gx2, gy2 = np.moveaxis(g, -1, 0)
    dx1, dy1, dx2, dy2 = np.moveaxis(d, -1, 0)
    if protocol == "act":
        w = np.maximum(0, np.minimum(gx2 + 1, dx2 + 1) - np.maximum(gx1, dx1))
        h = np.maximum(0, np.minimum(gy2 + 1, dy2 + 1) - np.maximum(gy1, dy1))
        inter = w * h
        return inter / ((gx2 - gx1 + 1) * (gy2 - gy1 + 1) + (dx2 - dx1 + 1) * (dy2 - dy1 + 1) - inter)
    if protocol == "voc":
        w = np.maximum(0, np.minimum(gx2, dx2) - np.maximum(gx1, dx1))
        h = np.maximum(0, np.minimum(gy2, dy2) - np.maximum(gy1, dy1))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0/0, as in the original
            return inter / ((gx2 - gx1) * (gy2 - gy1) + (dx2 - dx1) * (dy2 - dy1) - inter)
    if protocol == "yowo":
        touch = ~((dx1 > gx2) | (gx1 > dx2) | (dy2 < gy1) | (dy1 > gy2))
        inter = (np.minimum(dx2, gx2) - np.maximum(dx1, gx1) + 1) * (np.minimum(dy2, gy2) - np.maximum(dy1, gy1) + 1)
        union = (dx2 - dx1 + 1) * (dy2 - dy1 + 1) + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(touch, inter / np.where(touch, union, 1.0), 0.0)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _gt_rows(gt: Mapping, videos: Sequence[str]):
    """All GT boxes of ``videos``: video index (G,), frame (G,), label (G,), boxes (G,4) float64, in the order
    the published codes collect them (video, then the label's tubes in order, then frame)."""
    vids, frames, labels, boxes = [], [], [], []
    for iv, video in enumerate(videos):
        for label, tubes in gt["gttubes"].get(video, {}).items():
            for tube in tubes:
                tube = np.asarray(tube, dtype=np.float64).reshape(-1, 5)
                vids.append(np.full(len(tube), iv, dtype=np.int64))
                frames.append(tube[:, 0].astype(np.int64))
                labels.append(np.full(len(tube), int(label), dtype=np.int64))
                boxes.append(tube[:, 1:5])
    if not vids:
        return (np.zeros(0, np.int64),) * 3 + (np.zeros((0, 4)),)
    return np.concatenate(vids), np.concatenate(frames), np.concatenate(labels), np.concatenate(boxes)


def _file_name_rank(dets: FrameDetections, videos: Sequence[str]) -> np.ndarray:
    """(N,) rank of each detection's frame-file name ``<class>_<video>_<frame:05d>`` in YOWO's reading order."""
    vid, frame = dets.video, dets.frame
    keys, inverse = np.unique(vid * (int(frame.max(initial=0)) + 1) + frame, return_inverse=True)
    first = np.zeros(len(keys), dtype=np.int64)
    first[inverse] = np.arange(len(dets))  # any row of each (video, frame)
    names = np.array([f"{videos[v].replace('/', '_')}_{f:05d}"
                      for v, f in zip(vid[first].tolist(), frame[first].tolist())])
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(len(names))
    return rank[inverse.reshape(-1)]


def _match(boxes, order, gt_key, gt_box, det_key, protocol, threshold) -> np.ndarray:
    """True-positive flags (n,) for one class's detections, boxes ``boxes`` (n, 4), ranked by ``order``.

    ``gt_key`` (G,) int64 frame keys and ``gt_box`` (G,4) hold that class's GT boxes in collection order. The
    detections of one frame are handled in rank order; the loop runs over ranks within a frame, each step
    handling the detections of that rank in every frame at once.
    """
    n = len(boxes)
    tp = np.zeros(n, dtype=bool)
    if n == 0 or len(gt_key) == 0:
        return tp
    by_key = np.argsort(gt_key, kind="stable")  # keeps collection order within a frame
    keys, starts, counts = np.unique(gt_key[by_key], return_index=True, return_counts=True)
    width = int(counts.max())
    slot = np.arange(len(by_key)) - np.repeat(starts, counts)
    group_of_gt = np.repeat(np.arange(len(keys)), counts)
    padded = np.zeros((len(keys), width, 4))
    padded[group_of_gt, slot] = gt_box[by_key]
    present = np.zeros((len(keys), width), dtype=bool)
    present[group_of_gt, slot] = True
    taken = np.zeros_like(present)

    group = np.minimum(np.searchsorted(keys, det_key), len(keys) - 1)
    has_gt = np.flatnonzero(keys[group] == det_key)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    has_gt = has_gt[np.lexsort((rank[has_gt], group[has_gt]))]  # by frame, then rank
    g = group[has_gt]
    first = np.r_[True, g[1:] != g[:-1]]
    position = np.arange(len(g)) - np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    for p in range(int(position.max()) + 1 if len(g) else 0):
        sel = has_gt[position == p]
        gi = group[sel]
        ious = iou2d(padded[gi], boxes[sel, None], protocol)
        blocked = ~present[gi] | taken[gi] if protocol == "act" else ~present[gi]
        ious = np.where(blocked, -np.inf, ious)
        best = np.argmax(ious, axis=1)
        hit = ious[np.arange(len(sel)), best] >= threshold
        if protocol != "act":
            hit &= ~taken[gi, best]
        taken[gi[hit], best[hit]] = True
        tp[sel[hit]] = True
    return tp


def act_pr_ap(tp_ranked: np.ndarray, num_gt: int):
    """ACT's PR table (float32, from (recall 0, precision 1)) and its trapezoid AP (float32)."""
    n = len(tp_ranked)
    pr = np.empty((n + 1, 2), dtype=np.float32)
    pr[0] = (1.0, 0.0)
    if n and num_gt == 0:  # ACT divides by zero here; a class without ground truth scores 0
        pr[1:, 0] = 0.0
        pr[1:, 1] = 0.0
    elif n:
        tps = np.cumsum(tp_ranked)
        pr[1:, 0] = tps / np.arange(1, n + 1)
        pr[1:, 1] = tps / num_gt
    ap = np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5)
    return pr[:, 0], pr[:, 1], ap


def _envelope(precision: np.ndarray, recall: np.ndarray):
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return (mrec[steps] - mrec[steps - 1]) * mpre[steps]


def _ap_voc(tp_ranked: np.ndarray, num_gt: int):
    """MultiSports' PR points (float64) and VOC all-points AP (numpy's pairwise sum, as there)."""
    tps = np.cumsum(tp_ranked)
    precision = tps / np.arange(1, len(tps) + 1)
    recall = tps / num_gt
    return precision, recall, np.sum(_envelope(precision, recall))


def _ap_yowo(tp_ranked: np.ndarray, num_gt: int):
    """Object-Detection-Metrics' PR points and VOC all-points AP (summed left to right, as there)."""
    acc_tp = np.cumsum(tp_ranked, dtype=np.float64)
    acc_fp = np.cumsum(~tp_ranked, dtype=np.float64)
    precision = acc_tp / (acc_fp + acc_tp)
    recall = acc_tp / num_gt
    terms = _envelope(precision, recall)
    return precision, recall, (np.cumsum(terms)[-1] if len(terms) else 0.0)


def frame_ap(
    gt: Mapping,
    videos: Sequence[str],
    frame_dets,
    protocol: str = "act",
    iou: float = 0.5,
) -> FrameAPResult:
    """Frame-AP of ``frame_dets`` against ``gt`` over ``videos``.

    Args:
        gt: ground truth in the ACT schema (see :mod:`s3d_det.data.annotations`).
        videos: the evaluated video names (a split's test list); the detections' video index points into it.
        frame_dets: :class:`~.detections.FrameDetections`, or its rows (N, 8) ``video_index, frame (1-based),
            label (0-based), score, x1, y1, x2, y2`` in pixels of the original frame; in file order (it matters
            only for ties, see the module docstring).
        protocol: ``"act"``, ``"voc"`` or ``"yowo"`` (module docstring).
        iou: IoU threshold in (0, 1]; a detection matches at IoU >= ``iou``.

    Returns:
        :class:`FrameAPResult` with APs in percent.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou}")
    videos = list(videos)
    dets = checked_frame_detections(videos, frame_dets, gt=gt, source="frame_dets")

    labels = list(gt["labels"])
    g_vid, g_frame, g_label, g_box = _gt_rows(gt, videos)
    max_frame = int(max(g_frame.max(initial=0), dets.frame.max(initial=0))) + 1
    g_key = g_vid * max_frame + g_frame
    d_key = dets.video * max_frame + dets.frame
    if protocol == "yowo":  # YOWO runs only on frames holding ground truth
        keep = np.isin(d_key, g_key)
        dets, d_key = dets.select(keep), d_key[keep]
    d_label = dets.label
    name_rank = _file_name_rank(dets, videos) if protocol == "yowo" else None

    classes, ap, precision, recall, num_gt, num_dets = [], {}, {}, {}, {}, {}
    ap_values = []
    for c, name in enumerate(labels):
        rows = np.flatnonzero(d_label == c)
        score = dets.score[rows]
        in_class = g_label == c
        n_gt = int(in_class.sum())
        if protocol != "act" and n_gt == 0:
            continue  # left out of the mean, as MultiSports' and YOWO's codes do
        if protocol == "yowo":  # stable: ties by file name, then row
            order = np.lexsort((np.arange(len(rows)), name_rank[rows], -score))
        else:
            order = np.argsort(-score)
        tp = _match(dets.boxes[rows], order, g_key[in_class], g_box[in_class], d_key[rows], protocol, iou)
        p, r, value = {"act": act_pr_ap, "voc": _ap_voc, "yowo": _ap_yowo}[protocol](tp[order], n_gt)
        classes.append(name)
        precision[name], recall[name] = p, r
        num_gt[name], num_dets[name] = n_gt, len(rows)
        ap_values.append(value)

    if protocol == "act":
        percent = 100 * np.array(ap_values, dtype=np.float32)  # ACT keeps float32 to the end
        mean = float(np.mean(percent)) if len(percent) else 0.0
    elif protocol == "voc":
        percent = 100 * np.array(ap_values, dtype=np.float64)
        mean = float(np.mean(percent)) if len(percent) else 0.0
    else:
        percent = 100 * np.array(ap_values, dtype=np.float64)
        mean = float(100 * (np.cumsum(ap_values)[-1] / len(ap_values))) if ap_values else 0.0
    ap = {name: float(v) for name, v in zip(classes, percent)}
    return FrameAPResult(protocol, float(iou), classes, ap, mean, precision, recall, num_gt, num_dets)
