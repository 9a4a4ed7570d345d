"""ACT's error analysis (s3d_det.evaluation.errors): hand-built cases, one per error type, with hand-computed
values, and a loop-by-loop restatement of ACT's ``frameAP_error`` on seeded random inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from s3d_det.data.annotations import make_gt, save_gt
from s3d_det.evaluation.detections import Detections, save_detections
from s3d_det.evaluation.errors import (
    CLASSIFICATION,
    LOCALISATION,
    OTHER,
    TIME,
    TRUE_POSITIVE,
    FrameBoxes,
    ScoredBoxes,
    detection_error_types,
    frame_ap_errors,
    frame_mabo,
    gt_box_accuracy,
)
from s3d_det.evaluation.frame_map import frame_ap

BOX = [0, 0, 9, 9]  # 10 x 10 pixels with ACT's +1
VIDEOS = ["a/v", "b/v", "m/v"]


def tube(frames, box=BOX):
    return np.array([[f, *box] for f in frames], dtype=np.float32)


@pytest.fixture
def gt():
    """a/v: class a on frames 1, 2 (of 5). b/v: class b on frame 3. m/v: class b on frames 3, 4 (of 6), no a."""
    return make_gt(labels=["a", "b"], nframes={"a/v": 5, "b/v": 5, "m/v": 6},
                   resolution={v: (100, 100) for v in VIDEOS},
                   gttubes={"a/v": {0: [tube([1, 2])]}, "b/v": {1: [tube([3])]}, "m/v": {1: [tube([3, 4])]}},
                   train_videos=[], test_videos=VIDEOS)


def det(video, frame, label, score, box=BOX):
    return [VIDEOS.index(video), frame, label, score, *box]


TP1, TP2 = det("a/v", 1, 0, 0.8), det("a/v", 2, 0, 0.7)


@pytest.mark.parametrize("error, code, name", [
    (det("a/v", 1, 0, 0.9, [0, 0, 3, 9]), LOCALISATION, "localisation"),  # IoU 0.4 with a's box
    (det("a/v", 2, 0, 0.9, [50, 50, 59, 59]), LOCALISATION, "localisation"),  # IoU 0 on a frame with a's box
    (det("b/v", 3, 0, 0.9, [0, 0, 5, 9]), CLASSIFICATION, "classification"),  # IoU 0.6 with b's box
    (det("b/v", 3, 0, 0.9, [0, 0, 3, 9]), OTHER, "other"),  # IoU 0.4 with b's box, no a in b/v
    (det("a/v", 4, 0, 0.9), TIME, "time"),  # a/v holds a, not at frame 4
    (det("b/v", 1, 0, 0.9), OTHER, "other"),  # no GT at the frame, no a in the video
])
def test_one_error_above_two_hits(gt, error, code, name):
    """Ranks: the error (0.9), then the two a boxes hit. Points (recall, precision, error fraction): (0, 1, 0),
    (0, 0, 1), (0.5, 1/2, 1/2), (1, 2/3, 1/3). AP = .5*(0+1/2)/2 + .5*(1/2+2/3)/2 = 5/12; the error's area
    .5*(1+1/2)/2 + .5*(1/2+1/3)/2 = 7/12; nothing missed."""
    rows = np.array([error, TP1, TP2], dtype=np.float64)
    assert detection_error_types(gt, VIDEOS, rows).tolist() == [code, TRUE_POSITIVE, TRUE_POSITIVE]
    r = frame_ap_errors(gt, VIDEOS, rows)
    assert r.ap["a"] == pytest.approx(500 / 12, abs=1e-4)
    expected = {t: 0.0 for t in ("localisation", "classification", "time", "other", "missed")}
    expected[name] = 700 / 12
    assert r.lost["a"] == pytest.approx(expected, abs=1e-4)
    assert r.counts["a"] == {"gt": 2, "detections": 3, "true_positive": 2, "localisation": 0, "classification": 0,
                             "time": 0, "other": 0, "missed": 0, name: 1}
    # b: no detection, every box missed
    assert r.ap["b"] == 0.0 and r.lost["b"]["missed"] == pytest.approx(100.0)
    assert r.mean["AP"] == pytest.approx(250 / 12, abs=1e-4)
    assert r.mean[name] == pytest.approx(350 / 12, abs=1e-4)
    assert r.mean["missed"] == pytest.approx(50.0)


def test_errors_below_the_last_hit_cost_nothing_and_misses_are_missed(gt):
    """One detection at IoU 0.4 with the right class: AP 0, but recall never moves, so no area is lost to
    localisation: the box counts as missed (ACT's columns)."""
    rows = np.array([det("a/v", 1, 0, 0.9, [0, 0, 3, 9])])
    r = frame_ap_errors(gt, VIDEOS, rows)
    assert r.ap["a"] == 0.0
    assert r.lost["a"] == pytest.approx({"localisation": 0, "classification": 0, "time": 0, "other": 0,
                                         "missed": 100})
    assert r.counts["a"]["localisation"] == 1 and r.counts["a"]["missed"] == 2


def test_mixed_ranking(gt):
    """Ranks TP .9, Loc .8, Cls .7, TP .6, Time .5, Other .4. Recall moves at ranks 1 (0 -> .5) and 4 (.5 -> 1):
    AP = .5*(1+1)/2 + .5*(1/3+1/2)/2 = 17/24; Loc = .5*(0+0)/2 + .5*(1/3+1/4)/2 = 7/48 = Cls; Time = Other = 0."""
    rows = np.array([det("a/v", 1, 0, 0.9), det("a/v", 1, 0, 0.8, [0, 0, 3, 9]), det("m/v", 3, 0, 0.7),
                     det("a/v", 2, 0, 0.6), det("a/v", 5, 0, 0.5), det("m/v", 1, 0, 0.4)])
    codes = detection_error_types(gt, VIDEOS, rows)
    assert codes.tolist() == [TRUE_POSITIVE, LOCALISATION, CLASSIFICATION, TRUE_POSITIVE, TIME, OTHER]
    r = frame_ap_errors(gt, VIDEOS, rows)
    assert r.ap["a"] == pytest.approx(100 * 17 / 24, abs=1e-4)
    assert r.lost["a"] == pytest.approx({"localisation": 700 / 48, "classification": 700 / 48, "time": 0,
                                         "other": 0, "missed": 0}, abs=1e-4)


def test_precedence_of_the_tests(gt):
    """Own-class GT at the frame beats another class's box (Loc., not Cls.); another class's GT at the frame beats
    the video holding the class (Other, not Time); a duplicate is Loc.; class b's detection on a/v, whose
    frames hold only a, at IoU 1 is Cls."""
    gt["gttubes"]["a/v"][1] = [tube([1], [50, 50, 59, 59])]  # a b box beside a's box on a/v frame 1
    gt["gttubes"]["m/v"][0] = [tube([5])]  # m/v holds a at frame 5 only
    rows = np.array([
        det("a/v", 1, 0, 0.9, [50, 50, 59, 59]),  # a on a/v 1, IoU 1 with b's box, 0 with a's: Loc.
        det("m/v", 3, 0, 0.8, [0, 0, 3, 9]),  # a on m/v 3 (b's box, IoU 0.4), m/v holds a: Other
        det("m/v", 6, 0, 0.7),  # no GT at m/v 6, m/v holds a: Time
        det("m/v", 5, 0, 0.6), det("m/v", 5, 0, 0.5),  # a hit, then its duplicate: Loc.
        det("a/v", 2, 1, 0.4),  # b on a/v 2 (a's box, IoU 1): Cls.
    ])
    assert detection_error_types(gt, VIDEOS, rows).tolist() == [LOCALISATION, OTHER, TIME, TRUE_POSITIVE,
                                                                 LOCALISATION, CLASSIFICATION]


def test_iou_threshold_is_inclusive_and_counts_pixels_inclusively(gt):
    """[0,0,4,9] against [0,0,9,9]: 50 / 100 pixels with +1 (4/9 without): a hit at 0.5, Cls. at 0.5 on b/v."""
    rows = np.array([det("a/v", 1, 0, 0.9, [0, 0, 4, 9]), det("b/v", 3, 0, 0.8, [0, 0, 4, 9])])
    assert detection_error_types(gt, VIDEOS, rows, iou=0.5).tolist() == [TRUE_POSITIVE, CLASSIFICATION]
    assert detection_error_types(gt, VIDEOS, rows, iou=0.51).tolist() == [LOCALISATION, OTHER]


# --- ACT's frameAP_error restated loop by loop (dicts per frame, one detection at a time), written from its
# description in the module docstring of s3d_det.evaluation.errors, not from that module's code ---

def _iou(gts, box):
    w = np.maximum(0, np.minimum(gts[:, 2], box[2]) + 1 - np.maximum(gts[:, 0], box[0]))
    h = np.maximum(0, np.minimum(gts[:, 3], box[3]) + 1 - np.maximum(gts[:, 1], box[1]))
    inter = w * h
    return inter / ((gts[:, 2] - gts[:, 0] + 1) * (gts[:, 3] - gts[:, 1] + 1)
                    + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - inter)


def loop_reference(gt, videos, dets, th):
    """(per class: AP, Loc, Cls, Time, Other, missed in percent, float32), as ACT prints them."""
    out = []
    for c in range(len(gt["labels"])):
        own, other, classes_of = {}, {}, {}
        for iv, v in enumerate(videos):
            classes_of[iv] = set(gt["gttubes"].get(v, {}))
            for label, tubes in gt["gttubes"].get(v, {}).items():
                for t in tubes:
                    for row in np.asarray(t, dtype=np.float64):
                        (own if label == c else other).setdefault((iv, int(row[0])), []).append(row[1:5])
        remaining = {k: np.array(v) for k, v in own.items()}
        other = {k: np.array(v) for k, v in other.items()}
        d = dets[dets[:, 2] == c]
        pr = np.zeros((len(d) + 1, 6), dtype=np.float32)
        pr[0, 0] = 1
        fn = sum(len(v) for v in own.values())
        tp = fp = 0
        err = [0, 0, 0, 0]
        for i, j in enumerate(np.argsort(-d[:, 3])):
            k = (int(d[j, 0]), int(d[j, 1]))
            box = d[j, 4:8]
            hit = False
            if k in own:
                if k in remaining:
                    ious = _iou(remaining[k], box)
                    best = int(np.argmax(ious))
                    if ious[best] >= th:
                        hit = True
                        remaining[k] = np.delete(remaining[k], best, 0)
                        if not len(remaining[k]):
                            del remaining[k]
                if not hit:
                    err[0] += 1
            elif k in other:
                err[1 if _iou(other[k], box).max() >= th else 3] += 1
            elif c in classes_of[k[0]]:
                err[2] += 1
            else:
                err[3] += 1
            tp, fn, fp = (tp + 1, fn - 1, fp) if hit else (tp, fn, fp + 1)
            pr[i + 1] = [tp / (tp + fp), tp / (tp + fn) if tp + fn else 0.0] + [e / (tp + fp) for e in err]
        area = [np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, col] + pr[:-1, col]) * 0.5) for col in (0, 2, 3, 4, 5)]
        out.append(100 * np.array(area + [0], dtype=np.float32))
        out[-1][-1] = 100 - 100 * pr[-1, 1]
    return np.array(out)


