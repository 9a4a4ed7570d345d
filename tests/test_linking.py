"""Tube linking: hand-computed cases, and a plain frame-by-frame reference compared with link_tubes on random
inputs."""
import numpy as np
import pytest
from tube_helpers import dets_of, ref_iou2d

from s3d_det.evaluation.linking import LinkingConfig, link_tubes
from s3d_det.evaluation.tubes import nms3dt


def link_one(frame_dets, **overrides):
    tubes, tube_boxes = link_tubes(["a/v"], frame_dets, **overrides)
    return tubes, [tube_boxes[tube_boxes[:, 0] == k, 1:] for k in range(len(tubes))]


def moving(frames, x_of_frame, y, w=20):
    xs = np.array([x_of_frame(f) for f in frames], dtype=np.float64)
    return np.column_stack([frames, xs, np.full(len(xs), y), xs + w, np.full(len(xs), y + w)]).astype(np.float64)


def test_linking_follows_two_crossing_tracks():
    frames = np.arange(1, 21)
    right = moving(frames, lambda f: 5 * f, y=0)  # left to right
    left = moving(frames, lambda f: 100 - 5 * f, y=10)  # right to left, crossing at frame 10
    frame_dets = np.vstack([dets_of(right, scores=np.full(20, 0.9)), dets_of(left, scores=np.full(20, 0.6))])
    frame_dets = frame_dets[np.argsort(frame_dets[:, 1], kind="stable")]
    tubes, boxes = link_one(frame_dets, nms_iou=None, tube_nms=None, min_length=1)
    assert len(tubes) == 2
    by_y = {float(b[0, 2]): (t, b) for t, b in zip(tubes, boxes)}
    for y, track, score in ((0.0, right, 0.9), (10.0, left, 0.6)):
        t, b = by_y[y]
        np.testing.assert_allclose(b, track)  # each tube kept its own object through the crossing
        assert t[2] == pytest.approx(score)


def test_linking_bridges_a_gap_within_tolerance_and_interpolates():
    frames = np.r_[1:11, 14:21]  # frames 11, 12, 13 missing
    track = moving(frames, lambda f: 2 * f, y=5)
    tubes, boxes = link_one(dets_of(track), gap=3, min_length=1)
    assert len(tubes) == 1
    np.testing.assert_allclose(boxes[0], moving(np.arange(1, 21), lambda f: 2 * f, y=5))


def test_linking_splits_at_a_gap_beyond_tolerance_and_drops_short_tubes():
    frames = np.r_[1:11, 14:21]
    track = moving(frames, lambda f: 2 * f, y=5)
    tubes, boxes = link_one(dets_of(track), gap=2, min_length=1)
    assert sorted((b[0, 0], b[-1, 0]) for b in boxes) == [(1, 10), (14, 20)]
    tubes, boxes = link_one(dets_of(track), gap=2, min_length=8)  # 14..20 spans 7 frames
    assert [(b[0, 0], b[-1, 0]) for b in boxes] == [(1, 10)]


def test_linking_tube_score_is_mean_and_low_scores_dropped():
    track = moving(np.arange(1, 21), lambda f: 3, y=3)
    scores = 0.5 + 0.01 * np.arange(1, 21)  # mean 0.605
    tubes, _ = link_one(dets_of(track, scores=scores), min_length=1)
    assert tubes.tolist() == [[0.0, 0.0, pytest.approx(0.605)]]
    tubes, _ = link_one(dets_of(track, scores=scores), min_length=1, min_score=0.61)
    assert len(tubes) == 0


def test_linking_smooths_boxes_with_a_moving_average():
    track = moving(np.arange(1, 6), lambda f: 16.0 if f == 3 else 10.0, y=0)
    _, boxes = link_one(dets_of(track), min_length=1, smooth_window=3)
    # x1 = 10, 10, 16, 10, 10 -> window 3 (cut at the ends): 10, 12, 12, 12, 10
    np.testing.assert_allclose(boxes[0][:, 1], [10, 12, 12, 12, 10])
    np.testing.assert_allclose(boxes[0][:, 3] - boxes[0][:, 1], 20)


