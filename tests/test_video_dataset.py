"""The clip-classification datasets (s3d_det/data/video_dataset.py): the multi-view test protocol's clips and
crops by hand, torchvision's random resized box, and what a training or test item holds, read from small frame
folders whose pixels encode their frame number and column."""
import os

import cv2
import numpy as np
import pytest
import torch

from s3d_det.data.video_dataset import (
    TestVideoDataset as ViewDataset,
)
from s3d_det.data.video_dataset import (
    TrainVideoDataset,
    random_resized_box,
    spatial_crops,
    temporal_views,
    view_batches,
)
from s3d_det.data.video_lists import VideoList, VideoRecord


def write_frames(folder, frames):
    """PNG frames (lossless) 00001.png ... of (H, W, 3) uint8 RGB arrays."""
    os.makedirs(folder, exist_ok=True)
    for t, rgb in enumerate(frames, start=1):
        assert cv2.imwrite(os.path.join(folder, f"{t:05d}.png"), np.ascontiguousarray(rgb[..., ::-1]))
    return str(folder)


def coded_frames(n, h, w):
    """Frame t (1-based): red = 10 t, green = 10 x (its column), blue = 0."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 0] = (10 * np.arange(1, n + 1))[:, None, None]
    frames[..., 1] = (10 * np.arange(w))[None, None, :]
    return frames


def video_list(paths, labels=None, hflip=True, subset="test"):
    labels = labels or [0] * len(paths)
    records = [VideoRecord(video=f"c/v{i}", path=str(p), label=lab) for i, (p, lab) in enumerate(zip(paths, labels))]
    return VideoList(dataset="test", subset=subset, classes=["a", "b"], records=records, hflip=hflip)


# ----------------------------------------------------------------------------------------------- temporal views
def test_temporal_views_ten_clips_by_hand():
    # 100 frames, clips of 8 frames 2 apart: span 15, room 85; starts round(k * 85 / 9), half up:
    # 0, 9.44, 18.89, 28.33, 37.78, 47.22, 56.67, 66.11, 75.56, 85
    views = temporal_views(100, length=8, stride=2, num_clips=10)
    starts = [0, 9, 19, 28, 38, 47, 57, 66, 76, 85]
    assert views == [[s + 1 + 2 * i for i in range(8)] for s in starts]
    assert views[0] == [1, 3, 5, 7, 9, 11, 13, 15] and views[-1] == [86, 88, 90, 92, 94, 96, 98, 100]


def test_temporal_views_one_clip_is_the_middle():
    # room 85: start 42.5 -> 43 (0-based), frames 44..58; 43 frames before it, 42 after
    assert temporal_views(100, length=8, stride=2, num_clips=1) == [[44, 46, 48, 50, 52, 54, 56, 58]]
    assert temporal_views(15, length=8, stride=2, num_clips=1) == [list(range(1, 16, 2))]  # exactly one span


def test_temporal_views_of_a_short_video_repeat_its_edge_frames():
    # 10 frames, span 15: every clip starts at round(-2.5) = -2 (0-based): frames -1, 1, ..., 13, clamped
    views = temporal_views(10, length=8, stride=2, num_clips=3)
    assert views == [[1, 1, 3, 5, 7, 9, 10, 10]] * 3
    assert temporal_views(1, length=4, stride=1, num_clips=2) == [[1, 1, 1, 1]] * 2


def test_temporal_views_rejects_zero_clips():
    with pytest.raises(ValueError, match="num_clips"):
        temporal_views(10, length=4, stride=1, num_clips=0)


# ----------------------------------------------------------------------------------------------- spatial crops
def test_spatial_crops_landscape_and_portrait():
    assert spatial_crops((240, 320), 224, 1) == [(8, 48)]
    assert spatial_crops((240, 320), 224, 3) == [(8, 0), (8, 48), (8, 96)]
    assert spatial_crops((320, 240), 224, 1) == [(48, 8)]
    assert spatial_crops((320, 240), 224, 3) == [(0, 8), (48, 8), (96, 8)]
    assert spatial_crops((64, 64), 64, 3) == [(0, 0)] * 3


def test_spatial_crops_bad_arguments():
    with pytest.raises(ValueError, match="larger than the resized frame"):
        spatial_crops((100, 200), 101, 1)
    with pytest.raises(ValueError, match="num_crops must be 1 or 3"):
        spatial_crops((100, 200), 50, 2)


# ----------------------------------------------------------------------------------------------- random box
def test_random_resized_box_stays_in_bounds_and_in_range():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        y0, x0, h, w = random_resized_box(rng, (240, 320), area=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        assert 0 <= y0 and 0 <= x0 and 0 < h and 0 < w and y0 + h <= 240 and x0 + w <= 320
        areas.append(h * w / (240 * 320))
        ratios.append(w / h)
    # sides are rounded to whole pixels: a little slack
    assert 0.08 * 0.97 <= min(areas) and max(areas) <= 1.0
    assert 3 / 4 * 0.97 <= min(ratios) and max(ratios) <= 4 / 3 * 1.03
    assert min(areas) < 0.15 and max(areas) > 0.7  # the whole range is drawn
    assert min(ratios) < 0.8 and max(ratios) > 1.25


def test_random_resized_box_fallback_when_nothing_fits():
    # a 10 x 1000 strip: any box of >= 90 % of its area within ratio 4/3 is >= 82 pixels tall: the largest centred
    # box within the ratio range: 10 tall, round(10 * 4 / 3) = 13 wide, at x (1000 - 13) // 2 = 493
    rng = np.random.default_rng(0)
    assert random_resized_box(rng, (10, 1000), area=(0.9, 1.0)) == (0, 493, 10, 13)
    assert random_resized_box(rng, (1000, 10), area=(0.9, 1.0)) == (493, 0, 13, 10)
    # a frame within the ratio range whose draws cannot fit (area > 1 is asked): the whole frame
    assert random_resized_box(rng, (30, 30), area=(1.5, 2.0)) == (0, 0, 30, 30)


def test_random_resized_box_is_seeded():
    a = [random_resized_box(np.random.default_rng(7), (100, 120), area=(0.2, 1.0)) for _ in range(2)]
    assert a[0] == a[1]


# ----------------------------------------------------------------------------------------------- training items
@pytest.fixture
def noisy_videos(tmp_path):
    rng = np.random.default_rng(0)
    paths = [write_frames(tmp_path / f"v{i}", rng.integers(0, 256, (20, 24, 32, 3), dtype=np.uint8)) for i in range(2)]
    return video_list(paths, labels=[0, 1], subset="train")


def test_train_item_shape_dtype_and_raw_values(noisy_videos):
    ds = TrainVideoDataset(noisy_videos, clip_length=4, clip_stride=2, crop_size=16, seed=3)
    assert len(ds) == 2 and ds.classes == ["a", "b"]
    item = ds[1]
    assert item["clip"].shape == (3, 4, 16, 16) and item["clip"].dtype == torch.float32
    assert item["label"] == 1 and item["video"] == 1
    assert item["clip"].min() >= 0 and item["clip"].max() <= 255 and item["clip"].max() > 200  # not normalised


def test_train_items_are_a_function_of_seed_epoch_and_index(noisy_videos):
    ds = TrainVideoDataset(noisy_videos, clip_length=4, clip_stride=2, crop_size=16, seed=3, brightness=0.3)
    first = ds[0]["clip"]
    again = TrainVideoDataset(noisy_videos, clip_length=4, clip_stride=2, crop_size=16, seed=3, brightness=0.3)
    assert torch.equal(again[0]["clip"], first)
    assert torch.equal(ds[0]["clip"], first)  # reading again changes nothing
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["clip"], first)
    other_seed = TrainVideoDataset(noisy_videos, clip_length=4, clip_stride=2, crop_size=16, seed=4, brightness=0.3)
    assert not torch.equal(other_seed[0]["clip"], first)


def half_black_half_white(tmp_path, n=6, side=32):
    frames = np.zeros((n, side, side, 3), np.uint8)
    frames[:, :, side // 2:] = 255
    return write_frames(tmp_path / "bw", frames)


@pytest.mark.parametrize("hflip", [False, True])
def test_train_flip_only_where_the_dataset_allows(tmp_path, hflip):
    # the whole square frame (area 1, ratio 1) resized 32 -> 16: columns 0..7 black, 8..15 white, unless flipped
    videos = video_list([half_black_half_white(tmp_path)], hflip=hflip, subset="train")
    ds = TrainVideoDataset(videos, clip_length=4, crop_size=16, crop_area=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                           hflip_prob=1.0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        clip = ds[0]["clip"]
        left, right = clip[..., :8], clip[..., 8:]
        if hflip:
            assert (left == 255).all() and (right == 0).all()
        else:
            assert (left == 0).all() and (right == 255).all()


def test_train_clip_of_a_video_shorter_than_a_clip(tmp_path):
    # 5 frames, 8-frame clips 2 apart (span 15): frames from the video only, its first and last at the ends
    folder = write_frames(tmp_path / "short", coded_frames(5, 16, 16))
    ds = TrainVideoDataset(video_list([folder], subset="train"), clip_length=8, clip_stride=2, crop_size=16,
                           crop_area=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_prob=0.0)
    for epoch in range(3):
        ds.set_epoch(epoch)
        red = ds[0]["clip"][0, :, 0, 0].numpy()
        frames = red / 10
        assert frames.tolist() == sorted(frames.tolist()) and set(frames) <= {1, 2, 3, 4, 5}
        assert frames[0] == 1 and frames[-1] == 5


def test_train_clip_frames_are_stride_apart(tmp_path):
    folder = write_frames(tmp_path / "long", coded_frames(20, 16, 16))
    ds = TrainVideoDataset(video_list([folder], subset="train"), clip_length=4, clip_stride=3, crop_size=16,
                           crop_area=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    starts = set()
    for epoch in range(30):
        ds.set_epoch(epoch)
        frames = (ds[0]["clip"][0, :, 0, 0] / 10).round().int().tolist()
        assert np.diff(frames).tolist() == [3, 3, 3] and 1 <= frames[0] and frames[-1] <= 20
        starts.add(frames[0])
    assert len(starts) > 5  # the start is drawn (1..11)


# ----------------------------------------------------------------------------------------------- test items
def test_test_items_read_the_frames_and_crops_of_their_view(tmp_path):
    # 2 videos of 20 frames 16 x 24 (no resize: short side 16 = crop); clips of 4 frames 2 apart, 3 a video:
    # span 7, room 13: starts 0, 6.5 -> 7, 13
    paths = [write_frames(tmp_path / f"v{i}", coded_frames(20, 16, 24)) for i in range(2)]
    ds = ViewDataset(video_list(paths, labels=[1, 0]), clip_length=4, clip_stride=2, crop_size=16,
                          num_clips=3, num_crops=3)
    assert len(ds) == 6 and ds.num_views == 9
    expected_frames = [[1, 3, 5, 7], [8, 10, 12, 14], [14, 16, 18, 20]]
    for index in range(6):
        item = ds[index]
        video, k = divmod(index, 3)
        assert item["video"] == video and item["label"] == [1, 0][video]
        clips = item["clips"]
        assert clips.shape == (3, 3, 4, 16, 16) and clips.dtype == torch.float32
        for c, x0 in enumerate([0, 4, 8]):  # left, centre, right of the 24-pixel side
            assert (clips[c, 0, :, 0, 0] / 10).tolist() == expected_frames[k]
            assert (clips[c, 1, 0, 0, :] / 10).tolist() == list(range(x0, x0 + 16))
            assert (clips[c, 2] == 0).all()


def test_test_items_resize_the_short_side_first(tmp_path):
    # frames 24 x 48 (uniform per frame) resized to short side 16: 16 x 32; one centre crop
    path = write_frames(tmp_path / "v", coded_frames(6, 24, 48) * np.array([1, 0, 1], np.uint8))
    ds = ViewDataset(video_list([path]), clip_length=2, clip_stride=1, crop_size=16, short_side=16,
                          num_clips=1, num_crops=1)
    clips = ds[0]["clips"]
    assert clips.shape == (1, 3, 2, 16, 16)
    assert (clips[0, 0, :, 0, 0] / 10).tolist() == [3, 4]  # room 5: start 2.5 -> 3 (0-based)


def test_test_short_side_smaller_than_the_crop_is_refused(tmp_path):
    path = write_frames(tmp_path / "v", coded_frames(4, 16, 16))
    with pytest.raises(ValueError, match="short_side 16 is smaller than crop_size 32"):
        ViewDataset(video_list([path]), clip_length=2, crop_size=32, short_side=16)


def test_view_batches_stacks_the_crops_of_each_item(tmp_path):
    path = write_frames(tmp_path / "v", coded_frames(10, 16, 24))
    ds = ViewDataset(video_list([path, path], labels=[0, 1]), clip_length=2, crop_size=16, num_clips=2,
                          num_crops=3)
    batch = view_batches([ds[1], ds[2]])
    assert batch["clips"].shape == (6, 3, 2, 16, 16) and batch["views_per_item"] == 3
    assert batch["labels"].tolist() == [0, 1] and batch["videos"].tolist() == [0, 1]


@pytest.mark.parametrize("kind", ["train", "test"])
def test_an_undecodable_frame_names_its_file(tmp_path, kind):
    path = write_frames(tmp_path / "broken_video", coded_frames(4, 16, 16))
    with open(os.path.join(path, "00002.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    videos = video_list([path], subset=kind)
    if kind == "train":
        ds = TrainVideoDataset(videos, clip_length=4, crop_size=16)
    else:
        ds = ViewDataset(videos, clip_length=4, crop_size=16, num_clips=1, num_crops=1)
    with pytest.raises(ValueError) as info:
        ds[0]
    message = str(info.value)
    assert "\n" not in message and os.path.join(path, "00002.png") in message


def test_empty_list_and_bad_arguments(tmp_path):
    path = write_frames(tmp_path / "v", coded_frames(4, 16, 16))
    empty = VideoList(dataset="ucf101", subset="train", classes=["a"], records=[], sources=["trainlist01.txt"])
    with pytest.raises(ValueError, match="ucf101 train: no videos"):
        TrainVideoDataset(empty)
    for kwargs, match in [({"crop_area": (0.0, 1.0)}, "crop_area"), ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"),
                          ({"hflip_prob": 1.5}, "hflip_prob"), ({"clip_length": 0}, "clip length")]:
        with pytest.raises(ValueError, match=match):
            TrainVideoDataset(video_list([path]), **kwargs)
    with pytest.raises(ValueError, match="num_crops"):
        ViewDataset(video_list([path]), num_crops=2)


def test_video_dataset_on_a_video_file(tmp_path):
    # an .avi read through open_video: 12 frames of 32 x 32
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 32))
    assert writer.isOpened()
    for t in range(12):
        writer.write(np.full((32, 32, 3), 20 * t, np.uint8))
    writer.release()
    ds = ViewDataset(video_list([path]), clip_length=4, clip_stride=1, crop_size=32, num_clips=2, num_crops=1)
    # room 8: starts 0 and 8: frames 1..4 and 9..12, grey 0, 20, 40, 60 and 160 .. 220 (JPEG: +-3)
    for k, first in enumerate([0, 8]):
        grey = ds[k]["clips"][0, 0, :, 16, 16].numpy()
        assert np.abs(grey - 20 * np.arange(first, first + 4)).max() <= 3


def test_an_undecodable_frame_read_by_a_loader_worker_is_one_line_without_traceback(tmp_path):
    """A DataLoader worker re-raises the dataset's error with the worker's traceback in its message: the tools'
    error line is the original message alone."""
    from torch.utils.data import DataLoader

    from s3d_det.utils.errors import INPUT_ERRORS, error_line

    path = write_frames(tmp_path / "broken_video", coded_frames(4, 16, 16))
    with open(os.path.join(path, "00002.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    ds = ViewDataset(video_list([path]), clip_length=4, crop_size=16, num_clips=1, num_crops=1)
    with pytest.raises(INPUT_ERRORS) as info:
        list(DataLoader(ds, batch_size=1, num_workers=1, collate_fn=view_batches))
    line = error_line(info.value)
    assert line.startswith(os.path.join(path, "00002.png") + ": truncated PNG (frame 2)"), line
    assert "Traceback" not in line and "File " not in line
