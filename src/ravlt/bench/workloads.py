"""What ``make bench`` runs: the models, the workloads, and one step of each as a callable."""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

import ravlt  # noqa: F401  (registers the RAVLT models with timm)
from ravlt.models import RAVLT
from ravlt.tools.compile import activation_memory_budget, compile_frozen, inductor_cache_per_cpu_capability


@dataclass(frozen=True)
class Workload:
    mode: str  # "eval" (inference) or "train" (forward, backward, AdamW step)
    batch: int
    size: int
    group: str  # "eval", "train" or "sweep" (the resolution sweep), for --workloads

    @property
    def label(self) -> str:
        return f"{self.mode} b{self.batch} {self.size}²"


@dataclass(frozen=True)
class ModelSpec:
    label: str
    timm_name: str
    kwargs: dict = field(default_factory=dict)
    sized: bool = False  # built for its input size (Swin's windows and position bias)
    groups: tuple[str, ...] = ("eval", "train", "sweep")  # the workload groups it runs
    compile: bool = False  # torch.compile (default mode; compile time not timed)
    frozen: bool = False  # inference compiled with the weights frozen in (ravlt.tools.compile.compile_frozen)
    grad_checkpointing: bool = False  # timm's set_grad_checkpointing(): every block recomputed in backward
    runtime: str = "torch"  # or "onnxruntime": the model exported by ravlt.export, run on onnxruntime's CPU
    fuse: bool = False  # RAVLT.fuse(): BatchNorm folded, 1×1 weights packed for oneDNN (inference)

    def build(self, size: int) -> nn.Module:
        return timm.create_model(self.timm_name, **self.kwargs, **({"img_size": size} if self.sized else {}))


MODELS = {
    spec.label: spec
    for spec in (
        ModelSpec("ravlt_t", "ravlt_t"),
        ModelSpec("ravlt_s", "ravlt_s"),
        # the pure-linear ablation: the model whose cost must grow linearly with the pixels
        ModelSpec("ravlt_s_llll", "ravlt_s", {"attn_types": "llll"}, groups=("sweep",)),
        ModelSpec("ravlt_b", "ravlt_b", groups=("train",)),
        ModelSpec("ravlt_s_ckpt", "ravlt_s", groups=("train",), grad_checkpointing=True),
        ModelSpec("ravlt_s_compiled", "ravlt_s", groups=("eval", "train"), compile=True),
        ModelSpec("ravlt_s_frozen", "ravlt_s", groups=("eval", "sweep"), frozen=True),
        ModelSpec("ravlt_s_onnxruntime", "ravlt_s", groups=("eval", "sweep"), runtime="onnxruntime"),
        ModelSpec("ravlt_s_fused", "ravlt_s", groups=("eval", "sweep"), fuse=True),
        ModelSpec("convnext_tiny", "convnext_tiny"),
        ModelSpec("convnext_tiny_frozen", "convnext_tiny", groups=("eval", "sweep"), frozen=True),
        ModelSpec("swin_tiny", "swin_tiny_patch4_window7_224", sized=True),
    )
}
BASELINE = "convnext_tiny"


def default_workloads(device: torch.device, quick: bool = False) -> list[Workload]:
    """The issue's workloads: CPU batch 16 at 224² (eval, train), batch 1 at 224²/512²/1024² (the
    resolution sweep); CUDA batch 128 at 224² and batch 16 for the sweep. ``quick``: tiny sizes for CI."""
    if quick:
        batch, sweep_batch, size, sweep_sizes = 2, 1, 64, (64, 128)
    else:
        batch, sweep_batch = (128, 16) if device.type == "cuda" else (16, 1)
        size, sweep_sizes = 224, (224, 512, 1024)
    sweep = [Workload("eval", sweep_batch, s, "sweep") for s in sweep_sizes]
    return [Workload("eval", batch, size, "eval"), Workload("train", batch, size, "train"), *sweep]


def applies(spec: ModelSpec, workload: Workload) -> bool:
    return workload.group in spec.groups


def prepare_model(spec: ModelSpec, workload: Workload, device: torch.device, fuse: bool = False) -> nn.Module:
    """A randomly initialised ``spec`` model for ``workload``: channels-last on CPU (every model gets
    the layout that suits oneDNN), :meth:`RAVLT.fuse` for RAVLT inference with ``fuse`` (or the spec's)."""
    torch.manual_seed(0)
    train = workload.mode == "train"
    model = spec.build(workload.size).to(device).train(train)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    if (fuse or spec.fuse) and not train and isinstance(model, RAVLT):
        model.fuse()
    if spec.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def onnxruntime_session(model: nn.Module, threads: int):
    """``model`` exported to ONNX by ``ravlt.export`` (dynamic shapes: one file for every size) in an
    onnxruntime CPU session."""
    import onnxruntime  # the export extra: imported only when its rows run

    from ravlt.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model.eval().requires_grad_(False), "classifier", os.path.join(tmp, "model.onnx"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_step(session, workload: Workload) -> Callable[[], None]:
    x = torch.randn(workload.batch, 3, workload.size, workload.size).numpy()
    return lambda: session.run(None, {"images": x})


def make_step(
    model: nn.Module,
    workload: Workload,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    compile_model: bool = False,
    compile_memory_budget: float | None = None,
    frozen: bool = False,
) -> Callable[[], None]:
    """A closure running one step of ``workload`` on ``model``: inference, or forward + backward +
    AdamW step. ``dtype`` other than float32 runs under autocast (RALA's core stays fp32 by design);
    a compiled training step keeps activations within ``compile_memory_budget``; ``frozen`` compiles
    inference with the weights frozen in."""
    train = workload.mode == "train"
    if frozen:
        if train:
            raise ValueError("a frozen model has no training step")
        forward = compile_frozen(model, dynamic=False)
    elif compile_model:
        inductor_cache_per_cpu_capability()
        forward = torch.compile(model, dynamic=False)
    else:
        forward = model
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    x = torch.randn(workload.batch, 3, workload.size, workload.size, device=device).contiguous(
        memory_format=memory_format
    )
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    if not train:

        def infer() -> None:
            with torch.inference_mode(), autocast:
                forward(x)

        return infer

    target = torch.randint(0, model.num_classes, (workload.batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        with autocast, activation_memory_budget(compile_memory_budget):
            loss = F.cross_entropy(forward(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train_step
