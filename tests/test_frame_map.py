"""frame_ap: hand-computed cases for each protocol, agreement with loop-by-loop restatements of the published
codes on random inputs, and perfect detections from the real UCF101-24 annotations."""
import copy

import numpy as np
import pytest
from frame_ap_reference import act_frame_map, voc_frame_map, yowo_frame_map

from s3d_det.data import make_gt
from s3d_det.evaluation.frame_map import frame_ap, iou2d

G1 = [0, 0, 9, 9]


def one_video_gt(boxes_per_frame, labels=("a", "b"), nframes=5):
    """GT of one video "a/v": {label: [(frame, box), ...]} -> one tube per (label, box index)."""
    tubes = {}
    for label, rows in boxes_per_frame.items():
        tubes[label] = [np.array([[f, *box]], dtype=np.float32) for f, box in rows]
    return make_gt(labels=list(labels), nframes={"a/v": nframes}, resolution={"a/v": (240, 320)},
                   gttubes={"a/v": tubes}, train_videos=[], test_videos=["a/v"])


def dets(*rows):
    """rows of (frame, label, score, box) for video 0."""
    return np.array([[0, f, lab, s, *box] for f, lab, s, box in rows], dtype=np.float64).reshape(-1, 8)


def test_iou_conventions():
    a, b = np.array([G1], float), np.array([5, 0, 14, 9], float)
    assert iou2d(a, b, "act")[0] == pytest.approx(50 / 150)   # 5x10 pixels inclusive over 100+100-50
    assert iou2d(a, b, "voc")[0] == pytest.approx(36 / 126)   # 4x9 over 81+81-36
    assert iou2d(a, b, "yowo")[0] == pytest.approx(50 / 150)
    gap = np.array([9.5, 0, 19, 9])                            # half a pixel to the right of G1
    assert iou2d(a, gap, "act")[0] == pytest.approx(5 / 200)  # ACT counts the +1 pixel width: 0.5 x 10
    assert iou2d(a, gap, "yowo")[0] == 0                      # boxes that do not touch score 0 in YOWO
    assert iou2d(a, gap, "voc")[0] == 0


def test_duplicates_on_one_box():
    # two GT boxes in a frame; the second-ranked detection repeats the first one's box.
    gt = one_video_gt({0: [(1, G1), (1, [20, 0, 29, 9])]})
    d = dets((1, 0, 0.9, G1), (1, 0, 0.8, G1), (1, 0, 0.7, [20, 0, 29, 9]))
    # act: TP, FP (only the far box remains), TP -> PR (1,0) (1,.5) (.5,.5) (2/3,1):
    # AP = .5*(1+1)/2 + 0 + .5*(.5+2/3)/2
    act = frame_ap(gt, ["a/v"], d, "act")
    assert act.ap["a"] == pytest.approx(100 * (0.5 + 0.5 * (0.5 + 2 / 3) / 2), abs=1e-4)
    # voc/yowo: TP, FP (best box already taken), TP; envelope .5*1 + .5*2/3
    for protocol in ("voc", "yowo"):
        assert frame_ap(gt, ["a/v"], d, protocol).ap["a"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))


def test_better_box_taken_already():
    # d2 overlaps G1 best (taken by d1) and G2 well enough: ACT matches it to G2, VOC/YOWO call it a FP.
    g2 = [3, 0, 12, 9]
    gt = one_video_gt({0: [(1, G1), (1, g2)]})
    d = dets((1, 0, 0.9, G1), (1, 0, 0.8, [1, 0, 10, 9]))
    assert frame_ap(gt, ["a/v"], d, "act").ap["a"] == pytest.approx(100)
    assert frame_ap(gt, ["a/v"], d, "voc").ap["a"] == pytest.approx(50)  # PR (1,.5) (.5,.5)
    assert frame_ap(gt, ["a/v"], d, "yowo").ap["a"] == pytest.approx(50)


def test_ties_in_score():
    # same score: a TP on frame 2 in row 0, a FP on frame 1 in row 1 (both frames hold GT).
    gt = one_video_gt({0: [(1, G1), (2, G1)]})
    d = dets((2, 0, 0.5, G1), (1, 0, 0.5, [50, 50, 60, 60]))
    # YOWO reads frame files by name: frame 1 (the FP) first -> P (0, .5), R (0, .5) -> AP .5*.5
    assert frame_ap(gt, ["a/v"], d, "yowo").ap["a"] == pytest.approx(25)
    # ACT and VOC rank with numpy.argsort(-score), as their codes do: TP first gives ACT .5*(1+1)/2, FP first
    # gives .5*(0+.5)/2; VOC .5*1 or .5*.5.
    tp_first = np.argsort(-d[:, 3])[0] == 0
    assert frame_ap(gt, ["a/v"], d, "act").ap["a"] == pytest.approx(50 if tp_first else 12.5)
    assert frame_ap(gt, ["a/v"], d, "voc").ap["a"] == pytest.approx(50 if tp_first else 25)


