"""Gated SAE (Rajamanoharan et al. 2024, "Improving dictionary learning with gated sparse autoencoders").

Two paths share the encoder directions:

* gate: ``π_gate = W_gate (x − b_dec) + b_gate`` decides *which* latents fire, ``f_gate = H(π_gate)``;
* magnitude: ``W_mag = exp(r_mag) ⊙ W_gate`` (a per-latent rescaling, the weight sharing),
  ``π_mag = W_mag (x − b_dec) + b_mag``, ``f_mag = ReLU(π_mag)`` decides *how much*;

``codes = f_gate ⊙ f_mag``, ``x̂ = codes W_dec + b_dec``. Here ``W_gate = W_enc`` and ``b_gate = b_enc``. The loss is
``‖x − x̂‖² + λ Σ_i ReLU(π_gate)_i · sg(‖W_dec,i‖) + ‖x − x̂_frozen(ReLU(π_gate))‖²`` (sg: stop-gradient): the L1
penalty touches only the gate, and the auxiliary reconstruction through a *frozen* (detached) copy of the decoder
gives the gate path a gradient to reconstruct with (H blocks it from the main term). Atoms are unit-norm, as in the
paper: the trainer removes the gradient along each atom and renormalises after every step.

**Scale invariance.** Scaling latent i's ``W_gate`` row, ``b_gate,i`` and ``b_mag,i`` by ``1/c`` and its atom by
``c`` changes neither the support nor any reconstruction, but divides ``ReLU(π_gate)_i`` by ``c``: a bare L1 penalty
could be lowered that way, which the unit-norm constraint forbids in training. The penalty also carries the atom
norm as a frozen factor, so the objective is invariant everywhere, not only on the unit sphere (a loaded or edited
model with other norms reports an honest penalty). On unit atoms the factor is 1, so the paper's loss, its
gradients and the training run are unchanged; frozen, it matches the frozen decoder of the auxiliary term (the
gated authors' advice: the decoder live in both or frozen in both).

:class:`GatedSAE` exposes hooks (:meth:`_sparsity`, :meth:`_aux_decoder`) that :mod:`cxrlens.sae.hybrid` switches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cxrlens.sae.base import SAE, SAEConfig

__all__ = ["GatedSAE"]


class GatedSAE(SAE):
    unit_norm_decoder = True

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.r_mag = nn.Parameter(torch.zeros(cfg.n_latents))
        self.b_mag = nn.Parameter(torch.zeros(cfg.n_latents))

    def _paths(self, x_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = x_n - self.b_dec
        pi_gate = torch.addmm(self.b_enc, x_in, self.W_enc.t())
        # W_mag x = exp(r_mag) ⊙ (W_gate x): no second matmul needed
        pi_mag = (pi_gate - self.b_enc) * self.r_mag.exp() + self.b_mag
        return pi_gate, pi_mag

    def encode_n(self, x_n):
        pi_gate, pi_mag = self._paths(x_n)
        return (pi_gate > 0).to(pi_mag.dtype) * F.relu(pi_mag)

    # hooks -----------------------------------------------------------------
    def _sparsity(self, gate_acts: torch.Tensor, pi_gate: torch.Tensor) -> torch.Tensor:
        """Sparsity measure (before the coefficient) of gate_acts = ReLU(π_gate): (B, L), mean over tokens.

        ``Σ_i ReLU(π_gate)_i · ‖W_dec,i‖`` with the norm frozen (= the paper's L1 on unit atoms).
        """
        return (gate_acts * self.decoder_norms().detach()).sum(-1).mean()

    def _aux_decoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W_dec.detach(), self.b_dec.detach()

    def _train_terms(self, x_n, sparsity_scale: float):
        pi_gate, pi_mag = self._paths(x_n)
        active = pi_gate > 0
        codes = active.to(pi_mag.dtype) * F.relu(pi_mag)
        x_hat = self.decode_n(codes)
        gate_acts = F.relu(pi_gate)
        W, b = self._aux_decoder()
        aux = (torch.addmm(b, gate_acts, W) - x_n).pow(2).sum(-1).mean()
        sparsity = self.cfg.sparsity_coeff * sparsity_scale * self._sparsity(gate_acts, pi_gate)
        return x_hat, active & (codes.detach() > 0), {"sparsity": sparsity, "aux": aux}
