"""AVA readers/writer (s3d_det.data.ava) and the AVA frame-AP (s3d_det.evaluation.ava): hand-computed cases, an
independent loop reference written from the published definition on seeded random inputs, and (when the official
ActivityNet code is in /work/.mirror) the official evaluation itself."""
import importlib
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from s3d_det.data.ava import (
    AVABoxes,
    read_ava_detections,
    read_ava_exclusions,
    read_ava_gt,
    read_ava_labelmap,
    write_ava_detections,
)
from s3d_det.data.errors import DataError
from s3d_det.evaluation.ava import ava_frame_ap, detections_off_gt, ranked_keyframes, voc_ap

LABELMAP_TEXT = """label {
  name: "bend/bow (at the waist)"
  label_id: 1
  label_type: PERSON_MOVEMENT
}
label {
  name: "crouch/kneel"
  label_id: 3
  label_type: PERSON_MOVEMENT
}
"""


def write(path, text):
    path.write_text(text)
    return str(path)


def gt_rows(rows):
    """(video, t, x1, y1, x2, y2, action[, person]) -> AVABoxes as read_ava_gt makes them (score = person or 1)."""
    return AVABoxes.from_rows([(*r[:7], float(r[7]) if len(r) > 7 else 1.0) for r in rows])


def dets(rows):
    return AVABoxes.from_rows(rows)


# ---------------------------------------------------------------- readers


def test_read_gt_and_detections(tmp_path):
    gt = read_ava_gt(write(tmp_path / "gt.csv", "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n"
                                                "-5KQ66BBWC4,902,0.077,0.151,0.283,0.811,9,1\n"
                                                "vid,1798,0,0,1,1,12\n"
                                                "vid,1797\n"))
    assert list(gt.video) == ["-5KQ66BBWC4", "-5KQ66BBWC4", "vid"]
    assert gt.timestamp.tolist() == [902, 902, 1798] and gt.action.tolist() == [80, 9, 12]
    assert gt.person.tolist() == [1, 1, -1] and gt.score.tolist() == [1.0, 1.0, 1.0]
    assert gt.boxes[0].tolist() == [0.077, 0.151, 0.283, 0.811] and gt.line.tolist() == [1, 2, 3]
    assert gt.keyframes == [("-5KQ66BBWC4", 902), ("vid", 1798), ("vid", 1797)]
    d = read_ava_detections(write(tmp_path / "d.csv", "vid,0905,0.1,0.2,0.3,0.4,3,0.25\n"))
    assert d.score.tolist() == [0.25] and d.timestamp.tolist() == [905]


@pytest.mark.parametrize("reader,line,needle", [
    (read_ava_gt, "v,902,0.1,0.1,0.2\n", "5 columns: expected 8 columns"),
    (read_ava_gt, "v,902.5,0.1,0.1,0.2,0.2,1,0\n", "timestamp '902.5': expected whole seconds"),
    (read_ava_gt, "v,902,0.1,0.1,0.2,x,1,0\n", "y2 'x': expected a finite number"),
    (read_ava_gt, "v,902,0.3,0.1,0.2,0.2,1,0\n", "expected x1,y1,x2,y2 normalised to [0, 1] with x1 <= x2"),
    (read_ava_gt, "v,902,0.1,0.1,1.2,0.2,1,0\n", "normalised to [0, 1]"),
    (read_ava_gt, "v,902,0.1,0.1,0.2,0.2,0,0\n", "action_id '0': expected an integer >= 1"),
    (read_ava_gt, "v,902,0.1,0.1,0.2,0.2,1,-1\n", "person_id '-1': expected an integer >= 0"),
    (read_ava_gt, ",902,0.1,0.1,0.2,0.2,1,0\n", "empty video_id"),
    (read_ava_detections, "v,902,0.1,0.1,0.2,0.2,1\n", "7 columns: expected 8 columns"),
    (read_ava_detections, "v,902,0.1,0.1,0.2,0.2,1,nan\n", "score 'nan': expected a finite number"),
    (read_ava_exclusions, "v,902,3\n", "3 columns: expected 2"),
    (read_ava_exclusions, "v,abc\n", "timestamp 'abc'"),
])
def test_bad_rows_name_file_and_line(tmp_path, reader, line, needle):
    first = "v,903\n" if reader is read_ava_exclusions else "v,903,0,0,1,1,2,1\n"
    path = write(tmp_path / "f.csv", first + line)
    with pytest.raises(DataError) as e:
        reader(path)
    message = str(e.value)
    assert message.startswith(f"{path}: line 2: ") and needle in message and "\n" not in message


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_ava_gt(str(tmp_path / "none.csv"))


