"""Video inference (s3d_det.engine.inference): the shared mode against the per-keyframe mode where their features
must agree (a network without temporal mixing; clip windows of S3D-G on the anchor keyframes, the linear mix of the
two neighbouring anchors' clips elsewhere), frames decoded once and held in a bounded number, bad input,
and the sliding feature gate. Tiny random models, small frames, seeded, CPU-only."""
from __future__ import annotations

import weakref

import cv2
import numpy as np
import pytest
import torch

from s3d_det.data.frames import FrameSource
from s3d_det.engine.inference import VideoDetector, open_video
from s3d_det.evaluation.detections import FRAME, FrameDetections
from s3d_det.modeling.detector import build_action_detector
from s3d_det.modeling.s3dg import S3DG, FeatureGating

H, W = 48, 64


pytestmark = pytest.mark.usefixtures("one_thread")


class MemorySource(FrameSource):
    """``n`` frames (H, W, 3) made on demand, each pixel repeated ``scale`` x ``scale`` times; counts the frames
    alive (decoded and not yet freed) and their peak, and the reads that go back behind a frame already read."""

    def __init__(self, n: int, scale: int = 1):
        super().__init__()
        self.path, self._n, self.scale = "memory-video", n, scale
        self._size = (H * scale, W * scale)
        self.alive = self.peak_alive = 0
        self.last_read, self.backwards = 0, 0  # a video decoder seeks back for a frame behind the last it read

    @property
    def num_frames(self) -> int:
        return self._n

    def _freed(self):
        self.alive -= 1

    def _decode(self, wanted):
        out = {}
        self.backwards += min(wanted) < self.last_read
        self.last_read = max(wanted)
        for f in wanted:
            rng = np.random.default_rng(f)
            frame = np.full((H, W, 3), 90, np.uint8)
            x = 8 + (2 * f) % (W - 24)  # a bright bar moving right: something for the network to see
            frame[8:40, x:x + 12] = 200
            frame += rng.integers(0, 20, frame.shape, dtype=np.uint8)
            frame = np.ascontiguousarray(frame.repeat(self.scale, axis=0).repeat(self.scale, axis=1))
            weakref.finalize(frame, self._freed)
            self.alive += 1
            self.peak_alive = max(self.peak_alive, self.alive)
            self.decode_count += 1
            out[f] = frame
        return out


def tiny_detector(variant: str, feature: str = "mixed_3c"):
    torch.manual_seed(0)
    return build_action_detector(num_classes=3, backbone_2d="resnet18", variant_3d=variant, width_3d=0.25,
                                 feature_3d=feature, anchor_sizes=(16, 32), rpn_post_nms_top_n_test=6,
                                 box_score_thresh=0.0, box_detections_per_img=20).eval()


def frame_wise(model):
    """``model`` with nothing temporal up to its 3D feature layer: the I2D stem's temporal stride and the pools'
    temporal kernels and strides set to 1 (I2D keeps I3D's pools, so the family has no such network)."""
    from s3d_det.modeling.s3dg import MaxPool

    backbone = model.backbone_3d
    conv = backbone.conv_1a.conv
    assert all(m.kernel_size[0] == 1 for m in backbone.modules() if isinstance(m, torch.nn.Conv3d))
    conv.stride = (1, *conv.stride[1:])
    backbone.conv_1a._convs = [(conv.kernel_size, conv.stride)]
    for parent in backbone.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, MaxPool):
                setattr(parent, name, MaxPool((1, *child.kernel_size[1:]), (1, *child.stride[1:]),
                                              padding=child.padding))
    backbone.feature_info = backbone._feature_info()
    assert backbone.feature_info[model.feature_3d].stride[0] == 1
    return model


def run(model, n, **kwargs):
    args = dict(clip_length=4, clip_stride=2, short_side=H, size_divisible=32, batch_size=4)
    args.update(kwargs)
    detector = VideoDetector(model, **args)
    return detector(MemorySource(n)).to_rows(), detector.stats  # the rows: compared whole below


def roi_features(model, n, **kwargs):
    """The 3D features each keyframe's RoIs were cut from, (n, C, T', h, w) in frame order, and the rows."""
    seen = []
    hook = model.roi_head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        rows, _ = run(model, n, **kwargs)
    finally:
        hook.remove()
    return torch.cat(seen), rows


