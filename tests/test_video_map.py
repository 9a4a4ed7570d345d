"""Video-AP: hand-computed cases, and a loop-by-loop reference of ACT-detector's videoAP compared with video_ap on
random inputs."""
import numpy as np
import pytest
from tube_helpers import dets_of, ref_iou2d, tube

from s3d_det.data.annotations import make_gt
from s3d_det.evaluation.linking import LinkingConfig
from s3d_det.evaluation.video_map import video_ap, video_map


def as_detections(tubes_list):
    """[(video_index, label, score, tube (n,5))] -> tubes (K,3), tube_boxes (P,6)."""
    tubes = np.array([[v, c, s] for v, c, s, _ in tubes_list], dtype=np.float64).reshape(-1, 3)
    boxes = [np.column_stack([np.full(len(t), k), t]) for k, (_, _, _, t) in enumerate(tubes_list)]
    return tubes, (np.concatenate(boxes) if boxes else np.zeros((0, 6)))


# ---------------------------------------------------------------- video_ap


def small_gt(labels=("a", "b", "c")):
    return make_gt(
        labels=list(labels),
        nframes={"a/v1": 20, "a/v2": 20, "b/v1": 20},
        resolution={v: (240, 320) for v in ("a/v1", "a/v2", "b/v1")},
        gttubes={
            "a/v1": {0: [tube(range(1, 11), [0, 0, 99, 99]), tube(range(1, 11), [0, 0, 99, 49])]},
            "a/v2": {0: [tube(range(5, 16), [10, 10, 60, 80])]},
            "b/v1": {1: [tube(range(3, 19), [50, 20, 150, 200])]},
        },
        train_videos=[],
        test_videos=["a/v1", "a/v2", "b/v1"],
    )


def gt_as_tubes(gt, videos):
    return [(iv, c, 1.0, np.asarray(t, dtype=np.float64))
            for iv, v in enumerate(videos) for c, ts in gt["gttubes"][v].items() for t in ts]


def test_perfect_tubes_score_100_at_every_threshold():
    gt = small_gt(labels=("a", "b"))
    videos = gt["test_videos"][0]
    tubes, tube_boxes = as_detections(gt_as_tubes(gt, videos))
    assert video_map(gt, videos, tubes=tubes, tube_boxes=tube_boxes) == pytest.approx(
        {"0.2": 100.0, "0.5": 100.0, "0.75": 100.0, "0.5:0.95": 100.0})


def test_perfect_frame_detections_link_into_perfect_tubes():
    gt = small_gt(labels=("a", "b"))
    videos = gt["test_videos"][0]
    frame_dets = np.vstack([dets_of(t, video=iv, label=c) for iv, c, _, t in gt_as_tubes(gt, videos)])
    # the two GT tubes of a/v1 overlap (IoU 0.5): no per-frame or tube NMS, or one of them would go
    linking = LinkingConfig(min_length=1, nms_iou=None, tube_nms=None)
    assert video_map(gt, videos, frame_dets=frame_dets, linking=linking) == pytest.approx(
        {"0.2": 100.0, "0.5": 100.0, "0.75": 100.0, "0.5:0.95": 100.0})


def test_duplicate_tube_is_a_false_positive():
    gt = small_gt()
    videos = gt["test_videos"][0]
    g2 = np.asarray(gt["gttubes"]["a/v2"][0][0], dtype=np.float64)
    tubes, tube_boxes = as_detections([(1, 0, 0.9, g2), (1, 0, 0.8, g2)])
    r = video_ap(gt, videos, tubes, tube_boxes, iou=0.5)
    # 3 GT tubes of class a: TP then FP -> precision 1, 1, 0.5; recall 0, 1/3, 1/3
    np.testing.assert_allclose(r.precision["a"], [1, 1, 0.5])
    np.testing.assert_allclose(r.recall["a"], [0, 1 / 3, 1 / 3], rtol=1e-6)
    assert r.ap["a"] == pytest.approx(100 / 3, rel=1e-6)
    assert r.num_gt == {"a": 3, "b": 1, "c": 0} and r.num_dets == {"a": 2, "b": 0, "c": 0}


