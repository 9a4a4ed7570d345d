"""BatchNorm folded into the convolution before it (s3d_det.modeling.fusion): a hand-computed case, the 2D and 3D
backbones with non-trivial statistics, and the model left unchanged. Seeded, CPU-only."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from s3d_det.modeling.detector import build_backbone_2d
from s3d_det.modeling.fusion import fold_batchnorm
from s3d_det.modeling.s3dg import S3DG

pytestmark = pytest.mark.usefixtures("one_thread")

NORMS = (nn.BatchNorm2d, nn.BatchNorm3d, FrozenBatchNorm2d)


class ConvBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(1, eps=1.0)

    def forward(self, x):
        return self.bn1(self.conv1(x))


def test_one_channel_by_hand():
    """conv weight 2, BN mean 1, var 3, eps 1, gamma 3, beta 0.5: (2x - 1) / sqrt(3 + 1) * 3 + 0.5 = 3x - 1."""
    module = ConvBn()
    with torch.no_grad():
        module.conv1.weight.fill_(2.0)
        module.bn1.running_mean.fill_(1.0)
        module.bn1.running_var.fill_(3.0)
        module.bn1.weight.fill_(3.0)
        module.bn1.bias.fill_(0.5)
    folded = fold_batchnorm(module)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(module.bn1, nn.BatchNorm2d)  # the original stays
    assert folded.conv1.weight.item() == 3.0 and folded.conv1.bias.item() == -1.0
    assert module.conv1.bias is None and module.conv1.weight.item() == 2.0
    x = torch.tensor([0.0, 1.0, -2.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(folded(x), torch.tensor([-1.0, 2.0, -7.0]).view(1, 1, 1, 3))


def _random_statistics(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, NORMS):
            n = len(m.running_mean)
            m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_resnet_c4_folded(frozen_bn):
    torch.manual_seed(0)
    net = build_backbone_2d("resnet18", frozen_bn=frozen_bn).eval()
    _random_statistics(net)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    assert sum(isinstance(m, NORMS) for m in net.modules()) == 1 + 6 * 2 + 2  # stem, 6 blocks, 2 downsamples
    assert folded.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # the layout is kept
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = net(x)["0"], folded(x)["0"]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_s3dg_folded():
    torch.manual_seed(0)
    net = S3DG("s3dg", width=0.25, out_features=("mixed_3c",)).eval()
    _random_statistics(net)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    x = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = net(x)["mixed_3c"], folded(x)["mixed_3c"]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert not torch.equal(next(iter(folded.parameters())), next(iter(net.parameters())))  # weights did change
