"""``ravlt-export`` / ``python -m ravlt.export``: a RAVLT as an ONNX file with dynamic batch, height and width.

Two kinds: the classifier (``images`` -> ``logits``) and the dense backbone of the detection and segmentation
models (``images`` -> ``stage0`` .. ``stage3``, strides 4/8/16/32, each through its output LayerNorm). Weights
come from ``--checkpoint`` (released, Lightning or mmdet/mmseg checkpoints, as everywhere in the project) or
are random. ``--check`` runs the file in onnxruntime at several input sizes against PyTorch.

Uses torch's own exporter (``torch.onnx.export(dynamo=True)``, which needs the ``onnx`` and ``onnxscript``
packages; ``--check`` needs ``onnxruntime``). The file is written to a temporary name and renamed when
complete.
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

KINDS = ("classifier", "dense")
CHECK_SIZES = ((1, 224, 224), (2, 160, 96), (1, 100, 70))


class ExportError(RuntimeError):
    """A request that cannot be exported, with what to change."""


def build_model(name: str, kind: str, checkpoint: str | None = None, num_classes: int | None = None) -> nn.Module:
    """The model to export, in eval mode without gradients: a timm ``ravlt_*`` classifier or the dense
    backbone (:class:`ravlt.mm.RAVLTBackbone`), weights from ``checkpoint`` if given."""
    from ravlt.models import VARIANTS, load_checkpoint

    if name not in VARIANTS:
        raise ExportError(f"--model {name}: unknown; choose one of {', '.join(VARIANTS)}")
    if kind == "dense":
        from ravlt.mm.backbone import RAVLTBackbone

        model = RAVLTBackbone(arch=name)
        if checkpoint:
            load_checkpoint(model, checkpoint)
    else:
        import timm

        model = timm.create_model(name, **({"num_classes": num_classes} if num_classes else {}))
        if checkpoint:
            load_checkpoint(model, checkpoint, allow_new_head=num_classes is not None)
    return model.eval().requires_grad_(False)


def output_names(kind: str) -> list[str]:
    return ["logits"] if kind == "classifier" else [f"stage{i}" for i in range(4)]


def export_onnx(model: nn.Module, kind: str, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width; returns the path."""
    for package in ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:
            raise ExportError(f"ONNX export needs the Python package {package}: pip install onnx onnxscript")
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
        raise ExportError("--check needs the Python package onnxruntime: pip install onnxruntime")
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
    p = argparse.ArgumentParser(prog="ravlt-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ravlt_t", help="ravlt_t, ravlt_s, ravlt_b or ravlt_l")
    p.add_argument("--kind", choices=KINDS, default="classifier")
    p.add_argument("--checkpoint", help="weights to load (default: random)")
    p.add_argument("--num-classes", type=int, help="classifier head size, if not the checkpoint's / 1000")
    p.add_argument("--out", type=Path, help="ONNX file to write (default: <model>_<kind>.onnx)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch at several sizes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ravlt.models import CheckpointMismatchError

    args = parse_args(argv)
    out = args.out or Path(f"{args.model}_{args.kind}.onnx")
    try:
        if args.checkpoint and not Path(args.checkpoint).is_file():
            raise ExportError(f"--checkpoint {args.checkpoint}: file not found")
        model = build_model(args.model, args.kind, args.checkpoint, args.num_classes)
        export_onnx(model, args.kind, out, args.opset)
        print(f"wrote {out} ({args.model} {args.kind}; inputs images (batch, 3, height, width), dynamic)")
        if args.check:
            for r in check_onnx(model, out):
                print(f"onnxruntime vs PyTorch at {r['size']}: max |diff| {r['max_abs_diff']:.2e}")
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CheckpointMismatchError as e:
        print(f"error: --checkpoint {args.checkpoint}: {str(e).splitlines()[0]} Pick --model to match.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
