"""Per-feature statistics of sparse codes: frequency, activation, top images, label association, confounding.

All functions take a dense code matrix ``codes_NF: (n_images, n_features)`` (one row per image, e.g. SAE codes of
CLS tokens) and work in feature chunks, so ×64 dictionaries (49,152 features) fit in memory.

Label association is the ROC AUC of a feature's activation for a binary label (rank formula with average ranks for
ties, identical to ``sklearn.metrics.roc_auc_score``). Label frames use the CheXpert convention; the binarisation
is explicit: ``positive`` = 1 (and −1 when ``uncertain="positive"``), ``negative`` = 0 or NaN (not mentioned).

**Confound check.** A feature that seems to encode label A may really encode a label B that co-occurs with A (the
main criticism of SAE-Rad). For each feature's best label A, the co-occurring label B is the one with the highest
φ correlation with A among images; the AUC for A is recomputed on the images where B is *not* positive. If the AUC
keeps less than half of its margin over chance (``auc_within − 0.5 < (auc − 0.5) / 2``), or there are too few
images left to tell, the feature is flagged ``confounded`` / ``undetermined``. On phantoms the same is done against
the ground-truth factor of A (``factor_auc``), which has no reporting bias at all.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from cxrlens.data import schema

__all__ = [
    "auc_matrix",
    "binarise_label_table",
    "calibrate_thresholds",
    "confound_check",
    "feature_stats",
    "top_images",
]


def feature_stats(codes_NF: np.ndarray) -> pd.DataFrame:
    """``feature, n_active, frequency, mean_active, max`` per feature (mean over images where it is > 0)."""
    codes_NF = np.asarray(codes_NF, dtype=np.float32)
    active = codes_NF > 0
    n_active = active.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(n_active > 0, codes_NF.sum(0) / n_active, 0.0)
    return pd.DataFrame(
        {
            "feature": np.arange(codes_NF.shape[1]),
            "n_active": n_active,
            "frequency": n_active / max(codes_NF.shape[0], 1),
            "mean_active": mean_active.astype(np.float32),
            "max": codes_NF.max(0) if len(codes_NF) else np.zeros(codes_NF.shape[1], np.float32),
        }
    )


def top_images(codes_NF: np.ndarray, k: int = 16) -> np.ndarray:
    """(n_features, k) row indices of the k highest activations per feature (only > 0; padded with −1)."""
    codes_NF = np.asarray(codes_NF)
    k_eff = min(k, codes_NF.shape[0])
    part = np.argpartition(-codes_NF, k_eff - 1, axis=0)[:k_eff].T  # (F, k) unsorted
    vals = np.take_along_axis(codes_NF.T, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part, vals = np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)
    out = np.full((codes_NF.shape[1], k), -1, dtype=np.int64)
    out[:, :k_eff] = np.where(vals > 0, part, -1)
    return out


def binarise_label_table(labels: pd.DataFrame, uncertain: str = "positive") -> pd.DataFrame:
    """CheXpert-convention label table → {0, 1} float table (−1 → 1 or 0 by ``uncertain``; NaN → 0)."""
    if uncertain not in ("positive", "negative"):
        raise ValueError(f"uncertain must be 'positive' or 'negative', got {uncertain!r}")
    x = schema.binarise_labels(labels, uncertain)
    return pd.DataFrame(x, columns=labels.columns, index=labels.index)


def auc_matrix(codes_NF: np.ndarray, y_NL: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """(n_features, n_labels) ROC AUC of each feature for each binary label (NaN if a label lacks a class)."""
    codes_NF = np.asarray(codes_NF, dtype=np.float32)
    y_NL = np.asarray(y_NL, dtype=bool)
    n_pos = y_NL.sum(0)
    n_neg = len(y_NL) - n_pos
    out = np.full((codes_NF.shape[1], y_NL.shape[1]), np.nan, dtype=np.float64)
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        return out
    yv = y_NL[:, valid].astype(np.float64)
    for lo in range(0, codes_NF.shape[1], chunk):
        ranks = rankdata(codes_NF[:, lo : lo + chunk], axis=0)  # (N, c) average ranks for ties
        rank_sum = ranks.T @ yv  # (c, L_valid)
        out[lo : lo + chunk, valid] = (rank_sum - n_pos[valid] * (n_pos[valid] + 1) / 2) / (n_pos[valid] * n_neg[valid])
    return out


def confound_check(
    codes_NF: np.ndarray,
    y: pd.DataFrame,
    *,
    auc: np.ndarray | None = None,
    factors: pd.DataFrame | None = None,
    min_images: int = 10,
    min_auc: float = 0.6,
) -> pd.DataFrame:
    """Best label per feature, its AUC, the co-occurring label, the AUC without it, and a verdict.

    Args:
        codes_NF: (n_images, n_features) activations.
        y: (n_images, n_labels) binary {0, 1} labels (see :func:`binarise_label_table`).
        auc: precomputed :func:`auc_matrix` of ``codes_NF`` and ``y`` (computed if None).
        factors: optional (n_images, n_labels) binary ground truth with the same column names (phantoms).
        min_images: least positives and negatives left in the subset for a verdict.
        min_auc: a best-label AUC below this is no association at all (verdict ``none``): with 14 labels the
            best of them is always a little above 0.5 by chance.

    Returns one row per feature: ``feature, best_label, auc, cooccurring_label, auc_without_cooccurring,
    n_subset, factor_auc, verdict`` with verdict ``associated | confounded | undetermined | none``.
    """
    y_NL = y.to_numpy(dtype=bool)
    names = list(y.columns)
    auc = auc_matrix(codes_NF, y_NL) if auc is None else auc
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant label column has no correlation (NaN → 0)
        phi = np.nan_to_num(np.corrcoef(y_NL.T.astype(float)), nan=0.0)
    np.fill_diagonal(phi, -np.inf)
    fac = factors[names].to_numpy(dtype=bool) if factors is not None else None
    rows = []
    for f in range(auc.shape[0]):
        if np.all(np.isnan(auc[f])):
            rows.append(
                {
                    "feature": f,
                    "best_label": None,
                    "auc": np.nan,
                    "cooccurring_label": None,
                    "auc_without_cooccurring": np.nan,
                    "n_subset": 0,
                    "factor_auc": np.nan,
                    "verdict": "none",
                }
            )
            continue
        a = int(np.nanargmax(auc[f]))
        b = int(np.argmax(phi[a]))
        keep = ~y_NL[:, b]
        sub_y = y_NL[keep, a]
        enough = min(sub_y.sum(), (~sub_y).sum()) >= min_images
        within = float(auc_matrix(codes_NF[keep][:, [f]], sub_y[:, None])[0, 0]) if enough else np.nan
        base = float(auc[f, a])
        if base < min_auc:
            verdict = "none"
        elif not enough:
            verdict = "undetermined"
        else:
            verdict = "confounded" if within - 0.5 < (base - 0.5) / 2 else "associated"
        factor_auc = float(auc_matrix(codes_NF[:, [f]], fac[:, [a]])[0, 0]) if fac is not None else np.nan
        rows.append(
            {
                "feature": f,
                "best_label": names[a],
                "auc": base,
                "cooccurring_label": names[b],
                "auc_without_cooccurring": within,
                "n_subset": int(keep.sum()),
                "factor_auc": factor_auc,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def calibrate_thresholds(codes_NF: np.ndarray, quantile: float = 0.5) -> np.ndarray:
    """Per-feature thresholds from validation activations: the ``quantile`` of each feature's *positive*
    activations (features never active get +inf, so they never fire). Returns (n_features,) float32."""
    codes_NF = np.asarray(codes_NF, dtype=np.float32)
    masked = np.where(codes_NF > 0, codes_NF, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns = never-active features
        thr = np.nanquantile(masked, quantile, axis=0)
    return np.where(np.isnan(thr), np.inf, thr).astype(np.float32)
