"""One PNG per stage: the variants' ranks side by side, per block, as a fraction of the largest possible rank."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .measure import BlockRanks  # noqa: E402
from .report import BUILT_AS  # noqa: E402
from .variants import VARIANT_LABELS, VARIANTS  # noqa: E402

COLOURS = {"rala": "tab:red", "plain": "tab:blue", "softmax": "tab:gray"}
PANELS = (
    ("kv", "rank", "KV buffer: rank / max\n(softmax: N×N attention map)"),
    ("kv", "effective_rank", "KV buffer: effective rank / max"),
    ("output", "rank", "output map (N×C): rank / max"),
    ("output", "effective_rank", "output map: effective rank / max"),
)


def plot_stage(stage: int, blocks: list[BlockRanks], rtol: float, path: str | os.PathLike) -> Path:
    b0 = blocks[0]
    x = np.arange(len(blocks))
    width = 0.8 / len(VARIANTS)
    fig, axes = plt.subplots(2, 2, figsize=(4 + 1.2 * len(blocks), 6.5), sharex=True, constrained_layout=True)
    for ax, (quantity, stat, title) in zip(axes.flat, PANELS):
        for k, variant in enumerate(VARIANTS):
            values = [b.mean(quantity, variant, stat) / b.max_rank(quantity, variant) for b in blocks]
            ax.bar(x + (k - 1) * width, values, width, color=COLOURS[variant], label=VARIANT_LABELS[variant])
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[1]:
        ax.set_xticks(x, [f"{b.block}\n{BUILT_AS[b.built_as]}" for b in blocks], fontsize=8)
        ax.set_xlabel("block (built as)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"Stage {stage + 1}: {b0.height}×{b0.width} tokens, d={b0.head_dim} (KV max {b0.head_dim}, "
        f"softmax map max {b0.tokens}, output max {b0.max_rank('output', 'rala')}); rank at rtol {rtol:g}",
        fontsize=9,
    )
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
