"""Description scoring: how well does a feature's description predict which held-out images activate it?

For each feature, its ``top_k`` most-activating held-out images (activation > 0) are the positives and up to
``n_random`` images drawn at random (seeded per feature) among the held-out images on which it does **not** fire
(activation ≤ 0) are the negatives. Every image is scored by the similarity of the feature's description to the
image's report; the score of the description is the AUC of positives against negatives. 0.5 is chance, 1 means
every top image's report matches the description better than every non-activating image's report.

Negatives are drawn among non-activating images (not among all images) so that a perfect description can reach
1 whatever the feature's frequency: a random draw from all images would contain active images too, and cap the
AUC of frequent features lower than that of rare ones.

**Similarity of a description to a report.** MiniLM cosine is blind to negation ("no pleural effusion" ≈ "small
pleural effusion", cosine ≈ 0.75), so sentence pairs whose CheXpert finding signatures contradict score 0. With
``e(·)`` the L2-normalised sentence embedding, ``σ(·)`` the signature (CheXpert-14 values of
:func:`cxrlens.data.labeler.label_reports`: 1 positive, 0 negative, −1 uncertain, NaN not mentioned), description
sentences ``d_1..d_p`` and report sentences ``r_1..r_q`` (:func:`cxrlens.data.reports.split_sentences`, duplicates
removed)::

    contradict(a, b) = ∃ finding j: (a_j ∈ {1, −1} and b_j = 0) or (a_j = 0 and b_j ∈ {1, −1})
    c(d, r)          = 0                        if contradict(σ(d), σ(r))
                       max(0, ⟨e(d), e(r)⟩)     otherwise
    sim(D, R)        = (1/p) · Σ_i max_j c(d_i, r_j)          (0 for a report without sentences)

i.e. each description sentence is matched with its best non-contradicting report sentence, and the matches are
averaged, so a 3-sentence description must find all three of its statements in a report to score high.
Uncertain (−1) agrees with positive (1): "possible effusion" does not contradict "effusion".

**AUC** over the ``k`` positives ``T`` and ``m`` negatives ``U`` (ties count one half, equal to
``sklearn.metrics.roc_auc_score``)::

    AUC = (1/(k·m)) · Σ_{t∈T} Σ_{u∈U} ([sim_t > sim_u] + ½·[sim_t = sim_u])

**Skipped features** (``score_auc`` NaN, reason in ``skip_reason``): described as "no consistent finding" (or with
no sentences); active on fewer than ``min_active`` held-out images; no non-activating held-out image.

Report sentences and description sentences are embedded and signed once, in one call each, for all features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrlens.console import progress
from cxrlens.data.reports import split_sentences
from cxrlens.interpret.describe import NO_CONSISTENT_FINDING, EmbedFn, SignatureFn, default_embed, default_signature

__all__ = ["SKIP_FEW_ACTIVE", "SKIP_NO_FINDING", "SKIP_NO_NEGATIVES", "score_descriptions", "summarise_scores"]

SKIP_NO_FINDING = "no consistent finding"
SKIP_FEW_ACTIVE = "too few active held-out images"
SKIP_NO_NEGATIVES = "no non-activating held-out images"

_COLUMNS = [
    "feature",
    "description",
    "score_auc",
    "sim_top",
    "sim_random",
    "n_top",
    "n_random",
    "n_active",
    "skip_reason",
]


def _sentences_of(row) -> list[str]:
    if str(getattr(row, "description", "")).strip().lower() == NO_CONSISTENT_FINDING:
        return []
    sentences = row.sentences
    if sentences is None or (isinstance(sentences, float) and np.isnan(sentences)):
        return []
    return [s.strip() for s in (str(x) for x in sentences) if s.strip()]


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann–Whitney AUC of ``pos`` against ``neg`` (ties count ½)."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def score_descriptions(
    descriptions: pd.DataFrame,
    codes_NF: np.ndarray,
    reports: Sequence[str],
    *,
    embed: EmbedFn | None = None,
    signature: SignatureFn | None = None,
    top_k: int = 16,
    n_random: int = 64,
    min_active: int = 4,
    seed: int = 0,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Score each feature's description against held-out reports (formula: module docstring).

    Args:
        descriptions: one row per feature with ``feature`` and ``sentences`` (list of str); ``description`` is used
            to recognise "no consistent finding"; ``describer`` is carried over when present.
        codes_NF: (n_heldout, n_features) activations on held-out images; row i belongs to ``reports[i]``.
        reports: (n_heldout,) held-out report texts (findings + impression, no headers).
        embed: ``embed(texts) -> (n, d)`` L2-normalised float array (default: offline MiniLM).
        signature: ``signature(texts) -> (n, s)`` finding values 1/0/−1/NaN (default: CheXpert-14 labeler).
        top_k: positives per feature, the most-activating held-out images with activation > 0.
        n_random: negatives per feature, drawn among held-out images with activation ≤ 0.
        min_active: features active on fewer held-out images are skipped.
        seed: negatives of feature f are drawn with ``numpy.random.default_rng([seed, f])``.

    Returns:
        One row per description: ``feature, description, score_auc, sim_top, sim_random, n_top, n_random,
        n_active, skip_reason`` (``""`` when scored) [, ``describer``]; ``sim_top``/``sim_random`` are the mean
        similarities of positives/negatives.
    """
    codes_NF = np.asarray(codes_NF)
    if codes_NF.ndim != 2 or codes_NF.shape[0] != len(reports):
        raise ValueError(f"codes have shape {codes_NF.shape} but there are {len(reports)} held-out reports")
    for column in ("feature", "sentences"):
        if column not in descriptions.columns:
            raise ValueError(f"descriptions table has no {column!r} column")
    rows = list(descriptions.itertuples(index=False))
    bad = [int(r.feature) for r in rows if not 0 <= int(r.feature) < codes_NF.shape[1]]
    if bad:
        raise ValueError(f"feature id(s) {bad[:10]} outside the {codes_NF.shape[1]} columns of the codes")
    embed = embed or default_embed
    signature = signature or default_signature

    per_feature = [_sentences_of(r) for r in rows]
    per_report = [list(dict.fromkeys(split_sentences(str(t)))) for t in reports]
    texts = list(dict.fromkeys(s for sents in (*per_report, *per_feature) for s in sents))
    where = {s: i for i, s in enumerate(texts)}
    if texts:
        emb = np.asarray(embed(texts), dtype=np.float32)
        sig = np.asarray(signature(texts), dtype=np.float32)
    else:
        emb, sig = np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32)
    pos = (sig == 1) | (sig == -1)  # NaN compares False: not mentioned is neither
    neg = sig == 0
    report_ids = [np.array([where[s] for s in sents], dtype=np.int64) for sents in per_report]

    out = []
    with progress(disable=not show_progress) as bar:
        task = bar.add_task("scoring descriptions", total=len(rows))
        for row, sentences in zip(rows, per_feature, strict=True):
            f = int(row.feature)
            act = codes_NF[:, f]
            active = np.flatnonzero(act > 0)
            rec = {
                "feature": f,
                "description": str(getattr(row, "description", " ".join(sentences))),
                "score_auc": np.nan,
                "sim_top": np.nan,
                "sim_random": np.nan,
                "n_top": 0,
                "n_random": 0,
                "n_active": len(active),
                "skip_reason": "",
            }
            if "describer" in descriptions.columns:
                rec["describer"] = row.describer
            out.append(rec)
            bar.advance(task)
            inactive = np.flatnonzero(~(act > 0))
            if not sentences:
                rec["skip_reason"] = SKIP_NO_FINDING
                continue
            if len(active) < min_active:
                rec["skip_reason"] = SKIP_FEW_ACTIVE
                continue
            if len(inactive) == 0:
                rec["skip_reason"] = SKIP_NO_NEGATIVES
                continue
            top = active[np.argsort(-act[active], kind="stable")[:top_k]]
            rng = np.random.default_rng([seed, f])
            rand = rng.choice(inactive, size=min(n_random, len(inactive)), replace=False)
            sims = _similarities([where[s] for s in sentences], [report_ids[i] for i in (*top, *rand)], emb, pos, neg)
            s_top, s_rand = sims[: len(top)], sims[len(top) :]
            rec.update(
                score_auc=_auc(s_top, s_rand),
                sim_top=float(s_top.mean()),
                sim_random=float(s_rand.mean()),
                n_top=len(top),
                n_random=len(rand),
            )
    columns = _COLUMNS + (["describer"] if "describer" in descriptions.columns else [])
    return pd.DataFrame(out, columns=columns)


