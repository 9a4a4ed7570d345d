"""Two-stream (RGB + optical flow) late fusion, for detection and for classification.

Detection, ACT's fusion (Kalogeiton et al., ICCV 2017; ``extract_tubelets`` in its ``ACT.py``): both streams
score the *same* proposals, their softmax class probabilities (background included) are averaged before any
threshold or NMS, and the boxes are the RGB stream's regression (ACT copies the RGB localisation into the flow
network and drops the flow's). ACT averages with weight 1/2 each; ``rgb_weight`` makes it MOC's weighted form
(MOC's ``hm_fusion_rgb``: 0.5, 0.4 on JHMDB). Our proposals are the RGB detector's person boxes on the RGB
keyframe, so "the same anchors" holds by construction.

Classification: I3D's fusion (``evaluate_sample.py`` of deepmind/kinetics-i3d) adds the two streams' logits with
equal weight and applies the softmax after; MMAction2's ``report_accuracy.py`` sums each stream's scores times a
coefficient, optionally after a softmax (with ``average_clips='prob'``, its flow configs' choice, the scores are
already view-averaged probabilities and need none). ``fuse_class_scores`` does both (``CLS_FUSION_METHODS``).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .detector import ActionDetector, boxes_to_original

__all__ = ["TwoStreamDetector", "CLS_FUSION_METHODS", "fuse_class_scores"]

CLS_FUSION_METHODS = ("logits", "softmax")


class TwoStreamDetector(nn.Module):
    """ACT's late fusion of an RGB and a flow ``ActionDetector`` (eval only; see the module docstring).

    Args:
        rgb (ActionDetector): proposes the people (its RPN on the RGB keyframe, or the GT boxes for "gt"), and
            its head gives the boxes and the RGB class probabilities.
        flow (ActionDetector): a detector trained on flow clips (``INPUT.MODALITY`` flow or brox), with as many
            classes; only its 3D network and head run.
        rgb_weight (float): the RGB share w of the fused probabilities, w p_rgb + (1 - w) p_flow; ACT: 0.5.

    Forward: the RGB detector's batch (``ActionDetector``), plus "flow_clip" (B, C, T, H, W) raw flow JPEG values
    aligned with "clip" frame for frame; or ``features`` = [RGB features, flow features], each (B, C', T', h, w).
    Returns per keyframe {"boxes" (K, 4) in pixels of the original frame, "scores" (K,), "labels" (K,)}, after the
    RGB head's post-processing (score threshold, per-class NMS, top k) on the fused scores.
    """

    def __init__(self, *, rgb: ActionDetector, flow: ActionDetector, rgb_weight: float = 0.5):
        super().__init__()
        if not 0.0 <= rgb_weight <= 1.0:
            raise ValueError(f"rgb_weight must lie in [0, 1], got {rgb_weight}")
        if rgb.roi_head.num_classes != flow.roi_head.num_classes:
            raise ValueError(f"the RGB detector has {rgb.roi_head.num_classes} classes, the flow detector "
                             f"{flow.roi_head.num_classes}")
        if rgb.roi_head.loss != flow.roi_head.loss:
            raise ValueError(f"the RGB detector's head has a {rgb.roi_head.loss} loss, the flow detector's a "
                             f"{flow.roi_head.loss} one (MODEL.ROI_HEAD.LOSS): their probabilities cannot be averaged")
        scorings = (rgb.roi_head.scorer.name, flow.roi_head.scorer.name)
        if scorings[0] != scorings[1]:  # column 0 is background in one, "a person doing none" in the other
            raise ValueError(f"the RGB detector scores with {scorings[0]!r}, the flow detector with {scorings[1]!r} "
                             "(MODEL.ROI_HEAD.SCORING): their probabilities do not mean the same, so they cannot be "
                             "averaged")
        self.rgb, self.flow, self.rgb_weight = rgb, flow, float(rgb_weight)
        self.proposals = rgb.proposals

    @property
    def streams(self) -> List[ActionDetector]:
        """[rgb, flow]: the order of ``features`` and of the clips."""
        return [self.rgb, self.flow]

    def train(self, mode: bool = True) -> "TwoStreamDetector":
        if mode:
            raise ValueError("TwoStreamDetector is for inference: train each stream on its own (tools/train_det.py)")
        return super().train(False)

    @torch.no_grad()
    def forward(self, batch: Mapping[str, Any], features: Optional[Sequence[torch.Tensor]] = None):
        rgb, flow = self.rgb, self.flow
        device = next(rgb.parameters()).device
        keys = ("clip", "flow_clip")
        if features is None:
            missing = [key for key in keys if key not in batch]
            if missing:
                raise ValueError(f"batch lacks key(s) {missing} (a two-stream detector takes an RGB and a flow clip)")
        needed = ["image_sizes", "scale", "flipped", "orig_size", *rgb.proposal_source.batch_keys(False)]
        if rgb.proposals == "gt":
            needed += ["boxes", "labels"]
        missing = [key for key in needed if key not in batch]
        if missing:
            raise ValueError(f"batch lacks key(s) {missing} (proposals={rgb.proposals!r}, eval mode)")
        image_sizes = [(int(h), int(w)) for h, w in batch["image_sizes"]]
        maps = []
        for i, (model, key) in enumerate(zip(self.streams, keys)):
            if features is None:
                maps.append(model.backbone_3d(batch[key].to(device), image_sizes)[model.feature_3d])
            else:
                maps.append(features[i].to(device))
        targets = rgb._targets(batch, device) if rgb.proposals == "gt" else None
        proposals, scores, _ = rgb.proposal_source.proposals(rgb, batch, targets, image_sizes, device)
        head = rgb.roi_head
        proposals, scores = head.scorer.kept_proposals(head, list(proposals), scores)
        if sum(len(p) for p in proposals) == 0:
            empty = maps[0].new_zeros((0, 4))
            return [{"boxes": empty, "scores": empty[:, 0], "labels": empty[:, 0].long()} for _ in proposals]
        logits_rgb, deltas = head.predict(maps[0], proposals)
        logits_flow, _ = flow.roi_head.predict(maps[1], proposals)
        w = self.rgb_weight  # softmax probabilities (ACT's), or each action's sigmoid for multi-label heads
        probs = w * head.probabilities(logits_rgb) + (1 - w) * flow.roi_head.probabilities(logits_flow)
        boxes, det_scores, labels = head._detections(head.scorer.scores(probs, scores), deltas.float(), proposals,
                                                     image_sizes)
        results = []
        for i, (b, s, lab) in enumerate(zip(boxes, det_scores, labels)):
            b = boxes_to_original(b, image_size=image_sizes[i], scale=batch["scale"][i],
                                  flipped=bool(batch["flipped"][i]), orig_size=batch["orig_size"][i])
            results.append({"boxes": b, "scores": s, "labels": lab - 1})
        return results


def fuse_class_scores(rgb: np.ndarray, flow: np.ndarray, *, method: str = "logits",
                      weights: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """Two streams' class scores of the same items -> fused scores (N, K), float64.

    Args:
        rgb, flow: (N, K) each. ``method="logits"``: the logits of each view; returns their weighted sum, still
            logits (I3D takes the softmax of the sum; over several views, ``aggregate_views`` then averages the
            fused views' softmax as for one stream). ``method="softmax"``: each stream's probabilities (e.g.
            averaged over a video's views); returns their weighted sum divided by the weights' sum, probabilities
            (MMAction2's ``report_accuracy.py`` on results of ``average_clips='prob'``, up to that division, which
            changes no ranking).
        weights: (w_rgb, w_flow), both >= 0, not both 0; I3D's and MMAction2's default: (1, 1).
    """
    rgb, flow = np.asarray(rgb, np.float64), np.asarray(flow, np.float64)
    if rgb.shape != flow.shape or rgb.ndim != 2:
        raise ValueError(f"the two streams' scores must have one shape (N, K), got {rgb.shape} and {flow.shape}")
    if method not in CLS_FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; expected one of {', '.join(CLS_FUSION_METHODS)}")
    w_rgb, w_flow = (float(v) for v in weights)
    if min(w_rgb, w_flow) < 0 or w_rgb + w_flow <= 0:
        raise ValueError(f"fusion weights must be >= 0 and not both 0, got {list(weights)}")
    fused = w_rgb * rgb + w_flow * flow
    return fused if method == "logits" else fused / (w_rgb + w_flow)
