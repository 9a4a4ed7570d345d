"""Temporal smoothing of frame detections (``s3d_det.evaluation.postprocess``), by hand, and where the tools apply
it."""
from __future__ import annotations

import numpy as np
import pytest

from s3d_det.evaluation.detections import Detections
from s3d_det.evaluation.postprocess import smooth_rows, smooth_scores

A = [0.0, 0.0, 10.0, 10.0]
NEAR = [1.0, 0.0, 11.0, 10.0]  # IoU 90 / 110 = 0.82 with A
FAR = [50.0, 50.0, 60.0, 60.0]


def rows(*dets):
    """(video, frame, label, score, box) tuples -> interchange rows (N, 8)."""
    return np.array([[v, f, c, s, *box] for v, f, c, s, box in dets], dtype=np.float64)


def test_scores_are_averaged_along_each_action_by_hand():
    """One video of 5 frames, window 1 (frames f-1..f+1 inside 1..5)."""
    dets = rows((0, 1, 0, 0.9, A),     # frames 1-2: itself 0.9, frame 2's best overlap 0.6 -> 1.5 / 2
                (0, 2, 0, 0.6, NEAR),  # frames 1-3: 0.9 + itself 0.6 + nothing on 3 -> 1.5 / 3
                (0, 2, 0, 0.3, FAR),   # frames 1-3: overlaps nothing -> 0.3 / 3
                (0, 5, 0, 0.8, A),     # frames 4-5: 0.8 / 2 (frame 6 lies outside the video)
                (0, 1, 1, 0.5, A))     # another action: frames 1-2 -> 0.5 / 2; it never counts for action 0
    out = smooth_rows(dets, {0: 5}, window=1)
    np.testing.assert_allclose(out[:, 3], [0.75, 0.5, 0.1, 0.4, 0.25])
    np.testing.assert_array_equal(np.delete(out, 3, axis=1), np.delete(dets, 3, axis=1))  # only scores change
    assert dets[0, 3] == 0.9  # the input is left alone
    # window 2: the first detection's frames 1-3: 0.9 + 0.6 + 0 -> 0.5; with iou 0.9 NEAR no longer counts -> 0.3
    assert smooth_rows(dets, {0: 5}, window=2)[0, 3] == pytest.approx(0.5)
    assert smooth_rows(dets, {0: 5}, window=2, iou=0.9)[0, 3] == pytest.approx(0.3)
    np.testing.assert_array_equal(smooth_rows(dets, {0: 5}, window=0), dets)


def test_videos_are_smoothed_apart_and_named_in_errors():
    dets = Detections(videos=["run/a", "run/b"], frame_dets=rows((0, 2, 0, 0.8, A), (1, 2, 0, 0.4, A)))
    out = smooth_scores(dets, {"run/a": 2, "run/b": 3}, window=1)
    np.testing.assert_allclose(out.frame_dets[:, 3], [0.8 / 2, 0.4 / 3])  # video b has a frame 3, video a not
    assert out.videos == ["run/a", "run/b"]
    with pytest.raises(KeyError, match="run/b"):
        smooth_scores(dets, {"run/a": 2}, window=1)
    with pytest.raises(ValueError, match="window must be at least 0"):
        smooth_rows(dets.frame_dets, {0: 2, 1: 3}, window=-1)
    with pytest.raises(ValueError, match=r"video index 1: detections on frame\(s\) outside 1..1"):
        smooth_rows(dets.frame_dets, {0: 2, 1: 1}, window=1)
    with pytest.raises(KeyError, match=r"no frame count for video index\(es\) \[1\]"):
        smooth_rows(dets.frame_dets, {0: 2}, window=1)
