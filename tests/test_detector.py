"""Tests of the action detector (s3d_det.modeling.detector, roi_head): tube RoIAlign against hand-computed
values, stage-5 sharing, short tubes, losses and backward, the mapping of boxes back to original pixels,
per-class NMS and the cap, the GT/given proposal paths, interchange rows, and a tiny overfit.
Tiny models (ResNet-18, S3D-G width 0.25), small clips, seeded, CPU-only."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from s3d_det.config import get_cfg
from s3d_det.modeling.detector import ActionDetector, build_action_detector, detections_to_rows
from s3d_det.modeling.proposals import GivenProposals, ProposalSource
from s3d_det.modeling.roi_head import TubeRoIAlign, TubeRoIHead
from s3d_det.modeling.s3dg import S3DG
from s3d_det.modeling.scoring import JointScoring, PersonScoring

H = W = 64


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(proposals: str = "rpn", fpn: bool = False, **kwargs) -> ActionDetector:
    torch.manual_seed(0)
    return build_action_detector(num_classes=2, proposals=proposals, backbone_2d="resnet18", fpn=fpn,
                                 width_3d=0.25, **kwargs)


def make_batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(2, 3, 8, H, W, generator=g),
        "keyframe": torch.randn(2, 3, H, W, generator=g),
        "image_sizes": [(H, W), (H, W)],
        "boxes": [torch.tensor([[10.0, 20.0, 30.0, 40.0]]),
                  torch.tensor([[8.0, 8.0, 16.0, 24.0], [30.0, 5.0, 60.0, 60.0]])],
        "labels": [torch.tensor([0]), torch.tensor([1, 0])],
        "scale": [(0.5, 0.5), (0.5, 0.25)],
        "flipped": [True, False],
        "orig_size": [(128, 128), (128, 256)],
        "video": ["run/v1", "jump/v2"],
        "frame": [5, 9],
    }


def tiny_head(pool_padding: str = "symmetric", **kwargs) -> TubeRoIHead:
    torch.manual_seed(0)
    s3dg = S3DG("s3dg", width=0.25, pool_padding=pool_padding, out_features=("mixed_4f",))
    return TubeRoIHead(stage5=OrderedDict(s3dg.layers("pool_5a", "mixed_5c")),
                       feature_channels=s3dg.feature_info["mixed_5c"].channels, num_classes=2, **kwargs).eval()


# -- 2D backbone ------------------------------------------------------------------------------------------------
def test_resnet_c4_in_channels_last_gives_the_contiguous_result():
    from s3d_det.modeling.detector import build_backbone_2d

    torch.manual_seed(0)
    fast = build_backbone_2d("resnet18", trainable_layers=5, frozen_bn=False).eval()
    assert fast.channels_last and fast.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = build_backbone_2d("resnet18", trainable_layers=5, frozen_bn=False).eval()
    plain.load_state_dict(fast.state_dict())
    plain.channels_last = False
    plain.to(memory_format=torch.contiguous_format)
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    out, ref = fast(x)["0"], plain(x)["0"]
    assert out.is_contiguous(memory_format=torch.channels_last) and ref.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


# -- tube RoIAlign --------------------------------------------------------------------------------------------
def test_tube_roi_align_reads_each_time_step_of_its_image():
    b, c, t = 2, 3, 4
    value = (100 * torch.arange(b)[:, None, None] + 10 * torch.arange(c)[None, :, None] + torch.arange(t)).float()
    features = value[..., None, None].expand(b, c, t, 8, 8).contiguous()
    boxes = [torch.tensor([[16.0, 16.0, 64.0, 64.0]]),
             torch.tensor([[0.0, 0.0, 32.0, 32.0], [40.0, 40.0, 120.0, 120.0]])]
    out = TubeRoIAlign(output_size=7, spatial_scale=1 / 16)(features, boxes)
    assert out.shape == (3, c, t, 7, 7)
    for r, image in enumerate([0, 1, 1]):
        expected = 100 * image + 10 * torch.arange(c)[:, None] + torch.arange(t)  # (C, T')
        torch.testing.assert_close(out[r], expected.float()[..., None, None].expand(c, t, 7, 7))


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_tube_roi_align_on_a_ramp_gives_the_bin_centres(sampling_ratio):
    # feature cell x holds value x; box x 32..96 px at 1/16 with aligned=True covers cells 1.5..5.5, so bin j
    # (width 4/7) averages to its centre 1.5 + (j + 0.5) * 4/7 (bilinear is exact on a linear ramp), mean 3.5
    features = torch.arange(16.0).expand(1, 2, 3, 16, 16).contiguous()
    out = TubeRoIAlign(output_size=7, spatial_scale=1 / 16, sampling_ratio=sampling_ratio)(
        features, [torch.tensor([[32.0, 32.0, 96.0, 96.0]])])
    centres = torch.tensor([1.5 + (j + 0.5) * 4 / 7 for j in range(7)])
    torch.testing.assert_close(out[0], centres.expand(2, 3, 7, 7))
    assert out.mean().item() == pytest.approx(3.5)


class RecordingRoIAlign(TubeRoIAlign):
    """A ``TubeRoIAlign`` that keeps the boxes it was given."""

    def forward(self, features, boxes):
        self.seen = [b.clone() for b in boxes]
        return super().forward(features, boxes)


def test_context_enlarges_the_boxes_the_features_are_read_from_not_the_detections():
    head = tiny_head(context=1.5, spatial_scale=1 / 16)
    head.box_roi_pool = RecordingRoIAlign(output_size=7, spatial_scale=1 / 16)
    head.box_predictor = FixedPredictor([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])  # zero deltas
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [40.0, 40.0, 60.0, 50.0]])
    out = head(torch.randn(1, 208, 2, 8, 8), [boxes], [(128, 128)])[0]
    # centres (20, 40) and (50, 45), sizes 20 x 40 and 20 x 10, each side 1.5x as long about the centre
    torch.testing.assert_close(head.box_roi_pool.seen[0], torch.tensor([[5.0, 10.0, 35.0, 70.0],
                                                                        [35.0, 37.5, 65.0, 52.5]]))
    # the detections are the boxes themselves: (box 0, action 0) 0.7, (box 1, action 1) 0.6, ...
    torch.testing.assert_close(out["boxes"][:2], boxes)
    torch.testing.assert_close(out["scores"][:2], torch.tensor([0.7, 0.6]))
    plain = tiny_head(spatial_scale=1 / 16)
    plain.box_roi_pool = RecordingRoIAlign(output_size=7, spatial_scale=1 / 16)
    plain(torch.randn(1, 208, 2, 8, 8), [boxes], [(128, 128)])
    torch.testing.assert_close(plain.box_roi_pool.seen[0], boxes)
    with pytest.raises(ValueError, match="context must be at least 1"):
        tiny_head(context=0.5)


# -- stage 5 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool_padding", ["symmetric", "same", "fixed_same"])
def test_stage5_accepts_tubes_of_any_length(pool_padding):
    head = tiny_head(pool_padding)
    channels = 208  # mixed_4f at width 0.25: (256 + 320 + 128 + 128) / 4
    for t in (1, 2, 4):
        rois = head.box_roi_pool(torch.randn(1, channels, t, 4, 4), [torch.tensor([[0.0, 0.0, 64.0, 64.0]])])
        assert rois.shape == (1, channels, t, 7, 7)
        pooled = head.box_head(rois)
        assert pooled.shape == (1, 256) and torch.isfinite(pooled).all()  # mixed_5c at width 0.25: 1024 / 4
    if pool_padding == "symmetric":  # T'=1 is padded by repeating the step: the same as a tube of it twice
        x = torch.randn(2, channels, 1, 7, 7)
        torch.testing.assert_close(head.box_head(x), head.box_head(x.repeat(1, 1, 2, 1, 1)))


def test_stage5_is_the_backbones_and_registered_once():
    model = tiny()
    s3dg, stage5 = model.backbone_3d, model.roi_head.box_head.stage5
    for name in ("pool_5a", "mixed_5b", "mixed_5c"):
        assert getattr(stage5, name) is getattr(s3dg, name)
    ids = [id(p) for p in model.parameters()]
    stage5_ids = [id(p) for name in ("mixed_5b", "mixed_5c") for p in getattr(s3dg, name).parameters()]
    assert stage5_ids and all(ids.count(i) == 1 for i in stage5_ids)
    # the backbone stops at mixed_4f: stage 5 runs once per forward, on the RoIs, never on the clip
    calls = []
    s3dg.mixed_5b.register_forward_hook(lambda m, inputs, out: calls.append(inputs[0].shape))
    model.eval()
    with torch.no_grad():
        assert list(s3dg(make_batch()["clip"])) == ["mixed_4f"]
        assert not calls
        model(make_batch())
    # on 7x7 RoIs of mixed_4f (T' = 8 / 4 = 2) after pool_5a: T' 2 -> 1, 7x7 -> 3x3
    assert len(calls) == 1 and calls[0][2:] == (1, 3, 3)


def test_frozen_stage5_stays_frozen_in_training_mode():
    model = tiny("gt", frozen_stages_3d=5).train()
    assert not model.backbone_3d.mixed_5c.training and not model.roi_head.box_head.stage5.mixed_5c.training
    assert not any(p.requires_grad for p in model.roi_head.box_head.parameters())
    assert model.roi_head.box_predictor.training


def test_backbone_running_stage5_is_refused():
    s3dg = S3DG("s3dg", width=0.25, out_features=("mixed_5c",))
    head = TubeRoIHead(stage5=OrderedDict(s3dg.layers("pool_5a", "mixed_5c")), feature_channels=256, num_classes=2)
    with pytest.raises(ValueError, match="stage-5"):
        ActionDetector(backbone_3d=s3dg, roi_head=head, proposals="gt")


# -- training ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fpn", [False, True])
def test_training_returns_four_finite_losses_and_backpropagates(fpn):
    model = tiny(fpn=fpn).train()
    losses = model(make_batch())
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    for module in (model.rpn.head, model.backbone_2d.body.layer3, model.backbone_3d.conv_1a,
                   model.backbone_3d.mixed_5c, model.roi_head.box_predictor.cls_score):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert model.backbone_2d.body.conv1.weight.grad is None  # frozen, as torchvision with trainable_layers=3


def changed_by_one_step(model) -> set:
    """The state_dict keys that one SGD step on ``make_batch()`` changes (weights and BN statistics)."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(model(make_batch()).values()).backward()
    optimizer.step()
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


