"""Zero-shot AUC intervals resample studies (images of a study kept together) when study ids are given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cxrlens.align.zeroshot import PROMPTS, ZeroShotConfig, auc, bootstrap_auc, mean_auc_interval, zero_shot


def _studies(n_studies: int, per_study: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, study ids): every image of a study repeats its study's label and score."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_studies)
    s = y * 0.7 + rng.normal(size=n_studies)
    ids = np.array([f"S{i}" for i in range(n_studies)])
    return np.repeat(y, per_study), np.repeat(s, per_study), np.repeat(ids, per_study)


def test_bootstrap_auc_by_study_is_wider_on_duplicated_images() -> None:
    y, s, groups = _studies(150, 4)
    point, lo, hi = bootstrap_auc(y, s, n_boot=800, seed=0)
    p2, slo, shi = bootstrap_auc(y, s, n_boot=800, seed=0, groups=groups, unit="study")
    assert point == p2 == pytest.approx(roc_auc_score(y, s))
    assert slo <= point <= shi
    assert (shi - slo) / (hi - lo) > 1.6  # ≈ √4: the image bootstrap counts each study 4 times as evidence
    assert bootstrap_auc(y, s, n_boot=800, seed=0, groups=groups) == (p2, slo, shi)  # seeded


def test_zero_shot_table_names_the_unit_and_uses_the_study_groups() -> None:
    finding = "Cardiomegaly"
    pos_prompts = set(PROMPTS[finding][0])
    y, s, groups = _studies(60, 2, seed=1)

    def embed(texts: list[str]) -> np.ndarray:  # positive prompts → e0, negative → e1
        return np.array([[1.0, 0.0] if t in pos_prompts else [0.0, 1.0] for t in texts], dtype=np.float32)

    angle = 1 / (1 + np.exp(-s))  # image embedding leans towards e0 as the score grows
    img = torch.tensor(np.stack([angle, 1 - angle], axis=1), dtype=torch.float32)
    labels = pd.DataFrame({finding: y.astype(float)})
    cfg = ZeroShotConfig("run", findings=(finding,), n_boot=300, seed=0)
    by_image = zero_shot(img, labels, embed, None, cfg).iloc[0]
    by_study = zero_shot(img, labels, embed, None, cfg, groups=groups, unit="study").iloc[0]
    assert by_image["ci_unit"] == "image" and by_image["ci_units"] == 120
    assert by_study["ci_unit"] == "study" and by_study["ci_units"] == 60
    assert by_image["auc"] == by_study["auc"]
    expected = bootstrap_auc(y, img.numpy()[:, 0] - img.numpy()[:, 1], n_boot=300, seed=0, groups=groups)
    assert (by_study["ci_low"], by_study["ci_high"]) == pytest.approx(expected[1:], abs=1e-6)
    assert by_study["ci_high"] - by_study["ci_low"] > by_image["ci_high"] - by_image["ci_low"]


def test_mean_auc_interval_resamples_studies_once_for_all_findings():
    rng = np.random.default_rng(0)
    n = 400
    labels = pd.DataFrame({"A": rng.integers(0, 2, n).astype(float), "B": rng.integers(0, 2, n).astype(float)})
    labels.loc[:9, "B"] = -1.0  # uncertain: left out of B only
    scores = pd.DataFrame({"A": labels["A"] + rng.normal(0, 0.8, n), "B": rng.normal(0, 1, n)})
    groups = np.repeat(np.arange(n // 2), 2)  # two images per study
    est, lo, hi = mean_auc_interval(labels, scores, ["A", "B"], groups=groups, n_boot=300, seed=1)
    keep = labels["B"] != -1
    expected = (
        auc(labels["A"].to_numpy(bool), scores["A"].to_numpy())
        + auc(labels.loc[keep, "B"].to_numpy(bool), scores.loc[keep, "B"].to_numpy())
    ) / 2
    assert est == pytest.approx(expected)
    assert lo < est < hi and hi - lo < 0.15
    perfect = pd.DataFrame({"A": labels["A"], "B": labels["B"]})
    assert mean_auc_interval(labels, perfect, ["A", "B"], n_boot=50)[1:] == (1.0, 1.0)
