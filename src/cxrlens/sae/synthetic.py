"""Synthetic activations with a known dictionary, for feature-recovery tests, ablations and benchmarks.

``x = Σ_{i ∈ S} c_i · f_i + noise``: ``F`` ground-truth unit atoms ``f_i`` in ``R^D``, each token uses exactly
``k_active`` of them (chosen with a Zipf-like frequency so some features are common and some rare) with magnitudes
``c_i ~ 1 + Exp(1)``; Gaussian noise of standard deviation ``noise`` per coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SparseData", "make_sparse_data"]


@dataclass(frozen=True)
class SparseData:
    x: torch.Tensor  # (N, D) float32
    dictionary: torch.Tensor  # (F, D) unit rows
    support: torch.Tensor  # (N, k_active) int64 ids of the active features


def make_sparse_data(
    n: int, d: int, n_features: int, k_active: int, *, noise: float = 0.01, zipf: float = 0.5, seed: int = 0
) -> SparseData:
    """``n`` tokens of dimension ``d`` built from ``n_features`` atoms, ``k_active`` per token (see module doc)."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_features, d, generator=g)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    weights = (torch.arange(1, n_features + 1, dtype=torch.float64) ** -zipf).expand(n, n_features)
    support = torch.multinomial(weights, k_active, replacement=False, generator=g)
    mags = 1.0 + torch.empty(n, k_active).exponential_(1.0, generator=g)
    x = torch.nn.functional.embedding_bag(support, dictionary, per_sample_weights=mags, mode="sum")
    x += noise * torch.randn(n, d, generator=g)
    return SparseData(x=x, dictionary=dictionary, support=support)
