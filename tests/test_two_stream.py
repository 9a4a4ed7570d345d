"""Optical flow as a modality and two-stream fusion: flow clips aligned with RGB keyframes in the datasets (a flip
mirrors the flow), C-channel networks, ACT's detector fusion (hand-computed scores on oracle boxes; rgb_weight 1 is
the RGB detector), the classification fusions of I3D and MMAction2, and the file-level fusion of eval_jhmdb."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from s3d_det.config import ConfigError, get_cfg
from s3d_det.data.annotations import make_gt
from s3d_det.data.clips import ClipTransform
from s3d_det.data.dataset import TestClipDataset, TrainClipDataset
from s3d_det.data.flow import FlowFolderSource
from s3d_det.data.modality import Modality
from s3d_det.engine.inference import VideoDetector
from s3d_det.evaluation.detections import Detections, FrameDetections
from s3d_det.evaluation.fusion import box_iou, fuse_detections
from s3d_det.modeling.detector import build_action_detector
from s3d_det.modeling.normalize import PixelNormalizer
from s3d_det.modeling.s3dg import S3DG
from s3d_det.modeling.two_stream import TwoStreamDetector, fuse_class_scores

H, W, N = 48, 64, 10
pytestmark = pytest.mark.usefixtures("one_thread")


# -- data -----------------------------------------------------------------------------------------------------------
def write_video(root: str, video: str = "act/v1", *, flow_x: int = 159, flow_y: int = 115) -> None:
    """Frames 1..N (a grey ramp, frame f brighter by f) and x/y flow JPEGs 1..N-1 of constant values (159 is +5 px,
    115 is -2 px at bound 20: round((f + 20) * 255 / 40))."""
    frames = os.path.join(root, "Frames", video)
    flow = os.path.join(root, "Flow", video)
    os.makedirs(frames)
    for axis in ("x", "y"):
        os.makedirs(os.path.join(flow, axis))
    for f in range(1, N + 1):
        image = np.full((H, W, 3), 60 + f, np.uint8)
        image[:, : W // 2, 2] = 200  # a red left half (BGR on disk): shows a flip of the RGB keyframe
        cv2.imwrite(os.path.join(frames, f"{f:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    for k in range(1, N):
        cv2.imwrite(os.path.join(flow, "x", f"{k:05d}.jpg"), np.full((H, W), flow_x, np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(os.path.join(flow, "y", f"{k:05d}.jpg"), np.full((H, W), flow_y, np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])


def tiny_gt(video: str = "act/v1") -> dict:
    tube = np.array([[f, 10, 8, 40, 44] for f in range(1, N + 1)], np.float32)
    return make_gt(labels=["act", "other"], nframes={video: N}, resolution={video: (H, W)},
                   gttubes={video: {0: [tube]}}, train_videos=[[video]], test_videos=[[video]])


def test_flow_sample_is_flow_clip_and_rgb_keyframe(tmp_path):
    write_video(str(tmp_path))
    modality = Modality("flow", str(tmp_path / "Flow"))
    data = TestClipDataset(gt=tiny_gt(), frames_root=str(tmp_path), clip_length=4, clip_stride=1,
                           transform=ClipTransform(short_side=H), modality=modality)
    sample = data[N - 1]  # the last frame: its clip reaches past the end, and frame N repeats flow N-1
    assert sample["clip"].shape == (2, 4, H, W) and sample["keyframe"].shape == (3, H, W)
    assert torch.all(sample["clip"][0] == 159) and torch.all(sample["clip"][1] == 115)
    # the keyframe is frame N's RGB (grey 70, red left half), not flow
    assert abs(float(sample["keyframe"][1].mean()) - (60 + N)) <= 1 and float(sample["keyframe"][0, :, 0].mean()) > 190


def test_a_flip_mirrors_the_flow_and_the_keyframe_together(tmp_path):
    write_video(str(tmp_path))
    modality = Modality("flow", str(tmp_path / "Flow"))
    data = TrainClipDataset(gt=tiny_gt(), frames_root=str(tmp_path), clip_length=4,
                            transform=ClipTransform(short_side=H, hflip_prob=1.0, brightness=0.5), modality=modality)
    sample = data[0]
    assert sample["flipped"]
    assert torch.all(sample["clip"][0] == 255 - 159)  # x mirrored: +5 px -> -5 px (96 = round(15 * 255 / 40))
    assert torch.all(sample["clip"][1] == 115)  # y unchanged, and no colour jitter on flow
    # the keyframe flipped too: its red half is now on the right; boxes mirrored: x1' = W - x2 = 24
    assert float(sample["keyframe"][0, :, -1].mean()) > float(sample["keyframe"][0, :, 0].mean()) + 50
    assert sample["boxes"][0, 0].item() == pytest.approx(W - 40)


def test_missing_flow_folder_is_one_line_naming_the_video(tmp_path):
    write_video(str(tmp_path))
    modality = Modality("flow", str(tmp_path / "Nowhere"))
    with pytest.raises(FileNotFoundError, match="act/v1.*Nowhere"):
        TestClipDataset(gt=tiny_gt(), frames_root=str(tmp_path), clip_length=4, modality=modality)
    with pytest.raises(ValueError, match="FLOW_DIR"):
        Modality("flow")


# -- networks -------------------------------------------------------------------------------------------------------
def test_pixel_normalizer_takes_any_channel_count():
    norm = PixelNormalizer(mean=(127.5, 127.5), std=(127.5, 127.5))
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 1, 3).expand(1, 2, 3).contiguous()
    assert torch.allclose(norm(x), torch.tensor([-1.0, 0.0, 1.0]).expand(1, 2, 3))
    with pytest.raises(ValueError, match=r"expected raw frames \(B, 2"):
        norm(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="BGR"):
        PixelNormalizer(mean=(1, 2), std=(1, 1), channel_order="BGR")
    rgb = PixelNormalizer()
    with pytest.raises(ValueError, match="2 input channels cannot replace one for 3"):
        rgb.set_convention(norm)


def test_flow_backbone_from_config_has_a_two_channel_stem_and_i3d_convention():
    cfg = get_cfg()
    cfg.INPUT.MODALITY = "flow"
    cfg.MODEL.BACKBONE_3D.WIDTH = 0.25
    net = S3DG.from_config(cfg)
    assert net.conv_1a.conv.weight.shape[1] == 2 and net.in_channels == 2
    assert net.input_norm.convention()["mean"] == [127.5, 127.5]
    cfg.INPUT.MODALITY = "brox"
    cfg.MODEL.BACKBONE_3D.PRESET = "tfslim"  # a preset's single value serves every channel
    assert S3DG.from_config(cfg).input_norm.convention()["std"] == [127.5] * 3
    assert S3DG("s3dg", width=0.25, in_channels=2, stem_style="space_to_depth").conv_1a.conv.weight.shape[1] == 16
    with pytest.raises(ValueError, match="one value per input channel"):
        S3DG("s3dg", in_channels=2, pixel_mean=(1.0, 2.0, 3.0))


# -- detection fusion -----------------------------------------------------------------------------------------------
def oracle_detector(in_channels: int):
    torch.manual_seed(in_channels)
    return build_action_detector(num_classes=2, proposals="gt", width_3d=0.25, feature_3d="mixed_3c",
                                 backbone_3d_kwargs={"in_channels": in_channels}, box_score_thresh=0.0,
                                 box_reg_loss_weight=0.0).eval()


def oracle_batch():
    boxes = torch.tensor([[10.0, 8.0, 40.0, 44.0]])
    return {"clip": torch.rand(1, 3, 4, H, W) * 255, "flow_clip": torch.rand(1, 2, 4, H, W) * 255,
            "image_sizes": [(H, W)], "scale": [(1.0, 1.0)], "flipped": [False], "orig_size": [(H, W)],
            "boxes": [boxes], "labels": [torch.tensor([0])]}


def fixed_logits(model, logits):
    """The head's ``predict`` giving ``logits`` (1, 3) and zero box deltas, whatever its input."""
    def predict(features, proposals):
        return torch.tensor([logits]), torch.zeros(1, 12)
    model.roi_head.predict = predict


