"""FX feature extraction: timm's ``feature_cls='fx'`` and torchvision's ``create_feature_extractor`` trace
RAVLT (the run-time choices sit in functions wrapped with ``torch.fx.wrap``) and return the same four
feature maps as ``forward_intermediates``."""
import timm
import torch
from torchvision.models.feature_extraction import create_feature_extractor

import ravlt  # noqa: F401


def test_timm_fx_features_equal_the_getter_features():
    x = torch.randn(2, 3, 96, 128)
    torch.manual_seed(0)
    fx = timm.create_model("ravlt_t", features_only=True, feature_cls="fx").eval()
    torch.manual_seed(0)
    getter = timm.create_model("ravlt_t", features_only=True).eval()
    assert type(fx).__name__ == "FeatureGraphNet"
    with torch.no_grad():
        got, want = fx(x), getter(x)
    assert [tuple(f.shape) for f in got] == [(2, 64, 24, 32), (2, 128, 12, 16), (2, 256, 6, 8), (2, 512, 3, 4)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torchvision_extractor_trains_through_the_graph():
    """Training mode (batch-statistics BatchNorm, the lean autograd nodes inside the wrapped calls);
    drop path off, as torchvision's graph clean-up drops timm's in-place rescaling of the drop mask."""
    model = timm.create_model("ravlt_t", attn_types="llvv", drop_path_rate=0.0).train()
    nodes = {info["module"]: f"stage{i}" for i, info in enumerate(model.feature_info)}
    extractor = create_feature_extractor(model, nodes)
    x = torch.randn(2, 3, 64, 80)
    feats = extractor(x)
    want = model.forward_intermediates(x, intermediates_only=True)
    assert list(feats) == ["stage0", "stage1", "stage2", "stage3"]
    for got, ref in zip(feats.values(), want):
        torch.testing.assert_close(got, ref)
    sum(f.square().mean() for f in feats.values()).backward()
    grads = [p.grad for p in model.layers.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
