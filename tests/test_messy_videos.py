"""Real video files are messy (issue 29, section 1): a container header announcing more (or fewer) frames than
decode, an absurd frame rate, odd frame sizes, seeks that land elsewhere. Every reader uses the frames that decode,
warns when the header disagrees, and never fails at the header's last frame.

The lying headers are made by hand from small MJPG AVIs OpenCV writes here: the stream header's ``dwLength`` (the
count FFmpeg reports) patched to 40 or 10 for a 20-frame video, or the file's tail cut off (the header still says
20; 13 frames decode). Frame t is a flat grey of level 10 t, so which frame was read is visible after JPEG coding.
"""
import importlib.util
import logging
import math
import os
import struct

import cv2
import numpy as np
import pytest
import torch

from s3d_det.data import frames as frames_module
from s3d_det.data.converters import extract_frames
from s3d_det.data.frames import VideoFileSource, usable_fps
from s3d_det.data.video_dataset import TestVideoDataset as ViewDataset
from s3d_det.data.video_lists import VideoList, VideoRecord
from s3d_det.engine.inference import VideoDetector
from s3d_det.evaluation.detections import Detections, save_detections
from s3d_det.modeling.detector import build_action_detector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 20  # frames written
H, W = 48, 64


def level(t):
    return 10 * t


def write_video(path, n=N, size=(H, W), fourcc="MJPG", fps=25.0):
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for t in range(1, n + 1):
        writer.write(np.full((h, w, 3), level(t), np.uint8))
    writer.release()
    return str(path)


def patch_stream_header(path, **fields):
    """Rewrites fields of the AVI's first ``strh`` chunk: ``length`` (frames), ``scale``, ``rate`` (fps = rate /
    scale)."""
    data = bytearray(open(path, "rb").read())
    at = data.find(b"strh") + 8  # the chunk's data
    offsets = {"scale": 20, "rate": 24, "length": 32}
    for name, value in fields.items():
        struct.pack_into("<I", data, at + offsets[name], value)
    open(path, "wb").write(bytes(data))
    return path


def header_count(path):
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def decoded_levels(path):
    cap = cv2.VideoCapture(str(path))
    levels = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        levels.append(int(round(bgr.mean())))
    cap.release()
    return levels


@pytest.fixture
def overstated(tmp_path):
    """20 frames decode; the header says 40."""
    path = patch_stream_header(write_video(tmp_path / "over.avi"), length=40)
    assert header_count(path) == 40 and len(decoded_levels(path)) == N  # the header really lies
    return path


@pytest.fixture
def understated(tmp_path):
    """20 frames decode; the header says 10."""
    path = patch_stream_header(write_video(tmp_path / "under.avi"), length=10)
    assert header_count(path) == 10 and len(decoded_levels(path)) == N
    return path


@pytest.fixture
def truncated(tmp_path):
    """The file cut where frame 14's chunk starts: the header still says 20, 13 frames decode."""
    path = write_video(tmp_path / "cut.avi")
    data = open(path, "rb").read()
    at = data.find(b"movi")
    for _ in range(14):
        at = data.find(b"00dc", at + 4)
    open(path, "wb").write(data[:at])
    assert header_count(path) == 20 and len(decoded_levels(path)) == 13
    return path


def warned(caplog, *words):
    return any(all(str(w) in r.getMessage() for w in words) for r in caplog.records if r.levelno >= logging.WARNING)


# ------------------------------------------------------------------------------------------------ the source
@pytest.mark.parametrize("fixture,decodable,header", [("overstated", 20, 40), ("understated", 20, 10),
                                                      ("truncated", 13, 20)])
def test_source_has_the_frames_that_decode_and_warns(request, caplog, fixture, decodable, header):
    path = request.getfixturevalue(fixture)
    with caplog.at_level(logging.WARNING):
        src = VideoFileSource(path)
        assert src.num_frames == decodable
    assert warned(caplog, path, header, decodable)
    frames = src.read(range(1, decodable + 1))  # every decodable frame, including those past a low header
    assert [int(round(frames[t].mean())) for t in range(1, decodable + 1)] == \
        pytest.approx([level(t) for t in range(1, decodable + 1)], abs=3)
    with pytest.raises(ValueError, match=f"frames 1..{decodable}"):
        src.read([decodable + 1])


def test_an_honest_header_is_not_warned_about(tmp_path, caplog):
    path = write_video(tmp_path / "ok.avi")
    with caplog.at_level(logging.WARNING):
        assert VideoFileSource(path).num_frames == N
    assert not warned(caplog, path)


def test_the_count_is_decoded_once_per_file_and_process(overstated, caplog):
    first = VideoFileSource(overstated)
    assert first.num_frames == N
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = VideoFileSource(overstated)  # the datasets open a source per item
        assert again.num_frames == N
    assert not caplog.records  # warned once, counted once


_REAL_CAPTURE = cv2.VideoCapture


