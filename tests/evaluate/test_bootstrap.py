"""The cluster bootstrap: units move with their images, intervals widen on clustered data (and cover as they should),
weighted AUC equals scikit-learn, undefined resamples are redrawn, bad groups are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from cxrlens.evaluate.bootstrap import (
    bootstrap_weights,
    cluster_bootstrap,
    unit_codes,
    units_phrase,
    weighted_auc,
)


def _weighted_mean(y: np.ndarray):
    def stat(w: np.ndarray) -> np.ndarray:
        return (w @ y) / w.sum(1)

    return stat


def _clustered(rng: np.random.Generator, n_studies: int, per_study: int, p: float = 0.4) -> tuple[np.ndarray, ...]:
    """One outcome per study shared by all its images (as one reference report is shared by a study's images)."""
    outcome = (rng.random(n_studies) < p).astype(float)
    groups = np.repeat([f"S{i}" for i in range(n_studies)], per_study)
    return np.repeat(outcome, per_study), groups


def test_images_of_a_unit_always_move_together() -> None:
    codes, n_units = unit_codes(["b", "a", "b", "c", "a", "b"], 6)
    assert n_units == 3 and codes.tolist() == [1, 0, 1, 2, 0, 1]
    w = bootstrap_weights(codes, n_units, 500, np.random.default_rng(0))
    assert w.shape == (500, 6) and w.dtype == np.int64
    for members in ([0, 2, 5], [1, 4]):  # same study → same weight in every resample
        assert (w[:, members] == w[:, members[:1]]).all()
    per_unit = np.stack([w[:, 1], w[:, 0], w[:, 3]], axis=1)  # units a, b, c
    assert (per_unit.sum(1) == 3).all()  # n_units draws per resample
    assert ((w == 0).any(1)).mean() > 0.5  # units do drop out
    assert unit_codes(None, 4)[1] == 4


def test_clustered_case_study_interval_widens_by_about_root_cluster_size() -> None:
    """4 images per study with one shared outcome: the image bootstrap treats 800 correlated images as independent
    and is ~√4 = 2× too narrow; the study bootstrap is not. With one image per study both agree."""
    rng = np.random.default_rng(0)
    y, groups = _clustered(rng, 200, 4)
    stat = _weighted_mean(y)
    image = cluster_bootstrap(stat, len(y), n_boot=2000, seed=1)
    study = cluster_bootstrap(stat, len(y), groups=groups, unit="study", n_boot=2000, seed=1)
    assert image.unit == "image" and image.n_units == 800
    assert study.unit == "study" and study.n_units == 200 and study.n_items == 800
    assert study.estimate == image.estimate == pytest.approx(y.mean())
    ratio = (study.high - study.low) / (image.high - image.low)
    assert 1.6 < ratio < 2.5, ratio

    y1, g1 = _clustered(rng, 800, 1)  # singleton studies: the two bootstraps are the same procedure
    a = cluster_bootstrap(_weighted_mean(y1), 800, n_boot=2000, seed=2)
    b = cluster_bootstrap(_weighted_mean(y1), 800, groups=g1, unit="study", n_boot=2000, seed=2)
    assert 0.85 < (b.high - b.low) / (a.high - a.low) < 1.15


def test_clustered_case_study_interval_covers_the_truth_image_interval_does_not() -> None:
    """Coverage of the true mean over 120 simulated clustered test sets: ~95 % for studies, far below for images."""
    rng = np.random.default_rng(7)
    p, hits_image, hits_study = 0.4, 0, 0
    reps = 120
    for r in range(reps):
        y, groups = _clustered(rng, 150, 4, p)
        stat = _weighted_mean(y)
        image = cluster_bootstrap(stat, len(y), n_boot=400, seed=r)
        study = cluster_bootstrap(stat, len(y), groups=groups, unit="study", n_boot=400, seed=r)
        hits_image += image.low <= p <= image.high
        hits_study += study.low <= p <= study.high
    assert hits_study / reps >= 0.87, hits_study / reps
    assert hits_image / reps <= 0.80, hits_image / reps


def test_paired_gap_interval_and_record() -> None:
    rng = np.random.default_rng(3)
    a, groups = _clustered(rng, 100, 2, 0.6)
    b = np.where(rng.random(len(a)) < 0.2, 1 - a, a)  # b agrees with a 80 % of the time

    def gap(w: np.ndarray) -> np.ndarray:
        return _weighted_mean(a)(w) - _weighted_mean(b)(w)

    res = cluster_bootstrap(gap, len(a), groups=groups, unit="study", n_boot=500, seed=0)
    assert res.low <= res.estimate <= res.high
    assert res.estimate == pytest.approx(a.mean() - b.mean())
    d = res.to_dict()
    assert d["bootstrap_unit"] == "study" and d["n_units"] == 100 and d["n_items"] == 200 and d["n_boot"] == 500
    assert d["ci95"] == [res.low, res.high]
    assert cluster_bootstrap(gap, len(a), groups=groups, unit="study", n_boot=500, seed=0) == res  # seeded
    same = cluster_bootstrap(lambda w: gap(w) * 0, len(a), groups=groups, unit="study", n_boot=50)
    assert same.low == same.high == 0.0 and same.p_le_0 == 1.0
    none = cluster_bootstrap(gap, len(a), groups=groups, unit="study", n_boot=0)
    assert none.ci() is None and none.n_boot == 0 and none.estimate == res.estimate
    assert units_phrase(787, "study") == "787 studies" and units_phrase(1, "study") == "1 study"


def test_undefined_resamples_are_redrawn_and_counted() -> None:
    y = np.zeros(40)
    y[:2] = 1  # two positive studies of forty: many resamples have no positive
    s = np.linspace(0, 1, 40)
    res = cluster_bootstrap(lambda w: weighted_auc(y, s, w), 40, n_boot=300, seed=0)
    assert res.n_boot == 300 and np.isfinite(res.low)
    never = cluster_bootstrap(lambda w: np.full(len(w), np.nan), 10, n_boot=20, seed=0)
    assert never.n_boot == 0 and never.ci() is None


def test_bad_groups_and_units_are_refused() -> None:
    stat = _weighted_mean(np.ones(3))
    with pytest.raises(ValueError, match="no group label"):
        cluster_bootstrap(stat, 3, groups=["a", None, "b"], unit="study")
    with pytest.raises(ValueError, match="2 group labels for 3 items"):
        cluster_bootstrap(stat, 3, groups=["a", "b"], unit="study")
    with pytest.raises(ValueError, match="name the unit"):
        cluster_bootstrap(stat, 3, groups=["a", "b", "c"])
    with pytest.raises(ValueError, match="unit must be one of"):
        cluster_bootstrap(stat, 3, groups=["a", "b", "c"], unit="hospital")


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 25).flatmap(
        lambda n: st.tuples(*(st.lists(st.integers(0, k), min_size=n, max_size=n) for k in (1, 4, 3)))
    )
)
def test_weighted_auc_equals_sklearn_and_the_expanded_resample(case) -> None:
    y, s, w = (np.asarray(x) for x in case)
    out = weighted_auc(y, s.astype(float), w[None])[0]
    kept = y[w > 0]
    if len(set(kept.tolist())) < 2:  # a resample with one class only: undefined
        assert np.isnan(out)
        return
    assert out == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    rows = np.repeat(np.arange(len(y)), w)
    assert out == pytest.approx(roc_auc_score(y[rows], s[rows]), abs=1e-12)
