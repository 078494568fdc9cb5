"""Feature statistics: AUC equals scikit-learn, top images are right, the confound check catches a planted confound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrlens.interpret.features import auc_matrix, binarise_label_table, confound_check, feature_stats, top_images


def test_auc_matches_sklearn_with_ties_and_sparsity() -> None:
    rng = np.random.default_rng(0)
    codes = rng.exponential(1, (300, 37)) * (rng.random((300, 37)) < 0.3)  # mostly zeros → many ties
    codes[:, 5] = np.round(codes[:, 5])
    y = rng.random((300, 4)) < [0.1, 0.5, 0.0, 0.3]
    got = auc_matrix(codes, y, chunk=8)
    for f in range(37):
        for k in (0, 1, 3):
            assert got[f, k] == pytest.approx(roc_auc_score(y[:, k], codes[:, f]), abs=1e-12)
    assert np.isnan(got[:, 2]).all()  # a label without positives has no AUC


def test_stats_and_top_images() -> None:
    codes = np.array([[0, 1, 0], [2, 0, 0], [3, 5, 0], [1, 0, 0]], np.float32)
    st = feature_stats(codes)
    assert st["n_active"].tolist() == [3, 2, 0] and st["mean_active"].tolist() == [2.0, 3.0, 0.0]
    top = top_images(codes, k=3)
    assert top[0].tolist() == [2, 1, 3] and top[1].tolist() == [2, 0, -1] and top[2].tolist() == [-1, -1, -1]


def test_binarise_policies() -> None:
    labels = pd.DataFrame({"A": [1.0, 0.0, -1.0, np.nan]})
    assert binarise_label_table(labels, "positive")["A"].tolist() == [1, 0, 1, 0]
    assert binarise_label_table(labels, "negative")["A"].tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError):
        binarise_label_table(labels, "ignore")


def test_confound_check_flags_a_feature_that_tracks_the_cooccurring_label() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    b = rng.random(n) < 0.3  # e.g. "Support Devices"
    a = np.where(b, rng.random(n) < 0.8, rng.random(n) < 0.05)  # "Edema", mostly when B is present
    c = rng.random(n) < 0.2  # unrelated label
    y = pd.DataFrame({"A": a, "B": b, "C": c}).astype(float)
    codes = np.zeros((n, 2), np.float32)
    codes[:, 0] = a * rng.uniform(1, 2, n) + rng.normal(0, 0.1, n).clip(0)  # truly encodes A
    codes[:, 1] = b * rng.uniform(1, 2, n) + rng.normal(0, 0.1, n).clip(0)  # encodes B, looks like A too
    # The B-feature's best label would be B itself; hide that entry so that, as when B is under-reported, the
    # feature looks like an A-feature. The check must still see through it.
    auc = auc_matrix(codes, y.to_numpy())
    auc[1, 1] = np.nan
    table = confound_check(codes, y, auc=auc, factors=y).set_index("feature")
    assert table.loc[0, "best_label"] == "A" and table.loc[0, "cooccurring_label"] == "B"
    assert table.loc[0, "verdict"] == "associated" and table.loc[0, "auc_without_cooccurring"] > 0.9
    assert table.loc[1, "best_label"] == "A" and table.loc[1, "verdict"] == "confounded"
    assert table.loc[1, "auc_without_cooccurring"] < 0.65 and table.loc[0, "factor_auc"] > 0.9


def test_confound_check_calls_a_chance_level_best_label_no_association() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    y = pd.DataFrame({k: rng.random(n) < 0.2 for k in "ABCDEFGHIJKLMN"}).astype(float)
    codes = rng.random((n, 3)).astype(np.float32)  # noise: the best of 14 AUCs is a little above 0.5
    table = confound_check(codes, y)
    assert (table["auc"] > 0.5).all() and (table["auc"] < 0.6).all()
    assert set(table["verdict"]) == {"none"}
    assert set(confound_check(codes, y, min_auc=0.5)["verdict"]) - {"none"}  # the old rule called them associated