def random_case(seed):
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c"]
    videos = [f"v{i}" for i in range(5)]
    nframes = {v: 12 for v in videos}
    gttubes = {}
    for v in videos:
        gttubes[v] = {}
        for _ in range(rng.integers(1, 3)):
            label = int(rng.integers(0, 3))
            start = int(rng.integers(1, 8))
            xy = rng.integers(0, 60, size=2)
            box = [*xy, *(xy + rng.integers(10, 40, size=2))]
            gttubes[v].setdefault(label, []).append(tube(range(start, start + int(rng.integers(1, 6))), box))
    gt = make_gt(labels=labels, nframes=nframes, resolution={v: (120, 120) for v in videos}, gttubes=gttubes,
                 train_videos=[], test_videos=videos)
    n = 150  # random boxes anywhere ...
    xy = rng.integers(0, 70, size=(n, 2)).astype(float)
    rows = np.column_stack([rng.integers(0, 5, n), rng.integers(1, 13, n), rng.integers(0, 3, n),
                            rng.integers(0, 50, n) / 50,  # ties in score happen
                            xy, xy + rng.integers(5, 45, size=(n, 2))]).astype(np.float64)
    # ... and 150 jittered GT boxes, mostly of the right class and frame (hits, duplicates, Cls., Time errors)
    g = [(iv, label, row) for iv, v in enumerate(videos) for label, ts in gttubes[v].items() for t in ts for row in t]
    pick = rng.integers(0, len(g), 150)
    near = np.array([[g[i][0], min(max(g[i][2][0] + rng.choice([0, 0, 0, 1, 3]), 1), 12),
                      g[i][1] if rng.random() < 0.6 else rng.integers(0, 3), rng.integers(0, 50) / 50,
                      *(g[i][2][1:5] + rng.integers(-6, 7, size=4))] for i in pick], dtype=np.float64)
    near[:, 6:8] = np.maximum(near[:, 6:8], near[:, 4:6])
    rows = np.concatenate([rows, near])[rng.permutation(300)]
    return gt, videos, rows


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("th", [0.3, 0.5])
def test_matches_the_loop_reference_on_random_cases(seed, th):
    gt, videos, rows = random_case(seed)
    expected = loop_reference(gt, videos, rows, th)
    r = frame_ap_errors(gt, videos, rows, iou=th)
    got = np.array([[r.ap[n]] + [r.lost[n][t] for t in ("localisation", "classification", "time", "other",
                                                         "missed")] for n in r.classes])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # the decomposition sums to 100 and AP is frame_ap's (act) exactly
    np.testing.assert_allclose(got.sum(axis=1), 100, atol=1e-3)
    assert r.ap == frame_ap(gt, videos, rows, protocol="act", iou=th).ap
    counts = np.array([[r.counts[n][k] for k in ("true_positive", "localisation", "classification", "time",
                                                  "other")] for n in r.classes])
    assert counts.sum() == len(rows) and (counts.sum(axis=1) > 0).all()


