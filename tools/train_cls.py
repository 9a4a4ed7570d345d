#!/usr/bin/env python
"""Trains (or, with --eval-only, evaluates) the clip classifier a config describes.

    python tools/train_cls.py --config-file configs/cls/synthetic/s3dg_tiny.yaml [--resume] [--eval-only]
                              [--num-gpus N] [KEY VALUE ...]

The same command line and engine as tools/train_det.py. Checkpoints, metrics.json, TensorBoard events and the
test results go to OUTPUT_DIR: cls_results.json (top-1, top-5, mean class accuracy, per class), per_class.txt,
confusion.png, and weights_3d.pth, the trained network in the format MODEL.WEIGHTS_3D loads (for fine-tuning, or
for the detector: docs/training.md). Datasets: DATASETS.NAME ucf101, hmdb51, kinetics, ssv2 (official lists,
docs/datasets.md) or synthetic_clips (made on first use).
"""
from __future__ import annotations

from s3d_det.config import load_config
from s3d_det.engine.classification import train_classifier
from s3d_det.engine.defaults import default_argument_parser, launch_tool


def main(args) -> None:
    cfg = load_config(args.config_file, args.opts)
    train_classifier(cfg, resume=args.resume, eval_only=args.eval_only, config_file=args.config_file,
                     opts=args.opts)


if __name__ == "__main__":
    launch_tool(main, default_argument_parser(__doc__.split("\n\n")[0]).parse_args())
