"""Cluster bootstrap: percentile intervals that resample whole studies (or patients), never single images.

The images of one study share one reference report (and one patient's studies share a body), so they are not
independent draws: IU X-ray's test split has 1,525 images from 787 studies. A bootstrap that resamples images treats
them as independent and gives intervals that are too narrow. Every bootstrap interval in cxrlens is therefore
computed here, by the **cluster bootstrap**:

* the *unit* is named (``study``, ``patient`` or ``image``; ``image`` only where no grouping is known); the
  ``n_units`` distinct units of the evaluated set are drawn ``n_units`` times with replacement, and **every image of
  a drawn unit is kept** (a unit drawn twice counts twice, a unit not drawn drops all its images);
* one resample is a vector of integer weights, ``weights_BN[b, i]`` = how often image ``i``'s unit was drawn in
  resample ``b``; a statistic is a function of the weights (a weighted sum for counts such as micro-F1,
  :func:`weighted_auc` for a ranking), so a *paired* comparison (system A − system B) uses the same weights for both;
* the interval is the percentile interval, the ``alpha/2`` and ``1 − alpha/2`` quantiles (numpy's linear
  interpolation) of the resampled statistic; resamples on which the statistic is undefined (NaN, e.g. an AUC on a
  resample with one class only) are redrawn, at most ``max_draws_factor × n_boot`` draws in all, and the result
  says how many resamples the interval rests on.

With one image per unit the cluster bootstrap is the ordinary (image) bootstrap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "UNITS",
    "BootstrapResult",
    "bootstrap_weights",
    "cluster_bootstrap",
    "unit_codes",
    "units_phrase",
    "weighted_auc",
]

UNITS = ("study", "patient", "image")
"""Resampling units, named exactly so in every output (``bootstrap_unit``)."""

_PLURAL = {"study": "studies", "patient": "patients", "image": "images"}
_CHUNK_CELLS = 1 << 22  # weights drawn per chunk: ≤ 4 M int64 (32 MB)


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with its cluster-bootstrap percentile interval.

    Attributes:
        estimate: the statistic on the evaluated set (every weight 1).
        low, high: the ``alpha/2`` and ``1 − alpha/2`` percentiles of the resampled statistic (NaN when there is no
            valid resample or ``n_boot`` is 0).
        unit: what was resampled (``study``, ``patient`` or ``image``).
        n_units: distinct units resampled; n_items: images (rows) they hold.
        n_boot: resamples the interval rests on (valid ones; fewer than asked only when resamples kept failing).
        alpha: 1 − coverage (0.05 → a 95 % interval).
        p_le_0: fraction of resamples whose statistic is ≤ 0 (a one-sided bootstrap p-value for a gap > 0).
    """

    estimate: float
    low: float
    high: float
    unit: str
    n_units: int
    n_items: int
    n_boot: int
    alpha: float
    p_le_0: float

    def ci(self) -> list[float] | None:
        """``[low, high]``, or None when no interval was computed."""
        return None if not np.isfinite(self.low) else [float(self.low), float(self.high)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``estimate, ci95 (or ci<level>), bootstrap_unit, n_units, n_items, n_boot, alpha, p_le_0``."""
        level = round(100 * (1 - self.alpha))
        return {
            "estimate": _finite(self.estimate),
            f"ci{level}": self.ci(),
            "bootstrap_unit": self.unit,
            "n_units": self.n_units,
            "n_items": self.n_items,
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "p_le_0": _finite(self.p_le_0),
        }


def units_phrase(n: int, unit: str) -> str:
    """``units_phrase(787, "study")`` → ``"787 studies"`` (``"1 study"``)."""
    return f"{n:,} {unit if n == 1 else _PLURAL.get(unit, unit + 's')}"


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def unit_codes(groups: Sequence[Any] | np.ndarray | None, n_items: int) -> tuple[np.ndarray, int]:
    """(codes (n_items,) int64 in ``[0, n_units)``, n_units) of the unit of each item; ``None`` = one unit per item.

    Missing group labels (None / NaN / ``""``) are an error: an image without a study cannot be kept with it.
    """
    if groups is None:
        return np.arange(n_items, dtype=np.int64), n_items
    g = pd.Series(list(groups) if not isinstance(groups, np.ndarray) else groups, dtype=object)
    if len(g) != n_items:
        raise ValueError(f"{len(g)} group labels for {n_items} items")
    missing = g.isna() | (g.astype(str).str.strip() == "")
    if missing.any():
        raise ValueError(f"{int(missing.sum())} item(s) have no group label; every image needs its study/patient")
    codes, uniques = pd.factorize(g.astype(str), sort=True)
    return codes.astype(np.int64), len(uniques)


def bootstrap_weights(codes: np.ndarray, n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_items) int64 resample weights: ``n_units`` units drawn with replacement per resample, each image
    weighted by how often its unit was drawn (so the images of a unit always move together)."""
    codes = np.asarray(codes, dtype=np.int64)
    if n_units == 0 or n_boot == 0:
        return np.zeros((n_boot, len(codes)), dtype=np.int64)
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    offset = (np.arange(n_boot, dtype=np.int64) * n_units)[:, None]
    counts = np.bincount((draws + offset).ravel(), minlength=n_boot * n_units).reshape(n_boot, n_units)
    return counts[:, codes]


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    unit: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    max_draws_factor: int = 10,
) -> BootstrapResult:
    """Cluster-bootstrap percentile interval of ``statistic`` (definitions: module docstring).

    Args:
        statistic: maps weights (B, n_items) int64 → (B,) float values (NaN = undefined on that resample). It is
            called once with a row of ones for the point estimate.
        n_items: number of images (rows) the statistic is computed over.
        groups: (n_items,) unit label of each image (study or patient id); ``None`` = each image its own unit.
        unit: the unit's name for the record; default ``"image"`` when ``groups`` is None, else required.
        n_boot: resamples wanted (0 = point estimate only); seed: generator seed; alpha: 1 − coverage.
        max_draws_factor: at most this many × ``n_boot`` resamples are drawn while redrawing undefined ones.
    """
    if unit is None:
        if groups is not None:
            raise ValueError("name the unit (study, patient …) that the groups are")
        unit = "image"
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be ≥ 0, got {n_boot}")
    codes, n_units = unit_codes(groups, n_items)
    estimate = float(np.asarray(statistic(np.ones((1, n_items), dtype=np.int64)), dtype=np.float64).reshape(-1)[0])
    nan = float("nan")
    if n_boot == 0 or n_items == 0:
        return BootstrapResult(estimate, nan, nan, unit, n_units, n_items, 0, alpha, nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_CELLS // max(n_items, n_units, 1)))
    kept: list[np.ndarray] = []
    n_kept = drawn = 0
    while n_kept < n_boot and drawn < max_draws_factor * n_boot:
        weights = bootstrap_weights(codes, n_units, chunk, rng)
        drawn += chunk
        values = np.asarray(statistic(weights), dtype=np.float64).reshape(-1)
        if values.shape != (chunk,):
            raise ValueError(f"statistic returned shape {values.shape} for {chunk} resamples")
        values = values[np.isfinite(values)]
        kept.append(values)
        n_kept += len(values)
    stats = np.concatenate(kept)[:n_boot] if kept else np.zeros(0)
    if len(stats) == 0:
        return BootstrapResult(estimate, nan, nan, unit, n_units, n_items, 0, alpha, nan)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(
        estimate, float(low), float(high), unit, n_units, n_items, len(stats), alpha, float((stats <= 0).mean())
    )


def weighted_auc(y_true: np.ndarray, score: np.ndarray, weights_BN: np.ndarray) -> np.ndarray:
    """ROC AUC of each weighted sample: (B,) float64, NaN where a resample has no positive or no negative weight.

    Mann–Whitney with integer (or any non-negative) weights: an image of weight w counts as w copies, ties count
    one half, so with weights 0/1/2 … it is exactly the AUC of the expanded resample (and equals
    ``sklearn.metrics.roc_auc_score(y, score, sample_weight=w)``).

    Args:
        y_true: (N,) bool/0-1 labels; score: (N,) finite scores; weights_BN: (B, N) or (N,) non-negative weights.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights_BN, dtype=np.float64))
    if y.ndim != 1 or s.shape != y.shape or w.shape[1] != len(y):
        raise ValueError(f"labels {y.shape}, scores {s.shape} and weights {w.shape} do not line up")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], w[:, order]
    if len(s) == 0:
        return np.full(w.shape[0], np.nan)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first item of each tie block (scores sorted)
    block = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # (N,) tie block of each item
    block_w = np.add.reduceat(w, starts, axis=1)  # (B, n_blocks) weight in each tie block
    below = np.cumsum(block_w, axis=1) - block_w  # weight strictly below each block
    mid_rank = below + (block_w + 1) / 2  # (B, n_blocks) average rank of a copy in the block (1-based)
    w_pos = (w * y).sum(1)
    w_neg = (w * ~y).sum(1)
    rank_sum = (w * y * mid_rank[:, block]).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rank_sum - w_pos * (w_pos + 1) / 2) / (w_pos * w_neg)
    return np.where((w_pos > 0) & (w_neg > 0), out, np.nan)