def test_a_frozen_2d_backbone_keeps_its_weights_and_statistics_in_training():
    options = dict(trainable_layers_2d=5, frozen_bn_2d=False)
    trained = changed_by_one_step(tiny(**options).train())
    assert {"backbone_2d.body.conv1.weight", "backbone_2d.body.bn1.running_mean"} <= trained
    model = tiny(**options).train()
    model.freeze_backbone_2d()
    model.train()  # as the trainer does after an evaluation: the frozen BatchNorms stay in eval mode
    assert not any(m.training for m in model.backbone_2d.modules()) and model.rpn.training
    changed = changed_by_one_step(model)
    assert not {k for k in changed if k.startswith("backbone_2d.")}
    assert {"rpn.head.conv.0.0.weight", "backbone_3d.conv_1a.conv.weight"} <= changed, sorted(changed)[:8]
    assert all(p.grad is None for p in model.backbone_2d.parameters())
    with pytest.raises(ValueError, match="proposals='gt': there is no 2D backbone to freeze"):
        tiny("gt").freeze_backbone_2d()


def test_box_reg_loss_weight_scales_the_box_loss_only():
    def losses(weight):
        model = tiny(box_reg_loss_weight=weight).train()
        torch.manual_seed(1)  # the same proposals sampled and the same dropout
        return model(make_batch())
    full, tenth, none = losses(1.0), losses(0.1), losses(0.0)
    assert full["loss_box_reg"] > 0 and tenth["loss_box_reg"].item() == pytest.approx(0.1 * full["loss_box_reg"].item())
    assert none["loss_box_reg"].item() == 0
    for key in ("loss_cls", "loss_objectness"):
        assert tenth[key].item() == pytest.approx(full[key].item()) == none[key].item()
    with pytest.raises(ValueError, match="box_reg_loss_weight must be at least 0"):
        tiny(box_reg_loss_weight=-1.0)


