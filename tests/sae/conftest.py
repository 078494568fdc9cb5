"""The SAE variants under test (kept once, here) and small configs / synthetic data shared by the SAE tests."""

from __future__ import annotations

import pytest
import torch

from cxrlens.sae.base import SAEConfig
from cxrlens.sae.synthetic import make_sparse_data

VARIANTS = ("relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka", "hybrid")

# sparsity coefficients that give L0 ≈ k_active on the synthetic data below (normalised units, E‖x‖² = D)
SPARSITY = {"relu": 1.0, "jumprelu": 2.0, "gated": 5.0, "hybrid": 5.0}


def small_config(arch: str, d: int = 16, n_latents: int = 64, k: int = 4, **kw) -> SAEConfig:
    kw = {"sparsity_coeff": SPARSITY.get(arch, 1.0), "aux_k": 8, "dead_tokens": 256, **kw}
    return SAEConfig(arch=arch, d_in=d, n_latents=n_latents, k=k, **kw)


def batch_stream(x: torch.Tensor, batch_size: int, seed: int = 0):
    """Endless seeded epochs of shuffled batches: the same seed replays the same sequence (for exact resume)."""
    epoch = 0
    while True:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield x[perm[i : i + batch_size]]
        epoch += 1


@pytest.fixture(params=VARIANTS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_data():
    return make_sparse_data(2048, 16, 32, 3, seed=1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices on a shared 2-core machine: one intra-op thread is ~40× faster than a contended pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
