"""Where the action head's boxes come from (``MODEL.PROPOSALS``, ``ActionDetector(proposals=)``): one class per
source, chosen once when the detector is built.

- ``RPNProposals`` ("rpn"): the keyframe through the 2D backbone and the RPN (the detector's ``normalize_2d``,
  ``backbone_2d`` and ``rpn``); person scores are the RPN's objectness when it is a ``ScoredRPN``.
- ``GTProposals`` ("gt"): the batch's GT boxes (oracle boxes, person score 1). In training the head's own
  appending of the GT boxes gives exactly them, so it passes none.
- ``GivenProposals`` ("given"): ``batch["proposals"]`` (list of (R_b, 4) in resized-keyframe pixels; the GT boxes
  are appended in training), person scores ``batch["proposal_scores"]`` (list of (R_b,)) if the batch has them.

Each gives ``batch_keys(training)``, the batch keys it reads, and ``proposals(...)`` -> (boxes, person scores or
None, losses).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torchvision.models.detection.image_list import ImageList

from .rpn import ScoredRPN

__all__ = ["ProposalSource", "RPNProposals", "GTProposals", "GivenProposals", "PROPOSAL_SOURCES",
           "proposal_source", "as_boxes"]

Proposals = Tuple[List[torch.Tensor], Optional[List[torch.Tensor]], Dict[str, torch.Tensor]]


def as_boxes(boxes, device, what: str) -> torch.Tensor:
    """``boxes`` as a float32 (N, 4) tensor on ``device``; ValueError naming ``what`` (e.g. "boxes[1]")
    otherwise."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"batch {what}: expected boxes (N, 4), got shape {tuple(boxes.shape)}")
    return boxes


class ProposalSource:
    """A proposal source. ``name`` is its config value; ``uses_keyframe``: it runs the 2D detector (the
    detector is built with ``backbone_2d`` and ``rpn`` only for such a source)."""

    name = ""
    uses_keyframe = False

    def batch_keys(self, training: bool) -> Tuple[str, ...]:
        """The batch keys it reads (beyond "image_sizes" and, in training, "boxes" and "labels")."""
        return ()

    def check(self, *, backbone_2d, rpn, roi_head) -> None:
        """ValueError unless the detector's parts suit this source."""

    def proposals(self, detector, batch: Mapping[str, Any], targets: Optional[List[Dict[str, torch.Tensor]]],
                  image_sizes: Sequence[Tuple[int, int]], device: torch.device) -> Proposals:
        """(boxes, a list of B (R_b, 4) float in pixels of the resized keyframe; person scores, a list of B (R_b,)
        in [0, 1], or None: all 1; losses, a dict of scalar tensors, empty unless the source trains).
        ``targets``: B {"boxes", "labels"} on ``device`` (None in eval unless ``batch_keys`` has "boxes")."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RPNProposals(ProposalSource):
    name = "rpn"
    uses_keyframe = True

    def batch_keys(self, training: bool) -> Tuple[str, ...]:
        return ("keyframe",)

    def check(self, *, backbone_2d, rpn, roi_head) -> None:
        if backbone_2d is None or rpn is None:
            raise ValueError("proposals='rpn' needs backbone_2d and rpn")
        if roi_head.scorer.uses_person_scores and not isinstance(rpn, ScoredRPN):
            raise ValueError(f"a head with scoring={roi_head.scoring!r} needs the RPN's objectness: rpn must be a "
                             f"ScoredRPN, got {type(rpn).__name__}")

    def proposals(self, detector, batch, targets, image_sizes, device) -> Proposals:
        """The keyframe (B, 3, H, W), raw RGB in [0, 255], normalised by ``detector.normalize_2d``, through
        ``detector.backbone_2d`` and ``detector.rpn``; losses {"loss_objectness", "loss_rpn_box_reg"} in
        training (all GT boxes as persons)."""
        keyframe = detector.normalize_2d(batch["keyframe"].to(device, non_blocking=True), image_sizes)
        images = ImageList(keyframe, list(image_sizes))
        rpn_targets = [{"boxes": t["boxes"]} for t in targets] if detector.training else None
        maps = detector.backbone_2d(images.tensors)
        if isinstance(detector.rpn, ScoredRPN):
            return detector.rpn.propose(images, maps, rpn_targets)
        boxes, losses = detector.rpn(images, maps, rpn_targets)
        return boxes, None, losses


class GTProposals(ProposalSource):
    name = "gt"

    def batch_keys(self, training: bool) -> Tuple[str, ...]:
        return ("boxes", "labels")

    def proposals(self, detector, batch, targets, image_sizes, device) -> Proposals:
        return [t["boxes"][:0] if detector.training else t["boxes"] for t in targets], None, {}


class GivenProposals(ProposalSource):
    name = "given"

    def batch_keys(self, training: bool) -> Tuple[str, ...]:
        return ("proposals",)

    def proposals(self, detector, batch, targets, image_sizes, device) -> Proposals:
        boxes = [as_boxes(p, device, f"proposals[{i}]") for i, p in enumerate(batch["proposals"])]
        scores = None
        if "proposal_scores" in batch:
            scores = [torch.as_tensor(s, dtype=torch.float32, device=device) for s in batch["proposal_scores"]]
        return boxes, scores, {}


_SOURCES = {source.name: source for source in (RPNProposals, GTProposals, GivenProposals)}
# The config values of ``MODEL.PROPOSALS``.
PROPOSAL_SOURCES = tuple(_SOURCES)


def proposal_source(proposals: Union[str, ProposalSource]) -> ProposalSource:
    """The source called ``proposals`` (one of ``PROPOSAL_SOURCES``), or ``proposals`` itself when it is a
    ``ProposalSource``."""
    if isinstance(proposals, ProposalSource):
        return proposals
    if proposals not in _SOURCES:
        raise ValueError(f"unknown proposals {proposals!r}; expected one of {', '.join(PROPOSAL_SOURCES)}")
    return _SOURCES[proposals]()
