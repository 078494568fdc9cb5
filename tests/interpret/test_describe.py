"""The extractive describer recovers planted findings, keeps negation, and refuses to describe noise."""

from __future__ import annotations

import numpy as np
import pytest

from cxrlens.interpret.describe import (
    NO_CONSISTENT_FINDING,
    DescribeConfig,
    build_sentence_index,
    describe_features,
)

FINDINGS = {
    "effusion": (["Small left pleural effusion.", "There is a small left pleural effusion."], "No pleural effusion."),
    "cardio": (["The heart is enlarged.", "Cardiomegaly is present."], "Heart size is normal."),
    "ptx": (["Right apical pneumothorax.", "There is a right pneumothorax."], "No pneumothorax."),
}
KEYWORDS = {"effusion": "effusion", "cardio": ("enlarged", "cardiomegaly", "heart size"), "ptx": "pneumothorax"}


def _corpus(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    present = rng.random((n, len(FINDINGS))) < 0.25
    reports = []
    for row in present:
        sents = ["The lungs are clear." if not row.any() else "Comparison none."]
        for (pos, neg), has in zip(FINDINGS.values(), row, strict=True):
            if has:
                sents.append(pos[rng.integers(len(pos))])
            elif rng.random() < 0.6:
                sents.append(neg)
        rng.shuffle(sents)
        reports.append(" ".join(sents))
    return reports, present


def _bag_embed(texts):
    """Hashed bag of words, L2-normalised: a stand-in encoder with the same contract as MiniLM."""
    out = np.zeros((len(texts), 256), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", "").split():
            out[i, hash(w) % 256] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _keyword_signature(texts):
    sig = np.full((len(texts), len(KEYWORDS)), np.nan, np.float32)
    for i, t in enumerate(texts):
        low = t.lower()
        for j, kws in enumerate(KEYWORDS.values()):
            kws = (kws,) if isinstance(kws, str) else kws
            if any(k in low for k in kws):
                negated = low.startswith("no ") or "normal" in low
                sig[i, j] = 0.0 if negated else 1.0
    return sig


def test_planted_features_are_recovered_and_noise_is_refused() -> None:
    reports, present = _corpus(500)
    rng = np.random.default_rng(1)
    codes = np.zeros((500, 4), np.float32)
    codes[:, 0] = present[:, 0] * rng.uniform(1, 2, 500)  # fires on effusion
    codes[:, 1] = present[:, 1] * rng.uniform(1, 2, 500)  # fires on cardiomegaly
    codes[:, 2] = rng.exponential(1.0, 500) * (rng.random(500) < 0.3)  # noise, unrelated to any finding
    # feature 3 stays dead
    index = build_sentence_index(reports, embed=_bag_embed, signature=_keyword_signature, cluster_threshold=0.5)
    table = describe_features(codes, index, DescribeConfig(top_k=16, n_random=64)).set_index("feature")
    eff, card, noise, dead = (table.loc[i] for i in range(4))
    assert "pleural effusion" in eff["description"].lower() and not eff["description"].lower().startswith("no ")
    assert "No pleural effusion." not in eff["sentences"]  # negation kept apart from the positive finding
    assert eff["confidence"] > 0.5 and eff["p_adjusted"] < 0.05
    assert any(k in card["description"].lower() for k in ("enlarged", "cardiomegaly"))
    assert noise["description"] == NO_CONSISTENT_FINDING and noise["confidence"] == 0
    assert dead["description"] == NO_CONSISTENT_FINDING and dead["n_active"] == 0
    # phrasings of one finding share a cluster; the negation is a different one
    where = dict(zip(index.sentences, index.cluster, strict=True))
    assert where["Small left pleural effusion."] == where["There is a small left pleural effusion."]
    assert where["No pleural effusion."] != where["Small left pleural effusion."]


def test_rows_must_match_reports() -> None:
    reports, _ = _corpus(20)
    index = build_sentence_index(reports, embed=_bag_embed, signature=_keyword_signature)
    with pytest.raises(ValueError, match="21 rows but the sentence index has 20"):
        describe_features(np.zeros((21, 2)), index)