def test_act_fusion_averages_the_two_heads_probabilities_on_the_rgb_boxes():
    rgb, flow = oracle_detector(3), oracle_detector(2)
    fixed_logits(rgb, [0.0, np.log(3.0), 0.0])  # softmax: background 0.2, act 0.6, other 0.2
    fixed_logits(flow, [0.0, 0.0, np.log(2.0)])  # 0.25, 0.25, 0.5
    out = TwoStreamDetector(rgb=rgb, flow=flow, rgb_weight=0.5)(oracle_batch())[0]
    scores = {int(label): float(score) for label, score in zip(out["labels"], out["scores"])}
    assert scores == pytest.approx({0: 0.5 * 0.6 + 0.5 * 0.25, 1: 0.5 * 0.2 + 0.5 * 0.5})
    assert torch.allclose(out["boxes"], torch.tensor([[10.0, 8.0, 40.0, 44.0]]).expand(2, 4))
    out = TwoStreamDetector(rgb=rgb, flow=flow, rgb_weight=0.25)(oracle_batch())[0]
    scores = {int(label): float(score) for label, score in zip(out["labels"], out["scores"])}
    assert scores == pytest.approx({0: 0.25 * 0.6 + 0.75 * 0.25, 1: 0.25 * 0.2 + 0.75 * 0.5})


