"""AVA frame-AP: PASCAL VOC AP at IoU 0.5 over the keyframes, on the classes of a label map, giving the numbers of
the official ActivityNet evaluation (``Evaluation/get_ava_performance.py`` with its ``Evaluation/ava/`` modules, the
TF object_detection API's code; the release with ``--exclusions``, ``get_ava_performance.py`` before ActivityNet
commit c070fdb of April 2020, the one SlowFast, MMAction2 and YOWO copy and the AVA v2.1/v2.2 results use).

Written from the rules below, not from that code; each rule names the official function it comes from
(``gap`` = ``get_ava_performance.py``, ``ode`` = ``ava/object_detection_evaluation.py``, ``pie`` =
``ava/per_image_evaluation.py``, ``m`` = ``ava/metrics.py``, ``ops`` = ``ava/np_box_ops.py``):

1. Keyframes are ``(video_id, int(timestamp))`` (``gap.make_image_key``, ``"%s,%04d"``).
2. Label map: only its ids are evaluated; ground-truth and detection rows of other action ids are dropped when
   read (``gap.read_csv``, ``class_whitelist``).
3. Exclusions: ground truth and detections on an excluded keyframe are dropped (``gap.run_evaluation``).
4. At most 50 detections a keyframe (``gap.read_csv(detections, class_whitelist, 50)``, after rule 2): rows are
   pushed in file order into a min-heap of ``(score, action_id, y1, x1, y2, x2)`` tuples; once it holds 50, a row
   replaces the heap's smallest tuple only if its score is strictly larger. A keyframe's rows are then ranked by a
   stable sort on -score of the heap's array (so ties keep the heap's order). Ground truth is read the same way with
   no cap and ``person_id`` (or 1.0) in the score slot, which orders a keyframe's boxes (rule 7's argmax).
5. Detections on a keyframe without a (label-map) ground-truth box are all false positives (``ode.ObjectDetection
   Evaluation.add_single_detected_image_info``: an image not in the ground truth is scored against no boxes).
6. A detection box with y1 >= y2 or x1 >= x2 (no area) is dropped, neither TP nor FP
   (``pie._remove_invalid_boxes``).
7. Matching, per keyframe and class, detections in rule 4's order: each takes the ground-truth box of highest IoU
   (``np.argmax``: the first of equal ones); IoU >= 0.5 and that box not yet taken: TP, and the box is taken;
   otherwise FP (no second choice) (``pie._compute_tp_fp_for_single_class``). No box is difficult or group-of
   (``gap`` passes ``groundtruth_difficult`` all False; no group-of), so no detection is ignored.
8. IoU without +1: area = (y2 - y1) * (x2 - x1), intersection = heights * widths clipped at 0, IoU = inter /
   (area_det + area_gt - inter), in float64 (``ops.area``, ``ops.intersection``, ``ops.iou``).
9. Ranking: a class's detections of all keyframes, concatenated in the order the keyframes first appear in the
   detections file (``gap.read_csv``'s dicts) and each keyframe's in rule 4's order, are ranked by
   ``np.argsort(scores)[::-1]`` (the very call of ``m.compute_precision_recall``, so ties fall as there);
   precision = cumTP / rank, recall = cumTP / #GT.
10. AP (``m.compute_average_precision``, VOC 2010+): precision made non-increasing from the right, with the points
    (0, 0) and (1, 0) added; AP = sum over the ranks where recall rises of (rise) x (that precision). A class with
    ground truth but no detections has AP 0.
11. Classes: a label-map class with no ground-truth box (after rules 2-3) has AP NaN and is left out of the mean
    (``ode.ObjectDetectionEvaluation.evaluate``: logged, skipped; mAP = ``np.nanmean``). Here it is left out of
    ``classes``; with no class left the mean is NaN.

Not replicated: the official code's failures (duplicate label ids, boxes with x2 < x1) are read errors in
``s3d_det.data.ava``. The later ActivityNet release (2-column "empty keyframe" rows, no exclusions file) differs
only where detections fall on keyframes missing from the ground-truth file (it ignores them; rule 5 counts them as
FPs); on AVA's val set every keyframe is either annotated or excluded, so both give the same numbers.
SlowFast's own ``ava_eval_helper`` (its training loop's evaluation) keeps every detection (no rule 4 cap) and
matches a keyframe's detections in file order (its CSVs are box by box, class by class), so its printed mAP can
differ from the official one and from this module's. The cap counts all classes together: a score for each of 60
classes per person box leaves only a keyframe's 50 highest rows.
"""
from __future__ import annotations

