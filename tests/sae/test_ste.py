"""Straight-through estimators (JumpReLU, L0 step, the hybrid's gate L0) and the sparse TopK gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrlens.sae import build_sae
from cxrlens.sae.hybrid import gate_step
from cxrlens.sae.jumprelu import jumprelu, step
from tests.sae.conftest import small_config

EPS = 0.05


def _uniform_z(n: int = 200_000) -> torch.Tensor:
    return torch.linspace(0.0, 2.0, n, dtype=torch.float64)  # density 1/2 on [0, 2]


def test_jumprelu_threshold_gradient_matches_expected_loss_derivative():
    # d/dθ E_z[z·H(z − θ)] = −θ·p(θ); with z uniform on [0, 2] (p = 1/2) and θ = 0.8 this is −0.4
    z = _uniform_z()
    theta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    jumprelu(z, theta, EPS).mean().backward()
    assert abs(float(theta.grad) - (-0.8 * 0.5)) < 2e-3


def test_step_threshold_gradient_matches_expected_l0_derivative():
    # d/dθ E_z[H(z − θ)] = −p(θ) = −1/2, and no gradient reaches z through the step
    z = _uniform_z().requires_grad_(True)
    theta = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    step(z, theta, EPS).mean().backward()
    assert abs(float(theta.grad) + 0.5) < 2e-3
    assert float(z.grad.abs().max()) == 0.0


def test_ste_pseudo_derivative_formula_per_element():
    z = torch.tensor([0.50, 0.79, 0.81, 0.824, 0.826, 1.5], dtype=torch.float64)
    theta = torch.full((6,), 0.8, dtype=torch.float64, requires_grad=True)
    jumprelu(z, theta, EPS).sum().backward()
    inside = ((z - 0.8).abs() < EPS / 2).double()
    torch.testing.assert_close(theta.grad, -(0.8 / EPS) * inside)
    assert inside.tolist() == [0, 1, 1, 1, 0, 0]


def test_jumprelu_z_gradient_is_exact_off_the_jump():
    theta = torch.full((5,), 0.3, dtype=torch.float64)
    z = torch.tensor([-1.0, 0.1, 0.5, 0.9, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: jumprelu(t, theta, EPS), (z,))


def test_gate_step_gradient_matches_expected_count_derivative():
    # E_z[H(z + s)] for z uniform on [-1, 1] (p = 1/2): d/ds at s = 0 is p(0) = 1/2
    z = torch.linspace(-1.0, 1.0, 200_001, dtype=torch.float64)
    s = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    gate_step(z + s, EPS).mean().backward()
    assert abs(float(s.grad) - 0.5) < 2e-3


def test_topk_sparse_gradients_equal_dense_reference():
    torch.manual_seed(0)
    sae = build_sae(small_config("topk", d=12, n_latents=40, k=5)).double()
    x = torch.randn(30, 12, dtype=torch.float64)
    sae.init_b_dec(x, "mean")
    sae.loss(x)["loss"].backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    xn = x * sae.input_scale
    pre = (xn - sae.b_dec) @ sae.W_enc.t() + sae.b_enc
    v, i = pre.topk(5, dim=-1)
    codes = torch.zeros_like(pre).scatter(1, i, F.relu(v))
    ((codes @ sae.W_dec + sae.b_dec - xn) ** 2).sum(-1).mean().backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(sparse_grads[n], p.grad, atol=1e-12, rtol=1e-10, msg=lambda m, n=n: f"{n}: {m}")
