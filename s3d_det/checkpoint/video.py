"""Loading and converting public checkpoints of the S3D family to this package's keys.

Nothing is downloaded: users bring the files. Supported sources (``SOURCES``):

``torchvision_s3d``
    torchvision's ``S3D_Weights.KINETICS400_V1`` (``s3d-d76dad2f.pth``), keys ``features.N...`` and
    ``classifier.1``. Fits ``preset="torchvision"``.
``milnce_s3dg``
    MIL-NCE's HowTo100M S3D-G (``s3d_howto100m.pth``): ``conv1``, ``conv_2b``, ``conv_2c``, ``gating``,
    ``mixed_3b`` .. ``mixed_5c`` (``conv_b0``, ``conv_b1_a``, ``conv_b1_b``, ``conv_b2_a``, ``conv_b2_b``,
    ``conv_b3_b``, each ``conv1``/``bn1`` and, when separable, ``conv2``/``bn2``; ``gating_b0..3.fc``)
    and ``fc`` (the 512-d video embedding, kept as the classifier head). ``text_module.*`` is dropped.
    Fits ``preset="milnce"``.
``tfslim_s3dg``
    TF-slim ``InceptionV1/...`` S3D-G variables as a ``.npz`` of name -> array (``tools/convert_weights.py
    tf-to-npz`` makes one from a TensorFlow checkpoint). Kernels are DHWIO; BatchNorm has no gamma
    (``scale=False``); the temporal conv of a separable pair has a bias and no BN; gating is a 1x1x1 conv
    without bias. Fits ``preset="tfslim"``.

Every conversion lists the unused source keys and the missing target keys, and refuses a shape
mismatch with an error that names the key and both shapes. Files are read with
``torch.load(weights_only=True)`` or ``numpy.load(allow_pickle=False)``: a checkpoint never runs code.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..modeling import PRESETS, build_video_classifier
from ..utils.io import atomic_write
from .io import read_torch_file

__all__ = [
    "SOURCES",
    "ConvertedCheckpoint",
    "convert_checkpoint",
    "load_state_dict_file",
    "save_converted",
    "load_converted",
    "load_pretrained_3d",
]

# Our block parts: the three 1x1 convs fused in ``reduce`` and the 3x3 / pool-proj units.
_REDUCE_PARTS = ("b0", "b1a", "b2a")
_BRANCH_PART = {"branch1": "b1b", "branch2": "b2b", "branch3": "b3"}
_GATED_PART = ("b0", "b1b", "b2b", "b3")  # the unit whose output gate i follows
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------------
# Source layouts. Each names, for one of our units (a conv + BN, maybe a temporal conv + BN) and a
# field, the source key and how its array becomes ours.
# ----------------------------------------------------------------------------------------------
class _Layout:
    """Key names of one checkpoint family. ``unit`` gives the source prefix of one of our conv units:
    ``layer`` is ours (``conv_1a``, ``mixed_4b``...), ``part`` None for stem units or one of
    b0, b1a, b1b, b2a, b2b, b3 inside an Inception block."""

    name: str = ""
    dropped_prefixes: Tuple[str, ...] = ()
    # (kind, field) pairs a file may leave out; they get ``_DEFAULTS``.
    optional = frozenset({("bn", "num_batches_tracked")})

    def unit(self, layer: str, part: Optional[str]) -> str:
        raise NotImplementedError

    def conv(self, prefix: str, temporal: bool, field: str) -> Optional[str]:
        raise NotImplementedError

    def bn(self, prefix: str, temporal: bool, field: str) -> Optional[str]:
        raise NotImplementedError

    def gate(self, layer: str, index: Optional[int], field: str) -> str:
        raise NotImplementedError

    def head(self, field: str) -> str:
        raise NotImplementedError

    def transform(self, kind: str, array: Tensor) -> Tensor:
        """``kind`` is conv, bn, gate or head."""
        return array


class _TorchvisionLayout(_Layout):
    name = "torchvision_s3d"
    _index = {
        "conv_1a": 0, "conv_2b": 2, "conv_2c": 3, "mixed_3b": 5, "mixed_3c": 6, "mixed_4b": 8, "mixed_4c": 9,
        "mixed_4d": 10, "mixed_4e": 11, "mixed_4f": 12, "mixed_5b": 14, "mixed_5c": 15,
    }
    _part = {"b0": "branch0", "b1a": "branch1.0", "b1b": "branch1.1", "b2a": "branch2.0", "b2b": "branch2.1",
             "b3": "branch3.1"}
    # TemporalSeparableConv units (spatial .0, temporal .1); the others are Conv3dNormActivation.
    _separable = {None, "b1b", "b2b"}

    def unit(self, layer, part):
        prefix = f"features.{self._index[layer]}"
        if part is not None:
            prefix += "." + self._part[part]
        separable = (layer in ("conv_1a", "conv_2c") and part is None) or part in ("b1b", "b2b")
        return prefix + ("|sep" if separable else "")

    def _split(self, prefix, temporal):
        prefix, _, sep = prefix.partition("|")
        return f"{prefix}.{1 if temporal else 0}." if sep else (None if temporal else f"{prefix}.")

    def conv(self, prefix, temporal, field):
        base = self._split(prefix, temporal)
        return None if base is None or field != "weight" else base + "0.weight"

    def bn(self, prefix, temporal, field):
        base = self._split(prefix, temporal)
        return None if base is None else base + "1." + field

    def gate(self, layer, index, field):
        return f"<torchvision's S3D has no gating: {layer} gate {index}>"  # always reported missing

    def head(self, field):
        return f"classifier.1.{field}"


class _MilNceLayout(_Layout):
    name = "milnce_s3dg"
    dropped_prefixes = ("text_module.",)
    _stem = {"conv_1a": "conv1", "conv_2b": "conv_2b", "conv_2c": "conv_2c"}
    _part = {"b0": "conv_b0", "b1a": "conv_b1_a", "b1b": "conv_b1_b", "b2a": "conv_b2_a", "b2b": "conv_b2_b",
             "b3": "conv_b3_b"}

    def unit(self, layer, part):
        return self._stem[layer] if part is None else f"{layer}.{self._part[part]}"

    def conv(self, prefix, temporal, field):
        return f"{prefix}.conv{2 if temporal else 1}.{field}" if field == "weight" else None

    def bn(self, prefix, temporal, field):
        return f"{prefix}.bn{2 if temporal else 1}.{field}"

    def gate(self, layer, index, field):
        return f"gating.fc.{field}" if index is None else f"{layer}.gating_b{index}.fc.{field}"

    def head(self, field):
        return f"fc.{field}"

    def transform(self, kind, array):
        if kind == "head" and array.dim() == 2:  # nn.Linear (K, C) -> 1x1x1 conv (K, C, 1, 1, 1)
            return array[:, :, None, None, None]
        return array


class _TfSlimLayout(_Layout):
    name = "tfslim_s3dg"
    _stem = {"conv_1a": "Conv2d_1a_7x7", "conv_2b": "Conv2d_2b_1x1", "conv_2c": "Conv2d_2c_3x3"}
    _part = {"b0": "Branch_0/Conv2d_0a_1x1", "b1a": "Branch_1/Conv2d_0a_1x1", "b1b": "Branch_1/Conv2d_0b_3x3",
             "b2a": "Branch_2/Conv2d_0a_1x1", "b2b": "Branch_2/Conv2d_0b_3x3", "b3": "Branch_3/Conv2d_0b_1x1"}
    _bn = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
    optional = frozenset({("bn", "num_batches_tracked"), ("bn", "weight")})  # scale=False: no gamma

    def unit(self, layer, part):
        if part is None:
            return f"InceptionV1/{self._stem[layer]}"
        return f"InceptionV1/Mixed_{layer.split('_')[1]}/{self._part[part]}"

    def conv(self, prefix, temporal, field):
        base = f"{prefix}/temporal" if temporal else prefix
        return f"{base}/{'weights' if field == 'weight' else 'biases'}"

    def bn(self, prefix, temporal, field):
        return None if temporal or field not in self._bn else f"{prefix}/BatchNorm/{self._bn[field]}"

    def gate(self, layer, index, field):
        unit = self.unit(layer, None if index is None else _GATED_PART[index])
        return f"{unit}/self_gating/transformer_W/{'weights' if field == 'weight' else 'biases'}"

    def head(self, field):
        return f"InceptionV1/Logits/Conv2d_0c_1x1/{'weights' if field == 'weight' else 'biases'}"

    def transform(self, kind, array):
        if kind in ("conv", "head") and array.dim() == 5:  # DHWIO -> OIDHW
            return array.permute(4, 3, 0, 1, 2).contiguous()
        if kind == "gate" and array.dim() == 5:  # 1x1x1 conv DHWIO -> Linear (out, in)
            return array[0, 0, 0].t().contiguous()
        return array


_LAYOUTS: Dict[str, _Layout] = {layout.name: layout for layout in (_TorchvisionLayout(), _MilNceLayout(),
                                                                    _TfSlimLayout())}
SOURCES: Tuple[str, ...] = tuple(_LAYOUTS)
_PRESET_OF_SOURCE = {p.source: p.name for p in PRESETS.values()}

# Values of the fields a family may not store (TF-slim BN without gamma; BN step counters).
_DEFAULTS: Dict[str, Callable[[Tensor], Tensor]] = {"weight": torch.ones_like, "num_batches_tracked": torch.zeros_like}

_KEY = re.compile(
    r"^(?P<scope>backbone|head)\.(?:(?P<layer>conv_\w+?|mixed_\w+?)\.)?"
    r"(?:(?P<part>reduce|branch[123])\.)?"
    r"(?P<module>conv|bn|conv_t|bn_t|gate\.fc|gates\.(?P<gate>\d)\.fc|proj)\.(?P<field>\w+)$"
)


@dataclass
class ConvertedCheckpoint:
    """The result of ``convert_checkpoint``.

    Attributes:
        state_dict: our keys (those of ``VideoClassifier``: ``backbone.*``, ``head.*``) -> tensors.
        source: the source layout.
        missing_keys: our keys that the file does not provide.
        unused_keys: source keys that went nowhere.
        dropped_keys: source keys dropped on purpose (MIL-NCE's text branch).
        has_head: the file held a classifier head (and ``state_dict`` has ``head.*``).
    """

    state_dict: Dict[str, Tensor]
    source: str
    missing_keys: List[str] = field(default_factory=list)
    unused_keys: List[str] = field(default_factory=list)
    dropped_keys: List[str] = field(default_factory=list)
    has_head: bool = True

    def report(self) -> str:
        """A human-readable summary: counts, then every missing and unused key."""
        lines = [
            f"{self.source}: {len(self.state_dict)} tensors converted, {len(self.missing_keys)} missing, "
            f"{len(self.unused_keys)} unused, {len(self.dropped_keys)} dropped"
            + ("" if self.has_head else " (no classifier head in the file)")
        ]
        lines += [f"  missing: {k}" for k in self.missing_keys]
        lines += [f"  unused:  {k}" for k in self.unused_keys]
        return "\n".join(lines)


def _as_tensor(value, key: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"checkpoint key {key!r} holds a {type(value).__name__}, expected a tensor or array")


def _source_keys(layout: _Layout, key: str) -> Tuple[List[str], str, Optional[str]]:
    """For one of our keys: the source keys it is made of (three for a fused ``reduce`` tensor, None
    where the layout has no such tensor), the transform kind (conv, bn, gate, head) and the field."""
    m = _KEY.match(key)
    if m is None:
        raise ValueError(f"no rule converts our key {key!r}")
    module, fld, layer = m["module"], m["field"], m["layer"]
    if module == "proj":
        return [layout.head(fld)], "head", fld
    if module.startswith("gate"):
        index = None if module == "gate.fc" else int(m["gate"])
        return [layout.gate(layer, index, fld)], "gate", fld
    temporal = module.endswith("_t")
    parts = _REDUCE_PARTS if m["part"] == "reduce" else [_BRANCH_PART.get(m["part"])]
    keys = []
    for part in parts:
        prefix = layout.unit(layer, part)
        name = layout.conv(prefix, temporal, fld) if module.startswith("conv") else layout.bn(prefix, temporal, fld)
        keys.append(name)
    return keys, "conv" if module.startswith("conv") else "bn", fld


def _input_channels(layout: _Layout, source_dict: Mapping[str, Tensor], preset) -> int:
    """C of the clips the source was trained on, read from its first convolution's kernel: 3 for RGB, 2 for the
    optical flow of I3D's convention (the flow checkpoints of the TF-slim S3D-G family); 3 when it has none."""
    names, _, _ = _source_keys(layout, "backbone.conv_1a.conv.weight")
    kernel = source_dict.get(names[0])
    if kernel is None or kernel.dim() != 5:
        return 3
    channels = int(layout.transform("conv", kernel).shape[1])  # ours: (out, in, t, h, w)
    return channels // 8 if preset.s3dg_kwargs().get("stem_style") == "space_to_depth" else channels


def _target_model(layout: _Layout, source_dict: Mapping[str, Tensor]) -> Tuple[nn.Module, bool]:
    """The preset classifier the source fits, with K taken from the source head (if any) and the input channels
    from its first convolution (a flow checkpoint's 2)."""
    preset = PRESETS[_PRESET_OF_SOURCE[layout.name]]
    channels = _input_channels(layout, source_dict, preset)
    head = source_dict.get(layout.head("weight"))
    if head is None:
        return build_video_classifier(preset.variant, 1, preset=preset.name, in_channels=channels), False
    k = head.shape[-1] if isinstance(layout, _TfSlimLayout) else head.shape[0]
    return build_video_classifier(preset.variant, int(k), preset=preset.name, in_channels=channels), True


def convert_checkpoint(
    state_dict: Mapping[str, object], source: str, *, model: Optional[nn.Module] = None
) -> ConvertedCheckpoint:
    """Converts a public checkpoint's state dict to this package's keys.

    Args:
        state_dict: the file's tensors (torch tensors or numpy arrays), keyed as in ``source``.
        source (str): one of ``SOURCES``.
        model (nn.Module, optional): the ``VideoClassifier`` to convert for; by default the preset model
            of the source, with the number of classes read from the file's head.

    Returns:
        ConvertedCheckpoint with our state dict, missing, unused and dropped keys. Loading its
        ``state_dict`` into the target with ``strict=True`` succeeds when nothing is missing.

    Raises:
        ValueError: unknown source; a tensor whose shape differs from the target's (the message names
        the source key, our key and both shapes); a value that is not an array.
    """
    if source not in _LAYOUTS:
        raise ValueError(f"unknown checkpoint source {source!r}; expected one of {', '.join(SOURCES)}")
    layout = _LAYOUTS[source]
    dropped = sorted(k for k in state_dict if layout.dropped_prefixes and k.startswith(layout.dropped_prefixes))
    src = {k: _as_tensor(v, k) for k, v in state_dict.items() if k not in dropped}
    if model is None:
        model, has_head = _target_model(layout, src)
    else:
        has_head = layout.head("weight") in src
    target = model.state_dict()

    out, missing, used = {}, [], set()
    for key, ref in target.items():
        if key.startswith("head.") and not has_head:
            continue
        if ".input_norm." in key:  # the input convention: the target model's (its preset's), saved with the weights
            out[key] = ref.clone()
            continue
        names, kind, fld = _source_keys(layout, key)
        if all(name in src for name in names):
            parts = [layout.transform(kind, src[name]) for name in names]
            used.update(names)
            value = parts[0] if len(parts) == 1 or fld == "num_batches_tracked" else torch.cat(parts, dim=0)
        elif (kind, fld) in layout.optional and not any(name in src for name in names):
            value = _DEFAULTS[fld](ref)
        else:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(ref.shape):
            shapes = " + ".join(str(tuple(src[name].shape)) for name in names)
            raise ValueError(
                f"{source}: {' + '.join(names)} has shape {shapes} (as ours: {tuple(value.shape)}), "
                f"but our {key} needs {tuple(ref.shape)}"
            )
        out[key] = value.to(ref.dtype)
    unused = sorted(k for k in src if k not in used)
    return ConvertedCheckpoint(out, source, missing, unused, dropped, has_head)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def load_state_dict_file(path: str) -> Dict[str, object]:
    """Reads a checkpoint without running any code in it.

    ``.npz`` is read with ``numpy.load(allow_pickle=False)``; anything else with
    ``torch.load(weights_only=True)``. A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is
    unwrapped and a DataParallel ``module.`` prefix removed.

    Raises:
        FileNotFoundError: no such file. UnsafePickleError: a file asking for code (nothing is run). ValueError:
        the file is not a readable checkpoint (empty, truncated, not a torch file; the message names it), or holds
        something other than a mapping of names to tensors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as e:  # noqa: BLE001 - every reader error becomes one line naming the file
            raise ValueError(f"checkpoint {path} is not a readable .npz ({type(e).__name__}: "
                             f"{' '.join(str(e).split())}); expected numpy.savez arrays by name") from None
    obj = read_torch_file(path, "checkpoint")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"checkpoint {path} does not hold a mapping of names to tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def save_converted(converted: ConvertedCheckpoint, path: str) -> None:
    """Writes ``{"state_dict": ..., "meta": {...}}`` atomically (a temp file renamed into place)."""
    preset = _PRESET_OF_SOURCE[converted.source]
    meta = {"source": converted.source, "preset": preset, "variant": PRESETS[preset].variant,
            "has_head": converted.has_head}
    with atomic_write(path, ".pth") as tmp:
        with open(tmp, "wb") as f:  # through a Python file: a full disk is OSError(ENOSPC), not a RuntimeError
            torch.save({"state_dict": converted.state_dict, "meta": meta}, f)


def load_converted(path: str) -> Tuple[Dict[str, Tensor], Dict[str, object]]:
    """Reads a file written by ``save_converted`` (or ``tools/convert_weights.py``): (state_dict, meta)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    obj = read_torch_file(path, "converted checkpoint")
    if not isinstance(obj, Mapping) or "state_dict" not in obj or "meta" not in obj:
        raise ValueError(
            f"{path} is not a converted s3d_det checkpoint (expected keys 'state_dict' and 'meta'); "
            "convert public files with tools/convert_weights.py first"
        )
    return dict(obj["state_dict"]), dict(obj["meta"])


def load_pretrained_3d(model: nn.Module, path: str, *, prefix: str = "backbone.", strict: bool = True) -> List[str]:
    """Loads the ``prefix`` part of a converted checkpoint into ``model`` (an ``S3DG`` for the default
    prefix, or a ``VideoClassifier`` with ``prefix=""``), its input convention included: the file's
    ``input_norm`` buffers, or, in a file written before they were saved, its preset's (``meta["preset"]``).

    Returns the model keys the file did not fill (empty when ``strict``). Raises ValueError naming the
    file and key on a missing key (when ``strict``) or a shape mismatch.
    """
    state, meta = load_converted(path)
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = model.state_dict()
    norm_keys = [k for k in own if k.split(".")[-2:-1] == ["input_norm"]]
    if norm_keys and not any(k in state for k in norm_keys) and meta.get("preset") in PRESETS:
        convention = PRESETS[meta["preset"]].normalizer().state_dict()  # a file written before they were saved
        state.update({k: convention[k.split(".")[-1]] for k in norm_keys})
    wrong = [f"{prefix}{key} is {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the model"
             for key, value in state.items() if key in own and tuple(own[key].shape) != tuple(value.shape)]
    if wrong:
        raise ValueError(f"{path} does not fit the model: {len(wrong)} tensors of other shapes: {'; '.join(wrong[:3])}"
                         f"{' ...' if len(wrong) > 3 else ''}; expected weights of the same architecture (variant, "
                         "width) as the config's")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise ValueError(
            f"{path} does not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    model.load_state_dict(state, strict=False)
    return missing
