"""Random-forest permutation importance: a planted signal ranks at the top."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.analysis.importance import ImportanceConfig, feature_importance, importance_plot, pool_maps

CFG = ImportanceConfig(n_trees=60, n_repeats=8)


def test_planted_maps_rank_top_after_pooling(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, c = 600, 12
    maps = rng.normal(size=(n, c, 4, 4))
    label = rng.integers(0, 2, size=n)
    maps[:, 7] += 1.5 * label[:, None, None]  # map 7 carries the label strongly
    maps[:, 3, :2, :2] += 1.0 * label[:, None, None]  # map 3 weakly, in one corner
    res = feature_importance(pool_maps(maps), label, names=[f"map_{i}" for i in range(c)], cfg=CFG)
    assert list(res.table["name"][:2]) == ["map_7", "map_3"]
    top = res.table.iloc[0]
    assert top["ci_low"] > 0  # the interval excludes zero
    noise = res.table[~res.table["name"].isin(["map_7", "map_3"])]
    assert (noise["mean"] < top["mean"] / 5).all()
    assert res.task == "classification" and res.heldout_score > res.baseline_score + 0.2
    png = importance_plot(res, tmp_path / "imp.png", title="planted")
    assert png.stat().st_size > 1000


def test_regression_target_and_given_split() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6))
    y = 2 * x[:, 4] + 0.1 * rng.normal(size=400)
    train = np.arange(400) < 300
    res = feature_importance(x, y, train_mask_N=train, cfg=CFG)
    assert res.task == "regression" and res.metric == "r2"
    assert res.table["name"].iloc[0] == "dim_4" and res.n_test == 100
    assert res.heldout_score > 0.8


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="n = len"):
        feature_importance(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="maps"):
        pool_maps(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="repeats"):
        ImportanceConfig(n_repeats=1)
