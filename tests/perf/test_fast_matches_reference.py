"""The fast RAVLT against the plain implementation in ``tests/reference.py``:
same state dict -> same logits, features and gradients (1e-5 relative)."""
import pytest
import timm
import torch

import ravlt  # noqa: F401
import reference

REL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def random_state_dict(name: str, **kwargs) -> dict:
    """A state dict far from initialisation: weights large enough that α is far from uniform,
    LayerScale away from 1, BatchNorm statistics away from (0, 1)."""
    model = timm.create_model(name, **kwargs)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("gamma_1", "gamma_2")):
                p.uniform_(0.2, 1.0)
            elif p.ndim > 1:
                p.mul_(2.5)
            else:
                p.normal_(0, 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


@pytest.mark.parametrize("attn_types", ["llvv", "llll"])
def test_same_state_dict_same_logits_and_features(attn_types):
    state = random_state_dict("ravlt_t", attn_types=attn_types)
    model = timm.create_model("ravlt_t", attn_types=attn_types).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 72, 104)
    with torch.no_grad():
        assert rel_err(model(x), reference.forward(model, x)) < REL
        final, feats = model.forward_intermediates(x)
        ref_final, ref_feats = reference.stage_outputs(model, x)
    assert rel_err(final, ref_final) < REL
    for got, want in zip(feats, ref_feats):
        assert got.shape == want.shape and rel_err(got, want) < REL


def test_training_forward_and_gradients_match():
    """Train mode: batch-statistics BatchNorm and drop path (same seed, same masks) included."""
    state = random_state_dict("ravlt_t")
    fast = timm.create_model("ravlt_t", num_classes=10, drop_path_rate=0.3).train()
    plain = timm.create_model("ravlt_t", num_classes=10, drop_path_rate=0.3).train()
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    fast.load_state_dict(state, strict=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    out_fast = fast(x)
    torch.manual_seed(1)
    out_plain = reference.forward(plain, x)
    assert rel_err(out_fast, out_plain) < REL
    weights = torch.randn_like(out_fast)
    (out_fast * weights).sum().backward()
    (out_plain * weights).sum().backward()
    plain_grads = {name: p.grad for name, p in plain.named_parameters()}
    # Absolute floor: conv biases in front of training-mode BatchNorm have gradient 0 up to rounding.
    floor = 1e-6 * max(g.norm() for g in plain_grads.values())
    for name, p in fast.named_parameters():
        want = plain_grads[name]
        assert (p.grad - want).norm() <= REL * 10 * want.norm() + floor, name


def test_fuse_folds_batchnorm_and_keeps_logits():
    model = timm.create_model("ravlt_t").eval()
    model.load_state_dict(random_state_dict("ravlt_t"))
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        want = model(x)
        assert model.fuse() is model
        got = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert rel_err(got, want) < REL


def test_fuse_refuses_training_mode():
    with pytest.raises(RuntimeError, match="eval"):
        timm.create_model("ravlt_t").fuse()


def test_any_memory_format_in_contiguous_nchw_out_input_untouched():
    model = timm.create_model("ravlt_t", attn_types="llll").eval()
    x = torch.randn(1, 3, 96, 64)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    before = x_cl.clone()
    with torch.inference_mode():
        out, out_cl = model.forward_features(x), model.forward_features(x_cl)
        feats = model.forward_intermediates(x_cl, intermediates_only=True)
    torch.testing.assert_close(out, out_cl)
    assert torch.equal(x_cl, before)
    assert out_cl.is_contiguous() and all(f.is_contiguous() for f in feats)