def test_shared_equals_per_keyframe_without_temporal_mixing():
    """A network that mixes no frames up to its feature layer: long windows, several of them, give every keyframe
    exactly its clip's features, so the detections agree (both grids of clip stride 2, the edges by the boundary
    rule)."""
    model = frame_wise(tiny_detector("i2d"))
    n = 37
    per_keyframe, pk_stats = run(model, n, mode="per_keyframe")
    shared, stats = run(model, n, mode="shared", window=12)
    assert len(per_keyframe) > 0 and set(per_keyframe[:, FRAME].astype(int)) == set(range(1, n + 1))
    assert shared.shape == per_keyframe.shape
    np.testing.assert_allclose(shared, per_keyframe, rtol=0, atol=1e-4)
    assert pk_stats["forwards_3d"] == -(-n // 4) and pk_stats["positions_3d"] == 4 * n
    # two streams of 19 and 18 keyframes, windows of 12 positions with 2 of context: a few forwards, few positions
    assert 1 < stats["forwards_3d"] < pk_stats["forwards_3d"] and stats["positions_3d"] < 0.6 * pk_stats["positions_3d"]


def test_clip_windows_give_s3dg_its_clip_features_or_the_neighbours_mix():
    """S3D-G at mixed_3c has temporal stride 2: with clip windows, every odd frame (an anchor) gets its own clip's
    features, and every even frame f the mean of the clips of frames f - 1 and f + 1, one frame away, although
    at clip stride 2 those lie on the other grid of frames. The last even frame mixes in a clip of frame n + 1,
    whose frames the boundary rule maps into the video."""
    model = tiny_detector("s3dg")
    n = 22
    pk, pk_rows = roi_features(model, n, mode="per_keyframe")
    shared, rows = roi_features(model, n, mode="shared")
    assert pk.shape == shared.shape == (n, pk.shape[1], 2, 8, 8)
    for f in range(1, n + 1, 2):
        torch.testing.assert_close(shared[f - 1], pk[f - 1], rtol=0, atol=1e-5)
        np.testing.assert_allclose(rows[rows[:, FRAME] == f], pk_rows[pk_rows[:, FRAME] == f], rtol=0, atol=1e-4)
    for f in range(2, n, 2):
        torch.testing.assert_close(shared[f - 1], (pk[f - 2] + pk[f]) / 2, rtol=0, atol=1e-5)
    assert not torch.allclose(shared[1], pk[1], atol=1e-3)  # the mix is not the clip itself
    # frame 22 = mean of frame 21's clip and the clip of a keyframe 23: frames 19, 21, 22, 22 (repeat), in place
    # of frame 22's own 18, 20, 22, 22
    virtual = VideoDetector(model, clip_length=4, clip_stride=2, short_side=H, size_divisible=32, mode="per_keyframe")
    with torch.no_grad():
        clip = virtual._clips([[19, 21, 22, 22]], MemorySource(n).read([19, 21, 22]))
        clip_23 = model.backbone_3d(clip)["mixed_3c"][0]
    torch.testing.assert_close(shared[n - 1], (pk[n - 2] + clip_23) / 2, rtol=0, atol=1e-5)


def test_mixed_4f_at_clip_stride_1_weighs_the_anchors_by_distance():
    """mixed_4f has temporal stride 4: at clip stride 1 the anchors are frames 1, 5, 9, 13, and frame 1 + 4m + r
    is (1 - r/4) x anchor m + r/4 x anchor m + 1: frame 6 = 3/4 x frame 5 + 1/4 x frame 9, frame 8 the reverse."""
    model = tiny_detector("s3dg", "mixed_4f")
    n = 13
    pk, _ = roi_features(model, n, mode="per_keyframe", clip_stride=1, clip_length=8)
    shared, _ = roi_features(model, n, mode="shared", clip_stride=1, clip_length=8)
    assert shared.shape[2] == 2  # 8 frames, temporal stride 4: two steps
    for f in range(1, n + 1):
        m, r = divmod(f - 1, 4)
        expected = pk[4 * m] if r == 0 else (1 - r / 4) * pk[4 * m] + r / 4 * pk[4 * m + 4]
        torch.testing.assert_close(shared[f - 1], expected, rtol=0, atol=1e-5)
    # the weights matter: frame 6 is a quarter of |anchor 5 - anchor 9| from their plain mean, which is 100x atol
    gap = (pk[4] - pk[8]).abs().max()
    assert gap > 1e-3 and (shared[5] - (pk[4] + pk[8]) / 2).abs().max() > 0.2 * gap


@pytest.mark.parametrize("n", [1, 2, 3])
def test_videos_shorter_than_the_streams(n):
    """1-3 frames at clip stride 2, feature stride 2: the anchors (frames 1, 3) still get their own clips'
    features, frame 2 the mean of theirs."""
    model = tiny_detector("s3dg")
    pk, _ = roi_features(model, n, mode="per_keyframe")
    shared, rows = roi_features(model, n, mode="shared")
    assert set(rows[:, FRAME].astype(int)) == set(range(1, n + 1))
    for f in range(1, n + 1, 2):
        torch.testing.assert_close(shared[f - 1], pk[f - 1], rtol=0, atol=1e-5)
    if n == 3:
        torch.testing.assert_close(shared[1], (pk[0] + pk[2]) / 2, rtol=0, atol=1e-5)


def test_long_windows_are_decoded_once_and_hold_a_bounded_number_of_frames():
    n = 150
    source = MemorySource(n)
    detector = VideoDetector(tiny_detector("s3dg"), clip_length=4, clip_stride=2, short_side=H, batch_size=4,
                             window=16)
    dets = detector(source)
    assert source.decode_count == n and detector.stats["decoded"] == n and source.backwards == 0
    # a forward holds 2 streams x 16 positions on the odd frames (the second a position later: 17 frames over 34)
    # and the keyframes it serves; while the next forward's frames are read, the last one's are still alive: at
    # most two forwards' frames, whatever n
    assert detector.stats["max_frames_held"] <= 40 and source.peak_alive <= 80
    assert set(dets.frame.tolist()) == set(range(1, n + 1))
    x1, y1, x2, y2 = dets.boxes.T
    assert dets.boxes.min() >= 0 and max(x1.max(), x2.max()) <= W and max(y1.max(), y2.max()) <= H


@pytest.mark.parametrize("mode, window", [("per_keyframe", None), ("shared", None), ("shared", 16)])
def test_every_mode_reads_the_video_forwards_once(mode, window):
    """A video file is decoded in order: a frame behind the last one read costs a seek and decoding again from
    the previous keyframe of the codec. Each frame is read once, never behind the last one read."""
    source = MemorySource(60)
    VideoDetector(tiny_detector("s3dg"), clip_length=4, clip_stride=2, short_side=H, batch_size=4, mode=mode,
                  window=window)(source)
    assert source.decode_count == 60 and source.backwards == 0


def test_folded_batchnorm_gives_the_same_detections_and_leaves_the_model_alone():
    model = tiny_detector("s3dg")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded, _ = run(model, 9, mode="shared")
    plain, _ = run(model, 9, mode="shared", fold_bn=False)
    assert len(plain) > 9 and folded.shape == plain.shape
    np.testing.assert_allclose(folded, plain, rtol=0, atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert isinstance(model.backbone_3d.conv_1a.bn, torch.nn.BatchNorm3d)


def test_boxes_come_back_in_original_pixels():
    """The same video at twice the size (each pixel doubled) is resized to the same 48 x 64 frames: the same
    detections, boxes times 2."""
    model = tiny_detector("i2d")
    small, _ = run(model, 6, mode="per_keyframe")
    small = FrameDetections.from_rows(small)
    big = VideoDetector(model, clip_length=4, clip_stride=2, short_side=H, mode="per_keyframe")(MemorySource(6, 2))
    assert len(big) == len(small)
    for name in ("video", "frame", "label"):
        np.testing.assert_array_equal(getattr(big, name), getattr(small, name))
    np.testing.assert_allclose(big.score, small.score, atol=0.02)
    np.testing.assert_allclose(big.boxes, 2 * small.boxes, atol=0.2)


def test_smooth_frames_smooths_each_videos_detections():
    from s3d_det.evaluation.postprocess import smooth_rows

    model = tiny_detector("i2d")
    plain, _ = run(model, 9, mode="per_keyframe")
    smoothed, _ = run(model, 9, mode="per_keyframe", smooth_frames=2)
    expected = FrameDetections.from_rows(smooth_rows(plain, {0: 9}, window=2)).sorted_by_frame().to_rows()
    assert len(plain) > 9 and not np.allclose(FrameDetections.from_rows(smoothed).score,
                                              FrameDetections.from_rows(plain).score)
    np.testing.assert_allclose(smoothed, expected, atol=1e-6)


def test_bad_input_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here.mp4"):
        open_video(str(tmp_path / "nothing_here.mp4"))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError, match="garbage.mp4"):
        open_video(str(garbage))
    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
    writer.release()
    with pytest.raises((ValueError, FileNotFoundError), match="empty.mp4"):
        open_video(str(empty))
    folder = tmp_path / "frames"
    folder.mkdir()
    for f, size in ((1, (H, W)), (2, (H, W)), (3, (H + 2, W))):
        cv2.imwrite(str(folder / f"{f:05d}.png"), np.zeros((*size, 3), np.uint8))
    source = open_video(str(folder))
    detector = VideoDetector(tiny_detector("i2d"), clip_length=4, clip_stride=1, short_side=H)
    with pytest.raises(ValueError, match=r"00003\.png is 50x64.*48x64"):
        detector(source)


def test_bad_arguments():
    model = tiny_detector("s3dg")
    with pytest.raises(ValueError, match="unknown mode"):
        VideoDetector(model, clip_length=4, mode="fast")
    with pytest.raises(ValueError, match="shorter than a clip"):
        VideoDetector(model, clip_length=8, window=4)
    with pytest.raises(ValueError, match="context=8 positions do not fit"):
        VideoDetector(model, clip_length=8, window=16, context=8)
    given = build_action_detector(num_classes=2, proposals="given", width_3d=0.25, feature_3d="mixed_3c")
    with pytest.raises(ValueError, match="MODEL.PROPOSALS rpn.*'given'"):
        VideoDetector(given, clip_length=4)
    # oracle boxes (MODEL.PROPOSALS gt) come with each call, and only to such a detector
    gt_model = build_action_detector(num_classes=2, proposals="gt", width_3d=0.25, feature_3d="mixed_3c")
    with pytest.raises(ValueError, match="memory-video: boxes are the proposals of a MODEL.PROPOSALS gt detector"):
        VideoDetector(gt_model, clip_length=4)(MemorySource(3))
    with pytest.raises(ValueError, match="memory-video: boxes are the proposals"):
        VideoDetector(model, clip_length=4)(MemorySource(3), boxes={})


def test_sliding_feature_gate_by_hand():
    gate = FeatureGating(2)
    with torch.no_grad():
        gate.fc.weight.copy_(torch.eye(2))
        gate.fc.bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, -2.0, 0.0, 2.0, 4.0]]).reshape(1, 2, 5, 1, 1)
    x = x.expand(1, 2, 5, 2, 2).contiguous()
    means = x.mean(dim=(2, 3, 4))[0]
    torch.testing.assert_close(gate(x), x * torch.sigmoid(means)[None, :, None, None, None])
    gate.temporal_window = 3  # step t pools steps t - 1 .. t + 1 that exist
    pooled = torch.tensor([[1.5, 2.0, 3.0, 4.0, 4.5], [-1.0, -2 / 3, 0.0, 2.0, 3.0]])
    torch.testing.assert_close(gate(x), x * torch.sigmoid(pooled)[None, :, :, None, None])
    gate.temporal_window = 2  # steps t - 1 .. t
    pooled = torch.tensor([[1.0, 1.5, 2.5, 3.5, 4.5], [0.0, -1.0, -1.0, 1.0, 3.0]])
    torch.testing.assert_close(gate(x), x * torch.sigmoid(pooled)[None, :, :, None, None])


