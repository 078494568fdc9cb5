"""The SAE-Rad hybrid (Abdulaal et al. 2024, arXiv 2410.03334): a gated SAE with four switchable changes.

SAE-Rad trains a gated SAE (:mod:`cxrlens.sae.gated`) on the CLS token of Rad-DINO with a ×64 expansion (of ×32,
×64 and ×128 compared, ×64 was best); its section 4.1 lists four changes to the gated loss, among them sparsity
enforced on the decoder side and a particular L0-style sparsity measure. The paper never ablated them. Each change
is a switch of :class:`cxrlens.sae.base.SAEConfig` here, and ``benchmarks/bench_sae.py --skip-speed`` ablates them
(all four off is exactly the gated SAE's loss).

Write ``a_i = ReLU(π_gate,i)`` for the gate activation and ``w_i = ‖W_dec,i‖`` for the atom norm; the sparsity
measure is always taken of the *decoded magnitude* ``m_i = a_i · w_i`` (what latent i adds to the reconstruction):

1. ``hybrid_decoder_sparsity`` (default on): ``w_i`` is the live atom norm, so the penalty's gradient reaches the
   decoder (sparsity "on the decoder side"). Off: ``w_i`` enters as a constant (detached), the penalty acts on the
   gate alone, and the atoms must be held at unit norm (``w_i = 1``) — see *Scale invariance* below.
2. ``hybrid_free_decoder`` (default on): no unit-norm projection of the atoms (the trainer does not renormalise).
   Off: the trainer removes the gradient along each atom and renormalises after every step.
3. ``hybrid_sparsity_norm`` (default ``"tanh"``): ``"l1"`` is the gated paper's ``Σ m_i``; ``"tanh"`` is the smooth
   L0 proxy ``Σ tanh(c · m_i)`` (c = ``hybrid_tanh_scale``), which counts a firing latent as ≈ 1 whatever its size
   once ``c · m_i ≫ 1`` and so does not shrink large activations; ``"l0"`` is the exact count
   ``Σ H(π_gate,i · w_i)`` (= ``Σ H(π_gate,i)``, as ``w_i > 0``) trained with a rectangle-kernel straight-through
   estimator ``∂H(z)/∂z := K(z/ε)/ε`` (ε = ``jump_bandwidth``) on ``z = π_gate,i · w_i``, as in JumpReLU SAEs.
4. ``hybrid_aux_live_decoder`` (default on): the auxiliary reconstruction from ``a`` uses the live decoder
   (gradients reach ``W_dec, b_dec``) instead of a frozen copy. The gated-SAE authors note that once the penalty
   includes decoder norms, the decoder must be either live in the auxiliary term or frozen in the penalty, or the two
   terms pull the norms against each other.

**Scale invariance (issue 16).** Scaling latent i's encoder row, ``b_enc,i`` and ``b_mag,i`` by ``1/c`` and its atom
by ``c`` leaves the support, the reconstruction and both auxiliary reconstructions unchanged, and scales ``a_i`` by
``1/c`` and ``w_i`` by ``c``, so ``m_i`` — and every measure above — is unchanged: no setting can lower its loss by
moving scale between encoder and decoder. With switches 1 and 2 on the training signal is also orbit-neutral (every
term sees the live decoder, and the L0 STE acts on the invariant ``π_gate · w``), so the optimiser is not pushed
along the rescaling either. Two consequences the old code got wrong, measured in ``tests/sae/test_invariance.py``:

* The former ``"l0"`` measure was ``Σ H(π_gate,i) · w_i``: the count times the atom norm, with the STE on
  ``π_gate`` alone. Shrinking the atoms ×10 and growing the encoder ×10 kept the reconstruction and the L0 and cut
  that penalty ×10, and the training signal pushed the decoder norms down. The count is scale-free already; the norm
  now only sets the units in which the STE's bandwidth is measured.
* A penalty on ``a_i`` alone (switch 1 off) with free atoms (switch 2 on) is lowered by the same move, for any
  measure (for ``"l0"`` the STE's bandwidth, in encoder units, still drags the training). That combination is
  refused by :class:`~cxrlens.sae.base.SAEConfig`; switch 1 off requires switch 2 off. With unit-norm atoms the
  weight is 1 and its gradient lies along the atom, which the projection removes, so switches 1 on and off train
  identically there: the two switches are one choice (free atoms with a norm-weighted penalty, or unit atoms).
* With free atoms and a frozen decoder in the auxiliary term (switch 4 off) the loss is still invariant, but the
  auxiliary gradient reaches the encoder and not the decoder, so training drifts along the rescaling without
  gaining anything: the gated authors' "frozen in one place but not the other" (kept as an ablation row).

Choices the paper leaves open, and what this module does (documented so a reader can disagree):

* **Exact equations.** This implementation was written from the paper's description of section 4.1 as summarised
  in the project issue; the full equations could not be re-read (only the abstract was retrievable). Switch (3)'s
  default ``tanh`` and its scale c = 4 (normalised units, where a typical firing magnitude is ≈ 1) are therefore
  our choice; ``"l0"`` and ``"l1"`` are offered and ablated.
* **Where decoder norms enter the measure**: inside it (``tanh(c · a_i · w_i)``, ``H(π_gate,i · w_i)``), which is
  what makes every measure invariant to moving scale between ``a`` and the atom.
* **Input normalisation**: the common one of :class:`cxrlens.sae.base.SAE` (``E‖x‖² = D``), needed for any fixed λ.
* **Initialisation**: ``W_enc = W_decᵀ`` with unit rows, ``r_mag = b_mag = b_gate = 0``, ``b_dec`` at the geometric
  median (trainer default), as for every cxrlens SAE.
* **λ warm-up**: the trainer's ``sparsity_warmup_steps`` (linear from 0), also unspecified by the paper.
* **Expansion**: ×64 is the default width (:func:`cxrlens.sae.registry.default_latents`), not a constant of the
  architecture.
"""

