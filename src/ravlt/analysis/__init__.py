"""Rank analysis of RALA (``python -m ravlt.analysis.rank``): KV-buffer and output-feature ranks of every
attention block for RALA, plain linear attention and softmax attention on the same inputs."""
from .spectrum import DEFAULT_RTOL, effective_rank, numerical_rank, singular_values

__all__ = ["DEFAULT_RTOL", "effective_rank", "numerical_rank", "singular_values"]
