"""``ravlt-export`` / ``python -m ravlt.export``: a RAVLT as an ONNX file with dynamic batch, height and width.

Two kinds: the classifier (``images`` -> ``logits``) and the dense backbone of the detection and segmentation
models (``images`` -> ``stage0`` .. ``stage3``, strides 4/8/16/32, each through its output LayerNorm). Weights
come from ``--checkpoint`` (released, Lightning or mmdet/mmseg checkpoints, as everywhere in the project) or
are random. ``--check`` runs the file in onnxruntime at several input sizes against PyTorch.

Uses torch's own exporter (``torch.onnx.export(dynamo=True)``, which needs the ``onnx`` and ``onnxscript``
packages; ``--check`` needs ``onnxruntime``: the ``export`` extra, ``pip install -e '.[export]'``). The file is
written to a temporary name and renamed when complete; a wrong input ends in one ``error:`` line, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from ravlt.commands import ArgumentParser, positive_int, run_command
from ravlt.errors import ConfigError

KINDS = ("classifier", "dense")
CHECK_SIZES = ((1, 224, 224), (2, 160, 96), (1, 100, 70))
CHECK_TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| --check accepts (fp32)
EXTRA = "pip install -e '.[export]'"


def build_model(name: str, kind: str, checkpoint: str | None = None, num_classes: int | None = None) -> nn.Module:
    """The model to export, in eval mode without gradients: a timm ``ravlt_*`` classifier or the dense
    backbone (:class:`ravlt.mm.RAVLTBackbone`), weights from ``checkpoint`` if given."""
    from ravlt.models import VARIANTS, checkpoint_weights, load_weights, read_checkpoint

    if name not in VARIANTS:
        raise ConfigError(f"--model {name}: unknown; choose one of {', '.join(VARIANTS)}")
    weights = checkpoint_weights(read_checkpoint(checkpoint, "--checkpoint")) if checkpoint else None
    if kind == "dense":
        from ravlt.mm.backbone import RAVLTBackbone

        model = RAVLTBackbone(arch=name)
    else:
        import timm

        model = timm.create_model(name, **({"num_classes": num_classes} if num_classes else {}))
    if weights is not None:
        load_weights(model, weights, allow_new_head=kind == "classifier" and num_classes is not None)
    return model.eval().requires_grad_(False)


def output_names(kind: str) -> list[str]:
    return ["logits"] if kind == "classifier" else [f"stage{i}" for i in range(4)]


def export_onnx(model: nn.Module, kind: str, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width; returns the path."""
    for package in ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"ONNX export needs the Python package {package}: {EXTRA}")
    from torch.export import Dim

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # batch 2 and a non-square size: the exporter specialises dimensions of size 1 and equal dimensions
    example = torch.randn(2, 3, 96, 128, dtype=next(model.parameters()).dtype)
    dynamic = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model, (example,), tmp, input_names=["images"], output_names=output_names(kind),
                dynamic_shapes=dynamic, opset_version=opset, dynamo=True, external_data=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, sizes=CHECK_SIZES) -> list[dict]:
    """Largest absolute difference between onnxruntime (CPU) and PyTorch, per (batch, height, width)."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError(f"--check needs the Python package onnxruntime: {EXTRA}")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = []
    for batch, height, width in sizes:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            want = model(x)
        want = [want] if isinstance(want, torch.Tensor) else list(want)
        got = session.run(None, {"images": x.numpy()})
        diff = max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want))
        results.append(dict(size=(batch, height, width), max_abs_diff=diff))
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ravlt-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ravlt_t", help="ravlt_t, ravlt_s, ravlt_b or ravlt_l")
    p.add_argument("--kind", choices=KINDS, default="classifier")
    p.add_argument("--checkpoint", help="weights to load (default: random)")
    p.add_argument("--num-classes", type=positive_int, help="classifier head size, if not the checkpoint's / 1000")
    p.add_argument("--out", type=Path, help="ONNX file to write (default: <model>_<kind>.onnx)")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch at several sizes")
    return p.parse_args(argv)


def export_command(args: argparse.Namespace) -> Path:
    out = args.out or Path(f"{args.model}_{args.kind}.onnx")
    model = build_model(args.model, args.kind, args.checkpoint, args.num_classes)
    export_onnx(model, args.kind, out, args.opset)
    print(f"wrote {out} ({args.model} {args.kind}; input images (batch, 3, height, width), all three dynamic)")
    if args.check:
        results = check_onnx(model, out)
        for r in results:
            print(f"onnxruntime vs PyTorch at {r['size']}: max |diff| {r['max_abs_diff']:.2e}")
        if any(not r["max_abs_diff"] <= CHECK_TOLERANCE for r in results):
            sys.exit(f"check failed: onnxruntime differs from PyTorch by more than {CHECK_TOLERANCE:g}")
    return out


def main(argv: list[str] | None = None) -> Path:
    """The command: an input mistake ends in one ``error:`` line and exit status 2 (:mod:`ravlt.commands`)."""
    return run_command(lambda: export_command(parse_args(argv)))


if __name__ == "__main__":
    main()