import heapq
from typing import Dict, Iterable, List, Mapping, Tuple

import numpy as np

from s3d_det.data.ava import AVABoxes

from .frame_map import FrameAPResult

__all__ = ["AVA_CAPACITY", "AVA_IOU", "ava_frame_ap", "detections_off_gt", "ranked_keyframes", "voc_ap"]

AVA_IOU = 0.5
AVA_CAPACITY = 50

_Entry = Tuple[float, int, float, float, float, float]  # (score, action, y1, x1, y2, x2), the official tuple


def ranked_keyframes(rows: AVABoxes, classes: Iterable[int], excluded=(), capacity: int = 0,
                     ) -> Dict[Tuple[str, int], List[_Entry]]:
    """Rules 1-4: ``rows`` kept per keyframe, in order of the keyframes' first kept row, each keyframe's rows as
    ``(score, action_id, y1, x1, y2, x2)`` ranked by score (ties: the heap's order). ``capacity`` 0: no cap."""
    classes = set(int(c) for c in classes)
    excluded = set(excluded)
    heaps: Dict[Tuple[str, int], List[_Entry]] = {}
    keep = np.isin(rows.action, list(classes))
    for i in np.flatnonzero(keep):
        key = (rows.video[i], int(rows.timestamp[i]))
        x1, y1, x2, y2 = (float(v) for v in rows.boxes[i])
        entry = (float(rows.score[i]), int(rows.action[i]), y1, x1, y2, x2)
        heap = heaps.setdefault(key, [])
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    return {key: sorted(heap, key=lambda e: -e[0]) for key, heap in heaps.items() if key not in excluded}


def _iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(D, G) IoU of boxes given as (y1, x1, y2, x2) rows, rule 8's arithmetic."""
    h = np.maximum(0.0, np.minimum(det[:, None, 2], gt[None, :, 2]) - np.maximum(det[:, None, 0], gt[None, :, 0]))
    w = np.maximum(0.0, np.minimum(det[:, None, 3], gt[None, :, 3]) - np.maximum(det[:, None, 1], gt[None, :, 1]))
    inter = h * w
    area_d = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_d[:, None] + area_g[None, :] - inter)