from __future__ import annotations

import torch

from cxrlens.sae.base import SAEConfig
from cxrlens.sae.gated import GatedSAE

__all__ = ["HybridSAE"]


class _GateStep(torch.autograd.Function):
    """``H(z)`` with the rectangle-kernel pseudo-derivative ``K(z/ε)/ε`` for z."""

    @staticmethod
    def forward(ctx, z, eps: float):  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.eps = eps
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * (z.abs() < ctx.eps / 2).to(z.dtype) / ctx.eps, None


def gate_step(z: torch.Tensor, eps: float) -> torch.Tensor:
    return _GateStep.apply(z, eps)


class HybridSAE(GatedSAE):
    """Gated SAE with the SAE-Rad switches (module docstring); atoms unit-norm only when the decoder is not free."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.unit_norm_decoder = not cfg.hybrid_free_decoder

    def _sparsity(self, gate_acts: torch.Tensor, pi_gate: torch.Tensor) -> torch.Tensor:
        """The switched measure of the decoded magnitudes ``a · w`` (gate_acts, pi_gate: (B, L)), mean over tokens."""
        cfg = self.cfg
        w_L = self.decoder_norms()
        if not cfg.hybrid_decoder_sparsity:  # unit atoms (validated): w = 1, a constant of the penalty
            w_L = w_L.detach()
        if cfg.hybrid_sparsity_norm == "l0":
            return gate_step(pi_gate * w_L, cfg.jump_bandwidth).sum(-1).mean()
        m_BL = gate_acts * w_L
        if cfg.hybrid_sparsity_norm == "tanh":
            m_BL = torch.tanh(cfg.hybrid_tanh_scale * m_BL)
        return m_BL.sum(-1).mean()

    def _aux_decoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.hybrid_aux_live_decoder:
            return self.W_dec, self.b_dec
        return super()._aux_decoder()