class _KeyframeSeeks:
    """cv2.VideoCapture whose frame seeks land up to 3 frames early (as on a keyframe), or, with ``far``, past
    the target."""

    def __init__(self, path, far=False):
        self._cap = _REAL_CAPTURE(path)
        self._far = far

    def set(self, prop, value):
        if prop == cv2.CAP_PROP_POS_FRAMES:
            value = value + 2 if self._far else max(0, value - 3)
        return self._cap.set(prop, value)

    def __getattr__(self, name):
        return getattr(self._cap, name)


@pytest.mark.parametrize("far", [False, True])
def test_a_seek_that_lands_elsewhere_falls_back_to_decoding_forward(tmp_path, monkeypatch, far):
    path = write_video(tmp_path / "v.avi")
    VideoFileSource(path).num_frames  # counted with the real capture
    monkeypatch.setattr(frames_module.cv2, "VideoCapture", lambda p: _KeyframeSeeks(p, far))
    src = VideoFileSource(path, seek_threshold=2)
    got = {}
    for wanted in ([15], [3], [18, 19], [1]):  # forward jumps and backward ones: seeks
        got.update(src.read(wanted))
    assert {t: int(round(a.mean())) for t, a in got.items()} == \
        pytest.approx({t: level(t) for t in (15, 3, 18, 19, 1)}, abs=3)


# ----------------------------------------------------------------------------------------------- inference
def tiny_detector():
    torch.manual_seed(0)
    return build_action_detector(num_classes=3, backbone_2d="resnet18", variant_3d="s3dg", width_3d=0.25,
                                 feature_3d="mixed_3c", anchor_sizes=(16, 32), rpn_post_nms_top_n_test=6,
                                 box_score_thresh=0.0, box_detections_per_img=20).eval()


@pytest.mark.parametrize("mode", ["shared", "per_keyframe"])
def test_video_detector_covers_every_decodable_frame(truncated, mode):
    from s3d_det.engine.inference import open_video

    source = open_video(truncated)
    detector = VideoDetector(tiny_detector(), clip_length=4, clip_stride=2, short_side=H, batch_size=4, mode=mode)
    dets = detector(source)
    assert sorted(set(dets.frame.astype(int).tolist())) == list(range(1, 14))


# ------------------------------------------------------------------------------------------ frame extraction
def test_extract_frames_takes_every_decodable_frame_and_warns(tmp_path, caplog):
    videos = tmp_path / "videos" / "walk"
    videos.mkdir(parents=True)
    over = patch_stream_header(write_video(videos / "over.avi"), length=40)
    under = patch_stream_header(write_video(videos / "under.avi"), length=10)
    with caplog.at_level(logging.WARNING):
        counts = extract_frames(str(tmp_path / "videos"), str(tmp_path / "out"), progress=False)
    assert counts["frames"] == 2 * N
    for name in ("over", "under"):
        folder = tmp_path / "out" / "Frames" / "walk" / name
        assert sorted(f for f in os.listdir(folder) if f.endswith(".jpg")) == [f"{t:05d}.jpg" for t in range(1, N + 1)]
    assert warned(caplog, over, 40, N) and warned(caplog, under, 10, N)


# ------------------------------------------------------------------------------------ classification datasets
def test_test_video_dataset_samples_within_the_decodable_frames(overstated):
    videos = VideoList(dataset="test", subset="test", classes=["a"], hflip=False,
                       records=[VideoRecord(video="c/v0", path=overstated, label=0)])
    dataset = ViewDataset(videos, clip_length=4, clip_stride=2, crop_size=32, num_clips=3, num_crops=1)
    last = dataset[2]["clips"][0]  # (C, T, S, S): the last view ends at the last decodable frame, 20
    assert [round(float(last[:, t].mean())) for t in range(4)] == pytest.approx([level(t) for t in (14, 16, 18, 20)],
                                                                                abs=3)


# ------------------------------------------------------------------------------------------ detection datasets
def detection_data(tmp_path, length):
    """A Videos/ root holding walk/v (20 frames decode, the header says ``length``) and its ground truth."""
    from s3d_det.data.annotations import make_gt

    folder = tmp_path / "root" / "Videos" / "walk"
    folder.mkdir(parents=True)
    patch_stream_header(write_video(folder / "v.avi"), length=length)
    tube = np.array([[f, 4, 4, 30, 30] for f in range(1, N + 1)], np.float32)
    gt = make_gt(labels=["walk"], nframes={"walk/v": N}, resolution={"walk/v": (H, W)},
                 gttubes={"walk/v": {0: [tube]}}, train_videos=[], test_videos=["walk/v"])
    return gt, str(tmp_path / "root")


@pytest.mark.parametrize("length", [10, 40])
def test_detection_dataset_reads_every_annotated_frame_of_a_lying_video(tmp_path, length):
    from s3d_det.data.dataset import TestClipDataset

    gt, root = detection_data(tmp_path, length)
    dataset = TestClipDataset(gt=gt, frames_root=root, clip_length=4, clip_stride=2)
    assert len(dataset) == N
    last = dataset[N - 1]  # frame 20, past a header of 10; its clip's last frames repeat frame 20
    assert last["frame"] == N
    assert round(float(last["keyframe"].float().mean())) == pytest.approx(level(N), abs=3)


