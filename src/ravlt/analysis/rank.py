"""Rank analysis of RALA: KV-buffer and output-feature ranks of every attention block, three variants.

    python -m ravlt.analysis.rank --model ravlt_t [--checkpoint PATH] [--images DIR] --out DIR [--wandb]

Runs the model on images (scikit-image's bundled photographs by default, so it works offline), records
every attention block's input and, on that same input, compares RALA as built, the same block with α and
the output gate off (plain linear attention) and softmax attention (see :mod:`ravlt.analysis.attentions`
for exactly which matrices are measured). Prints a table per stage, writes ``rank_stage{i}.png`` per
stage and ``rank.json`` to ``--out``, optionally logs them to W&B, and ends with one line saying whether
RALA's KV buffer out-ranks plain linear attention's in every RALA block.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from torch import nn

from ravlt.checks import check_attn_types, check_device
from ravlt.commands import ArgumentParser, positive_int, run_command
from ravlt.models import VARIANTS, load_checkpoint
from ravlt.tracking import wandb_mode

from .hooks import record_attention_inputs
from .images import SAMPLE_IMAGES, folder_images, sample_images, to_input
from .measure import BlockRanks, RankCollector
from .plots import plot_stage
from .report import by_stage, kv_comparison, stage_table, summary_line, to_json, write_json
from .spectrum import DEFAULT_RTOL

log = logging.getLogger(__name__)


def build_model(
    name: str, checkpoint: str | None = None, attn_types: str | None = None, use_ema: bool = False
) -> nn.Module:
    """The RAVLT backbone (no classifier) in eval mode, with the weights of ``checkpoint`` when given.

    Any of our checkpoints fits: classification (Lightning ``.ckpt``, released ``RAVLT_*.pth``, bare state
    dict) or detection / segmentation (``backbone.*``); a checkpoint of another variant raises
    :class:`~ravlt.models.CheckpointMismatchError`.
    """
    kwargs = {"attn_types": attn_types} if attn_types else {}
    model = timm.create_model(name, with_head=False, **kwargs)
    if checkpoint:
        load_checkpoint(model, checkpoint, use_ema)
    return model.eval()


def analyse(model: nn.Module, images: list[tuple[str, Image.Image]], image_size: int, rtol: float) -> list[BlockRanks]:
    """Ranks of every attention block over ``images`` (one forward each, on the model's device)."""
    collector = RankCollector(rtol)
    device = next(model.parameters()).device
    for k, (name, image) in enumerate(images, 1):
        start = time.perf_counter()
        with record_attention_inputs(model) as calls, torch.no_grad():
            model.forward_features(to_input(image, image_size).to(device))
        collector.add(calls)
        seconds = time.perf_counter() - start
        print(
            f"  image {k}/{len(images)} {name}: {len(calls)} attention blocks measured in {seconds:.1f} s", flush=True
        )
    return collector.results()


def log_to_wandb(args: argparse.Namespace, data: dict, pngs: list[Path], json_path: Path) -> str:
    """Log the per-block table, the stage plots and the JSON to a W&B run (offline unless WANDB_MODE says
    otherwise); returns the run's local folder."""
    import wandb

    run = wandb.init(
        project=args.wandb_project,
        name=f"rank-{args.model}",
        job_type="rank-analysis",
        dir=str(args.out),
        mode=wandb_mode(args.wandb_mode),
        config={k: v for k, v in data.items() if k not in ("blocks", "summary", "definitions")},
        settings=wandb.Settings(quiet=True),
    )
    columns = ["stage", "block", "built_as", "quantity", "variant", "mean_rank", "mean_effective_rank", "max_rank"]
    rows = [
        [
            b["stage"],
            b["block"],
            b["built_as"],
            quantity,
            variant,
            v["mean_rank"],
            v["mean_effective_rank"],
            v["max_rank"],
        ]
        for b in data["blocks"]
        for quantity in ("kv", "output")
        for variant, v in b[quantity].items()
    ]
    run.log(
        {
            "rank/blocks": wandb.Table(columns=columns, data=rows),
            **{f"rank/{p.stem}": wandb.Image(str(p)) for p in pngs},
        }
    )
    run.summary.update({f"rank/{k}": v for k, v in data["summary"].items()})
    run.save(str(json_path), base_path=str(json_path.parent), policy="now")
    folder = run.dir
    run.finish()
    return folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="ravlt-rank", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ravlt_t", choices=sorted(VARIANTS), help="variant (default ravlt_t)")
    p.add_argument(
        "--checkpoint",
        help="classification (.ckpt / RAVLT_*.pth) or detection / segmentation checkpoint; "
        "without one the weights are random",
    )
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--attn-types", help="per-stage attention types, e.g. llll (default: the variant's, llvv)")
    p.add_argument("--images", help=f"folder of images (default: scikit-image's {', '.join(SAMPLE_IMAGES)})")
    p.add_argument("--image-size", type=int, default=224, help="short side resized to this, centre crop (default 224)")
    rtol_help = f"relative tolerance of the numerical rank (default {DEFAULT_RTOL:g})"
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=rtol_help)
    p.add_argument("--out", required=True, type=Path, help="folder for rank_stage*.png and rank.json")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--wandb", action="store_true", help="log the table, plots and JSON to W&B")
    p.add_argument("--wandb-project", default="ravlt", help="W&B project (default ravlt)")
    p.add_argument(
        "--wandb-mode", choices=("offline", "online"), help="offline (default); WANDB_MODE wins"
    )
    args = p.parse_args(argv)
    if args.rtol <= 0 or args.rtol >= 1:
        p.error(f"--rtol must be in (0, 1), got {args.rtol}")
    if args.image_size < 32:
        p.error(f"--image-size must be at least 32 (four stages of downsampling), got {args.image_size}")
    return args


def main(argv: list[str] | None = None) -> int:
    """The command: an input mistake ends in one ``error:`` line and exit status 2 (:mod:`ravlt.commands`)."""
    return run_command(lambda: analyse_command(parse_args(argv)))


def analyse_command(args: argparse.Namespace) -> int:
    check_device("--device", args.device)
    check_attn_types("--attn-types", args.model, args.attn_types)
    args.out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, not after the analysis
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.model, args.checkpoint, args.attn_types, args.ema).to(args.device)
    images = folder_images(args.images) if args.images else sample_images()
    random_init = not args.checkpoint
    if random_init:
        print("WARNING: no --checkpoint: analysing a RANDOMLY INITIALISED model. Its ranks say nothing about a "
              "trained RAVLT; pass --checkpoint RAVLT_T.pth (or your own) for the paper's claim.")  # fmt: skip
    print(f"Rank analysis of {args.model} ({args.checkpoint or 'random init'}) on {len(images)} image(s) at "
          f"{args.image_size}×{args.image_size}:")  # fmt: skip
    blocks = analyse(model, images, args.image_size, args.rtol)

    pngs = []
    for stage, stage_blocks in by_stage(blocks):
        print()
        print(stage_table(stage_blocks, len(images), args.rtol))
        pngs.append(plot_stage(stage_blocks, args.rtol, args.out / f"rank_stage{stage + 1}.png"))
    comparison = kv_comparison(blocks)
    meta = {
        "model": args.model,
        "attn_types": args.attn_types or "".join(VARIANTS[args.model].attn_types),
        "checkpoint": args.checkpoint,
        "ema": args.ema,
        "random_init": random_init,
        "images": [name for name, _ in images],
        "image_size": args.image_size,
        "rtol": args.rtol,
    }
    data = to_json(blocks, meta, comparison)
    json_path = write_json(data, args.out / "rank.json")
    print()
    print(f"wrote {json_path} and {len(pngs)} plot(s): {', '.join(p.name for p in pngs)}")
    if args.wandb:
        print(f"logged to W&B: {log_to_wandb(args, data, pngs, json_path)}")
    print(summary_line(comparison, args.rtol, random_init))
    return 0


if __name__ == "__main__":
    sys.exit(main())
