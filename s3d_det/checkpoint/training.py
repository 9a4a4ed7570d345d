"""Training checkpoints: written atomically, named by ``last_checkpoint``, read with
``torch.load(weights_only=True)``; and the RNG states that make a resumed run continue exactly.

A checkpoint is a dict of tensors and plain Python values (detectron2's layout: ``"model"``,
``"optimizer"``, ``"scheduler"``, ``"iteration"``, plus whatever else the trainer keeps), so loading it
never runs code.
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..utils.io import atomic_write
from .io import read_torch_file

__all__ = ["LAST_CHECKPOINT", "save_checkpoint", "last_checkpoint", "load_checkpoint", "rng_state",
           "set_rng_state", "first_non_finite", "check_shapes"]

LAST_CHECKPOINT = "last_checkpoint"


def save_checkpoint(output_dir: str, name: str, state: Dict[str, Any]) -> str:
    """Writes ``state`` to ``output_dir/<name>.pth``, then ``output_dir/last_checkpoint`` (the file name),
    each atomically: ``last_checkpoint`` always names a complete file, and a crash while saving leaves the
    previous checkpoint and ``last_checkpoint`` as they were. Returns the checkpoint's path."""
    filename = f"{name}.pth"
    path = os.path.join(output_dir, filename)
    with atomic_write(path, ".pth") as tmp:
        with open(tmp, "wb") as f:  # through a Python file: a full disk is OSError(ENOSPC), not a RuntimeError
            torch.save(state, f)
    with atomic_write(os.path.join(output_dir, LAST_CHECKPOINT)) as tmp:
        with open(tmp, "w") as f:
            f.write(filename)
    return path


def last_checkpoint(output_dir: str) -> Optional[str]:
    """The path that ``output_dir/last_checkpoint`` names, or None when there is no such file."""
    record = os.path.join(output_dir, LAST_CHECKPOINT)
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        filename = f.read().strip()
    if not filename:
        raise ValueError(f"{record} is empty; expected the file name of a checkpoint")
    path = os.path.join(output_dir, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{record} names {filename!r}, which does not exist in {output_dir}")
    return path


def load_checkpoint(path: str, what: str = "checkpoint") -> Dict[str, Any]:
    """The dict saved at ``path``, tensors on the CPU, read with ``weights_only=True``. A file that is missing,
    empty, truncated, not a torch file or asks for code is a one-line error naming it (``what``: which file it
    is, e.g. "MODEL.WEIGHTS"); see ``s3d_det.checkpoint.io.read_torch_file``."""
    state = read_torch_file(path, what)
    if not isinstance(state, dict):
        raise ValueError(f"{what} {path} holds a {type(state).__name__}; expected a checkpoint dict")
    return state


def first_non_finite(state: Dict[str, Any]) -> Optional[str]:
    """The name of the first floating-point tensor of ``state`` (a state dict) holding a NaN or an infinity, with
    what it holds (``"body.0.weight (nan)"``), or None when all are finite."""
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            kind = "nan" if torch.isnan(value).any() else "inf"
            return f"{name} ({kind})"
    return None


def check_shapes(state: Dict[str, Any], model: torch.nn.Module, path: str, *, prefix: str = "", limit: int = 3) -> None:
    """Raises one-line ValueError naming ``path``, the first ``limit`` keys of ``state`` whose tensors' shapes
    differ from ``model``'s and both shapes (checkpoint, model): weights of another width or number of classes.
    Keys the model does not have are left to the caller. ``prefix`` is shown before each key."""
    own = model.state_dict()
    wrong = [(key, tuple(value.shape), tuple(own[key].shape)) for key, value in state.items()
             if key in own and isinstance(value, torch.Tensor) and tuple(value.shape) != tuple(own[key].shape)]
    if wrong:
        listed = "; ".join(f"{prefix}{key} is {a} in the file, {b} in the model" for key, a, b in wrong[:limit])
        more = f" (and {len(wrong) - limit} more)" if len(wrong) > limit else ""
        raise ValueError(f"{path} does not fit the model: {len(wrong)} tensors of other shapes: {listed}{more}; "
                         "expected weights of the same architecture (width, number of classes) as the config's")


def rng_state() -> Dict[str, Any]:
    """The states of this process's global RNGs (Python, numpy, torch CPU and, once CUDA is in use, the
    current CUDA device) as tensors and plain values, for ``set_rng_state``."""
    version, mt, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restores the RNG states of ``rng_state()`` (the CUDA one when both have CUDA)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