def test_frames_without_ground_truth():
    gt = one_video_gt({0: [(1, G1)]})
    d = dets((3, 0, 0.9, G1), (1, 0, 0.8, G1))  # frame 3 holds no box
    assert frame_ap(gt, ["a/v"], d, "act").ap["a"] == pytest.approx(25)   # (1,0) (0,0) (.5,1): 1*.5/2
    assert frame_ap(gt, ["a/v"], d, "voc").ap["a"] == pytest.approx(50)   # envelope .5 over recall 0..1
    assert frame_ap(gt, ["a/v"], d, "yowo").ap["a"] == pytest.approx(100)  # YOWO never sees frame 3


def test_frame_with_ground_truth_of_another_class():
    gt = one_video_gt({0: [(1, G1)], 1: [(2, G1)]})
    d = dets((2, 0, 0.9, G1), (1, 0, 0.8, G1))  # class a on frame 2, where only class b has a box
    for protocol in ("act", "voc", "yowo"):
        assert frame_ap(gt, ["a/v"], d, protocol).ap["a"] < 100


def test_classes_without_ground_truth():
    gt = one_video_gt({0: [(1, G1)]})
    d = dets((1, 0, 0.9, G1), (1, 1, 0.8, G1))
    act = frame_ap(gt, ["a/v"], d, "act")
    assert act.classes == ["a", "b"] and act.ap == {"a": 100, "b": 0} and act.mean == pytest.approx(50)
    for protocol in ("voc", "yowo"):
        result = frame_ap(gt, ["a/v"], d, protocol)
        assert result.classes == ["a"] and result.mean == pytest.approx(100)


def test_empty_detections_score_zero():
    gt = one_video_gt({0: [(1, G1)], 1: [(2, G1)]})
    for protocol in ("act", "voc", "yowo"):
        result = frame_ap(gt, ["a/v"], np.zeros((0, 8)), protocol)
        assert result.mean == 0 and all(v == 0 for v in result.ap.values())


def test_iou_threshold_is_inclusive():
    gt = one_video_gt({0: [(1, G1)]})
    d = dets((1, 0, 0.9, [5, 0, 14, 9]))  # ACT IoU exactly 1/3
    assert frame_ap(gt, ["a/v"], d, "act", iou=50 / 150).ap["a"] == pytest.approx(100)
    assert frame_ap(gt, ["a/v"], d, "act", iou=0.34).ap["a"] == 0


def test_bad_input_names_the_row():
    gt = one_video_gt({0: [(1, G1)]})
    bad = dets((1, 0, 0.9, G1), (1, 0, np.nan, G1))
    with pytest.raises(ValueError, match="row 1"):
        frame_ap(gt, ["a/v"], bad, "act")
    with pytest.raises(ValueError, match="label 5"):
        frame_ap(gt, ["a/v"], dets((1, 5, 0.9, G1)), "act")
    with pytest.raises(ValueError, match="x2 < x1"):
        frame_ap(gt, ["a/v"], dets((1, 0, 0.9, [9, 0, 0, 9])), "act")
    with pytest.raises(ValueError, match="protocol"):
        frame_ap(gt, ["a/v"], dets((1, 0, 0.9, G1)), "coco")


def random_case(seed, num_videos=4, num_labels=3, nframes=12):
    """GT tubes with jittered boxes, noisy detections (duplicates, wrong labels, background boxes), scores
    rounded to 0.1 so that ties are frequent."""
    rng = np.random.default_rng(seed)
    videos = [f"c{v % 2}/vid{v}" for v in range(num_videos)]
    tubes = {}
    for video in videos:
        tubes[video] = {}
        for _ in range(rng.integers(1, 4)):
            label = int(rng.integers(0, num_labels))
            start = int(rng.integers(1, nframes))
            x, y = rng.integers(0, 60, 2)
            rows = [[f, x + rng.integers(-3, 4), y + rng.integers(-3, 4), x + 30 + rng.integers(-3, 4),
                     y + 30 + rng.integers(-3, 4)] for f in range(start, int(rng.integers(start, nframes + 1)) + 1)]
            tubes[video].setdefault(label, []).append(np.array(rows, np.float32))
    gt = make_gt(labels=[f"l{i}" for i in range(num_labels)], nframes={v: nframes for v in videos},
                 resolution={v: (120, 160) for v in videos}, gttubes=tubes, train_videos=[], test_videos=videos)
    rows = []
    for iv, video in enumerate(videos):
        for label, ts in tubes[video].items():
            for tube in ts:
                for r in tube:
                    for _ in range(rng.integers(0, 4)):
                        box = r[1:5] + rng.normal(0, 4, 4)
                        box[2:] = np.maximum(box[2:], box[:2])
                        lab = label if rng.random() < 0.8 else rng.integers(0, num_labels)
                        rows.append([iv, r[0], lab, np.round(rng.random(), 1), *box])
        for _ in range(5):
            x, y = rng.uniform(0, 100, 2)
            rows.append([iv, rng.integers(1, nframes + 1), rng.integers(0, num_labels), np.round(rng.random(), 1),
                         x, y, x + 25, y + 30])
    return gt, videos, np.array(rows, np.float64)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.75])
