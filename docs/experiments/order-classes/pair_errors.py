"""Where in a tube a detector confuses the classes of a time-reversal pair.

    python docs/experiments/order-classes/pair_errors.py GT.pkl DETECTIONS.npz [DETECTIONS.npz ...]

For every ground-truth box of the test split, the best-scoring detection of its class and of its pair's class
among the detections overlapping it (IoU >= 0.5) are compared; the box counts as told apart when its own class
scores higher. Printed per class and per place of the frame in its tube (first, middle, last third)."""
import sys

import numpy as np

from s3d_det.data.annotations import load_gt
from s3d_det.evaluation.detections import load_detections

PAIRS = {"arm_up": "arm_down", "arm_down": "arm_up", "sit_down": "stand_up", "stand_up": "sit_down"}


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1 + 1, 0, None) * np.clip(y2 - y1 + 1, 0, None)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (area + areas - inter)


def main(gt_path, paths):
    gt = load_gt(gt_path)
    labels = list(gt["labels"])
    for path in paths:
        dets = load_detections(path)
        fd = dets.per_frame
        table = {}
        for v_index, video in enumerate(dets.videos):
            for label, tubes in gt["gttubes"][video].items():
                name = labels[label]
                pair = labels.index(PAIRS[name])
                for tube in tubes:
                    n = len(tube)
                    for i, (frame, *box) in enumerate(tube):
                        here = (fd.video == v_index) & (fd.frame == int(frame))
                        near = here & (iou(np.array(box), fd.boxes) >= 0.5)
                        own = fd.score[near & (fd.label == label)].max(initial=0.0)
                        other = fd.score[near & (fd.label == pair)].max(initial=0.0)
                        key = (name, min(2, 3 * i // n))
                        table.setdefault(key, []).append(own > other)
        print(path)
        print(f"{'class':>9} {'first':>7} {'middle':>7} {'last':>7}  (% of boxes whose class outscores its pair)")
        for name in labels:
            cells = [table.get((name, third), []) for third in range(3)]
            print(f"{name:>9} " + " ".join(f"{100 * np.mean(c):7.1f}" if c else "      -" for c in cells))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