def test_labelmap_both_spellings(tmp_path):
    assert read_ava_labelmap(write(tmp_path / "a.pbtxt", LABELMAP_TEXT)) == {1: "bend/bow (at the waist)",
                                                                            3: "crouch/kneel"}
    assert read_ava_labelmap(write(tmp_path / "b.pbtxt", 'item {\n  name: "talk to"\n  id: 79\n}\n')) == {
        79: "talk to"}


@pytest.mark.parametrize("text,line,needle", [
    ('label {\n  name: "a"\n}\n', 1, "item without a label_id"),
    ('label {\n  name: "a"\n  label_id: 0\n}\n', 3, "expected an integer >= 1"),
    ('label {\n  name: "a"\n  label_id: 1\n}\nlabel {\n  name: "b"\n  label_id: 1\n}\n', 5, "label_id 1 given twice"),
    ('label {\n  name: "a"\n  label_id: 1\n}\nlabel {\n  name: "a"\n  label_id: 2\n}\n', 5, "name 'a' given twice"),
    ('label {\n  name: a\n  label_id: 1\n}\n', 2, "expected a quoted string"),
    ('name: "a"\n', 1, "expected label {"),
    ('label {\n  name: "a"\n  label_id: 1\n', 1, "not closed"),
])
def test_bad_labelmap(tmp_path, text, line, needle):
    path = write(tmp_path / "m.pbtxt", text)
    with pytest.raises(DataError) as e:
        read_ava_labelmap(path)
    assert str(e.value).startswith(f"{path}: line {line}: ") and needle in str(e.value)


def test_empty_labelmap(tmp_path):
    with pytest.raises(DataError, match="no label items"):
        read_ava_labelmap(write(tmp_path / "m.pbtxt", "\n"))


def test_writer_round_trip_and_refuses_overwrite(tmp_path):
    rows = [("vA", 902, 0.1, 0.2, 0.30000000000000004, 0.4, 3, 0.123456789), ("vB", 1798, 0.0, 0.0, 1.0, 1.0, 80, 1e-9)]
    path = str(tmp_path / "d.csv")
    write_ava_detections(path, dets(rows))
    back = read_ava_detections(path)
    assert list(back.video) == ["vA", "vB"] and back.timestamp.tolist() == [902, 1798]
    assert back.boxes.tolist() == [list(r[2:6]) for r in rows] and back.score.tolist() == [r[7] for r in rows]
    assert open(path).readline().startswith("vA,0902,")
    with pytest.raises(FileExistsError):
        write_ava_detections(path, dets(rows))
    with pytest.raises(ValueError, match="without commas"):
        write_ava_detections(str(tmp_path / "e.csv"), dets([("a,b", 902, 0, 0, 1, 1, 1, 0.5)]))
    assert not (tmp_path / "e.csv").exists()


# ---------------------------------------------------------------- hand-computed cases

MAP = {1: "a", 2: "b", 3: "c"}
A, B = (0.1, 0.1, 0.5, 0.5), (0.6, 0.6, 0.9, 0.9)


def test_perfect_detector_is_one():
    gt = gt_rows([("v", 902, *A, 1), ("v", 902, *B, 2), ("w", 903, *A, 2)])
    d = dets([("v", 902, *A, 1, 0.9), ("v", 902, *B, 2, 0.8), ("w", 903, *A, 2, 0.7)])
    r = ava_frame_ap(gt, d, MAP)
    assert r.classes == ["a", "b"] and r.ap == {"a": 100.0, "b": 100.0} and r.mean == 100.0  # "c": no GT, left out
    assert r.num_gt == {"a": 1, "b": 2} and r.num_dets == {"a": 1, "b": 2}