def test_matched_gt_is_removed_and_next_best_remaining_is_tried():
    gt = small_gt()
    videos = gt["test_videos"][0]
    g1 = np.asarray(gt["gttubes"]["a/v1"][0][0], dtype=np.float64)  # [0,0,99,99]; the other: [0,0,99,49]
    tubes, tube_boxes = as_detections([(0, 0, 0.9, g1), (0, 0, 0.8, g1)])
    # the second tube's best GT is taken; the remaining one has st-IoU exactly 0.5 with it
    at_05 = video_ap(gt, videos, tubes, tube_boxes, iou=0.5)
    np.testing.assert_allclose(at_05.recall["a"], [0, 1 / 3, 2 / 3], rtol=1e-6)
    at_06 = video_ap(gt, videos, tubes, tube_boxes, iou=0.6)
    np.testing.assert_allclose(at_06.precision["a"], [1, 1, 0.5])
    # AP at 0.5: (1/3)(1+1)/2 * 2 = 2/3; at 0.6: 1/3
    assert at_05.ap["a"] == pytest.approx(200 / 3, rel=1e-6)
    assert at_06.ap["a"] == pytest.approx(100 / 3, rel=1e-6)


def test_classes_without_ground_truth_score_zero_and_count_in_the_mean():
    gt = small_gt()  # class c has no GT tube
    videos = gt["test_videos"][0]
    perfect = gt_as_tubes(gt, videos)
    wrong = (2, 2, 0.95, tube(range(3, 19), [50, 20, 150, 200]))  # a class-c tube where there is none
    tubes, tube_boxes = as_detections(perfect + [wrong])
    r = video_ap(gt, videos, tubes, tube_boxes, iou=0.5)
    assert r.ap == pytest.approx({"a": 100.0, "b": 100.0, "c": 0.0})
    assert r.mean == pytest.approx(200 / 3, rel=1e-6)
    tubes, tube_boxes = as_detections(perfect)  # no GT and no detections: 0 as well
    assert video_ap(gt, videos, tubes, tube_boxes).ap["c"] == 0.0


def test_no_tubes_scores_zero():
    gt = small_gt()
    r = video_ap(gt, gt["test_videos"][0], np.zeros((0, 3)), np.zeros((0, 6)))
    assert r.mean == 0.0 and r.ap == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_video_ap_rejects_bad_tubes():
    gt = small_gt()
    videos = gt["test_videos"][0]
    t = tube(range(1, 4), [0, 0, 9, 9])
    tubes, tube_boxes = as_detections([(0, 3, 0.9, t)])
    with pytest.raises(ValueError, match="tubes row 0: label 3 out of range"):
        video_ap(gt, videos, tubes, tube_boxes)
    tubes, tube_boxes = as_detections([(0, 0, 0.9, t), (0, 0, 0.5, t)])
    with pytest.raises(ValueError, match="tubes row 1: the tube has no rows"):
        video_ap(gt, videos, tubes, tube_boxes[tube_boxes[:, 0] == 0])
    with pytest.raises(ValueError, match="tubes row 0: frame 2 appears twice"):
        video_ap(gt, videos, tubes, np.vstack([tube_boxes, tube_boxes[1]]))


# ---------------------------------------------------------------- reference: ACT's videoAP, loop by loop


def ref_iou3dt(b1, b2):
    tmin, tmax = max(b1[0, 0], b2[0, 0]), min(b1[-1, 0], b2[-1, 0])
    if tmax < tmin:
        return 0.0
    s1 = int(np.where(b1[:, 0] == tmin)[0][0])
    s2 = int(np.where(b2[:, 0] == tmin)[0][0])
    n = int(tmax - tmin + 1)
    spatial = sum(ref_iou2d(b1[s1 + k, 1:], b2[s2 + k, 1:]) for k in range(n)) / n
    return spatial * n / (max(b1[-1, 0], b2[-1, 0]) - min(b1[0, 0], b2[0, 0]) + 1)