def test_bad_input_is_one_line_naming_the_row(gt):
    with pytest.raises(ValueError, match=r"frame_dets row 1: .*x2 < x1"):
        frame_ap_errors(gt, VIDEOS, np.array([TP1, det("a/v", 1, 0, 0.5, [9, 0, 0, 9])]))
    with pytest.raises(ValueError, match="iou threshold"):
        frame_ap_errors(gt, VIDEOS, np.array([TP1]), iou=0)


# --- frame-MABO ---

def test_mabo_best_overlap_of_each_gt_box_with_any_box_of_its_frame(gt):
    """a: frame 1 best IoU 0.5 (a class-b box counts too; the better of two), frame 2 no box -> 0: ABO 25.
    b: b/v 3 IoU 1, m/v 3 IoU 0.4, m/v 4 no box: ABO 140/3. MABO = (25 + 140/3) / 2."""
    boxes = FrameBoxes(video=np.array([0, 0, 1, 2, 2]), frame=np.array([1, 1, 3, 3, 5]),
                       boxes=np.array([[0, 0, 4, 9], [0, 0, 2, 9], BOX, [0, 0, 3, 9], BOX], dtype=float))
    r = frame_mabo(gt, VIDEOS, boxes)
    assert r.abo == pytest.approx({"a": 25.0, "b": 140 / 3})
    assert r.mean == pytest.approx((25 + 140 / 3) / 2)
    assert r.num_gt == {"a": 2, "b": 3}
    # detection rows work the same, whatever their label or score
    rows = np.column_stack([boxes.video, boxes.frame, [1, 0, 0, 0, 1], np.linspace(0.1, 0.9, 5), boxes.boxes])
    assert frame_mabo(gt, VIDEOS, rows).abo == pytest.approx(r.abo)


