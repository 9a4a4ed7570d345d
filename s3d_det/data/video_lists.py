"""The official train/test lists of the video-classification datasets, read into one named type.

    UCF101        classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
    HMDB-51       <class>_test_split{1,2,3}.txt ("<video>.avi 1|2|0": 1 train, 2 test, 0 unused)
    Kinetics      the CSVs "label,youtube_id,time_start,time_end,split"; files <youtube_id>_<start:06d>_<end:06d>.mp4
    Something-Something v2   the labels JSON and the train / validation JSONs (left/right classes: no flip)

Each reader returns a ``VideoList``: the class names (in the dataset's official order), one ``VideoRecord`` per
listed video that is on disk, and for Kinetics the listed videos that are missing. A video is found as a folder of
frames ``<root>/Frames/<video>/`` or a video file; see each reader for the layouts looked at.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

__all__ = ["VideoRecord", "VideoList"]


@dataclass(frozen=True)
class VideoRecord:
    """One listed video.

    Attributes:
        video: its id, as messages name it: the list's path without extension, e.g.
            ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01"``.
        path: where its frames are: a folder of numbered images or a video file (absolute, or relative to the
            working directory as the root was given).
        label: index into ``VideoList.classes``.
    """

    video: str
    path: str
    label: int


@dataclass
class VideoList:
    """A dataset split's videos.

    Attributes:
        dataset: "ucf101", "hmdb51", "kinetics", "ssv2" or "synthetic_clips".
        subset: "train" or "test".
        classes: class names, index = label.
        records: the videos, in the list's order.
        hflip: whether a horizontal flip keeps every label (False for Something-Something v2, whose classes
            name left and right).
        missing: listed videos not found on disk (left out of ``records``).
        sources: the list files read.
    """

    dataset: str
    subset: str
    classes: List[str]
    records: List[VideoRecord]
    hflip: bool = True
    missing: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
