"""Ground truth, frame sources, clip sampling, datasets and the synthetic benchmark."""
from .annotations import (
    GT_KEYS,
    drop_duplicate_tubes,
    duplicate_tubes,
    idle_boxes,
    idle_people,
    keyframe_boxes,
    load_gt,
    make_gt,
    save_gt,
    split_videos,
    validate_gt,
)
from .errors import DataError

__all__ = [
    "DataError",
    "drop_duplicate_tubes",
    "duplicate_tubes",
    "GT_KEYS",
    "idle_boxes",
    "idle_people",
    "keyframe_boxes",
    "load_gt",
    "make_gt",
    "save_gt",
    "split_videos",
    "validate_gt",
]
