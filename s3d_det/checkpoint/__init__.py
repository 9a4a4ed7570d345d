"""Weights from files: public checkpoints converted to our keys, our own training checkpoints, safe reading.

- ``video``: the 3D networks' public checkpoints (torchvision S3D, MIL-NCE S3D-G, TF-slim S3D-G) converted and
  loaded (``convert_checkpoint``, ``load_pretrained_3d``, ``save_converted``, ``load_converted``).
- ``image``: the keyframe detector's 2D weights (torchvision Faster R-CNN / ResNet, detectron2 ``.pkl``) with
  their input conventions (``load_2d_weights``, ``load_2d_into``).
- ``training``: the trainer's checkpoints (``save_checkpoint``, ``load_checkpoint``, ``last_checkpoint``, RNG
  state, shape and finiteness checks).
- ``io``: reading files from elsewhere without running code (``safe_pickle_load``, ``read_torch_file``); it needs
  only numpy, so the ground-truth loaders import it without torch.

The names below are imported from their module on first use (PEP 562), so ``s3d_det.checkpoint.io`` stays light.
"""
import importlib

_WHERE = {
    "SOURCES": "video", "convert_checkpoint": "video", "load_converted": "video", "load_pretrained_3d": "video",
    "load_state_dict_file": "video", "save_converted": "video",
    "Converted2D": "image", "load_2d_into": "image", "load_2d_weights": "image",
    "check_shapes": "training", "last_checkpoint": "training", "load_checkpoint": "training",
    "save_checkpoint": "training",
    "UnsafePickleError": "io", "read_torch_file": "io", "safe_pickle_load": "io",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 's3d_det.checkpoint' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
