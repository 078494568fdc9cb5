"""Clinical efficacy of generated reports: CheXpert-14 labels of generated vs reference text → P / R / F1.

Both texts are labelled by the same labeler (:func:`cxrlens.data.labeler.label_reports`), then compared per label.
Every number carries its exact variant, because published "clinical F1" values differ in all of these:

* ``labels``: ``"5"`` — the five CheXpert competition findings (Atelectasis, Cardiomegaly, Consolidation, Edema,
  Pleural Effusion) — or ``"14"`` — all 14 CheXpert labels (No Finding included).
* ``uncertain``: ``"positive"`` (−1 → 1, the CheXpert U-Ones policy) or ``"negative"`` (−1 → 0, U-Zeros).
* ``not_mentioned`` is always ``"negative"`` (NaN → 0), as in CheXbert-based report evaluation.
* ``average`` (one function per variant, each equal to scikit-learn's ``precision/recall/f1_score`` on the binarised
  labels, ``y_true`` = reference, ``y_pred`` = generated):

  - ``micro`` (:func:`micro_scores`): all (report, label) decisions of the set pooled (``average="micro"``);
  - ``macro-ref`` (:func:`macro_over_reference_positive`), named "macro over labels with a reference positive":
    mean of per-label scores over the labels with ≥ 1 positive in the reference texts — the same labels for every
    system on the same references; 0/0 → 0 (``average="macro", labels=<those>, zero_division=0``);
  - ``macro-all`` (:func:`macro_over_all_labels`), named "macro over all labels, zero_division=0": mean over every
    label of the set, a label with no reference positive scoring 0 (``average="macro", zero_division=0``); on one
    reference set it is macro-ref × (labels with a reference positive / all labels), for every system alike. The
    one quoted in summaries.

  Neither macro variant sees a false positive on a label that no reference states (it scores 0 either way); micro
  F1 and the grounding hallucination rates do.

  (Before these were named, a single "macro" averaged over the labels with a positive in *either* text, so each
  system was averaged over its own label set; that variant is gone.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrlens.data.labeler import label_reports
from cxrlens.data.schema import CHEXPERT_LABELS, binarise_labels

__all__ = [
    "AVERAGES",
    "FIVE_FINDINGS",
    "clinical_scores",
    "clinical_scores_from_text",
    "macro_over_all_labels",
    "macro_over_reference_positive",
    "micro_scores",
    "per_label_scores",
    "ratio",
    "variant_name",
]

FIVE_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
LABEL_SETS = {"5": FIVE_FINDINGS, "14": CHEXPERT_LABELS}
UNCERTAIN = ("positive", "negative")


def _binarise(labels: pd.DataFrame, cols: Sequence[str], uncertain: str) -> np.ndarray:
    if uncertain not in UNCERTAIN:
        raise ValueError(f"uncertain must be one of {UNCERTAIN}, got {uncertain!r}")
    return binarise_labels(labels[list(cols)], uncertain) == 1.0


def per_label_scores(generated: pd.DataFrame, reference: pd.DataFrame, *, uncertain: str = "positive") -> pd.DataFrame:
    """Per-label TP/FP/FN, precision, recall, F1 and support (reference positives) over the 14 labels."""
    g = _binarise(generated, CHEXPERT_LABELS, uncertain)
    r = _binarise(reference, CHEXPERT_LABELS, uncertain)
    tp, fp, fn = (g & r).sum(0), (g & ~r).sum(0), (~g & r).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        rec = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return pd.DataFrame(
        {
            "label": CHEXPERT_LABELS,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": p,
            "recall": rec,
            "f1": f1,
            "support": r.sum(0),
            "uncertain": uncertain,
        }
    )


def _label_counts(generated_NL: np.ndarray, reference_NL: np.ndarray) -> tuple[np.ndarray, ...]:
    g = np.asarray(generated_NL, dtype=bool)
    r = np.asarray(reference_NL, dtype=bool)
    if g.shape != r.shape or g.ndim != 2:
        raise ValueError(f"generated {g.shape} and reference {r.shape} must be equal (n_reports, n_labels) arrays")
    return (g & r).sum(0), (g & ~r).sum(0), (~g & r).sum(0), r.sum(0)


def ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    """Elementwise ``num / den`` as float64, ``empty`` where ``den`` is 0 (0 = scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full_like(num, empty), where=den > 0)


def _macro(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, keep: np.ndarray) -> dict[str, float]:
    n = int(keep.sum())
    if n == 0:
        return {"precision": np.nan, "recall": np.nan, "f1": np.nan, "n_labels": 0}
    return {
        "precision": float(ratio(tp, tp + fp)[keep].mean()),
        "recall": float(ratio(tp, tp + fn)[keep].mean()),
        "f1": float(ratio(2 * tp, 2 * tp + fp + fn)[keep].mean()),
        "n_labels": n,
    }


