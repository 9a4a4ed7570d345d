"""Person x action scoring (``TubeRoIHead(scoring="person")``) and the RPN that returns its objectness."""
from __future__ import annotations

import math

import pytest
import torch
from test_detector import FixedPredictor, make_batch, tiny, tiny_head
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import clip_boxes_to_image

from s3d_det.modeling.detector import ActionDetector, build_action_detector
from s3d_det.modeling.rpn import ScoredRPN

pytestmark = pytest.mark.usefixtures("one_thread")


def constant_rpn_head(head: RPNHead, objectness_bias) -> None:
    """Every anchor of type a gets objectness logit ``objectness_bias[a]`` and zero deltas (proposals = anchors)."""
    for p in head.parameters():
        nn.init.zeros_(p)
    head.cls_logits.bias.data = torch.as_tensor(objectness_bias, dtype=torch.float32)


def two_ratio_rpn(**kwargs) -> ScoredRPN:
    """16-px anchors of ratios 0.5 and 2 (IoU 1/3 with each other) on a stride-16 map."""
    anchors = AnchorGenerator(((16,),), ((0.5, 2.0),))
    head = RPNHead(8, 2)
    constant_rpn_head(head, [2.0, -1.0])
    return ScoredRPN(anchors, head, fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=16,
                     positive_fraction=0.5, pre_nms_top_n=dict(training=100, testing=100),
                     post_nms_top_n=dict(training=100, testing=100), nms_thresh=0.7, **kwargs)


def test_scored_rpn_returns_the_objectness_probability_of_each_proposal():
    rpn = two_ratio_rpn().eval()
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    features = {"0": torch.randn(1, 8, 4, 4)}
    boxes, scores, losses = rpn.propose(images, features)
    assert losses == {} and boxes[0].shape == (32, 4)
    # 16 anchors of each ratio, none suppressed; the ratio-0.5 ones (logit 2) first
    expected = torch.cat([torch.full((16,), 1 / (1 + math.exp(-2.0))), torch.full((16,), 1 / (1 + math.exp(1.0)))])
    torch.testing.assert_close(scores[0], expected)
    anchors = clip_boxes_to_image(rpn.anchor_generator(images, list(features.values()))[0], (64, 64))
    for kind in (0, 1):  # anchors are location-major, 2 per location: the first 16 proposals are the even ones
        assert sorted(map(tuple, boxes[0][16 * kind:16 * (kind + 1)].tolist())) == \
            sorted(map(tuple, anchors[kind::2].tolist()))
    forward_boxes, _ = rpn(images, features)  # torchvision's signature: the same boxes
    torch.testing.assert_close(forward_boxes[0], boxes[0])


def test_scored_rpn_training_losses_equal_torchvisions():
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]])}]
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    features = {"0": torch.randn(1, 8, 4, 4)}
    scored = two_ratio_rpn().train()
    plain = RegionProposalNetwork(scored.anchor_generator, scored.head, 0.7, 0.3, 16, 0.5,
                                  dict(training=100, testing=100), dict(training=100, testing=100), 0.7).train()
    torch.manual_seed(0)
    _, _, ours = scored.propose(images, features, targets)
    torch.manual_seed(0)
    _, theirs = plain(images, features, targets)
    assert set(ours) == {"loss_objectness", "loss_rpn_box_reg"}
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key])
    with pytest.raises(ValueError, match="targets"):
        scored.propose(images, features)


def test_person_scores_multiply_the_action_probabilities():
    head = tiny_head(scoring="person")
    a, b = [10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 100.0, 100.0]
    head.box_predictor = FixedPredictor([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])  # (no action, action 0, action 1)
    features = torch.randn(1, 208, 2, 8, 8)
    out = head(features, [torch.tensor([a, b])], [(128, 128)], proposal_scores=[torch.tensor([0.9, 0.5])])[0]
    # 0.9 x 0.7 = 0.63 (a, 0); 0.5 x 0.6 = 0.30 (b, 1); 0.5 x 0.3 = 0.15 (b, 0); 0.9 x 0.1 = 0.09 (a, 1)
    torch.testing.assert_close(out["scores"], torch.tensor([0.63, 0.30, 0.15, 0.09]))
    assert out["labels"].tolist() == [0, 1, 0, 1]
    torch.testing.assert_close(out["boxes"], torch.tensor([a, b, b, a]))
    out = head(features, [torch.tensor([a, b])], [(128, 128)])[0]  # no person scores: 1
    torch.testing.assert_close(out["scores"], torch.tensor([0.7, 0.6, 0.3, 0.1]))
    with pytest.raises(ValueError, match=r"proposal_scores\[0\] has shape \(3,\) for 2 proposals"):
        head(features, [torch.tensor([a, b])], [(128, 128)], proposal_scores=[torch.ones(3)])


