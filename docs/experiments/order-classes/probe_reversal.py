"""Confusions of a trained synthetic clip classifier on its test clips as they are and reversed in time.

    S3D_DET_DATASETS=... python docs/experiments/order-classes/probe_reversal.py CONFIG WEIGHTS [KEY VALUE ...]

CONFIG: the classifier's config (e.g. configs/cls/synthetic/s3dg_tiny_order.yaml), WEIGHTS: its model_final.pth.
Prints top-1 and the confusion matrix (rows: true class, columns: predicted) for both; a network that reads the
order of the frames swaps the classes of each time-reversal pair on reversed clips."""
import sys

import numpy as np
import torch

from s3d_det.config import load_config
from s3d_det.data.video_dataset import view_batches
from s3d_det.engine.classification import build_classifier, build_cls_datasets, build_video_lists
from s3d_det.evaluation.classification import aggregate_views, classification_metrics


def main(argv):
    cfg = load_config(argv[0], ["MODEL.WEIGHTS", argv[1], *argv[2:]])
    torch.set_num_threads(2)
    train, test = build_video_lists(cfg, make_synthetic=False)
    _, dataset = build_cls_datasets(cfg, train, test)
    model = build_classifier(cfg, len(test.classes)).eval()
    labels = np.array([r.label for r in test.records])
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, collate_fn=view_batches)
    for reverse in (False, True):
        logits, videos = [], []
        with torch.no_grad():
            for batch in loader:
                clips = batch["clips"].flip(2) if reverse else batch["clips"]  # (N, C, T, H, W)
                logits.append(model(clips).numpy())
                videos.append(np.repeat(batch["videos"].numpy(), batch["views_per_item"]))
        probs = aggregate_views(np.concatenate(logits), np.concatenate(videos), len(labels))
        result = classification_metrics(probs, labels, test.classes)
        print(f"{'reversed' if reverse else 'as is'}: top-1 {result.top1:.2f}% of {len(labels)}")
        width = max(map(len, test.classes))
        print(" " * width + " " + " ".join(f"{c[:8]:>8}" for c in test.classes))
        for name, row in zip(test.classes, result.confusion):
            print(f"{name:>{width}} " + " ".join(f"{v:8d}" for v in row))


if __name__ == "__main__":
    main(sys.argv[1:])
