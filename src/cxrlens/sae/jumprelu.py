"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping ahead"): per-latent thresholds learned through STEs.

``z = W_enc (x − b_dec) + b_enc``; ``codes = JumpReLU_θ(z) = z · H(z − θ)`` with ``θ = exp(log_threshold) > 0``;
``loss = ‖x − x̂‖² + λ Σ_i H(z_i − θ_i)`` (an L0 penalty). H has zero derivative almost everywhere, so θ learns
through straight-through estimators built on the rectangle kernel ``K(u) = 1[|u| < ½]`` with bandwidth ε:

* ``∂/∂θ JumpReLU_θ(z) := −(θ/ε) K((z − θ)/ε)``  (and ``∂/∂z = H(z − θ)``, the true derivative off the jump);
* ``∂/∂θ H(z − θ) := −(1/ε) K((z − θ)/ε)``  (and no gradient to z through the step).

These equal the exact derivatives of the kernel-smoothed functions (``H`` convolved with ``K_ε``), which is what
the tests check numerically. Atoms are kept unit-norm, as in the paper.

**Scale invariance.** Scaling latent i's encoder row and ``b_enc,i`` by ``1/c``, its threshold by ``1/c``
(``log_threshold − log c``) and its atom by ``c`` leaves the support, the reconstruction and the L0 penalty unchanged:
the objective cannot be lowered by moving scale between code and atom, with or without a constraint. The unit-norm
atoms are kept for another reason: the bandwidth ε is in pre-activation units, and fixing the atoms' scale fixes
what ε means (a free decoder would let it drift).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cxrlens.sae.base import SAE, SAEConfig

__all__ = ["JumpReLUSAE", "jumprelu", "step"]


def _kernel(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    return ((z - theta).abs() < eps / 2).to(z.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, theta, eps: float):  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = grad * (z > theta).to(z.dtype)
        grad_theta = -(theta / eps) * _kernel(z, theta, eps) * grad
        grad_theta = grad_theta.sum_to_size(theta.shape)
        return grad_z, grad_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, theta, eps: float):  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        grad_theta = (-(1.0 / ctx.eps) * _kernel(z, theta, ctx.eps) * grad).sum_to_size(theta.shape)
        return torch.zeros_like(z), grad_theta, None


def jumprelu(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    """``z · H(z − θ)`` with the rectangle-kernel pseudo-derivative for θ (``theta`` broadcasts against ``z``)."""
    return _JumpReLU.apply(z, theta, eps)


def step(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    """``H(z − θ)`` with the rectangle-kernel pseudo-derivative for θ."""
    return _Step.apply(z, theta, eps)


class JumpReLUSAE(SAE):
    unit_norm_decoder = True

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.n_latents,), math.log(cfg.jump_threshold_init)))

    def encode_n(self, x_n):
        z = self.pre_acts(x_n)
        return z * (z > self.log_threshold.exp()).to(z.dtype)

    def _train_terms(self, x_n, sparsity_scale: float):
        z = self.pre_acts(x_n)
        theta = self.log_threshold.exp()
        eps = self.cfg.jump_bandwidth
        codes = jumprelu(z, theta, eps)
        x_hat = self.decode_n(codes)
        l0 = step(z, theta, eps).sum(-1).mean()
        return x_hat, codes.detach() != 0, {"sparsity": self.cfg.sparsity_coeff * sparsity_scale * l0}