def test_person_scoring_skips_proposals_that_cannot_score_above_the_threshold():
    """A person score at or under score_thresh (0.05) bounds every detection of that proposal to it: the head's
    stage 5 does not see it, and the detections are those of the other proposals."""
    head = tiny_head(scoring="person")
    a, b, c = [10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 100.0, 100.0], [5.0, 70.0, 45.0, 120.0]
    head.box_predictor = FixedPredictor([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])  # two rows: a and b only
    seen = []
    hook = head.box_head.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    features = torch.randn(2, 208, 2, 8, 8)
    try:
        out = head(features, [torch.tensor([a, c, b]), torch.tensor([c])], [(128, 128)] * 2,
                   proposal_scores=[torch.tensor([0.9, 0.05, 0.5]), torch.tensor([0.01])])
        assert seen == [2]
        torch.testing.assert_close(out[0]["scores"], torch.tensor([0.63, 0.30, 0.15, 0.09]))
        torch.testing.assert_close(out[0]["boxes"], torch.tensor([a, b, b, a]))
        assert out[1]["boxes"].shape == (0, 4) and out[1]["scores"].shape == (0,)
        head(features[:1], [torch.tensor([c])], [(128, 128)], proposal_scores=[torch.tensor([0.05])])
        assert seen == [2]  # nothing left to score: the head does not run
    finally:
        hook.remove()


def test_person_samples_are_the_people_and_their_matching_proposals():
    head = tiny_head(scoring="person", batch_size_per_image=8).train()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    near_0 = [0.0, 0.0, 10.0, 9.0]  # IoU 0.9 with person 0
    near_1 = [20.0, 20.0, 30.0, 31.0]  # IoU 10/11 with person 1
    loose, far = [0.0, 0.0, 5.0, 5.0], [50.0, 50.0, 60.0, 60.0]  # IoU 0.25 and 0: not sampled
    proposals = [torch.tensor([loose, near_0, far, near_1])]
    targets = [{"boxes": gt, "labels": torch.tensor([3, 0])}]  # already shifted: action 2 and "no action"
    rois, labels, regression = head.scorer.training_samples(head, proposals, targets)
    torch.testing.assert_close(rois[0][:2], gt)  # the people first
    extra = {tuple(r.tolist()): int(lab) for r, lab in zip(rois[0][2:], labels[0][2:])}
    assert extra == {tuple(near_0): 3, tuple(near_1): 0} and labels[0][:2].tolist() == [3, 0]
    torch.testing.assert_close(regression[0][:2], torch.zeros(2, 4))  # a person's own box needs no refinement
    head.batch_size_per_image = 3  # the people, then one of the two matching proposals
    rois, labels, _ = head.scorer.training_samples(head, proposals, targets)
    assert len(rois[0]) == 3 and tuple(rois[0][2].tolist()) in {tuple(near_0), tuple(near_1)}
    nobody = [{"boxes": gt[:0], "labels": torch.zeros(0).long()}]
    rois, labels, regression = head.scorer.training_samples(head, [torch.tensor([far])], nobody)
    assert rois[0].shape == (0, 4) and labels[0].shape == (0,) and regression[0].shape == (0, 4)


def test_person_samples_leave_out_ignored_people_and_their_proposals():
    head = tiny_head(scoring="person", batch_size_per_image=3).train()
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    near_0, near_1 = [0.0, 0.0, 10.0, 9.0], [20.0, 20.0, 30.0, 31.0]
    targets = [{"boxes": gt, "labels": torch.tensor([3, -1])}]  # shifted: action 2, and a person to ignore
    rois, labels, _ = head.scorer.training_samples(head, [torch.tensor([near_1, near_0])], targets)
    # person 1 and near_1 are left out, and person 1 takes no room: person 0 and near_0 (room for 3)
    assert rois[0].tolist() == [gt[0].tolist(), near_0] and labels[0].tolist() == [3, 3]


