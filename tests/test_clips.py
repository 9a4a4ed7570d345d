"""Clip sampling (hand-computed frame numbers) and transforms applied alike to frames and boxes."""
import cv2
import numpy as np
import pytest
import torch

from s3d_det.data.clips import (
    ClipTransform,
    clip_frames,
    color_jitter,
    read_clip,
    resized_shape,
    sample_color_factors,
    to_tensor,
)
from s3d_det.data.frames import ImageFolderSource


@pytest.mark.parametrize("keyframe,n,length,stride,boundary,expected", [
    (5, 10, 5, 1, "repeat", [3, 4, 5, 6, 7]),     # odd T: keyframe in the middle
    (5, 10, 4, 1, "repeat", [3, 4, 5, 6]),        # even T: keyframe at index T // 2 = 2
    (5, 10, 5, 2, "repeat", [1, 3, 5, 7, 9]),     # stride 2
    (2, 10, 5, 2, "repeat", [1, 1, 2, 4, 6]),     # -2, 0 clamp to frame 1
    (2, 10, 5, 2, "reflect", [4, 2, 2, 4, 6]),    # -2 -> 4, 0 -> 2 (mirror about frame 1)
    (9, 10, 4, 2, "repeat", [5, 7, 9, 10]),       # 11 clamps to 10
    (9, 10, 4, 2, "reflect", [5, 7, 9, 9]),       # 11 -> 9 (mirror about frame 10)
    (1, 1, 3, 1, "reflect", [1, 1, 1]),           # one-frame video
])
def test_clip_frames_by_hand(keyframe, n, length, stride, boundary, expected):
    assert clip_frames(keyframe, n, length, stride, boundary) == expected


def test_reflect_matches_numpy_pad():
    n, length, stride = 4, 16, 3
    padded = np.pad(np.arange(1, n + 1), length * stride, mode="reflect")
    for k in range(1, n + 1):
        raw = k - 1 + (np.arange(length) - length // 2) * stride + length * stride
        assert clip_frames(k, n, length, stride, "reflect") == padded[raw].tolist()


def test_clip_frames_errors():
    with pytest.raises(ValueError, match=r"keyframe 0 outside .*1\.\.10"):
        clip_frames(0, 10, 4)
    with pytest.raises(ValueError, match=r"keyframe 11 outside"):
        clip_frames(11, 10, 4)
    with pytest.raises(ValueError, match="unknown boundary mode 'wrap'"):
        clip_frames(1, 10, 4, boundary="wrap")


def test_read_clip_decodes_each_frame_once(tmp_path):
    for k in range(1, 4):
        cv2.imwrite(str(tmp_path / f"{k:05d}.png"), np.full((4, 6, 3), k, np.uint8))
    src = ImageFolderSource(str(tmp_path))
    frames = clip_frames(1, 3, 8, 1)  # [1, 1, 1, 1, 1, 2, 3, 3]
    clip = read_clip(src, frames)
    assert clip.shape == (8, 4, 6, 3)
    assert clip[:, 0, 0, 0].tolist() == frames
    assert src.decode_count == 3


def test_resized_shape():
    assert resized_shape(240, 320, 120) == (120, 160)
    assert resized_shape(240, 320, 240, max_size=300) == (225, 300)  # longer side capped: scale 300/320
    assert resized_shape(320, 240, 480, max_size=1000) == (640, 480)


def test_resize_and_flip_move_boxes_with_pixels():
    """A white rectangle drawn at the box must sit under the transformed box."""
    clip = np.zeros((3, 24, 32, 3), np.uint8)
    clip[:, 4:12, 2:10] = 255  # box x1=2, y1=4, x2=10, y2=12 (continuous coordinates)
    out = ClipTransform(short_side=12, hflip_prob=1.0)(clip, np.array([[2, 4, 10, 12]]),
                                                        rng=np.random.default_rng(0))
    # resize 24x32 -> 12x16 halves everything: [1, 2, 5, 6]; flip in W=16: x1' = 16 - 5, x2' = 16 - 1
    np.testing.assert_allclose(out.boxes, [[11, 2, 15, 6]])
    assert out.boxes.dtype == np.float32 and out.flipped and out.scale == (0.5, 0.5)
    assert out.clip.shape == (3, 12, 16, 3)
    ys, xs = np.nonzero(out.clip[1, :, :, 0] > 127)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (11, 2, 15, 6)
    np.testing.assert_array_equal(out.clip[0], out.clip[2])


def test_scale_jitter_is_seeded():
    clip = np.zeros((2, 24, 32, 3), np.uint8)
    t = ClipTransform(short_side=(12, 18, 24))
    sizes = {t(clip, np.zeros((0, 4)), rng=np.random.default_rng(s)).clip.shape[1] for s in range(20)}
    assert sizes == {12, 18, 24}
    ranged = ClipTransform(short_side_range=(10, 13))
    heights = [ranged(clip, np.zeros((0, 4)), rng=np.random.default_rng(s)).clip.shape[1] for s in range(30)]
    assert set(heights) == {10, 11, 12, 13}
    again = [ranged(clip, np.zeros((0, 4)), rng=np.random.default_rng(s)).clip.shape[1] for s in range(30)]
    assert heights == again
    with pytest.raises(ValueError, match="pass rng"):
        t(clip, np.zeros((0, 4)))


def test_color_jitter_by_hand():
    px = np.array([[[[100, 100, 100], [50, 150, 250]]]], np.uint8)  # (T=1, H=1, W=2, 3)
    np.testing.assert_allclose(color_jitter(px, (1.5, 1, 1)), [[[[150, 150, 150], [75, 225, 255]]]])
    grey = np.array([[[[50] * 3, [150] * 3]]], np.uint8)  # mean grey 100
    np.testing.assert_allclose(color_jitter(grey, (1, 0.5, 1)), [[[[75] * 3, [125] * 3]]], rtol=1e-5)
    g = 0.299 * 50 + 0.587 * 150 + 0.114 * 250
    np.testing.assert_allclose(color_jitter(px, (1, 1, 0))[0, 0, 1], [g] * 3, rtol=1e-5)


def test_color_jitter_identical_across_frames():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    clip = np.stack([frame] * 4)
    t = ClipTransform(short_side=8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)
    out = t(clip, np.zeros((0, 4)), rng=np.random.default_rng(1)).clip
    assert out.dtype == np.float32
    for i in range(1, 4):  # one map for the clip (a per-frame map would differ by whole grey levels); OpenCV's
        # vector and scalar loops may round the last bit differently, so frames agree to float32 precision
        np.testing.assert_allclose(out[i], out[0], rtol=0, atol=1e-4)
    plain = ClipTransform(short_side=8)(clip, np.zeros((0, 4))).clip.astype(np.float32)
    assert np.abs(out - plain).max() > 1  # the jitter did something
    b, c, s, h = sample_color_factors(np.random.default_rng(1), 0.4, 0.4, 0.4, 0.2)
    assert all(0.6 <= f <= 1.4 for f in (b, c, s)) and -0.2 <= h <= 0.2 and h != 0
    assert sample_color_factors(np.random.default_rng(1), 0, 0, 0) == (1.0, 1.0, 1.0, 0.0)


def _jitter_reference(clip, b, c, s, h):
    """color_jitter's docstring, step by step in plain numpy (float64; hue through OpenCV's float HSV)."""
    grey = np.array([0.299, 0.587, 0.114])
    x = np.clip(clip.astype(np.float64) * b, 0, 255)
    m = (x @ grey).mean()
    x = np.clip(m + c * (x - m), 0, 255)
    g = (x @ grey)[..., None]
    x = np.clip(g + s * (x - g), 0, 255)
    hsv = cv2.cvtColor(x.reshape(-1, x.shape[-2], 3).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * h, 360.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(x.shape), 0, 255)


@pytest.mark.parametrize("seed", range(6))
def test_color_jitter_matches_the_plain_formulas(seed):
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)
    factors = (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2), rng.uniform(-0.5, 0.5))
    out = color_jitter(clip, factors)
    assert out.dtype == np.float32 and out.shape == clip.shape
    np.testing.assert_allclose(out, _jitter_reference(clip, *factors), rtol=0, atol=0.01)