def test_gt_proposals_train_without_the_2d_part():
    model = tiny("gt").train()
    assert model.backbone_2d is None and model.rpn is None
    batch = make_batch()
    del batch["keyframe"]
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())


def test_missing_batch_key_is_named():
    model = tiny("gt").eval()
    batch = make_batch()
    del batch["scale"]
    with pytest.raises(ValueError, match="scale"):
        model(batch)
    with pytest.raises(ValueError, match="proposals"):
        build_action_detector(num_classes=2, proposals="oracle")


# -- inference ----------------------------------------------------------------------------------------------
def forced_gt_model(proposals: str = "gt") -> ActionDetector:
    """GT boxes as proposals, zero box deltas, logits (0, 5, 0) for every RoI: action 0 with p = e^5/(e^5+2)."""
    model = tiny(proposals).eval()
    predictor = model.roi_head.box_predictor
    for p in (predictor.bbox_pred.weight, predictor.bbox_pred.bias, predictor.cls_score.weight):
        nn.init.zeros_(p)
    predictor.cls_score.bias.data = torch.tensor([0.0, 5.0, 0.0])
    return model


def test_idle_person_label_is_background_for_the_head():
    """Label -1 (a person doing none of the actions): its RoI is a background sample. Logits (0, 5, 0) for every
    RoI: cross-entropy 5 + log(1 + 2 e^-5) for background or action 1, log(1 + 2 e^-5) for action 0."""
    model = forced_gt_model().train()
    batch = make_batch()
    batch["labels"] = [torch.tensor([-1]), torch.tensor([1, 0])]  # targets: background, action 1, action 0
    small = math.log(1 + 2 * math.exp(-5))
    loss = model(batch)["loss_cls"]
    assert loss.item() == pytest.approx((2 * (5 + small) + small) / 3, rel=1e-5)
    batch["labels"] = [torch.tensor([-3]), torch.tensor([1, 0])]  # -2 (ignore) is the lowest label
    with pytest.raises(ValueError, match=r"labels must be int64 in -2..1"):
        model(batch)


