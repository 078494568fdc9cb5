"""TCAV: a concept that drives the label is significant, a random concept is not; BH and config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrlens.analysis.tcav import LayerProbe, TCAVConfig, benjamini_hochberg, run_tcav, tcav_plot


def _images(n: int, blob: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = 0.3 * torch.rand(n, 1, 16, 16, generator=gen)
    for i in torch.nonzero(blob).flatten().tolist():
        r, c = torch.randint(1, 6, (2,), generator=gen).tolist()
        x[i, 0, r : r + 4, c : c + 4] += 0.8  # a bright square in the upper-left quadrant
    return x


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Generator]:
    torch.set_num_threads(1)  # tiny tensors: threads only contend on the shared CPU
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 2),
    )
    y = torch.rand(512, generator=gen) < 0.5
    x = _images(512, y, gen)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(100):
        idx = torch.arange(step * 64, step * 64 + 64) % 512
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (model(x).argmax(1) == y.long()).float().mean().item()
    assert acc > 0.95
    return model, gen


def test_driving_concept_significant_random_concept_not(trained, tmp_path) -> None:
    model, gen = trained
    probe = LayerProbe(model, "3")  # after the second conv's ReLU
    positives = _images(60, torch.ones(60, dtype=torch.bool), gen)
    pool = _images(400, torch.zeros(400, dtype=torch.bool), gen)
    concepts = {"bright-square": _images(80, torch.ones(80, dtype=torch.bool), gen), "random-set": pool[:80]}
    table = run_tcav(probe, {"finding": (1, positives)}, concepts, pool[80:], TCAVConfig(n_random=20), set_size=30)
    row = table.set_index("concept")
    assert row.loc["bright-square", "significant"] and row.loc["bright-square", "tcav_mean"] > 0.8
    assert not row.loc["random-set", "significant"]
    assert row.loc["bright-square", "cav_accuracy"] > 0.9 and row.loc["bright-square", "cav_ok"]
    assert row.loc["random-set", "cav_accuracy"] < 0.7  # a random set is not separable from random sets
    assert len(row.loc["bright-square", "scores"]) == 20 and len(row.loc["bright-square", "null_scores"]) == 20
    assert tcav_plot(table, tmp_path / "tcav.png").stat().st_size > 1000


def test_benjamini_hochberg_known_values() -> None:
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    # sorted p 0.01, 0.03, 0.04, 0.5 → p·n/rank 0.04, 0.06, 0.0533, 0.5 → running minimum from the top
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5], rtol=1e-12)


def test_config_and_layer_errors(trained) -> None:
    with pytest.raises(ValueError, match="≥ 20"):
        TCAVConfig(n_random=5)
    with pytest.raises(ValueError, match="no layer"):
        LayerProbe(trained[0], "nope")


def test_welch_matches_scipy_and_handles_constant_samples() -> None:
    from scipy.stats import ttest_ind

    from cxrlens.analysis.tcav import welch_t_test

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.1, 20), rng.normal(0.5, 0.2, 20)
    ref = ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(welch_t_test(a, b), (ref.statistic, ref.pvalue), rtol=1e-10)
    t_stat, p = welch_t_test(np.ones(20), rng.normal(0.5, 0.1, 20))
    assert t_stat > 10 and p < 1e-10
    assert welch_t_test(np.ones(5), np.ones(5)) == (0.0, 1.0)


class _Tokens(torch.nn.Module):
    """(N, T·D) → tokens (N, T, D) → a nonlinear logit: a token layer to probe with pool="mean"."""

    def __init__(self, t: int = 5, d: int = 4) -> None:
        super().__init__()
        self.t, self.d = t, d
        self.tokens = torch.nn.Linear(d, d)
        torch.nn.init.eye_(self.tokens.weight)
        torch.nn.init.zeros_(self.tokens.bias)
        self.w = torch.nn.Parameter(torch.randn(d, 2, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tok = self.tokens(x.view(-1, self.t, self.d))
        return torch.tanh(tok @ self.w).sum(1)


def test_mean_pooled_probe_gives_token_means_and_the_derivative_of_adding_the_cav_to_every_token() -> None:
    model = _Tokens()
    x = torch.randn(6, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    probe = LayerProbe(model, "tokens", pool="mean")
    acts = probe.activations(x)
    np.testing.assert_allclose(acts, x.view(6, 5, 4).mean(1).double().numpy(), rtol=1e-6)
    grads = probe.gradients(x, 1)
    assert grads.shape == (6, 4)
    v = np.array([0.3, -0.2, 0.5, 0.1])
    eps = 1e-3
    handle = model.tokens.register_forward_hook(lambda _m, _i, out: out + eps * torch.tensor(v, dtype=out.dtype))
    with torch.no_grad():
        shifted = model(x)  # the layer's output with eps·v added to every token
    handle.remove()
    with torch.no_grad():
        fd = ((shifted - model(x))[:, 1] / eps).double().numpy()
    np.testing.assert_allclose(grads @ v, fd, rtol=2e-2, atol=1e-3)
    assert LayerProbe(model, "tokens").activations(x).shape == (6, 20)  # flatten stays the default
    with pytest.raises(ValueError, match="pool"):
        TCAVConfig(pool="max")
