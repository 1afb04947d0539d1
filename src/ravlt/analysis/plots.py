"""One PNG per stage: the variants' ranks side by side, per block, as a fraction of the largest possible rank."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .attentions import ATTENTION_LABELS, ATTENTIONS  # noqa: E402
from .measure import BlockRanks  # noqa: E402
from .report import BUILT_AS, max_ranks, stage_description  # noqa: E402

COLOURS = {"rala": "tab:red", "plain": "tab:blue", "softmax": "tab:gray"}
PANELS = (
    ("kv", "rank", "KV buffer: rank / max\n(softmax: N×N attention map)"),
    ("kv", "effective_rank", "KV buffer: effective rank / max"),
    ("output", "rank", "output map (N×C): rank / max"),
    ("output", "effective_rank", "output map: effective rank / max"),
)


def plot_stage(blocks: list[BlockRanks], rtol: float, path: str | os.PathLike) -> Path:
    x = np.arange(len(blocks))
    width = 0.8 / len(ATTENTIONS)
    fig, axes = plt.subplots(2, 2, figsize=(max(8.0, 3 + 1.2 * len(blocks)), 6.5), sharex=True, constrained_layout=True)
    for ax, (quantity, stat, title) in zip(axes.flat, PANELS):
        for k, variant in enumerate(ATTENTIONS):
            values = [b.mean(quantity, variant, stat) / b.max_rank(quantity, variant) for b in blocks]
            ax.bar(x + (k - 1) * width, values, width, color=COLOURS[variant], label=ATTENTION_LABELS[variant])
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[1]:
        ax.set_xticks(x, [f"{b.block}\n{BUILT_AS[b.built_as]}" for b in blocks], fontsize=8)
        ax.set_xlabel("block (built as)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{stage_description(blocks[0], rtol)}\n{max_ranks(blocks[0])}", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
