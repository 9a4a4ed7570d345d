"""Video-classification metrics (s3d_det/evaluation/classification.py): hand-computed cases, a loop-by-loop
reference of top-k from its definition, the multi-view softmax average, the table and the confusion PNG."""
import dataclasses
import json
import math
import os

import cv2
import numpy as np
import pytest

from s3d_det.evaluation.classification import (
    ClassificationResult,
    aggregate_views,
    classification_metrics,
    format_per_class_table,
    plot_confusion,
)

CLASSES = ["run", "jump", "sit", "wave"]  # "wave" has no test video
# Scores of 5 videos (rows) over the 4 classes, and their true labels; worked out by hand below.
PROBS = np.array([
    [0.70, 0.20, 0.10, 0.00],  # run:  predicted run (right)
    [0.30, 0.50, 0.10, 0.10],  # run:  predicted jump; one class above run -> top-2
    [0.40, 0.40, 0.10, 0.10],  # jump: tie run/jump -> the lower index (run) ranks first; jump is 2nd
    [0.10, 0.20, 0.60, 0.10],  # sit:  predicted sit (right)
    [0.25, 0.25, 0.25, 0.25],  # sit:  all tied -> run, jump, sit, wave; sit is 3rd
])
LABELS = np.array([0, 0, 1, 2, 2])


def hand_result(topk=(1, 5)):
    return classification_metrics(PROBS, LABELS, CLASSES, topk=topk)


# ---------------------------------------------------------------------------------------------- hand-computed


def test_hand_case_top1_top5_mean_class():
    r = hand_result()
    assert isinstance(r, ClassificationResult)
    assert r.num_videos == 5
    assert r.top1 == pytest.approx(40.0)  # videos 0 and 3
    assert r.top5 == 100.0  # K = 4 < 5: every true class is within the top 5
    # per-class top-1 recall: run 1/2, jump 0/1, sit 1/2; wave has no video and is left out of the mean
    assert r.mean_class_accuracy == pytest.approx((50.0 + 0.0 + 50.0) / 3)
    assert r.classes_without_videos == ("wave",)


def test_hand_case_other_k():
    r = hand_result(topk=(1, 2, 3, 5))
    # ranks of the true class (0-based): 0, 1, 1, 0, 2
    assert r.accuracy == {1: pytest.approx(40.0), 2: pytest.approx(80.0), 3: 100.0, 5: 100.0}
    assert r.per_class["sit"]["top2"] == pytest.approx(50.0)
    assert r.per_class["run"]["top2"] == 100.0
    assert r.per_class["jump"]["top2"] == 100.0


def test_hand_case_confusion_and_per_class():
    r = hand_result()
    expected = np.array([
        [1, 1, 0, 0],  # run -> run, jump
        [1, 0, 0, 0],  # jump -> run (the tie)
        [1, 0, 1, 0],  # sit -> sit, run (all tied)
        [0, 0, 0, 0],  # wave: no video
    ])
    np.testing.assert_array_equal(r.confusion, expected)
    assert r.confusion.dtype.kind == "i"
    assert r.per_class["run"] == {"videos": 2, "top1": 50.0, "top5": 100.0, "most_confused_with": "jump",
                                  "most_confused_count": 1}
    assert r.per_class["jump"]["videos"] == 1 and r.per_class["jump"]["top1"] == 0.0
    assert r.per_class["jump"]["most_confused_with"] == "run"
    assert r.per_class["sit"]["top1"] == 50.0 and r.per_class["sit"]["most_confused_with"] == "run"
    assert r.per_class["wave"] == {"videos": 0, "top1": None, "top5": None, "most_confused_with": None,
                                   "most_confused_count": 0}


def test_tie_rule_is_argmax_lowest_index():
    # Two classes tie at the top: the lower index is predicted (as numpy.argmax); the other is 2nd.
    probs = np.array([[0.1, 0.45, 0.45], [0.1, 0.45, 0.45]])
    r = classification_metrics(probs, np.array([1, 2]), ["a", "b", "c"], topk=(1, 2))
    assert r.top1 == 50.0
    assert r.accuracy[2] == 100.0
    np.testing.assert_array_equal(r.confusion, [[0, 0, 0], [0, 1, 0], [0, 1, 0]])


def test_all_right_and_all_wrong():
    probs = np.eye(3)
    assert classification_metrics(probs, np.array([0, 1, 2]), ["a", "b", "c"]).top1 == 100.0
    r = classification_metrics(probs, np.array([1, 2, 0]), ["a", "b", "c"], topk=(1, 2))
    assert r.top1 == 0.0 and r.mean_class_accuracy == 0.0
    # the true class ties at 0 with one other class: it is 2nd when its index is the lower of the two zeros.
    # video 0 (b): a, b, c -> 2nd; video 1 (c): b, a, c -> 3rd; video 2 (a): c, a, b -> 2nd
    assert r.accuracy[2] == pytest.approx(100 * 2 / 3)