def test_mabo_leaves_out_classes_without_gt_and_bad_rows_are_one_line(gt):
    gt["labels"].append("c")
    r = frame_mabo(gt, VIDEOS, FrameBoxes(video=np.zeros(0), frame=np.zeros(0), boxes=np.zeros((0, 4))))
    assert r.classes == ["a", "b"] and r.mean == 0.0
    with pytest.raises(ValueError, match=r"boxes: frame_dets row 0: frame 7 past the end of 'a/v'"):
        frame_mabo(gt, VIDEOS, FrameBoxes(video=np.array([0]), frame=np.array([7]), boxes=np.array([BOX])))


# --- classification accuracy on GT boxes ---

def test_gt_box_accuracy_sums_scores_of_boxes_at_iou_07(gt):
    """a/v 1: boxes at IoU 1 [.6 .4] and IoU 0.7 [.1 .8] sum [.7 1.2] -> b: wrong; the box at IoU 0.6 [1, 0]
    does not count. a/v 2: no box: wrong (ACT's argmax of zeros, class 0 = a, would call it right). b/v 3:
    [.2 .3] -> b: right; m/v 3: [.5 .4] -> a: wrong; m/v 4: no box: wrong."""
    scored = ScoredBoxes(
        video=np.array([0, 0, 0, 0, 1, 2]), frame=np.array([1, 1, 1, 3, 3, 3]),
        boxes=np.array([BOX, [0, 0, 6, 9], [0, 0, 5, 9], BOX, BOX, BOX], dtype=float),
        scores=np.array([[.6, .4], [.1, .8], [1, 0], [.9, .1], [.2, .3], [.5, .4]]))
    r = gt_box_accuracy(gt, VIDEOS, scored)
    assert r.accuracy == pytest.approx({"a": 0.0, "b": 100 / 3})
    assert r.mean == pytest.approx(50 / 3)
    assert r.num_correct == {"a": 0, "b": 1} and r.num_no_box == {"a": 1, "b": 1}