def test_matches_the_published_codes_on_random_inputs(seed, iou):
    gt, videos, d = random_case(seed)
    gt_before, d_before = copy.deepcopy(gt), d.copy()

    ref_ap, ref_mean = act_frame_map(gt, videos, d, iou)
    act = frame_ap(gt, videos, d, "act", iou)
    assert np.array_equal(np.float32([act.ap[name] for name in gt["labels"]]), ref_ap.astype(np.float32))
    assert act.mean == pytest.approx(ref_mean, abs=1e-6)

    ref_ap, ref_mean = voc_frame_map(gt, videos, d, iou)
    voc = frame_ap(gt, videos, d, "voc", iou)
    assert voc.classes == [gt["labels"][c] for c in ref_ap]
    assert [voc.ap[gt["labels"][c]] for c in ref_ap] == list(ref_ap.values()) and voc.mean == ref_mean

    ref_ap, ref_mean = yowo_frame_map(gt, videos, d, iou)
    yowo = frame_ap(gt, videos, d, "yowo", iou)
    assert yowo.classes == [gt["labels"][c] for c in ref_ap]
    assert np.allclose([yowo.ap[gt["labels"][c]] for c in ref_ap], list(ref_ap.values()), rtol=0, atol=1e-10)
    assert yowo.mean == pytest.approx(ref_mean, abs=1e-10)

    np.testing.assert_array_equal(d, d_before)  # inputs untouched
    for video in videos:
        for label, tubes in gt["gttubes"][video].items():
            for a, b in zip(tubes, gt_before["gttubes"][video][label]):
                np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def ucf24_gt(shared_data):
    from s3d_det.data.converters import ucf24_from_annotations

    root = shared_data / "ucf101_24"
    return ucf24_from_annotations(str(root / "finalAnnots.mat"), str(root / "testlist01.txt"))


def perfect_detections(gt, videos):
    rows = []
    for iv, video in enumerate(videos):
        for label, tubes in gt["gttubes"][video].items():
            for tube in tubes:
                rows.append(np.column_stack([np.full(len(tube), iv), tube[:, 0], np.full(len(tube), label),
                                             np.linspace(1, 0.5, len(tube)), tube[:, 1:5]]))
    return np.concatenate(rows).astype(np.float64)


def test_perfect_detections_on_real_ucf101_24_score_100(ucf24_gt):
    """Every GT box of the 910 split-1 test videos (170,580 boxes) as a detection scores 100 in every protocol,
    once the one exactly repeated test tube is dropped (a repeated box can never be matched under voc/yowo)."""
    from s3d_det.data import drop_duplicate_tubes, split_videos

    videos = split_videos(ucf24_gt, 1, "test")
    d = perfect_detections(ucf24_gt, videos)
    assert len(d) == 170_580
    assert frame_ap(ucf24_gt, videos, d, "act").mean == pytest.approx(100, abs=1e-4)
    for protocol in ("voc", "yowo"):  # the repeated tube costs CricketBowling alone
        result = frame_ap(ucf24_gt, videos, d, protocol)
        assert [name for name in result.classes if result.ap[name] < 100 - 1e-4] == ["CricketBowling"]

    clean, dropped = drop_duplicate_tubes(ucf24_gt)
    repeated = [(video, j) for video, _, j, _ in dropped if video in videos]
    assert repeated == [("CricketBowling/v_CricketBowling_g02_c04", 2)]
    d = perfect_detections(clean, videos)
    assert len(d) == 170_580 - 58  # the repeated tube spans frames 102..159
    for protocol in ("act", "voc", "yowo"):
        result = frame_ap(clean, videos, d, protocol)
        assert len(result.classes) == 24 and sum(result.num_gt.values()) == len(d)
        assert result.mean == pytest.approx(100, abs=1e-4), protocol
