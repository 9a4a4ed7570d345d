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

import sys

import torch

from s3d_det.config import load_config
from s3d_det.engine import launch
from s3d_det.engine.classification import train_classifier
from s3d_det.engine.defaults import default_argument_parser
from s3d_det.utils.errors import INPUT_ERRORS, report_error, run_tool


def main(args) -> None:
    cfg = load_config(args.config_file, args.opts)
    train_classifier(cfg, resume=args.resume, eval_only=args.eval_only)


def checked_main(args) -> None:
    """``main`` in this process (each spawned process runs it): bad input ends it with ``error: <one line>`` and
    exit status 2 (``s3d_det.utils.errors``)."""
    status = run_tool(main, args)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    args = default_argument_parser(__doc__.split("\n\n")[0]).parse_args()
    try:
        launch(checked_main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except INPUT_ERRORS as e:  # launch's own checks (--num-gpus, --dist-url)
        sys.exit(report_error(e))
    except torch.multiprocessing.ProcessExitedException as e:  # a spawned process reported bad input
        if e.exit_code != 2:
            raise
        sys.exit(2)