def test_to_dict_is_plain_json():
    d = hand_result().to_dict()
    text = json.dumps(d)  # no numpy types left
    back = json.loads(text)
    assert back["top1"] == pytest.approx(40.0) and back["top5"] == 100.0
    assert back["mean_class_accuracy"] == pytest.approx(100 / 3)
    assert back["num_videos"] == 5
    assert back["classes"] == CLASSES
    assert back["classes_without_videos"] == ["wave"]
    assert back["confusion"][2] == [1, 0, 1, 0]
    assert back["per_class"]["wave"]["top1"] is None
    assert back["accuracy"] == {"1": pytest.approx(40.0), "5": 100.0}
    assert type(d["top1"]) is float and type(d["confusion"][0][0]) is int


def test_result_is_frozen():
    r = hand_result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.top1 = 99.0
    with pytest.raises(ValueError):
        r.confusion[0, 0] = 5  # read-only


# --------------------------------------------------------------------------- reference from the definition


def reference_topk(scores, labels, k):
    """Top-k in percent, straight from the rule: the classes of a video in decreasing score, equal scores by
    increasing class index; a video counts when its true class is among the first k."""
    hits = 0
    for row, label in zip(scores, labels):
        order = sorted(range(len(row)), key=lambda c: (-float(row[c]), c))
        if label in order[:k]:
            hits += 1
    return 100.0 * hits / len(labels)


def reference_mean_class(scores, labels, num_classes):
    recalls = []
    for c in range(num_classes):
        rows = [i for i in range(len(labels)) if labels[i] == c]
        if not rows:
            continue
        right = 0
        for i in rows:
            best = 0
            for j in range(num_classes):
                if scores[i][j] > scores[i][best]:
                    best = j
            right += best == c
        recalls.append(100.0 * right / len(rows))
    return sum(recalls) / len(recalls)


@pytest.mark.parametrize("seed", range(6))
def test_topk_matches_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n, k_classes = 60, 7
    # integer scores in 0..3: ties everywhere
    scores = rng.integers(0, 4, size=(n, k_classes)).astype(np.float64)
    if seed % 2:
        scores = rng.random((n, k_classes))
    labels = rng.integers(0, k_classes - 1, size=n)  # the last class has no video
    classes = [f"c{i}" for i in range(k_classes)]
    r = classification_metrics(scores, labels, classes, topk=(1, 2, 3, 5, 7, 9))
    for k in (1, 2, 3, 5, 7, 9):
        assert r.accuracy[k] == pytest.approx(reference_topk(scores, labels, k), abs=1e-12), k
    assert r.mean_class_accuracy == pytest.approx(reference_mean_class(scores, labels, k_classes), abs=1e-12)
    assert r.classes_without_videos == ("c6",)
    confusion = np.zeros((k_classes, k_classes), int)
    for row, label in zip(scores, labels):
        confusion[label, int(np.argmax(row))] += 1
    np.testing.assert_array_equal(r.confusion, confusion)


# ---------------------------------------------------------------------------------------- view aggregation


def test_aggregate_softmax_average_not_logit_average():
    # video 0 has two views that disagree; its rows are interleaved with video 1's single view
    logits = np.array([
        [10.0, 0.0, 10.0],  # video 0, view A: a and c share the mass
        [0.0, 0.0, 5.0],  # video 1
        [1.0, 3.0, -10.0],  # video 0, view B: b
    ])
    probs = aggregate_views(logits, np.array([0, 1, 0]), num_videos=2)
    e = math.exp
    view_a = [e(10) / (2 * e(10) + 1), 1 / (2 * e(10) + 1), e(10) / (2 * e(10) + 1)]
    sum_b = e(1) + e(3) + e(-10)
    view_b = [e(1) / sum_b, e(3) / sum_b, e(-10) / sum_b]
    expected0 = [(a + b) / 2 for a, b in zip(view_a, view_b)]  # about 0.3096, 0.4404, 0.2500
    sum_1 = 2 + e(5)
    np.testing.assert_allclose(probs, [expected0, [1 / sum_1, 1 / sum_1, e(5) / sum_1]], rtol=1e-12)
    assert int(np.argmax(probs[0])) == 1  # the softmax average picks b ...
    assert int(np.argmax(logits[[0, 2]].mean(axis=0))) == 0  # ... where the logit average (5.5, 1.5, 0) picks a
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_aggregate_is_numerically_stable():
    probs = aggregate_views(np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -1000.0]]),
                            np.array([0, 1]), num_videos=2)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-300, rtol=1e-12)


def test_aggregate_multi_view_count():
    # 2 videos x (3 clips x 2 crops): every view of video v is one-hot on class v -> probabilities near one-hot
    logits = np.full((12, 2), -50.0)
    index = np.repeat([0, 1], 6)
    logits[index == 0, 0] = 50.0
    logits[index == 1, 1] = 50.0
    probs = aggregate_views(logits.astype(np.float32), index, num_videos=2)
    assert probs.dtype == np.float64 and probs.shape == (2, 2)
    np.testing.assert_allclose(probs, np.eye(2), atol=1e-40)