def test_false_positive_ranked_first_gives_half():
    gt = gt_rows([("v", 902, *A, 1)])
    r = ava_frame_ap(gt, dets([("v", 902, *B, 1, 0.9), ("v", 902, *A, 1, 0.5)]), MAP)
    assert r.ap["a"] == pytest.approx(50.0)  # precision 1/2 at recall 1
    r = ava_frame_ap(gt, dets([("v", 902, *B, 1, 0.4), ("v", 902, *A, 1, 0.5)]), MAP)
    assert r.ap["a"] == pytest.approx(100.0)


def test_second_detection_of_a_box_is_false_positive_and_missed_gt_lowers_recall():
    gt = gt_rows([("v", 902, *A, 1), ("v", 902, *B, 1)])
    # ranks: A (TP), A again (FP: its best box is taken, no second choice), B (TP) -> 1*1/2 + (2/3)*1/2
    r = ava_frame_ap(gt, dets([("v", 902, *A, 1, 0.9), ("v", 902, *A, 1, 0.8), ("v", 902, *B, 1, 0.7)]), MAP)
    assert r.ap["a"] == pytest.approx(100 * (0.5 + 2 / 6))
    r = ava_frame_ap(gt, dets([("v", 902, *A, 1, 0.9)]), MAP)
    assert r.ap["a"] == pytest.approx(50.0)
    assert ava_frame_ap(gt, dets([]), MAP).ap["a"] == 0.0  # GT, no detections: AP 0


G1, G2 = (0.0, 0.0, 0.5, 1.0), (0.125, 0.0, 0.625, 1.0)  # dyadic: the IoUs below are exact


def test_no_second_choice_when_the_best_box_is_taken():
    # D2's best box is G1 (IoU 0.875), taken by D1; G2 (IoU 2/3) is not tried: FP (ACT would take G2)
    gt = gt_rows([("v", 902, *G1, 1), ("v", 902, *G2, 1)])
    r = ava_frame_ap(gt, dets([("v", 902, *G1, 1, 0.9), ("v", 902, 0.0625, 0.0, 0.5, 1.0, 1, 0.8)]), MAP)
    assert r.ap["a"] == pytest.approx(50.0)


def test_equal_iou_takes_the_first_gt_box_in_the_official_order():
    # D1 overlaps G1 and G2 equally (7/9); D2 = G2. D1 takes the first box of the keyframe's ground truth, in the
    # official reader's order: by person_id (its "score" slot), highest first, else by the heap of
    # (score, action, y1, x1, y2, x2) tuples. D1 on G1: D2 is a TP (AP 100); D1 on G2: D2 is a FP (AP 50).
    d = dets([("v", 902, 0.0625, 0.0, 0.5625, 1.0, 1, 0.9), ("v", 902, *G2, 1, 0.8)])
    assert ava_frame_ap(gt_rows([("v", 902, *G1, 1, 0), ("v", 902, *G2, 1, 1)]), d, MAP).ap["a"] == 50.0
    assert ava_frame_ap(gt_rows([("v", 902, *G1, 1, 1), ("v", 902, *G2, 1, 0)]), d, MAP).ap["a"] == 100.0
    # 7 columns (score 1.0 for both): the heap puts the smaller tuple (G1: x1 0 < 0.125) first, whatever the file
    assert ava_frame_ap(gt_rows([("v", 902, *G2, 1), ("v", 902, *G1, 1)]), d, MAP).ap["a"] == 100.0


def test_iou_exactly_half_counts_and_no_plus_one():
    gt = gt_rows([("v", 902, 0.0, 0.0, 0.5, 1.0, 1)])
    # [0, 0.25] x [0, 1] inside the GT: IoU = 0.25 / 0.5 = 0.5 exactly (>= 0.5: TP); +1 pixel would change it
    assert ava_frame_ap(gt, dets([("v", 902, 0.0, 0.0, 0.25, 1.0, 1, 0.9)]), MAP).ap["a"] == 100.0
    assert ava_frame_ap(gt, dets([("v", 902, 0.0, 0.0, 0.24, 1.0, 1, 0.9)]), MAP).ap["a"] == 0.0


