"""Data-efficient linear probes on frozen embeddings (``align probe``).

For every feature set (adapter embeddings, raw backbone features, SAE codes …), finding, label fraction (1 %,
10 %, 100 % of the training split) and seed (5 by default), a logistic regression (standardised inputs, L2,
``C = 1``) is fit on a class-stratified subsample of the training images and scored by AUC on the test split. The
subsample keeps ``max(1, round(f · n_pos))`` positives and ``max(1, round(f · n_neg))`` negatives, so even 1 % has
both classes. Labels follow the zero-shot convention (``u-ignore, nan-negative``); a finding is probed when train and
test each have at least ``min_positives`` positives. Constant feature columns (in the subsample) are dropped.

Outputs: the long table (one AUC per feature set × finding × fraction × seed), a summary (mean ± sd over seeds) and
a learning-curve figure (mean AUC over findings against the label fraction, ± sd over seeds, one line per feature
set).
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from cxrlens.console import progress
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.probe import ProbeFit, linear_probe_auc, probe_targets

__all__ = [
    "ELIXR_PROBE_FINDINGS",
    "ProbeConfig",
    "learning_curve_figure",
    "run_probes",
    "stratified_subsample",
    "summarize_probes",
]


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """``align probe``.

    Attributes:
        align_run: the ``align train`` artefact whose embeddings (and store) are probed.
        findings: findings probed (empty = every CheXpert finding with enough positives).
        fractions: shares of the training labels used; seeds: number of seeds per fraction.
        sae_run: an SAE run whose codes are probed too ("" = none). C: inverse L2 strength. min_positives: see above.
    """

    align_run: str
    findings: tuple[str, ...] = ()
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: int = 5
    sae_run: str = ""
    C: float = 1.0
    min_positives: int = 5
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise BadInputError(None, f"fractions must lie in (0, 1], got {self.fractions}")
        if self.seeds < 1 or self.C <= 0:
            raise BadInputError(None, "need seeds ≥ 1 and C > 0")


def stratified_subsample(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified subsample: ``max(1, round(f · n_c))`` items of each class ``c`` of ``y``."""
    y = np.asarray(y).astype(bool)
    rng = np.random.default_rng(seed)
    parts = []
    for cls in (True, False):
        idx = np.nonzero(y == cls)[0]
        if len(idx) == 0:
            raise BadInputError(None, "subsampling needs both classes in the training labels")
        parts.append(rng.permutation(idx)[: max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(parts))


def _fit_auc(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, cfg: ProbeConfig) -> float:

    fit = ProbeFit(C=cfg.C, max_iter=cfg.max_iter, scaling="standard", drop_constant=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as is; tiny subsamples often separate
        return linear_probe_auc(x_tr, y_tr, x_te, y_te, fit)


def run_probes(
    features: Mapping[str, np.ndarray],
    labels: pd.DataFrame,
    split: Sequence[str] | np.ndarray,
    cfg: ProbeConfig,
    *,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Probe every feature set; rows of each (N, D) matrix, of ``labels`` and of ``split`` are the same images.

    Returns the long table: ``features, finding, fraction, seed, n_train, n_pos_train, n_test, n_pos_test, auc``.
    """

    split = np.asarray(split).astype(str)
    n = len(split)
    for name, x in features.items():
        if len(x) != n:
            raise BadInputError(None, f"feature set {name!r} has {len(x)} rows, labels have {n}")
    if len(labels) != n:
        raise BadInputError(None, f"{len(labels)} label rows but {n} images")
    findings = list(cfg.findings) or [c for c in labels.columns if c != "No Finding"]
    tasks = []
    for f in findings:
        if f not in labels.columns:
            raise BadInputError(None, f"no label column {f!r}")
        y = probe_targets(labels[f], missing="negative")
        tr = np.nonzero((split == "train") & ~np.isnan(y))[0]
        te = np.nonzero((split == "test") & ~np.isnan(y))[0]
        ok = all(
            (y[rows] == 1).sum() >= cfg.min_positives and (y[rows] == 0).sum() >= cfg.min_positives for rows in (tr, te)
        )
        if ok:
            tasks.append((f, y, tr, te))
    if not tasks:
        raise BadInputError(None, f"no finding has ≥ {cfg.min_positives} positives in both train and test")
    out = []
    total = len(features) * len(tasks) * len(cfg.fractions) * cfg.seeds
    with progress(disable=not show_progress) as bar:
        job = bar.add_task("align probe", total=total)
        for name, x in features.items():
            x = np.asarray(x, dtype=np.float32)
            for f, y, tr, te in tasks:
                for frac in cfg.fractions:
                    for seed in range(cfg.seeds):
                        sub = tr[stratified_subsample(y[tr], frac, seed)]
                        score = _fit_auc(x[sub], y[sub], x[te], y[te], cfg)
                        out.append(
                            {
                                "features": name,
                                "finding": f,
                                "fraction": frac,
                                "seed": seed,
                                "n_train": len(sub),
                                "n_pos_train": int(y[sub].sum()),
                                "n_test": len(te),
                                "n_pos_test": int(y[te].sum()),
                                "auc": score,
                            }
                        )
                        bar.advance(job)
                        if frac == 1.0:  # the full training set is the same for every seed: fit once
                            for s2 in range(seed + 1, cfg.seeds):
                                out.append({**out[-1], "seed": s2})
                                bar.advance(job)
                            break
    return pd.DataFrame(out)


# the five findings of ELIXR's data-efficient classification (for a like-for-like mean)
ELIXR_PROBE_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Pleural Effusion", "Edema")


def summarize_probes(long: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd of AUC over seeds per feature set × finding × fraction, plus ``mean`` (over all probed findings)
    and ``mean (ELIXR 5)`` (over :data:`ELIXR_PROBE_FINDINGS`, when all were probed) rows per set × fraction, their
    sd taken over seeds of the mean."""
    per = long.groupby(["features", "finding", "fraction"])["auc"].agg(["mean", "std"]).reset_index()
    per["std"] = per["std"].fillna(0.0)
    parts = [per]
    groups = {"mean": long}
    if set(ELIXR_PROBE_FINDINGS) <= set(long["finding"]):
        groups["mean (ELIXR 5)"] = long[long["finding"].isin(ELIXR_PROBE_FINDINGS)]
    for label, sub in groups.items():
        mean_seed = sub.groupby(["features", "fraction", "seed"])["auc"].mean().reset_index()
        overall = mean_seed.groupby(["features", "fraction"])["auc"].agg(["mean", "std"]).reset_index()
        overall["std"] = overall["std"].fillna(0.0)
        overall.insert(1, "finding", label)
        parts.append(overall)
    return pd.concat(parts, ignore_index=True).rename(columns={"mean": "auc_mean", "std": "auc_sd"})


def learning_curve_figure(summary: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """PNG: mean AUC over findings vs label fraction (log x), ± sd over seeds, one line per feature set."""

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = summary[summary["finding"] == "mean"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, grp in rows.groupby("features"):
        grp = grp.sort_values("fraction")
        ax.errorbar(grp["fraction"] * 100, grp["auc_mean"], yerr=grp["auc_sd"], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training labels used (%)")
    ax.set_ylabel("mean AUC over findings (test)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_title(title or "Linear probes on frozen embeddings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
