"""How the action head scores a detection (``MODEL.ROI_HEAD.SCORING``, ``TubeRoIHead(scoring=)``): one class per
rule, chosen once when the head is built.

- ``JointScoring`` ("joint", Faster R-CNN): one softmax over C actions + background. Training samples the
  proposals against the person boxes (torchvision's matcher and sampler); a detection scores its action's
  probability.
- ``PersonScoring`` ("person", two-stage, as AVA detectors: a person detector, then an action classifier on its
  boxes): the head learns actions on people only (the GT boxes and the proposals matching one); column 0 is "no
  action". A detection scores the proposal's person score (the RPN's objectness; 1 for given boxes without
  scores) times its action's probability.

Both have the same three steps, which ``TubeRoIHead.forward`` calls: ``training_samples`` (training RoIs, their
labels and box-regression targets), ``kept_proposals`` (eval: the proposals worth running the head on) and
``scores`` (eval: class probabilities -> detection scores). The loss (``fastrcnn_loss``) is the same for both.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torchvision.ops import box_iou

__all__ = ["Scoring", "JointScoring", "PersonScoring", "SCORINGS", "scoring_rule"]

Samples = Tuple[List[torch.Tensor], List[torch.Tensor], Sequence[torch.Tensor]]


class Scoring:
    """A scoring rule. ``name`` is its config value; ``uses_person_scores``: the head's detections need the
    proposals' person scores (an RPN that gives its objectness, ``ScoredRPN``)."""

    name = ""
    uses_person_scores = False

    def training_samples(self, head, proposals: List[torch.Tensor],
                         targets: List[Dict[str, torch.Tensor]]) -> Samples:
        """The RoIs the head trains on: (a list of B (S_b, 4) boxes in keyframe pixels, a list of B (S_b,) int64
        labels, 0 background / "no action", action + 1 otherwise; B (S_b, 4) box-regression targets).
        ``targets`` have labels already shifted by 1 (``TubeRoIHead._shifted_targets``)."""
        raise NotImplementedError

    def kept_proposals(self, head, proposals: List[torch.Tensor],
                       proposal_scores: Optional[Sequence[torch.Tensor]]):
        """Eval: the proposals (and their person scores, or None) the head runs on; by default all."""
        return proposals, proposal_scores

    def scores(self, probs: torch.Tensor, proposal_scores: Optional[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Eval: class probabilities (R, C + 1), softmax over background + C actions -> detection scores
        (R, C + 1) in [0, 1] (column 0 is dropped afterwards)."""
        return probs

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class JointScoring(Scoring):
    """"joint": IoU >= ``fg_iou_thresh`` with a person box takes that person's action, < ``bg_iou_thresh`` is
    background (torchvision's ``select_training_samples``, ``positive_fraction`` of actions at most); a detection
    scores its action's probability."""

    name = "joint"

    def training_samples(self, head, proposals, targets) -> Samples:
        proposals, _, labels, regression_targets = head.select_training_samples(proposals, targets)
        if sum(len(p) for p in proposals) == 0:
            raise ValueError("no RoIs to train on: the batch has neither proposals nor GT boxes")
        return proposals, labels, regression_targets


class PersonScoring(Scoring):
    """"person": per keyframe its GT boxes, then proposals with IoU >= ``fg_iou_thresh`` with a GT box, drawn at
    random, up to ``batch_size_per_image``, each labelled with its person's action + 1 or 0 ("no action");
    ignored people (shifted label -1) and the proposals matched to them are left out. A detection scores
    person score x action probability."""

    name = "person"
    uses_person_scores = True

    def training_samples(self, head, proposals, targets) -> Samples:
        rois, labels, matched = [], [], []
        for props, target in zip(proposals, targets):
            gt = target["boxes"].to(props.dtype)
            if len(gt) == 0:
                rois.append(props[:0])
                labels.append(target["labels"][:0])
                matched.append(props[:0])
                continue
            iou, index = box_iou(gt, props).max(dim=0)  # (R,) each; empty when there are no proposals
            known = target["labels"] >= 0  # the -1 (shifted) of ignored people: neither they nor their RoIs
            extra = torch.where((iou >= head.fg_iou_thresh) & known[index])[0]
            room = max(head.batch_size_per_image - int(known.sum()), 0)
            extra = extra[torch.randperm(len(extra), device=extra.device)[:room]]
            index = torch.cat([torch.where(known)[0], index[extra]])
            rois.append(torch.cat([gt[known], props[extra]]))
            labels.append(target["labels"][index])
            matched.append(gt[index])
        return rois, labels, head.box_coder.encode(matched, rois)

    def kept_proposals(self, head, proposals, proposal_scores):
        """A detection scores person score x an action's probability, at most the person score, and is kept
        above ``head.score_thresh`` (or its action's ``class_score_thresh``): a proposal whose person score is not
        above the lowest of them cannot make one, so the head does not run on it (its stage 5 is most of the head's
        time; the detections are the same)."""
        if proposal_scores is None:
            return proposals, None
        if len(proposal_scores) != len(proposals):
            raise ValueError(f"got proposal_scores for {len(proposal_scores)} images and proposals for "
                             f"{len(proposals)}")
        for i, (s, p) in enumerate(zip(proposal_scores, proposals)):
            if s.shape != (len(p),):
                raise ValueError(f"proposal_scores[{i}] has shape {tuple(s.shape)} for {len(p)} proposals")
        # the lowest threshold a detection may pass: an action's own when the head has per-action ones
        least = min(head.class_score_thresh) if getattr(head, "class_score_thresh", ()) else head.score_thresh
        keep = [s > least for s in proposal_scores]
        return [p[k] for p, k in zip(proposals, keep)], [s[k] for s, k in zip(proposal_scores, keep)]

    def scores(self, probs, proposal_scores):
        """probs (R, C + 1) x the proposals' person scores (R,) (all 1 when none are given)."""
        if proposal_scores is None:
            return probs
        return probs * torch.cat(list(proposal_scores)).to(probs)[:, None]


_RULES = {rule.name: rule for rule in (JointScoring, PersonScoring)}
# The config values of ``MODEL.ROI_HEAD.SCORING``.
SCORINGS = tuple(_RULES)


def scoring_rule(scoring: Union[str, Scoring]) -> Scoring:
    """The rule called ``scoring`` (one of ``SCORINGS``), or ``scoring`` itself when it is a ``Scoring``."""
    if isinstance(scoring, Scoring):
        return scoring
    if scoring not in _RULES:
        raise ValueError(f"unknown scoring {scoring!r}; expected one of {', '.join(SCORINGS)}")
    return _RULES[scoring]()