def test_rgb_weight_one_gives_the_rgb_detector_and_video_inference_runs_both_streams(tmp_path):
    write_video(str(tmp_path))
    rgb, flow = oracle_detector(3), oracle_detector(2)
    data = TestClipDataset(gt=tiny_gt(), frames_root=str(tmp_path), clip_length=4, clip_stride=1,
                           transform=ClipTransform(short_side=H), modality=Modality("flow", str(tmp_path / "Flow")))
    boxes = data.annotations["act/v1"]
    src, flow_src = data.source("act/v1"), data.source("act/v1", flow=True)
    args = dict(clip_length=4, clip_stride=1, short_side=H, mode="per_keyframe")
    alone = VideoDetector(rgb, **args)(src, boxes=boxes)
    fused = VideoDetector(TwoStreamDetector(rgb=rgb, flow=flow, rgb_weight=1.0), modality="flow", **args)(
        src, boxes=boxes, clip_source=flow_src)
    assert len(alone) == len(fused) == 2 * N
    assert np.allclose(alone.score, fused.score, atol=1e-5) and np.allclose(alone.boxes, fused.boxes, atol=1e-4)
    flow_only = VideoDetector(flow, modality="flow", **args)(src, boxes=boxes, clip_source=flow_src)
    half = VideoDetector(TwoStreamDetector(rgb=rgb, flow=flow, rgb_weight=0.5), modality="flow", **args)(
        src, boxes=boxes, clip_source=flow_src)
    order = lambda d: np.lexsort((d.label, d.frame))  # noqa: E731
    expected = 0.5 * alone.score[order(alone)] + 0.5 * flow_only.score[order(flow_only)]
    assert np.allclose(half.score[order(half)], expected, atol=1e-5)
    with pytest.raises(ValueError, match="clip_source"):
        VideoDetector(flow, modality="flow", **args)(src, boxes=boxes)
    with pytest.raises(ValueError, match="input channels"):
        VideoDetector(flow, **args)