def ref_video_map(gt, videos, detections, th):
    """detections: [(video name, label, score, tube)] in file order -> (per-class AP list, mAP), percent."""
    aps = []
    for label in range(len(gt["labels"])):
        dets = [(v, s, t) for v, c, s, t in detections if c == label]
        remaining = {v: list(gt["gttubes"][v][label]) for v in videos
                     if label in gt["gttubes"].get(v, {}) and len(gt["gttubes"][v][label])}
        pr = np.empty((len(dets) + 1, 2), dtype=np.float32)
        pr[0] = (1.0, 0.0)
        fn, fp, tp = sum(len(g) for g in remaining.values()), 0, 0
        for i, j in enumerate(np.argsort(-np.array([d[1] for d in dets]))):
            v, _, t = dets[j]
            positive = False
            if v in remaining:
                ious = [ref_iou3dt(np.asarray(g, dtype=np.float64), t) for g in remaining[v]]
                k = int(np.argmax(ious))
                if ious[k] >= th:
                    positive = True
                    del remaining[v][k]
                    if not remaining[v]:
                        del remaining[v]
            tp, fn, fp = (tp + 1, fn - 1, fp) if positive else (tp, fn, fp + 1)
            pr[i + 1] = (tp / (tp + fp), tp / (tp + fn) if tp + fn else 0.0)
        aps.append(100 * float(np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5)))
    return aps, float(np.mean(aps))


def random_case(rng):
    labels = ["a", "b", "c", "d"]
    videos = [f"x/v{i}" for i in range(6)]
    nframes, gttubes = {}, {}
    for v in videos:
        nframes[v] = 30
        per_label = {}
        for _ in range(rng.integers(1, 3)):
            c = int(rng.integers(0, 3))  # class d never has GT
            start = int(rng.integers(1, 15))
            end = int(rng.integers(start + 5, 31))
            x, y = rng.uniform(0, 200, size=2)
            w, h = rng.uniform(20, 100, size=2)
            per_label.setdefault(c, []).append(tube(range(start, end + 1), [x, y, x + w, y + h]))
        gttubes[v] = per_label
    gt = make_gt(labels=labels, nframes=nframes, resolution={v: (240, 320) for v in videos}, gttubes=gttubes,
                 train_videos=[], test_videos=videos)
    dets = []
    for iv, v in enumerate(videos):
        for c, ts in gt["gttubes"][v].items():
            for g in ts:
                for _ in range(rng.integers(0, 3)):  # jittered copies, shifted in time
                    g = np.asarray(g, dtype=np.float64)
                    a = int(rng.integers(0, 3))
                    b = len(g) - int(rng.integers(0, 3))
                    t = g[a:b].copy()
                    t[:, 1:] += rng.normal(0, 3, size=(len(t), 4))
                    t[:, 3:5] = np.maximum(t[:, 3:5], t[:, 1:3])
                    dets.append((iv, int(rng.integers(0, 4)) if rng.random() < 0.2 else c, float(rng.random()), t))
        for _ in range(rng.integers(0, 3)):  # unrelated tubes
            start = int(rng.integers(1, 20))
            x, y = rng.uniform(0, 200, size=2)
            dets.append((iv, int(rng.integers(0, 4)), float(rng.random()),
                         tube(range(start, start + 10), [x, y, x + 50, y + 60])))
    order = rng.permutation(len(dets))
    return gt, videos, [dets[i] for i in order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_video_ap_matches_loop_reference_of_act(seed):
    gt, videos, dets = random_case(np.random.default_rng(seed))
    tubes, tube_boxes = as_detections(dets)
    before = (tubes.copy(), tube_boxes.copy())
    named = [(videos[v], c, s, t) for v, c, s, t in dets]
    for th in (0.2, 0.5, 0.75):
        ref_aps, ref_mean = ref_video_map(gt, videos, named, th)
        r = video_ap(gt, videos, tubes, tube_boxes, iou=th)
        np.testing.assert_allclose([r.ap[c] for c in gt["labels"]], ref_aps, rtol=1e-5, atol=1e-4)
        assert r.mean == pytest.approx(ref_mean, rel=1e-5, abs=1e-4)
        assert 0 < ref_mean < 75  # neither trivial nor empty
    np.testing.assert_array_equal(tubes, before[0])
    np.testing.assert_array_equal(tube_boxes, before[1])
