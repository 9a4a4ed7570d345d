"""Frame-mAP in the published protocols, video-mAP with tube linking, and the detections file format."""
from .detections import Detections, check_detections, load_detections, save_detections
from .frame_map import PROTOCOLS, FrameAPResult, frame_ap, iou2d

__all__ = [
    "Detections",
    "FrameAPResult",
    "PROTOCOLS",
    "check_detections",
    "frame_ap",
    "iou2d",
    "load_detections",
    "save_detections",
]
