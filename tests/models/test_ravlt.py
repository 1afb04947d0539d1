"""The RAVLT architecture: variants, timm API, shapes, gradients, precision."""
import pytest
import timm
import torch

import ravlt  # noqa: F401
from ravlt.models import RAVLT, VARIANTS

RELEASED_PARAMS_M = {"ravlt_t": 14.90, "ravlt_s": 25.59, "ravlt_b": 48.24, "ravlt_l": 95.24}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_build_with_released_param_counts(name):
    model = timm.create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == RELEASED_PARAMS_M[name]
    assert model.pretrained_cfg["hf_hub_id"] == "aldjalkdf/RAVLT"
    assert model.pretrained_cfg["hf_hub_filename"] == f"RAVLT_{name[-1].upper()}.pth"
    assert model.pretrained_cfg["crop_pct"] == 0.9 and model.pretrained_cfg["input_size"] == (3, 224, 224)


def test_list_models_and_attention_types():
    assert timm.list_models("ravlt*") == ["ravlt_b", "ravlt_l", "ravlt_s", "ravlt_t"]
    model = timm.create_model("ravlt_t")
    kinds = [[blk.attn.kind for blk in stage.blocks] for stage in model.layers]
    assert kinds == [["l"] * 2, ["l"] * 2, ["v"] * 6, ["v"] * 2]
    linear = timm.create_model("ravlt_t", attn_types="llll")
    assert all(blk.attn.kind == "l" for stage in linear.layers for blk in stage.blocks)
    with pytest.raises(ValueError, match="attention types"):
        timm.create_model("ravlt_t", attn_types="llv")


def test_drop_path_grows_linearly_to_the_rate():
    model = timm.create_model("ravlt_t", drop_path_rate=0.3)
    rates = [float(getattr(blk.drop_path, "drop_prob", 0.0)) for s in model.layers for blk in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert all(b >= a for a, b in zip(rates, rates[1:]))


def test_forward_backward_every_parameter_gets_a_gradient():
    model = timm.create_model("ravlt_t", num_classes=7, drop_path_rate=0.1).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 7)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # RoPE angles are fixed buffers, not parameters
    assert "layers.0.RoPE.angle" in dict(model.named_buffers())


@pytest.mark.parametrize("size", [(200, 320), (64, 64), (33, 47)])
@pytest.mark.parametrize("train", [True, False])
def test_any_input_size_batch_one(size, train):
    model = timm.create_model("ravlt_t", num_classes=5).train(train)
    batch = 2 if train else 1  # BatchNorm in training needs more than one value per channel at 1×1 maps
    assert model(torch.randn(batch, 3, *size)).shape == (batch, 5)


def test_features_only():
    model = timm.create_model("ravlt_t", features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == [64, 128, 256, 512]
    feats = model(torch.randn(1, 3, 200, 320))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 50, 80), (128, 25, 40), (256, 13, 20), (512, 7, 10)]
    three = timm.create_model("ravlt_s", features_only=True, out_indices=(1, 2, 3))
    assert three.feature_info.channels() == [128, 320, 512]


def test_forward_features_head_and_intermediates():
    model = timm.create_model("ravlt_t").eval()
    x = torch.randn(1, 3, 96, 96)
    feats = model.forward_features(x)
    assert feats.shape == (1, 512, 3, 3)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 1024)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    final, inter = model.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [64, 128, 256, 512]
    torch.testing.assert_close(final, feats)
    only = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    torch.testing.assert_close(only[0], inter[1])


def test_reset_classifier():
    model = timm.create_model("ravlt_t")
    model.reset_classifier(3)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1024)
    assert model.get_classifier() is model.head


def test_no_weight_decay_lists_layer_scale():
    names = timm.create_model("ravlt_t").no_weight_decay()
    assert "layers.0.blocks.0.gamma_1" in names and len(names) == 2 * sum(VARIANTS["ravlt_t"].depths)


def test_dense_backbone_has_no_head():
    model = RAVLT(with_head=False)
    assert not any(k.startswith(("proj.", "norm.", "head.")) for k in model.state_dict())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_stays_finite(dtype):
    model = timm.create_model("ravlt_t", attn_types="llll").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = model(torch.randn(1, 3, 128, 128) * 3)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_bf16_autocast_finite_at_1024():
    model = timm.create_model("ravlt_t").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model.forward_intermediates(torch.randn(1, 3, 1024, 1024), intermediates_only=True)
    assert all(torch.isfinite(f).all() for f in feats)


def test_rala_core_runs_in_fp32_under_autocast(monkeypatch):
    from ravlt.models import attention

    model = timm.create_model("ravlt_t", attn_types="llll").eval()
    seen = []
    forward, backward = attention.CORES["l"]

    def spy(q, k, v, table, *args):
        out, saved = forward(q, k, v, table, *args)
        seen.append((q.dtype, table.dtype, out.dtype))
        return out, saved

    monkeypatch.setitem(attention.CORES, "l", (spy, backward))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, 3, 64, 64))
    assert seen and all(d == (torch.bfloat16, torch.complex64, torch.float32) for d in seen)
