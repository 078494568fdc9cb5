"""Which latent dims (or pooled latent maps) predict a label or factor: random forest + held-out permutation importance.

A random forest is fitted on the training rows; importance of a dim = drop of the held-out score (accuracy for a
categorical target, R² for a continuous one) when that dim's held-out values are shuffled, repeated
``n_repeats`` times (sklearn ``permutation_importance``). Each dim gets the mean drop, its standard deviation over
repeats and a t-interval for the mean. The interval describes the shuffling noise for this fitted forest only, not
the variability of refitting on new data; impurity importances (biased towards high-cardinality dims) are not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.model_selection import train_test_split

from cxrlens.figures import new_figure, save_png

__all__ = ["ImportanceConfig", "ImportanceResult", "feature_importance", "importance_plot", "pool_maps"]


@dataclass(frozen=True)
class ImportanceConfig:
    """Random-forest importance.

    Attributes:
        task: ``classification``, ``regression`` or ``auto`` (classification when the target has ≤ 20 distinct
            integer-like values).
        n_trees / min_samples_leaf: the forest.
        n_repeats: shuffles per dim on the held-out rows.
        test_size: held-out fraction when no split is given.
        level: confidence level of the interval for the mean drop.
        seed: forest, split and shuffles.
    """

    task: str = "auto"
    n_trees: int = 200
    min_samples_leaf: int = 2
    n_repeats: int = 20
    test_size: float = 0.3
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in ("auto", "classification", "regression"):
            raise ValueError(f"task must be auto, classification or regression, got {self.task!r}")
        if self.n_repeats < 2:
            raise ValueError("n_repeats must be at least 2 (an interval needs repeats)")


@dataclass
class ImportanceResult:
    """Per-dim importances (sorted, most important first) and the held-out score of the forest."""

    table: pd.DataFrame  # name, mean, std, ci_low, ci_high, rank
    task: str
    metric: str
    heldout_score: float
    baseline_score: float  # the score of always predicting the majority class / training mean
    n_train: int
    n_test: int

    def summary(self) -> dict[str, object]:
        return {
            "task": self.task,
            "metric": self.metric,
            "heldout_score": self.heldout_score,
            "baseline_score": self.baseline_score,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def pool_maps(maps_NCHW: np.ndarray, how: str = "mean") -> np.ndarray:
    """Latent maps ``(N, C, H, W)`` → one value per map ``(N, C)`` by ``mean`` or ``max`` over positions."""
    maps_NCHW = np.asarray(maps_NCHW)
    if maps_NCHW.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) maps, got shape {maps_NCHW.shape}")
    if how == "mean":
        return maps_NCHW.mean(axis=(2, 3))
    if how == "max":
        return maps_NCHW.max(axis=(2, 3))
    raise ValueError(f"pooling must be mean or max, got {how!r}")


def _is_classification(y_N: np.ndarray, task: str) -> bool:
    if task != "auto":
        return task == "classification"
    if y_N.dtype.kind in "OUSb":
        return True
    uniq = np.unique(y_N)
    return len(uniq) <= 20 and bool(np.all(np.equal(np.mod(uniq, 1), 0)))


def feature_importance(
    x_ND: np.ndarray,
    y_N: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    train_mask_N: np.ndarray | None = None,
    cfg: ImportanceConfig = ImportanceConfig(),
) -> ImportanceResult:
    """Random forest on ``x_ND: (n, d)`` → ``y_N: (n,)``, permutation importance on the held-out rows.

    ``train_mask_N`` (bool) chooses the training rows (e.g. the study table's ``split == "train"``); the rest are
    held out. Without it a random (stratified for classification) split of ``test_size`` is used. Rows with a
    missing target are dropped.
    """

    x_ND = np.asarray(x_ND, dtype=np.float64)
    y_N = np.asarray(y_N)
    if x_ND.ndim != 2 or len(x_ND) != len(y_N):
        raise ValueError(f"x must be (n, d) with n = len(y); got {x_ND.shape} and {y_N.shape}")
    names = [f"dim_{i}" for i in range(x_ND.shape[1])] if names is None else list(names)
    if len(names) != x_ND.shape[1]:
        raise ValueError(f"{len(names)} names for {x_ND.shape[1]} dims")
    ok = ~pd.isna(y_N)
    x_ND, y_N = x_ND[ok], y_N[ok]
    classify = _is_classification(y_N, cfg.task)
    idx = np.arange(len(y_N))
    if train_mask_N is not None:
        train_mask_N = np.asarray(train_mask_N, dtype=bool)[ok]
        tr, te = idx[train_mask_N], idx[~train_mask_N]
    else:
        tr, te = train_test_split(
            idx, test_size=cfg.test_size, random_state=cfg.seed, stratify=y_N if classify else None
        )
    if len(tr) < 2 or len(te) < 2:
        raise ValueError(f"need at least 2 training and 2 held-out rows, got {len(tr)} and {len(te)}")
    common = {"n_estimators": cfg.n_trees, "min_samples_leaf": cfg.min_samples_leaf, "random_state": cfg.seed}
    model = RandomForestClassifier(**common) if classify else RandomForestRegressor(**common)
    model.fit(x_ND[tr], y_N[tr])
    scoring = "accuracy" if classify else "r2"
    held = float(model.score(x_ND[te], y_N[te]))
    if classify:
        values, counts = np.unique(y_N[tr], return_counts=True)
        baseline = float(np.mean(y_N[te] == values[np.argmax(counts)]))
    else:
        baseline = float(1 - np.mean((y_N[te] - y_N[tr].mean()) ** 2) / max(np.var(y_N[te]), 1e-12))
    perm = permutation_importance(
        model, x_ND[te], y_N[te], scoring=scoring, n_repeats=cfg.n_repeats, random_state=cfg.seed, n_jobs=1
    )
    reps_DR = perm.importances
    mean, std = reps_DR.mean(1), reps_DR.std(1, ddof=1)
    half = student_t.ppf(0.5 + cfg.level / 2, df=cfg.n_repeats - 1) * std / np.sqrt(cfg.n_repeats)
    table = pd.DataFrame(
        {"name": names, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}
    ).sort_values("mean", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    return ImportanceResult(
        table=table.reset_index(drop=True),
        task="classification" if classify else "regression",
        metric=scoring,
        heldout_score=held,
        baseline_score=baseline,
        n_train=len(tr),
        n_test=len(te),
    )


def importance_plot(result: ImportanceResult, path: str | Path, *, title: str = "", top: int = 15) -> Path:
    """Horizontal bars of the ``top`` dims: mean held-out score drop with its interval."""

    t = result.table.head(top).iloc[::-1]
    fig = new_figure(5.2, 0.28 * len(t) + 1.2)
    ax = fig.add_subplot()
    err = np.stack([t["mean"] - t["ci_low"], t["ci_high"] - t["mean"]])
    ax.barh(t["name"], t["mean"], xerr=err, color="#4477aa", ecolor="black", capsize=2)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"drop in held-out {result.metric} when shuffled")
    score = f"{result.heldout_score:.3f} (baseline {result.baseline_score:.3f})"
    sub = f"forest {result.metric} {score}, n_test={result.n_test}"
    ax.set_title(f"{title}\n{sub}" if title else sub, fontsize=8)
    ax.tick_params(labelsize=7)
    return save_png(fig, path)
