"""Linking per-frame detections into tubes, as ACT-detector's ``BuildTubes`` does with single-frame detections.

:func:`link_tubes` takes ``frame_dets`` rows (:mod:`.detections`) and writes tubes in the detections format:
``tubes`` (K, 3) ``video_index, label, score`` and ``tube_boxes`` (P, 6) ``tube_index, frame, x1, y1, x2, y2``,
one box per frame from a tube's first to its last (no holes). :class:`LinkingConfig` holds its parameters,
ACT's values by default. ACT's ``videoAP`` ran ``nms3dt(0.3)`` on each video's tubes before ranking; here that
step belongs to the linking (``LinkingConfig.tube_nms``), so :func:`~.video_map.video_ap` scores the tubes it is
given as they are.

Pure numpy and vectorised: linking runs every video and class at once (the Python loops run over frames and
over the tubes of one video and class), the 3D NMS every group at once. Inputs are never modified.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from .detections import (
    TUBE_BOX_BOX,
    TUBE_BOX_FRAME,
    TUBE_BOX_TUBE,
    TUBE_LABEL,
    TUBE_SCORE,
    TUBE_VIDEO,
    FrameDetections,
    checked_frame_detections,
)
from .frame_map import iou2d
from .tubes import TubeSet

__all__ = ["LINK_RULES", "LinkingConfig", "link_tubes", "OnlineLinker"]

LINK_RULES = ("iou", "score", "energy")


@dataclasses.dataclass(frozen=True)
class LinkingConfig:
    """How :func:`link_tubes` builds tubes; ACT-detector's values where it has one.

    Attributes:
        top_k: detections kept per frame and class, the highest scored after ``nms_iou`` (ACT: 10).
        nms_iou: per-frame, per-class greedy 2D NMS: a box whose IoU (+1 pixel) with a kept one exceeds it is
            dropped (ACT: 0.3); ``None``: no NMS.
        link_iou: a tube may take a detection whose IoU (+1 pixel) with the tube's last box is >= this (ACT: 0.2).
        link_by: which admissible detection a tube takes: ``"iou"`` the highest IoU with its last box,
            ``"score"`` the highest score (ACT's rule), ``"energy"`` the highest score + IoU.
        gap: a tube may miss up to ``gap`` consecutive frames and still be extended; one more missed frame
            closes it (ACT closes a tube 5 frames after its last box: 4).
        min_length: tubes spanning fewer frames (first to last, inclusive) are dropped (ACT: 15).
        min_score: tubes scoring below it are dropped (ACT: 0.01).
        smooth_window: odd width, in frames, of a centred moving average over the boxes (narrower at the
            ends); 1: no smoothing.
        tube_nms: :func:`~.tubes.nms3dt` per video and class on the finished tubes (ACT's videoAP: 0.3); ``None``: none.
    """

    top_k: int = 10
    nms_iou: Optional[float] = 0.3
    link_iou: float = 0.2
    link_by: str = "iou"
    gap: int = 4
    min_length: int = 15
    min_score: float = 0.01
    smooth_window: int = 1
    tube_nms: Optional[float] = 0.3

    def __post_init__(self):
        def fail(name, expected):
            raise ValueError(f"LinkingConfig.{name}: expected {expected}, got {getattr(self, name)!r}")

        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            fail("top_k", "an integer >= 1")
        for name in ("nms_iou", "tube_nms"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                fail(name, "None or a value in [0, 1]")
        if not 0.0 <= self.link_iou <= 1.0:
            fail("link_iou", "a value in [0, 1]")
        if self.link_by not in LINK_RULES:
            fail("link_by", f"one of {LINK_RULES}")
        if not (isinstance(self.gap, int) and self.gap >= 0):
            fail("gap", "an integer >= 0")
        if not (isinstance(self.min_length, int) and self.min_length >= 1):
            fail("min_length", "an integer >= 1")
        if not (isinstance(self.smooth_window, int) and self.smooth_window >= 1 and self.smooth_window % 2 == 1):
            fail("smooth_window", "an odd integer >= 1")


def _runs(keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of equal values in ``keys`` (n,)."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    return starts, np.diff(np.r_[starts, len(keys)])


def _nms_cells(boxes: np.ndarray, cell: np.ndarray, overlap: Optional[float], top_k: int) -> np.ndarray:
    """Greedy NMS (+1 pixel IoU > ``overlap`` suppressed) in each cell (one frame of one video and class), then at
    most ``top_k`` boxes a cell. Rows sorted by cell, then by descending score. Returns the kept rows (mask).

    Vectorised over cells: step r decides, in every cell at once, the box of rank r (kept unless suppressed or
    the cell is full), then suppresses the lower-ranked boxes of its cell that overlap it."""
    starts, sizes = _runs(cell)
    which = np.repeat(np.arange(len(starts)), sizes)
    rank = np.arange(len(cell)) - starts[which]
    if overlap is None:
        return rank < top_k
    size = sizes[which]
    keep = np.zeros(len(cell), dtype=bool)
    suppressed = np.zeros(len(cell), dtype=bool)
    kept = np.zeros(len(starts), dtype=np.int64)
    by_rank = np.argsort(rank, kind="stable")
    for r, (a, n) in enumerate(zip(*_runs(rank[by_rank]))):
        cur = by_rank[a:a + n]
        cur = cur[~suppressed[cur] & (kept[which[cur]] < top_k)]
        keep[cur] = True
        kept[which[cur]] += 1
        later = size[cur] - r - 1  # each kept box against every lower-ranked box of its cell
        i = np.repeat(cur, later)
        j = i + 1 + np.arange(later.sum()) - np.repeat(np.cumsum(later) - later, later)
        suppressed[j[iou2d(boxes[i], boxes[j], "act") > overlap]] = True
    return keep


def _link(frames: np.ndarray, group: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
          cfg: LinkingConfig) -> np.ndarray:
    """The tube (0, 1, ...) each detection ends up in. Rows sorted by group (video and class), frame, then
    descending score.

    Frames are handled in increasing order, every group at once. At a frame: tubes with more than ``gap``
    frames missed since their last box close; the open tubes of a group with detections there take one each,
    in order of mean score (older tube first on ties), vectorised over groups: step r serves the r-th tube of
    every group; the detections left start new tubes."""
    n = len(frames)
    tube_of = np.full(n, -1, dtype=np.int64)
    t_group = np.empty(n, dtype=np.int64)  # a detection starts at most one tube: n slots suffice
    t_last = np.empty(n, dtype=np.int64)
    t_box = np.empty((n, 4))
    t_sum = np.empty(n)
    t_count = np.empty(n)
    open_tubes = np.zeros(0, dtype=np.int64)
    num_tubes = 0
    by_frame = np.argsort(frames, kind="stable")  # at a frame: by group, then score
    for a, m in zip(*_runs(frames[by_frame])):
        rows = by_frame[a:a + m]
        frame = frames[rows[0]]
        open_tubes = open_tubes[frame - t_last[open_tubes] - 1 <= cfg.gap]
        g_starts, g_sizes = _runs(group[rows])
        ids = group[rows[g_starts]]
        at = np.minimum(np.searchsorted(ids, t_group[open_tubes]), len(ids) - 1)
        here = ids[at] == t_group[open_tubes]
        cand, cg = open_tubes[here], at[here]  # tubes that may take a detection, their group among ``ids``
        if len(cand):
            width = int(g_sizes.max())
            slot = np.arange(width)
            det = rows[np.minimum(g_starts[cg][:, None] + slot, m - 1)]  # (tubes, width) rows of the group
            ious = iou2d(t_box[cand][:, None], boxes[det], "act")
            key = {"iou": ious, "score": scores[det], "energy": scores[det] + ious}[cfg.link_by]
            key = np.where((slot < g_sizes[cg][:, None]) & (ious >= cfg.link_iou), key, -np.inf)
            order = np.lexsort((cand, -t_sum[cand] / t_count[cand], cg))
            first = np.r_[True, cg[order][1:] != cg[order][:-1]]
            turn = np.arange(len(order)) - np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
            free = np.ones((len(ids), width), dtype=bool)
            for r in range(int(turn.max()) + 1):
                sel = order[turn == r]
                k = np.where(free[cg[sel]], key[sel], -np.inf)
                best = np.argmax(k, axis=1)
                took = k[np.arange(len(sel)), best] > -np.inf
                sel, best = sel[took], best[took]
                free[cg[sel], best] = False
                d, t = det[sel, best], cand[sel]
                tube_of[d] = t
                t_last[t], t_box[t] = frame, boxes[d]
                t_sum[t] += scores[d]
                t_count[t] += 1
        new_rows = rows[tube_of[rows] < 0]
        new = np.arange(num_tubes, num_tubes + len(new_rows))
        tube_of[new_rows] = new
        t_group[new], t_last[new], t_box[new] = group[new_rows], frame, boxes[new_rows]
        t_sum[new], t_count[new] = scores[new_rows], 1
        num_tubes += len(new)
        open_tubes = np.r_[open_tubes, new]
    return tube_of


def _fill(frames: np.ndarray, boxes: np.ndarray, tube: np.ndarray, smooth_window: int):
    """Boxes on every frame of each tube from its first to its last: gaps filled by linear interpolation, then a
    centred moving average of ``smooth_window`` frames (cut at the tube's ends). Rows sorted by tube, then
    frame. Returns frame (M,) and boxes (M, 4), sorted by tube, then frame."""
    starts, sizes = _runs(tube)
    first, last = frames[starts], frames[starts + sizes - 1]
    lengths = last - first + 1
    offsets = np.cumsum(lengths) - lengths
    full_tube = np.repeat(tube[starts], lengths)
    full_frame = np.repeat(first, lengths) + np.arange(lengths.sum()) - np.repeat(offsets, lengths)
    scale = frames.max() + 2
    known = tube * scale + frames
    nxt = np.searchsorted(known, full_tube * scale + full_frame)  # the first known row at or after the frame
    prv = np.where(known[nxt] == full_tube * scale + full_frame, nxt, nxt - 1)
    span = frames[nxt] - frames[prv]
    w = np.where(span > 0, (full_frame - frames[prv]) / np.maximum(span, 1), 0.0)[:, None]
    full = boxes[prv] + w * (boxes[nxt] - boxes[prv])
    if smooth_window > 1:
        half = smooth_window // 2
        lo_end = np.repeat(offsets, lengths)
        hi_end = lo_end + np.repeat(lengths, lengths)
        pos = np.arange(len(full))
        lo, hi = np.maximum(pos - half, lo_end), np.minimum(pos + half + 1, hi_end)
        csum = np.vstack([np.zeros((1, 4)), np.cumsum(full, axis=0)])
        full = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
    return full_frame, full


def _no_tubes(num_tubes: int = 0, num_boxes: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``tubes`` (num_tubes, 3) and ``tube_boxes`` (num_boxes, 6) float64, zeros."""
    return np.zeros((num_tubes, 3)), np.zeros((num_boxes, 6))


def link_tubes(
    videos: Sequence[str], frame_dets, config: Optional[LinkingConfig] = None, **overrides
) -> Tuple[np.ndarray, np.ndarray]:
    """Links per-frame detections into tubes, per video and class, as ACT-detector's ``BuildTubes`` does.

    Frames are processed in increasing order (only frames holding detections of the class; a frame without any
    extends no tube). At each frame: the class's detections go through NMS and the ``top_k`` best are kept;
    tubes not extended for more than ``gap`` frames are closed; the open tubes, highest mean score first (the
    older first on ties), each take one not yet taken detection whose IoU with the tube's last box is
    >= ``link_iou`` (which one: ``link_by``); the detections left start new tubes. Finished tubes scoring (mean
    of their detections' scores) below ``min_score`` or spanning fewer than ``min_length`` frames are dropped;
    the others get one box per frame (interpolated over gaps, then smoothed) and go through :func:`~.tubes.nms3dt`
    (``tube_nms``). Vectorised over videos and classes: the Python loops run over frames and over the tubes
    one video and class holds, never over videos or detections.

    Args:
        videos: the video names the detections' video index points into (used to check the indices).
        frame_dets: :class:`~.detections.FrameDetections`, or its rows (N, 8) ``video_index, frame (1-based),
            label (0-based), score, x1, y1, x2, y2``, pixels.
        config: a :class:`LinkingConfig` (default: ACT's values); ``overrides``: its fields by name.
    Returns:
        ``tubes`` (K, 3) float64 ``video_index, label, score`` and ``tube_boxes`` (P, 6) float64
        ``tube_index, frame, x1, y1, x2, y2`` (the detections format), ordered by video, label, then score.
    """
    cfg = dataclasses.replace(config or LinkingConfig(), **overrides)
    dets = checked_frame_detections(videos, frame_dets, source="frame_dets")
    if len(dets) == 0:
        return _no_tubes()

    dets = dets.select(np.lexsort((-dets.score, dets.frame, dets.label, dets.video)))  # video, label, frame, score
    frames = dets.frame
    group = np.cumsum(np.r_[False, (dets.video[1:] != dets.video[:-1]) | (dets.label[1:] != dets.label[:-1])])
    cell = np.cumsum(np.r_[False, (group[1:] != group[:-1]) | (frames[1:] != frames[:-1])])
    keep = _nms_cells(dets.boxes, cell, cfg.nms_iou, cfg.top_k)
    dets, group = dets.select(keep), group[keep]
    frames = dets.frame
    tube_of = _link(frames, group, dets.score, dets.boxes, cfg)

    count = np.bincount(tube_of)
    score = np.bincount(tube_of, weights=dets.score) / count
    t_row = np.zeros(len(count), dtype=np.int64)  # a row of each tube: its video, label and group
    t_row[tube_of] = np.arange(len(tube_of))
    last = np.zeros(len(count), dtype=np.int64)
    np.maximum.at(last, tube_of, frames)
    first = np.full(len(count), frames.max())
    np.minimum.at(first, tube_of, frames)
    span = last - first + 1
    kept_ids = np.flatnonzero((score >= cfg.min_score) & (span >= cfg.min_length))
    if len(kept_ids) == 0:
        return _no_tubes()
    rows = np.flatnonzero(np.isin(tube_of, kept_ids))
    rows = rows[np.lexsort((frames[rows], tube_of[rows]))]
    full_frame, full_box = _fill(frames[rows], dets.boxes[rows], tube_of[rows], cfg.smooth_window)
    full = np.column_stack([full_frame, full_box])  # the kept tubes' rows, in the order of kept_ids
    lengths = span[kept_ids]
    k_group, k_score = group[t_row[kept_ids]], score[kept_ids]
    if cfg.tube_nms is None:
        order = np.lexsort((-k_score, k_group))  # by group (video, label), then descending score
    else:
        priority = np.empty(len(kept_ids), dtype=np.int64)
        priority[np.lexsort((-np.arange(len(kept_ids)), k_score))] = np.arange(len(kept_ids))  # ties: older
        order = TubeSet(np.split(full, np.cumsum(lengths)[:-1])).nms(k_group, priority, cfg.tube_nms)
    n = lengths[order]
    starts = (np.cumsum(lengths) - lengths)[order]
    picked = np.repeat(starts - (np.cumsum(n) - n), n) + np.arange(n.sum())
    source = t_row[kept_ids[order]]
    tubes, tube_boxes = _no_tubes(len(order), len(picked))
    tubes[:, TUBE_VIDEO], tubes[:, TUBE_LABEL] = dets.video[source], dets.label[source]
    tubes[:, TUBE_SCORE] = k_score[order]
    tube_boxes[:, TUBE_BOX_TUBE] = np.repeat(np.arange(len(order)), n)
    tube_boxes[:, TUBE_BOX_FRAME], tube_boxes[:, TUBE_BOX_BOX] = full_frame[picked], full_box[picked]
    return tubes, tube_boxes


class OnlineLinker:
    """:func:`link_tubes`'s linking run online, one frame at a time, for a stream: each detection gets the ID of
    the tube (per class) it extends or starts, as soon as its frame is known. The same rules and order as
    :func:`link_tubes` (``top_k``, ``nms_iou``, ``link_iou``, ``link_by``, ``gap`` of ``config``): given the frames
    of a video in order, its tubes hold the same detections as :func:`link_tubes`'s before the finishing steps
    (minimum length and score, filling, smoothing, tube NMS), which a stream cannot wait for.

    Tubes are numbered 0, 1, ... in the order they start; a closed tube's state is dropped (memory follows the
    open tubes, not the stream's length).
    """

    def __init__(self, config: Optional[LinkingConfig] = None, **overrides):
        self.config = dataclasses.replace(config or LinkingConfig(), **overrides)
        self.num_tubes = 0
        self.last_frame: Optional[int] = None
        # per class: open tubes as dicts {"id", "last", "box" (4,), "sum", "count"}
        self._open: dict = {}

    def update(self, frame: int, dets) -> np.ndarray:
        """Links frame ``frame``'s detections (``FrameDetections`` or rows (K, 8) of that frame; frames in
        increasing order). Returns (K,) int64: each detection's tube, -1 for one dropped by the NMS or ``top_k``."""
        dets = FrameDetections.of(dets)
        cfg = self.config
        if self.last_frame is not None and frame <= self.last_frame:
            raise ValueError(f"frame {frame} comes after frame {self.last_frame}: frames must increase")
        if len(dets) and np.any(dets.frame != frame):
            raise ValueError(f"detections of frame(s) {sorted(set(dets.frame.tolist()) - {frame})} given as frame "
                             f"{frame}'s")
        self.last_frame = frame
        ids = np.full(len(dets), -1, dtype=np.int64)
        for label in np.unique(dets.label).tolist():
            rows = np.flatnonzero(dets.label == label)
            rows = rows[np.argsort(-dets.score[rows], kind="stable")]
            rows = rows[_nms_cells(dets.boxes[rows], np.zeros(len(rows), np.int64), cfg.nms_iou, cfg.top_k)]
            boxes, scores = dets.boxes[rows], dets.score[rows]
            tubes = [t for t in self._open.get(label, []) if frame - t["last"] - 1 <= cfg.gap]
            free = np.ones(len(rows), dtype=bool)
            for tube in sorted(tubes, key=lambda t: (-t["sum"] / t["count"], t["id"])):
                ious = iou2d(tube["box"][None], boxes, "act")
                key = {"iou": ious, "score": scores, "energy": scores + ious}[cfg.link_by]
                key = np.where(free & (ious >= cfg.link_iou), key, -np.inf)
                best = int(np.argmax(key)) if len(key) else 0
                if len(key) and key[best] > -np.inf:
                    free[best] = False
                    ids[rows[best]] = tube["id"]
                    tube.update(last=frame, box=boxes[best], sum=tube["sum"] + scores[best], count=tube["count"] + 1)
            for i in np.flatnonzero(free).tolist():
                ids[rows[i]] = self.num_tubes
                tubes.append({"id": self.num_tubes, "last": frame, "box": boxes[i], "sum": float(scores[i]),
                              "count": 1})
                self.num_tubes += 1
            self._open[label] = tubes
        for label in [k for k, tubes in self._open.items() if all(frame - t["last"] > cfg.gap for t in tubes)]:
            del self._open[label]
        return ids