def test_gt_box_accuracy_checks_the_score_columns(gt):
    scored = ScoredBoxes(video=np.array([0]), frame=np.array([1]), boxes=np.array([BOX], dtype=float),
                         scores=np.array([[0.1, 0.2, 0.3]]))
    with pytest.raises(ValueError, match=r"scores must be \(N, C\) = \(1, 2\)"):
        gt_box_accuracy(gt, VIDEOS, scored)


# --- tools/eval_jhmdb.py --errors, run as a user runs it ---

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_eval(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "tools/eval_jhmdb.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


MIXED = [det("a/v", 1, 0, 0.9), det("a/v", 1, 0, 0.8, [0, 0, 3, 9]), det("m/v", 3, 0, 0.7),
         det("a/v", 2, 0, 0.6), det("a/v", 5, 0, 0.5), det("m/v", 1, 0, 0.4)]


def test_tool_prints_the_table_writes_json_and_plot(gt, tmp_path):
    save_gt(gt, str(tmp_path / "gt.pkl"))
    save_detections(str(tmp_path / "d.npz"), Detections(videos=VIDEOS, frame_dets=np.array(MIXED)))
    common = ["--gt", tmp_path / "gt.pkl", "--detections", tmp_path / "d.npz"]
    proc = run_eval(*common, "--errors", "--errors-plot", tmp_path / "plots", "--json", tmp_path / "e.json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "e.json").read_text())
    assert set(out) == {"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP", "errors"}
    errors = out["errors"]
    assert set(errors) == {"iou", "mean", "per_class", "frame_MABO"}
    assert errors["per_class"]["a"]["AP"] == pytest.approx(100 * 17 / 24, abs=1e-4)
    assert errors["per_class"]["a"]["classification"] == pytest.approx(700 / 48, abs=1e-4)
    assert errors["per_class"]["a"]["counts"]["time"] == 1
    assert errors["per_class"]["b"]["missed"] == pytest.approx(100)
    # MABO on the detections' boxes: a's boxes both hit exactly (ABO 100); b: m/v 3 exact, b/v 3 and m/v 4 none
    assert errors["frame_MABO"]["per_class_ABO"] == pytest.approx({"a": 100.0, "b": 100 / 3})
    assert (tmp_path / "plots" / "frame_ap_errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mean_row = [line for line in proc.stdout.splitlines() if line.split("|")[0].strip() == "mean"]
    assert [c.strip() for c in mean_row[0].split("|")][3:] == ["35.42", "7.29", "7.29", "0.00", "0.00", "50.00",
                                                              "66.67"]
    assert "frame-MABO (detections' boxes): 66.67" in proc.stdout

    # without --errors: the output of before
    plain = run_eval(*common, "--json", tmp_path / "p.json")
    assert plain.returncode == 0 and "error analysis" not in plain.stdout
    assert "errors" not in json.loads((tmp_path / "p.json").read_text())


@pytest.mark.parametrize("args, message", [
    (["--errors", "--protocol", "voc"], "--errors is ACT-detector's error analysis and needs --protocol act"),
    (["--errors", "--protocol", "yowo"], "needs --protocol act"),
    (["--errors-plot", "plots"], "--errors-plot needs --errors"),
    (["--errors", "--config-file", "c{split}.yaml", "--weights", "w{split}.pth", "--split", "all"],
     "--errors with --config-file takes one split"),
])
def test_tool_refusals_are_one_line_exit_2(gt, tmp_path, args, message):
    save_gt(gt, str(tmp_path / "gt.pkl"))
    save_detections(str(tmp_path / "d.npz"), Detections(videos=VIDEOS, frame_dets=np.array(MIXED)))
    source = [] if "--config-file" in args else ["--gt", tmp_path / "gt.pkl", "--detections", tmp_path / "d.npz"]
    proc = run_eval(*source, *args, "--json", tmp_path / "e.json")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "e.json").exists()
