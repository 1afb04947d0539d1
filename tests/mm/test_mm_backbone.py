"""The dense RAVLT backbone as mmdet and mmseg see it: registry scope, outputs, key layout, BN modes, loading."""
import importlib

import pytest
import torch
from mmengine.registry import init_default_scope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import ravlt.mm  # noqa: F401  (registers the ravlt scope)
from ravlt.mm import RAVLTBackbone
from ravlt.models import RAVLT, VARIANTS, CheckpointMismatchError, variant_kwargs

CLASSIFIER_PREFIXES = ("proj.", "norm.", "head.")


@pytest.fixture(scope="module")
def tiny_input():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 96)


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
def test_scoped_type_builds_from_downstream_registries(scope):
    registry = importlib.import_module(f"{scope}.registry").MODELS
    init_default_scope(scope)
    backbone = registry.build(dict(type="ravlt.RAVLTBackbone", arch="ravlt_t"))
    assert isinstance(backbone, RAVLTBackbone)


def test_outputs_are_normalised_stage_features_at_strides_4_to_32(tiny_input):
    backbone = RAVLTBackbone("ravlt_t").eval()
    feats = backbone(tiny_input)
    dims = VARIANTS["ravlt_t"].embed_dims
    assert [tuple(f.shape) for f in feats] == [(2, dims[i], 64 // 2 ** (i + 2), 96 // 2 ** (i + 2)) for i in range(4)]
    # each output is its stage's pre-downsampling feature map through extra_norms.{i}
    _, stages = RAVLT.forward_intermediates(backbone, tiny_input)
    for i, (feat, stage) in enumerate(zip(feats, stages)):
        torch.testing.assert_close(feat, backbone.extra_norms[str(i)](stage))
        channel_mean = feat.mean(dim=1)
        assert channel_mean.abs().max() < 1e-4  # freshly initialised LN: zero mean over channels


def test_outputs_feed_mmcv_roi_align_as_their_values_say(tiny_input):
    """mmcv's RoIAlign reads its input as contiguous NCHW; a channels-last feature map gives wrong RoI
    features without any error (Mask R-CNN heads then never learn), so the backbone must hand out NCHW."""
    from mmcv.ops import RoIAlign

    feats = RAVLTBackbone("ravlt_t").eval()(tiny_input)
    assert all(f.is_contiguous() for f in feats)
    rois = torch.tensor([[0, 8.0, 4.0, 60.0, 40.0], [1, 0.0, 0.0, 95.0, 63.0]])
    roi_align = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    reference = torch.ops.torchvision.roi_align(feats[0], rois, 0.25, 7, 7, 2, True)
    torch.testing.assert_close(roi_align(feats[0], rois), reference)


def test_out_indices_subset(tiny_input):
    backbone = RAVLTBackbone("ravlt_t", out_indices=(1, 3)).eval()
    feats = backbone(tiny_input)
    assert [f.shape[1] for f in feats] == [128, 512]
    assert sorted(backbone.extra_norms.keys()) == ["1", "3"]


@pytest.mark.parametrize("arch", ["ravlt_t", "ravlt_s"])
def test_state_dict_keys_are_the_released_dense_layout(arch):
    backbone = RAVLTBackbone(arch)
    classifier_keys = RAVLT(**variant_kwargs(arch)).state_dict().keys()
    expected = {k for k in classifier_keys if not k.startswith(CLASSIFIER_PREFIXES)}
    expected |= {f"extra_norms.{i}.norm.{p}" for i in range(4) for p in ("weight", "bias")}
    assert set(backbone.state_dict()) == expected
    assert all(k.startswith(("patch_embed.proj.", "layers.", "extra_norms.")) for k in expected)


def test_bn_statistics_update_by_default_and_norm_eval_freezes_them(tiny_input):
    backbone = RAVLTBackbone("ravlt_t").train()
    bn = backbone.patch_embed.proj[1]
    before = bn.running_mean.clone()
    backbone(tiny_input)
    assert not torch.equal(bn.running_mean, before), "default: BN statistics keep updating (docs/method.md §6)"

    frozen = RAVLTBackbone("ravlt_t", norm_eval=True).train()
    bns = [m for m in frozen.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    frozen(tiny_input)
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bns, before))


def test_norm_eval_also_freezes_syncbatchnorm():
    backbone = nn.SyncBatchNorm.convert_sync_batchnorm(RAVLTBackbone("ravlt_t", norm_eval=True))
    syncs = [m for m in backbone.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(syncs) == 4 + 3  # stem + downsampling
    backbone.train()
    assert all(not m.training for m in syncs)
    assert backbone.layers[0].blocks[0].training  # only the norms are switched


def test_frozen_stages_fix_stem_and_early_stages(tiny_input):
    backbone = RAVLTBackbone("ravlt_t", frozen_stages=1).train()
    frozen = [backbone.patch_embed, backbone.layers[0]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(p.requires_grad for p in backbone.layers[1].parameters())
    assert all(p.requires_grad for p in backbone.extra_norms.parameters())
    sum(f.sum() for f in backbone(tiny_input)).backward()
    assert backbone.layers[0].blocks[0].pos.weight.grad is None
    assert backbone.layers[1].blocks[0].pos.weight.grad is not None


def test_pretrained_init_cfg_loads_a_deit_style_classification_checkpoint(tmp_path):
    classifier = RAVLT(**variant_kwargs("ravlt_t"))
    path = tmp_path / "RAVLT_T.pth"
    torch.save({"model": classifier.state_dict(), "epoch": 299}, path)
    backbone = RAVLTBackbone("ravlt_t", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith(CLASSIFIER_PREFIXES):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    assert torch.equal(loaded["extra_norms.0.norm.weight"], torch.ones(64))  # fresh


def test_pretrained_init_cfg_rejects_another_variant(tmp_path):
    path = tmp_path / "RAVLT_S.pth"
    torch.save({"model": RAVLT(**variant_kwargs("ravlt_s")).state_dict()}, path)
    backbone = RAVLTBackbone("ravlt_t", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match="ravlt_s"):
        backbone.init_weights()


def test_pretrained_init_cfg_takes_the_backbone_of_a_detection_checkpoint(tmp_path):
    source = RAVLTBackbone("ravlt_t")
    with torch.no_grad():
        source.extra_norms["2"].norm.weight.fill_(0.5)
    detector_state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    detector_state["neck.lateral_convs.0.conv.weight"] = torch.zeros(1)
    path = tmp_path / "det.pth"
    torch.save({"state_dict": detector_state, "meta": {}}, path)
    backbone = RAVLTBackbone("ravlt_t", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    backbone.init_weights()
    assert torch.equal(backbone.extra_norms["2"].norm.weight, torch.full((256,), 0.5))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown RAVLT variant"):
        RAVLTBackbone("ravlt_xl")
    with pytest.raises(ValueError, match="out_indices"):
        RAVLTBackbone("ravlt_t", out_indices=(0, 4))
