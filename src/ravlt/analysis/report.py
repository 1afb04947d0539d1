"""Printed tables, the summary line and the JSON of a rank analysis."""
from __future__ import annotations

import json
import os
from itertools import groupby
from pathlib import Path

from ravlt.files import write_text_atomically

from .attentions import ATTENTIONS
from .measure import QUANTITIES, STATS, BlockRanks

DEFINITIONS = {
    "rank": "numerical rank: singular values above rtol × the largest one",
    "effective_rank": "exp of the entropy of the normalised singular values (Roy & Vetterli 2007)",
    "kv": "KV buffer per head, sum_j w_j RoPE(phi(k_j))^T v_j (d×d) with w = alpha (RALA) or 1/N (plain); "
    "for softmax, which has no buffer, the N×N attention map softmax(RoPE(q) RoPE(k)^T / sqrt(d)) per head",
    "output": "output feature map of the attention module (N×C), proj((attention + LePE) * o); no gate for plain",
    "rala": "RALA as built (alpha re-weighting and output gate)",
    "plain": "same block with alpha and the output gate switched off: plain linear attention, ELU+1 kernel",
    "softmax": "softmax attention with the same q/k/v/o projections, RoPE, LePE and gate",
    "table_columns": "KV RALA / KV plain: KV buffers; softmax map: the softmax variant's attention map; "
    "out *: output feature maps of the three variants",
}
BUILT_AS = {"rala": "RALA", "softmax": "softmax"}


def by_stage(blocks: list[BlockRanks]) -> list[tuple[int, list[BlockRanks]]]:
    return [(stage, list(group)) for stage, group in groupby(blocks, key=lambda b: b.stage)]


def stage_description(block: BlockRanks, rtol: float) -> str:
    return (
        f"Stage {block.stage + 1}: {block.height}×{block.width} tokens, C={block.channels}, "
        f"{block.num_heads} head(s) of d={block.head_dim}; rank at rtol {rtol:g}"
    )


def max_ranks(block: BlockRanks) -> str:
    return (
        f"max: KV buffer {block.max_rank('kv', 'rala')}, softmax map {block.tokens}, "
        f"output {block.max_rank('output', 'rala')}"
    )


def _cell(block: BlockRanks, quantity: str, variant: str) -> str:
    return f"{block.mean(quantity, variant):.1f} ({block.mean(quantity, variant, 'effective_rank'):.1f})"


def stage_table(blocks: list[BlockRanks], num_images: int, rtol: float) -> str:
    """One stage: a row per block with rank (effective rank) of every variant's KV buffer and output."""
    b0 = blocks[0]
    names = ["block", "built as", "KV RALA", "KV plain", "softmax map", "out RALA", "out plain", "out softmax"]
    rows = [
        [str(b.block), BUILT_AS[b.built_as]]
        + [_cell(b, "kv", v) for v in ATTENTIONS]
        + [_cell(b, "output", v) for v in ATTENTIONS]
        for b in blocks
    ]
    widths = [max(len(c) for c in column) for column in zip(names, *rows)]
    header = "  ".join(f"{name:>{w}}" for name, w in zip(names, widths))
    lines = [
        f"{stage_description(b0, rtol)} (effective rank), mean over {num_images} image(s) and the heads; "
        + max_ranks(b0),
        header,
        "-" * len(header),
    ]
    lines += ["  ".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def kv_comparison(blocks: list[BlockRanks]) -> dict:
    """In how many RALA-built blocks RALA's KV buffer out-ranks the plain linear one (mean over images and heads)."""
    rala_blocks = [b for b in blocks if b.built_as == "rala"]
    higher = {
        stat: [
            f"{b.stage + 1}.{b.block}" for b in rala_blocks if b.mean("kv", "rala", stat) > b.mean("kv", "plain", stat)
        ]
        for stat in STATS
    }
    return {
        "rala_blocks": len(rala_blocks),
        "rank_higher_in": higher["rank"],
        "effective_rank_higher_in": higher["effective_rank"],
        "rank_higher_in_every_rala_block": bool(rala_blocks) and len(higher["rank"]) == len(rala_blocks),
    }


def summary_line(comparison: dict, rtol: float, random_init: bool) -> str:
    n = comparison["rala_blocks"]
    if n == 0:
        return "No RALA block in this model (every block is softmax attention): no KV buffer to compare."
    verdict = "YES" if comparison["rank_higher_in_every_rala_block"] else "NO"
    weights = " Weights: RANDOM INIT, not a trained model." if random_init else ""
    return (
        f"RALA's KV-buffer rank exceeds plain linear attention's in every RALA block: {verdict} "
        f"(rank at rtol {rtol:g} higher in {len(comparison['rank_higher_in'])}/{n} blocks, "
        f"effective rank higher in {len(comparison['effective_rank_higher_in'])}/{n}).{weights}"
    )


def to_json(blocks: list[BlockRanks], meta: dict, comparison: dict) -> dict:
    out_blocks = []
    for b in blocks:
        entry = {
            "stage": b.stage + 1,
            "block": b.block,
            "built_as": b.built_as,
            "num_heads": b.num_heads,
            "head_dim": b.head_dim,
            "height": b.height,
            "width": b.width,
            "channels": b.channels,
        }
        for q in QUANTITIES:
            entry[q] = {
                v: {
                    "max_rank": b.max_rank(q, v),
                    **{f"mean_{s}": b.mean(q, v, s) for s in STATS},
                    **{f"per_image_{s}": b.values[q][v][s] for s in STATS},
                }
                for v in ATTENTIONS
            }
        out_blocks.append(entry)
    return {**meta, "definitions": DEFINITIONS, "summary": comparison, "blocks": out_blocks}


def write_json(data: dict, path: str | os.PathLike) -> Path:
    return write_text_atomically(path, json.dumps(data, indent=1) + "\n")
