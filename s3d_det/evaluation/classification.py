"""Video-classification evaluation: the multi-view test protocol, top-k accuracy, mean class accuracy, the
confusion matrix, a per-class table and a confusion-matrix figure.

Protocol. A video is tested on several views (e.g. 10 temporal clips x 3 spatial crops); ``aggregate_views``
turns each view's logits into softmax probabilities and averages them over the video's views (MMAction2's
``average_clips='prob'``; PySlowFast's test ensemble of its head's softmax outputs, whose ranking is the same
for ``sum`` and mean). This is not the average of the logits: a view cannot give a class more than 1.

Metrics (``classification_metrics``), all in percent over the videos:

* top-k accuracy: the share of videos whose true class is among the first k classes when a video's classes are
  ranked by decreasing score, **equal scores by increasing class index** (a stable sort of ``-score``). So top-1
  is ``numpy.argmax`` (the first maximum), the prediction the confusion matrix and mean class accuracy use, as in
  MMAction2's ``mean_class_accuracy``/``confusion_matrix``. MMAction2's ``top_k_accuracy``
  (``numpy.argsort(scores)[:, -k:]``) and PySlowFast's ``torch.topk`` leave ties to the sort implementation;
  on continuous scores (softmax averages) ties do not happen and all agree. k >= K gives 100.
* mean class accuracy: the mean, over the classes that have test videos, of each class's top-1 recall (its
  videos predicted as it / its videos). Classes without test videos are left out and listed
  (``classes_without_videos``). MMAction2 also leaves out classes that are neither a label nor a prediction,
  but counts a class that is only predicted as 0; with every class in the test set the two agree.
* confusion: (K, K) counts, rows the true class, columns the top-1 prediction.

The metric core is pure numpy and never changes its inputs. Bad input (shapes that disagree, a label outside
0..K-1, a score or logit that is NaN or infinite, a video without a view) is a one-line ValueError naming the
row, video or class.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from s3d_det.utils.io import atomic_write
from s3d_det.utils.table import format_table

__all__ = ["ClassificationResult", "aggregate_views", "classification_metrics", "format_per_class_table",
           "plot_confusion"]


@dataclasses.dataclass(frozen=True)
class ClassificationResult:
    """Classification metrics of a test set (percentages in 0..100).

    Attributes:
        classes: the K class names, in label order.
        top1, top5: top-1 and top-5 accuracy (percent).
        accuracy: k -> top-k accuracy (percent) for every k asked for, and 1 and 5.
        mean_class_accuracy: mean of the per-class top-1 recalls over the classes with test videos (percent).
        per_class: class name -> ``{"videos": n, "top1": %, "top5": %, "top<k>": % (each other k),
            "most_confused_with": the class (other than itself) its videos were most often predicted as (ties:
            lowest index; None if never wrong), "most_confused_count": how many of its videos}``; the
            percentages are None for a class without test videos.
        confusion: (K, K) int64, read-only; rows the true class, columns the top-1 prediction.
        num_videos: number of videos scored.
        classes_without_videos: the classes left out of ``mean_class_accuracy``, in label order.
    """

    classes: Tuple[str, ...]
    top1: float
    top5: float
    accuracy: Dict[int, float]
    mean_class_accuracy: float
    per_class: Dict[str, Dict[str, object]]
    confusion: np.ndarray
    num_videos: int
    classes_without_videos: Tuple[str, ...]

    def to_dict(self) -> dict:
        """Plain Python types only (floats, ints, None, lists, dicts with string keys), for ``json.dump``."""
        return {
            "num_videos": int(self.num_videos),
            "top1": float(self.top1),
            "top5": float(self.top5),
            "accuracy": {str(k): float(v) for k, v in self.accuracy.items()},
            "mean_class_accuracy": float(self.mean_class_accuracy),
            "classes": list(self.classes),
            "classes_without_videos": list(self.classes_without_videos),
            "per_class": {name: {key: _plain(value) for key, value in entry.items()}
                          for name, entry in self.per_class.items()},
            "confusion": self.confusion.tolist(),
        }


def _plain(value):
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _first_bad_row(array: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])


def _indices(name: str, values: np.ndarray, count: int, allow_empty: bool = False) -> np.ndarray:
    """``values`` as int64, each in 0..count-1; ValueError naming ``name`` and the first row that is not."""
    if (values.size or not allow_empty) and values.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {values.dtype}")
    values = values.astype(np.int64)
    outside = np.flatnonzero((values < 0) | (values >= count))
    if outside.size:
        row = int(outside[0])
        raise ValueError(f"{name} row {row} is {int(values[row])}, outside 0..{count - 1}")
    return values


def aggregate_views(logits: np.ndarray, video_index: np.ndarray, num_videos: int) -> np.ndarray:
    """The multi-view test protocol: softmax of each view's logits, averaged over each video's views.

    Args:
        logits: (N_views, K) float, the classifier's logits of every view (e.g. 10 clips x 3 crops a video),
            in any order.
        video_index: (N_views,) int, the video (0..num_videos-1) each row belongs to.
        num_videos: number of videos; every one must have at least one view.

    Returns:
        (num_videos, K) float64: per video, the mean over its views of ``softmax(logits)``; rows sum to 1.
        The softmax subtracts each row's maximum first, so large logits neither overflow nor lose precision.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N_views, K), got shape {logits.shape}")
    if logits.shape[1] == 0:
        raise ValueError("logits have no class column (K = 0)")
    if isinstance(num_videos, bool) or not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
        raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
    index = np.asarray(video_index)
    if index.ndim != 1 or len(index) != len(logits):
        raise ValueError(f"video_index must be ({len(logits)},), one entry per logits row; got shape {index.shape} "
                         f"for logits of {len(logits)} rows")
    index = _indices("video_index", index, num_videos, allow_empty=True)
    logits = logits.astype(np.float64)
    if not np.isfinite(logits).all():
        row = _first_bad_row(logits)
        raise ValueError(f"logits row {row} (a view of video {int(index[row])}) is not finite: NaN or inf")
    views = np.bincount(index, minlength=num_videos)
    if (views == 0).any():
        missing = np.flatnonzero(views == 0)
        more = f" ({len(missing)} videos have none)" if len(missing) > 1 else ""
        raise ValueError(f"video {int(missing[0])} has no view: video_index never holds it{more}")
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    sums = np.zeros((num_videos, logits.shape[1]), dtype=np.float64)
    np.add.at(sums, index, probs)
    return sums / views[:, None]


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                           topk: Sequence[int] = (1, 5)) -> ClassificationResult:
    """Top-k accuracies, mean class accuracy, per-class numbers and the confusion matrix of a test set.

    Args:
        probs: (N, K) scores of the N videos (e.g. ``aggregate_views``' probabilities); only their order within a
            row matters. Ties rank the lower class index first (see the module docstring).
        labels: (N,) int, each video's true class in 0..K-1.
        classes: the K class names, in label order (distinct).
        topk: the k of the top-k accuracies wanted (positive ints); 1 and 5 are always computed.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {probs.shape}")
    num, k_classes = probs.shape
    classes = tuple(str(c) for c in classes)
    if len(classes) != k_classes:
        raise ValueError(f"probs have {k_classes} class columns but {len(classes)} class names were given")
    if len(set(classes)) != len(classes):
        dup = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise ValueError(f"class name {dup!r} is given twice")
    if num == 0:
        raise ValueError("no video to score: probs have 0 rows")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != num:
        raise ValueError(f"labels must be ({num},), one a row of probs; got shape {labels.shape} "
                         f"({len(labels) if labels.ndim else 0} labels for {num} videos)")
    labels = _indices("labels", labels, k_classes)
    scores = probs.astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"probs row {_first_bad_row(scores)} is not finite: NaN or inf")
    ks = []
    for k in topk:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"topk must hold positive integers, got {k!r}")
        ks.append(int(k))
    ks = sorted(set(ks) | {1, 5})

    # rank of the true class (0 = first): classes scoring strictly higher, plus equal ones of lower index
    true_score = scores[np.arange(num), labels][:, None]
    lower_index = np.arange(k_classes)[None, :] < labels[:, None]
    rank = (scores > true_score).sum(axis=1) + ((scores == true_score) & lower_index).sum(axis=1)
    predicted = scores.argmax(axis=1)  # the first maximum: the class of rank 0
    confusion = np.bincount(labels * k_classes + predicted, minlength=k_classes * k_classes)
    confusion = confusion.reshape(k_classes, k_classes).astype(np.int64)
    confusion.setflags(write=False)

    accuracy = {k: 100.0 * float(np.count_nonzero(rank < k)) / num for k in ks}
    videos = np.bincount(labels, minlength=k_classes)
    per_class: Dict[str, Dict[str, object]] = {}
    recalls = []
    for c, name in enumerate(classes):
        entry: Dict[str, object] = {"videos": int(videos[c])}
        mine = labels == c
        for k in ks:
            entry[f"top{k}"] = 100.0 * float(np.count_nonzero(rank[mine] < k)) / videos[c] if videos[c] else None
        if videos[c]:
            recalls.append(entry["top1"])
        others = confusion[c].copy()
        others[c] = 0
        worst = int(others.argmax())
        entry["most_confused_with"] = classes[worst] if others[worst] else None
        entry["most_confused_count"] = int(others[worst])
        per_class[name] = entry
    return ClassificationResult(
        classes=classes,
        top1=accuracy[1],
        top5=accuracy[5],
        accuracy=accuracy,
        mean_class_accuracy=float(np.mean(recalls)),
        per_class=per_class,
        confusion=confusion,
        num_videos=int(num),
        classes_without_videos=tuple(name for c, name in enumerate(classes) if not videos[c]),
    )


def format_per_class_table(result: ClassificationResult) -> str:
    """A text table: one row a class (videos, top-k accuracies in percent, the class it is most confused with and
    how many of its videos went there; ``-`` where a class has no test video), a row over all videos, and a line
    with the mean class accuracy and the classes without test videos."""
    ks = sorted(result.accuracy)
    header = ["class", "videos", *[f"top-{k} (%)" for k in ks], "most confused with"]

    def pct(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = []
    for name in result.classes:
        entry = result.per_class[name]
        confused = entry["most_confused_with"]
        rows.append([name, entry["videos"], *[pct(entry[f"top{k}"]) for k in ks],
                     "-" if confused is None else f"{confused} ({entry['most_confused_count']})"])
    rows.append(["all videos", result.num_videos, *[pct(result.accuracy[k]) for k in ks], ""])
    counted = len(result.classes) - len(result.classes_without_videos)
    lines = [format_table(header, rows),
             f"mean class accuracy {result.mean_class_accuracy:.2f}% over {counted} classes"]
    if result.classes_without_videos:
        lines.append("without test videos: " + ", ".join(result.classes_without_videos))
    return "\n".join(lines)


def _figure_side(num_classes: int) -> float:
    """Side of the square figure in inches: 5 for up to 11 classes, growing by 0.18 a class, at most 20."""
    return float(min(max(3.0 + 0.18 * num_classes, 5.0), 20.0))


def plot_confusion(result: ClassificationResult, path: str, title: Optional[str] = None) -> None:
    """The confusion matrix as a PNG, written to ``path`` atomically: colours are row-normalised (each true
    class's share of videos per prediction; a class without videos stays blank), true class on the y axis,
    prediction on the x axis. A square figure of ``_figure_side(K)`` inches at 100 dpi (500 px for up to 11
    classes, 2000 px from 95 on); counts are written in the cells up to 15 classes; class names are the tick
    labels up to 100 classes (smaller fonts as K grows), above that only the axes' titles remain. Drawn on
    matplotlib's Agg canvas (no pyplot, no change to the global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib only when plotting
    from matplotlib.figure import Figure

    confusion = result.confusion.astype(np.float64)
    k_classes = len(result.classes)
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    side = _figure_side(k_classes)
    fig = Figure(figsize=(side, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's videos")
    if k_classes <= 100:
        font = 9 if k_classes <= 20 else max(3.0, 9 - 6 * (k_classes - 20) / 80)
        ticks = np.arange(k_classes)
        ax.set_xticks(ticks, labels=list(result.classes), rotation=90, fontsize=font)
        ax.set_yticks(ticks, labels=list(result.classes), fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if k_classes <= 15:
        for (i, j), count in np.ndenumerate(result.confusion):
            if count:
                ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or f"top-1 {result.top1:.1f}%, mean class {result.mean_class_accuracy:.1f}% "
                 f"({result.num_videos} videos)", fontsize=10)
    fig.tight_layout()
    with atomic_write(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)