# -- classification fusion ------------------------------------------------------------------------------------------
def test_class_score_fusions_by_hand():
    rgb, flow = np.array([[1.0, 2.0, 0.0]]), np.array([[0.0, -1.0, 3.0]])
    assert fuse_class_scores(rgb, flow, method="logits").tolist() == [[1.0, 1.0, 3.0]]  # I3D: summed logits
    assert fuse_class_scores(rgb, flow, method="logits", weights=(2, 1)).tolist() == [[2.0, 3.0, 3.0]]
    p_rgb, p_flow = np.array([[0.6, 0.4]]), np.array([[0.1, 0.9]])
    assert fuse_class_scores(p_rgb, p_flow, method="softmax", weights=(3, 1)).ravel().tolist() == pytest.approx(
        [0.475, 0.525])
    with pytest.raises(ValueError, match="not both 0"):
        fuse_class_scores(p_rgb, p_flow, method="softmax", weights=(0, 0))
    with pytest.raises(ValueError, match="one shape"):
        fuse_class_scores(p_rgb, rgb)


# -- file-level detection fusion ------------------------------------------------------------------------------------
def dets(rows) -> Detections:
    return Detections(videos=["a", "b"], frame_dets=FrameDetections.from_rows(np.array(rows, float).reshape(-1, 8)))


def test_box_iou_by_hand():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [[50 / 150, 0.0]]


def test_file_fusion_pairs_by_iou_keeps_the_rgb_box_and_scores_the_unpaired_alone():
    rgb = dets([[0, 1, 0, 0.8, 0, 0, 10, 10],      # paired with the flow box of IoU 0.82 (not the 0.33 one)
                [0, 1, 1, 0.6, 0, 0, 10, 10],      # label 1: no flow detection of that label -> 0.5 x 0.6
                [1, 2, 0, 0.4, 0, 0, 10, 10]])     # video b: the flow box overlaps too little -> alone
    flow = dets([[0, 1, 0, 0.2, 0, 0, 10, 12.2],   # IoU 100 / 122 = 0.82
                 [0, 1, 0, 0.9, 5, 0, 15, 10],     # IoU 1/3: unpaired -> 0.5 x 0.9 with its own box
                 [1, 2, 0, 0.5, 8, 8, 18, 18]])    # IoU 4 / 196
    out = fuse_detections(rgb, flow, rgb_weight=0.5, iou=0.5).per_frame
    rows = sorted(zip(out.video.tolist(), out.frame.tolist(), out.label.tolist(), np.round(out.score, 6).tolist(),
                      out.boxes.tolist()))
    assert rows == [(0, 1, 0, 0.45, [5, 0, 15, 10]), (0, 1, 0, 0.5, [0, 0, 10, 10]), (0, 1, 1, 0.3, [0, 0, 10, 10]),
                    (1, 2, 0, 0.2, [0, 0, 10, 10]), (1, 2, 0, 0.25, [8, 8, 18, 18])]
    weighted = fuse_detections(rgb, flow, rgb_weight=0.25, iou=0.5).per_frame
    paired = (weighted.video == 0) & (weighted.label == 0) & (weighted.boxes[:, 0] == 0)
    assert weighted.score[paired].tolist() == pytest.approx([0.25 * 0.8 + 0.75 * 0.2])
    with pytest.raises(ValueError, match="different videos"):
        fuse_detections(rgb, Detections(videos=["b", "a"], frame_dets=np.zeros((0, 8))))


# -- configs --------------------------------------------------------------------------------------------------------
def test_two_stream_config_refuses_streams_that_see_different_clips(tmp_path):
    from s3d_det.engine.defaults import flow_stream

    flow_yaml = tmp_path / "flow.yaml"
    flow_yaml.write_text("INPUT:\n  MODALITY: flow\n  CLIP_LENGTH: 8\n")
    cfg = get_cfg()
    cfg.MODEL.TWO_STREAM.FLOW_CONFIG = "flow.yaml"
    with pytest.raises(ConfigError, match="INPUT.CLIP_LENGTH is 16 here and 8"):
        flow_stream(cfg, str(tmp_path / "rgb.yaml"))
    flow_yaml.write_text("INPUT:\n  MODALITY: rgb\n")
    with pytest.raises(ConfigError, match="'rgb'"):
        flow_stream(cfg, str(tmp_path / "rgb.yaml"))
    flow_yaml.write_text(f"INPUT:\n  MODALITY: flow\nOUTPUT_DIR: {tmp_path / 'out'}\n")
    with pytest.raises(FileNotFoundError, match="model_final.pth"):
        flow_stream(cfg, str(tmp_path / "rgb.yaml"))