def test_linking_keeps_top_k_per_frame_and_does_not_modify_input():
    a = dets_of(moving(np.arange(1, 4), lambda f: 0, y=0), scores=[0.9] * 3)
    b = dets_of(moving(np.arange(1, 4), lambda f: 200, y=0), scores=[0.5] * 3)
    frame_dets = np.vstack([b, a])
    before = frame_dets.copy()
    tubes, boxes = link_one(frame_dets, top_k=1, min_length=1)
    assert len(tubes) == 1 and boxes[0][0, 1] == 0
    np.testing.assert_array_equal(frame_dets, before)
    tubes, _ = link_one(frame_dets, top_k=2, min_length=1)
    assert len(tubes) == 2


def test_linking_per_frame_nms_counts_pixels_inclusively():
    # [0,0,9,9] and [5,0,14,9]: IoU 50/150 = 1/3 with +1 pixel (0.286 without): above 0.3, suppressed
    frame_dets = np.array([[0, 1, 0, 0.9, 0, 0, 9, 9], [0, 1, 0, 0.8, 5, 0, 14, 9]])
    tubes, _ = link_one(frame_dets, nms_iou=0.3, min_length=1, tube_nms=None)
    assert tubes.tolist() == [[0, 0, 0.9]]
    assert len(link_one(frame_dets, nms_iou=0.34, min_length=1, tube_nms=None)[0]) == 2


def test_linking_rule_score_takes_best_scored_admissible_detection():
    # frame 2 holds two detections overlapping frame 1's box: the closer one scores less
    frame_dets = np.array([
        [0, 1, 0, 0.9, 0, 0, 20, 20],
        [0, 2, 0, 0.5, 0, 0, 20, 20],  # IoU 1 with the last box
        [0, 2, 0, 0.8, 5, 0, 25, 20],  # IoU 16/26 with the last box
    ])
    _, by_iou = link_one(frame_dets, link_by="iou", nms_iou=None, min_length=2, tube_nms=None)
    _, by_score = link_one(frame_dets, link_by="score", nms_iou=None, min_length=2, tube_nms=None)
    assert by_iou[0][1, 1] == 0 and by_score[0][1, 1] == 5


def test_linking_serves_the_best_scored_tube_first():
    frame_dets = np.array([
        [0, 1, 0, 0.3, 10, 0, 30, 20],  # tube B
        [0, 1, 0, 0.9, 0, 0, 20, 20],  # tube A
        [0, 2, 0, 0.5, 5, 0, 25, 20],  # IoU 16/26 with both A and B: A, the better tube, takes it
    ])
    tubes, boxes = link_one(frame_dets, nms_iou=None, min_length=2, tube_nms=None)
    assert len(tubes) == 1
    np.testing.assert_allclose(boxes[0][:, 1], [0, 5])
    assert tubes[0, 2] == pytest.approx(0.7)


def test_linking_no_detections_gives_no_tubes():
    tubes, tube_boxes = link_tubes(["a/v"], np.zeros((0, 8)))
    assert tubes.shape == (0, 3) and tube_boxes.shape == (0, 6)


