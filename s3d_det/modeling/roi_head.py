"""The action head: tube RoIAlign on the 3D features, S3D-G stage 5 on each tube, action logits and box deltas.

Each keyframe box is RoI-aligned at every time step of the 3D feature map (a "tube" of constant box), the
tube goes through the 3D network's own stage 5 (``pool_5a``, ``mixed_5b``, ``mixed_5c``), is averaged over
time and space, and a linear layer scores C actions plus background. Matching, sampling, box coding, the
losses and the post-processing are torchvision's (``RoIHeads``, whose methods this head inherits).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from .cfg_args import node_kwargs
from .roi_align import tube_roi_align
from .scoring import SCORINGS, Scoring, scoring_rule

__all__ = ["SCORINGS", "TubeRoIAlign", "TubeBoxHead", "TubeBoxPredictor", "TubeRoIHead"]


class TubeRoIAlign(nn.Module):
    """RoIAlign of each keyframe box at every time step of a 3D feature map (``torchvision.ops.roi_align``).

    Args:
        output_size (int): S, the RoI's spatial size (S x S).
        spatial_scale (float): feature-map cells per keyframe pixel (1/16 for S3D-G ``mixed_4f``).
        sampling_ratio (int): samples per bin side; 0 adapts it to the bin size (torchvision's default).
        aligned (bool): torchvision's half-pixel correction (pixel i covers [i, i + 1)).

    Input: features (B, C, T', h, w); boxes, a list of B tensors (R_b, 4) x1, y1, x2, y2 in pixels of the
    (resized, padded) keyframe. Output: (R, C, T', S, S), R = sum of R_b, RoIs in the order of ``boxes``
    (image 0's first); step t of RoI r is the box RoI-aligned on time step t of its image. The output is in
    the features' memory format (``channels_last_3d`` or contiguous), which the 3D layers after it run fastest in.

    On the CPU (float32 or float64) it runs as a sparse matrix product (``s3d_det.modeling.roi_align``): the same
    values, and a backward pass several times faster than torchvision's CPU kernel; elsewhere torchvision's op.
    """

    def __init__(self, *, output_size: int = 7, spatial_scale: float = 1 / 16, sampling_ratio: int = 0,
                 aligned: bool = True):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, features: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        if features.dim() != 5:
            raise ValueError(f"expected features (B, C, T', h, w), got a tensor of shape {tuple(features.shape)}")
        b = features.shape[0]
        if len(boxes) != b:
            raise ValueError(f"got boxes for {len(boxes)} images and features for {b}")
        for i, bx in enumerate(boxes):
            if bx.dim() != 2 or bx.shape[1] != 4:
                raise ValueError(f"boxes of image {i} must be (R, 4), got shape {tuple(bx.shape)}")
        return tube_roi_align(features, boxes, output_size=self.output_size, spatial_scale=self.spatial_scale,
                              sampling_ratio=self.sampling_ratio, aligned=self.aligned)


class TubeBoxHead(nn.Module):
    """The 3D network's stage 5 on each RoI tube, then a global average pool over time and space.

    Args:
        stage5 (Mapping[str, nn.Module]): the layers in forward order, e.g.
            ``dict(s3dg.layers("pool_5a", "mixed_5c"))``; each needs ``output_size((t, h, w))`` (as the S3DG
            layers have). Pass the backbone's own modules so its (pretrained) weights are used.
        roi_size (int): S of the RoIs it receives.

    Input (R, C, T', S, S) -> (R, C5). A tube shorter than stage 5 accepts (T' = 1 under a 2x2x2 pool with
    symmetric padding) is first padded by repeating its last time step: for a max-pool that gives what
    TensorFlow "SAME" padding gives.
    """

    def __init__(self, stage5: Mapping[str, nn.Module], *, roi_size: int):
        super().__init__()
        for name, module in stage5.items():
            if not hasattr(module, "output_size"):
                raise ValueError(f"stage-5 module {name!r} ({type(module).__name__}) has no output_size method")
        self.stage5 = nn.Sequential(OrderedDict(stage5))
        self.min_time = self._min_time(roi_size)

    def _min_time(self, roi_size: int, longest: int = 64) -> int:
        for n in range(1, longest + 1):
            size = (n, roi_size, roi_size)
            for module in self.stage5:
                size = module.output_size(size)
            if min(size) > 0:
                return n
        raise ValueError(f"stage 5 ({', '.join(n for n, _ in self.stage5.named_children())}) gives an empty output "
                         f"for {roi_size}x{roi_size} RoIs of any length up to {longest}; use larger RoIs")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < self.min_time:
            x = F.pad(x, (0, 0, 0, 0, 0, self.min_time - x.shape[2]), mode="replicate")
        return self.stage5(x).mean(dim=(2, 3, 4))


class TubeBoxPredictor(nn.Module):
    """Dropout, then action logits (``cls_score``) and box deltas (``bbox_pred``).

    Args:
        in_channels (int): C5.
        num_classes (int): C actions; the logits have C + 1 columns, column 0 background.
        dropout (float): dropout probability on the pooled features.
        class_specific_boxes (bool): deltas per class, (R, 4 (C + 1)), instead of one set, (R, 4).

    Input (R, C5) -> logits (R, C + 1), deltas (R, 4) or (R, 4 (C + 1)) (torchvision's box coding).
    Initialised as detectron2's box predictor: normal weights (std 0.01 and 0.001), zero biases.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.2, class_specific_boxes: bool = False):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, 4 * (num_classes + 1) if class_specific_boxes else 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(x)
        return self.cls_score(x), self.bbox_pred(x)


class TubeRoIHead(RoIHeads):
    """Tube RoIAlign -> stage 5 -> global average pool -> action logits and box deltas, with torchvision's
    Faster R-CNN training (``Matcher``, ``BalancedPositiveNegativeSampler``, ``BoxCoder``, ``fastrcnn_loss``)
    and inference (softmax, decode, clip, score threshold, small boxes removed, per-class ``batched_nms``, top
    ``detections_per_img``, as torchvision's ``postprocess_detections``).

    Two ways to score a detection (``scoring``, see ``s3d_det.modeling.scoring``):

    - ``"joint"`` (Faster R-CNN): one softmax over C actions + background. Training samples the proposals
      against the person boxes: IoU >= ``fg_iou_thresh`` takes that person's action, < ``bg_iou_thresh`` is
      background; a detection's score is its action's probability.
    - ``"person"`` (two-stage, as AVA detectors: a person detector, then an action classifier on its boxes):
      the head learns actions on people only. Training keeps the GT boxes and the proposals with IoU >=
      ``fg_iou_thresh`` with one, labelled with that person's action; column 0 is "no action" (idle people);
      nothing else is sampled. A detection's score is the proposal's person score (the RPN's objectness; 1
      for given boxes without scores) times its action's probability.

    ``scoring`` names the rule; ``scorer`` is the rule's object (``scoring.Scoring``), which ``forward`` calls.

    Args:
        stage5 (Mapping[str, nn.Module]): the 3D network's stage 5 (see ``TubeBoxHead``).
        feature_channels (int): C5, channels of stage 5's output (``s3dg.feature_info["mixed_5c"].channels``).
        num_classes (int): C actions.
        spatial_scale, output_size, sampling_ratio, aligned: the RoIAlign (see ``TubeRoIAlign``).
        context (float): the RoIAlign reads each box enlarged about its centre by this factor in width and
            height (1: the box itself), so that the features also cover what moves beside the person (a
            swinging arm reaches beyond the keyframe's box). Only the features change: the training targets,
            the box deltas and the detections refer to the box itself.
        dropout (float), class_specific_boxes (bool): the predictor (see ``TubeBoxPredictor``).
        scoring (str or Scoring): one of ``SCORINGS`` (above), or a ``scoring.Scoring``.
        fg_iou_thresh (float): a proposal with IoU >= this with a GT box is that box's action.
        bg_iou_thresh (float): "joint": a proposal whose best IoU is < this is background (between: ignored).
        batch_size_per_image (int): RoIs sampled per keyframe in training ("person": the GT boxes first, then
            random matching proposals up to this many).
        positive_fraction (float): "joint": at most this fraction of them are actions.
        bbox_reg_weights (tuple of 4 floats): box-coder weights (wx, wy, ww, wh).
        box_reg_loss_weight (float): factor on the box-regression loss (detectron2's ``BBOX_REG_LOSS_WEIGHT``); 0
            trains no box refinement (the deltas stay at their near-zero initialisation: boxes are the proposals).
        score_thresh (float): inference keeps (box, action) pairs with a score above this.
        class_score_thresh (sequence of C floats, optional): per action, in place of ``score_thresh``.
        loss (str): ``"softmax"`` (one action per person: cross-entropy over background / "no action" + C
            actions) or ``"sigmoid"`` (several actions per person, the field's choice on AVA: C independent
            sigmoids, binary cross-entropy against each person's set of actions, the same box in several labels'
            tubes of the ground truth; column 0 of the logits is then unused). Class-agnostic boxes only.
        nms_thresh (float): IoU of the per-action NMS.
        detections_per_img (int): at most this many detections per keyframe.

    Forward: features (B, C, T', h, w); proposals, a list of B tensors (R_b, 4) x1, y1, x2, y2 in pixels of the
    resized, padded keyframe; image_sizes, a list of B (h, w), the keyframes' sizes before padding; targets
    (training only), a list of B dicts {"boxes": (N_b, 4) float, same frame, "labels": (N_b,) int64 0-based
    actions, or -1 for a person doing none of them: background, or "no action" under "person"; -2 for a person
    to ignore: no RoI matched to it (IoU at least ``fg_iou_thresh``) is trained on, nor is the box itself};
    proposal_scores (eval, "person" only; optional), a list of B (R_b,) person scores in [0, 1]. In training
    the GT boxes are appended to the proposals (as torchvision does) and it returns {"loss_cls",
    "loss_box_reg"}: cross-entropy over C + 1 (target action + 1, background 0) and smooth-L1 (beta 1/9) summed
    over the actions' RoIs, divided by the number of sampled RoIs and multiplied by ``box_reg_loss_weight``. In
    eval it returns per keyframe {"boxes": (K, 4) in the same frame, clipped to its image size, "scores": (K,),
    "labels": (K,) int64 0-based actions}, highest score first.
    """

    def __init__(
        self,
        *,
        stage5: Mapping[str, nn.Module],
        feature_channels: int,
        num_classes: int,
        spatial_scale: float = 1 / 16,
        output_size: int = 7,
        sampling_ratio: int = 0,
        aligned: bool = True,
        context: float = 1.0,
        dropout: float = 0.2,
        class_specific_boxes: bool = False,
        scoring: Union[str, Scoring] = "joint",
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        box_reg_loss_weight: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        class_score_thresh: Sequence[float] = (),
        loss: str = "softmax",
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        if loss == "sigmoid" and class_specific_boxes:
            raise ValueError("loss 'sigmoid' (several actions a box) needs class-agnostic boxes "
                             "(class_specific_boxes False)")
        class_score_thresh = tuple(float(v) for v in class_score_thresh)
        if class_score_thresh and len(class_score_thresh) != num_classes:
            raise ValueError(f"class_score_thresh needs one threshold per action ({num_classes}), got "
                             f"{len(class_score_thresh)}")
        scorer = scoring_rule(scoring)
        if bg_iou_thresh > fg_iou_thresh:
            raise ValueError(f"bg_iou_thresh ({bg_iou_thresh}) must not exceed fg_iou_thresh ({fg_iou_thresh})")
        if not context >= 1.0:
            raise ValueError(f"context must be at least 1 (the box itself), got {context}")
        super().__init__(
            TubeRoIAlign(output_size=output_size, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                         aligned=aligned),
            TubeBoxHead(stage5, roi_size=output_size),
            TubeBoxPredictor(feature_channels, num_classes, dropout=dropout, class_specific_boxes=class_specific_boxes),
            fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, tuple(bbox_reg_weights),
            score_thresh, nms_thresh, detections_per_img,
        )
        if box_reg_loss_weight < 0:
            raise ValueError(f"box_reg_loss_weight must be at least 0, got {box_reg_loss_weight}")
        self.num_classes = num_classes
        self.class_specific_boxes = class_specific_boxes
        self.scorer = scorer
        self.scoring = scorer.name
        self.context = float(context)
        self.fg_iou_thresh = float(fg_iou_thresh)
        self.batch_size_per_image = int(batch_size_per_image)
        self.box_reg_loss_weight = float(box_reg_loss_weight)
        self.loss = loss
        self.class_score_thresh = class_score_thresh

    # Config keys of ``MODEL.ROI_HEAD`` that are keyword arguments (``cfg_args.node_kwargs``: FOO is ``foo``);
    # NUM_CLASSES is read by ``from_config`` itself.
    CONFIG_KEYS = ("OUTPUT_SIZE", "SAMPLING_RATIO", "CONTEXT", "DROPOUT", "CLASS_SPECIFIC_BOXES", "SCORING",
                   "FG_IOU_THRESH", "BG_IOU_THRESH", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION",
                   "BOX_REG_LOSS_WEIGHT", "SCORE_THRESH", "NMS_THRESH", "DETECTIONS_PER_IMG", "CLASS_SCORE_THRESH",
                   "LOSS")

    @classmethod
    def from_config(cls, cfg, *, num_classes: int, stage5: Mapping[str, nn.Module], feature_channels: int,
                    spatial_scale: float) -> "TubeRoIHead":
        """The head ``cfg.MODEL.ROI_HEAD`` describes (keys ``CONFIG_KEYS``) on a backbone's stage 5 (``stage5``,
        ``feature_channels``, ``spatial_scale``: see the class; ``detector.stage5_of`` gives them).
        ``MODEL.ROI_HEAD.NUM_CLASSES``, when not 0, overrides ``num_classes``."""
        node = cfg.MODEL.ROI_HEAD
        return cls(stage5=stage5, feature_channels=feature_channels, spatial_scale=spatial_scale,
                   num_classes=node.NUM_CLASSES or num_classes, **node_kwargs(node, cls.CONFIG_KEYS))

    def forward(
        self,
        features: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[Tuple[int, int]],
        targets: Optional[Sequence[Mapping[str, torch.Tensor]]] = None,
        proposal_scores: Optional[Sequence[torch.Tensor]] = None,
    ):
        image_sizes = [tuple(int(v) for v in size) for size in image_sizes]
        if not len(proposals) == len(image_sizes) == features.shape[0]:
            raise ValueError(f"got features for {features.shape[0]} images, proposals for {len(proposals)} "
                             f"and image_sizes for {len(image_sizes)}")
        proposals = list(proposals)
        if self.training:
            shifted = self._shifted_targets(targets)
            if self.loss == "sigmoid":  # one RoI target per person; labels index their sets of actions
                shifted, action_sets = _people(shifted, self.num_classes)
            proposals, labels, regression_targets = self.scorer.training_samples(self, proposals, shifted)
        else:
            proposals, proposal_scores = self.scorer.kept_proposals(self, proposals, proposal_scores)
            if sum(len(p) for p in proposals) == 0:
                empty = features.new_zeros((0, 4))
                return [{"boxes": empty, "scores": empty[:, 0], "labels": empty[:, 0].long()} for _ in proposals]
        logits, deltas = self.predict(features, proposals)
        if self.training:
            if len(logits) == 0:  # "person" on keyframes without people: nothing to learn, but keep the graph
                zero = logits.sum() + deltas.sum()
                return {"loss_cls": zero, "loss_box_reg": zero}
            if self.loss == "sigmoid":
                loss_cls, loss_box_reg = _sigmoid_loss(logits, deltas, labels, regression_targets, action_sets)
            else:
                loss_cls, loss_box_reg = fastrcnn_loss(logits, deltas, labels, regression_targets)
            return {"loss_cls": loss_cls, "loss_box_reg": self.box_reg_loss_weight * loss_box_reg}
        probs = self.scorer.scores(self.probabilities(logits), proposal_scores)
        boxes, scores, labels = self._detections(probs, deltas, proposals, image_sizes)
        return [{"boxes": b, "scores": s, "labels": lab - 1} for b, s, lab in zip(boxes, scores, labels)]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (R, C + 1) -> class probabilities (R, C + 1): a softmax over the row, or (``loss="sigmoid"``) each
        action's sigmoid (column 0 then means nothing and is dropped with the background column)."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.loss == "sigmoid" else F.softmax(logits, dim=-1)

    def predict(self, features: torch.Tensor, proposals: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The head on ``proposals`` (per clip (R_b, 4), pixels of the resized keyframe) over ``features``
        (B, C, T', h, w): logits (R, C_actions + 1) and box deltas (R, 4 (C_actions + 1)), R = sum of R_b (class
        agnostic deltas repeated for every class, as torchvision's code reads them per class)."""
        rois = proposals if self.context == 1.0 else [self._enlarged(p) for p in proposals]
        logits, deltas = self.box_predictor(self.box_head(self.box_roi_pool(features, rois)))
        if not self.class_specific_boxes:
            deltas = deltas.repeat(1, self.num_classes + 1)
        return logits, deltas

    def _enlarged(self, boxes: torch.Tensor) -> torch.Tensor:
        """(R, 4) x1, y1, x2, y2 -> the same boxes scaled by ``context`` about their centres (not clipped:
        RoIAlign reads zeros outside the feature map)."""
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = (boxes[:, 2:] - boxes[:, :2]) * (self.context / 2)
        return torch.cat([centres - half, centres + half], dim=1)

    def _detections(self, probs: torch.Tensor, deltas: torch.Tensor, proposals: Sequence[torch.Tensor],
                    image_sizes: Sequence[Tuple[int, int]]):
        """Per keyframe (boxes (K, 4), scores (K,), labels (K,) 1-based) from scores (R, C + 1) and deltas
        (R, 4 (C + 1)): decode, clip, drop column 0, keep scores > ``score_thresh`` and boxes wider and taller
        than 0.01 px, per-class NMS, top ``detections_per_img`` (torchvision's ``postprocess_detections``, on
        scores instead of logits)."""
        counts = [len(p) for p in proposals]
        decoded = self.box_coder.decode(deltas, list(proposals))  # (R, C + 1, 4)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, size in zip(decoded.split(counts), probs.split(counts), image_sizes):
            boxes = clip_boxes_to_image(boxes, size)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, scores.shape[1], device=scores.device).repeat(len(scores))
            scores = scores[:, 1:].reshape(-1)
            if self.class_score_thresh:
                thresholds = torch.tensor(self.class_score_thresh, dtype=scores.dtype, device=scores.device)
                keep = torch.where(scores > thresholds[labels - 1])[0]
            else:
                keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels

    def _shifted_targets(self, targets) -> List[Dict[str, torch.Tensor]]:
        """Targets with labels + 1 (0 is background, also for the -1 of idle people; -1 for the -2 of ignored
        people, which torchvision's sampler skips as it skips RoIs between its IoU thresholds), after checking
        shapes and the label range."""
        if targets is None:
            raise ValueError("the head needs targets (GT boxes and labels) in training mode")
        shifted = []
        for i, t in enumerate(targets):
            boxes, labels = t["boxes"], t["labels"]
            if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
                raise ValueError(f"targets of image {i}: expected boxes (N, 4) and labels (N,), got "
                                 f"{tuple(boxes.shape)} and {tuple(labels.shape)}")
            if labels.dtype != torch.int64 or (len(labels) and not -2 <= int(labels.min()) <= int(labels.max())
                                              < self.num_classes):
                raise ValueError(f"targets of image {i}: labels must be int64 in -2..{self.num_classes - 1}, got "
                                 f"{labels.tolist()} ({labels.dtype})")
            shifted.append({"boxes": boxes, "labels": labels + 1})
        return shifted


LOSSES = ("softmax", "sigmoid")


def _people(shifted: List[Dict[str, torch.Tensor]], num_classes: int):
    """Multi-label targets: per image, the GT boxes merged into people (boxes equal once rounded to 1e-3 px are one
    person whose actions are all their labels), with labels 1..P (person index + 1; a person doing none of the actions
    too) or -1 (a person to ignore: every box of it ignored and none with an action); and per image (P, C) float sets of
    actions (a person's row: 1 for each of its actions). ``shifted`` labels: action + 1, 0 none, -1 ignore.
    """
    merged, sets = [], []
    for target in shifted:
        boxes, labels = target["boxes"], target["labels"]
        if len(boxes) == 0:
            merged.append(target)
            sets.append(boxes.new_zeros((0, num_classes)))
            continue
        rounded = torch.round(boxes.detach().double() * 1000)
        unique, person = torch.unique(rounded, dim=0, return_inverse=True)
        count = len(unique)
        actions = boxes.new_zeros((count, num_classes))
        acting = labels >= 1
        actions[person[acting], labels[acting] - 1] = 1.0
        known = torch.zeros(count, dtype=torch.bool, device=boxes.device)
        known[person[labels >= 0]] = True
        first = torch.full((count,), len(boxes), dtype=torch.int64, device=boxes.device)
        first = first.scatter_reduce(0, person, torch.arange(len(boxes), device=boxes.device), reduce="amin")
        new_labels = torch.where(known, torch.arange(1, count + 1, device=boxes.device), torch.full_like(first, -1))
        merged.append({"boxes": boxes[first], "labels": new_labels})
        sets.append(actions)
    return merged, sets


def _sigmoid_loss(logits: torch.Tensor, deltas: torch.Tensor, labels: Sequence[torch.Tensor],
                  regression_targets: Sequence[torch.Tensor], action_sets: Sequence[torch.Tensor]):
    """Binary cross-entropy of each action's sigmoid (logits columns 1..C) against the sampled RoIs' people's sets
    of actions (0 for background RoIs), averaged over RoIs and actions (SlowFast's AVA loss); and the box loss of
    ``fastrcnn_loss`` (smooth-L1, beta 1/9, over the RoIs of a person, divided by the sampled RoIs), on the
    class-agnostic deltas."""
    targets = []
    for image_labels, sets in zip(labels, action_sets):
        rows = sets.new_zeros((len(image_labels), sets.shape[1]))
        person = image_labels > 0
        rows[person] = sets[image_labels[person] - 1]
        targets.append(rows)
    targets = torch.cat(targets)
    loss_cls = F.binary_cross_entropy_with_logits(logits[:, 1:], targets.to(logits.dtype))
    labels = torch.cat(list(labels))
    regression_targets = torch.cat(list(regression_targets))
    positive = torch.where(labels > 0)[0]
    loss_box = F.smooth_l1_loss(deltas[positive, :4], regression_targets[positive], beta=1 / 9, reduction="sum")
    return loss_cls, loss_box / max(labels.numel(), 1)
