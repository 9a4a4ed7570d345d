"""Reading files that come from elsewhere without running code, one-line errors naming the file.

- ``safe_pickle_load``: pickles (ground truth, detectron2 ``.pkl`` weights) through an unpickler that admits only
  dicts, lists, tuples, numbers, strings and numpy arrays; anything else is ``UnsafePickleError`` before it runs.
- ``read_torch_file``: ``torch.load(weights_only=True)`` with one-line errors for missing, empty, truncated, text
  or code-carrying files (torch's advice to load with ``weights_only=False`` is never passed on).

Writing goes through ``s3d_det.utils.io.atomic_write`` (a temporary renamed into place; a full disk is named).
"""
from __future__ import annotations

import io
import os
import pickle
import re

import numpy as np

__all__ = ["UnsafePickleError", "safe_pickle_load", "read_torch_file"]

# The only globals a GT pickle may name: what numpy needs to rebuild arrays, dtypes and scalars (under their
# numpy 1 and numpy 2 module names), and OrderedDict, which is a dict.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_module, "_reconstruct")] = np._core.multiarray._reconstruct
    _NUMPY_GLOBALS[(_module, "scalar")] = np._core.multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _NUMPY_GLOBALS[(_module, "_frombuffer")] = np._core.numeric._frombuffer


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 writes for ``bytes`` in protocol-2 pickles (``_codecs.encode(text, "latin1")``, e.g. the
    buffer of a numpy array); any other codec is refused."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_SAFE_GLOBALS = dict(_NUMPY_GLOBALS)
_SAFE_GLOBALS[("collections", "OrderedDict")] = dict
_SAFE_GLOBALS[("_codecs", "encode")] = _latin1_bytes


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed set; nothing in it was run."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # Python 2 pickles: str -> latin1, as numpy requires
        self._source = source

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load: the pickle asks for {module}.{name}; only dicts, lists, "
                "tuples, numbers, strings and numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refusing to load: the pickle uses persistent ids")


def safe_pickle_load(path: str):
    """Loads a pickle that may hold only dicts, lists, tuples, numbers, strings and numpy arrays.

    Python 2 pickles load (their byte strings are decoded as latin1). Raises :class:`UnsafePickleError` naming
    the file for anything else, before it runs.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source=path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def read_torch_file(path: str, what: str = "weights file"):
    """What ``torch.save`` wrote at ``path``, tensors on the CPU, read with ``torch.load(weights_only=True)``.

    Errors are one line naming ``path`` (``what`` says which file it is, e.g. "MODEL.WEIGHTS"): FileNotFoundError
    when it is missing; ValueError when it asks for code (a global that is not a tensor type; nothing is run; torch's
    advice to load it with ``weights_only=False`` is never passed on), or is empty, truncated or not a torch file.
    """
    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    expected = "expected a file written by torch.save (a zip archive of tensors)"
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path} is empty; {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader error becomes one line naming the file
        message = str(e)
        code = re.search(r"GLOBAL ([\w.]+)", message)
        if code:  # never pass on torch's advice to load with weights_only=False
            raise ValueError(f"{what} {path}: refusing to load: it asks for {code.group(1)}, which is code, "
                                    "not weights; expected only tensors, numbers, strings and containers of them "
                                    "(nothing in it was run)") from None
        if "central directory" in message or isinstance(e, EOFError):
            reason = "truncated (an interrupted download or copy?)"
        elif isinstance(e, (KeyError, UnicodeDecodeError)) or "invalid load key" in message:
            reason = "not a PyTorch file"
        else:
            reason = "not a readable PyTorch file (" + type(e).__name__ + ")"
        raise ValueError(f"{what} {path} is {reason}; {expected}") from None
