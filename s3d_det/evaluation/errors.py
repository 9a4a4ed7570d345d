"""Error analysis of frame detections, as ACT-detector defines it: frame-AP lost to each error type, frame-MABO
and classification accuracy on the ground-truth boxes.

The definitions below are read from ACT-detector's evaluation code (github vkalogeiton/caffe, branch
``act-detector``, ``act-detector-scripts/ACT.py``: functions ``frameAP_error``, ``frameMABO``,
``frameCLASSIF``; IoU ``iou2d`` and AP ``pr_to_ap`` in ``act-detector-scripts/ACT_utils.py``). MOC-Detector
(github MCG-NJU/MOC-Detector, ``src/ACT.py``) ships ``frameAP_error`` unchanged but for one fix (below). Nothing
is copied; the functions here are vectorised numpy restatements.

IoU everywhere: ACT's ``iou2d``, pixels counted inclusively (+1 on widths and heights), i.e.
``frame_map.iou2d(..., protocol="act")``.

**Error types** (``frameAP_error``). For each class c, c's detections are ranked by ``numpy.argsort(-score)``
(as ``frame_map.frame_ap`` with protocol ``act`` does) and matched exactly as ACT's ``frameAP``: a detection is a
*true positive* when the best-IoU box among c's still unmatched GT boxes of its frame has IoU >= ``iou``; that box
is then removed. Every other detection is one error, tested in this order:

1. *localisation* (Loc.): its frame holds a GT box of class c (any number, matched or not). So this is every false
   positive on such a frame: IoU below ``iou`` with every unmatched box (whatever the IoU, 0 included; there is no
   lower bound such as 0.3), and duplicates (all of the frame's c boxes already matched).
2. its frame holds no c box but a GT box of another class: *classification* (Cls.) when its IoU with one of
   those boxes is >= ``iou``, else *other*.
3. the frame holds no GT box at all, but the video has a tube of class c (a key c in ``gttubes[video]``):
   *time* (the action is in the video, not at this frame).
4. otherwise *other* (a frame without GT in a video without c).

ACT's own code tests step 3 with ``labellist[k[0]]``, ``labellist`` keyed by video *name* and ``k[0]`` a video
*index*: it raises ``KeyError`` on the first detection reaching step 3 (never on JHMDB, whose tubes cover every
frame, so JHMDB's time errors are 0 there too). MOC-Detector keys it by video index, the evident intent, which
is what is done here.

**AP lost to an error type.** ACT does not recompute AP after removing errors. Along the ranking it records,
after each detection i (1-based), precision ``tp_i / i``, recall ``tp_i / num_gt`` and for each error type
``count_i / i`` (the fraction of the first i detections that are of that type), starting from the point (recall 0,
precision 1, fractions 0); all in float32. AP is ``pr_to_ap`` of (precision, recall): trapezoids over the raw
points; the AP lost to a type is the same trapezoid sum with that type's fraction in place of precision: the
area under "fraction of the ranked detections that are this error" against recall. *Missed* is
``100 * (1 - final recall)``: GT boxes no detection matches. Since precision and the four fractions sum to 1
at every point, ``AP + Loc. + Cls. + Time + Other + missed = 100`` for every class (up to float32 rounding). All
in percent; the means are plain means over all classes of ``gt["labels"]`` (float32, as ACT prints them).

A class without GT boxes: ACT divides by zero; here (as ``frame_map``'s ``act``) its recall stays 0, so its AP
and its four areas are 0 and missed is 100; it counts in the means, as in ``frame_map``.

**Frame-MABO** (``frameMABO``): for every GT box (of every tube, every class, frames 1..nframes of each test
video), its best overlap is the highest IoU with *any* box of its frame, whatever the box's class or score (0
when the frame has none); ABO of a class is the mean best overlap of its GT boxes; MABO is the mean of the
classes' ABOs. ACT takes the boxes of its detections: every class's per-class-NMS'd, score-thresholded tubelet
boxes at that frame, before the per-frame NMS that its frame-AP applies; our detector does not save its RPN
proposals, so the tool passes the detection file's boxes (after our post-processing). Any :class:`FrameBoxes`
(e.g. proposals, were they saved) works. A class without GT boxes is left out (ACT's mean would be NaN).

**Classification accuracy on GT boxes** (``frameCLASSIF``): each GT box (frames 1..nframes) takes the sum of the
class-score vectors (no background) of the boxes of its frame with IoU >= 0.7 with it (ACT: every tubelet
covering the frame, its box at that frame, all its class scores); it is correct when the sum's argmax (first
on ties) is its class. Accuracy of a class is correct / GT boxes; the mean is over the classes with GT boxes
(ACT would divide by zero). It needs per-box score vectors (:class:`ScoredBoxes`), which a detections file
does not hold: ``tools/eval_jhmdb.py --errors`` prints it in model mode, from the model run on the GT boxes.
Where no box reaches IoU 0.7 ACT's sum
is all zeros and its argmax, class 0, counts as correct for class 0's boxes: here such a box is wrong (and
counted in ``no_box``), a deliberate difference.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Sequence

import numpy as np

from .detections import NUM_COLUMNS, FrameDetections, checked_frame_detections
from .frame_map import _gt_rows, _match, act_pr_ap, iou2d

__all__ = ["ERROR_TYPES", "TRUE_POSITIVE", "LOCALISATION", "CLASSIFICATION", "TIME", "OTHER", "FrameBoxes",
           "ScoredBoxes", "FrameAPErrors", "MABOResult", "GTBoxAccuracy", "detection_error_types",
           "frame_ap_errors", "frame_mabo", "gt_box_accuracy"]

# per-detection codes of detection_error_types
TRUE_POSITIVE, LOCALISATION, CLASSIFICATION, TIME, OTHER = 0, 1, 2, 3, 4
# the columns of ACT's error table after AP, in its order ("missed": GT boxes never matched)
ERROR_TYPES = ("localisation", "classification", "time", "other", "missed")
_CODE_NAMES = {LOCALISATION: "localisation", CLASSIFICATION: "classification", TIME: "time", OTHER: "other"}
CLASSIF_IOU = 0.7  # frameCLASSIF's overlap threshold


@dataclasses.dataclass(frozen=True, eq=False)
class FrameBoxes:
    """N boxes on frames, without labels (e.g. proposals): ``video`` (N,) int index into the evaluated videos,
    ``frame`` (N,) 1-based, ``boxes`` (N, 4) ``x1, y1, x2, y2`` in pixels of the original frame."""

    video: np.ndarray
    frame: np.ndarray
    boxes: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ScoredBoxes:
    """:class:`FrameBoxes` with a score per class: ``scores`` (N, C), C the ground truth's classes (no
    background column), e.g. every tubelet's box at a frame with its full score vector."""

    video: np.ndarray
    frame: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