def test_hue_shift_by_hand():
    px = np.array([[[[255, 0, 0], [0, 0, 255], [128, 128, 128], [255, 128, 0]]]], np.uint8)  # red, blue, grey, orange
    third = color_jitter(px, (1, 1, 1, 1 / 3))  # hue +120 degrees: red -> green, blue -> red; grey stays
    np.testing.assert_allclose(third[0, 0, :3], [[0, 255, 0], [255, 0, 0], [128, 128, 128]], atol=0.01)
    np.testing.assert_allclose(third[0, 0, 3], [0, 255, 128], atol=0.6)  # orange (30 deg) -> spring green (150)
    np.testing.assert_allclose(color_jitter(px, (1, 1, 1, -1 / 3))[0, 0, 0], [0, 0, 255], atol=0.01)
    np.testing.assert_allclose(color_jitter(px, (1, 1, 1, 0.5))[0, 0, 0], [0, 255, 255], atol=0.01)  # cyan
    with pytest.raises(ValueError, match="hue shift"):
        color_jitter(px, (1, 1, 1, 0.6))
    with pytest.raises(ValueError, match=r"hue must lie in \[0, 0.5\]"):
        ClipTransform(short_side=8, hue=0.7)


def test_to_tensor_keeps_the_raw_values_channels_first():
    px = np.arange(2 * 1 * 2 * 3, dtype=np.uint8).reshape(2, 1, 2, 3)  # (T, H, W, 3)
    x = to_tensor(px)
    assert x.shape == (3, 2, 1, 2) and x.dtype == torch.float32
    assert x[:, 1, 0, 1].tolist() == [9, 10, 11]  # frame 1, pixel (0, 1): values 6 + 3 = 9, 10, 11
    assert to_tensor(px[0]).shape == (3, 1, 2)


def test_clip_transform_refuses_bad_settings():
    with pytest.raises(ValueError, match="short_side must be"):
        ClipTransform(short_side=())
    with pytest.raises(ValueError, match="short_side_range"):
        ClipTransform(short_side_range=(20, 10))
    with pytest.raises(ValueError, match="hflip_prob"):
        ClipTransform(hflip_prob=1.5)
