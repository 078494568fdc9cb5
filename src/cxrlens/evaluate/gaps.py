"""Gaps between cxrlens and each baseline, with paired cluster-bootstrap intervals (:data:`GAP_METRICS`).

A gap metric is computed from per-image counts (TP / FP / FN, per label for the macro), so one resample is a
weighted sum: :func:`statistic`. Intervals resample ``bootstrap_unit`` studies or patients
(:func:`cxrlens.evaluate.bootstrap.cluster_bootstrap`), the same draws for both systems of a gap."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cxrlens.console import progress
from cxrlens.evaluate.bootstrap import BootstrapResult, cluster_bootstrap
from cxrlens.evaluate.clinical import ratio
from cxrlens.evaluate.names import GAP_METRICS

__all__ = ["gap_intervals", "headline_gaps", "statistic"]


class _BootstrapSettings(Protocol):
    bootstrap_unit: str
    bootstrap: int
    seed: int


def statistic(kind: str, counts: tuple[np.ndarray, ...], weights_BN: np.ndarray) -> np.ndarray:
    """(B,) value of a gap metric on weighted images, from per-image counts (each (n,) or (n, L)).

    ``micro_f1``: 2·TP / (2·TP + FP + FN) of the weighted sums (0 when nothing is positive anywhere);
    ``macro_f1``: per-label F1 of the weighted sums, 0/0 → 0, averaged over all labels; ``fp_share``:
    FP / (TP + FP) (NaN when nothing is claimed: the resample is redrawn).
    """
    w = np.asarray(weights_BN, dtype=np.float64)
    sums = [w @ np.asarray(c, dtype=np.float64) for c in counts]
    if kind == "micro_f1":
        tp, fp, fn = sums
        return ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    if kind == "macro_f1":
        tp, fp, fn = sums
        return ratio(2 * tp, 2 * tp + fp + fn, 0.0).mean(axis=1)
    if kind == "fp_share":
        tp, fp = sums[:2]
        return ratio(fp, tp + fp, np.nan)
    raise ValueError(f"unknown statistic {kind!r}")


def _interval(
    kind: str,
    a: tuple[np.ndarray, ...],
    b: tuple[np.ndarray, ...] | None,
    groups: np.ndarray,
    config: _BootstrapSettings,
) -> BootstrapResult:
    """Cluster-bootstrap interval of metric ``kind`` of system ``a`` (``b`` None) or of the paired gap a − b."""

    def stat(w: np.ndarray) -> np.ndarray:
        value = statistic(kind, a, w)
        return value if b is None else value - statistic(kind, b, w)

    return cluster_bootstrap(
        stat, len(groups), groups=groups, unit=config.bootstrap_unit, n_boot=config.bootstrap, seed=config.seed
    )


def gap_intervals(
    sufficient: dict[str, dict[str, tuple[np.ndarray, ...]]],
    compared: list[str],
    groups: np.ndarray,
    config: _BootstrapSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[str, str], float]]:
    """Cluster-bootstrap interval of every gap metric for every system, and of the paired gap cxrlens − baseline
    for each ``compared`` baseline: (gap rows, interval rows, {(system, metric): value on the evaluated set})."""
    gap_rows: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    point: dict[tuple[str, str], float] = {}  # (system, gap metric) → value on the evaluated set
    with progress(transient=True) as bar:
        task = bar.add_task(f"bootstrap ({config.bootstrap_unit}s)", total=len(GAP_METRICS) * (1 + len(sufficient)))
        for _family, metric, kind, lower, label in GAP_METRICS:
            if metric not in sufficient["cxrlens"]:
                continue
            for name in sufficient:
                res = _interval(kind, sufficient[name][metric], None, groups, config)
                point[name, metric] = res.estimate
                intervals.append(
                    {"metric": metric, "label": label, "system": name, "value": res.estimate, "ci95": res.ci()}
                )
                bar.advance(task)
            for name in compared:
                res = _interval(kind, sufficient["cxrlens"][metric], sufficient[name][metric], groups, config)
                gap_rows.append(
                    {
                        "metric": metric,
                        "label": label,
                        "lower_is_better": lower,
                        "baseline": name,
                        "cxrlens": point["cxrlens", metric],
                        "baseline_value": point[name, metric],
                        "gap": res.estimate,
                        "ci95": res.ci(),
                        "p_le_0": res.p_le_0,
                        "bootstrap": res.n_boot,
                    }
                )
                bar.advance(task)
    return gap_rows, intervals, point


def headline_gaps(
    gap_rows: list[dict[str, Any]], point: dict[tuple[str, str], float], config: _BootstrapSettings, n_units: int
) -> dict[str, Any]:
    """The headline metric's value for cxrlens and its gap to each baseline (``metrics.json`` ``gaps``)."""
    head_metric = GAP_METRICS[0][1]
    head_rows = [r for r in gap_rows if r["metric"] == head_metric]
    return {
        "metric": head_metric,
        "cxrlens": point["cxrlens", head_metric],
        "bootstrap_unit": config.bootstrap_unit,
        "n_units": n_units,
        "vs": {
            r["baseline"]: {
                "baseline": r["baseline_value"],
                "gap": r["gap"],
                "ci95": r["ci95"],
                "p_le_0": r["p_le_0"],
                "bootstrap": r["bootstrap"],
                "bootstrap_unit": config.bootstrap_unit,
                "n_units": n_units,
            }
            for r in head_rows
        },
    }