@dataclasses.dataclass
class FrameAPErrors:
    """ACT's error table at one IoU threshold; all values in percent.

    Attributes:
        classes: every class of ``gt["labels"]``, in label order.
        ap: class -> frame-AP (equal to ``frame_ap(..., protocol="act")``).
        lost: class -> {error type of ``ERROR_TYPES`` -> AP lost to it}.
        counts: class -> {"gt", "detections", "true_positive", "localisation", "classification", "time",
            "other", "missed"} (numbers of GT boxes and of detections; "missed" = GT boxes never matched).
        mean: "AP" and each error type -> mean over ``classes``.
    """

    iou: float
    classes: List[str]
    ap: Dict[str, float]
    lost: Dict[str, Dict[str, float]]
    counts: Dict[str, Dict[str, int]]
    mean: Dict[str, float]

    def to_dict(self) -> dict:
        """``{"iou", "mean": {"AP", <type>...}, "per_class": {class: {"AP", <type>..., "counts": {...}}}}``."""
        return {
            "iou": self.iou,
            "mean": dict(self.mean),
            "per_class": {name: {"AP": self.ap[name], **self.lost[name], "counts": dict(self.counts[name])}
                          for name in self.classes},
        }


@dataclasses.dataclass
class MABOResult:
    """Frame-MABO in percent: ``abo`` class -> mean best overlap of its GT boxes (classes with GT boxes only),
    ``mean`` their mean, ``num_gt`` class -> GT boxes."""

    classes: List[str]
    abo: Dict[str, float]
    mean: float
    num_gt: Dict[str, int]

    def to_dict(self) -> dict:
        return {"MABO": self.mean, "per_class_ABO": {name: self.abo[name] for name in self.classes}}