def test_detection_dataset_names_a_video_shorter_than_its_ground_truth(tmp_path, truncated):
    from s3d_det.data.dataset import TestClipDataset

    gt, root = detection_data(tmp_path, 40)
    os.replace(truncated, os.path.join(root, "Videos", "walk", "v.avi"))  # 13 frames decode, the GT needs 20
    dataset = TestClipDataset(gt=gt, frames_root=root, clip_length=4, clip_stride=2)
    with pytest.raises(ValueError, match=r"video 'walk/v': .*v\.avi has 13 frames, the ground truth needs 20"):
        dataset[0]


# --------------------------------------------------------------------------------------------- visualisation
def visualize_main():
    spec = importlib.util.spec_from_file_location("visualize_video", os.path.join(ROOT, "tools/visualize_video.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def saved_dets(tmp_path, frames):
    rows = [[0, f, 0, 0.9, 5, 5, 30, 30] for f in frames]
    path = tmp_path / "dets.npz"
    save_detections(str(path), Detections(videos=["walk/v"], frame_dets=np.array(rows, dtype=np.float64)))
    return path


def test_visualize_writes_every_decodable_frame_of_a_lying_video(truncated, tmp_path):
    out = tmp_path / "out.avi"
    assert visualize_main()(["--input", truncated, "--detections", str(saved_dets(tmp_path, range(1, 14))),
                             "--output", str(out), "--quiet"]) == 0
    assert len(decoded_levels(out)) == 13


def odd_frames(folder, n=5):
    """A folder of n PNG frames of 47x63 (h x w): cv2.VideoWriter cannot make an odd-sized video here (63x47 comes
    back 62x46), a folder of frames is one."""
    os.makedirs(folder)
    for t in range(1, n + 1):
        assert cv2.imwrite(os.path.join(folder, f"{t:05d}.png"), np.full((47, 63, 3), level(t), np.uint8))
    return str(folder)


@pytest.mark.parametrize("fourcc,ext", [("MJPG", "avi"), ("mp4v", "mp4")])
def test_the_writers_crop_odd_sizes(tmp_path, fourcc, ext):
    """Why the tool pads: what cv2.VideoWriter makes of a 63x47 video here."""
    path = write_video(tmp_path / f"odd.{ext}", n=2, size=(47, 63), fourcc=fourcc)
    cap = cv2.VideoCapture(path)
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape[:2] == (46, 62)


@pytest.mark.parametrize("ext", ["avi", "mp4"])
def test_visualize_an_odd_sized_video_keeps_every_pixel(tmp_path, caplog, ext):
    frames = odd_frames(tmp_path / "odd")
    out = tmp_path / f"out.{ext}"
    with caplog.at_level(logging.WARNING):
        assert visualize_main()(["--input", frames, "--detections", str(saved_dets(tmp_path, [1])),
                                 "--output", str(out), "--quiet"]) == 0
    cap = cv2.VideoCapture(str(out))
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape[:2] == (48, 64)  # padded to even, not cropped
    assert abs(int(bgr[47, 63].mean()) - level(1)) <= 6  # the padding repeats the edge
    assert len(decoded_levels(out)) == 5
    assert warned(caplog, out, "63x47")


def test_video_detector_on_odd_sized_frames(tmp_path):
    from s3d_det.engine.inference import open_video

    source = open_video(odd_frames(tmp_path / "odd"))
    detector = VideoDetector(tiny_detector(), clip_length=4, clip_stride=2, short_side=47, batch_size=4,
                             mode="per_keyframe")
    dets = detector(source)
    assert sorted(set(dets.frame.astype(int).tolist())) == list(range(1, 6))
    assert len(dets) and dets.boxes[:, 2].max() <= 63 and dets.boxes[:, 3].max() <= 47


# --------------------------------------------------------------------------------------------- frame rates
@pytest.mark.parametrize("rate,expected", [(25.0, 25.0), (29.97, 29.97), (0.0, None), (float("nan"), None),
                                           (float("inf"), None), (-5.0, None), (100000.0, None), (1000.0, 1000.0)])
def test_usable_fps(rate, expected):
    got = usable_fps(rate)
    assert got == expected if expected is None else math.isclose(got, expected)


def test_an_absurd_header_rate_falls_back_with_a_warning(tmp_path, caplog):
    path = patch_stream_header(write_video(tmp_path / "fast.avi"), scale=1, rate=100000)
    assert cv2.VideoCapture(path).get(cv2.CAP_PROP_FPS) == 100000  # the header really says so
    with caplog.at_level(logging.WARNING):
        assert VideoFileSource(path).fps is None
    assert warned(caplog, path, "100000")
    out = tmp_path / "out.avi"
    assert visualize_main()(["--input", path, "--detections", str(saved_dets(tmp_path, [1])), "--output", str(out),
                             "--quiet"]) == 0
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == 25.0
