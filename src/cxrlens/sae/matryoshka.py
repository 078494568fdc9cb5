"""Matryoshka SAE (Bussmann et al. 2025; Nabeshima 2024): nested prefixes of the dictionary each reconstruct.

The latents are ordered; for every prefix size ``m`` in ``cfg.matryoshka_prefixes`` (default ``L/16, L/4, L``) the
reconstruction from latents ``< m`` alone must also be good. The loss is the sum of the prefixes' squared errors,
so early latents learn general, frequent directions and later ones refine them. Selection is per-token TopK (the
variant with BatchTopK selection differs only in :meth:`_select`), decoded sparsely prefix by prefix. Like TopK it
has no sparsity penalty, unit-norm atoms, and a loss (every prefix's error) unchanged by a common rescaling of
encoder and atoms.
"""

from __future__ import annotations

import torch

from cxrlens.sae.base import SAEConfig, gather_decode
from cxrlens.sae.topk import TopKSAE

__all__ = ["MatryoshkaSAE"]


class MatryoshkaSAE(TopKSAE):
    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        L = cfg.n_latents
        self.prefixes = cfg.matryoshka_prefixes or tuple(sorted({max(1, L // 16), max(1, L // 4), L}))

    def _extra_terms(self, x_n, x_hat, vals, cols, offsets) -> dict[str, torch.Tensor]:
        total = torch.zeros((), device=x_n.device)
        for m in self.prefixes[:-1]:
            part = gather_decode(vals * (cols < m), cols, self.W_dec, offsets) + self.b_dec
            total = total + (part - x_n).pow(2).sum(-1).mean()
        return {"prefix": total}
