"""GELU on channels-last maps (``ravlt.models.lean.gelu`` / ``gelu_backward``): ATen gives GELU to oneDNN
only for contiguous tensors, so the model hands it the contiguous view of a channels-last map's memory.
The numbers are those torch gives a contiguous tensor (oneDNN's GELU, within 2e-6 of float64 where ATen's own
kernel is within 5e-7), in every layout, and the ATen calls of a channels-last model see contiguous tensors."""
import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import ravlt  # noqa: F401
from ravlt.models.lean import gelu, gelu_backward

GELU_OPS = {torch.ops.aten.gelu.default, torch.ops.aten.gelu_.default, torch.ops.aten.gelu_backward.default}
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def sample(layout: str, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.randn(2, 24, 5, 7) * 3).contiguous(memory_format=LAYOUTS[layout])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gelu_is_a_contiguous_tensors_gelu_and_keeps_the_layout(layout):
    x = sample(layout, 0)
    out = gelu(x)
    assert torch.equal(out, F.gelu(x.contiguous()))
    torch.testing.assert_close(out.double(), F.gelu(x.double()), rtol=1e-4, atol=2e-6)
    assert out.stride() == x.stride()
    inplace = x.clone(memory_format=torch.preserve_format)
    assert gelu(inplace, inplace=True) is inplace
    assert torch.equal(inplace, out)


@pytest.mark.parametrize("grad_layout", LAYOUTS)
@pytest.mark.parametrize("x_layout", LAYOUTS)
def test_gelu_backward_equals_autograd_in_every_layout_pair(x_layout, grad_layout):
    x, grad = sample(x_layout, 1), sample(grad_layout, 2)
    leaf = x.double().requires_grad_()
    F.gelu(leaf).backward(grad.double())
    torch.testing.assert_close(gelu_backward(grad, x).double(), leaf.grad, rtol=1e-4, atol=2e-6)


class GeluInputs(TorchDispatchMode):
    """Records, for every ATen GELU call, whether all its tensor arguments were contiguous."""

    def __init__(self):
        super().__init__()
        self.contiguous = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in GELU_OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            self.contiguous.append(all(t.is_contiguous() for t in tensors))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_a_channels_last_model_hands_gelu_contiguous_tensors(training):
    torch.manual_seed(0)
    model = timm.create_model("ravlt_t", num_classes=10).to(memory_format=torch.channels_last).train(training)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    calls = GeluInputs()
    with calls, torch.set_grad_enabled(training):
        out = model(x)
        if training:
            out.sum().backward()
    assert calls.contiguous and all(calls.contiguous), calls.contiguous
