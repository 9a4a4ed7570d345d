"""Input conventions owned by the model (s3d_det.modeling.normalize): hand-computed values, presets, the padding,
and conventions that travel with the weights."""
import numpy as np
import pytest
import torch

from s3d_det.modeling import build_video_backbone
from s3d_det.modeling.normalize import PixelNormalizer


def test_imagenet_convention_by_hand():
    norm = PixelNormalizer(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    x = torch.tensor([0.0, 255.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    out = norm(x)[:, :, 0, 0]
    np.testing.assert_allclose(out[0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225], rtol=1e-6)


def test_bgr_reorders_before_the_mean():
    norm = PixelNormalizer(mean=[100.0, 110.0, 120.0], std=[1.0, 2.0, 4.0], channel_order="BGR")
    x = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float32).view(1, 3, 1, 1)  # R, G, B
    # BGR: (30 - 100) / 1, (20 - 110) / 2, (10 - 120) / 4
    assert norm(x).flatten().tolist() == [-70.0, -45.0, -27.5]
    assert norm(x.to(torch.uint8)).flatten().tolist() == [-70.0, -45.0, -27.5]  # uint8 accepted


def test_from_range_tfslim_and_default():
    tf = PixelNormalizer.from_range((-1.0, 1.0))
    x = torch.tensor([0.0, 127.5, 255.0]).view(3, 1, 1, 1).expand(3, 3, 1, 1)
    assert tf(x)[:, 0, 0, 0].tolist() == [-1.0, 0.0, 1.0]
    assert PixelNormalizer()(x)[:, 1, 0, 0].tolist() == [0.0, 0.5, 1.0]  # [0, 1]


def test_padding_is_zero_after_normalisation():
    norm = PixelNormalizer(mean=[100.0] * 3, std=[50.0] * 3)
    x = torch.zeros(2, 3, 4, 5)  # raw padding is 0, i.e. -2 once normalised
    out = norm(x, image_sizes=[(4, 5), (2, 3)])
    assert (out[0] == -2).all()
    assert (out[1, :, :2, :3] == -2).all() and (out[1, :, 2:] == 0).all() and (out[1, :, :, 3:] == 0).all()
    clip = norm(torch.zeros(1, 3, 2, 4, 5), image_sizes=[(3, 4)])  # (B, 3, T, H, W)
    assert (clip[0, :, :, :3, :4] == -2).all() and (clip[0, :, :, 3:] == 0).all() and (clip[..., 4:] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="channel_order"):
        PixelNormalizer(channel_order="GBR")
    with pytest.raises(ValueError, match="std"):
        PixelNormalizer(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"\(B, 3, \.\.\.\)"):
        PixelNormalizer()(torch.zeros(1, 4, 2, 2))


def test_tfslim_preset_gets_minus_one_to_one_with_no_input_key():
    """(c) of issue 25: the TF-slim S3D-G preset normalises raw frames to [-1, 1] by itself."""
    net = build_video_backbone("s3dg", preset="tfslim", width=0.25).eval()
    x = torch.tensor([0.0, 127.5, 255.0]).view(3, 1, 1, 1, 1).expand(3, 3, 1, 1, 1)  # black, grey, white clips
    assert net.input_norm(x)[:, 0, 0, 0, 0].tolist() == [-1.0, 0.0, 1.0]
    seen = []
    net.conv_1a.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        net(torch.full((1, 3, 8, 32, 32), 255.0))
    assert torch.equal(seen[0], torch.ones_like(seen[0]))  # white is 1 at the first conv
    plain = build_video_backbone("s3dg", width=0.25)  # no preset: [0, 1]
    assert plain.input_norm.convention() == {"channel_order": "RGB", "mean": [0.0] * 3, "std": [255.0] * 3}
    tv = build_video_backbone("s3d", preset="torchvision", width=0.25).input_norm
    np.testing.assert_allclose(tv.mean, [0.43216 * 255, 0.394666 * 255, 0.37645 * 255], rtol=1e-6)
    np.testing.assert_allclose(tv.std, [0.22803 * 255, 0.22145 * 255, 0.216989 * 255], rtol=1e-6)


def test_conventions_travel_in_the_state_dict():
    a = PixelNormalizer(mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0], channel_order="BGR")
    b = PixelNormalizer()
    b.load_state_dict(a.state_dict())
    assert b.convention() == {"channel_order": "BGR", "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}
