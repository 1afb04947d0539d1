"""Where the time goes (``python -m ravlt.bench --stages``): each stage of RAVLT-S and convnext_tiny timed on
its own in inference, beside its arithmetic (fvcore), so that the stages running far below the machine's
sgemm speed show.

RAVLT's stage *i* ends with the downsampling to stage *i + 1*; ConvNeXt's begins with it.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import timm
import torch
from torch import nn

from ravlt.models import RAVLT
from ravlt.tools.flops import module_flops

from .workloads import BASELINE

STAGE_MODELS = ("ravlt_s", BASELINE)


def stage_parts(model: nn.Module) -> list[tuple[str, str, Callable]]:
    """(label, module name for the FLOP count or '' for the remainder, callable) of the stem, each stage
    and the head, in order; the callables chained give the model's forward."""
    if isinstance(model, RAVLT):
        return [
            ("stem", "patch_embed", lambda x: model.patch_embed(x.contiguous(memory_format=torch.channels_last))),
            *((f"stage {i + 1}", f"layers.{i}", stage) for i, stage in enumerate(model.layers)),
            ("head", "", lambda x: model.forward_head(x.contiguous())),
        ]
    if hasattr(model, "stem") and hasattr(model, "stages"):  # timm's ConvNeXt
        return [
            ("stem", "stem", model.stem),
            *((f"stage {i + 1}", f"stages.{i}", stage) for i, stage in enumerate(model.stages)),
            ("head", "", lambda x: model.forward_head(model.norm_pre(x))),
        ]
    raise ValueError(f"no stage split for {type(model).__name__}")


def part_gflops(model: nn.Module, parts, size: int) -> list[float]:
    """GFLOP (2 per multiply-add) per image of each part; the head gets what the others leave."""
    flops = module_flops(model, size)
    named = [2 * flops.get(name, 0) / 1e9 for _, name, _ in parts if name]
    return [*named, 2 * flops[""] / 1e9 - sum(named)]


def time_parts(parts, x: torch.Tensor) -> list[float]:
    """Seconds of each part in one pass of the chained forward."""
    seconds = []
    with torch.inference_mode():
        for _, _, fn in parts:
            start = time.perf_counter()
            x = fn(x)
            seconds.append(time.perf_counter() - start)
    return seconds


def stage_breakdown(batch: int, size: int, repeats: int, sgemm_gflops: float) -> list[dict]:
    """One row per (model, part): median milliseconds over ``repeats`` interleaved passes, GFLOP per
    image, GFLOP/s and its fraction of sgemm."""
    x = torch.randn(batch, 3, size, size)
    setups = []
    for name in STAGE_MODELS:
        model = timm.create_model(name).eval()
        parts = stage_parts(model)
        setups.append((name, parts, part_gflops(model, parts, size)))
        time_parts(parts, x)  # warm-up
    samples = {name: [] for name in STAGE_MODELS}
    for _ in range(repeats):
        for name, parts, _ in setups:
            samples[name].append(time_parts(parts, x))
    rows = []
    for name, parts, gflops in setups:
        for i, (label, _, _) in enumerate(parts):
            seconds = statistics.median(sample[i] for sample in samples[name])
            rate = gflops[i] * batch / seconds
            rows.append(dict(model=name, part=label, ms=1e3 * seconds, gflop_per_img=gflops[i], gflop_per_s=rate,
                             sgemm_fraction=rate / sgemm_gflops))
    return rows


def stages_table(rows: list[dict], batch: int, size: int) -> str:
    lines = [f"Where the time goes, inference b{batch} {size}² (median of interleaved passes):", "",
             "| model | part | ms | share | GFLOP/img | GFLOP/s | % of sgemm |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in STAGE_MODELS:
        mine = [r for r in rows if r["model"] == name]
        total = sum(r["ms"] for r in mine)
        for r in mine:
            lines.append(f"| {name} | {r['part']} | {r['ms']:.1f} | {r['ms'] / total:.0%} | {r['gflop_per_img']:.2f} "
                         f"| {r['gflop_per_s']:.0f} | {r['sgemm_fraction']:.0%} |")
    return "\n".join(lines)