def test_eval_boxes_are_in_original_pixels():
    with torch.no_grad():
        out = forced_gt_model()(make_batch())
    p = math.exp(5) / (math.exp(5) + 2)  # action 1 has 1/(e^5+2) = 0.0066 < score_thresh 0.05: dropped
    # image 0: flipped in a 64-wide frame, scale 0.5: x1 = (64 - 30) / 0.5 = 68, x2 = (64 - 10) / 0.5 = 108
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[68.0, 40.0, 108.0, 80.0]]))
    # image 1: not flipped, (sy, sx) = (0.5, 0.25): x / 0.25, y / 0.5
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[32.0, 16.0, 64.0, 48.0], [120.0, 10.0, 240.0, 120.0]]))
    for o, n in zip(out, (1, 2)):
        torch.testing.assert_close(o["scores"], torch.full((n,), p))
        assert o["labels"].tolist() == [0] * n


def test_given_proposals_equal_gt_proposals():
    gt_model = forced_gt_model()
    given = ActionDetector(backbone_3d=gt_model.backbone_3d, roi_head=gt_model.roi_head, proposals="given").eval()
    batch = make_batch()
    batch["proposals"] = batch["boxes"]
    with torch.no_grad():
        a, b = gt_model(batch), given(batch)
    for x, y in zip(a, b):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(x[key], y[key])


class FixedPredictor(nn.Module):
    def __init__(self, probs):
        super().__init__()
        self.logits = torch.log(torch.tensor(probs))

    def forward(self, x):
        return self.logits, torch.zeros(len(self.logits), 4)