def test_exclusions_drop_gt_and_detections():
    gt = gt_rows([("v", 902, *A, 1), ("v", 903, *A, 1), ("v", 904, *A, 2)])
    d = dets([("v", 902, *B, 1, 0.9), ("v", 903, *A, 1, 0.5)])
    assert ava_frame_ap(gt, d, MAP).ap["a"] == pytest.approx(25.0)  # FP, TP on 2 GT: 1/2 * 1/2
    r = ava_frame_ap(gt, d, MAP, excluded={("v", 902)})
    assert r.ap["a"] == 100.0 and r.num_gt["a"] == 1
    r = ava_frame_ap(gt, d, MAP, excluded={("v", 902), ("v", 904)})
    assert r.classes == ["a"]  # "b" only had GT on the excluded keyframe


def test_classes_outside_labelmap_are_dropped_and_keyframes_without_gt_count_as_fp():
    gt = gt_rows([("v", 902, *A, 1), ("v", 902, *B, 7)])
    # class 7 is not in the map: its GT and detections are dropped (no FP for class 7, no effect on "a")
    d = dets([("v", 902, *B, 7, 0.99), ("v", 902, *A, 1, 0.5)])
    r = ava_frame_ap(gt, d, MAP)
    assert r.classes == ["a"] and r.ap["a"] == 100.0 and r.num_dets["a"] == 1
    # a detection on a keyframe the ground truth does not annotate is a FP (official rule 5)
    d = dets([("x", 1000, *A, 1, 0.9), ("v", 902, *A, 1, 0.5)])
    assert ava_frame_ap(gt, d, MAP).ap["a"] == pytest.approx(50.0)
    assert detections_off_gt(gt, d, MAP) == 1 and detections_off_gt(gt, d, MAP, excluded={("x", 1000)}) == 0


def test_zero_area_detection_is_dropped_not_fp():
    gt = gt_rows([("v", 902, *A, 1)])
    r = ava_frame_ap(gt, dets([("v", 902, 0.2, 0.2, 0.2, 0.4, 1, 0.9), ("v", 902, *A, 1, 0.5)]), MAP)
    assert r.ap["a"] == 100.0 and r.num_dets["a"] == 1


def test_capacity_keeps_top_50_per_keyframe_ties_by_heap():
    gt = gt_rows([("v", 902, *A, 1)])
    # 50 FPs with score 0.6, then the TP with 0.5: the TP is not among the top 50 of the keyframe -> AP 0
    rows = [("v", 902, *B, 1, 0.6)] * 50 + [("v", 902, *A, 1, 0.5)]
    assert ava_frame_ap(gt, dets(rows), MAP).ap["a"] == 0.0
    assert ava_frame_ap(gt, dets(rows), MAP, capacity=0).ap["a"] == pytest.approx(100 / 51)
    # the TP on another keyframe is kept: the cap is per keyframe
    rows[-1] = ("w", 902, *A, 1, 0.5)
    gt = gt_rows([("w", 902, *A, 1)])
    assert ava_frame_ap(gt, dets(rows), MAP).ap["a"] == pytest.approx(100 / 51)
    # full heap, equal scores: a later row with the same score does not enter; a higher one evicts the smallest
    # (score, action, y1, x1, ...) tuple: here the class-1 row, not the class-3 one that came first
    kept = ranked_keyframes(dets([("v", 1, *A, 3, 0.5), ("v", 1, *A, 1, 0.5), ("v", 1, *B, 2, 0.5),
                                  ("v", 1, *B, 2, 0.9)]), [1, 2, 3], capacity=2)
    assert [(e[0], e[1]) for e in kept[("v", 1)]] == [(0.9, 2), (0.5, 3)]