def micro_scores(generated_NL: np.ndarray, reference_NL: np.ndarray) -> dict[str, float]:
    """``micro``: P / R / F1 of all (report, label) decisions pooled (NaN when undefined: no positive at all).

    Equals ``sklearn.metrics.f1_score(reference, generated, average="micro")`` where that is defined.

    Args:
        generated_NL, reference_NL: (n_reports, n_labels) bool, True = the text states the label (binarised).
    """
    tp, fp, fn, _ = (int(x.sum()) for x in _label_counts(generated_NL, reference_NL))
    return {
        "precision": tp / (tp + fp) if tp + fp else np.nan,
        "recall": tp / (tp + fn) if tp + fn else np.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else np.nan,
        "n_labels": np.asarray(reference_NL).shape[1],
    }


def macro_over_reference_positive(generated_NL: np.ndarray, reference_NL: np.ndarray) -> dict[str, float]:
    """``macro-ref``: mean of per-label P / R / F1 over the labels with **≥ 1 positive in the reference** texts.

    The label set depends on the reference only, so every system evaluated on the same references is averaged over
    the same labels, and a perfect system scores 1. Within it a label the system never states has precision 0
    (0/0 → 0). False positives on labels absent from every reference do **not** count (those labels are outside the
    set). Its label set can change between bootstrap resamples (a rare label's positives may all drop out). NaN when
    no label has a
    reference positive. Equals ``f1_score(reference, generated, average="macro", labels=<those columns>,
    zero_division=0)`` (likewise precision / recall); ``n_labels`` = the size of the set.

    Args:
        generated_NL, reference_NL: (n_reports, n_labels) bool, True = the text states the label (binarised).
    """
    tp, fp, fn, support = _label_counts(generated_NL, reference_NL)
    return _macro(tp, fp, fn, support > 0)


def macro_over_all_labels(generated_NL: np.ndarray, reference_NL: np.ndarray) -> dict[str, float]:
    """``macro-all``: mean of per-label P / R / F1 over **every** label of the set, 0/0 → 0.

    A label with no reference positive scores 0 (P, R and F1) whatever the system says, so false positives on such a
    label are invisible to it (micro F1 and the hallucination rates see them); the label set is fixed, and a perfect
    system scores ``n_ref / n_labels`` (labels with a reference positive / all labels), below 1 when some label has no
    reference positive. On one reference set it is exactly :func:`macro_over_reference_positive` × ``n_ref /
    n_labels`` for every system, so the two rank systems alike; it is the one quoted in summaries because it is
    scikit-learn's default reading and its denominator stays fixed under resampling. Equals
    ``sklearn.metrics.f1_score(reference, generated, average="macro", zero_division=0)`` (likewise precision /
    recall); ``n_labels`` = all labels.

    Args:
        generated_NL, reference_NL: (n_reports, n_labels) bool, True = the text states the label (binarised).
    """
    tp, fp, fn, _ = _label_counts(generated_NL, reference_NL)
    return _macro(tp, fp, fn, np.ones(len(tp), dtype=bool))


AVERAGES = {
    "micro": "micro",
    "macro-ref": "macro over labels with a reference positive",
    "macro-all": "macro over all labels, zero_division=0",
}
"""Average id → the words every variant name uses (definitions: :func:`micro_scores`,
:func:`macro_over_reference_positive`, :func:`macro_over_all_labels`)."""
_AVERAGE_FUNCTIONS = {
    "micro": micro_scores,
    "macro-ref": macro_over_reference_positive,
    "macro-all": macro_over_all_labels,
}


def variant_name(metric: str, average: str, labels: str, uncertain: str) -> str:
    """The exact name of a variant, e.g. ``"f1 macro over all labels, zero_division=0 · CheXpert-14 ·
    uncertain=positive"`` (``average`` ∈ :data:`AVERAGES`)."""
    return f"{metric} {AVERAGES[average]} · CheXpert-{labels} · uncertain={uncertain}"


def clinical_scores(generated: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Tidy table of every variant: columns ``variant, labels, uncertain, not_mentioned, average, metric, value,
    n_labels`` (``average`` ∈ :data:`AVERAGES`; ``n_labels`` = labels averaged over).

    Args:
        generated, reference: (n_reports, ≥14) label frames in the CheXpert convention, rows aligned.
    """
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated label rows but {len(reference)} reference rows")
    rows = []
    for uncertain in UNCERTAIN:
        for set_name, cols in LABEL_SETS.items():
            g = _binarise(generated, cols, uncertain)
            r = _binarise(reference, cols, uncertain)
            for average, fn in _AVERAGE_FUNCTIONS.items():
                values = fn(g, r)
                for metric in ("precision", "recall", "f1"):
                    rows.append(
                        {
                            "variant": variant_name(metric, average, set_name, uncertain),
                            "labels": set_name,
                            "uncertain": uncertain,
                            "not_mentioned": "negative",
                            "average": average,
                            "metric": metric,
                            "value": float(values[metric]),
                            "n_labels": int(values["n_labels"]),
                        }
                    )
    return pd.DataFrame(rows)


def clinical_scores_from_text(generated: Sequence[str], reference: Sequence[str]) -> pd.DataFrame:
    """Label both lists of report texts with the cxrlens labeler, then :func:`clinical_scores`."""

    return clinical_scores(label_reports(list(generated)), label_reports(list(reference)))