def test_per_class_nms_small_boxes_threshold_and_cap():
    head = tiny_head(detections_per_img=3)
    a, a2, b = [10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0], [60.0, 60.0, 100.0, 100.0]  # IoU(a, a2) = 38/42
    tiny_box, faint = [20.0, 20.0, 20.0, 40.0], [0.0, 100.0, 30.0, 120.0]
    # probabilities (background, action 0, action 1) per proposal
    head.box_predictor = FixedPredictor([[0.1, 0.6, 0.3], [0.1, 0.5, 0.4], [0.55, 0.35, 0.1],
                                         [0.2, 0.7, 0.1], [0.96, 0.02, 0.02]])
    proposals = [torch.tensor([a, a2, b, tiny_box, faint])]
    features = torch.randn(1, 208, 2, 8, 8)
    out = head(features, proposals, [(128, 128)])[0]
    # action 0: a (0.6) suppresses a2 (0.5), b (0.35) kept; action 1: a2 (0.4) suppresses a (0.3), b (0.1) kept;
    # the zero-width box and the scores below 0.05 are dropped; the cap of 3 drops (b, action 1, 0.1)
    torch.testing.assert_close(out["boxes"], torch.tensor([a, a2, b]))
    torch.testing.assert_close(out["scores"], torch.tensor([0.6, 0.4, 0.35]))
    assert out["labels"].tolist() == [0, 1, 0]
    head.detections_per_img = 100
    out = head(features, proposals, [(128, 128)])[0]
    assert out["labels"].tolist() == [0, 1, 0, 1] and out["scores"][-1].item() == pytest.approx(0.1)


def test_no_proposals_give_empty_detections():
    head = tiny_head()
    out = head(torch.randn(2, 208, 2, 4, 4), [torch.zeros(0, 4), torch.zeros(0, 4)], [(64, 64)] * 2)
    assert [o["boxes"].shape for o in out] == [(0, 4), (0, 4)] and out[0]["labels"].dtype == torch.int64


