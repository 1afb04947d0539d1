"""Numerical and effective rank from singular values.

- numerical rank: the number of singular values above ``rtol × σ_max``;
- effective rank (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_i = σ_i / Σ σ``, the exponential of the
  entropy of the normalised singular values. It needs no tolerance: it is ``r`` for ``r`` equal singular
  values and tends to 1 when one direction dominates.
"""
from __future__ import annotations

import torch

DEFAULT_RTOL = 1e-2
"""Relative tolerance of the numerical rank. A KV buffer is a sum of N ≥ d rank-one terms, so at
floating-point tolerance nearly every buffer is full rank; 1 % of the largest singular value counts the
directions that carry a non-negligible share of the map."""


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of the last two dimensions (batched), descending, in float64.

    Computed as the square roots of the eigenvalues of the Gram matrix on the smaller side: several times
    faster than an SVD for the N×N attention maps, and accurate to about 1e-8 × σ_max in float64, far
    below any tolerance used here.
    """
    m = matrix.double()
    if m.shape[-2] < m.shape[-1]:
        m = m.transpose(-1, -2)
    gram = m.transpose(-1, -2) @ m
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(-1)


def numerical_rank(sv: torch.Tensor, rtol: float = DEFAULT_RTOL) -> torch.Tensor:
    """Number of singular values above ``rtol × σ_max`` (0 for a zero matrix)."""
    return (sv > rtol * sv[..., :1]).sum(-1)


def effective_rank(sv: torch.Tensor) -> torch.Tensor:
    """``exp`` of the entropy of the normalised singular values (0 for a zero matrix)."""
    total = sv.sum(-1, keepdim=True)
    p = sv / total.clamp_min(torch.finfo(sv.dtype).tiny)
    erank = torch.exp(torch.special.entr(p).sum(-1))
    return torch.where(total.squeeze(-1) > 0, erank, torch.zeros_like(erank))
