"""The recipe glue of ImageClassifier: weight-decay groups, lr / EMA scaling, warm-up + cosine, Mixup, the compile
memory budget."""

import math

import pytest
import torch

from ravlt.bench.timing import peak_memory_mib
from ravlt.classification import ImageClassifier

OPTIMIZER = dict(name="adamw", lr=5e-4, lr_base_batch=512, weight_decay=0.05, betas=[0.9, 0.999], eps=1e-8)
SCHEDULER = dict(name="cosine", warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5)
MIXUP = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch")


@pytest.fixture(scope="module")
def module():
    return ImageClassifier(
        "ravlt_t", 10, model_kwargs=dict(attn_types="llvv"), batch_size=8, optimizer=OPTIMIZER, scheduler=SCHEDULER,
        mixup=MIXUP, label_smoothing=0.1, ema=dict(enabled=True, decay=0.99996, reference_batch=512),
    )  # fmt: skip


def test_no_weight_decay_on_norms_biases_and_layerscale(module):
    optimizer = module.create_optimizer(global_batch=1024)
    decay_of = {}
    names = {id(p): n for n, p in module.model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            decay_of[names[id(p)]] = group["weight_decay"]
    assert set(decay_of) == {n for n, p in module.model.named_parameters() if p.requires_grad}
    no_decay = {n for n, wd in decay_of.items() if wd == 0}
    assert {n for n in decay_of if n.endswith(("gamma_1", "gamma_2"))} <= no_decay
    assert {n for n in decay_of if n.endswith(".bias")} <= no_decay
    assert "layers.0.blocks.0.norm1.norm.weight" in no_decay and "patch_embed.proj.1.weight" in no_decay  # LN, BN
    assert decay_of["layers.0.blocks.0.attn.qkvo.weight"] == 0.05 and decay_of["head.weight"] == 0.05
    assert not any(n.startswith("model_ema") for n in decay_of)  # the EMA copy is not optimised


def test_lr_and_ema_decay_scale_with_the_global_batch(module):
    assert module.create_optimizer(global_batch=1024).param_groups[0]["lr"] == pytest.approx(1e-3)
    assert module.create_optimizer(global_batch=256).param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert ImageClassifier.scale_to_batch(0.99996, 1024, 512, power=True) == pytest.approx(0.99996**2)
    assert ImageClassifier.scale_to_batch(0.99, 64, None, power=True) == 0.99


def test_per_step_linear_warmup_then_cosine_to_min_lr(module):
    optimizer = module.create_optimizer(global_batch=512)
    steps_per_epoch, epochs = 4, 3
    scheduler = module.create_scheduler(optimizer, max_epochs=epochs, steps_per_epoch=steps_per_epoch)
    lr, warmup_lr, min_lr, total, warmup = 5e-4, 1e-6, 1e-5, epochs * steps_per_epoch, steps_per_epoch
    for step in range(total):
        scheduler.step_update(num_updates=step)
        if step < warmup:
            expected = warmup_lr + step * (lr - warmup_lr) / warmup
        else:
            expected = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / total))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected), step


def test_mixup_training_step_copes_with_an_odd_batch_and_an_empty_one(module):
    images, targets = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4])
    loss = module.training_step({"image": images, "target": targets, "unreadable": []}, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert module.model.head.weight.grad is not None
    empty = {"image": torch.empty(0), "target": torch.empty(0, dtype=torch.long), "unreadable": [("x.jpg", "e")]}
    assert module.training_step(empty, 1) is None


def test_train_flops_are_counted_without_touching_batchnorm_statistics(module):
    before = module.model.patch_embed.proj[1].running_mean.clone()
    flops = module.train_flops_per_image(torch.randn(1, 3, 32, 32))
    assert 3 * 50e6 < flops < 3 * 200e6  # RAVLT-T at 32x32: about 0.1 GFLOPs forward, x3 with the backward
    assert torch.equal(before, module.model.patch_embed.proj[1].running_mean)
    assert module.model.training


def test_the_ema_copy_is_not_trainable(module):
    assert module.model_ema is not None
    assert not any(p.requires_grad for p in module.model_ema.parameters())
    assert all(p.requires_grad for p in module.model.parameters())


def test_a_compiled_training_step_keeps_activations_within_the_memory_budget():
    """training_step compiles inside ``compile_memory_budget``: a small budget keeps less for backward than
    torch's default partition."""
    small = dict(embed_dims=(16, 32, 64, 64), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 4), head_hidden_size=64)
    batch = {"image": torch.randn(4, 3, 64, 64), "target": torch.arange(4), "unreadable": []}
    peaks = {}
    for budget in (None, 0.1):
        torch._dynamo.reset()
        classifier = ImageClassifier("ravlt_t", 10, model_kwargs=small, optimizer=OPTIMIZER, scheduler=SCHEDULER,
                                     compile=True, compile_memory_budget=budget)  # fmt: skip
        # AOTAutograd's min-cut partitioner (Inductor's, which reads the budget) without Inductor's code
        # generation: the same choice of what to keep, compiled in seconds
        classifier.model.compile(backend="aot_eager_decomp_partition")
        classifier.training_step(batch, 0).backward()  # compiles
        step = classifier.training_step
        peaks[budget] = peak_memory_mib(lambda step=step: step(batch, 0).backward(), torch.device("cpu"))
    torch._dynamo.reset()
    assert peaks[0.1] < 0.8 * peaks[None], peaks
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        ImageClassifier("ravlt_t", 10, model_kwargs=small, compile=True, compile_memory_budget=1.5)
