"""Datasets and collate on a tiny on-disk dataset: JPEG folders and one MJPG .avi, 32x24 frames."""
import functools
import pickle

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from s3d_det.data.annotations import make_gt
from s3d_det.data.clips import ClipTransform
from s3d_det.data.dataset import TestClipDataset, TrainClipDataset, collate

H, W, N = 24, 32, 6
VIDEOS = {"run/a": "jpg", "run/b": "jpg", "jump/c": "avi"}  # a, b train; c test


def pixel(video: str, frame: int) -> tuple:
    """RGB of every pixel of ``frame`` of ``video``: R the frame, G the video."""
    return (20 * frame, 80 * list(VIDEOS).index(video), 128)


def write_video(root, video, kind):
    frames = [np.full((H, W, 3), pixel(video, k)[::-1], np.uint8) for k in range(1, N + 1)]  # BGR
    if kind == "avi":
        path = root / "Videos" / f"{video}.avi"
        path.parent.mkdir(parents=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
        for f in frames:
            writer.write(f)
        writer.release()
    else:
        folder = root / "Frames" / video
        folder.mkdir(parents=True)
        for k, f in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"{k:05d}.jpg"), f)


def tube(first, last, box):
    return np.array([[f, *box] for f in range(first, last + 1)], np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    for video, kind in VIDEOS.items():
        write_video(root, video, kind)
    gt = make_gt(
        labels=["jump", "run"],
        nframes={v: N for v in VIDEOS},
        resolution={v: (H, W) for v in VIDEOS},
        gttubes={"run/a": {1: [tube(2, 4, (2, 4, 10, 12))]},
                 "run/b": {1: [tube(1, 6, (0, 0, 16, 24)), tube(3, 3, (20, 2, 30, 20))]},
                 "jump/c": {0: [tube(5, 6, (8, 6, 24, 18))]}},
        train_videos=["run/a", "run/b"],
        test_videos=["jump/c"],
    )
    return gt, str(root)


def test_train_sample(data):
    gt, root = data
    ds = TrainClipDataset(gt=gt, frames_root=root, clip_length=4, clip_stride=2,
                          transform=ClipTransform(short_side=12, hflip_prob=1.0), seed=3)
    assert len(ds) == 3 + 6  # run/a frames 2-4, run/b frames 1-6
    s = ds[0]
    assert set(s) == {"clip", "keyframe", "boxes", "labels", "video", "frame", "orig_size", "scale", "flipped"}
    assert (s["video"], s["frame"], s["orig_size"], s["scale"], s["flipped"]) == ("run/a", 2, (H, W), (0.5, 0.5), True)
    assert s["clip"].shape == (3, 4, 12, 16) and s["clip"].dtype == torch.float32
    assert s["keyframe"].shape == (3, 12, 16)
    # clip frames of keyframe 2, T=4, stride 2: [-2, 0, 2, 4] -> [1, 1, 2, 4]; R channel = 20 * frame
    np.testing.assert_allclose(s["clip"][0, :, 6, 8], [20, 20, 40, 80], atol=3)  # raw: the models normalise
    np.testing.assert_allclose(s["keyframe"][0, 6, 8], 40, atol=3)
    # box (2, 4, 10, 12) halved -> (1, 2, 5, 6), flipped in W = 16 -> (11, 2, 15, 6)
    np.testing.assert_allclose(s["boxes"], [[11, 2, 15, 6]])
    assert s["labels"].dtype == torch.int64 and s["labels"].tolist() == [1]
    two = ds[5]  # run/b frame 3 has two boxes
    assert (two["video"], two["frame"], two["boxes"].shape, two["labels"].tolist()) == ("run/b", 3, (2, 4), [1, 1])
    src = ds.source("run/a")
    before = src.decode_count
    ds[1]  # keyframe 3: frames [-1, 1, 3, 5] -> [1, 1, 3, 5]: 3 decodes
    assert src.decode_count - before == 3


def test_keyframes_per_video_resampled_each_epoch(data):
    gt, root = data
    kwargs = dict(gt=gt, frames_root=root, clip_length=2, keyframes_per_video=2, seed=7)
    ds = TrainClipDataset(**kwargs)
    epochs = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        assert len(ds) == 4
        assert [v for v, _ in ds.samples] == ["run/a", "run/a", "run/b", "run/b"]
        epochs.append(list(ds.samples))
    assert len({tuple(e) for e in epochs}) > 1  # new keyframes across epochs
    twin = TrainClipDataset(**kwargs)
    twin.set_epoch(4)
    assert twin.samples == epochs[4]  # deterministic given seed and epoch
    with pytest.raises(ValueError, match="keyframes_per_video must be at least 1"):
        TrainClipDataset(**{**kwargs, "keyframes_per_video": 0})


def test_background_frames_are_samples_without_boxes(data):
    gt, root = data
    ds = TrainClipDataset(gt=gt, frames_root=root, clip_length=2, background_frames=True)
    # every frame of both train videos, in order; run/a is annotated on 2-4 only
    assert ds.samples == [("run/a", f) for f in range(1, N + 1)] + [("run/b", f) for f in range(1, N + 1)]
    idle = ds[0]
    assert (idle["frame"], idle["boxes"].shape, idle["labels"].tolist()) == (1, (0, 4), [])
    assert ds[1]["labels"].tolist() == [1]
    ds = TrainClipDataset(gt=gt, frames_root=root, clip_length=2, background_frames=True, keyframes_per_video=5)
    assert len(ds) == 10 and {f for v, f in ds.samples if v == "run/a"} - {2, 3, 4}  # drawn from all frames


def test_test_dataset_reads_the_video_file(data):
    gt, root = data
    ds = TestClipDataset(gt=gt, frames_root=root, clip_length=3, transform=ClipTransform(short_side=24))
    assert [(v, f) for v, f in ds.samples] == [("jump/c", k) for k in range(1, N + 1)]
    empty, boxed = ds[0], ds[5]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    np.testing.assert_allclose(boxed["boxes"], [[8, 6, 24, 18]])
    assert boxed["labels"].tolist() == [0] and boxed["scale"] == (1.0, 1.0)
    # keyframe 6 of 6, T=3: [5, 6, 6]; pixel (20 * frame, 160, 128), raw RGB (the models normalise)
    np.testing.assert_allclose(boxed["keyframe"][:, 12, 16], pixel("jump/c", 6), atol=4)
    np.testing.assert_allclose(boxed["clip"][0, :, 12, 16], [100, 120, 120], atol=4)
    clone = pickle.loads(pickle.dumps(ds))  # the open VideoCapture stays behind
    assert clone._sources is None and clone[5]["frame"] == 6


def test_collate_pads_to_the_largest_frame():
    def sample(h, w, value):
        return {"clip": torch.full((3, 2, h, w), value), "keyframe": torch.full((3, h, w), value),
                "boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                "video": f"v{value}", "frame": value}

    batch = collate([sample(4, 6, 1.0), sample(5, 3, 2.0)])
    assert batch["clip"].shape == (2, 3, 2, 5, 6) and batch["keyframe"].shape == (2, 3, 5, 6)
    assert batch["image_sizes"] == [(4, 6), (5, 3)]
    assert batch["clip"][0, :, :, :4, :6].eq(1).all() and batch["clip"][0, :, :, 4:].eq(0).all()
    assert batch["keyframe"][1, :, :5, :3].eq(2).all() and batch["keyframe"][1, :, :, 3:].eq(0).all()
    assert batch["video"] == ["v1.0", "v2.0"] and len(batch["boxes"]) == 2
    assert collate([sample(4, 6, 1.0)], size_divisible=8)["clip"].shape[-2:] == (8, 8)
    with pytest.raises(ValueError, match="different lengths"):
        collate([sample(4, 6, 1.0), {**sample(4, 6, 1.0), "clip": torch.zeros(3, 3, 4, 6)}])


def test_dataloader_with_a_worker(data):
    gt, root = data
    ds = TrainClipDataset(gt=gt, frames_root=root, clip_length=4,
                          transform=ClipTransform(short_side=(12, 24), hflip_prob=0.5, brightness=0.3), seed=1)
    ds[0]  # opens a source in the main process: it must not travel to the worker
    loader = functools.partial(DataLoader, ds, batch_size=4, collate_fn=collate)
    main = list(loader(num_workers=0))
    worker = list(loader(num_workers=1))
    assert len(worker) == 3 and worker[0]["clip"].shape[:3] == (4, 3, 4)
    for a, b in zip(main, worker):
        torch.testing.assert_close(a["clip"], b["clip"])
        assert a["frame"] == b["frame"] and a["flipped"] == b["flipped"]


def test_frame_cache_gives_the_same_samples_with_fewer_decodes(data):
    gt, root = data
    kwargs = dict(gt=gt, frames_root=root, clip_length=4, clip_stride=2, seed=2,
                  transform=ClipTransform(short_side=12, hflip_prob=0.5, brightness=0.3, hue=0.2))
    plain, cached = TrainClipDataset(**kwargs), TrainClipDataset(**kwargs, frame_cache_mb=1)
    for _ in range(2):  # two epochs: the second decodes nothing
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            torch.testing.assert_close(a["clip"], b["clip"], rtol=0, atol=0)
            torch.testing.assert_close(a["keyframe"], b["keyframe"], rtol=0, atol=0)
            assert a["flipped"] == b["flipped"] and a["labels"].tolist() == b["labels"].tolist()
    decodes = {name: sum(ds.source(v).decode_count for v in ds.videos)
               for name, ds in (("plain", plain), ("cached", cached))}
    assert decodes["cached"] == N + N  # each frame of run/a and run/b once
    assert decodes["plain"] > 2 * decodes["cached"]
    assert cached.frame_cache.nbytes == 2 * N * H * W * 3
    copy = pickle.loads(pickle.dumps(cached))  # what a DataLoader worker gets: an empty cache of the same budget
    assert len(copy.frame_cache) == 0 and copy.frame_cache.max_bytes == 2 ** 20
    with pytest.raises(ValueError, match="frame_cache_mb must be at least 0"):
        TrainClipDataset(**kwargs, frame_cache_mb=-1)


def test_errors_name_the_video(data, tmp_path):
    gt, root = data
    with pytest.raises(FileNotFoundError, match=r"'run/a' are missing: looked for .*Frames/run/a and .*run/a\.avi"):
        TrainClipDataset(gt=gt, frames_root=str(tmp_path))
    wrong = {**gt, "nframes": {**gt["nframes"], "run/a": N + 1}}
    with pytest.raises(ValueError, match=r"'run/a': .*Frames/run/a has 6 frames, the ground truth needs 7"):
        TrainClipDataset(gt=wrong, frames_root=root, clip_length=2)[0]
    small = {**gt, "resolution": {**gt["resolution"], "jump/c": (12, 16)}}
    with pytest.raises(ValueError, match=r"jump/c\.avi is 24x32 \(h x w\); expected 12x16, the ground truth's "
                                         r"resolution of video 'jump/c'"):
        TestClipDataset(gt=small, frames_root=root, clip_length=2)[0]
    with pytest.raises(IndexError):
        TestClipDataset(gt=gt, frames_root=root, clip_length=2)[N]


def test_flip_swaps_directional_labels(data):
    gt, root = data
    swap = dict(clip_length=4, clip_stride=2, flip_labels=[(0, 1)], seed=3)
    flipped = TrainClipDataset(gt=gt, frames_root=root, transform=ClipTransform(short_side=12, hflip_prob=1.0), **swap)
    kept = TrainClipDataset(gt=gt, frames_root=root, transform=ClipTransform(short_side=12), **swap)
    assert flipped[0]["flipped"] and flipped[0]["labels"].tolist() == [0]  # "run" (1) mirrored is "jump" (0)
    assert flipped[5]["labels"].tolist() == [0, 0]
    assert not kept[0]["flipped"] and kept[0]["labels"].tolist() == [1]
    for bad, message in (([(0, 2)],  "not a pair of two labels in 0..1"), ([(0, 0)], "not a pair"),
                         ([(0, 1), (1, 0)], "label 1 is in two pairs")):
        with pytest.raises(ValueError, match=message):
            TrainClipDataset(gt=gt, frames_root=root, flip_labels=bad)


def test_idle_boxes_are_persons_with_label_minus_one(data):
    gt, root = data
    kwargs = dict(gt=gt, frames_root=root, clip_length=2, flip_labels=[(0, 1)], seed=3)
    same_size = ClipTransform(short_side=H)
    ds = TrainClipDataset(idle_hold=None, transform=same_size, **kwargs)
    # keyframes stay the frames where someone acts; run/b frame 1: tube 0 acts, tube 1 (frame 3 only) is idle
    assert ds.samples == [("run/a", f) for f in (2, 3, 4)] + [("run/b", f) for f in range(1, N + 1)]
    s = ds[3]
    assert (s["video"], s["frame"], s["labels"].tolist()) == ("run/b", 1, [1, -1])
    np.testing.assert_allclose(s["boxes"], [[0, 0, 16, 24], [20, 2, 30, 20]])
    # mirrored: "run" becomes "jump", the idle person stays -1
    flipped = TrainClipDataset(idle_hold=None, transform=ClipTransform(short_side=H, hflip_prob=1.0),
                               **kwargs)
    assert flipped[3]["labels"].tolist() == [0, -1]
    # with background frames: run/a's frames 1, 5, 6 show its person idle, held from frames 2 and 4
    ds = TrainClipDataset(idle_hold=None, background_frames=True, transform=same_size, **kwargs)
    assert [(ds[i]["frame"], ds[i]["labels"].tolist()) for i in (0, 4, 5)] == [(1, [-1]), (5, [-1]), (6, [-1])]
    np.testing.assert_allclose(ds[0]["boxes"], [[2, 4, 10, 12]])
    short = TrainClipDataset(idle_hold=1, background_frames=True, **kwargs)
    assert [short[i]["labels"].tolist() for i in (0, 4, 5)] == [[-1], [-1], []]  # frame 6 is 2 frames away
    with pytest.raises(ValueError, match="idle_hold must be None or at least 0"):
        TrainClipDataset(idle_hold=-1, **kwargs)


def test_idle_boxes_near_their_tube_are_ignored_with_a_margin(data):
    gt, root = data
    kwargs = dict(gt=gt, frames_root=root, clip_length=2, seed=3, transform=ClipTransform(short_side=H))
    # run/a acts on frames 2-4 of 6: frames 1 and 5 lie next to its tube (gap 1), frame 6 two frames away
    ds = TrainClipDataset(idle_hold=None, background_frames=True, idle_margin=1, **kwargs)
    assert [(ds[i]["frame"], ds[i]["labels"].tolist()) for i in (0, 4, 5)] == [(1, [-2]), (5, [-2]), (6, [-1])]
    np.testing.assert_allclose(ds[0]["boxes"], [[2, 4, 10, 12]])  # still there, for the RPN
    assert (ds[6]["video"], ds[6]["frame"], ds[6]["labels"].tolist()) == ("run/b", 1, [1, -1])  # tube 1: frame 3
    wide = TrainClipDataset(idle_hold=None, background_frames=True, idle_margin=2, **kwargs)
    assert wide[5]["labels"].tolist() == [-2] and wide[6]["labels"].tolist() == [1, -2]
    with pytest.raises(ValueError, match="idle_margin must be at least 0, and needs idle_hold"):
        TrainClipDataset(idle_margin=2, **kwargs)


def test_idle_keyframes_are_the_frames_with_an_idle_box_beyond_the_margin(data):
    gt, root = data
    kwargs = dict(gt=gt, frames_root=root, clip_length=2, seed=3, transform=ClipTransform(short_side=H))
    run_b = [("run/b", f) for f in range(1, N + 1)]  # someone acts on every frame of run/b
    # run/a acts on frames 2-4 of 6: frames 1 and 5 lie 1 frame from its tube, frame 6 2 frames
    ds = TrainClipDataset(idle_hold=None, idle_keyframes=True, **kwargs)
    assert ds.samples == [("run/a", f) for f in range(1, N + 1)] + run_b
    assert (ds[0]["frame"], ds[0]["labels"].tolist()) == (1, [-1])
    ds = TrainClipDataset(idle_hold=None, idle_margin=1, idle_keyframes=True, **kwargs)
    assert ds.samples == [("run/a", f) for f in (2, 3, 4, 6)] + run_b
    assert (ds[3]["frame"], ds[3]["labels"].tolist()) == (6, [-1])
    ds = TrainClipDataset(idle_hold=None, idle_margin=2, idle_keyframes=True, **kwargs)
    assert ds.samples == [("run/a", f) for f in (2, 3, 4)] + run_b
    ds = TrainClipDataset(idle_hold=1, idle_keyframes=True, **kwargs)  # frame 6 holds no idle box
    assert ds.samples == [("run/a", f) for f in (1, 2, 3, 4, 5)] + run_b
    with pytest.raises(ValueError, match="idle_keyframes needs idle_hold"):
        TrainClipDataset(idle_keyframes=True, **kwargs)


def test_a_frame_of_another_size_or_truncated_names_the_video_and_file(data, tmp_path):
    """A frame of another size than the GT's resolution, or a JPEG cut short, in a train video: an error naming the
    video, the file and (for the size) both sizes, not np.stack's error or a half-grey frame."""
    gt, _ = data
    write_video(tmp_path, "run/a", "jpg")
    write_video(tmp_path, "run/b", "jpg")
    folder = tmp_path / "Frames" / "run" / "a"
    cv2.imwrite(str(folder / "00003.jpg"), np.zeros((H, W + 8, 3), np.uint8))
    train = TrainClipDataset(gt=gt, frames_root=str(tmp_path), clip_length=4)
    assert train.samples[0] == ("run/a", 2)
    with pytest.raises(ValueError, match=rf"Frames/run/a/00003\.jpg is {H}x{W + 8} \(h x w\); expected {H}x{W}, the "
                                         r"ground truth's resolution of video 'run/a'"):
        train[0]
    cv2.imwrite(str(folder / "00003.jpg"), np.full((H, W, 3), 99, np.uint8))
    data_bytes = (folder / "00004.jpg").read_bytes()
    (folder / "00004.jpg").write_bytes(data_bytes[:len(data_bytes) // 2])
    train = TrainClipDataset(gt=gt, frames_root=str(tmp_path), clip_length=4)
    with pytest.raises(ValueError, match=r"Frames/run/a/00004\.jpg: truncated JPEG \(frame 4\)"):
        train[1]


def test_a_zero_width_box_in_a_train_video_is_refused(data):
    """x1 == x2 loads (a one-pixel box where the last pixel counts, scored fine), but the detector's box regression
    takes the log of the width: training would turn NaN at its first step. The train dataset names it."""
    gt, root = data
    flat = {**gt, "gttubes": {**gt["gttubes"], "run/b": {1: [tube(1, 6, (0, 0, 16, 24)), tube(3, 3, (20, 2, 20, 20))]}}}
    with pytest.raises(ValueError, match=r"video 'run/b', frame 3: box \[20, 2, 20, 20\] of label 1 has no width or "
                                         r"height; training needs x1 < x2 and y1 < y2"):
        TrainClipDataset(gt=flat, frames_root=root)
    assert len(TestClipDataset(gt=flat, frames_root=root)) == N  # evaluation reads the other split as it is


def test_stack_padded_rounds_the_largest_frame_up_and_zero_fills():
    """The one padding helper (collate and VideoDetector): 2x3 and 3x1 frames, size_divisible 4 -> 4x4."""
    from s3d_det.data.dataset import stack_padded

    a = torch.arange(1, 7, dtype=torch.float32).reshape(1, 2, 3)
    b = torch.full((1, 3, 1), 9.0)
    out = stack_padded([a, b], size_divisible=4)
    expected = torch.zeros(2, 1, 4, 4)
    expected[0, 0, :2, :3] = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.float32)
    expected[1, 0, :3, :1] = 9
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert stack_padded([a], size_divisible=0).shape == (1, 1, 2, 3)  # 0 or 1: no rounding
    torch.testing.assert_close(collate([{"clip": a[:, None].expand(1, 2, 2, 3), "keyframe": a}], size_divisible=4)
                               ["keyframe"], expected[:1], rtol=0, atol=0)


def test_build_datasets_caches_training_frames_only(data):
    """DATALOADER.FRAME_CACHE_MB is the training set's; the test set goes through video inference, which decodes
    each frame once a pass, so a cache there would only hold memory between evaluations."""
    from s3d_det.config import load_config
    from s3d_det.engine.defaults import build_datasets

    gt, root = data
    cfg = load_config(None, ["DATALOADER.FRAME_CACHE_MB", "3", "INPUT.CLIP_LENGTH", "2"])
    train, test = build_datasets(cfg, gt, root)
    assert train.frame_cache is not None and train.frame_cache.max_bytes == 3 * 2 ** 20
    assert test.frame_cache is None and test.source("jump/c").cache is None
