"""ReLU SAE with an L1 penalty weighted by decoder norms (Bricken et al. 2023; Anthropic's April 2024 update).

``codes = ReLU(W_enc (x − b_dec) + b_enc)``, ``x̂ = codes W_dec + b_dec`` and
``loss = ‖x − x̂‖² + λ Σ_i codes_i ‖W_dec,i‖``. Weighting by the atom norm makes the penalty invariant to moving
scale between a code and its atom (encoder row and ``b_enc,i`` × 1/c, atom × c: same support, same reconstruction,
same penalty), so the atoms need no unit-norm constraint (and get none); the norm is live in the penalty, so the
training signal has no component along that rescaling either.
"""

from __future__ import annotations

import torch.nn.functional as F

from cxrlens.sae.base import SAE

__all__ = ["ReLUSAE"]


class ReLUSAE(SAE):
    unit_norm_decoder = False

    def _train_terms(self, x_n, sparsity_scale: float):
        codes = F.relu(self.pre_acts(x_n))
        x_hat = self.decode_n(codes)
        sparsity = (codes * self.decoder_norms()).sum(-1).mean()
        return x_hat, codes.detach() > 0, {"sparsity": self.cfg.sparsity_coeff * sparsity_scale * sparsity}
