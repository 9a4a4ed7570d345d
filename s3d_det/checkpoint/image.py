"""Weights for the keyframe person detector's 2D part (a torchvision ResNet body, FPN and RPN head) from files.

Nothing is downloaded: users bring the files. A conversion gives three state dicts in *torchvision's* names,
``body`` (``torchvision.models.resnet``: ``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight`` ...),
``fpn`` (``torchvision.ops.FeaturePyramidNetwork``: ``inner_blocks.i.0.*``, ``layer_blocks.i.0.*``, with
``.1.*`` for a normalised FPN) and ``rpn`` (``torchvision...rpn.RPNHead``: ``conv.i.0.*``, ``cls_logits.*``,
``bbox_pred.*``); :func:`load_2d_into` puts them under the prefixes a model uses
(:data:`TORCHVISION_FRCNN_PREFIXES` for torchvision's ``FasterRCNN``). Sources (:data:`SOURCES_2D`):

``torchvision_frcnn``
    torchvision's Faster R-CNN (``fasterrcnn_resnet50_fpn`` and ``_v2``): ``backbone.body.*``,
    ``backbone.fpn.*``, ``rpn.head.*``; ``roi_heads.*`` is dropped. Files written before torchvision 0.13
    (``rpn.head.conv.weight``, ``backbone.fpn.inner_blocks.0.weight``) are renamed to the current layout.
``torchvision_resnet``
    an ImageNet ResNet / ResNeXt / Wide ResNet (``conv1``, ``bn1``, ``layer1..4``); ``fc.*`` is dropped.
``detectron2``
    a model-zoo ``.pkl`` (``{"model": {name: array}, "__author__": ...}``, read with the restricted unpickler:
    a pickle never runs code) or a ``.pth``: ``backbone.bottom_up.{stem,res2..res5}`` (``backbone.{stem,res*}``
    for C4 models, whose ``res5`` is in the dropped ``roi_heads``), ``backbone.fpn_lateral{L}`` /
    ``fpn_output{L}``, ``proposal_generator.rpn_head.{conv,objectness_logits,anchor_deltas}``. Also the MSRA
    ImageNet files (``R-50.pkl``) with Caffe2 names (``conv1_w``, ``res_conv1_bn_s``, ``res2_0_branch2a_w``)
    or detectron2's (``stem.conv1.*``, ``res2.0.conv1.*``), whose BatchNorms are affine only (weight, bias):
    their running_mean 0 and running_var 1 are filled in and reported. detectron2's FrozenBatchNorm2d adds
    eps 1e-5 to the variance like torchvision's BatchNorm2d and FrozenBatchNorm2d, so the filled statistics
    reproduce detectron2's output exactly (and the Caffe2 affine layer's up to a factor 1/sqrt(1 + 1e-5)).

Weights are never changed to hide a convention: ``Converted2D.meta`` records what the model must match.
``input_format`` is ``"RGB01-imagenet"`` (RGB in [0, 1], ImageNet mean/std, torchvision's transform) or
``"BGR255"`` (BGR in [0, 255] minus the per-channel mean, detectron2's MSRA weights). ``stride_in_1x1`` is
True for MSRA bottleneck weights, which stride in the first 1x1 conv of a block where torchvision strides in
the 3x3 one: :func:`set_stride_in_1x1` moves the strides of a torchvision body. A detector takes both with
``ActionDetector.set_conventions_2d(meta)``: its keyframe branch then normalises raw frames as the weights
expect. detectron2 orders a level's anchors size-major and torchvision ratio-major: with several sizes per level
(C4 models) the RPN's output channels are reordered to torchvision's order (``num_aspect_ratios`` says how many
ratios there are).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..modeling.detector import set_stride_in_1x1
from .io import safe_pickle_load
from .video import load_state_dict_file

__all__ = [
    "SOURCES_2D",
    "PARTS",
    "TORCHVISION_FRCNN_PREFIXES",
    "RGB01_IMAGENET",
    "BGR255",
    "Converted2D",
    "Loaded2D",
    "detect_2d_source",
    "convert_2d_checkpoint",
    "load_2d_weights",
    "load_2d_into",
    "set_stride_in_1x1",
]

SOURCES_2D: Tuple[str, ...] = ("torchvision_frcnn", "torchvision_resnet", "detectron2")
PARTS: Tuple[str, ...] = ("body", "fpn", "rpn")
# Where the parts live in torchvision's FasterRCNN; ActionDetector passes its own map to load_2d_into.
TORCHVISION_FRCNN_PREFIXES: Dict[str, str] = {"body": "backbone.body.", "fpn": "backbone.fpn.", "rpn": "rpn.head."}

RGB01_IMAGENET = "RGB01-imagenet"
BGR255 = "BGR255"

Tensor = torch.Tensor
_DROP = "drop"  # what a renamer returns for a key dropped on purpose
_COUNTER = ".num_batches_tracked"  # BatchNorm step counters: unused in eval and by FrozenBatchNorm2d, dropped

# Target names of each part, in torchvision's layout.
_TARGET = {
    "body": re.compile(r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\."
                       r"(conv[123]\.weight|bn[123]\.\w+|downsample\.0\.weight|downsample\.1\.\w+))$"),
    "fpn": re.compile(r"^(inner|layer)_blocks\.\d+\.[01]\.\w+$"),
    "rpn": re.compile(r"^(conv\.\d+\.0|cls_logits|bbox_pred)\.(weight|bias)$"),
}
_OLD_FPN = re.compile(r"^((?:inner|layer)_blocks\.\d+)\.(weight|bias)$")  # torchvision < 0.13

# ResNets by block type and blocks per layer (layers 1-3 decide; layer 4 is absent from C4 detectors).
_ARCHS = {("basic", (2, 2, 2)): "resnet18", ("basic", (3, 4, 6)): "resnet34", ("bottleneck", (3, 4, 6)): "resnet50",
          ("bottleneck", (3, 4, 23)): "resnet101", ("bottleneck", (3, 8, 36)): "resnet152"}


# ----------------------------------------------------------------------------------------------
# Renamers: source key -> (part, torchvision key), _DROP, or None (no rule: reported unused)
# ----------------------------------------------------------------------------------------------
Renamer = Callable[[str], object]


def _in_part(part: str, name: str):
    return (part, name) if _TARGET[part].match(name) else None


def _torchvision_frcnn(keys) -> Renamer:
    def rename(key):
        if key.startswith("roi_heads."):
            return _DROP
        if key.startswith("backbone.body."):
            return _in_part("body", key[len("backbone.body."):])
        if key.startswith("backbone.fpn."):
            return _in_part("fpn", _OLD_FPN.sub(r"\1.0.\2", key[len("backbone.fpn."):]))
        if key.startswith("rpn.head."):
            name = key[len("rpn.head."):]
            return _in_part("rpn", "conv.0.0." + name[5:] if name in ("conv.weight", "conv.bias") else name)
        return None

    return rename


def _torchvision_resnet(keys) -> Renamer:
    return lambda key: _DROP if key.startswith("fc.") else _in_part("body", key)


# Caffe2 basic names of the MSRA ImageNet files: conv1_w, res_conv1_bn_{s,b}, res<N>_<i>_branch{1,2a,2b,2c}_...
_C2_KEY = re.compile(r"^(?:res(?P<stage>[2-5])_(?P<block>\d+)_branch(?P<branch>1|2[abc])|(?:res_)?conv1)"
                     r"_(?P<field>w|bn_s|bn_b)$")
_C2_UNIT = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_C2_FIELD = {"w": "weight", "bn_s": "norm.weight", "bn_b": "norm.bias"}
_D2_BODY = re.compile(r"^(?:backbone\.(?:bottom_up\.)?)?(?:stem|res(?P<stage>[2-5])\.(?P<block>\d+))"
                      r"\.(?P<unit>conv[123]|shortcut)\.(?:(?P<norm>norm)\.)?(?P<field>\w+)$")
_D2_FPN = re.compile(r"^backbone\.fpn_(?P<kind>lateral|output)(?P<level>\d)\.(?:(?P<norm>norm)\.)?(?P<field>\w+)$")
_D2_RPN = re.compile(r"^proposal_generator\.rpn_head\.(?:(?P<conv>conv)(?:\.conv(?P<index>\d+))?|objectness_logits"
                     r"|anchor_deltas)\.(?P<field>weight|bias)$")
_D2_DROPPED = re.compile(r"^(roi_heads\.|pixel_mean$|pixel_std$|fc1000_|linear\.|backbone\.bottom_up\.linear\.)"
                         r"|_momentum$")


def _caffe2_to_detectron2(key: str) -> str:
    m = _C2_KEY.match(key)
    if m is None:
        return key
    unit = "stem.conv1" if m["stage"] is None else f"res{m['stage']}.{m['block']}.{_C2_UNIT[m['branch']]}"
    return f"{unit}.{_C2_FIELD[m['field']]}"


def _detectron2(keys) -> Renamer:
    levels = [int(m["level"]) for m in map(_D2_FPN.match, keys) if m]
    lowest = min(levels, default=2)  # fpn_lateral2 (res2) is inner_blocks.0

    def rename(key):
        if _D2_DROPPED.search(key):
            return _DROP
        name = _caffe2_to_detectron2(key)
        m = _D2_BODY.match(name)
        if m:
            if m["stage"] is None:
                if m["unit"] != "conv1":  # the stem has one conv
                    return None
                unit = "bn1" if m["norm"] else "conv1"
            else:
                layer = f"layer{int(m['stage']) - 1}.{m['block']}."
                if m["unit"] == "shortcut":
                    unit = layer + ("downsample.1" if m["norm"] else "downsample.0")
                else:
                    unit = layer + (m["unit"].replace("conv", "bn") if m["norm"] else m["unit"])
            return _in_part("body", f"{unit}.{m['field']}")
        m = _D2_FPN.match(name)
        if m:
            blocks = "inner_blocks" if m["kind"] == "lateral" else "layer_blocks"
            return _in_part("fpn", f"{blocks}.{int(m['level']) - lowest}.{1 if m['norm'] else 0}.{m['field']}")
        m = _D2_RPN.match(name)
        if m:
            if m["conv"]:
                return "rpn", f"conv.{m['index'] or 0}.0.{m['field']}"
            return "rpn", ("cls_logits." if "objectness" in name else "bbox_pred.") + m["field"]
        return None

    return rename


_RENAMERS: Dict[str, Callable[[List[str]], Renamer]] = {
    "torchvision_frcnn": _torchvision_frcnn, "torchvision_resnet": _torchvision_resnet, "detectron2": _detectron2,
}


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class Converted2D:
    """The result of :func:`convert_2d_checkpoint`.

    Attributes:
        body: torchvision ResNet keys (``conv1.weight``, ``layer1.0.bn1.running_mean``...) -> tensors; None when
            the file has no ResNet body.
        fpn: torchvision FeaturePyramidNetwork keys -> tensors, lowest level first; None when the file has no FPN.
        rpn: torchvision RPNHead keys -> tensors; None when the file has no RPN.
        source: one of :data:`SOURCES_2D`.
        path: the file converted (None for an in-memory state dict); error messages name it.
        origin: ``"<part>.<key>"`` -> the source key it came from.
        missing_keys: ``"body.<key>"`` of the torchvision ResNet the file's blocks describe that the file lacks
            (a wholly absent layer4, as in C4 detectors, is noted in ``notes`` instead).
        unused_keys: source keys no rule places.
        dropped_keys: source keys dropped on purpose (RoI heads, classifiers, BatchNorm step counters...).
        filled_keys: ``"body.<key>"`` given a value the file does not store (affine-only BatchNorm statistics).
        meta: ``arch`` (e.g. ``"resnet50"``, None if unknown), ``blocks_per_layer``, ``block``, ``groups``,
            ``width_per_group``, ``input_format``, ``stride_in_1x1``, ``author`` (detectron2 pickles),
            ``fpn_returned_layers`` and ``fpn_out_channels`` (for ``resnet_fpn_backbone``), ``num_anchors``
            (per location, from the RPN), and ``pixel_mean``/``pixel_std`` when the file stores them.
        notes: what a user must know to use the weights (input convention, strides, anchor order).
    """

    body: Optional[Dict[str, Tensor]]
    fpn: Optional[Dict[str, Tensor]]
    rpn: Optional[Dict[str, Tensor]]
    source: str
    path: Optional[str] = None
    origin: Dict[str, str] = field(default_factory=dict)
    missing_keys: List[str] = field(default_factory=list)
    unused_keys: List[str] = field(default_factory=list)
    dropped_keys: List[str] = field(default_factory=list)
    filled_keys: List[str] = field(default_factory=list)
    meta: Dict[str, object] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def part(self, name: str) -> Optional[Dict[str, Tensor]]:
        """``body``, ``fpn`` or ``rpn``."""
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; expected one of {', '.join(PARTS)}")
        return getattr(self, name)

    def state_dict(self, prefixes: Mapping[str, str]) -> Dict[str, Tensor]:
        """The tensors of the parts named in ``prefixes`` (part -> prefix), keyed ``prefix + key``."""
        out = {}
        for name, prefix in prefixes.items():
            out.update({prefix + k: v for k, v in (self.part(name) or {}).items()})
        return out

    def report(self) -> str:
        """Counts, meta and notes, then every missing, unused, dropped and filled key (step counters counted)."""
        sizes = ", ".join(f"{p} {len(self.part(p))}" if self.part(p) is not None else f"no {p}" for p in PARTS)
        where = f" ({self.path})" if self.path else ""
        lines = [f"{self.source}{where}: {sizes} tensors; {len(self.missing_keys)} missing, "
                 f"{len(self.unused_keys)} unused, {len(self.dropped_keys)} dropped, {len(self.filled_keys)} filled"]
        lines.append("  " + ", ".join(f"{k}={self.meta.get(k)}" for k in ("arch", "input_format", "stride_in_1x1")))
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  missing: {k}" for k in self.missing_keys]
        lines += [f"  unused:  {k}" for k in self.unused_keys]
        counters = [k for k in self.dropped_keys if k.endswith(_COUNTER)]
        lines += [f"  dropped: {k}" for k in self.dropped_keys if not k.endswith(_COUNTER)]
        if counters:
            lines.append(f"  dropped: {len(counters)} BatchNorm step counters (*{_COUNTER})")
        lines += [f"  filled:  {k}" for k in self.filled_keys]
        return "\n".join(lines)


@dataclass
class Loaded2D:
    """The result of :func:`load_2d_into`; keys are the model's.

    Attributes:
        loaded: model keys filled from the checkpoint.
        missing: model keys under the prefix of a part the checkpoint holds that it did not fill
            (BatchNorm step counters excepted).
        unused: ``"<part>.<key>"`` of the checkpoint with no place in the model (e.g. layer4 for a C4 body,
            or a whole part not named in ``prefixes``).
        absent_parts: parts named in ``prefixes`` that the checkpoint does not hold; the model keeps its
            own values there (an ImageNet ResNet has no FPN or RPN).
    """

    loaded: List[str]
    missing: List[str]
    unused: List[str]
    absent_parts: List[str]

    def report(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors; {len(self.missing)} missing, {len(self.unused)} unused"
                 + (f"; not in the file: {', '.join(self.absent_parts)}" if self.absent_parts else "")]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  unused:  {k}" for k in self.unused]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------
def detect_2d_source(keys, *, path: Optional[str] = None) -> str:
    """The source family of a state dict, from its key names.

    Raises:
        ValueError: no family fits; the message lists the known sources and the first keys.
    """
    keys = list(keys)
    if any(k.startswith("backbone.body.") for k in keys):
        return "torchvision_frcnn"
    if any(k.startswith(("backbone.bottom_up.", "backbone.stem.", "stem.", "proposal_generator."))
           or _C2_KEY.match(k) or _D2_BODY.match(k) for k in keys):
        return "detectron2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision_resnet"
    raise ValueError(
        f"{path or 'state dict'}: cannot tell the checkpoint family from its keys (first: {keys[:5]}); "
        f"known sources: {', '.join(SOURCES_2D)} (pass source=... to choose one)"
    )


def _as_tensor(value, key: str, where: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return torch.from_numpy(np.array(value))  # a writable, native-order copy
    raise ValueError(f"{where}: key {key!r} holds a {type(value).__name__}"
                     f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, expected a numeric array")


def _reference_resnet(body: Mapping[str, Tensor]) -> Tuple[Optional[Dict[str, torch.Size]], Dict[str, object]]:
    """Shapes of the torchvision ResNet whose blocks the body holds (built on the meta device: no memory,
    no time), and what it is. Shapes are None when layer 1, 2 or 3 is empty."""
    counts = []
    for layer in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in body if k.startswith(f"layer{layer}.")}
        counts.append(max(blocks) + 1 if blocks else 0)
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in body)
    conv2 = body.get("layer1.0.conv2.weight")
    groups, width = 1, 64
    if bottleneck and conv2 is not None and conv2.dim() == 4 and conv2.shape[1] > 0:
        groups, width = int(conv2.shape[0]) // int(conv2.shape[1]), int(conv2.shape[1])
    block = "bottleneck" if bottleneck else "basic"
    arch = _ARCHS.get((block, tuple(counts[:3])))
    if arch is not None and (groups, width) != (1, 64):
        arch = f"{arch} (groups={groups}, width_per_group={width})"
    meta = {"arch": arch, "block": block, "blocks_per_layer": tuple(counts), "groups": groups,
            "width_per_group": width}
    if 0 in counts[:3]:
        return None, meta
    with torch.device("meta"):
        net = ResNet(Bottleneck if bottleneck else BasicBlock, [max(c, 1) for c in counts], groups=groups,
                     width_per_group=width)
    shapes = {k: v.shape for k, v in net.state_dict().items()
              if not k.endswith(_COUNTER) and not k.startswith("fc.") and (counts[3] or not k.startswith("layer4."))}
    return shapes, meta


def _fill_affine_bn(body: Dict[str, Tensor], filled: List[str]) -> None:
    """Affine-only BatchNorms (Caffe2 / FrozenBN weight and bias): running_mean 0, running_var 1."""
    for key in [k for k in body if k.endswith(".weight") and re.search(r"(^|\.)(bn[123]|downsample\.1)\.weight$", k)]:
        unit = key[: -len("weight")]
        if unit + "bias" in body and unit + "running_mean" not in body and unit + "running_var" not in body:
            body[unit + "running_mean"] = torch.zeros_like(body[key])
            body[unit + "running_var"] = torch.ones_like(body[key])
            filled += [f"body.{unit}running_mean", f"body.{unit}running_var"]


def _reorder_anchors(rpn: Dict[str, Tensor], num_aspect_ratios: int, where: str) -> Optional[str]:
    """detectron2's anchor a = size * R + ratio -> torchvision's a = ratio * S + size, in cls_logits (A
    channels) and bbox_pred (A * 4 channels). Returns a note, or None when one size per location."""
    if "cls_logits.weight" not in rpn:
        return None
    a = int(rpn["cls_logits.weight"].shape[0])
    if num_aspect_ratios < 1 or a % num_aspect_ratios:
        raise ValueError(f"{where}: the RPN predicts {a} anchors per location, not a multiple of "
                         f"num_aspect_ratios={num_aspect_ratios}")
    sizes = a // num_aspect_ratios
    if sizes == 1:
        return None
    order = torch.arange(a).reshape(sizes, num_aspect_ratios).t().reshape(-1)  # torchvision index -> detectron2's
    box_order = (order[:, None] * 4 + torch.arange(4)).reshape(-1)
    for name, idx in (("cls_logits", order), ("bbox_pred", box_order)):
        for fld in ("weight", "bias"):
            if f"{name}.{fld}" in rpn:
                rpn[f"{name}.{fld}"] = rpn[f"{name}.{fld}"][idx]
    return (f"RPN outputs reordered from detectron2's size-major anchors to torchvision's ratio-major order "
            f"({sizes} sizes x {num_aspect_ratios} aspect ratios): the AnchorGenerator must list the same sizes "
            "and ratios in the same order")


def _fpn_meta(fpn: Mapping[str, Tensor], block: str) -> Dict[str, object]:
    """``fpn_returned_layers``: the ResNet layer (1-4) feeding each inner block, from its input channels
    (torchvision's ``returned_layers``; None where the channels fit no layer), and ``fpn_out_channels``."""
    if "inner_blocks.0.0.weight" not in fpn:
        return {"fpn_returned_layers": None, "fpn_out_channels": None}
    base = 256 if block == "bottleneck" else 64  # output channels of layer1
    layers = []
    for i in sorted(int(k.split(".")[1]) for k in fpn if re.match(r"inner_blocks\.\d+\.0\.weight$", k)):
        ratio, rest = divmod(int(fpn[f"inner_blocks.{i}.0.weight"].shape[1]), base)
        layers.append(ratio.bit_length() if rest == 0 and ratio in (1, 2, 4, 8) else None)
    return {"fpn_returned_layers": layers, "fpn_out_channels": int(fpn["inner_blocks.0.0.weight"].shape[0])}


def _conventions(source: str, meta: Dict[str, object], author: Optional[str]) -> List[str]:
    """Sets meta input_format and stride_in_1x1; returns the notes for them."""
    torchvision_made = source != "detectron2" or author == "torchvision"
    meta["input_format"] = RGB01_IMAGENET if torchvision_made else BGR255
    # MSRA ResNets stride in the block's 1x1 conv; detectron2 configs keep that for them (not for ResNeXt).
    meta["stride_in_1x1"] = not torchvision_made and meta["block"] == "bottleneck" and meta["groups"] == 1
    notes = []
    if meta["input_format"] == BGR255:
        notes.append("weights expect BGR input in [0, 255] minus detectron2's PIXEL_MEAN (not torchvision's RGB "
                     "in [0, 1] with ImageNet mean/std); the weights were not changed")
    if meta["stride_in_1x1"]:
        notes.append("bottleneck blocks stride in conv1 (1x1), torchvision's in conv2 (3x3): call "
                     "set_stride_in_1x1(body) on the torchvision body")
    return notes


def convert_2d_checkpoint(
    state: Mapping[str, object],
    source: str,
    *,
    path: Optional[str] = None,
    author: Optional[str] = None,
    num_aspect_ratios: int = 3,
) -> Converted2D:
    """Converts a 2D detector / classifier state dict to torchvision's body, FPN and RPN-head keys.

    Args:
        state: the file's tensors (torch tensors or numpy arrays) keyed as in ``source``.
        source: one of :data:`SOURCES_2D`.
        path: the file it came from, for messages.
        author: a detectron2 pickle's ``__author__`` (``"torchvision"`` marks RGB weights converted from
            torchvision; anything else is taken as MSRA-style BGR).
        num_aspect_ratios: aspect ratios per anchor size in a detectron2 RPN (detectron2's default 3), used to
            reorder the RPN outputs when a location has several anchor sizes.

    Returns:
        Converted2D; its ``report()`` lists missing, unused, dropped and filled keys.

    Raises:
        ValueError: unknown source; a value that is not a numeric array; two source keys for one target; a
        tensor whose shape differs from the torchvision ResNet the file's blocks describe (the message names
        the file, the source key, the target key and both shapes).
    """
    if source not in _RENAMERS:
        raise ValueError(f"unknown 2D checkpoint source {source!r}; expected one of {', '.join(SOURCES_2D)}")
    where = path or "state dict"
    parts, origin, unused, dropped, meta = _split_parts(state, _RENAMERS[source](list(state)), where)
    filled: List[str] = []
    if source == "detectron2":
        _fill_affine_bn(parts["body"], filled)
    shapes, arch = _reference_resnet(parts["body"])
    meta.update(arch)
    notes = _conventions(source, meta, author)
    missing = _check_body(parts["body"], shapes, meta, origin, filled, unused, notes, where)
    if source == "detectron2":
        note = _reorder_anchors(parts["rpn"], num_aspect_ratios, where)
        notes += [note] if note else []
    if author is not None:
        meta["author"] = author
    meta.update(_fpn_meta(parts["fpn"], meta["block"]))
    if "cls_logits.weight" in parts["rpn"]:
        meta["num_anchors"] = int(parts["rpn"]["cls_logits.weight"].shape[0])
    return Converted2D(
        body=parts["body"] or None, fpn=parts["fpn"] or None, rpn=parts["rpn"] or None, source=source, path=path,
        origin=origin, missing_keys=missing, unused_keys=sorted(unused), dropped_keys=sorted(dropped),
        filled_keys=filled, meta=meta, notes=notes,
    )


def _split_parts(state: Mapping[str, object], rename: Renamer, where: str):
    """The file's tensors under torchvision's names, by part: ``(parts, origin, unused, dropped, meta)``, where
    ``origin`` maps "part.name" to the source key, and ``meta`` holds a detectron2 file's pixel_mean/std."""
    parts: Dict[str, Dict[str, Tensor]] = {p: {} for p in PARTS}
    origin: Dict[str, str] = {}
    unused: List[str] = []
    dropped: List[str] = []
    meta: Dict[str, object] = {}
    for key, value in state.items():
        target = _DROP if key.endswith(_COUNTER) else rename(key)
        if key in ("pixel_mean", "pixel_std"):
            meta[key] = [float(v) for v in np.asarray(value).reshape(-1)]
        if target is None:
            unused.append(key)
            continue
        if target == _DROP:
            dropped.append(key)
            continue
        part, name = target
        if name in parts[part]:
            raise ValueError(f"{where}: {origin[f'{part}.{name}']!r} and {key!r} both give {part}.{name}")
        parts[part][name] = _as_tensor(value, key, where)
        origin[f"{part}.{name}"] = key
    return parts, origin, unused, dropped, meta


def _check_body(body: Dict[str, Tensor], shapes: Optional[Dict[str, torch.Size]], meta: Dict[str, object],
                origin: Dict[str, str], filled: List[str], unused: List[str], notes: List[str], where: str
                ) -> List[str]:
    """Checks the body against the torchvision ResNet its blocks describe (``shapes``): drops what that ResNet
    lacks (to ``unused``), refuses a shape mismatch; returns the ResNet's keys the file lacks. Adds notes."""
    if not body:
        notes.append("no ResNet body in the file")
        return []
    if shapes is None:
        notes.append(f"body: blocks per layer {meta['blocks_per_layer']} match no ResNet; only the model checks it")
        return []
    for name, tensor in list(body.items()):
        if name not in shapes:  # e.g. a downsample where torchvision's block has none
            del body[name]
            if f"body.{name}" in filled:
                filled.remove(f"body.{name}")
            else:
                unused.append(origin.pop(f"body.{name}"))
        elif tensor.shape != shapes[name]:
            raise ValueError(f"{where}: {origin.get('body.' + name, '(filled)')} has shape {tuple(tensor.shape)}, "
                             f"but body.{name} of a {meta['arch'] or meta['block'] + ' ResNet'} needs "
                             f"{tuple(shapes[name])}")
    if not meta["blocks_per_layer"][3]:
        notes.append("body: no layer4 in the file (C4 detectors keep res5 in their RoI head)")
    return [f"body.{k}" for k in shapes if k not in body]


def _read_pickle(path: str) -> Tuple[Dict[str, object], Optional[str]]:
    """A detectron2 / Detectron ``.pkl`` through the restricted unpickler: (name -> array, __author__)."""
    obj = safe_pickle_load(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a dict of weights, got {type(obj).__name__}")
    author = obj.get("__author__")
    for wrapper in ("model", "blobs"):  # detectron2 model zoo / Detectron (Caffe2) files
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{path}: expected weight names as keys")
    return dict(obj), author if isinstance(author, str) else None


def load_2d_weights(path: str, source: Optional[str] = None, *, num_aspect_ratios: int = 3) -> Converted2D:
    """Reads a 2D checkpoint file and converts it (:func:`convert_2d_checkpoint`).

    ``.pkl`` files are read with :func:`s3d_det.data.annotations.safe_pickle_load` (dicts, lists, numbers,
    strings and numpy arrays only); others with ``torch.load(weights_only=True)`` (or ``numpy.load`` for
    ``.npz``). ``source`` is detected from the keys when None.

    Raises:
        FileNotFoundError: no such file. UnsafePickleError: a pickle asking for code. ValueError: an unreadable
        file, an unknown family (the message lists the known sources), or a conversion error.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".pkl"):
        state, author = _read_pickle(path)
    else:
        state, author = load_state_dict_file(path), None
    if source is None:
        source = detect_2d_source(state, path=path)
    return convert_2d_checkpoint(state, source, path=path, author=author, num_aspect_ratios=num_aspect_ratios)


# ----------------------------------------------------------------------------------------------
# Loading into a model
# ----------------------------------------------------------------------------------------------
def load_2d_into(
    converted: Converted2D, model: nn.Module, *, prefixes: Mapping[str, str], strict: bool = True
) -> Loaded2D:
    """Copies the converted parts into ``model`` under ``prefixes``.

    Args:
        converted: from :func:`load_2d_weights` or :func:`convert_2d_checkpoint`.
        model: any module holding torchvision's ResNet body / FPN / RPNHead (its state dict is matched).
        prefixes: part -> prefix in ``model.state_dict()``, e.g. :data:`TORCHVISION_FRCNN_PREFIXES`, or
            ``{"body": ""}`` for a bare ResNet or IntermediateLayerGetter. Parts left out are not loaded.
        strict: raise when a part the checkpoint holds leaves model keys under its prefix unfilled.

    Returns:
        Loaded2D (loaded, missing, unused keys and the parts the file lacks).

    Raises:
        ValueError: an unknown part; a shape mismatch (the message names the file, the source key, the model
        key and both shapes); with ``strict``, model keys left unfilled (named).
    """
    for name in prefixes:
        converted.part(name)  # raises on an unknown part
    where = converted.path or "state dict"
    own = model.state_dict()
    held = {name: prefix for name, prefix in prefixes.items() if converted.part(name) is not None}
    absent = [name for name in prefixes if name not in held]
    unused = [f"{name}.{k}" for name in PARTS if name not in prefixes for k in (converted.part(name) or {})]
    state: Dict[str, Tensor] = {}
    for name, prefix in held.items():
        for key, value in converted.part(name).items():
            target = prefix + key
            if target not in own:
                unused.append(f"{name}.{key}")
            elif own[target].shape != value.shape:
                raise ValueError(
                    f"{where}: {converted.origin.get(f'{name}.{key}', name + '.' + key)} (as {name}.{key}) has shape "
                    f"{tuple(value.shape)}, but the model's {target} needs {tuple(own[target].shape)}"
                )
            else:
                state[target] = value

    def owner(key: str) -> Optional[str]:  # the part with the longest prefix of key
        matches = [(len(p), n) for n, p in held.items() if key.startswith(p)]
        return max(matches)[1] if matches else None

    missing = [k for k in own if k not in state and not k.endswith(_COUNTER) and owner(k) is not None]
    if strict and missing:
        raise ValueError(f"{where} leaves {len(missing)} model keys unfilled: {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''} (prefixes {dict(prefixes)})")
    model.load_state_dict(state, strict=False)
    return Loaded2D(loaded=sorted(state), missing=missing, unused=unused, absent_parts=absent)
