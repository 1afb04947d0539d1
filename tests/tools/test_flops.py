import pytest

from ravlt.tools.flops import count


def test_flops_of_ravlt_t_match_the_spec():
    params, gflops = count("ravlt_t")
    assert round(params, 2) == 14.90
    assert gflops == pytest.approx(2.6, abs=0.05)  # docs/method.md §5: fvcore counts the attention matmuls too