def _match(det: np.ndarray, gt: np.ndarray, iou: float) -> np.ndarray:
    """Rule 7: TP flags (D,) bool of ``det`` (in rank order) against ``gt`` (y1, x1, y2, x2 rows)."""
    tp = np.zeros(len(det), dtype=bool)
    if not len(det) or not len(gt):
        return tp
    overlaps = _iou(det, gt)
    best = np.argmax(overlaps, axis=1)
    taken = np.zeros(len(gt), dtype=bool)
    for i, g in enumerate(best):
        if overlaps[i, g] >= iou and not taken[g]:
            tp[i] = taken[g] = True
    return tp


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Rule 10: area under the PR curve made non-increasing (VOC 2010+), as a fraction; 0 for no points."""
    if not len(precision):
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    rises = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[rises] - r[rises - 1]) * p[rises]))


def ava_frame_ap(gt: AVABoxes, detections: AVABoxes, labelmap: Mapping[int, str], excluded=(),
                 iou: float = AVA_IOU, capacity: int = AVA_CAPACITY) -> FrameAPResult:
    """The AVA frame-AP of ``detections`` against ``gt`` on the classes of ``labelmap`` ({id: name}), leaving out the
    keyframes in ``excluded`` (a set of ``(video_id, seconds)``): rules 1-11 of this module.

    Returns a :class:`FrameAPResult` with ``protocol`` "ava": ``classes`` the label-map names with ground truth in
    label-id order, APs and the mean in percent, per class the PR points (float64, one a ranked detection), the
    ground-truth box count and the detections ranked. Inputs are not modified.
    """
    ids = sorted(int(i) for i in labelmap)
    gt_frames = ranked_keyframes(gt, ids, excluded, capacity=0)
    det_frames = ranked_keyframes(detections, ids, excluded, capacity=capacity)
    num_gt = {c: 0 for c in ids}
    gt_boxes: Dict[Tuple[str, int], Tuple[np.ndarray, np.ndarray]] = {}
    for key, entries in gt_frames.items():
        arr = np.array([e[1:] for e in entries], dtype=np.float64).reshape(-1, 5)
        gt_boxes[key] = (arr[:, 0].astype(np.int64), arr[:, 1:])
        for c in arr[:, 0].astype(np.int64):
            num_gt[int(c)] += 1
    scores: Dict[int, List[np.ndarray]] = {c: [] for c in ids}
    flags: Dict[int, List[np.ndarray]] = {c: [] for c in ids}
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    for key, entries in det_frames.items():
        arr = np.array(entries, dtype=np.float64).reshape(-1, 6)
        arr = arr[(arr[:, 2] < arr[:, 4]) & (arr[:, 3] < arr[:, 5])]  # rule 6
        g_cls, g_box = gt_boxes.get(key, empty)
        d_cls = arr[:, 1].astype(np.int64)
        for c in np.unique(d_cls):
            mine = d_cls == c
            scores[int(c)].append(arr[mine, 0])
            flags[int(c)].append(_match(arr[mine, 2:], g_box[g_cls == c], iou))
    classes: List[str] = []
    ap: Dict[str, float] = {}
    precision: Dict[str, np.ndarray] = {}
    recall: Dict[str, np.ndarray] = {}
    counts: Dict[str, int] = {}
    ranked: Dict[str, int] = {}
    for c in ids:
        if num_gt[c] == 0:  # rule 11
            continue
        name = labelmap[c]
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        t = np.concatenate(flags[c]) if flags[c] else np.zeros(0, bool)
        order = np.argsort(s)[::-1]  # rule 9
        tp = np.cumsum(t[order].astype(np.int64))
        prec = tp.astype(np.float64) / np.arange(1, len(tp) + 1)
        rec = tp.astype(np.float64) / num_gt[c]
        classes.append(name)
        ap[name] = 100.0 * voc_ap(prec, rec)
        precision[name], recall[name] = prec, rec
        counts[name], ranked[name] = num_gt[c], len(s)
    mean = float(np.mean([ap[n] for n in classes])) if classes else float("nan")
    return FrameAPResult(protocol="ava", iou=float(iou), classes=classes, ap=ap, mean=mean, precision=precision,
                         recall=recall, num_gt=counts, num_dets=ranked)


def detections_off_gt(gt: AVABoxes, detections: AVABoxes, labelmap: Mapping[int, str], excluded=()) -> int:
    """How many detection rows (of label-map classes, on keyframes not ``excluded``) fall on keyframes with no
    label-map ground-truth box: rule 5 counts them as false positives (the tool reports the number)."""
    ids = {int(i) for i in labelmap}
    excluded = set(excluded)
    annotated = {(v, int(t)) for v, t, a in zip(gt.video, gt.timestamp, gt.action) if int(a) in ids}
    return sum(1 for v, t, a in zip(detections.video, detections.timestamp, detections.action)
               if int(a) in ids and (v, int(t)) not in excluded and (v, int(t)) not in annotated)
