"""ActionDetector: people proposed on the keyframe by a 2D Faster R-CNN RPN, actions named by a 3D RoI head.

::

    clip (B,3,T,H,W) ──► S3D-G up to mixed_4f ─────────────────────────┐
    keyframe (B,3,H,W) ─► ResNet (C4 or FPN) ─► RPN ─► person proposals ┴─► TubeRoIHead ─► actions + boxes

The detection parts are torchvision's (backbones, ``AnchorGenerator``, ``RPNHead``, ``RegionProposalNetwork``,
``ImageList``); the 3D network's stage 5 is the head's box head (``roi_head.TubeRoIHead``). The dataset has
already resized the frames, so torchvision's ``GeneralizedRCNNTransform`` is not used; the frames arrive raw (RGB
in [0, 255]) and each network normalises them with its own convention (``s3d_det.modeling.normalize``): the 3D
network its preset's, the keyframe branch that of its 2D weights (``ActionDetector.set_conventions_2d``).

Build one with keyword arguments (``build_action_detector``, or ``ActionDetector(...)`` from built parts) or from
a config (``ActionDetector.from_config(cfg, num_classes=...)``). Where the head's boxes come from is an object
(``s3d_det.modeling.proposals``: the RPN, the GT boxes, or boxes in the batch), as is how it scores a detection
(``s3d_det.modeling.scoring``).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import FrozenBatchNorm2d, clip_boxes_to_image

from .cfg_args import node_kwargs
from .normalize import IMAGENET_MEAN, IMAGENET_STD, PixelNormalizer
from .presets import get_preset
from .proposals import PROPOSAL_SOURCES, ProposalSource, as_boxes, proposal_source
from .roi_head import TubeRoIHead
from .rpn import build_rpn, build_rpn_from_cfg
from .s3dg import LAYERS, S3DG

logger = logging.getLogger(__name__)

__all__ = ["PROPOSAL_SOURCES", "RESNETS_2D", "CONVENTION_KEYS", "BATCH_KEYS", "ResNetC4", "build_backbone_2d",
           "set_stride_in_1x1", "stage5_of", "ActionDetector", "build_action_detector", "boxes_to_original",
           "detections_to_rows"]

# The batch keys the detector reads, in the order its messages list them (see ``ActionDetector``).
BATCH_KEYS = ("clip", "image_sizes", "keyframe", "boxes", "labels", "scale", "flipped", "orig_size", "proposals")
# State-dict keys of input conventions (not weights): a checkpoint written before they existed lacks them, and
# was trained with the defaults (torchvision's 2D convention, the 3D network's [0, 1] or preset's).
CONVENTION_KEYS = ("normalize_2d.mean", "normalize_2d.std", "normalize_2d.bgr", "stride_in_1x1_2d",
                   "backbone_3d.input_norm.mean", "backbone_3d.input_norm.std", "backbone_3d.input_norm.bgr")
RESNETS_2D = ("resnet18", "resnet34", "resnet50", "resnet101")


class ResNetC4(nn.Module):
    """A torchvision ResNet up to ``layer3`` (stride 16): keyframe (B, 3, H, W) -> {"0": (B, out_channels, H/16,
    W/16)}. ``out_channels`` is 256 x the block expansion (1024 for ResNet-50, 256 for ResNet-18/34).

    ``channels_last`` (default True): weights and activations in ``torch.channels_last`` memory format, as the 3D
    network runs in ``channels_last_3d``; the same values, faster on the CPU.
    """

    def __init__(self, net: resnet.ResNet, *, channels_last: bool = True):
        super().__init__()
        self.body = IntermediateLayerGetter(net, return_layers={"layer3": "0"})
        self.out_channels = 256 * type(net.layer3[-1]).expansion
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)


# Config keys of ``MODEL.BACKBONE_2D``, each a keyword argument of ``build_backbone_2d`` (``cfg_args``: FOO is foo).
BACKBONE_2D_CONFIG_KEYS = ("NAME", "FPN", "TRAINABLE_LAYERS", "FROZEN_BN")


def build_backbone_2d(name: str = "resnet50", *, fpn: bool = False, trainable_layers: int = 3,
                      frozen_bn: bool = True) -> nn.Module:
    """The keyframe backbone, randomly initialised (``weights=None``: nothing is downloaded).

    Args:
        name (str): one of ``RESNETS_2D``.
        fpn (bool): torchvision's ResNet-FPN (``resnet_fpn_backbone``; levels "0"-"3" and "pool", strides 4-64,
            256 channels) instead of ``ResNetC4``.
        trainable_layers (int): 0-5, torchvision's rule: the top ``trainable_layers`` of (layer4, layer3, layer2,
            layer1, conv1) train, the rest is frozen; the C4 backbone has no layer4, so a value freezes the same
            parameters in both.
        frozen_bn (bool): ``FrozenBatchNorm2d`` (as torchvision for pretrained backbones) instead of BatchNorm2d.

    Returns a module with ``out_channels`` mapping (B, 3, H, W) to an OrderedDict of feature maps.
    """
    if name not in RESNETS_2D:
        raise ValueError(f"unknown 2D backbone {name!r}; expected one of {', '.join(RESNETS_2D)}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    if fpn:
        return resnet_fpn_backbone(backbone_name=name, weights=None, norm_layer=norm_layer,
                                   trainable_layers=trainable_layers)
    net = getattr(resnet, name)(weights=None, norm_layer=norm_layer)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    train += ["bn1"] if trainable_layers == 5 else []
    for param_name, param in net.named_parameters():
        if not param_name.startswith(tuple(train)):
            param.requires_grad_(False)
    return ResNetC4(net)


def set_stride_in_1x1(body: nn.Module, enabled: bool = True) -> int:
    """Puts the stride of every torchvision ``Bottleneck`` in ``body`` in its 1x1 ``conv1`` (``enabled``: MSRA
    ResNets, detectron2's ``STRIDE_IN_1X1``) or back in its 3x3 ``conv2`` (torchvision's). Output shapes do not
    change; the weights do not move. Returns the blocks changed (0 when they already stride that way)."""
    changed = 0
    for block in body.modules():
        if not isinstance(block, resnet.Bottleneck):
            continue
        src, dst = (block.conv2, block.conv1) if enabled else (block.conv1, block.conv2)
        if src.stride != (1, 1):
            dst.stride, src.stride = src.stride, (1, 1)
            changed += 1
    return changed


def boxes_to_original(boxes: torch.Tensor, *, image_size: Tuple[int, int], scale: Tuple[float, float],
                      flipped: bool, orig_size: Tuple[int, int]) -> torch.Tensor:
    """Boxes (K, 4) x1, y1, x2, y2 in pixels of the resized (and maybe flipped) keyframe of size ``image_size``
    (h, w) -> pixels of the original frame: un-flipped (x -> w - x), divided by ``scale`` (sy, sx), clipped to
    ``orig_size`` (h, w)."""
    if flipped:
        boxes = torch.stack([image_size[1] - boxes[:, 2], boxes[:, 1], image_size[1] - boxes[:, 0], boxes[:, 3]], 1)
    sy, sx = scale
    boxes = boxes / boxes.new_tensor([sx, sy, sx, sy])
    return clip_boxes_to_image(boxes, tuple(int(v) for v in orig_size))


class ActionDetector(nn.Module):
    """Keyframe person proposals + 3D tube RoI head.

    Args:
        backbone_3d (S3DG): returns exactly one layer (``out_features``, e.g. ``("mixed_4f",)``); its forward
            must not run the head's stage-5 modules.
        roi_head (TubeRoIHead): its stage-5 modules are usually the backbone's own (shared, registered under
            both ``backbone_3d`` and ``roi_head``: ``parameters()`` lists each once, ``state_dict()`` names each
            under both prefixes).
        backbone_2d (nn.Module, optional): keyframe (B, 3, H, W) -> OrderedDict of feature maps; for "rpn".
        rpn (RegionProposalNetwork, optional): class-agnostic person proposals; for "rpn". A ``ScoredRPN``
            (as ``build_action_detector`` makes) also gives their objectness, the person score of a head with
            ``scoring="person"``, which needs one.
        proposals (str or ProposalSource): where the head's RoIs come from (``s3d_det.modeling.proposals``):
            ``"rpn"``; ``"gt"``, the batch's GT boxes (oracle boxes, person score 1; in training the head's own
            appending of the GT boxes gives exactly them); ``"given"``, ``batch["proposals"]`` (list of (R_b, 4)
            in resized-keyframe pixels; the GT boxes are appended in training), with person scores
            ``batch["proposal_scores"]`` (list of (R_b,)) if the batch has them, else 1. The detector keeps the
            name as ``proposals`` and the source object as ``proposal_source``.
        normalize_2d (PixelNormalizer, optional): the keyframe branch's input convention (for "rpn"); default
            torchvision's (ImageNet mean/std, RGB). Loading 2D weights sets it (``set_conventions_2d``).

    The keyframe branch's conventions are buffers, saved with the weights: ``normalize_2d.*`` and
    ``stride_in_1x1_2d`` (True: the ResNet's Bottlenecks stride in their 1x1 conv, as MSRA weights need; loading
    a state dict applies it). The 3D network's are its ``input_norm``.

    Forward: ``batch`` as made by ``s3d_det.data.dataset.collate``, frames raw (RGB in [0, 255]): "clip"
    (B, 3, T, H, W), "keyframe" (B, 3, H, W) (read for "rpn"), "image_sizes" list of (h, w), "boxes" list of
    (N_b, 4) float in pixels of the resized keyframe, "labels" list of (N_b,) int64 0-based actions (both read in
    training and for "gt"), and in eval "scale" list of (sy, sx), "flipped" list of bool, "orig_size" list of
    (h, w); the source's own keys (``proposal_source.batch_keys``, e.g. "proposals" for "given"). Tensors are
    moved to the model's device; a missing key is a ValueError naming it.
    ``features`` (B, C, T', h, w), optional: the clips' 3D features (``feature_3d``) computed elsewhere, e.g.
    sliced from a video's shared feature map by ``s3d_det.engine.inference``; then ``batch`` needs no "clip".
    Training returns losses {"loss_objectness", "loss_rpn_box_reg" (RPN only, all GT boxes as persons),
    "loss_cls", "loss_box_reg"}; eval returns per keyframe {"boxes" (K, 4) float in pixels of the ORIGINAL
    frame, "scores" (K,), "labels" (K,) int64 0-based actions}.
    """

    def __init__(self, *, backbone_3d: S3DG, roi_head: TubeRoIHead, backbone_2d: Optional[nn.Module] = None,
                 rpn: Optional[RegionProposalNetwork] = None, proposals: Union[str, ProposalSource] = "rpn",
                 normalize_2d: Optional[PixelNormalizer] = None):
        super().__init__()
        source = proposal_source(proposals)
        source.check(backbone_2d=backbone_2d, rpn=rpn, roi_head=roi_head)
        if len(backbone_3d.out_features) != 1:
            raise ValueError(f"backbone_3d must return one layer, it returns {list(backbone_3d.out_features)}")
        self.feature_3d = backbone_3d.out_features[0]
        run = {id(m) for _, m in backbone_3d.layers(last=self.feature_3d)}
        shared = [name for name, m in roi_head.box_head.stage5.named_children() if id(m) in run]
        if shared:
            raise ValueError(f"backbone_3d runs up to {self.feature_3d}, which includes the head's stage-5 "
                             f"layers {shared}; build it with out_features before them")
        self.backbone_3d, self.roi_head = backbone_3d, roi_head
        self.backbone_2d, self.rpn = backbone_2d, rpn
        self.proposal_source = source
        self.proposals = source.name
        self.backbone_2d_frozen = False
        self.normalize_2d = None
        if backbone_2d is not None:
            self.normalize_2d = normalize_2d or PixelNormalizer(mean=IMAGENET_MEAN, std=IMAGENET_STD)
            self.register_buffer("stride_in_1x1_2d", torch.tensor(False))
            self.register_load_state_dict_post_hook(lambda module, _: module._apply_stride_in_1x1())

    @classmethod
    def from_config(cls, cfg, *, num_classes: int) -> "ActionDetector":
        """The detector ``cfg.MODEL`` describes, randomly initialised: ``S3DG.from_config`` (``MODEL.BACKBONE_3D``,
        returning ``FEATURE``), ``TubeRoIHead.from_config`` (``MODEL.ROI_HEAD``; ``num_classes`` C actions unless
        its NUM_CLASSES is set) on the backbone's stage 5, ``MODEL.PROPOSALS``, and for "rpn" the 2D backbone
        (``MODEL.BACKBONE_2D``) and the RPN (``rpn.build_rpn_from_cfg``, ``MODEL.RPN``)."""
        m = cfg.MODEL
        source = proposal_source(m.PROPOSALS)
        check_feature_3d(m.BACKBONE_3D.FEATURE)
        backbone_3d = S3DG.from_config(cfg, out_features=(m.BACKBONE_3D.FEATURE,))
        roi_head = TubeRoIHead.from_config(cfg, num_classes=num_classes, **stage5_of(backbone_3d))
        parts_2d = {}
        if source.uses_keyframe:
            body = build_backbone_2d(**node_kwargs(m.BACKBONE_2D, BACKBONE_2D_CONFIG_KEYS))
            parts_2d = dict(backbone_2d=body, rpn=build_rpn_from_cfg(cfg, body.out_channels))
        return cls(backbone_3d=backbone_3d, roi_head=roi_head, proposals=source, **parts_2d)

    def set_conventions_2d(self, meta: Mapping[str, Any]) -> None:
        """Takes the conventions a converted 2D checkpoint records (``Converted2D.meta``: ``input_format``,
        ``pixel_mean``/``pixel_std``, ``stride_in_1x1``) for the keyframe branch."""
        if self.backbone_2d is None:
            raise ValueError(f"proposals={self.proposals!r}: there is no 2D backbone to take 2D conventions")
        self.normalize_2d.set_convention(PixelNormalizer.from_meta_2d(meta))
        self.stride_in_1x1_2d.fill_(bool(meta.get("stride_in_1x1")))
        self._apply_stride_in_1x1()

    def _apply_stride_in_1x1(self) -> None:
        set_stride_in_1x1(self.backbone_2d, bool(self.stride_in_1x1_2d))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, and a checkpoint written before the input conventions were saved (it lacks
        ``CONVENTION_KEYS``) loads with the conventions it was trained with: the keyframe branch's torchvision
        ImageNet RGB without strides in the 1x1 convs (whatever 2D weights were loaded before), the 3D network's
        as built (its preset's). A warning says so; any other missing key is still an error when ``strict``."""
        own = {name for name, _ in self.named_buffers()}
        absent = [key for key in CONVENTION_KEYS if key in own and key not in state_dict]
        if not absent:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        if self.backbone_2d is not None and any(k.startswith(("normalize_2d.", "stride_in_1x1_2d")) for k in absent):
            self.normalize_2d.set_convention(PixelNormalizer(mean=IMAGENET_MEAN, std=IMAGENET_STD))
            self.stride_in_1x1_2d.fill_(False)
        logger.warning("a checkpoint without input conventions (written before they were saved): using those it "
                       "was trained with, %s", self.conventions())
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [key for key in result.missing_keys if key not in CONVENTION_KEYS]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}: missing keys {missing}, "
                               f"unexpected keys {result.unexpected_keys}")
        return type(result)(missing, result.unexpected_keys)  # the load hook has applied stride_in_1x1_2d

    def conventions(self) -> Dict[str, Any]:
        """The input conventions in force, for logs and messages: ``{"3d": {...}, "2d": {..., "stride_in_1x1"}}``."""
        out = {"3d": self.backbone_3d.input_norm.convention()}
        if self.backbone_2d is not None:
            out["2d"] = {**self.normalize_2d.convention(), "stride_in_1x1": bool(self.stride_in_1x1_2d)}
        return out

    def freeze_backbone_2d(self) -> None:
        """Stops training the keyframe backbone from now on: its parameters get no gradient and its BatchNorms
        stay in eval mode (their running statistics kept), ``train()`` included. The RPN's head still trains.
        Used by ``SOLVER.FREEZE_2D_AT``: trained from scratch, the person features settle long before the
        actions are learnt, and the backbone's backward pass is a large share of a step."""
        if self.backbone_2d is None:
            raise ValueError(f"proposals={self.proposals!r}: there is no 2D backbone to freeze")
        self.backbone_2d.requires_grad_(False)
        self.backbone_2d.eval()
        self.backbone_2d_frozen = True

    def train(self, mode: bool = True) -> "ActionDetector":
        super().train(mode)
        self.backbone_3d.train(mode)  # again, after the head: keeps the S3DG's frozen stages (stage 5 too) in eval
        if self.backbone_2d_frozen:
            self.backbone_2d.eval()
        return self

    def forward(self, batch: Mapping[str, Any], features: Optional[torch.Tensor] = None):
        device = next(self.parameters()).device
        needed = {"image_sizes", *self.proposal_source.batch_keys(self.training)}
        needed |= {"boxes", "labels"} if self.training else {"scale", "flipped", "orig_size"}
        needed = [key for key in BATCH_KEYS if key in needed or (key == "clip" and features is None)]
        missing = [key for key in needed if key not in batch]
        if missing:
            raise ValueError(f"batch lacks key(s) {missing} (proposals={self.proposals!r}, "
                             f"{'training' if self.training else 'eval'} mode)")
        clip = batch["clip"].to(device, non_blocking=True) if features is None else None
        num = (clip if features is None else features).shape[0]
        image_sizes = [(int(h), int(w)) for h, w in batch["image_sizes"]]
        for key in needed:
            if key != "clip" and len(batch[key]) != num:
                raise ValueError(f"batch[{key!r}] has {len(batch[key])} entries for a clip batch of {num}")
        targets = self._targets(batch, device) if "boxes" in needed else None
        if features is None:
            features = self.backbone_3d(clip, image_sizes)[self.feature_3d]
        else:
            features = features.to(device)

        # scores: the proposals' person scores (None: all 1); losses: the RPN's in training
        proposals, scores, losses = self.proposal_source.proposals(self, batch, targets, image_sizes, device)
        losses = dict(losses)
        if self.training:
            losses.update(self.roi_head(features, proposals, image_sizes, targets))
            return losses
        results = self.roi_head(features, proposals, image_sizes, proposal_scores=scores)
        for i, result in enumerate(results):
            result["boxes"] = boxes_to_original(
                result["boxes"], image_size=image_sizes[i], scale=batch["scale"][i],
                flipped=bool(batch["flipped"][i]), orig_size=batch["orig_size"][i])
        return results

    def _targets(self, batch: Mapping[str, Any], device) -> List[Dict[str, torch.Tensor]]:
        targets = []
        for i, (boxes, labels) in enumerate(zip(batch["boxes"], batch["labels"])):
            boxes = as_boxes(boxes, device, f"boxes[{i}]")
            labels = torch.as_tensor(labels, device=device)
            if labels.dtype != torch.int64 or labels.shape != (len(boxes),):
                raise ValueError(f"batch labels[{i}]: expected int64 ({len(boxes)},) for its {len(boxes)} boxes, "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
            targets.append({"boxes": boxes, "labels": labels})
        return targets


def build_action_detector(
    *,
    num_classes: int,
    proposals: Union[str, ProposalSource] = "rpn",
    backbone_2d: str = "resnet50",
    fpn: bool = False,
    trainable_layers_2d: int = 3,
    frozen_bn_2d: bool = True,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 300,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    rpn_score_thresh: float = 0.0,
    variant_3d: str = "s3dg",
    width_3d: float = 1.0,
    preset_3d: Optional[str] = None,
    frozen_stages_3d: int = 0,
    backbone_3d_kwargs: Optional[Mapping[str, Any]] = None,
    feature_3d: str = "mixed_4f",
    roi_output_size: int = 7,
    roi_sampling_ratio: int = 0,
    roi_context: float = 1.0,
    dropout: float = 0.2,
    class_specific_boxes: bool = False,
    scoring: str = "joint",
    box_fg_iou_thresh: float = 0.5,
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 128,
    box_positive_fraction: float = 0.25,
    bbox_reg_weights: Tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
    box_reg_loss_weight: float = 1.0,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    box_class_score_thresh: Sequence[float] = (),
    loss: str = "softmax",
) -> ActionDetector:
    """An ``ActionDetector`` from keyword arguments, randomly initialised (load checkpoints afterwards).

    Args:
        num_classes (int): C actions (the head scores C + 1, background first).
        proposals (str or ProposalSource): "rpn", "gt" or "given" (see ``ActionDetector``); only a source that
            ``uses_keyframe`` ("rpn") gets the 2D part.
        backbone_2d (str): the keyframe ResNet, one of ``RESNETS_2D``.
        fpn (bool): ResNet-FPN instead of ResNet-C4 (layers up to layer3, stride 16).
        trainable_layers_2d (int), frozen_bn_2d (bool): see ``build_backbone_2d``.
        anchor_sizes, aspect_ratios, rpn_* : the RPN, ``rpn.build_rpn``'s arguments of those names (``rpn_``
            dropped): anchors in keyframe pixels, NMS, sampling (300 proposals per keyframe at test, as the
            Faster R-CNN paper: every proposal runs the 3D stage 5).
        variant_3d (str): the 3D network variant (``s3d_det.modeling.VARIANTS``).
        width_3d (float): its channel multiplier.
        preset_3d (str, optional): architecture of a checkpoint family ("torchvision", "milnce", "tfslim").
        frozen_stages_3d (int): S3DG stages 1..k frozen (5 freezes the head's stage 5 too).
        backbone_3d_kwargs (mapping, optional): other ``S3DG`` keyword arguments (override the preset).
        feature_3d (str): the layer the RoIs are cut from; the layers after it, to mixed_5c, are the head's
            stage 5 (default mixed_4f, stride 16 in space).
        roi_output_size (int), roi_sampling_ratio (int): the tube RoIAlign (see ``TubeRoIAlign``).
        roi_context (float): the RoIAlign reads each box enlarged by this factor (``TubeRoIHead(context=)``).
        dropout (float), class_specific_boxes (bool): the predictor (see ``TubeBoxPredictor``).
        scoring (str or Scoring): "joint" (actions + background in one softmax) or "person" (RPN objectness x
            action probability, the head trained on people only); see ``s3d_det.modeling.scoring``.
        box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
        bbox_reg_weights, box_reg_loss_weight, box_score_thresh, box_nms_thresh, box_detections_per_img: the
            head's training and inference settings (see ``TubeRoIHead``; 128 RoIs per keyframe by default, not
            torchvision's 512, since each runs stage 5 in 3D).
        box_class_score_thresh (sequence of C floats): per-action score thresholds (``TubeRoIHead``).
        loss (str): "softmax" (one action a person) or "sigmoid" (several; ``TubeRoIHead``).
    """
    source = proposal_source(proposals)
    check_feature_3d(feature_3d)
    clash = sorted({"width", "frozen_stages", "out_features"} & set(backbone_3d_kwargs or {}))
    if clash:
        raise ValueError(f"backbone_3d_kwargs must not set {clash}: use width_3d, frozen_stages_3d and feature_3d")
    kwargs_3d = {**(get_preset(preset_3d).s3dg_kwargs() if preset_3d else {}), "width": width_3d,
                 "frozen_stages": frozen_stages_3d, **(backbone_3d_kwargs or {}), "out_features": (feature_3d,)}
    s3dg = S3DG(variant_3d, **kwargs_3d)
    roi_head = TubeRoIHead(
        **stage5_of(s3dg), num_classes=num_classes, output_size=roi_output_size, sampling_ratio=roi_sampling_ratio,
        context=roi_context, dropout=dropout, class_specific_boxes=class_specific_boxes, scoring=scoring,
        fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
        bbox_reg_weights=bbox_reg_weights, box_reg_loss_weight=box_reg_loss_weight, score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img,
        class_score_thresh=box_class_score_thresh, loss=loss,
    )
    if not source.uses_keyframe:
        return ActionDetector(backbone_3d=s3dg, roi_head=roi_head, proposals=source)
    body = build_backbone_2d(backbone_2d, fpn=fpn, trainable_layers=trainable_layers_2d, frozen_bn=frozen_bn_2d)
    rpn = build_rpn(
        body.out_channels, fpn=fpn, anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios,
        pre_nms_top_n_train=rpn_pre_nms_top_n_train, pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        post_nms_top_n_train=rpn_post_nms_top_n_train, post_nms_top_n_test=rpn_post_nms_top_n_test,
        nms_thresh=rpn_nms_thresh, fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
        score_thresh=rpn_score_thresh,
    )
    return ActionDetector(backbone_3d=s3dg, roi_head=roi_head, backbone_2d=body, rpn=rpn, proposals=source)


def check_feature_3d(feature_3d: str) -> None:
    """ValueError unless ``feature_3d`` (the layer the RoIs are cut from) is a layer of ``S3DG`` before its last."""
    if feature_3d not in LAYERS or feature_3d == LAYERS[-1]:
        raise ValueError(f"feature_3d must be a layer before {LAYERS[-1]}, got {feature_3d!r}")


def stage5_of(backbone_3d: S3DG) -> Dict[str, Any]:
    """The ``TubeRoIHead`` arguments that a backbone returning one layer (``out_features``, e.g. ``mixed_4f``)
    fixes: ``stage5``, its layers after that one up to ``mixed_5c`` (the backbone's own modules, shared);
    ``feature_channels``, C5 of ``mixed_5c``; ``spatial_scale``, feature cells per keyframe pixel (1/16 for
    ``mixed_4f``; ValueError when the layer's height and width strides differ)."""
    feature = backbone_3d.out_features[0]
    stride = backbone_3d.feature_info[feature].stride
    if stride[1] != stride[2]:
        raise ValueError(f"{feature} has different strides in height and width: {stride[1:]}")
    return dict(stage5=OrderedDict(backbone_3d.layers(LAYERS[LAYERS.index(feature) + 1], LAYERS[-1])),
                feature_channels=backbone_3d.feature_info[LAYERS[-1]].channels, spatial_scale=1.0 / stride[1])


def detections_to_rows(outputs: Sequence[Mapping[str, torch.Tensor]], batch: Mapping[str, Any],
                       video_index: Mapping[str, int]) -> np.ndarray:
    """Eval outputs of ``ActionDetector`` -> interchange rows (N, 8) float64 ``video_index, frame (1-based),
    label (0-based), score, x1, y1, x2, y2`` (original-frame pixels), keyframes in batch order, each keyframe's
    detections in output order. ``batch`` supplies "video" and "frame"; ``video_index`` maps video names to
    positions in the detections file's ``videos``."""
    if len(outputs) != len(batch["video"]):
        raise ValueError(f"got outputs for {len(outputs)} keyframes and a batch of {len(batch['video'])}")
    from s3d_det.evaluation.detections import FrameDetections  # the format's one definition of the columns

    parts = []
    for out, video, frame in zip(outputs, batch["video"], batch["frame"]):
        if video not in video_index:
            raise ValueError(f"video {video!r} (frame {frame}) has no entry in video_index")
        n = len(out["scores"])
        parts.append(FrameDetections(video=np.full(n, video_index[video]), frame=np.full(n, int(frame)),
                                     label=out["labels"].detach().cpu().numpy(),
                                     score=out["scores"].detach().cpu().numpy(),
                                     boxes=out["boxes"].detach().cpu().numpy().reshape(n, 4)))
    return FrameDetections.concat(parts).to_rows()
