"""Builders and a plain +1-pixel IoU shared by test_tubes, test_linking and test_video_map."""
import numpy as np


def tube(frames, box):
    """(n, 5) tube with the same box on every frame."""
    frames = np.asarray(list(frames), dtype=np.float64)
    return np.column_stack([frames, np.tile(np.asarray(box, dtype=np.float64), (len(frames), 1))])


def dets_of(track, video=0, label=0, scores=None):
    """frame_dets rows (n, 8) for a tube (n, 5)."""
    scores = np.full(len(track), 0.9) if scores is None else np.asarray(scores, dtype=np.float64)
    n = len(track)
    return np.column_stack([np.full(n, video), track[:, 0], np.full(n, label), scores, track[:, 1:5]])


def ref_iou2d(a, b):
    w = max(0.0, min(a[2], b[2]) + 1 - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) + 1 - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)
