"""Ranks of every attention block's KV buffer and output map, per variant, collected over images."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .attentions import ATTENTIONS, block_type, kv_buffers, output_maps
from .hooks import AttentionInput
from .spectrum import effective_rank, numerical_rank, singular_values

QUANTITIES = ("kv", "output")
STATS = ("rank", "effective_rank")


@dataclass
class BlockRanks:
    """Ranks of one attention block over the analysed images.

    ``values[quantity][variant][stat]`` lists one entry per image: for ``kv`` a list over heads, for
    ``output`` a number (the N×C map of the whole block).
    """

    stage: int
    block: int
    built_as: str
    num_heads: int
    head_dim: int
    height: int
    width: int
    channels: int
    values: dict = field(
        default_factory=lambda: {q: {v: {s: [] for s in STATS} for v in ATTENTIONS} for q in QUANTITIES}
    )

    @property
    def tokens(self) -> int:
        return self.height * self.width

    def max_rank(self, quantity: str, variant: str) -> int:
        """The largest rank the matrix can have: min(N, d) for a KV buffer (a sum of N rank-one terms),
        N for the softmax attention map, min(N, C) for an output map."""
        if quantity == "output":
            return min(self.tokens, self.channels)
        return self.tokens if variant == "softmax" else min(self.tokens, self.head_dim)

    def mean(self, quantity: str, variant: str, stat: str = "rank") -> float:
        """Mean over images (and heads, for the KV buffer)."""
        flat = torch.tensor(self.values[quantity][variant][stat], dtype=torch.float64).flatten()
        return float(flat.mean()) if flat.numel() else float("nan")

    def add(self, call: AttentionInput, rtol: float) -> None:
        """Measure one recorded call (a batch of images) and append its ranks."""
        with torch.no_grad():
            matrices = {"kv": kv_buffers(call.attn, call.x, call.sin, call.cos),
                        "output": output_maps(call.attn, call.x, call.sin, call.cos)}  # fmt: skip
        for quantity, per_variant in matrices.items():
            for variant, matrix in per_variant.items():
                sv = singular_values(matrix)
                entry = self.values[quantity][variant]
                entry["rank"] += numerical_rank(sv, rtol).tolist()
                entry["effective_rank"] += effective_rank(sv).tolist()


def block_ranks_for(call: AttentionInput) -> BlockRanks:
    """An empty :class:`BlockRanks` describing the block of ``call``."""
    attn = call.attn
    _, channels, height, width = call.x.shape
    return BlockRanks(call.stage, call.block, block_type(attn), attn.num_heads, attn.head_dim, height, width, channels)


class RankCollector:
    """Accumulates :class:`BlockRanks` per (stage, block) over forward passes."""

    def __init__(self, rtol: float):
        self.rtol = rtol
        self.blocks: dict[tuple[int, int], BlockRanks] = {}

    def add(self, calls: list[AttentionInput]) -> None:
        for call in calls:
            key = (call.stage, call.block)
            if key not in self.blocks:
                self.blocks[key] = block_ranks_for(call)
            block = self.blocks[key]
            if (block.height, block.width) != tuple(call.x.shape[-2:]):
                raise ValueError(
                    f"stage {call.stage + 1} block {call.block}: feature map {tuple(call.x.shape[-2:])} differs from "
                    f"{(block.height, block.width)} of an earlier image; analyse images of one size"
                )
            block.add(call, self.rtol)

    def results(self) -> list[BlockRanks]:
        return [self.blocks[k] for k in sorted(self.blocks)]