def test_voc_ap_formula():
    # PR points (p, r): (1, .5), (.5, .5), (2/3, 1): envelope 1 on (0, .5], 2/3 on (.5, 1]
    assert voc_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 1 / 3)
    assert voc_ap(np.array([0.0]), np.array([0.0])) == 0.0 and voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_no_class_with_gt_gives_nan_mean():
    r = ava_frame_ap(gt_rows([("v", 902, *A, 9)]), dets([("v", 902, *A, 1, 0.5)]), MAP)
    assert r.classes == [] and np.isnan(r.mean)


# ---------------------------------------------------------------- the loop reference


def iou_reference(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, the PASCAL definition (continuous coordinates, no +1)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_ava_ap(gt, det, labelmap, excluded, capacity=50):
    """Per class AP (fraction) from the definition: per keyframe the top ``capacity`` detections by score (no ties
    within a keyframe in these inputs), all of a class's detections ranked by score (ties: numpy's argsort over the
    keyframes in order of first appearance, then by score, as rule 9 says), each matched greedily within its keyframe
    to the unmatched-or-not GT box of highest IoU, TP if IoU >= 0.5 and the box is new; VOC all-points AP."""
    ids = set(labelmap)
    gts = defaultdict(list)
    for v, t, box, a in zip(gt.video, gt.timestamp, gt.boxes.tolist(), gt.action):
        if a in ids and (v, t) not in excluded:
            gts[(v, int(t), int(a))].append(box)
    per_key = {}
    for v, t, box, a, s in zip(det.video, det.timestamp, det.boxes.tolist(), det.action, det.score):
        if a in ids:
            per_key.setdefault((v, int(t)), []).append((s, int(a), box))
    aps = {}
    for c in sorted(ids):
        n_gt = sum(len(b) for k, b in gts.items() if k[2] == c)
        if n_gt == 0:
            continue
        scores, tps = [], []
        for key, rows in per_key.items():
            if key in excluded:
                continue
            rows = sorted(rows, key=lambda r: -r[0])[:capacity]
            boxes = gts.get((*key, c), [])
            taken = [False] * len(boxes)
            for s, a, box in rows:
                if a != c or not (box[0] < box[2] and box[1] < box[3]):
                    continue
                best, best_iou = -1, -1.0
                for j, g in enumerate(boxes):
                    o = iou_reference(box, g)
                    if o > best_iou:
                        best, best_iou = j, o
                tp = best >= 0 and best_iou >= 0.5 and not taken[best]
                if tp:
                    taken[best] = True
                scores.append(s)
                tps.append(tp)
        order = np.argsort(np.array(scores, dtype=np.float64))[::-1]
        tp_count, points = 0, []
        for rank, i in enumerate(order, start=1):
            tp_count += tps[i]
            points.append((tp_count / rank, tp_count / n_gt))
        ap = 0.0
        prev_recall = 0.0
        for k, (p, r) in enumerate(points):
            if r > prev_recall:
                ap += (r - prev_recall) * max(q for q, _ in points[k:])
                prev_recall = r
        aps[labelmap[c]] = ap
    return aps


def random_case(seed, ties):
    rng = np.random.default_rng(seed)
    videos = [f"vid{i}" for i in range(4)]
    keys = [(v, t) for v in videos for t in range(902, 912)]
    gt, det = [], []
    for v, t in keys:
        for _ in range(rng.integers(0, 4)):  # people
            x1, y1 = rng.uniform(0, 0.6, 2)
            box = (x1, y1, x1 + rng.uniform(0.05, 0.4), y1 + rng.uniform(0.05, 0.4))
            for a in rng.choice(np.arange(1, 9), size=rng.integers(1, 3), replace=False):  # actions 1..8
                gt.append((v, t, *box, int(a), 1.0))
                for _ in range(rng.integers(0, 3)):  # detections near it: exact, jittered
                    j = 0 if rng.random() < 0.3 else rng.normal(0, 0.04, 4)
                    b = np.clip(np.array(box) + j, 0, 1)
                    b = (*np.minimum(b[:2], b[2:]), *np.maximum(b[:2], b[2:]))
                    det.append((v, t, *b, int(a) if rng.random() < 0.8 else int(rng.integers(1, 9)), 0.0))
        for _ in range(rng.integers(0, 80 if rng.random() < 0.15 else 6)):  # background; some keyframes over 50
            x1, y1 = rng.uniform(0, 0.7, 2)
            det.append((v, t, x1, y1, x1 + rng.uniform(0, 0.3), y1 + rng.uniform(0, 0.3), int(rng.integers(1, 9)),
                        0.0))
    for _ in range(5):  # detections on keyframes without ground truth
        det.append(("other", int(rng.integers(902, 905)), 0.1, 0.1, 0.4, 0.4, int(rng.integers(1, 9)), 0.0))
    det = [det[i] for i in rng.permutation(len(det))]
    # scores: distinct within a keyframe; with ties, drawn without replacement from 100 levels per keyframe (so
    # keyframes share scores), else continuous
    per_key = defaultdict(list)
    for i, r in enumerate(det):
        per_key[r[:2]].append(i)
    det = list(det)
    for idx in per_key.values():
        levels = (rng.choice(np.arange(1, 101), size=len(idx), replace=False) / 100.0 if ties
                  else rng.random(len(idx)))
        for i, s in zip(idx, levels):
            det[i] = (*det[i][:7], float(s))
    labelmap = {a: f"action{a}" for a in (1, 2, 3, 5, 6, 7, 10)}  # 4 and 8 outside the map, 10 without GT
    excluded = {keys[i] for i in rng.choice(len(keys), size=5, replace=False)} | {("other", 902)}
    return AVABoxes.from_rows(gt), AVABoxes.from_rows(det), labelmap, excluded


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_matches_loop_reference_on_random_inputs(seed, ties):
    gt, det, labelmap, excluded = random_case(seed, ties)
    result = ava_frame_ap(gt, det, labelmap, excluded=excluded)
    expected = reference_ava_ap(gt, det, labelmap, excluded)
    assert result.classes == list(expected) and "action10" not in expected
    for name, ap in expected.items():
        assert result.ap[name] == pytest.approx(100 * ap, abs=1e-9), name
    assert result.mean == pytest.approx(100 * np.mean(list(expected.values())), abs=1e-9)
    assert 0 < result.mean < 100


# ---------------------------------------------------------------- the official code, if it is here

MIRROR = "/work/.mirror/activitynet+ActivityNet/repo"
OFFICIAL_FILES = ["__init__", "label_map_util", "metrics", "np_box_list", "np_box_list_ops", "np_box_mask_list",
                  "np_box_mask_list_ops", "np_box_ops", "np_mask_ops", "object_detection_evaluation",
                  "per_image_evaluation", "standard_fields"]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """ActivityNet's evaluation (numpy only) written to a temporary folder from the mirror (never into the repo):
    ``Evaluation/ava/*`` at HEAD and ``get_ava_performance.py`` of the release with --exclusions (c070fdb^)."""
    if not os.path.isdir(MIRROR):
        pytest.skip("the official ActivityNet code is not mirrored here")
    root = tmp_path_factory.mktemp("official")
    (root / "ava").mkdir()

    def show(spec, dest):
        out = subprocess.run(["git", "--git-dir", MIRROR, "show", spec], capture_output=True)
        if out.returncode:
            pytest.skip(f"cannot read {spec} from the mirror")
        dest.write_bytes(out.stdout)

    for name in OFFICIAL_FILES:
        show(f"HEAD:Evaluation/ava/{name}.py", root / "ava" / f"{name}.py")
    show("c070fdb^:Evaluation/get_ava_performance.py", root / "get_ava_performance.py")
    # the code predates numpy 1.24/2.0 and Python 3.13: give back the aliases it uses while it runs
    import logging

    added = []
    for mod, name, value in ((np, "float", float), (np, "bool", np.bool_), (np, "NAN", np.nan),
                             (logging, "warn", logging.warning)):
        if not hasattr(mod, name):
            setattr(mod, name, value)
            added.append((mod, name))
    saved = dict(sys.modules)
    sys.path[:0] = [str(root), str(root / "ava")]
    try:
        gap = importlib.import_module("get_ava_performance")
        yield gap
    finally:
        sys.path.remove(str(root))
        sys.path.remove(str(root / "ava"))
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        for mod, name in added:
            delattr(mod, name)


def run_official(gap, gt_csv, det_csv, map_txt, excl_csv):
    """``run_evaluation`` of the release with --exclusions, returning the metrics it prints."""
    with open(map_txt) as f:
        categories, whitelist = gap.read_labelmap(f)
    with open(excl_csv) as f:
        excluded = gap.read_exclusions(f)
    evaluator = gap.object_detection_evaluation.PascalDetectionEvaluator(categories)
    fields = gap.standard_fields
    with open(gt_csv) as f:
        boxes, labels, _ = gap.read_csv(f, whitelist, 0)
    for key in boxes:
        if key not in excluded:
            evaluator.add_single_ground_truth_image_info(key, {
                fields.InputDataFields.groundtruth_boxes: np.array(boxes[key], dtype=float),
                fields.InputDataFields.groundtruth_classes: np.array(labels[key], dtype=int),
                fields.InputDataFields.groundtruth_difficult: np.zeros(len(boxes[key]), dtype=bool)})
    with open(det_csv) as f:
        boxes, labels, scores = gap.read_csv(f, whitelist, 50)
    for key in boxes:
        if key not in excluded:
            evaluator.add_single_detected_image_info(key, {
                fields.DetectionResultFields.detection_boxes: np.array(boxes[key], dtype=float),
                fields.DetectionResultFields.detection_classes: np.array(labels[key], dtype=int),
                fields.DetectionResultFields.detection_scores: np.array(scores[key], dtype=float)})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return evaluator.evaluate()


@pytest.mark.parametrize("seed", range(6))
def test_matches_official_code(official, tmp_path, seed):
    """Ties within keyframes too (scores on a coarse grid, boxes on a grid so IoU ties and exact 0.5 happen)."""
    gt, det, labelmap, excluded = random_case(100 + seed, ties=True)
    rng = np.random.default_rng(seed)
    det.score = np.round(det.score * 10) / 10  # many ties within keyframes
    det.boxes = np.round(det.boxes * 8) / 8  # zero-area boxes too (rule 6)
    gt.boxes = np.round(gt.boxes * 8) / 8
    gt.person = rng.integers(0, 3, len(gt))
    gt.score = gt.person.astype(float)
    gt_csv = tmp_path / "gt.csv"
    gt_csv.write_text("".join(f"{v},{t},{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r},{a},{p}\n"
                              for v, t, b, a, p in zip(gt.video, gt.timestamp, gt.boxes.tolist(), gt.action,
                                                       gt.person)))
    det_csv = str(tmp_path / "det.csv")
    write_ava_detections(det_csv, det)
    map_txt = write(tmp_path / "map.pbtxt", "".join(f'label {{\n  name: "{n}"\n  label_id: {i}\n}}\n'
                                                     for i, n in labelmap.items()))
    excl_csv = write(tmp_path / "excl.csv", "".join(f"{v},{t}\n" for v, t in sorted(excluded)))
    metrics = run_official(official, str(gt_csv), det_csv, map_txt, excl_csv)
    result = ava_frame_ap(read_ava_gt(str(gt_csv)), read_ava_detections(det_csv), read_ava_labelmap(map_txt),
                          excluded=read_ava_exclusions(excl_csv))
    expected = {k.rsplit("/", 1)[1]: v for k, v in metrics.items() if "PerformanceByCategory" in k}
    assert result.classes == [n for n, ap in expected.items() if not np.isnan(ap)]
    for name in result.classes:
        assert result.ap[name] / 100 == pytest.approx(expected[name], abs=1e-12), name
    assert result.mean / 100 == pytest.approx(metrics["PascalBoxes_Precision/mAP@0.5IOU"], abs=1e-12)


# ---------------------------------------------------------------- tools/eval_jhmdb.py --protocol ava

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_eval(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "tools/eval_jhmdb.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture
def ava_files(tmp_path):
    a, b = ",".join(map(str, A)), ",".join(map(str, B))
    files = {
        "gt": write(tmp_path / "gt.csv", f"v1,0902,{a},1,0\nv1,0902,{b},3,1\nv1,0903,{a},1,0\nv1,0904,{a},80,0\n"),
        # class 1: FP (0.9), TP (0.8) -> 50; class 3: TP -> 100; class 80 is not in the map; v1,0904 is excluded
        "dets": write(tmp_path / "d.csv", f"v1,0902,{b},1,0.9\nv1,0902,{a},1,0.8\nv1,0902,{b},3,0.7\n"
                                          f"v1,0902,{a},80,0.99\nv1,0904,{a},1,0.95\n"),
        "map": write(tmp_path / "m.pbtxt", LABELMAP_TEXT),
        "excl": write(tmp_path / "x.csv", "v1,904\n"),
    }
    return files


def test_tool_ava_scores_and_writes_json(ava_files, tmp_path):
    out = tmp_path / "r.json"
    proc = run_eval("--protocol", "ava", "--gt", ava_files["gt"], "--detections", ava_files["dets"], "--labelmap",
                    ava_files["map"], "--exclusions", ava_files["excl"], "--json", out)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(out.read_text())
    assert set(result) == {"protocol", "iou", "frame_mAP", "per_class_AP", "video_mAP"}
    assert result["protocol"] == "ava" and result["iou"] == 0.5 and result["video_mAP"] is None
    # class 1 has 2 GT boxes (0902, 0903): FP then TP -> precision 1/2 at recall 1/2 -> AP 25
    assert result["per_class_AP"] == pytest.approx({"bend/bow (at the waist)": 25.0, "crouch/kneel": 100.0})
    assert result["frame_mAP"] == pytest.approx(62.5)
    assert "frame-mAP@0.5: 62.50" in proc.stdout and "1 detection rows of actions outside" in proc.stdout
    # without the exclusions the 0904 detection of class 1 is a FP ranked first (its GT there is class 80)
    proc = run_eval("--protocol", "ava", "--gt", ava_files["gt"], "--detections", ava_files["dets"], "--labelmap",
                    ava_files["map"], "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["per_class_AP"]["bend/bow (at the waist)"] == pytest.approx(100 / 6)
    assert "count as false positives" in proc.stdout


def test_tool_ava_bad_row_is_one_line_naming_file_and_line(ava_files, tmp_path):
    bad = write(tmp_path / "bad.csv", "v1,0902,0.1,0.1,0.5,0.5,1,0.9\nv1,0902,0.1,0.1,0.5,0.5,1\n")
    proc = run_eval("--protocol", "ava", "--gt", ava_files["gt"], "--detections", bad, "--labelmap", ava_files["map"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: line 2: 7 columns" in proc.stderr
    proc = run_eval("--protocol", "ava", "--gt", ava_files["gt"], "--detections", ava_files["dets"],
                    "--labelmap", tmp_path / "none.pbtxt")
    assert proc.returncode == 2 and "none.pbtxt: no such file" in proc.stderr and proc.stderr.count("\n") == 1
    only80 = write(tmp_path / "gt80.csv", "v1,0902,0.1,0.1,0.5,0.5,80,0\n")
    proc = run_eval("--protocol", "ava", "--gt", only80, "--detections", ava_files["dets"], "--labelmap",
                    ava_files["map"])
    assert proc.returncode == 2 and "no class of" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("extra,needle", [
    ([], "needs --labelmap"),
    (["--labelmap", "m", "--split", "1"], "--split does not go with --protocol ava"),
    (["--labelmap", "m", "--video-map"], "--video-map does not go with --protocol ava"),
])
def test_tool_ava_argument_errors(ava_files, extra, needle):
    proc = run_eval("--protocol", "ava", "--gt", ava_files["gt"], "--detections", ava_files["dets"], *extra)
    assert proc.returncode == 2 and needle in proc.stderr


@pytest.mark.parametrize("flag", ["--labelmap", "--exclusions"])
def test_tool_refuses_ava_files_with_other_protocols(ava_files, flag):
    proc = run_eval("--protocol", "voc", "--gt", "gt.pkl", "--detections", "d.npz", flag, "x")
    assert proc.returncode == 2 and f"{flag} goes with --protocol ava, not with --protocol voc" in proc.stderr
