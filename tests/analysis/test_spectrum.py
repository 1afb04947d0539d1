"""Numerical and effective rank on matrices whose rank is known by construction."""
import math

import pytest
import torch

from ravlt.analysis.spectrum import effective_rank, numerical_rank, singular_values


def matrix_of_rank(rows: int, cols: int, rank: int, sv=None) -> torch.Tensor:
    """U diag(sv) Vᵀ with orthonormal U, V: exactly ``rank`` non-zero singular values."""
    u, _ = torch.linalg.qr(torch.randn(rows, rank, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, rank, dtype=torch.float64))
    sv = (
        torch.linspace(10.0, 1.0, rank, dtype=torch.float64) if sv is None else torch.as_tensor(sv, dtype=torch.float64)
    )
    return u @ torch.diag(sv) @ v.T


@pytest.mark.parametrize("rows, cols, rank", [(64, 64, 7), (300, 48, 20), (16, 200, 16), (50, 50, 1), (40, 40, 40)])
def test_numerical_rank_of_constructed_matrices(rows, cols, rank):
    assert numerical_rank(singular_values(matrix_of_rank(rows, cols, rank))).item() == rank


def test_singular_values_match_an_svd():
    m = matrix_of_rank(120, 30, 12) + 1e-3 * torch.randn(120, 30, dtype=torch.float64)
    ours = singular_values(m)
    assert torch.allclose(ours, torch.linalg.svdvals(m), atol=1e-7 * ours[0].item())
    assert torch.all(ours[:-1] >= ours[1:])


def test_batched_matrices_are_measured_independently():
    batch = torch.stack([matrix_of_rank(32, 32, r) for r in (3, 9, 32)]).float()
    assert numerical_rank(singular_values(batch)).tolist() == [3, 9, 32]


def test_the_relative_tolerance_decides_what_counts():
    sv = singular_values(torch.diag(torch.tensor([1.0, 0.5, 5e-3, 5e-5])))
    assert numerical_rank(sv, rtol=1e-2).item() == 2
    assert numerical_rank(sv, rtol=1e-3).item() == 3
    assert numerical_rank(sv, rtol=1e-6).item() == 4


def test_effective_rank_of_known_spectra():
    assert effective_rank(singular_values(matrix_of_rank(40, 40, 6, sv=[3.0] * 6))).item() == pytest.approx(6, rel=1e-6)
    assert effective_rank(singular_values(matrix_of_rank(40, 30, 1))).item() == pytest.approx(1, rel=1e-5)
    # two directions with weights 3:1 -> exp(H(0.75, 0.25))
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(singular_values(torch.diag(torch.tensor([3.0, 1.0])))).item() == pytest.approx(expected)


def test_zero_matrix_has_rank_zero():
    sv = singular_values(torch.zeros(8, 5))
    assert numerical_rank(sv).item() == 0
    assert effective_rank(sv).item() == 0
