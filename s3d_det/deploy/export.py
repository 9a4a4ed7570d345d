"""Exporting the detector (``modules``) to a file: ONNX, TorchScript or a ``torch.export`` program.

- ``"exported-program"`` (``.pt2``): ``torch.export.export`` (non-strict) of the module, height and width dynamic
  (multiples of ``size_divisible``), saved with ``torch.export.save``; load with ``torch.export.load(path).module()``.
- ``"onnx"`` (``.onnx``): that same exported program translated by ``torch.onnx.export`` (the dynamo-based exporter,
  torch's default since 2.9; it needs ``onnxscript``, whose torchlib translates ``torchvision::nms`` and
  ``torchvision::roi_align``), opset ``OPSET``, the weights inside the one file. Height and width stay dynamic.
- ``"torchscript"`` (``.pt``): ``torch.jit.trace`` (deprecated in torch 2.14, with a FutureWarning, but still
  working; the closest to what TorchScript users load with ``torch.jit.load``). The anchors and the RPN's top-n
  follow the traced shapes, so height and width are FIXED to the traced ones (``runtime.ExportedRunner`` refuses others
  when the meta JSON is beside the file).

Everything is batch 1 and the clip length T fixed (the 3D network's pads and the head's stage-5 padding depend on
it). ``meta(...)`` is the JSON a user needs beside the file (``tools/export.py`` writes it).
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torchvision
from torch import nn

from .modules import Clip3DForExport, DetectorForExport, FrameForExport, check_exportable

__all__ = ["FORMATS", "SUFFIXES", "OPSET", "PARTS", "example_inputs", "export_module", "export_detector", "meta",
           "default_size", "export_parts_folder", "parts_cache_folder", "cached_parts"]

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
OPSET = 18  # RoiAlign with coordinate_transformation_mode (aligned) needs >= 16
# the parts, as files in the --parts folder: name -> (module class, input names, output names)
PARTS = {
    "detector": (DetectorForExport, ("keyframe", "clip", "image_size", "scale", "orig_size"),
                 ("boxes", "scores", "labels")),
    "clip_3d": (Clip3DForExport, ("clip", "image_size"), ("features",)),
    "frame": (FrameForExport, ("keyframe", "features", "image_size", "scale", "orig_size"),
              ("boxes", "scores", "labels")),
}


def example_inputs(model: nn.Module, part: str, *, height: int, width: int, clip_length: int,
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """Inputs of ``part`` for a padded frame of ``height`` x ``width`` (random raw frames, the whole frame real):
    what the exporter traces with."""
    g = torch.Generator().manual_seed(seed)
    channels = model.backbone_3d.in_channels
    clip = torch.rand(1, channels, clip_length, height, width, generator=g) * 255
    keyframe = torch.rand(1, 3, height, width, generator=g) * 255
    size = torch.tensor([height, width], dtype=torch.int64)
    inputs = {"keyframe": keyframe, "clip": clip, "image_size": size, "scale": torch.tensor([1.0, 1.0]),
              "orig_size": size.clone()}
    if part == "frame":
        with torch.no_grad():
            inputs["features"] = Clip3DForExport(model, fold_bn=False)(clip, size)
    return {name: inputs[name] for name in PARTS[part][1]}


@contextlib.contextmanager
def _nms_may_keep_any_number():
    """While exporting: torchvision's fake ``nms`` (0.29) makes its output size with the deprecated
    ``create_unbacked_symint``, whose lower bound is 2, and ``torch.export`` then asserts at run time that every NMS
    keeps at least 2 boxes (a frame with one detection, or none, fails: "Runtime assertion failed for expression
    u6 >= 2"). This registers, for the export only, the same fake with the bound 0 (``new_dynamic_size``)."""
    lib = torch.library.Library("torchvision", "FRAGMENT")

    def fake_nms(dets, scores, iou_threshold):
        keep = torch.library.get_ctx().new_dynamic_size(min=0)
        return dets.new_empty(keep, dtype=torch.long)

    torch.library.register_fake("torchvision::nms", fake_nms, lib=lib)
    try:
        yield
    finally:
        lib._destroy()


def _dynamic_shapes(inputs: Mapping[str, torch.Tensor], size_divisible: int) -> Dict[str, Any]:
    """Height and width dynamic in every input that has them: the frames' (multiples of ``size_divisible``) and the
    3D features' (the frames' over the feature stride, tied to them when the stride divides ``size_divisible``)."""
    from torch.export import Dim

    if size_divisible > 1:
        hb = Dim("h_blocks", min=1, max=8192 // size_divisible)
        wb = Dim("w_blocks", min=1, max=8192 // size_divisible)
        h, w = size_divisible * hb, size_divisible * wb
    else:
        h, w = Dim("height", min=2, max=8192), Dim("width", min=2, max=8192)
    spatial = {"keyframe": {2: h, 3: w}, "clip": {3: h, 4: w}}
    if "features" in inputs:
        frame = inputs["keyframe" if "keyframe" in inputs else "clip"].shape[-2]
        stride = frame // inputs["features"].shape[3]
        if size_divisible > 1 and size_divisible % stride == 0:
            spatial["features"] = {3: (size_divisible // stride) * hb, 4: (size_divisible // stride) * wb}
        else:
            spatial["features"] = {3: Dim("feature_h", min=1, max=8192), 4: Dim("feature_w", min=1, max=8192)}
    return {name: spatial.get(name) for name in inputs}


def export_module(module: nn.Module, inputs: Mapping[str, torch.Tensor], fmt: str, path: str, *,
                  output_names: Sequence[str], size_divisible: int = 32, dynamic: bool = True) -> None:
    """Writes ``module`` (an exportable module of ``modules``) run on ``inputs`` (name -> tensor, in its forward's
    order) to ``path`` in format ``fmt`` (one of ``FORMATS``). ``dynamic``: height and width dynamic (multiples of
    ``size_divisible``; not for TorchScript). Writes ``path`` directly: callers wanting atomicity pass a temporary."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    module = module.eval()
    args = tuple(inputs.values())
    with torch.no_grad():
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic; the deprecation notice
                traced = torch.jit.trace(module, args, check_trace=False)
            traced.save(path)
            return
        shapes = _dynamic_shapes(inputs, size_divisible) if dynamic else None
        with warnings.catch_warnings(), _nms_may_keep_any_number():
            warnings.filterwarnings("ignore", message=".*create_unbacked_symint.*")
            program = torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
            if fmt == "exported-program":
                torch.export.save(program, path)
                return
            onnx_program = torch.onnx.export(program, args, input_names=list(inputs), output_names=list(output_names),
                                             opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    onnx_program.save(path, external_data=False)


def export_detector(model: nn.Module, fmt: str, out: str, *, parts: bool = False, height: int, width: int,
                    clip_length: int, size_divisible: int = 32, fold_bn: bool = True) -> Dict[str, str]:
    """Exports ``model`` (an ``ActionDetector`` with its RPN) to ``out``: one file (the whole detector) or, with
    ``parts``, the folder ``out`` holding ``clip_3d<suffix>`` and ``frame<suffix>``. Returns part -> file path.
    ``model`` is not changed (BatchNorm is folded in a copy when ``fold_bn``)."""
    check_exportable(model)
    if height % size_divisible or width % size_divisible:
        raise ValueError(f"the export size {height}x{width} must be a multiple of INPUT.SIZE_DIVISIBLE "
                         f"({size_divisible}), as the padded frames are")
    from s3d_det.modeling.fusion import fold_batchnorm

    model = fold_batchnorm(model) if fold_bn else model.eval()
    names = ("clip_3d", "frame") if parts else ("detector",)
    files = {}
    for name in names:
        cls, _, outputs = PARTS[name]
        path = os.path.join(out, name + SUFFIXES[fmt]) if parts else out
        inputs = example_inputs(model, name, height=height, width=width, clip_length=clip_length)
        export_module(cls(model, fold_bn=False), inputs, fmt, path, output_names=outputs,
                      size_divisible=size_divisible, dynamic=fmt != "torchscript")
        files[name] = path
    return files


def meta(model: nn.Module, fmt: str, files: Mapping[str, str], *, height: int, width: int, clip_length: int,
         clip_stride: int, size_divisible: int, short_side: int, max_size: Optional[int], class_names: List[str],
         fold_bn: bool = True) -> Dict[str, Any]:
    """What a user of the exported files needs: per file its inputs and outputs (names, shapes; "H"/"W" the
    padded frame's size, dynamic or fixed), the input size and resize, the clip, the classes, versions."""
    dynamic = fmt != "torchscript"
    h, w = ("H", "W") if dynamic else (height, width)
    feature = example_inputs(model, "frame", height=height, width=width, clip_length=clip_length)["features"]
    fh, fw = (f"H/{height // feature.shape[3]}", f"W/{width // feature.shape[4]}") if dynamic else feature.shape[3:]
    c = model.backbone_3d.in_channels
    shapes = {"keyframe": [1, 3, h, w], "clip": [1, c, clip_length, h, w], "image_size": [2], "scale": [2],
              "orig_size": [2], "features": [1, feature.shape[1], feature.shape[2], fh, fw], "boxes": ["K", 4],
              "scores": ["K"], "labels": ["K"]}
    dtypes = {"image_size": "int64", "orig_size": "int64", "labels": "int64"}

    def io(names):
        return [{"name": n, "shape": shapes[n], "dtype": dtypes.get(n, "float32")} for n in names]

    return {
        "format": fmt,
        "files": {name: {"file": os.path.basename(path), "inputs": io(PARTS[name][1]), "outputs": io(PARTS[name][2])}
                  for name, path in files.items()},
        "batch": 1,
        "export_size": [height, width],
        "dynamic_size": dynamic,
        "size_divisible": size_divisible,
        "resize": {"short_side": short_side, "max_size": max_size},
        "clip_length": clip_length,
        "clip_stride": clip_stride,
        "feature_layer": model.feature_3d,
        "classes": list(class_names),
        "inputs_note": ("keyframe and clip: raw RGB in [0, 255] (float32), resized and zero-padded at the bottom "
                        "and right to a multiple of size_divisible; image_size: (h, w) before padding; scale: (sy, "
                        "sx) = resized / original; orig_size: the original frame's (h, w). The normalisation of "
                        "each network is inside the graph."),
        "outputs_note": "boxes x1, y1, x2, y2 in original-frame pixels; labels 0-based indices of classes",
        "conventions": model.conventions(),
        "batchnorm_folded": fold_bn,
        "opset": OPSET if fmt == "onnx" else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def default_size(short_side: int, size_divisible: int) -> Tuple[int, int]:
    """A 4:3 frame's padded size at ``short_side`` (height, width), rounded up to ``size_divisible``."""
    up = max(size_divisible, 1)
    return math.ceil(short_side / up) * up, math.ceil(short_side * 4 / 3 / up) * up


def export_parts_folder(model: nn.Module, cfg, fmt: str, out: str, *, class_names: List[str],
                        size: Optional[Tuple[int, int]] = None, fold_bn: bool = True,
                        replace: bool = False) -> Dict[str, str]:
    """``export_detector(..., parts=True)`` of ``model`` built from ``cfg`` into the folder ``out`` with its
    ``meta.json``, atomically: written in a temporary folder beside it and renamed onto ``out`` (which must not
    exist, or with ``replace`` is removed only once the new folder is complete). ``size``: the (height, width)
    traced (default: ``default_size`` of the config's test resize)."""
    import shutil
    import tempfile

    from s3d_det.utils.io import write_json

    divisible = cfg.INPUT.SIZE_DIVISIBLE or 1
    height, width = size or default_size(cfg.INPUT.SHORT_SIDE_TEST, divisible)
    settings = dict(height=height, width=width, clip_length=cfg.INPUT.CLIP_LENGTH)
    info = dict(clip_stride=cfg.INPUT.CLIP_STRIDE, size_divisible=divisible, short_side=cfg.INPUT.SHORT_SIDE_TEST,
                max_size=cfg.INPUT.MAX_SIZE, class_names=class_names, fold_bn=fold_bn, **settings)
    out = os.path.abspath(out)
    if replace and os.path.isdir(out) and not os.path.islink(out):
        foreign = sorted(f for f in os.listdir(out) if f != "meta.json" and os.path.splitext(f)[0] not in PARTS)
        if foreign:
            raise ValueError(f"{out} holds files an export did not write ({', '.join(foreign[:5])}): it is not "
                             "replaced; give another folder")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp_{os.getpid()}_")
    try:
        torch.manual_seed(0)
        files = export_detector(model, fmt, tmp, parts=True, size_divisible=divisible, fold_bn=fold_bn, **settings)
        write_json(os.path.join(tmp, "meta.json"), meta(model, fmt, files, **info))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; give the folder the mode mkdir would have
        if replace and os.path.lexists(out):
            shutil.rmtree(out) if os.path.isdir(out) and not os.path.islink(out) else os.remove(out)
        os.replace(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return {name: os.path.join(out, os.path.basename(path)) for name, path in files.items()}


def parts_cache_folder(cfg, *, weights: str, fmt: str = "onnx", cache_dir: Optional[str] = None) -> str:
    """Where ``cached_parts`` keeps the parts of the model ``cfg`` and ``weights`` make: a key digesting the config,
    the weights file (path, size, times, inode), the format, the torch versions and the code of ``s3d_det.deploy``
    and ``s3d_det.modeling``."""
    import glob
    import hashlib

    stat = os.stat(weights)
    digest = hashlib.sha256("\n".join([cfg.dump(), os.path.realpath(weights), str(stat.st_size), str(stat.st_mtime_ns),
                                       str(stat.st_ino), str(stat.st_ctime_ns), fmt, torch.__version__,
                                       torchvision.__version__]).encode())
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for source in sorted(glob.glob(os.path.join(package, "deploy", "*.py")) +
                         glob.glob(os.path.join(package, "modeling", "*.py"))):
        with open(source, "rb") as f:  # the code that builds and exports the model: a fix invalidates old exports
            digest.update(f.read())
    key = digest.hexdigest()[:16]
    root = cache_dir or os.environ.get("S3D_DET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "s3d_det")
    return os.path.join(root, "exported", key)


def cached_parts(model: nn.Module, cfg, *, weights: str, class_names: List[str], fmt: str = "onnx",
                 cache_dir: Optional[str] = None) -> Tuple[str, bool]:
    """The folder of ``model``'s exported parts in ``fmt`` under ``cache_dir`` (default ``$S3D_DET_CACHE``, else
    ``~/.cache/s3d_det``)/exported/<key> (``parts_cache_folder``), exported there first when missing. Returns
    (folder, whether it was made now)."""
    folder = parts_cache_folder(cfg, weights=weights, fmt=fmt, cache_dir=cache_dir)
    if os.path.isfile(os.path.join(folder, "meta.json")):
        return folder, False
    try:
        export_parts_folder(model, cfg, fmt, folder, class_names=class_names)
    except OSError as e:
        if not os.path.isfile(os.path.join(folder, "meta.json")):  # not another process's export beating ours
            raise
        del e
    return folder, True
