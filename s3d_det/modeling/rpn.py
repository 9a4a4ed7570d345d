"""A torchvision ``RegionProposalNetwork`` that also returns its proposals' objectness.

torchvision's ``RegionProposalNetwork.forward`` computes each kept proposal's objectness probability (in
``filter_proposals``) and drops it. Two-stage action detectors (AVA-style: a person detector, then an action
classifier on its boxes) score a detection as person probability x action probability, so they need it.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers

from .cfg_args import node_kwargs

__all__ = ["ScoredRPN", "build_rpn", "build_rpn_from_cfg", "RPN_CONFIG_KEYS"]

# Config keys of ``MODEL.RPN``, each a keyword argument of ``build_rpn`` (``cfg_args.node_kwargs``: FOO is ``foo``).
RPN_CONFIG_KEYS = ("ANCHOR_SIZES", "ASPECT_RATIOS", "PRE_NMS_TOP_N_TRAIN", "PRE_NMS_TOP_N_TEST",
                   "POST_NMS_TOP_N_TRAIN", "POST_NMS_TOP_N_TEST", "NMS_THRESH", "FG_IOU_THRESH", "BG_IOU_THRESH",
                   "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION")


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


def build_rpn(
    in_channels: int,
    *,
    fpn: bool = False,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    pre_nms_top_n_train: int = 2000,
    pre_nms_top_n_test: int = 1000,
    post_nms_top_n_train: int = 2000,
    post_nms_top_n_test: int = 300,
    nms_thresh: float = 0.7,
    fg_iou_thresh: float = 0.7,
    bg_iou_thresh: float = 0.3,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
    score_thresh: float = 0.0,
) -> ScoredRPN:
    """A ``ScoredRPN`` with torchvision's ``AnchorGenerator`` and ``RPNHead`` on a 2D backbone's maps.

    Args:
        in_channels (int): channels of every feature map the backbone gives (``out_channels``).
        fpn (bool): the backbone is a ResNet-FPN (5 maps, "0"-"3" and "pool"): one anchor size per level;
            else all sizes are on its one map.
        anchor_sizes (sequence of int): anchor sides in keyframe pixels (exactly 5 with ``fpn``).
        aspect_ratios (sequence of float): anchor height / width ratios, at every size.
        pre_nms_top_n_train, pre_nms_top_n_test (int): proposals kept per level before the NMS.
        post_nms_top_n_train, post_nms_top_n_test (int): proposals kept per keyframe after it.
        nms_thresh (float): IoU of the NMS.
        fg_iou_thresh, bg_iou_thresh (float): anchor IoU with a person box for object / background.
        batch_size_per_image (int), positive_fraction (float): anchors sampled for the losses.
        score_thresh (float): minimum objectness probability of a proposal.
    """
    sizes, ratios = tuple(int(s) for s in anchor_sizes), tuple(float(r) for r in aspect_ratios)
    if fpn:
        if len(sizes) != 5:
            raise ValueError(f"FPN has 5 levels: anchor_sizes needs one size per level, got {sizes}")
        anchors = AnchorGenerator(tuple((s,) for s in sizes), (ratios,) * len(sizes))
    else:
        anchors = AnchorGenerator((sizes,), (ratios,))
    return ScoredRPN(
        anchors, RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh,
        batch_size_per_image=batch_size_per_image, positive_fraction=positive_fraction,
        pre_nms_top_n={"training": pre_nms_top_n_train, "testing": pre_nms_top_n_test},
        post_nms_top_n={"training": post_nms_top_n_train, "testing": post_nms_top_n_test},
        nms_thresh=nms_thresh, score_thresh=score_thresh,
    )


def build_rpn_from_cfg(cfg, in_channels: int) -> ScoredRPN:
    """The RPN of ``cfg.MODEL.RPN`` (keys ``RPN_CONFIG_KEYS``) on a backbone of ``in_channels`` channels, FPN as
    ``cfg.MODEL.BACKBONE_2D.FPN`` says."""
    return build_rpn(in_channels, fpn=cfg.MODEL.BACKBONE_2D.FPN, **node_kwargs(cfg.MODEL.RPN, RPN_CONFIG_KEYS))
