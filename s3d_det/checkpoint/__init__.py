"""Weights from files: public checkpoints converted to our keys, our own training checkpoints, safe reading.

- ``video``: the 3D networks' public checkpoints (torchvision S3D, MIL-NCE S3D-G, TF-slim S3D-G) converted and
  loaded (``convert_checkpoint``, ``load_pretrained_3d``, ``save_converted``, ``load_converted``).
- ``image``: the keyframe detector's 2D weights (torchvision Faster R-CNN / ResNet, detectron2 ``.pkl``) with
  their input conventions (``load_2d_weights``, ``load_2d_into``).
- ``training``: the trainer's checkpoints (``save_checkpoint``, ``load_checkpoint``, ``last_checkpoint``, RNG
  state, shape and finiteness checks).
- ``io``: reading files from elsewhere without running code (``safe_pickle_load``, ``read_torch_file``).
"""
from .image import Converted2D, load_2d_into, load_2d_weights
from .io import UnsafePickleError, read_torch_file, safe_pickle_load
from .training import check_shapes, last_checkpoint, load_checkpoint, save_checkpoint
from .video import SOURCES, convert_checkpoint, load_converted, load_pretrained_3d, load_state_dict_file, save_converted

__all__ = ["SOURCES", "convert_checkpoint", "load_converted", "load_pretrained_3d", "load_state_dict_file",
           "save_converted", "Converted2D", "load_2d_into", "load_2d_weights", "check_shapes", "last_checkpoint",
           "load_checkpoint", "save_checkpoint", "UnsafePickleError", "read_torch_file", "safe_pickle_load"]