def _similarities(
    desc: list[int], report_ids: list[np.ndarray], emb: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> np.ndarray:
    """(n_reports,) ``sim(D, R)`` of one description (sentence ids ``desc``) to each report (sentence ids)."""
    lengths = np.array([len(ids) for ids in report_ids])
    sims = np.zeros((len(desc), len(report_ids)), np.float32)
    if lengths.sum() == 0:
        return sims.mean(axis=0)
    ids = np.concatenate(report_ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    cos = np.maximum(emb[desc] @ emb[uniq].T, 0.0)  # (p, u)
    contra = (pos[desc][:, None, :] & neg[uniq][None, :, :]) | (neg[desc][:, None, :] & pos[uniq][None, :, :])
    pair = np.where(contra.any(axis=2), 0.0, cos)[:, inverse]  # (p, total report sentences)
    nonempty = lengths > 0
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
    sims[:, nonempty] = np.maximum.reduceat(pair, starts, axis=1)
    return sims.mean(axis=0)


def summarise_scores(scores: pd.DataFrame) -> dict:
    """Summary of :func:`score_descriptions`: counts, skipped features by reason, mean/median AUC, share > 0.5.

    AUC statistics are ``None`` when no feature was scored (JSON-friendly).
    """
    scored = scores[scores["skip_reason"] == ""]
    auc = scored["score_auc"].to_numpy(dtype=float)
    skipped = scores.loc[scores["skip_reason"] != "", "skip_reason"].value_counts()
    return {
        "n_features": len(scores),
        "n_scored": len(scored),
        "n_skipped": int(skipped.sum()),
        "skipped": {str(k): int(v) for k, v in sorted(skipped.items())},
        "mean_auc": float(auc.mean()) if len(auc) else None,
        "median_auc": float(np.median(auc)) if len(auc) else None,
        "frac_auc_above_0_5": float((auc > 0.5).mean()) if len(auc) else None,
    }
