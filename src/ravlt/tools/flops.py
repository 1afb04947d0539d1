"""Parameters and FLOPs (fvcore, multiply-adds, 224²) of the RAVLT variants: ``make flops``."""
from __future__ import annotations

import logging
import warnings
from math import prod

import timm
import torch

import ravlt  # noqa: F401
from ravlt.checks import MIN_IMAGE_SIZE
from ravlt.commands import ArgumentParser, positive_int
from ravlt.models import VARIANTS

with warnings.catch_warnings():  # fvcore scripts a loss with torch.jit on import, which torch deprecates
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

# The authors' figures (docs/method.md §5), for the side-by-side column.
PUBLISHED = {"ravlt_t": (15, 2.4), "ravlt_s": (26, 4.6), "ravlt_b": (48, 9.9), "ravlt_l": (95, 16.0)}


def _sdpa_flops(inputs, outputs) -> int:
    """fvcore has no handle for the fused kernel: count q·kᵀ and attn·v like two matmuls."""
    q, k = (i.type().sizes() for i in inputs[:2])
    return prod(q[:-1]) * k[-2] * q[-1] * 2


def _analysis(model: torch.nn.Module, size: int) -> FlopCountAnalysis:
    analysis = FlopCountAnalysis(model, torch.randn(1, 3, size, size))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flops)
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def count(name: str, size: int = 224, **kwargs) -> tuple[float, float]:
    """(parameters in millions, GFLOPs) of one model at ``size``×``size``."""
    model = timm.create_model(name, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return params, _analysis(model, size).total() / 1e9


def module_flops(model: torch.nn.Module, size: int = 224) -> dict[str, int]:
    """Multiply-adds of one image at ``size``×``size`` per module name ('' is the whole model)."""
    return dict(_analysis(model, size).by_module())


def main(argv: list[str] | None = None) -> None:
    """The command; a wrong option ends in one ``error:`` line (:class:`ravlt.commands.ArgumentParser`)."""
    parser = ArgumentParser(prog="ravlt-flops", description=__doc__)
    parser.add_argument("--size", type=positive_int, default=224, help=f"input side, at least {MIN_IMAGE_SIZE}")
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    if args.size < MIN_IMAGE_SIZE:
        parser.error(f"--size {args.size}: at least {MIN_IMAGE_SIZE} (four stages halve the resolution)")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation inside fvcore
    print(f"| model | params (M) | GFLOPs @{args.size} (fvcore) | published params / FLOPs |")
    print("|---|---|---|---|")
    for name in args.models:
        params, gflops = count(name, args.size)
        pub = PUBLISHED.get(name)
        print(f"| {name} | {params:.2f} | {gflops:.2f} | {f'{pub[0]}M / {pub[1]}G' if pub else '-'} |")


if __name__ == "__main__":
    main()
