"""Several actions a person (``MODEL.ROI_HEAD.LOSS sigmoid``): the ground truth's equal boxes merged into people
with sets of actions, the binary cross-entropy by hand, several detections of one box at inference, per-action
score thresholds."""
from __future__ import annotations

import math

import pytest
import torch

from s3d_det.modeling.detector import build_action_detector
from s3d_det.modeling.roi_head import _people, _sigmoid_loss

pytestmark = pytest.mark.usefixtures("one_thread")
H, W = 48, 64


def test_equal_boxes_are_one_person_with_all_their_actions():
    a, b, c = [1.0, 2.0, 20.0, 30.0], [5.0, 5.0, 15.0, 25.0], [30.0, 4.0, 40.0, 20.0]
    boxes = torch.tensor([a, b, a, c, c, [1.0004, 2.0, 20.0, 30.0]])  # the last is a within 1e-3 px
    labels = torch.tensor([2, 0, 4, -1, -1, 3])  # shifted: action + 1, 0 none, -1 ignore
    merged, sets = _people([{"boxes": boxes, "labels": labels}], num_classes=4)
    people = {tuple(box): (int(label), row.tolist()) for box, label, row in
              zip(merged[0]["boxes"].tolist(), merged[0]["labels"], sets[0][merged[0]["labels"].clamp(min=1) - 1])}
    assert len(people) == 3
    assert people[tuple(a)][1] == [0.0, 1.0, 1.0, 1.0]  # actions 1, 2 and 3 (shifted 2, 3, 4)
    assert people[tuple(b)][1] == [0.0, 0.0, 0.0, 0.0] and people[tuple(b)][0] >= 1  # a person doing none: learnt
    assert people[tuple(c)][0] == -1  # only ignore labels: ignored
    empty, empty_sets = _people([{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}], 4)
    assert len(empty[0]["boxes"]) == 0 and empty_sets[0].shape == (0, 4)


def test_binary_cross_entropy_by_hand():
    logits = torch.tensor([[9.0, 2.0, -1.0], [9.0, 0.0, 0.0]])  # column 0 unused
    labels = [torch.tensor([1, 0])]  # RoI 0: person 1 (actions {0}); RoI 1: background
    sets = [torch.tensor([[1.0, 0.0]])]
    deltas, targets = torch.zeros(2, 12), [torch.zeros(2, 4)]
    loss_cls, loss_box = _sigmoid_loss(logits, deltas, labels, targets, sets)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731  BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    expected = (softplus(-2.0) + softplus(-1.0) + softplus(0.0) + softplus(0.0)) / 4
    assert float(loss_cls) == pytest.approx(expected, rel=1e-6) and float(loss_box) == 0.0


def detector(**kwargs):
    torch.manual_seed(0)
    args = dict(num_classes=3, proposals="gt", width_3d=0.25, feature_3d="mixed_3c", loss="sigmoid",
                box_score_thresh=0.5)
    return build_action_detector(**{**args, **kwargs})


def batch(boxes, labels):
    return {"clip": torch.rand(1, 3, 4, H, W) * 255, "image_sizes": [(H, W)], "scale": [(1.0, 1.0)],
            "flipped": [False], "orig_size": [(H, W)], "boxes": [torch.tensor(boxes)], "labels": [torch.tensor(labels)]}


def test_sigmoid_head_trains_on_people_with_several_actions():
    model = detector().train()
    box = [10.0, 8.0, 40.0, 44.0]
    losses = model(batch([box, box, [2.0, 2.0, 12.0, 20.0]], [0, 2, -1]))
    assert set(losses) == {"loss_cls", "loss_box_reg"} and torch.isfinite(losses["loss_cls"])
    losses["loss_cls"].backward()
    assert model.roi_head.box_predictor.cls_score.weight.grad.abs().sum() > 0


def fixed(model, logits):
    model.roi_head.predict = lambda features, proposals: (torch.tensor([logits]), torch.zeros(1, 16))


def test_one_box_gives_one_detection_per_action_above_its_threshold():
    model = detector().eval()
    fixed(model, [5.0, 2.0, 1.0, -3.0])  # sigmoid: 0.881, 0.731, 0.047 (column 0 unused)
    out = model(batch([[10.0, 8.0, 40.0, 44.0]], [0]))[0]
    got = {int(label): float(score) for label, score in zip(out["labels"], out["scores"])}
    assert got == pytest.approx({0: 1 / (1 + math.exp(-2.0)), 1: 1 / (1 + math.exp(-1.0))})
    assert torch.allclose(out["boxes"], torch.tensor([[10.0, 8.0, 40.0, 44.0]]).expand(2, 4))
    model = detector(box_class_score_thresh=(0.9, 0.5, 0.01)).eval()
    fixed(model, [5.0, 2.0, 1.0, -3.0])
    out = model(batch([[10.0, 8.0, 40.0, 44.0]], [0]))[0]
    assert sorted(int(v) for v in out["labels"]) == [1, 2]


def test_bad_multilabel_settings_are_refused():
    with pytest.raises(ValueError, match="class-agnostic"):
        detector(class_specific_boxes=True)
    with pytest.raises(ValueError, match="one threshold per action \\(3\\), got 2"):
        detector(box_class_score_thresh=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown loss"):
        build_action_detector(num_classes=3, proposals="gt", width_3d=0.25, feature_3d="mixed_3c", loss="focal")


def test_several_actions_of_one_box_are_drawn_one_a_line():
    import numpy as np

    from s3d_det.vis import draw_frame

    image = np.zeros((120, 160, 3), np.uint8)
    row = [0, 1, 0, 0.9, 40, 70, 100, 110]
    one = draw_frame(image, 1, np.array([row], float), [0], ["wave", "move_left"])
    two = draw_frame(image, 1, np.array([row, [0, 1, 1, 0.8, 40, 70, 100, 110]], float), [0, 1], ["wave", "move_left"])
    # one label fills the rows just above the box; a second goes on a line above it, where one left black
    assert one[30:50, 40:100].max() == 0 and two[30:50, 40:100].max() > 0  # labels are about 14 px tall
    assert np.array_equal(one[57:66, 40:100], two[57:66, 40:100])  # the first label where it was


def test_per_action_thresholds_below_score_thresh_keep_low_person_scores():
    """SCORING person: a proposal is skipped only when its person score cannot pass the lowest threshold, an
    action's own one when the head has them (0.04 x 0.88 = 0.035 passes 0.01, though not SCORE_THRESH 0.05)."""
    model = detector(proposals="given", scoring="person", box_score_thresh=0.05,
                     box_class_score_thresh=(0.01, 0.01, 0.01)).eval()
    fixed(model, [5.0, 2.0, -9.0, -9.0])
    data = batch([[10.0, 8.0, 40.0, 44.0]], [0])
    data.update(proposals=[torch.tensor([[10.0, 8.0, 40.0, 44.0]])], proposal_scores=[torch.tensor([0.04])])
    out = model(data)[0]
    assert out["labels"].tolist() == [0] and float(out["scores"][0]) == pytest.approx(0.04 / (1 + math.exp(-2.0)))
