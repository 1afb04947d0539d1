"""Packed 1×1 weights (``ravlt.models.packed``, switched on by ``RAVLT.fuse()``) in small-map CPU
inference: the same numbers as plain ``F.conv2d``, taken only where meant, packed again when the weights
change."""
import pytest
import timm
import torch

import ravlt  # noqa: F401
from ravlt.models import packed

pytestmark = pytest.mark.skipif(not packed.AVAILABLE, reason="torch without oneDNN's convolution ops")


@pytest.fixture
def model():
    torch.manual_seed(0)
    yield timm.create_model("ravlt_t", num_classes=10).eval().fuse()
    packed.set_enabled(True)


def copies(weight) -> dict:
    return packed._packed[weight][1]


def pointwise_weights(model) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, packed.PointwiseConv2d)}


def packed_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p in packed._packed and copies(p)}


def plain_logits(model, x):
    packed.set_enabled(False)
    try:
        with torch.no_grad():
            return model(x)
    finally:
        packed.set_enabled(True)


def test_fuse_registers_every_pointwise_weight(model):
    pointwise = pointwise_weights(model)
    assert len(pointwise) == 4 * sum(len(stage.blocks) for stage in model.layers) + 2  # qkvo, proj, fc1, fc2; head
    assert pointwise == {name for name, p in model.named_parameters() if p in packed._packed}
    assert not any(p in packed._packed for p in timm.create_model("ravlt_t").parameters())  # not without fuse()


def test_logits_equal_plain_convolutions(model):
    x = torch.randn(1, 3, 96, 104)
    with torch.no_grad():
        got = model(x)
    assert packed_names(model)
    torch.testing.assert_close(got, plain_logits(model, x), rtol=1e-5, atol=1e-6)


def test_only_small_maps_are_packed(model):
    # batch 8 at 64²: stages 1–2 have 2048 and 512 rows (plain), stages 3–4 128 and 32, the head 8
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64))
    small = ("layers.2.", "layers.3.", "proj.", "head.")
    assert packed_names(model) == {n for n in pointwise_weights(model) if n.startswith(small)}


def test_weights_changed_in_place_are_packed_again(model):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        for p in model.parameters():
            if p.ndim == 4:
                p.mul_(1.25)
        got = model(x)
    assert (got - before).abs().max() > 1e-3
    torch.testing.assert_close(got, plain_logits(model, x), rtol=1e-5, atol=1e-6)


def test_copies_per_weight_stay_bounded(model):
    images = {size: torch.randn(1, 3, size, size) for size in (32, 64, 96)}
    with torch.no_grad():
        for size in (32, 64, 96, 64):
            got = model(images[size])
    assert max(len(copies(model.head.weight)), len(copies(model.layers[3].blocks[0].ffn.fc1.weight))) == 2
    torch.testing.assert_close(got, plain_logits(model, images[64]), rtol=1e-5, atol=1e-6)


def test_autograd_and_autocast_take_the_plain_path(model):
    x = torch.randn(1, 3, 64, 64)
    model(x).sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert not packed_names(model)
