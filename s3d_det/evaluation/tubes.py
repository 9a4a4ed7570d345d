"""Tube geometry: spatio-temporal IoU and 3D NMS, as in ACT-detector.

Tubes are arrays (n, 5) ``frame (1-based), x1, y1, x2, y2`` in pixels of the original frame, one row per frame,
frames increasing.

- :func:`iou3dt` is ACT-detector's spatio-temporal IoU: temporal IoU with frames counted inclusively, times the
  mean per-frame IoU (+1 pixel) over the common frames. For tubes without holes (GT tubes, and the tubes
  :func:`~.linking.link_tubes` writes) the common frames are all of ``max(starts)..min(ends)``, as in ACT; for
  tubes with holes the mean runs over the frames both hold (ACT's code would fail an assertion there).
- :func:`nms3dt` is ACT's greedy 3D NMS.
- :class:`TubeSet` holds a set of tubes as one array of rows; it computes those st-IoUs one tube against many
  and runs the 3D NMS in every group (a video and class) at once.

Pure numpy, vectorised. Inputs are never modified.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .frame_map import iou2d

__all__ = ["TubeSet", "iou3dt", "nms3dt"]


class TubeSet:
    """A set of n tubes as one array of rows, for spatio-temporal IoUs between its tubes, many pairs at once.

    Built from n tubes (n_k, 5) ``frame, x1, y1, x2, y2`` (pixels). ``frames`` (R,) float64 and ``boxes`` (R, 4)
    float64 hold every row of every tube, ``owner`` (R,) int64 its tube's position in the set; rows are sorted by
    tube, then frame (``keys`` (R,) = owner * scale + frame, ascending; ``scale`` = the largest frame + 2).
    ``starts``/``ends`` (n,) float64 are each tube's first and last frame.
    """

    def __init__(self, tubes: Sequence[np.ndarray]):
        arrays = [np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in tubes]
        owner = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
        rows = np.concatenate(arrays) if arrays else np.zeros((0, 5))
        self.scale = rows[:, 0].max(initial=0) + 2
        keys = owner * self.scale + rows[:, 0]
        order = np.argsort(keys, kind="stable")
        self.keys, self.owner, self.frames, self.boxes = keys[order], owner[order], rows[order, 0], rows[order, 1:5]
        self.starts = np.full(len(arrays), np.inf)
        self.ends = np.full(len(arrays), -np.inf)
        np.minimum.at(self.starts, self.owner, self.frames)
        np.maximum.at(self.ends, self.owner, self.frames)

    def iou3dt(self, which: np.ndarray, partner: np.ndarray) -> np.ndarray:
        """(m,) :func:`iou3dt` of tube ``which[i]`` with tube ``partner[i]`` (``which`` without repeats)."""
        partner_of = np.full(len(self.starts), -1)
        partner_of[which] = partner
        sel = np.flatnonzero(partner_of[self.owner] >= 0)  # the rows of the tubes in ``which``
        own = self.owner[sel]
        key = partner_of[own] * self.scale + self.frames[sel]  # the partner's row on the same frame, if any
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        common = self.keys[at] == key
        ious = iou2d(self.boxes[at[common]], self.boxes[sel[common]], "act")
        total = np.bincount(own[common], weights=ious, minlength=len(self.starts))[which]
        count = np.bincount(own[common], minlength=len(self.starts))[which]
        s, e, ps, pe = self.starts[which], self.ends[which], self.starts[partner], self.ends[partner]
        tmin, tmax = np.maximum(s, ps), np.minimum(e, pe)
        temporal = (tmax - tmin + 1) / (np.maximum(e, pe) - np.minimum(s, ps) + 1)
        return np.where((tmax >= tmin) & (count > 0), total / np.maximum(count, 1) * temporal, 0.0)

    def nms(self, group: np.ndarray, priority: np.ndarray, overlap: float) -> np.ndarray:
        """ACT's greedy 3D NMS in every group at once: each step keeps, in every group, the remaining tube of
        highest ``priority`` (n,) and drops the group's tubes whose st-IoU with it exceeds ``overlap``. Returns
        the kept tubes by group, then in the order kept."""
        alive = np.ones(len(group), dtype=bool)
        step_of = np.full(len(group), -1)
        step = 0
        while alive.any():
            cand = np.flatnonzero(alive)
            cand = cand[np.lexsort((-priority[cand], group[cand]))]
            best = cand[np.r_[True, group[cand][1:] != group[cand][:-1]]]  # one a group, groups ascending
            alive[best] = False
            step_of[best] = step
            step += 1
            rest = np.flatnonzero(alive)
            partner = best[np.searchsorted(group[best], group[rest])]
            alive[rest[self.iou3dt(rest, partner) > overlap]] = False
        kept = np.flatnonzero(step_of >= 0)
        return kept[np.lexsort((step_of[kept], group[kept]))]


def iou3dt(tube1: np.ndarray, tube2: np.ndarray) -> float:
    """Spatio-temporal IoU of two tubes (n, 5) ``frame, x1, y1, x2, y2`` (one row per frame).

    Temporal IoU counts frames inclusively: ``(min(ends) - max(starts) + 1) / (max(ends) - min(starts) + 1)``,
    0 when the tubes do not overlap in time; it multiplies the mean per-frame IoU (+1 pixel, ACT's convention)
    over the frames both tubes hold.
    """
    return float(TubeSet([tube1, tube2]).iou3dt(np.array([0]), np.array([1]))[0])


def nms3dt(tubes: Sequence[np.ndarray], scores: Sequence[float], overlap: float = 0.5) -> np.ndarray:
    """Greedy 3D NMS as ACT's ``nms3dt``: repeatedly keep the highest-scored remaining tube (the last of
    ``numpy.argsort(scores)``, so ties fall as there) and drop the tubes whose :func:`iou3dt` with it exceeds
    ``overlap``.

    Args:
        tubes: K tubes (n_k, 5) ``frame, x1, y1, x2, y2``.
        scores: (K,) their scores.
    Returns:
        (k,) int64 indices of the kept tubes, highest score first.
    """
    priority = np.empty(len(tubes), dtype=np.int64)
    priority[np.argsort(np.asarray(scores, dtype=np.float64))] = np.arange(len(tubes))
    return TubeSet(tubes).nms(np.zeros(len(tubes), dtype=np.int64), priority, overlap).astype(np.int64)