def forced(model: ActionDetector) -> ActionDetector:
    """Zero box deltas, logits (0, 5, 0) for every RoI."""
    predictor = model.roi_head.box_predictor
    for p in (predictor.bbox_pred.weight, predictor.bbox_pred.bias, predictor.cls_score.weight):
        nn.init.zeros_(p)
    predictor.cls_score.bias.data = torch.tensor([0.0, 5.0, 0.0])
    return model


@pytest.mark.parametrize("scoring", ["joint", "person"])
def test_person_training_samples_no_background(scoring):
    """Logits (0, 5, 0) for every RoI: cross-entropy 5 + s for "no action"/background or action 1, s = log(1 +
    2 e^-5) for action 0. Given proposals: a box far from everyone in image 0. "joint" trains on it as
    background (4 RoIs), "person" trains on the 3 people only."""
    model = forced(tiny("given", scoring=scoring)).train()
    batch = make_batch()
    batch["labels"] = [torch.tensor([-1]), torch.tensor([1, 0])]  # "no action", action 1, action 0
    batch["proposals"] = [torch.tensor([[40.0, 0.0, 60.0, 10.0]]), torch.zeros(0, 4)]
    s = math.log(1 + 2 * math.exp(-5))
    expected = (2 * (5 + s) + s) / 3 if scoring == "person" else (3 * (5 + s) + s) / 4
    assert model(batch)["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("scoring", ["joint", "person"])
def test_ignored_people_train_neither_as_actions_nor_as_background(scoring):
    """As above, but image 0's person is ignored (-2) and a proposal overlaps it (IoU 0.95): neither trains.
    "joint" keeps the far box as background: 3 RoIs (5 + s twice, s once); "person" the 2 people of image 1."""
    model = forced(tiny("given", scoring=scoring)).train()
    batch = make_batch()
    batch["labels"] = [torch.tensor([-2]), torch.tensor([1, 0])]
    batch["proposals"] = [torch.tensor([[10.0, 20.0, 30.0, 39.0], [40.0, 0.0, 60.0, 10.0]]), torch.zeros(0, 4)]
    s = math.log(1 + 2 * math.exp(-5))
    expected = ((5 + s) + s) / 2 if scoring == "person" else (2 * (5 + s) + s) / 3
    assert model(batch)["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_person_training_on_keyframes_without_people_gives_zero_losses():
    model = tiny("gt", scoring="person").train()
    batch = make_batch()
    batch["boxes"] = [torch.zeros(0, 4), torch.zeros(0, 4)]
    batch["labels"] = [torch.zeros(0, dtype=torch.int64)] * 2
    losses = model(batch)
    assert {k: v.item() for k, v in losses.items()} == {"loss_cls": 0.0, "loss_box_reg": 0.0}
    sum(losses.values()).backward()  # still a graph through the head


def test_rpn_person_scoring_end_to_end():
    """Every anchor with objectness logit 1 and the head's logits (0, 5, 0): each detection scores
    sigmoid(1) x e^5 / (e^5 + 2) and is action 0."""
    model = forced(tiny("rpn", scoring="person")).eval()
    constant_rpn_head(model.rpn.head, [1.0] * model.rpn.head.cls_logits.out_channels)
    with torch.no_grad():
        out = model(make_batch())
    expected = 1 / (1 + math.exp(-1.0)) * math.exp(5) / (math.exp(5) + 2)
    for o in out:
        assert len(o["scores"]) > 0 and o["labels"].eq(0).all()
        torch.testing.assert_close(o["scores"], torch.full_like(o["scores"], expected))
    losses = tiny("rpn", scoring="person").train()(make_batch())
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_person_scoring_needs_a_scored_rpn_and_a_known_name():
    model = tiny("rpn", scoring="person")
    plain = RegionProposalNetwork(model.rpn.anchor_generator, model.rpn.head, 0.7, 0.3, 256, 0.5,
                                  dict(training=10, testing=10), dict(training=10, testing=10), 0.7)
    with pytest.raises(ValueError, match="scoring='person' needs the RPN's objectness"):
        ActionDetector(backbone_3d=model.backbone_3d, roi_head=model.roi_head, backbone_2d=model.backbone_2d,
                       rpn=plain)
    with pytest.raises(ValueError, match="unknown scoring 'product'"):
        build_action_detector(num_classes=2, scoring="product")
