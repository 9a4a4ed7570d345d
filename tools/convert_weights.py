#!/usr/bin/env python
"""Converts public S3D / S3D-G checkpoints to s3d_det's keys.

    python tools/convert_weights.py SOURCE IN OUT [--allow-missing]
    python tools/convert_weights.py tf-to-npz TF_CHECKPOINT OUT.npz

SOURCE is one of torchvision_s3d, milnce_s3dg, tfslim_s3dg (see ``s3d_det.checkpoint``). IN is read
without running any code in it (``torch.load(weights_only=True)``, ``numpy.load(allow_pickle=False)``).
OUT is written atomically as ``{"state_dict", "meta"}``: load it with ``MODEL.WEIGHTS_3D`` or
``s3d_det.checkpoint.load_pretrained_3d``. The report lists missing and unused keys; a missing key
fails the conversion unless ``--allow-missing`` is given.

``tf-to-npz`` reads a TensorFlow checkpoint (needs TensorFlow, which s3d_det never imports otherwise)
and writes every variable to an ``.npz`` keyed by its TF name, the input of ``tfslim_s3dg``.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import numpy as np

from s3d_det.checkpoint import SOURCES, convert_checkpoint, load_state_dict_file, save_converted
from s3d_det.utils.errors import INPUT_ERRORS, report_error, run_tool
from s3d_det.utils.io import atomic_write


def tf_to_npz(checkpoint: str, out: str) -> int:
    """Writes every variable of a TensorFlow checkpoint to ``out`` (.npz); returns the count."""
    try:
        import tensorflow as tf  # optional dependency, only for this command
    except ImportError:
        raise SystemExit("tf-to-npz needs TensorFlow: pip install tensorflow (it is used for nothing else)")
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except Exception as e:  # noqa: BLE001 - report which file failed
        raise SystemExit(f"cannot read TensorFlow checkpoint {checkpoint}: {e}")
    arrays = {name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())}
    with atomic_write(out, ".npz") as tmp:
        np.savez(tmp, **arrays)
    return len(arrays)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=SOURCES + ("tf-to-npz",), help="checkpoint family, or tf-to-npz")
    parser.add_argument("input", help="the public checkpoint file (for tf-to-npz: the TF checkpoint prefix)")
    parser.add_argument("output", help="where to write the converted file")
    parser.add_argument("--allow-missing", action="store_true", help="write the file even if keys are missing")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.source == "tf-to-npz":
        count = tf_to_npz(args.input, args.output)
        print(f"wrote {count} variables to {args.output}")
        return 0
    try:
        state_dict = load_state_dict_file(args.input)
        converted = convert_checkpoint(state_dict, args.source)
    except INPUT_ERRORS as e:  # a missing, unreadable or refused file, keys of other shapes
        return report_error(e)
    print(converted.report())
    if converted.missing_keys and not args.allow_missing:
        print(f"error: {len(converted.missing_keys)} keys missing; nothing written (--allow-missing to write anyway)",
              file=sys.stderr)
        return 1
    save_converted(converted, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
