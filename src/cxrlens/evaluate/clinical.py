"""Clinical efficacy of generated reports: CheXpert-14 labels of generated vs reference text → P / R / F1.

Both texts are labelled by the same labeler (:func:`cxrlens.data.labeler.label_reports`), then compared per label.
Every number carries its exact variant, because published "clinical F1" values differ in all of these:

* ``labels``: ``"5"`` — the five CheXpert competition findings (Atelectasis, Cardiomegaly, Consolidation, Edema,
  Pleural Effusion) — or ``"14"`` — all 14 CheXpert labels (No Finding included).
* ``uncertain``: ``"positive"`` (−1 → 1, the CheXpert U-Ones policy) or ``"negative"`` (−1 → 0, U-Zeros).
* ``not_mentioned`` is always ``"negative"`` (NaN → 0), as in CheXbert-based report evaluation.
* ``average``: ``"micro"`` (pool all label decisions) or ``"macro"`` (mean of per-label scores over the labels in the
  set, labels with no positive in either reference or generated text scoring 0/0 → excluded and counted).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrlens.data.schema import CHEXPERT_LABELS, binarise_labels

__all__ = ["FIVE_FINDINGS", "clinical_scores", "clinical_scores_from_text", "per_label_scores"]

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


def clinical_scores(generated: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Tidy table of every variant: columns ``labels, uncertain, not_mentioned, average, metric, value, n_labels``.

    Args:
        generated, reference: (n_reports, ≥14) label frames in the CheXpert convention, rows aligned.
    """
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated label rows but {len(reference)} reference rows")
    rows = []
    for uncertain in UNCERTAIN:
        per = per_label_scores(generated, reference, uncertain=uncertain).set_index("label")
        for set_name, cols in LABEL_SETS.items():
            sub = per.loc[list(cols)]
            tp, fp, fn = sub["tp"].sum(), sub["fp"].sum(), sub["fn"].sum()
            micro = {
                "precision": tp / (tp + fp) if tp + fp else np.nan,
                "recall": tp / (tp + fn) if tp + fn else np.nan,
                "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else np.nan,
            }
            defined = sub["f1"].notna()
            macro = {
                m: float(sub.loc[defined, m].fillna(0.0).mean()) if defined.any() else np.nan
                for m in ("precision", "recall", "f1")
            }
            for average, values in (("micro", micro), ("macro", macro)):
                for metric, value in values.items():
                    rows.append(
                        {
                            "labels": set_name,
                            "uncertain": uncertain,
                            "not_mentioned": "negative",
                            "average": average,
                            "metric": metric,
                            "value": float(value),
                            "n_labels": int(defined.sum()) if average == "macro" else len(cols),
                        }
                    )
    out = pd.DataFrame(rows)
    out.insert(
        0,
        "variant",
        out.apply(
            lambda r: f"{r['metric']} {r['average']} · CheXpert-{r['labels']} · uncertain={r['uncertain']}", axis=1
        ),
    )
    return out


def clinical_scores_from_text(generated: Sequence[str], reference: Sequence[str]) -> pd.DataFrame:
    """Label both lists of report texts with the cxrlens labeler, then :func:`clinical_scores`."""
    from cxrlens.data.labeler import label_reports

    return clinical_scores(label_reports(list(generated)), label_reports(list(reference)))
