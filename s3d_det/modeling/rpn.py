"""A torchvision ``RegionProposalNetwork`` that also returns its proposals' objectness.

torchvision's ``RegionProposalNetwork.forward`` computes each kept proposal's objectness probability (in
``filter_proposals``) and drops it. Two-stage action detectors (AVA-style: a person detector, then an action
classifier on its boxes) score a detection as person probability x action probability, so they need it.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers

__all__ = ["ScoredRPN"]


class ScoredRPN(RegionProposalNetwork):
    """``RegionProposalNetwork`` (same constructor, parameters and state dict) with ``propose``, which returns
    the objectness of the proposals as well. ``forward`` keeps torchvision's signature and output."""

    def propose(self, images: ImageList, features: Dict[str, torch.Tensor],
                targets: Optional[List[Dict[str, torch.Tensor]]] = None
                ) -> Tuple[List[torch.Tensor], List[torch.Tensor], Dict[str, torch.Tensor]]:
        """Proposals, their objectness and (in training) the RPN losses.

        Args:
            images (ImageList): the keyframes (B, 3, H, W) and their sizes before padding.
            features (dict of str to Tensor): the backbone's maps (B, C, h, w), one per level.
            targets (list of B dicts, training only): {"boxes": (N_b, 4)} person boxes, x1, y1, x2, y2 pixels.

        Returns: boxes, a list of B (R_b, 4) proposals in keyframe pixels (after the RPN's NMS, highest
        objectness first); scores, a list of B (R_b,) objectness probabilities in [0, 1] (detached); losses,
        {"loss_objectness", "loss_rpn_box_reg"} in training, else empty.
        """
        maps = list(features.values())
        objectness, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [o[0].numel() for o in objectness]  # anchors per level: A x h x w
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        # the proposals do not backpropagate into the RPN (as in Faster R-CNN)
        proposals = self.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, scores = self.filter_proposals(proposals, objectness, images.image_sizes, per_level)
        losses: Dict[str, torch.Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN needs targets (person boxes) in training mode")
            labels, matched = self.assign_targets_to_anchors(anchors, targets)
            loss_objectness, loss_box = self.compute_loss(objectness, deltas, labels,
                                                          self.box_coder.encode(matched, anchors))
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
        return boxes, scores, losses

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor],
                targets: Optional[List[Dict[str, torch.Tensor]]] = None
                ) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
        """torchvision's output: (boxes, losses); see ``propose``."""
        boxes, _, losses = self.propose(images, features, targets)
        return boxes, losses