@dataclasses.dataclass
class GTBoxAccuracy:
    """Classification accuracy on GT boxes in percent (classes with GT boxes only): ``accuracy`` class ->
    correct / GT boxes, ``mean`` over classes; ``num_gt``, ``num_correct`` and ``num_no_box`` (GT boxes no box
    overlapped at IoU >= 0.7, counted wrong) per class."""

    classes: List[str]
    accuracy: Dict[str, float]
    mean: float
    num_gt: Dict[str, int]
    num_correct: Dict[str, int]
    num_no_box: Dict[str, int]


def _keys(vid: np.ndarray, frame: np.ndarray, max_frame: int) -> np.ndarray:
    return vid.astype(np.int64) * max_frame + frame.astype(np.int64)


def _pairs(query_key: np.ndarray, ref_key: np.ndarray):
    """All (query, ref) index pairs with equal keys: two int64 arrays (P,), grouped by query."""
    order = np.argsort(ref_key, kind="stable")
    sorted_ref = ref_key[order]
    lo = np.searchsorted(sorted_ref, query_key, "left")
    counts = np.searchsorted(sorted_ref, query_key, "right") - lo
    q = np.repeat(np.arange(len(query_key)), counts)
    within = np.arange(len(q)) - np.repeat(np.cumsum(counts) - counts, counts)
    return q, order[np.repeat(lo, counts) + within]


def _best_iou(query_key, query_box, ref_key, ref_box) -> np.ndarray:
    """(n,) highest ACT IoU of each query box with the reference boxes of the same key; 0 where none."""
    best = np.zeros(len(query_key))
    q, r = _pairs(query_key, ref_key)
    if len(q):
        np.maximum.at(best, q, iou2d(ref_box[r], query_box[q], "act"))
    return best


def _gt_in_videos(gt: Mapping, videos: Sequence[str]):
    """``_gt_rows`` restricted to frames 1..nframes of their video, as ACT's ``frameMABO`` and ``frameCLASSIF``
    loop over them."""
    vid, frame, label, box = _gt_rows(gt, videos)
    nframes = np.array([gt["nframes"][v] for v in videos] or [0], dtype=np.int64)
    keep = (frame >= 1) & (frame <= nframes[vid]) if len(vid) else np.zeros(0, dtype=bool)
    return vid[keep], frame[keep], label[keep], box[keep]


def _checked_boxes(gt: Mapping, videos: Sequence[str], boxes, source: str) -> FrameBoxes:
    """``boxes`` (FrameDetections, rows (N, 8), FrameBoxes or ScoredBoxes) checked like a detection file's rows
    (video index, frame, finite, x2 >= x1 ...), as FrameBoxes."""
    if not isinstance(boxes, (FrameDetections, FrameBoxes, ScoredBoxes)):
        boxes = FrameDetections.of(boxes)
    b = np.asarray(boxes.boxes, dtype=np.float64).reshape(-1, 4)
    rows = np.zeros((len(b), NUM_COLUMNS))
    rows[:, 0] = np.asarray(boxes.video, dtype=np.float64).reshape(-1)
    rows[:, 1] = np.asarray(boxes.frame, dtype=np.float64).reshape(-1)
    rows[:, 4:8] = b
    if isinstance(boxes, FrameDetections):
        rows[:, 2], rows[:, 3] = boxes.label, boxes.score
    checked = checked_frame_detections(videos, rows, gt=gt, source=source)
    return FrameBoxes(video=checked.video, frame=checked.frame, boxes=checked.boxes)


