"""The CPU tube RoIAlign (a sparse matrix product) against torchvision's kernel, and by hand."""
import pytest
import torch

from s3d_det.modeling.roi_align import roi_align_matrix, torchvision_tube_roi_align, tube_roi_align


def random_boxes(generator, count, *, lo=-30.0, span=(200.0, 150.0), size=(80.0, 90.0)):
    xy = torch.rand(count, 2, generator=generator) * torch.tensor(span) + lo
    return torch.cat([xy, xy + torch.rand(count, 2, generator=generator) * torch.tensor(size)], dim=1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_torchvision_forward_and_backward(aligned, sampling_ratio, channels_last):
    # boxes partly or wholly outside the map, thinner than a cell and larger than it: every boundary rule
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 5, 4, 15, 20, generator=g)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last_3d)
    features.requires_grad_()
    boxes = [random_boxes(g, 6), random_boxes(g, 1), torch.tensor([[-40.0, -40.0, -20.0, -30.0], [5, 5, 5.5, 90]])]
    kw = dict(output_size=7, spatial_scale=1 / 8, sampling_ratio=sampling_ratio, aligned=aligned)
    grad = torch.randn(9, 5, 4, 7, 7, generator=g)
    expected = torchvision_tube_roi_align(features, boxes, **kw)
    (expected_grad,) = torch.autograd.grad(expected, features, grad)
    out = tube_roi_align(features, boxes, **kw)
    (out_grad,) = torch.autograd.grad(out, features, grad)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out_grad, expected_grad, rtol=0, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


def test_gradcheck():
    features = torch.randn(2, 3, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 35.0], [-5.0, -3.0, 10.0, 12.0]], dtype=torch.float64),
             torch.tensor([[20.0, 10.0, 47.0, 39.0]], dtype=torch.float64)]
    assert torch.autograd.gradcheck(
        lambda x: tube_roi_align(x, boxes, output_size=3, spatial_scale=1 / 8, sampling_ratio=0, aligned=True),
        (features,))


def test_one_cell_box_by_hand():
    # aligned=False, scale 1: box (1, 1)-(2, 2) is one cell from (1, 1); one bin, 1 sample at (1.5, 1.5): the mean
    # of cells (1, 1), (1, 2), (2, 1), (2, 2), each weighted 1/4
    matrix = roi_align_matrix(torch.tensor([[1.0, 1.0, 2.0, 2.0]]), torch.tensor([0]), image_size=(4, 5),
                              num_images=1, output_size=1, spatial_scale=1.0, sampling_ratio=0, aligned=False)
    dense = matrix.to_dense()
    expected = torch.zeros(1, 20)
    expected[0, [1 * 5 + 1, 1 * 5 + 2, 2 * 5 + 1, 2 * 5 + 2]] = 0.25
    torch.testing.assert_close(dense, expected)


def test_samples_past_the_edge_are_clamped_or_dropped():
    # a 1-cell map: a sample at y = 0.5 reads cell 0 whole (clamped); one beyond -1 is dropped but still counted
    matrix = roi_align_matrix(torch.tensor([[-3.0, 0.0, 1.0, 1.0]]), torch.tensor([0]), image_size=(1, 1),
                              num_images=1, output_size=1, spatial_scale=1.0, sampling_ratio=2, aligned=False)
    # x samples at -2 (dropped) and 0 (kept); y samples at 0.25, 0.75 (kept): 2 of 4 samples, each weight 1/4
    torch.testing.assert_close(matrix.to_dense(), torch.tensor([[0.5]]))


def test_no_boxes():
    features = torch.randn(2, 3, 2, 5, 6, requires_grad=True)
    out = tube_roi_align(features, [torch.zeros(0, 4), torch.zeros(0, 4)], output_size=7, spatial_scale=1 / 8)
    assert out.shape == (0, 3, 2, 7, 7)
    out.sum().backward()
    assert features.grad is not None and (features.grad == 0).all()