def test_set_gating_window_reaches_the_layers_the_forward_runs():
    net = S3DG("s3dg", width=0.25, out_features=("mixed_3c",))
    net.set_gating_window(8)
    assert net.conv_2c.gate.temporal_window == 4  # 8 frames are 4 steps after conv_1a's temporal stride 2
    assert [g.temporal_window for g in net.mixed_3c.gates] == [4] * 4
    assert all(g.temporal_window is None for g in net.mixed_4b.gates)  # beyond mixed_3c: the RoI head's layers
    net.set_gating_window(None)
    assert net.conv_2c.gate.temporal_window is None and net.mixed_3c.gates[0].temporal_window is None


# -- the one evaluation path: VideoDetector over a TestClipDataset, against the dataset's samples fed by hand -------

def on_disk_dataset(tmp_path, boundary="reflect"):
    """Two test videos of 40x100 frames (one a JPEG folder, one an MJPG .avi: each decoder) with a box each; the
    test resize to short side 32 capped at 64 gives 26x64 frames (scale 0.64: 25.6 rounded), the reflect rule
    maps the clip edges."""
    from s3d_det.data.annotations import make_gt
    from s3d_det.data.clips import ClipTransform
    from s3d_det.data.dataset import TestClipDataset

    h, w, n = 40, 100, 7
    videos = {"a/v1": "jpg", "b/v2": "avi"}
    for i, (video, kind) in enumerate(videos.items()):
        frames = []
        for f in range(1, n + 1):
            frame = np.full((h, w, 3), 60 + 20 * i, np.uint8)
            frame[8:34, 10 + 6 * f:34 + 6 * f] = (200, 180 - 10 * f, 40)
            frames.append(frame)
        if kind == "avi":
            (tmp_path / "Videos" / "b").mkdir(parents=True)
            writer = cv2.VideoWriter(str(tmp_path / "Videos" / f"{video}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                                     (w, h))
            for frame in frames:
                writer.write(frame)
            writer.release()
        else:
            (tmp_path / "Frames" / video).mkdir(parents=True)
            for f, frame in enumerate(frames, start=1):
                cv2.imwrite(str(tmp_path / "Frames" / video / f"{f:05d}.jpg"), frame)
    tube = np.array([[f, 12.0 + 6 * f, 8.0, 36.0 + 6 * f, 34.0] for f in range(2, 6)], np.float32)
    gt = make_gt(labels=["x", "y", "z"], nframes={v: n for v in videos}, resolution={v: (h, w) for v in videos},
                 gttubes={"a/v1": {0: [tube]}, "b/v2": {2: [tube]}}, train_videos=[], test_videos=list(videos))
    return TestClipDataset(gt=gt, frames_root=str(tmp_path), clip_length=4, clip_stride=2, boundary=boundary,
                           transform=ClipTransform(short_side=32, max_size=64))


def by_hand(model, dataset, samples):
    """Detections of ``model`` on ``dataset[i]`` for each i of ``samples``, each its own batch: the rows (N, 8)
    by video, frame, score."""
    from s3d_det.data.dataset import collate
    from s3d_det.modeling.detector import detections_to_rows

    index = {v: i for i, v in enumerate(dataset.videos)}
    parts = []
    with torch.no_grad():
        for i in samples:
            batch = collate([dataset[i]], size_divisible=32)
            parts.append(detections_to_rows(model(batch), batch, index))
    return FrameDetections.from_rows(np.concatenate(parts)).sorted_by_frame().to_rows()


@pytest.mark.parametrize("proposals", ["rpn", "gt"])
def test_detect_dataset_gives_the_test_datasets_samples_detections(tmp_path, proposals):
    """The one evaluation path (``evaluate_detector`` and ``tools/eval_jhmdb.py``): VideoDetector, per keyframe,
    built from the dataset, on every frame gives what the model gives on the test dataset's own samples (its clip
    frames by the boundary rule, its resize, its padding, its GT boxes as oracle proposals), here for the first,
    a middle and the last keyframe of each video."""
    from s3d_det.engine.inference import detect_dataset

    dataset = on_disk_dataset(tmp_path)
    assert dataset[0]["keyframe"].shape[1:] == (26, 64)
    if proposals == "rpn":
        model = tiny_detector("s3dg")
    else:
        torch.manual_seed(0)
        model = build_action_detector(num_classes=3, proposals="gt", variant_3d="s3dg", width_3d=0.25,
                                      feature_3d="mixed_3c", box_score_thresh=0.0).eval()
    detector = VideoDetector.for_dataset(model, dataset, batch_size=3)
    dets = detect_dataset(detector, dataset, progress=False)
    assert dets.videos == dataset.videos
    got = dets.frame_dets
    assert set(map(tuple, got[:, :2].astype(int).tolist())) <= {(v, f) for v in (0, 1) for f in range(1, 8)}
    keyframes = [0, 3, 6, 7, 10, 13]  # samples: frames 1, 4, 7 of each video
    expected = by_hand(model, dataset, keyframes)
    assert len(expected) > 0
    chosen = np.isin(got[:, 0] * 100 + got[:, 1], [v * 100 + f for v in (0, 1) for f in (1, 4, 7)])
    np.testing.assert_allclose(got[chosen], expected, rtol=0, atol=1e-4)


def test_detect_dataset_refuses_a_detector_set_up_otherwise_than_the_dataset(tmp_path):
    from s3d_det.engine.inference import detect_dataset

    dataset = on_disk_dataset(tmp_path)
    detector = VideoDetector(tiny_detector("s3dg"), clip_length=4, clip_stride=2, boundary="repeat", short_side=32,
                             max_size=64)
    with pytest.raises(ValueError, match=r"boundary 'repeat'.*the dataset's 'reflect'"):
        detect_dataset(detector, dataset, progress=False)


def test_read_ahead_gives_the_same_detections_and_decodes_once():
    """``read_ahead=True`` prepares the next step's frames and clips in a thread while the model runs: the same
    detections, every frame decoded once, the video read forwards."""
    model = tiny_detector("s3dg")
    for mode in ("per_keyframe", "shared"):
        plain, _ = run(model, 23, mode=mode)
        source = MemorySource(23)
        ahead = VideoDetector(model, clip_length=4, clip_stride=2, short_side=H, size_divisible=32, batch_size=4,
                              mode=mode, read_ahead=True)(source).to_rows()
        np.testing.assert_allclose(ahead, plain, rtol=0, atol=1e-5)
        assert source.decode_count == 23 and source.backwards == 0


def test_evaluate_detector_scores_and_writes_through_the_one_path(tmp_path):
    from s3d_det.engine.evaluation import evaluate_detector
    from s3d_det.evaluation.detections import load_detections

    dataset = on_disk_dataset(tmp_path / "data")
    model = tiny_detector("s3dg")
    out = tmp_path / "out"
    out.mkdir()
    detector = VideoDetector.for_dataset(model, dataset, batch_size=3)
    result = evaluate_detector(detector, dataset, dataset_gt(dataset), output_dir=str(out), progress=False)
    assert 0.0 <= result["frame_mAP"] <= 100.0 and result["video_mAP"] is None
    saved = load_detections(str(out / "detections.npz"))
    expected = by_hand(model, dataset, range(len(dataset)))
    np.testing.assert_allclose(saved.frame_dets, expected, rtol=0, atol=1e-4)
    assert model.training is False


def dataset_gt(dataset):
    from s3d_det.data.annotations import make_gt

    tube = np.array([[f, 12.0 + 6 * f, 8.0, 36.0 + 6 * f, 34.0] for f in range(2, 6)], np.float32)
    return make_gt(labels=["x", "y", "z"], nframes=dataset.nframes, resolution=dataset.resolution,
                   gttubes={"a/v1": {0: [tube]}, "b/v2": {2: [tube]}}, train_videos=[], test_videos=dataset.videos)


def test_detecting_on_chosen_frames_gives_those_frames_per_keyframe_detections():
    """``frames`` (AVA's keyframes): detections on those frames only, each the per-keyframe mode's, and the frames
    no clip holds are never decoded."""
    model = tiny_detector("s3dg")
    everything = VideoDetector(model, clip_length=4, clip_stride=1, short_side=H, mode="per_keyframe")(MemorySource(40))
    source = MemorySource(40)
    detector = VideoDetector(model, clip_length=4, clip_stride=1, short_side=H, mode="shared")
    some = detector(source, frames=[1, 11, 31])
    assert set(some.frame.tolist()) <= {1, 11, 31} and len(some)
    for frame in (1, 11, 31):
        a, b = everything.frame == frame, some.frame == frame
        np.testing.assert_allclose(some.boxes[b], everything.boxes[a], atol=1e-4)
        np.testing.assert_allclose(some.score[b], everything.score[a], atol=1e-5)
    # 4-frame clips (keyframe at index 2): frames 1, 2 (the edge repeated), 9-12 and 29-32
    assert source.decode_count == 10 and detector.stats["frames"] == 3
    # no smoothing over a subset: its neighbours were not detected
    smoothing = VideoDetector(model, clip_length=4, clip_stride=1, short_side=H, smooth_frames=4)
    np.testing.assert_allclose(smoothing(MemorySource(40), frames=[1, 11, 31]).score, some.score, atol=1e-6)
    with pytest.raises(ValueError, match="increasing frame numbers within 1..40"):
        detector(MemorySource(40), frames=[5, 3])
