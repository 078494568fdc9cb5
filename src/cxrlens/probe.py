"""The one linear-probe AUC: an L2 logistic regression fit on some rows, ROC AUC of its decision function on others.

Every probe figure in cxrlens comes from :func:`linear_probe_auc`, and every caller states the two choices that
change its value:

* **Labels** (:func:`probe_targets`): CheXpert ``1`` is positive and ``0`` negative; ``-1`` (uncertain) is always
  left out; a label that is *not mentioned* (NaN) is either read as negative (``missing="negative"``, CheXpert's
  usual reading of silence, which keeps every image) or left out (``missing="dropped"``, only rows whose report
  speaks about the finding).
* **Fit** (:class:`ProbeFit`): the inverse penalty ``C``, the solver, class weighting, and how the features are
  scaled (z-scored on the fit rows, scaled without centring — for sparse codes — or used as given).

The callers and their choices (also written beside each figure in the docs):

========================================  ==================  =================================================
caller                                     labels              fit
========================================  ==================  =================================================
backbone probe (``backbones.train``)       missing-negative    C 0.5, lbfgs, balanced, z-scored on all train rows
SAE codes vs raw (``sae.metrics``)         missing-dropped     C by 3-fold CV in train (default 1), liblinear,
                                                               scaled without centring on the fit rows
alignment probes (``align.probes``)        missing-negative    C 1, lbfgs, z-scored on the fit rows, constant
                                                               columns dropped
========================================  ==================  =================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cxrlens.data.schema import binarise_labels

__all__ = ["LinearProbe", "ProbeFit", "fit_linear_probe", "linear_probe_auc", "probe_targets"]

Missing = Literal["negative", "dropped"]


def probe_targets(values: object, missing: Missing) -> np.ndarray:
    """CheXpert-convention labels → float targets for a probe: 1 positive, 0 negative, NaN left out.

    Uncertain (``-1``) is always left out; not mentioned (NaN) is negative (``missing="negative"``) or left out
    (``missing="dropped"``)."""
    if missing not in ("negative", "dropped"):
        raise ValueError(f"missing must be 'negative' or 'dropped', got {missing!r}")
    return binarise_labels(values, uncertain="ignore", missing=0.0 if missing == "negative" else np.nan)


@dataclass(frozen=True)
class ProbeFit:
    """How the logistic regression is fit.

    Attributes:
        C: inverse L2 penalty. solver: ``"lbfgs"`` or ``"liblinear"`` (seeded coordinate descent, ``random_state``
            0). class_weight: ``None`` or ``"balanced"``. scaling: ``"standard"`` (z-score fit on the fit rows),
            ``"no-centre"`` (divide by the fit rows' std only: keeps sparse codes sparse) or ``"none"``.
        drop_constant: drop feature columns that are constant on the fit rows (a tiny subsample can have some).
    """

    C: float = 1.0
    solver: Literal["lbfgs", "liblinear"] = "lbfgs"
    class_weight: Literal["balanced"] | None = None
    scaling: Literal["standard", "no-centre", "none"] = "standard"
    max_iter: int = 1000
    drop_constant: bool = False

    def __post_init__(self) -> None:
        if self.C <= 0:
            raise ValueError(f"C must be a positive inverse penalty, got {self.C!r}")


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe: :meth:`decision` gives the logistic regression's decision function on new rows."""

    columns: np.ndarray | None
    scaler: StandardScaler | None
    clf: LogisticRegression | None

    def decision(self, x_ND: np.ndarray) -> np.ndarray:
        """Scores (N,) for rows ``x_ND`` (N, D); constant 0 when every fit column was constant."""
        if self.clf is None:
            return np.zeros(len(x_ND))
        x = x_ND if self.columns is None else x_ND[:, self.columns]
        return self.clf.decision_function(x if self.scaler is None else self.scaler.transform(x))


def fit_linear_probe(x_ND: np.ndarray, y_N: np.ndarray, fit: ProbeFit = ProbeFit()) -> LinearProbe:
    """Fit the probe on rows ``x_ND`` (N, D) with binary targets ``y_N`` (N,) (no NaN: select rows first)."""
    columns = None
    if fit.drop_constant:
        columns = np.flatnonzero(x_ND.std(0) > 0)
        if len(columns) == 0:
            return LinearProbe(columns, None, None)
        x_ND = x_ND[:, columns]
    scaler = None
    if fit.scaling != "none":
        scaler = StandardScaler(with_mean=fit.scaling == "standard").fit(x_ND)
        x_ND = scaler.transform(x_ND)
    extra = {"random_state": 0} if fit.solver == "liblinear" else {}
    clf = LogisticRegression(
        C=fit.C, solver=fit.solver, max_iter=fit.max_iter, class_weight=fit.class_weight, **extra
    ).fit(x_ND, np.asarray(y_N).astype(int))
    return LinearProbe(columns, scaler, clf)


def linear_probe_auc(
    x_fit: np.ndarray, y_fit: np.ndarray, x_score: np.ndarray, y_score: np.ndarray, fit: ProbeFit = ProbeFit()
) -> float:
    """ROC AUC on ``(x_score, y_score)`` of the probe fit on ``(x_fit, y_fit)``; 0.5 when nothing could be fit
    (every column constant)."""
    probe = fit_linear_probe(x_fit, y_fit, fit)
    if probe.clf is None:
        return 0.5
    return float(roc_auc_score(np.asarray(y_score).astype(int), probe.decision(x_score)))
