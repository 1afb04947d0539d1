"""RALA's ``core_dtype`` option: the default is the fp32 core as before; a bf16 core stays close to it."""
import pytest
import torch

from ravlt.models import RALA
from ravlt.models.rope import RoPE2d


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def inputs(dim=64, side=12, batch=2):
    sin, cos = RoPE2d(32)(side, side)
    x = torch.randn(batch, dim, side, side).contiguous(memory_format=torch.channels_last)
    return x, sin, cos


def pair(**kwargs):
    """A default RALA and one with ``kwargs``, same weights."""
    default = RALA(64, 2)
    other = RALA(64, 2, **kwargs)
    other.load_state_dict(default.state_dict())
    return default, other


def test_default_core_is_fp32_and_unchanged_by_naming_fp32():
    default, explicit = pair(core_dtype=torch.float32)
    assert default.core_dtype == torch.float32
    x, sin, cos = inputs()
    with torch.no_grad():
        assert torch.equal(default(x, sin, cos), explicit(x, sin, cos))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_core_is_close_but_not_identical(dtype):
    default, low = pair(core_dtype=dtype)
    x, sin, cos = inputs()
    with torch.no_grad():
        want, got = default(x, sin, cos), low(x, sin, cos)
    assert got.dtype == want.dtype == torch.float32
    err = rel_err(got, want)
    # bf16 operands carry 8 bits of mantissa (fp16 11): a few 1e-3, never 1e-2; zero would mean the
    # option did nothing
    assert 0 < err < (2e-2 if dtype == torch.bfloat16 else 3e-3)


def test_low_precision_core_trains():
    default, low = pair(core_dtype=torch.bfloat16)
    x, sin, cos = inputs()
    for attn in (default, low):
        attn(x, sin, cos).square().mean().backward()
    for (name, p), q in zip(default.named_parameters(), low.parameters()):
        assert torch.isfinite(q.grad).all(), name
        assert rel_err(q.grad, p.grad) < 5e-2, name


def test_core_stays_fp32_under_autocast_with_a_bf16_core():
    _, low = pair(core_dtype=torch.bfloat16)
    q = torch.randn(1, 2, 16, 32, dtype=torch.bfloat16)
    sin, cos = RoPE2d(32)(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert low.mix(q, q, q, sin, cos).dtype == torch.float32


def test_unknown_core_dtype_is_refused():
    with pytest.raises(ValueError, match="core_dtype must be one of"):
        RALA(64, 2, core_dtype=torch.int8)
