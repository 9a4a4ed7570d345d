"""Loop-by-loop restatements of the three published frame-AP codes, for tests only.

Each follows its original's control flow one detection at a time (dicts of GT boxes per frame, Python floats,
the original's summation order), so that ``frame_ap``'s vectorised implementation can be compared with them on
random inputs. They are written from the published algorithms, not copied.
"""
import sys

import numpy as np


def _gt_per_frame(gt, videos, label):
    boxes = {}
    for iv, video in enumerate(videos):
        for tube in gt["gttubes"].get(video, {}).get(label, []):
            for row in np.asarray(tube):
                boxes.setdefault((iv, int(row[0])), []).append([float(x) for x in row[1:5]])
    return {k: np.array(v) for k, v in boxes.items()}


def _iou_act(gts, box):
    ix = np.maximum(0, np.minimum(gts[:, 2] + 1, box[2] + 1) - np.maximum(gts[:, 0], box[0]))
    iy = np.maximum(0, np.minimum(gts[:, 3] + 1, box[3] + 1) - np.maximum(gts[:, 1], box[1]))
    inter = ix * iy
    area_g = (gts[:, 2] - gts[:, 0] + 1) * (gts[:, 3] - gts[:, 1] + 1)
    area_d = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    return inter / (area_g + area_d - inter)


def _iou_voc(gts, box):
    ix = np.maximum(0, np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]))
    iy = np.maximum(0, np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]))
    inter = ix * iy
    return inter / ((gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def _iou_yowo(a, b):  # a: detection, b: ground truth, plain Python floats
    if a[0] > b[2] or b[0] > a[2] or a[3] < b[1] or a[1] > b[3]:
        return 0
    inter = (min(a[2], b[2]) - max(a[0], b[0]) + 1) * (min(a[3], b[3]) - max(a[1], b[1]) + 1)
    union = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)
    return inter / union


def act_frame_map(gt, videos, dets, th=0.5):
    aps = []
    for label in range(len(gt["labels"])):
        d = dets[dets[:, 2] == label]
        g = _gt_per_frame(gt, videos, label)
        pr = np.empty((len(d) + 1, 2), dtype=np.float32)
        pr[0] = (1.0, 0.0)
        fn = sum(v.shape[0] for v in g.values())
        tp = fp = 0
        for i, j in enumerate(np.argsort(-d[:, 3])):
            k = (int(d[j, 0]), int(d[j, 1]))
            positive = False
            if k in g:
                ious = _iou_act(g[k], d[j, 4:8])
                amax = int(np.argmax(ious))
                if ious[amax] >= th:
                    positive = True
                    g[k] = np.delete(g[k], amax, 0)
                    if g[k].size == 0:
                        del g[k]
            if positive:
                tp, fn = tp + 1, fn - 1
            else:
                fp += 1
            pr[i + 1, 0] = tp / (tp + fp)
            pr[i + 1, 1] = tp / (tp + fn) if tp + fn else 0.0
        aps.append(np.sum((pr[1:, 1] - pr[:-1, 1]) * (pr[1:, 0] + pr[:-1, 0]) * 0.5))
    aps = 100 * np.array(aps)
    return aps, float(np.mean(aps))


def _voc_ap(precision, recall):
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    idx = np.where(recall[1:] != recall[:-1])[0] + 1
    return np.sum((recall[idx] - recall[idx - 1]) * precision[idx])


def voc_frame_map(gt, videos, dets, th=0.5):
    aps = {}
    for label in range(len(gt["labels"])):
        d = dets[dets[:, 2] == label]
        g = _gt_per_frame(gt, videos, label)
        num = sum(v.shape[0] for v in g.values())
        if num == 0:
            continue
        pr = np.empty((len(d), 2))
        seen = {}
        tp = fp = 0
        for i, j in enumerate(np.argsort(-d[:, 3])):
            k = (int(d[j, 0]), int(d[j, 1]))
            positive = False
            if k in g:
                seen.setdefault(k, np.zeros(len(g[k]), dtype=bool))
                ious = _iou_voc(g[k], d[j, 4:8])
                amax = int(np.argmax(ious))
                if ious[amax] >= th and not seen[k][amax]:
                    positive = seen[k][amax] = True
            tp, fp = (tp + 1, fp) if positive else (tp, fp + 1)
            pr[i] = (tp / (tp + fp), tp / num)
        aps[label] = 100 * _voc_ap(pr[:, 0], pr[:, 1])
    return aps, float(np.mean(list(aps.values()))) if aps else 0.0


def yowo_frame_map(gt, videos, dets, th=0.5):
    """Object-Detection-Metrics as YOWO runs it: one file per frame holding GT, files read in name order."""
    name = lambda iv, f: f"{videos[iv].replace('/', '_')}_{f:05d}"  # noqa: E731
    gts, frames_with_gt = [], set()
    for label in range(len(gt["labels"])):
        for (iv, f), boxes in _gt_per_frame(gt, videos, label).items():
            frames_with_gt.add((iv, f))
    per_file = {}
    for iv, video in enumerate(videos):  # GT lines of a file: labels and tubes in order
        for label, tubes in gt["gttubes"].get(video, {}).items():
            for tube in tubes:
                for row in np.asarray(tube):
                    per_file.setdefault(name(iv, int(row[0])), []).append((label, [float(x) for x in row[1:5]]))
    for fname in sorted(per_file):
        for label, box in per_file[fname]:
            gts.append((fname, label, box))
    det_files = {}
    for row in dets:
        k = (int(row[0]), int(row[1]))
        if k in frames_with_gt:
            det_files.setdefault(name(*k), []).append((int(row[2]), float(row[3]), [float(x) for x in row[4:8]]))
    detections = [(f, lab, s, b) for f in sorted(det_files) for (lab, s, b) in det_files[f]]
    aps = {}
    for c in sorted({g[1] for g in gts} | {d[1] for d in detections}):
        cd = sorted([d for d in detections if d[1] == c], key=lambda d: d[2], reverse=True)
        cg = [g for g in gts if g[1] == c]
        npos = len(cg)
        if npos == 0:
            continue
        used = {}
        for g in cg:
            used[g[0]] = used.get(g[0], 0) + 1
        used = {k: np.zeros(v) for k, v in used.items()}
        TP, FP = np.zeros(len(cd)), np.zeros(len(cd))
        for i, d in enumerate(cd):
            frame_gts = [g for g in cg if g[0] == d[0]]
            best, jmax = sys.float_info.min, None
            for j, g in enumerate(frame_gts):
                v = _iou_yowo(d[3], g[2])
                if v > best:
                    best, jmax = v, j
            if best >= th and used[d[0]][jmax] == 0:
                TP[i] = 1
                used[d[0]][jmax] = 1
            else:
                FP[i] = 1
        acc_tp, acc_fp = np.cumsum(TP), np.cumsum(FP)
        rec, prec = acc_tp / npos, acc_tp / (acc_fp + acc_tp)
        mrec, mpre = [0] + list(rec) + [1], [0] + list(prec) + [0]
        for i in range(len(mpre) - 1, 0, -1):
            mpre[i - 1] = max(mpre[i - 1], mpre[i])
        ap = 0
        for i in range(1, len(mrec)):
            if mrec[i] != mrec[i - 1]:
                ap = ap + (mrec[i] - mrec[i - 1]) * mpre[i]
        aps[c] = ap
    mean = 100 * (sum(aps.values()) / len(aps)) if aps else 0.0
    return {c: 100 * v for c, v in aps.items()}, mean