def _classify(gt, videos, dets: FrameDetections, iou: float):
    """Per detection (N,) error code, and per class: (rows, ranking order, number of GT boxes)."""
    labels = list(gt["labels"])
    g_vid, g_frame, g_label, g_box = _gt_rows(gt, videos)
    max_frame = int(max(g_frame.max(initial=0), dets.frame.max(initial=0))) + 1
    g_key = _keys(g_vid, g_frame, max_frame)
    d_key = _keys(dets.video, dets.frame, max_frame)
    # (video, label) pairs of the videos' tubes: the labels keyed in gttubes[video], as ACT's labellist
    has_label = np.zeros((len(videos), max(len(labels), 1)), dtype=bool)
    for iv, video in enumerate(videos):
        for label in gt["gttubes"].get(video, {}):
            has_label[iv, int(label)] = True

    code = np.full(len(dets), OTHER, dtype=np.int64)
    per_class = []
    for c in range(len(labels)):
        rows = np.flatnonzero(dets.label == c)
        order = np.argsort(-dets.score[rows])
        in_class = g_label == c
        tp = _match(dets.boxes[rows], order, g_key[in_class], g_box[in_class], d_key[rows], "act", iou)
        key = d_key[rows]
        own = np.isin(key, g_key[in_class])
        other_gt = np.isin(key, g_key[~in_class]) & ~own
        cls_hit = np.zeros(len(rows), dtype=bool)
        sel = np.flatnonzero(other_gt)
        cls_hit[sel] = _best_iou(key[sel], dets.boxes[rows[sel]], g_key[~in_class], g_box[~in_class]) >= iou
        time = ~own & ~other_gt & has_label[dets.video[rows], c]
        c_code = np.select([tp, own, cls_hit, other_gt, time],
                           [TRUE_POSITIVE, LOCALISATION, CLASSIFICATION, OTHER, TIME], OTHER)
        code[rows] = c_code
        per_class.append((rows, order, int(in_class.sum())))
    return code, per_class


def detection_error_types(gt: Mapping, videos: Sequence[str], frame_dets, iou: float = 0.5) -> np.ndarray:
    """(N,) int64 code of each detection, in input row order: ``TRUE_POSITIVE``, ``LOCALISATION``,
    ``CLASSIFICATION``, ``TIME`` or ``OTHER`` (module docstring). Arguments as :func:`frame_ap_errors`."""
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou}")
    videos = list(videos)
    dets = checked_frame_detections(videos, frame_dets, gt=gt, source="frame_dets")
    return _classify(gt, videos, dets, iou)[0]


def _area(values: np.ndarray, recall: np.ndarray) -> np.float32:
    """ACT's ``pr_to_ap`` of the curve (recall, values): trapezoids over the raw points, float32."""
    return np.sum((recall[1:] - recall[:-1]) * (values[1:] + values[:-1]) * np.float32(0.5))