def ref_link(frame_dets, top_k, nms_iou, link_iou, link_by, gap, min_length, min_score):
    """Linking written plainly: per video and class, frame by frame, one tube at a time (no smoothing, no tube
    NMS). Returns [(video, label, score, boxes (n, 5) interpolated over gaps)]."""
    out = []
    for v, c in sorted({(d[0], d[2]) for d in frame_dets.tolist()}):
        rows = [d for d in frame_dets.tolist() if d[0] == v and d[2] == c]
        active, finished = [], []
        for f in sorted({d[1] for d in rows}):
            kept = []
            for d in sorted((d for d in rows if d[1] == f), key=lambda d: -d[3]):
                if len(kept) < top_k and (nms_iou is None or all(ref_iou2d(d[4:], k[4:]) <= nms_iou for k in kept)):
                    kept.append(d)
            finished += [t for t in active if f - t[-1][1] - 1 > gap]
            active = sorted((t for t in active if f - t[-1][1] - 1 <= gap), key=lambda t: -np.mean([d[3] for d in t]))
            free = list(range(len(kept)))
            for t in active:
                best, best_key = None, -np.inf
                for j in free:
                    iou = ref_iou2d(kept[j][4:], t[-1][4:])
                    key = {"iou": iou, "score": kept[j][3], "energy": kept[j][3] + iou}[link_by]
                    if iou >= link_iou and key > best_key:
                        best, best_key = j, key
                if best is not None:
                    t.append(kept[best])
                    free.remove(best)
            active += [[kept[j]] for j in free]
        for t in finished + active:
            score = np.mean([d[3] for d in t])
            frames = np.arange(t[0][1], t[-1][1] + 1)
            if score >= min_score and len(frames) >= min_length:
                known = np.array(t)
                boxes = [np.interp(frames, known[:, 1], known[:, 4 + k]) for k in range(4)]
                out.append((v, c, score, np.column_stack([frames, *boxes])))
    return out


@pytest.mark.parametrize("seed, link_by, nms_iou, gap",
                         [(0, "iou", 0.3, 2), (1, "score", None, 0), (2, "energy", 0.6, 4)])
def test_linking_matches_plain_reference(seed, link_by, nms_iou, gap):
    rng = np.random.default_rng(seed)
    n = 400
    xy = rng.uniform(0, 100, (n, 2))
    frame_dets = np.column_stack([rng.integers(0, 3, n), rng.integers(1, 12, n), rng.integers(0, 2, n), rng.random(n),
                                  xy, xy + rng.uniform(10, 60, (n, 2))])
    params = dict(top_k=4, nms_iou=nms_iou, link_iou=0.2, link_by=link_by, gap=gap, min_length=3, min_score=0.2)
    tubes, tube_boxes = link_tubes(["a/v0", "a/v1", "a/v2"], frame_dets, tube_nms=None, **params)
    expected = ref_link(frame_dets, **params)
    assert len(tubes) == len(expected) > 5
    expected.sort(key=lambda e: (e[0], e[1], -e[2]))
    for k, (v, c, score, boxes) in enumerate(expected):
        assert tubes[k].tolist() == [v, c, pytest.approx(score)]
        np.testing.assert_allclose(tube_boxes[tube_boxes[:, 0] == k, 1:], boxes)


def test_linking_tube_nms_is_nms3dt_per_video_and_class():
    rng = np.random.default_rng(3)
    n = 300
    xy = rng.uniform(0, 30, (n, 2))
    frame_dets = np.column_stack([rng.integers(0, 2, n), rng.integers(1, 10, n), rng.integers(0, 2, n), rng.random(n),
                                  xy, xy + 40])
    params = dict(nms_iou=None, top_k=3, min_length=1)  # parallel, overlapping tubes
    all_tubes, all_boxes = link_tubes(["a/v0", "a/v1"], frame_dets, tube_nms=None, **params)
    tubes, boxes = link_tubes(["a/v0", "a/v1"], frame_dets, tube_nms=0.3, **params)
    expected = []
    for v, c in sorted({(t[0], t[1]) for t in all_tubes.tolist()}):
        members = np.flatnonzero((all_tubes[:, 0] == v) & (all_tubes[:, 1] == c))
        group = [all_boxes[all_boxes[:, 0] == k, 1:] for k in members]
        expected += [members[i] for i in nms3dt(group, all_tubes[members, 2], overlap=0.3)]
    assert len(all_tubes) > len(expected) > 3
    np.testing.assert_array_equal(tubes, all_tubes[expected])
    for k, e in enumerate(expected):
        np.testing.assert_array_equal(boxes[boxes[:, 0] == k, 1:], all_boxes[all_boxes[:, 0] == e, 1:])


def test_linking_config_rejects_bad_values():
    with pytest.raises(ValueError, match="smooth_window"):
        LinkingConfig(smooth_window=2)
    with pytest.raises(ValueError, match="link_by"):
        LinkingConfig(link_by="nearest")