def test_flow_source_reads_our_layout(tmp_path):
    write_video(str(tmp_path))
    src = FlowFolderSource(str(tmp_path / "Flow" / "act" / "v1"))
    assert src.num_frames == N and src.channels == 2
    frames = src.read([1, N])
    assert frames[N].shape == (H, W, 2) and frames[N][0, 0].tolist() == [159, 115]


def test_classification_clips_of_flow_are_mirrored_by_a_flip_and_never_jittered(tmp_path):
    from s3d_det.data.video_dataset import TestVideoDataset, TrainVideoDataset
    from s3d_det.data.video_lists import VideoList, VideoRecord

    write_video(str(tmp_path))
    videos = VideoList(dataset="ucf101", subset="train", classes=["act"],
                       records=[VideoRecord(video="act/v1", path=str(tmp_path / "Frames" / "act" / "v1"), label=0)])
    modality = Modality("flow", str(tmp_path / "Flow"))
    train = TrainVideoDataset(videos, clip_length=4, crop_size=32, hflip_prob=1.0, brightness=0.8, modality=modality)
    clip = train[0]["clip"]
    assert clip.shape == (2, 4, 32, 32) and torch.all(clip[0] == 96) and torch.all(clip[1] == 115)
    test = TestVideoDataset(videos, clip_length=4, crop_size=32, short_side=32, num_clips=2, num_crops=3,
                            modality=modality)
    clips = test[1]["clips"]
    assert clips.shape == (3, 2, 4, 32, 32) and torch.all(clips[:, 0] == 159)
    with pytest.raises(FileNotFoundError, match="no flow for 1 of 1 videos.*act/v1"):
        TrainVideoDataset(videos, modality=Modality("flow", str(tmp_path / "Nowhere")))


def test_two_stream_config_takes_the_runs_split_and_data_overrides(tmp_path):
    """The flow stream follows the run: its DATASETS.SPLIT is the RGB config's, the run's DATASETS.* overrides apply
    to it too, and {split} names one flow model a split."""
    from s3d_det.engine.defaults import flow_stream

    (tmp_path / "flow.yaml").write_text("INPUT:\n  MODALITY: flow\nOUTPUT_DIR: out\n")
    for split in (1, 2):
        (tmp_path / f"flow_split{split}.pth").write_bytes(b"")
    cfg = get_cfg()
    cfg.MODEL.TWO_STREAM.FLOW_CONFIG = "flow.yaml"
    cfg.MODEL.TWO_STREAM.FLOW_WEIGHTS = str(tmp_path / "flow_split{split}.pth")
    cfg.DATASETS.SPLIT, cfg.DATASETS.ROOT = 2, "/data"
    flow_cfg = flow_stream(cfg, str(tmp_path / "rgb.yaml"), ["DATASETS.ROOT", "/data", "SOLVER.BASE_LR", "0.5"])
    assert flow_cfg.DATASETS.SPLIT == 2 and flow_cfg.DATASETS.ROOT == "/data"
    assert flow_cfg.MODEL.WEIGHTS == str(tmp_path / "flow_split2.pth")
    assert flow_cfg.SOLVER.BASE_LR != 0.5  # not a data or clip key: the flow stream keeps its own
    with pytest.raises(ConfigError, match="DATASETS.ROOT is '/data' here"):
        flow_stream(cfg, str(tmp_path / "rgb.yaml"))  # the override not given to the flow stream: refused