def frame_ap_errors(gt: Mapping, videos: Sequence[str], frame_dets, iou: float = 0.5) -> FrameAPErrors:
    """ACT's frame-AP error analysis of ``frame_dets`` against ``gt`` over ``videos`` (module docstring).

    Args:
        gt: ground truth in the ACT schema (:mod:`s3d_det.data.annotations`).
        videos: the evaluated video names; the detections' video index points into it.
        frame_dets: :class:`~.detections.FrameDetections` or its rows (N, 8), as ``frame_map.frame_ap`` takes.
        iou: IoU threshold in (0, 1] of a true positive and of a classification error.

    Returns:
        :class:`FrameAPErrors` (percent).
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou threshold must be in (0, 1], got {iou}")
    videos = list(videos)
    dets = checked_frame_detections(videos, frame_dets, gt=gt, source="frame_dets")
    code, per_class = _classify(gt, videos, dets, iou)
    labels = list(gt["labels"])
    ap, lost, counts = {}, {}, {}
    table = {name: [] for name in ("AP",) + ERROR_TYPES}
    for name, (rows, order, n_gt) in zip(labels, per_class):
        ranked = code[rows][order]
        precision, recall, value = act_pr_ap(ranked == TRUE_POSITIVE, n_gt)
        n = len(ranked)
        table["AP"].append(value)
        for c, type_name in _CODE_NAMES.items():
            fraction = np.zeros(n + 1, dtype=np.float32)
            fraction[1:] = np.cumsum(ranked == c) / np.arange(1, n + 1)
            table[type_name].append(_area(fraction, recall))
        table["missed"].append(recall[-1])  # final recall; missed = 100 - 100 * recall, as ACT
        tp = int(np.sum(ranked == TRUE_POSITIVE))
        counts[name] = {"gt": n_gt, "detections": n, "true_positive": tp,
                        **{t: int(np.sum(ranked == c)) for c, t in _CODE_NAMES.items()}, "missed": n_gt - tp}
    percent = {k: 100 * np.array(v, dtype=np.float32) for k, v in table.items()}
    percent["missed"] = 100 - percent["missed"]
    for i, name in enumerate(labels):
        ap[name] = float(percent["AP"][i])
        lost[name] = {t: float(percent[t][i]) for t in ERROR_TYPES}
    mean = {k: float(np.mean(v)) if len(v) else 0.0 for k, v in percent.items()}
    return FrameAPErrors(float(iou), labels, ap, lost, counts, mean)


def frame_mabo(gt: Mapping, videos: Sequence[str], boxes) -> MABOResult:
    """Frame-MABO (module docstring) of ``boxes`` over ``videos``.

    Args:
        boxes: :class:`FrameBoxes`, :class:`ScoredBoxes`, :class:`~.detections.FrameDetections` or detection rows
            (N, 8); only the video index, frame and box count (labels and scores are ignored).
    """
    videos = list(videos)
    b = _checked_boxes(gt, videos, boxes, "boxes")
    g_vid, g_frame, g_label, g_box = _gt_in_videos(gt, videos)
    max_frame = int(max(g_frame.max(initial=0), b.frame.max(initial=0))) + 1
    best = _best_iou(_keys(g_vid, g_frame, max_frame), g_box, _keys(b.video, b.frame, max_frame), b.boxes)
    classes, abo, num_gt = [], {}, {}
    for c, name in enumerate(gt["labels"]):
        mine = g_label == c
        if not mine.any():
            continue
        classes.append(name)
        abo[name] = float(100 * np.mean(best[mine]))
        num_gt[name] = int(mine.sum())
    mean = float(np.mean([abo[n] for n in classes])) if classes else 0.0
    return MABOResult(classes, abo, mean, num_gt)


def gt_box_accuracy(gt: Mapping, videos: Sequence[str], scored: ScoredBoxes,
                    iou: float = CLASSIF_IOU) -> GTBoxAccuracy:
    """Classification accuracy on GT boxes (module docstring): ``scored`` a :class:`ScoredBoxes` with one score
    column per class of ``gt["labels"]``; ``iou`` the least IoU of a box counted for a GT box (ACT: 0.7)."""
    videos = list(videos)
    labels = list(gt["labels"])
    scores = np.asarray(scored.scores, dtype=np.float64)
    b = _checked_boxes(gt, videos, scored, "scored boxes")
    if scores.ndim != 2 or scores.shape != (len(b.boxes), len(labels)):
        raise ValueError(f"scored boxes: scores must be (N, C) = ({len(b.boxes)}, {len(labels)}) (one column per "
                         f"class of the ground truth, no background), got shape {scores.shape}")
    bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    if len(bad):
        raise ValueError(f"scored boxes: scores row {bad[0]}: non-finite value {scores[bad[0]].tolist()}")
    g_vid, g_frame, g_label, g_box = _gt_in_videos(gt, videos)
    max_frame = int(max(g_frame.max(initial=0), b.frame.max(initial=0))) + 1
    q, r = _pairs(_keys(g_vid, g_frame, max_frame), _keys(b.video, b.frame, max_frame))
    near = iou2d(g_box[q], b.boxes[r], "act") >= iou if len(q) else np.zeros(0, dtype=bool)
    total = np.zeros((len(g_vid), len(labels)))
    np.add.at(total, q[near], scores[r[near]])
    any_box = np.zeros(len(g_vid), dtype=bool)
    any_box[q[near]] = True
    correct = any_box & (np.argmax(total, axis=1) == g_label) if len(labels) else any_box
    classes, accuracy, num_gt, num_correct, num_no_box = [], {}, {}, {}, {}
    for c, name in enumerate(labels):
        mine = g_label == c
        if not mine.any():
            continue
        classes.append(name)
        num_gt[name], num_correct[name] = int(mine.sum()), int(correct[mine].sum())
        num_no_box[name] = int((~any_box[mine]).sum())
        accuracy[name] = 100.0 * num_correct[name] / num_gt[name]
    mean = float(np.mean([accuracy[n] for n in classes])) if classes else 0.0
    return GTBoxAccuracy(classes, accuracy, mean, num_gt, num_correct, num_no_box)