@pytest.mark.parametrize("logits, index, num_videos, message", [
    (np.zeros((3, 2)), np.array([0, 0, 2]), 3, "video 1 has no view"),
    (np.zeros((2, 2)), np.array([0, 1]), 3, "video 2 has no view"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), np.array([0, 1]), 2, "row 1"),
    (np.array([[0.0, 1.0], [0.0, np.inf]]), np.array([0, 1]), 2, "row 1"),
    (np.zeros((3, 2)), np.array([0, 1]), 2, "3 rows"),
    (np.zeros(3), np.array([0, 1, 2]), 3, "(N_views, K)"),
    (np.zeros((2, 2)), np.array([0, 2]), 2, "row 1"),
    (np.zeros((2, 2)), np.array([0, -1]), 2, "row 1"),
    (np.zeros((2, 2)), np.array([0.0, 1.0]), 2, "integer"),
    (np.zeros((2, 2)), np.array([0, 1]), 0, "num_videos"),
    (np.zeros((2, 0)), np.array([0, 1]), 2, "class"),
])
def test_aggregate_bad_input(logits, index, num_videos, message):
    with pytest.raises(ValueError) as info:
        aggregate_views(logits, index, num_videos)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("probs, labels, classes, topk, message", [
    (np.zeros((2, 3)), np.array([0, 3]), ["a", "b", "c"], (1, 5), "row 1"),
    (np.zeros((2, 3)), np.array([0, -1]), ["a", "b", "c"], (1, 5), "row 1"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), ["a", "b", "c"], (1, 5), "3 labels"),
    (np.zeros((2, 3)), np.array([0, 1]), ["a", "b"], (1, 5), "2 class names"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), np.array([0, 1]), ["a", "b"], (1, 5), "row 1"),
    (np.zeros((2, 2)), np.array([0.5, 1.0]), ["a", "b"], (1, 5), "integer"),
    (np.zeros((0, 2)), np.zeros(0, int), ["a", "b"], (1, 5), "no video"),
    (np.zeros((2, 2)), np.array([0, 1]), ["a", "a"], (1, 5), "'a'"),
    (np.zeros((2, 2)), np.array([0, 1]), ["a", "b"], (0, 5), "topk"),
    (np.zeros(2), np.array([0, 1]), ["a", "b"], (1, 5), "(N, K)"),
])
def test_metrics_bad_input(probs, labels, classes, topk, message):
    with pytest.raises(ValueError) as info:
        classification_metrics(probs, labels, classes, topk=topk)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_inputs_not_modified():
    probs, labels = PROBS.copy(), LABELS.copy()
    classification_metrics(probs, labels, CLASSES)
    np.testing.assert_array_equal(probs, PROBS)
    logits = np.array([[3.0, 1.0], [0.0, 2.0]])
    aggregate_views(logits, np.array([0, 0]), 1)
    np.testing.assert_array_equal(logits, [[3.0, 1.0], [0.0, 2.0]])


# ------------------------------------------------------------------------------------------ table and plot


def test_per_class_table():
    text = format_per_class_table(hand_result(topk=(1, 2, 5)))
    lines = text.splitlines()
    header = lines[0]
    for column in ("class", "videos", "top-1 (%)", "top-2 (%)", "top-5 (%)", "most confused with"):
        assert column in header
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in lines[2:] if "|" in line}
    assert rows["run"][1:] == ["2", "50.0", "100.0", "100.0", "jump (1)"]
    assert rows["jump"][1:] == ["1", "0.0", "100.0", "100.0", "run (1)"]
    assert rows["sit"][1:] == ["2", "50.0", "50.0", "100.0", "run (1)"]
    assert rows["wave"][1:] == ["0", "-", "-", "-", "-"]
    assert rows["all videos"][1:4] == ["5", "40.0", "80.0"]
    assert "mean class accuracy 33.33% over 3 classes" in text
    assert "without test videos: wave" in text


def _png_shape(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image.shape


def test_plot_confusion_small(tmp_path):
    path = str(tmp_path / "plots" / "confusion.png")
    plot_confusion(hand_result(), path)
    height, width = _png_shape(path)[:2]
    assert (height, width) == (500, 500)  # 5 x 5 inches at 100 dpi for a few classes
    assert os.listdir(tmp_path / "plots") == ["confusion.png"]  # no temporary left beside it
    image = cv2.imread(path)
    assert image.std() > 10  # something was drawn


def test_plot_confusion_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    k = 100
    probs = rng.random((300, k))
    labels = rng.integers(0, k, size=300)
    result = classification_metrics(probs, labels, [f"class_{i:03d}" for i in range(k)])
    path = str(tmp_path / "confusion.png")
    plot_confusion(result, path)
    height, width = _png_shape(path)[:2]
    assert (height, width) == (2000, 2000)  # grows with K, capped at 20 x 20 inches
