"""The detector as exportable modules: plain tensors in and out, batch 1, no Python branches on data.

``ActionDetector.forward`` takes a dict batch of lists and runs Python loops and ``int()`` conversions that an
exporter cannot follow. These modules run the same eval path on the detector's own submodules, written with
tensor operations only:

- ``Clip3DForExport``: the 3D network up to its feature layer (``backbone_3d(clip, image_sizes)[feature_3d]``).
- ``FrameForExport``: the keyframe's 2D backbone, the RPN (top-n per level, clip, small boxes, per-level NMS,
  post-NMS top-n), the tube RoIAlign (``torchvision.ops.roi_align``, which exports, in place of the CPU sparse
  product), the 3D stage-5 head, the scoring and post-processing (score threshold, small boxes, per-class NMS,
  top-k) and the boxes back to original-frame pixels, given the 3D features.
- ``DetectorForExport``: both, from the clip.

Inputs (all float32): ``keyframe`` (1, 3, H, W) and ``clip`` (1, C, T, H, W) raw RGB in [0, 255], resized and
zero-padded (bottom and right) as ``VideoDetector`` makes them; ``image_size`` (2,) the frame's (h, w) before
padding; ``scale`` (2,) (sy, sx) resized / original; ``orig_size`` (2,) the original frame's (h, w). The
normalisation of each network is inside. Outputs: ``boxes`` (K, 4) x1, y1, x2, y2 in original-frame pixels,
``scores`` (K,), ``labels`` (K,) int64 0-based actions, highest score first: ``ActionDetector.forward`` in eval mode
for one keyframe (never flipped).

Per-class (and per-level) NMS is torchvision's coordinate trick (boxes of different classes shifted apart by the
largest coordinate + 1, as ``batched_nms`` does for small inputs), written so that an empty input needs no branch.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import nms, roi_align

from s3d_det.modeling.detector import ActionDetector
from s3d_det.modeling.fusion import fold_batchnorm
from s3d_det.modeling.rpn import ScoredRPN

__all__ = ["Clip3DForExport", "FrameForExport", "DetectorForExport", "check_exportable"]


def check_exportable(model: nn.Module) -> None:
    """ValueError unless ``model`` is an ``ActionDetector`` that proposes its own boxes (``MODEL.PROPOSALS rpn``)."""
    if not isinstance(model, ActionDetector):
        raise ValueError(f"only a one-stream ActionDetector exports, got {type(model).__name__}")
    if model.proposals != "rpn" or model.rpn is None:
        raise ValueError(f"only a detector with its own RPN (MODEL.PROPOSALS rpn) exports; this one takes its "
                         f"boxes from {model.proposals!r}")


def _prepared(model: ActionDetector, fold_bn: bool) -> ActionDetector:
    check_exportable(model)
    model = fold_batchnorm(model) if fold_bn else model
    model.backbone_3d.set_gating_window(None)
    return model.eval()


def _padding_mask(x: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """(H, W) float mask, 1 within the first ``image_size`` (h, w) rows and columns of ``x`` (..., H, W)."""
    rows = torch.arange(x.shape[-2], device=x.device) < image_size[0]
    cols = torch.arange(x.shape[-1], device=x.device) < image_size[1]
    return (rows[:, None] & cols[None, :]).to(x.dtype)


class _Normalize(nn.Module):
    """``PixelNormalizer``'s forward with its channel order fixed now (a Python bool, not a buffer branch)."""

    def __init__(self, normalizer):
        super().__init__()
        self.bgr = bool(normalizer.bgr)
        self.register_buffer("mean", normalizer.mean.detach().clone().float(), persistent=False)
        self.register_buffer("std", normalizer.std.detach().clone().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.bgr:
            x = x.flip(1)
        view = (1, self.mean.numel()) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(view)) / self.std.view(view)


