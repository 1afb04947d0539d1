"""The complex-multiplication RoPE equals the formula as written; its inverse (backward) undoes it."""
import torch

from ravlt.models.rope import RoPE2d, apply_rope, rotate, rotation_table


def test_rotate_equals_apply_rope_on_strided_views():
    sin, cos = RoPE2d(16).double()(5, 7)
    table = rotation_table(sin, cos, torch.float64)
    tokens = torch.randn(2, 35, 4, 3, 16, dtype=torch.float64)  # (B, N, q/k/v/o, heads, d), like the projection
    x = tokens[:, :, 1].transpose(1, 2)  # (B, heads, N, d), strided
    torch.testing.assert_close(rotate(x, table), apply_rope(x, sin, cos))
    torch.testing.assert_close(rotate(rotate(x, table), table, inverse=True), x)


def test_rotation_table_follows_dtype():
    sin, cos = RoPE2d(8)(3, 3)
    assert rotation_table(sin, cos, torch.float32).dtype == torch.complex64
    assert rotation_table(sin, cos, torch.float64).dtype == torch.complex128


def test_real_table_of_the_compile_path_gives_the_same_rotation():
    sin, cos = RoPE2d(16).double()(4, 6)
    real_table = torch.stack((cos[:, 0::2], sin[:, 0::2]), dim=-1)
    x = torch.randn(3, 2, 24, 16, dtype=torch.float64)
    torch.testing.assert_close(rotate(x, real_table), apply_rope(x, sin, cos))
    torch.testing.assert_close(
        rotate(x, real_table, inverse=True), rotate(x, rotation_table(sin, cos, torch.float64), inverse=True)
    )
