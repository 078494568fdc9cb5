"""The one linear-probe AUC: label policies, planted signal vs noise, scaling variants, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.probe import ProbeFit, fit_linear_probe, linear_probe_auc, probe_targets


def test_label_policies_differ_only_on_not_mentioned() -> None:
    y = np.array([1.0, 0.0, -1.0, np.nan])
    neg = probe_targets(y, missing="negative")
    drop = probe_targets(y, missing="dropped")
    assert neg[:2].tolist() == [1.0, 0.0] and np.isnan(neg[2]) and neg[3] == 0.0
    assert drop[:2].tolist() == [1.0, 0.0] and np.isnan(drop[2]) and np.isnan(drop[3])
    with pytest.raises(ValueError, match="missing"):
        probe_targets(y, missing="positive")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fit",
    [
        ProbeFit(),
        ProbeFit(C=0.5, class_weight="balanced", scaling="none", max_iter=500),
        ProbeFit(solver="liblinear", scaling="no-centre"),
        ProbeFit(drop_constant=True),
    ],
)
def test_planted_signal_scores_high_and_noise_near_chance(fit: ProbeFit) -> None:
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.3).astype(float)
    x = np.c_[y + 0.5 * rng.standard_normal(n), rng.standard_normal((n, 5)), np.ones(n)]
    fit_rows, score_rows = np.arange(n) < 400, np.arange(n) >= 400
    good = linear_probe_auc(x[fit_rows], y[fit_rows], x[score_rows], y[score_rows], fit)
    noise = linear_probe_auc(x[fit_rows, 1:6], y[fit_rows], x[score_rows, 1:6], y[score_rows], fit)
    assert good > 0.9 and abs(noise - 0.5) < 0.12


def test_constant_features_give_chance_and_bad_c_is_refused() -> None:
    x = np.ones((20, 3))
    y = np.r_[np.ones(10), np.zeros(10)]
    assert linear_probe_auc(x, y, x, y, ProbeFit(drop_constant=True)) == 0.5
    assert (fit_linear_probe(x, y, ProbeFit(drop_constant=True)).decision(x) == 0).all()
    with pytest.raises(ValueError, match="positive"):
        ProbeFit(C=0)
