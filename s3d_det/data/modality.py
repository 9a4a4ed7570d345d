"""What a 3D network's clips are made of: RGB frames, or optical flow stored as the community stores it.

``INPUT.MODALITY`` chooses one ``Modality`` for a run:

=========  =======  ==========================================================================================
name       C        clips read from
=========  =======  ==========================================================================================
``rgb``    3        the video's frames (``Frames/<video>/``, or the video file)
``flow``   2        ``<flow root>/<video>/x/{k:05d}.jpg`` and ``y/{k:05d}.jpg``: flow from frame k to k+1,
                    +-bound px mapped to [0, 255] (``tools/prepare_data.py flow``; I3D's convention)
``brox``   3        ``<flow root>/<video>/{k:05d}.jpg``: the 3-channel Brox flow JPEGs ACT and MOC distribute
=========  =======  ==========================================================================================

Alignment: RGB frame k has flow k (k -> k+1); the last frame, which has no flow of its own, repeats flow N-1, so a
flow source has as many frames as the video and a clip of frames [a, b] is the flow clip [a, b] frame for frame.
The detector still finds people on the RGB keyframe: a flow sample's ``clip`` is flow, its ``keyframe`` RGB.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .frames import FrameSource

__all__ = ["MODALITIES", "MODALITY_CHANNELS", "FLOW_CONVENTION", "Modality"]

MODALITIES = ("rgb", "flow", "brox")
MODALITY_CHANNELS = {"rgb": 3, "flow": 2, "brox": 3}
# The input convention of a flow network trained here (no preset): JPEG values 0..255 -> [-1, 1], i.e. +-bound px
# -> +-1, as I3D feeds TV-L1 flow (pixel units: mean 127.5, std 127.5 on every channel).
FLOW_CONVENTION = {"pixel_mean": (127.5,), "pixel_std": (127.5,)}


@dataclass(frozen=True)
class Modality:
    """A clip modality.

    Attributes:
        name: one of ``MODALITIES``.
        flow_root: folder holding ``<video>/`` flow folders (``flow``, ``brox``); unused for ``rgb``.
    """

    name: str = "rgb"
    flow_root: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name not in MODALITIES:
            raise ValueError(f"unknown modality {self.name!r}; expected one of {', '.join(MODALITIES)}")
        if self.name != "rgb" and not self.flow_root:
            raise ValueError(f"modality {self.name!r} needs the folder of its flow (DATASETS.FLOW_DIR)")

    @property
    def is_flow(self) -> bool:
        return self.name != "rgb"

    @property
    def channels(self) -> int:
        """C of a clip (B, C, T, H, W)."""
        return MODALITY_CHANNELS[self.name]

    @property
    def flow_x(self) -> Optional[int]:
        """The channel holding the flow's x component (mirrored by a flip: x -> 255 - x); None for RGB."""
        if self.name == "flow":
            return 0
        if self.name == "brox":  # ACT's JPEGs keep x in the red channel (its flip inverts it), RGB channel 0 here
            return 0
        return None

    def flow_path(self, video: str) -> str:
        return os.path.join(self.flow_root, video)

    def open_flow(self, video: str) -> FrameSource:
        """The flow source of ``video`` (``<flow_root>/<video>``): ``num_frames`` is the video's frame count
        (the last repeats flow N-1), ``read(frames) -> {frame: (H, W, C) uint8}``. FileNotFoundError naming the
        folder when it is missing."""
        from .flow import BroxFlowSource, FlowFolderSource

        path = self.flow_path(video)
        if not os.path.isdir(path):
            what = "x/ and y/ flow JPEGs" if self.name == "flow" else "3-channel Brox flow JPEGs"
            raise FileNotFoundError(f"flow of video {video!r} is missing: expected a folder of {what} at {path}")
        return FlowFolderSource(path) if self.name == "flow" else BroxFlowSource(path)
