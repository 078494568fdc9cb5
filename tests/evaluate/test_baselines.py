"""Baselines on tiny handmade cases: constant text, seeded random draws, nearest = brute force minus same patient."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.evaluate.baselines import (
    constant_reports,
    most_common_report,
    normalise_report,
    random_reports,
    report_plain_text,
)
from cxrlens.retrieval import nearest_neighbours


def test_plain_text_and_normalisation() -> None:
    assert report_plain_text(" Heart is normal.  Lungs clear. ", float("nan")) == "Heart is normal.  Lungs clear."
    assert report_plain_text("Lungs clear.", " 1. No acute disease.") == "Lungs clear. 1. No acute disease."
    assert report_plain_text(None, "") == ""
    assert normalise_report("  No acute\n Disease. ") == "no acute disease."


def test_constant_is_most_common_normalised_text_in_its_most_common_spelling() -> None:
    texts = [
        "No acute disease.",
        "no  acute disease.",
        "No acute disease.",
        "NO ACUTE DISEASE. ",
        "Heart normal.",
        "Heart normal.",
        "Heart normal.",
        "",
        "   ",
    ]
    text, count = most_common_report(texts)
    assert (text, count) == ("No acute disease.", 4)  # 4 in its class beats 3, though "Heart normal." is spelled 3×
    assert constant_reports(texts, 3) == ["No acute disease."] * 3
    # a tie between classes goes to the smallest normalised text, a tie between spellings to the smallest string
    assert most_common_report(["b text", "A TEXT", "a text", "B Text"]) == ("A TEXT", 2)
    with pytest.raises(ValueError, match="no non-empty"):
        most_common_report(["", " "])


def test_random_is_seeded_per_image_uniform_and_never_empty() -> None:
    pool = ["r0", "", "r2", "r3", "r4"]
    ids = [f"img{i}" for i in range(4000)]
    texts, picked = random_reports(pool, ids, seed=3)
    assert set(texts) == {"r0", "r2", "r3", "r4"} and 1 not in set(picked.tolist())
    assert [pool[k] for k in picked] == texts
    counts = np.bincount(picked, minlength=5)[[0, 2, 3, 4]]
    assert counts.min() > 850 and counts.max() < 1150  # uniform over the 4 non-empty reports (expected 1000 each)
    again, _ = random_reports(pool, ids, seed=3)
    assert again == texts
    # an image's draw does not depend on the other images or their order
    sub, _ = random_reports(pool, [ids[17], ids[5]], seed=3)
    assert sub == [texts[17], texts[5]]
    other, _ = random_reports(pool, ids, seed=4)
    assert other != texts


def _brute_force(train, query, tg, qg):
    out = []
    for i, q in enumerate(query):
        best, best_sim = -1, -np.inf
        for j, t in enumerate(train):
            if tg[j] == qg[i]:
                continue
            sim = float(q @ t / (np.linalg.norm(q) * np.linalg.norm(t)))
            if sim > best_sim:
                best, best_sim = j, sim
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_nearest_equals_brute_force_and_excludes_same_patient(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 8)).astype(np.float32) * rng.uniform(0.5, 3, size=(60, 1)).astype(np.float32)
    tg = [f"p{j // 3}" for j in range(60)]  # 3 images per patient
    query = rng.normal(size=(12, 8)).astype(np.float32)
    qg = [f"q{i}" for i in range(12)]
    # queries 0..3 are exact copies of training rows of their own patient: those rows must not come back
    for i, j in enumerate((4, 10, 31, 59)):
        query[i] = train[j] * 2.0  # cosine 1 with row j
        qg[i] = tg[j]
    best, sim, used = nearest_neighbours(train, query, tg, qg, backend=backend, block=5)
    assert used == backend
    expected = _brute_force(train, query, tg, qg)
    np.testing.assert_array_equal(best, expected)
    for i, j in enumerate((4, 10, 31, 59)):
        assert tg[best[i]] != tg[j]
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    np.testing.assert_allclose(sim, (qn * unit[best]).sum(1), atol=1e-5)
    # without exclusion the copies find their own row (cosine 1)
    free, free_sim, _ = nearest_neighbours(train, query, backend=backend)
    assert free[:4].tolist() == [4, 10, 31, 59] and np.allclose(free_sim[:4], 1.0, atol=1e-5)


def test_nearest_all_excluded_and_bad_shapes() -> None:
    train = np.eye(3, dtype=np.float32)
    best, sim, _ = nearest_neighbours(train, train[:1], ["a", "a", "a"], ["a"], backend="numpy")
    assert best.tolist() == [-1] and np.isnan(sim[0])
    best, _, _ = nearest_neighbours(train, train[:1], ["a", "a", "a"], ["a"], backend="auto")
    assert best.tolist() == [-1]
    with pytest.raises(ValueError, match="same D"):
        nearest_neighbours(train, np.ones((2, 4)), backend="numpy")
    with pytest.raises(ValueError, match="both"):
        nearest_neighbours(train, train, ["a"] * 3, None)
