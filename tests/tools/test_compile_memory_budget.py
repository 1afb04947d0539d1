"""The compile memory budget: a compiled training step keeps less for backward, with eager's gradients, when
only its forward runs inside :func:`ravlt.tools.compile.activation_memory_budget` (as the LightningModule
and the bench wrap it)."""
import functools

import pytest
import torch
import torch.nn.functional as F

from ravlt.bench.timing import peak_memory_mib
from ravlt.models import RAVLT
from ravlt.tools.compile import activation_memory_budget


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def small_ravlt() -> RAVLT:
    torch.manual_seed(0)
    return RAVLT(embed_dims=(16, 32, 64, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 4), num_classes=10,
                 head_hidden_size=64, drop_path_rate=0.0).train()


def training_step(model, forward, budget, x):
    """Forward (compiling on first call) inside the budget, backward outside it; returns the gradients."""
    model.zero_grad(set_to_none=True)
    with activation_memory_budget(budget):
        loss = F.cross_entropy(forward(x), torch.arange(x.shape[0]) % 10)
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_budget_keeps_less_for_backward_with_eager_gradients():
    x = torch.randn(4, 3, 64, 64)
    model = small_ravlt()
    want = training_step(model, model, None, x)
    peaks = {}
    # AOTAutograd's min-cut partitioner (the one Inductor uses, which reads the budget) without Inductor's
    # code generation: the same choice of what to keep, compiled in seconds
    for budget in (None, 0.1):
        torch._dynamo.reset()
        forward = torch.compile(model, backend="aot_eager_decomp_partition")
        grads = training_step(model, forward, budget, x)
        for name, g in grads.items():
            torch.testing.assert_close(g, want[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        step = functools.partial(training_step, model, forward, budget, x)
        peaks[budget] = peak_memory_mib(step, torch.device("cpu"))
    assert peaks[0.1] < 0.8 * peaks[None], peaks


def test_budget_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        with activation_memory_budget(1.5):
            pass
