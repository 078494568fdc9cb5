"""NDCG equals sklearn's, AUC equals sklearn's, bootstrap CIs bracket the estimate, faiss equals brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from cxrlens.align.search import (
    QUERIES,
    Query,
    build_index,
    deserialize_index,
    facts_from_factors,
    facts_from_labels,
    facts_from_phantom,
    ndcg_at_k,
    relevance,
    search_index,
    serialize_index,
)
from cxrlens.align.zeroshot import auc, bootstrap_auc
from cxrlens.errors import BadInputError


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 5, 10, None])
def test_ndcg_matches_sklearn(seed: int, k: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    rel = rng.integers(0, 3, n).astype(float)
    score = rng.normal(size=n)
    if seed % 2:  # coarse scores: many ties, which sklearn averages
        score = np.round(score, 0)
    assert ndcg_at_k(rel, score, k) == pytest.approx(ndcg_score([rel], [score], k=k), abs=1e-12)


def test_ndcg_known_values() -> None:
    assert ndcg_at_k(np.array([2, 1, 0]), np.array([3.0, 2.0, 1.0]), 2) == pytest.approx(1.0)
    # best item ranked last of three, k = 3: DCG = 1/log2(2)*0 + ... computed by hand
    rel, score = np.array([0, 0, 1]), np.array([3.0, 2.0, 1.0])
    assert ndcg_at_k(rel, score, 3) == pytest.approx((1 / np.log2(4)) / 1.0)
    assert ndcg_at_k(rel, score, 2) == 0.0
    assert ndcg_at_k(np.zeros(4), np.arange(4.0), 2) == 0.0  # sklearn's convention for no relevant item


def test_auc_and_bootstrap() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = y * 0.8 + rng.normal(size=300)
    s[:20] = np.round(s[:20])  # ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    point, lo, hi = bootstrap_auc(y, s, n_boot=300, seed=1)
    assert lo < point < hi and hi - lo < 0.2
    assert bootstrap_auc(y, s, n_boot=300, seed=1) == (point, lo, hi)  # seeded


def test_faiss_index_returns_brute_force_topk() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 24)).astype(np.float32)
    queries = rng.normal(size=(7, 24)).astype(np.float32)
    index = build_index(emb)
    scores, rows = search_index(index, queries, 10)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    brute = qn @ unit.T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, rows, 1), atol=1e-5)
    again = deserialize_index(serialize_index(index))
    np.testing.assert_array_equal(search_index(again, queries, 10)[1], rows)


def test_relevance_grades_from_labels_and_factors() -> None:
    studies = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d"], "Pleural Effusion": [1.0, 1.0, -1.0, 0.0], "Cardiomegaly": np.nan}
    )
    factors = pd.DataFrame(
        {"image_id": ["a", "b"], "finding": ["Pleural Effusion"] * 2, "side": ["L", "right"], "severity": [0.9, 0.1]}
    )
    facts = pd.concat([facts_from_labels(studies, ["Pleural Effusion", "Cardiomegaly"]), facts_from_factors(factors)])
    ids = ["a", "b", "c", "d"]
    assert relevance(Query("effusion", "Pleural Effusion"), ids, facts).tolist() == [2, 2, 1, 0]
    assert relevance(Query("left effusion", "Pleural Effusion", side="left"), ids, facts).tolist() == [2, 1, 1, 0]
    assert relevance(Query("large effusion", "Pleural Effusion", severity="large"), ids, facts).tolist() == [2, 1, 1, 0]
    assert relevance(Query("cardiomegaly", "Cardiomegaly"), ids, facts).tolist() == [0, 0, 0, 0]
    assert len(QUERIES) >= 19 and {q.kind for q in QUERIES} == {"finding", "laterality", "severity", "device"}


def test_relevance_from_phantom_factors() -> None:
    """The wide phantom factors table (<kind>.present/.side/.severity/.uncertain) drives side, severity, device."""
    from cxrlens.data.phantom.spec import ImageSpec

    rows = []
    for image_id in ("a", "b", "c"):
        row = {"image_id": image_id}
        for kind in ("pleural_effusion", "pacemaker", "ett"):
            row |= {f"{kind}.present": 0, f"{kind}.side": "none", f"{kind}.severity": 0.0, f"{kind}.uncertain": False}
        rows.append(row)
    rows[0] |= {"pleural_effusion.present": 1, "pleural_effusion.side": "left", "pleural_effusion.severity": 1.0}
    rows[1] |= {
        "pleural_effusion.present": 1,
        "pleural_effusion.side": "right",
        "pleural_effusion.severity": 0.25,
        "pleural_effusion.uncertain": True,
        "pacemaker.present": 1,
        "pacemaker.side": "left",
    }
    rows[2] |= {"ett.present": 1}
    facts = facts_from_phantom(pd.DataFrame(rows))
    ids = ["a", "b", "c"]
    assert relevance(Query("left effusion", "Pleural Effusion", side="left"), ids, facts).tolist() == [2, 1, 0]
    assert relevance(Query("large effusion", "Pleural Effusion", severity="large"), ids, facts).tolist() == [2, 1, 0]
    assert relevance(Query("pacemaker", "Support Devices", device="pacemaker"), ids, facts).tolist() == [0, 2, 1]
    assert relevance(Query("tube", "Support Devices", device="endotracheal tube"), ids, facts).tolist() == [0, 1, 2]
    assert "pleural_effusion.present" in ImageSpec().to_row()  # the column layout this reads is the phantom's


def test_bad_inputs() -> None:
    with pytest.raises(BadInputError, match="equal-length"):
        ndcg_at_k(np.array([1, 0]), np.array([1.0, 2.0, 3.0]), 2)
    with pytest.raises(BadInputError, match="non-negative"):
        ndcg_at_k(np.array([1, -1]), np.array([1.0, 2.0]), 2)
    with pytest.raises(BadInputError, match="NaN"):
        ndcg_at_k(np.array([1, 0]), np.array([1.0, np.nan]), 2)
    with pytest.raises(BadInputError, match="k must"):
        ndcg_at_k(np.array([1, 0]), np.array([1.0, 2.0]), 0)
    with pytest.raises(BadInputError, match="both classes"):
        auc(np.ones(5), np.arange(5.0))
    with pytest.raises(BadInputError, match="NaN"):
        build_index(np.array([[np.nan, 1.0]], dtype=np.float32))
    with pytest.raises(BadInputError, match="dimension"):
        search_index(build_index(np.eye(3, dtype=np.float32)), np.ones((1, 4)), 2)
    with pytest.raises(BadInputError, match="image_id"):
        facts_from_factors(pd.DataFrame({"finding": ["x"]}))
