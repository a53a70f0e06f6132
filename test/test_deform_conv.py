"""Our deformable convolution against torchvision's operator, and its gradients."""
import pytest
import torch
from torchvision.ops import DeformConv2d as TorchvisionDeformConv2d
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

from upsnet_core.modeling.deform_conv import (DeformConv2d, _sampled_by_grid_sample,
                                               deform_conv2d)


def exported_form(inputs, offset, weight, bias=None):
    """The ``grid_sample`` form that ONNX export traces."""
    return _sampled_by_grid_sample(inputs, offset, weight) + bias[:, None, None]


# out_channels 2 (fewer than the inputs': projected before sampling) and 6 (sampled first)
@pytest.mark.parametrize("out_channels", [2, 6])
@pytest.mark.parametrize("size,kernel", [((2, 5, 7, 9), 3), ((1, 3, 1, 6), 3), ((1, 4, 6, 5), 5)])
@pytest.mark.parametrize("function", [deform_conv2d, exported_form])
def test_matches_torchvision_including_samples_outside_the_image(size, kernel, out_channels,
                                                                 function):
    generator = torch.Generator().manual_seed(0)
    n, c, h, w = size
    inputs = torch.randn(size, generator=generator, dtype=torch.float64)
    # displacements of several pixels: many taps land between pixels and beyond the border
    offset = 3 * torch.randn(n, 2 * kernel * kernel, h, w, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, c, kernel, kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64)
    expected = torchvision_deform_conv2d(inputs, offset, weight, bias, padding=kernel // 2)
    torch.testing.assert_close(function(inputs, offset, weight, bias), expected)


def test_channels_last_inputs_give_the_same_result():
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(2, 6, 5, 7, generator=generator)
    offset = 2 * torch.randn(2, 18, 5, 7, generator=generator)
    weight = torch.randn(4, 6, 3, 3, generator=generator)
    channels_last = [t.contiguous(memory_format=torch.channels_last) for t in (inputs, offset)]
    torch.testing.assert_close(deform_conv2d(*channels_last, weight),
                               deform_conv2d(inputs, offset, weight))


def test_zero_offsets_give_the_ordinary_convolution():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, 8, 10, generator=generator)
    weight = torch.randn(5, 3, 3, 3, generator=generator)
    offset = torch.zeros(2, 18, 8, 10)
    torch.testing.assert_close(deform_conv2d(inputs, offset, weight),
                               torch.nn.functional.conv2d(inputs, weight, padding=1))


@pytest.mark.parametrize("out_channels", [1, 3])  # projected first, sampled first
def test_gradients_are_those_of_the_sampled_function(out_channels):
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(1, 2, 4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    # keep taps away from pixel centres, where bilinear sampling has a kink
    offset = (0.3 + 0.4 * torch.rand(1, 18, 4, 5, generator=generator, dtype=torch.float64)
              ).requires_grad_()
    weight = torch.randn(out_channels, 2, 3, 3, generator=generator, dtype=torch.float64,
                         requires_grad=True)
    assert torch.autograd.gradcheck(deform_conv2d, (inputs, offset, weight))


@pytest.mark.parametrize("out_channels", [4, 12])  # projected first, sampled first
def test_mixed_precision_training_step(out_channels):
    """Under autocast (GPU training's float16; bfloat16 here on the CPU) the products run
    in low precision while the inputs and offsets may be float32."""
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(1, 8, 6, 7, generator=generator, requires_grad=True)
    offset = torch.randn(1, 18, 6, 7, generator=generator, requires_grad=True)
    weight = torch.randn(out_channels, 8, 3, 3, generator=generator, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = deform_conv2d(inputs, offset, weight)
    output.float().square().sum().backward()
    expected = deform_conv2d(inputs.detach(), offset.detach(), weight.detach())
    torch.testing.assert_close(output.float(), expected, atol=0.1, rtol=0.05)
    assert all(t.grad is not None and t.grad.isfinite().all() for t in (inputs, offset, weight))


def test_sampling_positions_keep_float32_precision_for_half_offsets():
    """Offsets in float16 (a float16 offset conv) on a 600-pixel-wide map: positions in
    float16 would step by half a pixel; the result must be that of the float32 offsets."""
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(1, 2, 3, 600, generator=generator)
    offset = (0.3 * torch.randn(1, 18, 3, 600, generator=generator)).half()
    weight = torch.randn(1, 2, 3, 3, generator=generator)
    torch.testing.assert_close(deform_conv2d(inputs, offset, weight),
                               deform_conv2d(inputs, offset.float(), weight))


def test_state_dict_is_interchangeable_with_torchvision_module():
    ours = DeformConv2d(6, 4, 3, bias=False)
    theirs = TorchvisionDeformConv2d(6, 4, 3, padding=1, bias=False)
    theirs.load_state_dict(ours.state_dict())
    inputs, offset = torch.randn(1, 6, 5, 7), torch.randn(1, 18, 5, 7)
    torch.testing.assert_close(ours(inputs, offset), theirs(inputs, offset))


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        DeformConv2d(3, 3, 2)
