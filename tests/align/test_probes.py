"""Probes: stratified subsamples keep both classes; informative features beat noise; the summary has the means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlens.align.probes import ProbeConfig, learning_curve_figure, run_probes, stratified_subsample, summarize_probes
from cxrlens.errors import BadInputError


def test_stratified_subsample_keeps_both_classes() -> None:
    y = np.array([1] * 10 + [0] * 990)
    sub = stratified_subsample(y, 0.01, seed=0)
    assert y[sub].sum() == 1 and (y[sub] == 0).sum() == 10
    assert len(np.unique(sub)) == len(sub)
    assert not np.array_equal(sub, stratified_subsample(y, 0.01, seed=1))
    np.testing.assert_array_equal(stratified_subsample(y, 1.0, 3), np.arange(1000))


def test_probes_rank_informative_features_above_noise(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 1200
    y = (rng.random(n) < 0.2).astype(float)
    signal = y[:, None] * 1.5 + rng.normal(size=(n, 8))
    noise = rng.normal(size=(n, 8))
    labels = pd.DataFrame({"Cardiomegaly": y, "Edema": np.where(rng.random(n) < 0.1, -1.0, y)})
    split = np.array(["train"] * 800 + ["test"] * 400)
    cfg = ProbeConfig("x", fractions=(0.01, 0.1, 1.0), seeds=3)
    long = run_probes({"signal": signal, "noise": noise}, labels, split, cfg, show_progress=False)
    assert len(long) == 2 * 2 * 3 * 3
    summary = summarize_probes(long).set_index(["features", "finding", "fraction"])
    assert summary.loc[("signal", "mean", 1.0), "auc_mean"] > 0.8
    assert abs(summary.loc[("noise", "mean", 1.0), "auc_mean"] - 0.5) < 0.1
    assert summary.loc[("signal", "mean", 0.1), "auc_mean"] > summary.loc[("noise", "mean", 0.1), "auc_mean"]
    assert (long[long.fraction == 0.01]["n_pos_train"] >= 1).all()
    png = learning_curve_figure(summarize_probes(long), tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_probe_bad_inputs() -> None:
    with pytest.raises(BadInputError, match="fractions"):
        ProbeConfig("x", fractions=(0.0,))
    labels = pd.DataFrame({"Edema": [1.0, 0.0, 1.0, 0.0]})
    with pytest.raises(BadInputError, match="rows"):
        run_probes({"a": np.zeros((3, 2))}, labels, ["train"] * 4, ProbeConfig("x"), show_progress=False)
    with pytest.raises(BadInputError, match="positives"):
        run_probes({"a": np.zeros((4, 2))}, labels, ["train"] * 4, ProbeConfig("x"), show_progress=False)
