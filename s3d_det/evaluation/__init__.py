"""Frame-mAP in the published protocols, video-mAP with tube linking, and the detections file format."""
from .detections import Detections, FrameDetections, check_detections, load_detections, save_detections
from .frame_map import PROTOCOLS, FrameAPResult, frame_ap, iou2d
from .linking import LinkingConfig, link_tubes
from .tubes import iou3dt, nms3dt
from .video_map import VideoAPResult, video_ap, video_map

__all__ = [
    "Detections",
    "FrameDetections",
    "FrameAPResult",
    "LinkingConfig",
    "PROTOCOLS",
    "VideoAPResult",
    "check_detections",
    "frame_ap",
    "iou2d",
    "iou3dt",
    "link_tubes",
    "load_detections",
    "nms3dt",
    "save_detections",
    "video_ap",
    "video_map",
]
