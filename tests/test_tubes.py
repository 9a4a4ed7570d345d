"""Spatio-temporal IoU and 3D NMS of tubes: hand-computed cases."""
import numpy as np
import pytest
from tube_helpers import tube

from s3d_det.evaluation.tubes import iou3dt, nms3dt

# ---------------------------------------------------------------- iou3dt


def test_iou3dt_identical_tubes_is_one():
    t = tube(range(1, 6), [3, 4, 30, 40])
    assert iou3dt(t, t) == pytest.approx(1.0)


def test_iou3dt_disjoint_in_time_is_zero():
    assert iou3dt(tube(range(1, 4), [0, 0, 9, 9]), tube(range(5, 8), [0, 0, 9, 9])) == 0.0


def test_iou3dt_partial_temporal_overlap():
    # frames 1-4 and 3-6: 2 common frames of 6 -> 1/3; boxes 10x10 and 10x5 (+1 pixel) -> 50/100 = 0.5
    a = tube(range(1, 5), [0, 0, 9, 9])
    b = tube(range(3, 7), [0, 0, 9, 4])
    assert iou3dt(a, b) == pytest.approx(0.5 / 3)
    assert iou3dt(b, a) == pytest.approx(0.5 / 3)


def test_iou3dt_counts_pixels_inclusively():
    # [0,0,1,1] and [1,1,2,2] share pixel (1,1): 1 / (4 + 4 - 1), where a no-+1 IoU would be 0
    assert iou3dt(tube([1], [0, 0, 1, 1]), tube([1], [1, 1, 2, 2])) == pytest.approx(1 / 7)


def test_iou3dt_single_common_frame_counts_once():
    # frames 1-3 and 3-5 share frame 3 (inclusive count): temporal 1/5, identical boxes
    assert iou3dt(tube([1, 2, 3], [0, 0, 9, 9]), tube([3, 4, 5], [0, 0, 9, 9])) == pytest.approx(0.2)


def test_iou3dt_tube_with_hole_averages_common_frames():
    a = np.array([[1, 0, 0, 9, 9], [2, 0, 0, 9, 9], [3, 0, 0, 9, 9]], dtype=np.float64)
    b = np.array([[1, 0, 0, 9, 9], [3, 0, 0, 9, 4]], dtype=np.float64)  # no box on frame 2
    assert iou3dt(a, b) == pytest.approx((1.0 + 0.5) / 2)


# ---------------------------------------------------------------- nms3dt


def test_nms3dt_suppresses_above_threshold_only():
    a = tube(range(1, 11), [0, 0, 9, 9])
    b = tube(range(1, 11), [0, 0, 9, 4])  # st-IoU with a: exactly 0.5
    c = tube(range(30, 40), [0, 0, 9, 9])  # disjoint in time
    tubes, scores = [b, c, a], [0.8, 0.7, 0.9]
    assert nms3dt(tubes, scores, overlap=0.5).tolist() == [2, 0, 1]  # 0.5 is not above 0.5
    assert nms3dt(tubes, scores, overlap=0.49).tolist() == [2, 1]
    assert nms3dt([], [], overlap=0.5).tolist() == []
