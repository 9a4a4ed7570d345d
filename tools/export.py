#!/usr/bin/env python
"""Exports the whole action detector (or its two streaming parts) to ONNX, TorchScript or a torch.export program.

    python tools/export.py --config-file CFG --weights W --format onnx|torchscript|exported-program
        [--parts] [--height H --width W] [--force] [--no-fold-bn] OUT [KEY VALUE ...]

The model is built as the other tools build it (``build_model`` + ``MODEL.WEIGHTS``; ``KEY VALUE`` pairs override the
config). Without ``--parts`` OUT is one file (``.onnx``, ``.pt`` for TorchScript, ``.pt2`` for an exported program)
holding the whole detector: keyframe, clip, image_size, scale, orig_size -> boxes (original-frame pixels), scores,
labels; ``OUT.json`` beside it records what a user needs (input names and shapes, the input size and resize, clip
length and stride, class names, opset, torch version). With ``--parts`` OUT is a folder with ``clip_3d<ext>`` (clip,
image_size -> the 3D features) and ``frame<ext>`` (keyframe, features, image_size, scale, orig_size -> detections),
for streaming, and ``meta.json``. ``--height``/``--width``: the padded frame size traced (default: a 4:3 frame at
``INPUT.SHORT_SIDE_TEST``); ONNX and exported programs keep height and width dynamic (multiples of
``INPUT.SIZE_DIVISIBLE``), TorchScript is fixed to them. docs/inference.md, "Exporting the detector".

Action names come from the config's dataset ground truth when it is there, else they are "action K".
Exit codes: 0 done; 2 bad input (a missing weights file, an existing OUT without ``--force``, an unknown format, a
size that is not a multiple of INPUT.SIZE_DIVISIBLE, a model without its own RPN), on one line. Nothing
half-written is left: the output is written under a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from s3d_det.utils.errors import run_tool
from s3d_det.utils.io import atomic_write, write_json

FORMATS = ("onnx", "torchscript", "exported-program")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", metavar="CFG", required=True, help="the model's config")
    parser.add_argument("--weights", metavar="W", required=True, help="the model's weights (MODEL.WEIGHTS)")
    parser.add_argument("--format", required=True, metavar="FMT", help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("--parts", action="store_true", help="export the 3D part and the frame part (OUT a folder)")
    parser.add_argument("--height", type=int, help="padded frame height traced (a multiple of INPUT.SIZE_DIVISIBLE)")
    parser.add_argument("--width", type=int, help="padded frame width traced (a multiple of INPUT.SIZE_DIVISIBLE)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.add_argument("--no-fold-bn", action="store_true", help="keep the BatchNorms (default: folded)")
    parser.add_argument("out", metavar="OUT", help="the file (or, with --parts, the folder) to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser.parse_args(argv)


def check_args(args) -> None:
    """ValueError (one line) for bad arguments, before anything is built."""
    from s3d_det.deploy.export import SUFFIXES

    if args.format not in FORMATS:
        raise ValueError(f"--format: unknown format {args.format!r}; expected one of {', '.join(FORMATS)}")
    if len(args.opts) % 2:
        raise ValueError(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    if (args.height is None) != (args.width is None) or any(v is not None and v < 1 for v in (args.height, args.width)):
        raise ValueError("give --height and --width together, both positive")
    if not os.path.isfile(args.config_file):
        raise FileNotFoundError(f"--config-file: no such file: {args.config_file}")
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights: no such file: {args.weights}")
    suffix = SUFFIXES[args.format]
    if not args.parts and not args.out.endswith(suffix):
        raise ValueError(f"OUT {args.out!r}: a {args.format} file must end in {suffix} (the runtime picks the "
                         "backend by it)")
    taken = [p for p in ([args.out] if args.parts else [args.out, args.out + ".json"]) if os.path.lexists(p)]
    if taken and not args.force:
        raise ValueError(f"{taken[0]} exists: give --force to replace it, or another OUT")
    if args.format == "onnx":
        for module in ("onnx", "onnxscript"):
            try:
                __import__(module)
            except ImportError:
                raise ValueError(f"--format onnx needs the {module} package (pip install onnx onnxscript "
                                 "onnxruntime)") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    check_args(args)
    import torch

    from s3d_det.config import load_config
    from s3d_det.deploy.export import default_size, export_detector, export_parts_folder, meta
    from s3d_det.engine.defaults import action_names, build_model

    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu"])
    if cfg.MODEL.TWO_STREAM.FLOW_CONFIG:
        raise ValueError(f"{args.config_file}: a two-stream detector does not export; export each stream's config")
    names = action_names(cfg, args.weights)
    model = build_model(cfg, num_classes=len(names)).eval()
    divisible = cfg.INPUT.SIZE_DIVISIBLE or 1
    height, width = (args.height, args.width) if args.height else default_size(cfg.INPUT.SHORT_SIDE_TEST, divisible)
    settings = dict(height=height, width=width, clip_length=cfg.INPUT.CLIP_LENGTH)
    fold = not args.no_fold_bn
    torch.manual_seed(0)
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    info = dict(clip_stride=cfg.INPUT.CLIP_STRIDE, size_divisible=divisible, short_side=cfg.INPUT.SHORT_SIDE_TEST,
                max_size=cfg.INPUT.MAX_SIZE, class_names=names, fold_bn=fold, **settings)
    if args.parts:  # an existing OUT only with --force (check_args refused it otherwise)
        export_parts_folder(model, cfg, args.format, out, class_names=names, size=(height, width), fold_bn=fold,
                            replace=True)
    else:
        from s3d_det.deploy.export import SUFFIXES

        with atomic_write(out, SUFFIXES[args.format]) as tmp:
            export_detector(model, args.format, tmp, parts=False, size_divisible=divisible, fold_bn=fold,
                                    **settings)
            write_json(out + ".json", meta(model, args.format, {"detector": out}, **info))
    print(f"wrote {args.out} ({args.format}, {'parts' if args.parts else 'whole detector'}, traced at "
          f"{height}x{width})")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