def test_detections_to_rows():
    outputs = [
        {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), "scores": torch.tensor([0.9, 0.5]),
         "labels": torch.tensor([1, 0])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    batch = {"video": ["run/v1", "jump/v2"], "frame": [5, 9]}
    rows = detections_to_rows(outputs, batch, {"jump/v2": 0, "run/v1": 3})
    expected = np.array([[3, 5, 1, 0.9, 1, 2, 3, 4], [3, 5, 0, 0.5, 5, 6, 7, 8]])
    assert rows.dtype == np.float64
    np.testing.assert_allclose(rows, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="jump/v2"):
        detections_to_rows(outputs, batch, {"run/v1": 0})


# -- learning --------------------------------------------------------------------------------------------------
def test_overfits_one_batch_with_gt_boxes():
    model = tiny("gt").train()
    batch = make_batch(seed=1)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    history = []
    for _ in range(20):
        losses = model(batch)
        history.append(losses["loss_cls"].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert history[0] > 0.9  # about log(3) at the start: three near-uniform classes
    assert min(history[-5:]) < 0.25 * history[0]


# -- building from a config ---------------------------------------------------------------------------------------
def tiny_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE_2D.NAME", "resnet18", "MODEL.BACKBONE_3D.WIDTH", 0.25, *opts])
    return cfg


def test_from_config_builds_what_the_keywords_build():
    cfg = tiny_cfg("MODEL.ROI_HEAD.SCORING", "person", "MODEL.ROI_HEAD.CONTEXT", 1.5, "MODEL.RPN.ANCHOR_SIZES",
                   [16, 32], "MODEL.BACKBONE_3D.FEATURE", "mixed_3c", "MODEL.BACKBONE_3D.BN_MOMENTUM", 0.1)
    torch.manual_seed(0)
    from_cfg = ActionDetector.from_config(cfg, num_classes=2)
    keywords = tiny(scoring="person", roi_context=1.5, anchor_sizes=(16, 32), feature_3d="mixed_3c",
                    backbone_3d_kwargs={"bn_momentum": 0.1})
    a, b = from_cfg.state_dict(), keywords.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_from_config_passes_each_node_to_its_module():
    cfg = tiny_cfg("MODEL.ROI_HEAD.SCORE_THRESH", 0.25, "MODEL.ROI_HEAD.DETECTIONS_PER_IMG", 7,
                   "MODEL.ROI_HEAD.NUM_CLASSES", 4, "MODEL.RPN.POST_NMS_TOP_N_TEST", 11, "MODEL.RPN.NMS_THRESH", 0.6,
                   "MODEL.BACKBONE_3D.FROZEN_STAGES", 2, "MODEL.BACKBONE_3D.PRESET", "tfslim")
    model = ActionDetector.from_config(cfg, num_classes=2)
    head, rpn = model.roi_head, model.rpn
    assert (head.score_thresh, head.detections_per_img, head.num_classes) == (0.25, 7, 4)  # NUM_CLASSES wins
    assert (rpn._post_nms_top_n["testing"], rpn.nms_thresh) == (11, 0.6)
    assert model.backbone_3d.frozen_stages == 2 and model.backbone_3d.out_features == ("mixed_4f",)
    # the tfslim preset's layout: temporal convolutions with a bias and no BN, gates without a bias
    assert model.backbone_3d.mixed_3b.branch1.bn_t is None and model.backbone_3d.mixed_3b.gates[0].fc.bias is None
    gt_only = ActionDetector.from_config(tiny_cfg("MODEL.PROPOSALS", "gt"), num_classes=2)
    assert gt_only.backbone_2d is None and gt_only.rpn is None and gt_only.proposals == "gt"
    with pytest.raises(ValueError, match="unknown proposals 'oracle'"):
        ActionDetector.from_config(tiny_cfg("MODEL.PROPOSALS", "oracle"), num_classes=2)
    with pytest.raises(ValueError, match="feature_3d must be a layer before mixed_5c"):
        ActionDetector.from_config(tiny_cfg("MODEL.BACKBONE_3D.FEATURE", "mixed_5c"), num_classes=2)


def test_option_strings_become_objects_once():
    model = tiny("given", scoring="person")
    assert model.proposals == "given" and isinstance(model.proposal_source, GivenProposals)
    assert model.roi_head.scoring == "person" and isinstance(model.roi_head.scorer, PersonScoring)
    head = tiny_head(scoring=JointScoring())
    assert head.scoring == "joint" and isinstance(head.scorer, JointScoring)


class CornerBoxes(ProposalSource):
    """A source written outside the package: one 16 x 16 box in the top-left corner of every keyframe."""

    name = "corner"

    def proposals(self, detector, batch, targets, image_sizes, device):
        return [torch.tensor([[0.0, 0.0, 16.0, 16.0]], device=device) for _ in image_sizes], None, {}


def test_a_new_proposal_source_plugs_in():
    gt_model = forced_gt_model()
    corner = ActionDetector(backbone_3d=gt_model.backbone_3d, roi_head=gt_model.roi_head,
                            proposals=CornerBoxes()).eval()
    batch = make_batch()
    with torch.no_grad():
        out = corner({k: v for k, v in batch.items() if k not in ("boxes", "labels")})
    assert corner.proposals == "corner" and corner.backbone_2d is None
    # image 0: flipped in a 64-wide frame, scale 0.5: (64 - 16) / 0.5 = 96 .. 128, y 0 .. 32
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[96.0, 0.0, 128.0, 32.0]]))
    assert out[0]["labels"].tolist() == [0]


def test_modeling_imports_have_no_cycle():
    import ast
    import os

    import s3d_det.modeling as modeling

    root = os.path.dirname(modeling.__file__)
    graph = {}
    for name in os.listdir(root):
        if name.endswith(".py") and name != "__init__.py":
            tree = ast.parse(open(os.path.join(root, name)).read())
            graph[name[:-3]] = {node.module for node in ast.walk(tree)
                                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import cycle: {' -> '.join(visiting + [module])}"
        if module in done:
            return
        visiting.append(module)
        for dep in graph.get(module, ()):
            visit(dep)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)