def _clip_boxes(boxes: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.clip_boxes_to_image`` with the (h, w) ``size`` a tensor: (..., 4) in [0, w] x [0, h]."""
    size = size.to(boxes.dtype)
    upper = torch.stack([size[1], size[0], size[1], size[0]])
    return torch.minimum(boxes.clamp(min=0), upper)


def _keep_large(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """``torchvision.ops.remove_small_boxes``: the indices of boxes at least ``min_size`` wide and tall."""
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((ws >= min_size) & (hs >= min_size))[0]


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` (its coordinate trick) without a branch on an empty input: the boxes are
    clipped (non-negative), so the largest coordinate is that of the boxes and 0."""
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    shifted = boxes + (groups.to(boxes) * (top + 1))[:, None]
    return nms(shifted, scores, iou)


class Clip3DForExport(nn.Module):
    """clip (1, C, T, H, W) raw, image_size (2,) (h, w) before padding -> the 3D features (1, C', T', h', w') of
    ``model.feature_3d`` (pixels past h, w zeroed after normalisation, as ``S3DG.forward(clip, image_sizes)``).

    ``fold_bn``: run a copy with BatchNorm folded into the convolutions (``fold_batchnorm``, as ``VideoDetector``),
    the model left as it is; False: run the model's own modules (it is put in eval mode, its gates over whole clips,
    ``set_gating_window(None)``). The same for every module here."""

    def __init__(self, model: ActionDetector, *, fold_bn: bool = True):
        super().__init__()
        model = _prepared(model, fold_bn)
        self.backbone = model.backbone_3d
        self.normalize = _Normalize(model.backbone_3d.input_norm)
        self.feature = model.feature_3d

    def forward(self, clip: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        backbone.check_input(clip)
        x = self.normalize(clip) * _padding_mask(clip, image_size)
        if backbone.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for name, module in backbone.layers(last=self.feature):
            x = module(x)
        return x


class FrameForExport(nn.Module):
    """keyframe (1, 3, H, W), features (1, C', T', h', w'), image_size, scale, orig_size (each (2,)) -> boxes (K, 4),
    scores (K,), labels (K,) int64: ``ActionDetector.forward(batch, features=features)`` in eval mode for one
    keyframe (see the module docstring)."""

    def __init__(self, model: ActionDetector, *, fold_bn: bool = True):
        super().__init__()
        model = _prepared(model, fold_bn)
        self.normalize_2d, self.backbone_2d, self.rpn = _Normalize(model.normalize_2d), model.backbone_2d, model.rpn
        self.head = model.roi_head
        self.person_scores = isinstance(model.rpn, ScoredRPN) and self.head.scorer.uses_person_scores
        head = self.head
        thresholds = head.class_score_thresh or (head.score_thresh,) * head.num_classes
        self.register_buffer("class_thresholds", torch.tensor(thresholds, dtype=torch.float32), persistent=False)
        # the head runs only on proposals whose person score can make a detection ("person" scoring)
        self.least_score = min(head.class_score_thresh) if head.class_score_thresh else head.score_thresh

    def propose(self, keyframe: torch.Tensor, image_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The RPN's proposals (R, 4) in resized-keyframe pixels and their objectness (R,), as ``ScoredRPN.propose``
        for one keyframe in eval mode."""
        x = self.normalize_2d(keyframe) * _padding_mask(keyframe, image_size)
        maps = list(self.backbone_2d(x).values())
        rpn = self.rpn
        objectness, deltas = rpn.head(maps)
        anchors = rpn.anchor_generator(ImageList(x, [tuple(x.shape[-2:])]), maps)
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode_single(deltas, anchors[0])  # (A, 4), one keyframe
        objectness = objectness.reshape(-1)
        picked, levels, offset = [], [], 0
        for level, (ob, n) in enumerate(zip(objectness.split(per_level), per_level)):
            k = det_utils._topk_min(ob[None], rpn.pre_nms_top_n(), 1)
            top = ob.topk(k).indices + offset
            picked.append(top)
            levels.append(torch.full_like(top, level))
            offset += n
        top, levels = torch.cat(picked), torch.cat(levels)
        boxes, scores = _clip_boxes(proposals[top], image_size), torch.sigmoid(objectness[top])
        keep = _keep_large(boxes, rpn.min_size)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = torch.where(scores >= rpn.score_thresh)[0]
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = _batched_nms(boxes, scores, levels, rpn.nms_thresh)[:rpn.post_nms_top_n()]
        return boxes[keep], scores[keep]

    def forward(self, keyframe: torch.Tensor, features: torch.Tensor, image_size: torch.Tensor, scale: torch.Tensor,
                orig_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        head = self.head
        proposals, person = self.propose(keyframe, image_size)
        if self.person_scores:
            keep = torch.where(person > self.least_score)[0]
            proposals, person = proposals[keep], person[keep]
        rois = head._enlarged(proposals) if head.context != 1.0 else proposals
        pooled = _tube_roi_align(features, rois, output_size=head.box_roi_pool.output_size,
                                 spatial_scale=head.box_roi_pool.spatial_scale,
                                 sampling_ratio=head.box_roi_pool.sampling_ratio, aligned=head.box_roi_pool.aligned)
        logits, deltas = head.box_predictor(head.box_head(pooled))
        if not head.class_specific_boxes:
            deltas = deltas.repeat(1, head.num_classes + 1)
        probs = head.probabilities(logits)
        if self.person_scores:
            probs = probs * person[:, None]
        classes = head.num_classes + 1
        boxes = head.box_coder.decode_single(deltas, proposals).reshape(-1, classes, 4)
        boxes = _clip_boxes(boxes, image_size)[:, 1:].reshape(-1, 4)
        labels = torch.arange(1, classes, device=probs.device)[None, :].expand(probs.shape[0], classes - 1)
        labels = labels.reshape(-1)
        scores = probs[:, 1:].reshape(-1)
        keep = torch.where(scores > self.class_thresholds.to(scores)[labels - 1])[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = _keep_large(boxes, 1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = _batched_nms(boxes, scores, labels, head.nms_thresh)[:head.detections_per_img]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        sy, sx = scale.to(boxes.dtype)[0], scale.to(boxes.dtype)[1]
        boxes = _clip_boxes(boxes / torch.stack([sx, sy, sx, sy]), orig_size)
        return boxes, scores, labels - 1


def _tube_roi_align(features: torch.Tensor, boxes: torch.Tensor, *, output_size: int, spatial_scale: float,
                    sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """``roi_align.torchvision_tube_roi_align`` for one clip: features (1, C, T, h, w), boxes (R, 4) ->
    (R, C, T, S, S), with index arithmetic an exporter follows (no ``repeat_interleave`` of a list)."""
    _, c, t, h, w = features.shape
    frames = features[0].transpose(0, 1)  # (T, C, h, w)
    r = boxes.shape[0]
    steps = torch.arange(t, device=boxes.device, dtype=boxes.dtype)[None, :, None].expand(r, t, 1)
    rois = torch.cat([steps, boxes[:, None, :].expand(r, t, 4)], dim=2).reshape(-1, 5)  # RoI-major, then time
    s = output_size
    out = roi_align(frames, rois, (s, s), spatial_scale, sampling_ratio, aligned)
    return out.reshape(r, t, c, s, s).transpose(1, 2)


class DetectorForExport(nn.Module):
    """keyframe, clip, image_size, scale, orig_size -> boxes, scores, labels: ``Clip3DForExport`` then
    ``FrameForExport`` (see the module docstring)."""

    def __init__(self, model: ActionDetector, *, fold_bn: bool = True):
        super().__init__()
        model = _prepared(model, fold_bn)
        self.clip_3d = Clip3DForExport(model, fold_bn=False)
        self.frame = FrameForExport(model, fold_bn=False)

    def forward(self, keyframe: torch.Tensor, clip: torch.Tensor, image_size: torch.Tensor, scale: torch.Tensor,
                orig_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.frame(keyframe, self.clip_3d(clip, image_size), image_size, scale, orig_size)
