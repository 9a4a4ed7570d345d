"""Running an exported file with one call signature, whatever its format: ``load_exported(path)`` gives a runner
``runner(*tensors) -> tuple of torch tensors`` (the inputs in the order of the exported module's forward, e.g.
keyframe, clip, image_size, scale, orig_size), so that a demo or a benchmark switches backends by the file name.

- ``.onnx``: an onnxruntime ``InferenceSession`` on the CPU (``onnxruntime`` is imported only here, when needed).
- ``.pt2``: ``torch.export.load(path).module()``.
- ``.pt``: ``torch.jit.load`` (TorchScript; its height and width are fixed to the traced ones: ``meta`` says).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

__all__ = ["ExportedRunner", "load_exported", "read_meta"]


def read_meta(path: str) -> Optional[Dict[str, Any]]:
    """The meta JSON ``tools/export.py`` wrote beside ``path`` (``<file>.json``, or ``meta.json`` in a parts folder),
    or None when there is none."""
    for candidate in (path + ".json", os.path.join(os.path.dirname(path), "meta.json")):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    return None


class ExportedRunner:
    """A loaded exported file: ``runner(*tensors)`` -> tuple of torch tensors (CPU). ``backend`` says which
    runtime ("onnxruntime", "torchscript", "exported-program"); ``input_names`` as exported (ONNX only, else None);
    ``meta`` the JSON beside the file (``read_meta``) or None. A TorchScript file whose meta says it was traced at
    one size refuses frames (keyframe, clip) of another with a ValueError. ``threads``: intra-op threads for
    onnxruntime (None: its default)."""

    def __init__(self, path: str, *, threads: Optional[int] = None):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported file not found: {path}")
        self.path = path
        self.input_names = None
        self.meta = read_meta(path)
        # TorchScript is traced at one size: anything else would run with the traced anchors and top-n
        fixed = self.meta is not None and not self.meta.get("dynamic_size", True)
        self.fixed_size = tuple(self.meta["export_size"]) if fixed else None
        if path.endswith(".onnx"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            # onnxruntime's idle threads spin after each run by default, taking the cores from the PyTorch and
            # OpenCV work between calls (frame resizing, the other part): off
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in self._session.get_inputs()]
            self.backend = "onnxruntime"
        elif path.endswith(".pt2"):
            import warnings

            with warnings.catch_warnings():  # the stage-5 weights are shared by two modules: stored once, warned
                warnings.filterwarnings("ignore", message="No complete tensor found")
                self._module = torch.export.load(path).module()
            self.backend = "exported-program"
        elif path.endswith(".pt"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                self._module = torch.jit.load(path, map_location="cpu")
            self.backend = "torchscript"
        else:
            raise ValueError(f"{path}: unknown exported file type; expected .onnx, .pt2 or .pt (TorchScript)")

    def __call__(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.fixed_size is not None:
            for t in tensors:
                if t.dim() in (4, 5) and t.shape[1] in (1, 2, 3) and tuple(t.shape[-2:]) != self.fixed_size:
                    h, w = self.fixed_size
                    raise ValueError(f"{self.path} was traced at {h}x{w} (TorchScript keeps the traced size): got "
                                     f"frames of {t.shape[-2]}x{t.shape[-1]}")
        if self.backend == "onnxruntime":
            if len(tensors) != len(self.input_names):
                raise ValueError(f"{self.path} takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                                 f"got {len(tensors)}")
            feed = {name: np.ascontiguousarray(t.detach().cpu().numpy()) for name, t in zip(self.input_names, tensors)}
            return tuple(torch.from_numpy(o) for o in self._session.run(None, feed))
        with torch.no_grad():
            out = self._module(*tensors)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def load_exported(path: str, *, threads: Optional[int] = None) -> ExportedRunner:
    """The runner of the exported file ``path`` (see the module docstring)."""
    return ExportedRunner(path, threads=threads)
