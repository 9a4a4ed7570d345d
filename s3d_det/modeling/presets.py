"""Architecture presets, declared beside the public checkpoints they fit.

A preset fixes every architecture detail a checkpoint family was trained with (stem, padding, BN, head
pooling), so that ``build_video_classifier("s3d", num_classes=400, preset="torchvision")`` is the network
that torchvision's S3D file loads into. ``s3d_det.checkpoint`` converts each family's file to our keys;
``source`` names its converter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class Preset:
    """One checkpoint family.

    Attributes:
        name: the preset name users pass.
        source: the converter in ``s3d_det.checkpoint`` for its files.
        variant: the variant its files hold.
        num_classes: classes of its head (None when its files carry no head).
        backbone: keyword arguments of ``S3DG``.
        head: keyword arguments of ``ClassifierHead``.
        input_range: pixel range the network expects before normalisation, (low, high).
        mean, std: per-channel RGB normalisation applied after scaling to ``input_range``.
        files: the files it fits, for the docs and error messages.
    """

    name: str
    source: str
    variant: str
    num_classes: Optional[int]
    backbone: Dict[str, Any]
    head: Dict[str, Any]
    input_range: Tuple[float, float] = (0.0, 1.0)
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    files: str = ""
    notes: str = field(default="", compare=False)

    def s3dg_kwargs(self) -> Dict[str, Any]:
        """All the ``S3DG`` keyword arguments it fixes: ``backbone`` and the input convention."""
        return {**self.backbone, **self.input_convention()}

    def input_convention(self) -> Dict[str, Tuple[float, float, float]]:
        """``S3DG``'s ``pixel_mean`` and ``pixel_std`` (RGB, pixel units) for ``input_range``, ``mean`` and ``std``
        (``PixelNormalizer.from_range`` converts)."""
        norm = self.normalizer()
        return {"pixel_mean": tuple(norm.mean.tolist()), "pixel_std": tuple(norm.std.tolist())}

    def normalizer(self):
        """The ``PixelNormalizer`` of this family's input convention."""
        from .normalize import PixelNormalizer

        return PixelNormalizer.from_range(self.input_range, self.mean, self.std)


PRESETS: Dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="torchvision",
            source="torchvision_s3d",
            variant="s3d",
            num_classes=400,
            backbone=dict(
                stem_style="separable", first_temporal_kernel=7, temporal_kernel=3, same_padding=False,
                temporal_norm=True, bn_eps=1e-3, bn_momentum=1e-3,
            ),
            head=dict(dropout=0.2, pool_size=(2, 7, 7)),
            mean=(0.43216, 0.394666, 0.37645),
            std=(0.22803, 0.22145, 0.216989),
            files="torchvision S3D_Weights.KINETICS400_V1 (s3d-d76dad2f.pth), Kinetics-400",
        ),
        Preset(
            name="milnce",
            source="milnce_s3dg",
            variant="s3dg",
            num_classes=512,
            backbone=dict(
                stem_style="space_to_depth", temporal_kernel=3, same_padding=True, pool_padding="fixed_same",
                temporal_norm=True,
                gating_bias=True, bn_eps=1e-5, bn_momentum=0.1,
            ),
            head=dict(dropout=0.0, pool_size=None),
            files="MIL-NCE HowTo100M S3D-G (s3d_howto100m.pth); the head is the 512-d video embedding",
            notes=(
                "MIL-NCE pads its max-pools with a fixed (k - s) split and ceil mode (pool_padding="
                "'fixed_same'); that equals TensorFlow 'SAME' only when T % 4 == 0 and H, W % 16 == 0."
            ),
        ),
        Preset(
            name="tfslim",
            source="tfslim_s3dg",
            variant="s3dg",
            num_classes=None,
            backbone=dict(
                stem_style="full", first_temporal_kernel=3, temporal_kernel=3, same_padding=True,
                temporal_norm=False, gating_bias=False, bn_eps=1e-3, bn_momentum=1e-3,
            ),
            head=dict(dropout=0.2, pool_size=(2, 7, 7)),
            input_range=(-1.0, 1.0),
            files="TF-slim InceptionV1 S3D-G variables (research/slim/nets/s3dg.py), as .npz",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
