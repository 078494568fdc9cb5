"""Calibrated linear heads on frozen image features — the image side of question answering and report checking.

An image is described by six pooled views of one backbone layer (:func:`image_features`): the pooled token, the
mean of all patch tokens, and the means of the four quadrants of the patch grid (image-left/right × upper/lower),
6·D values — the quadrants keep where a finding is, which a side question needs.

Every question the model answers is one head on that vector:

* ``presence/<finding>`` and ``device/<device>``: binary — is it there?
* ``normal``: binary — no certain finding at all;
* ``side/<finding>``, ``device_side/<device>``: left / right (/ bilateral) among images where it is present;
* ``severity/<finding>``: small / moderate / large among images where it is present.

Each head is an L2 logistic regression (z-scored on its training rows, balanced class weights) fit on ``train``,
then **calibrated on ``val``**: Platt scaling (a, b on the logit) for binary heads, one temperature for multi-class
heads; the decision threshold of a binary head is the val threshold of best balanced accuracy (Youden's J), so a
rare finding is not always answered "no". Test is never used to fit or choose.

Because a head is linear in the patch and quadrant means, the difference between its logit on an image and on the
same image with the patch tokens of the mean training image splits exactly into one contribution per patch token
(:meth:`LinearHead.token_map`) — a class activation map of what the answer rests on, with no gradient needed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from cxrlens.errors import BadInputError

__all__ = ["LinearHead", "expected_calibration_error", "fit_head", "image_features", "region_masks"]


def region_masks(grid: tuple[int, int]) -> np.ndarray:
    """(5, T) boolean masks of the regions averaged by :func:`image_features`: all tokens, then the quadrants
    image-left-upper, image-right-upper, image-left-lower, image-right-lower of an ``(h, w)`` grid (row-major
    tokens; the middle row/column of an odd grid goes to the lower/right quadrant)."""
    h, w = grid
    row, col = np.repeat(np.arange(h), w), np.tile(np.arange(w), h)
    left, upper = col < w // 2, row < h // 2
    return np.stack([np.ones(h * w, bool), left & upper, ~left & upper, left & ~upper, ~left & ~upper])


def image_features(pooled_ND: np.ndarray, patch_NTD: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, 6·D) float32 ``[pooled, mean patch, 4 quadrant means]`` (quadrant order of :func:`region_masks`).

    Args:
        pooled_ND: (N, D) pooled token (CLS, or the mean token when the backbone has none).
        patch_NTD: (N, T, D) patch tokens, row-major over ``grid`` (T = h·w; h, w ≥ 2).
    """
    if patch_NTD.ndim != 3 or patch_NTD.shape[1] != grid[0] * grid[1] or min(grid) < 2:
        raise BadInputError(
            None, f"patch tokens {tuple(patch_NTD.shape)} do not match a {grid[0]}x{grid[1]} grid (need at least 2x2)"
        )
    p = patch_NTD.astype(np.float32, copy=False)
    parts = [pooled_ND.astype(np.float32)] + [p[:, m].mean(1) for m in region_masks(grid)]
    return np.concatenate(parts, axis=1).astype(np.float32)


@dataclasses.dataclass
class LinearHead:
    """A fitted, calibrated logistic head on :func:`image_features` rows.

    Attributes:
        name: ``presence/Pleural Effusion`` …; classes: class names (binary heads: ``("no", "yes")``).
        mean_F, scale_F: z-scoring of the training rows. coef_KF, intercept_K: logistic regression
            (K = 1 for binary heads: the logit of "yes").
        platt: (a, b) for two-class heads — p = σ(a·logit + b); temperature: for heads of ≥ 3 classes.
        threshold: presence (``no``/``yes``) heads: calibrated-probability cut-off chosen on val (best balanced
            accuracy); every other head is decided by its most probable class.
        n_train: training rows per class; val: val metrics (``auc`` or ``accuracy``, ``ece``, ``n``).
    """

    name: str
    classes: tuple[str, ...]
    mean_F: np.ndarray
    scale_F: np.ndarray
    coef_KF: np.ndarray
    intercept_K: np.ndarray
    platt: tuple[float, float] = (1.0, 0.0)
    temperature: float = 1.0
    threshold: float = 0.5
    n_train: dict[str, int] = dataclasses.field(default_factory=dict)
    val: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def logits(self, X_NF: np.ndarray) -> np.ndarray:
        """(N, K) raw logits (K = 1 for binary heads)."""
        z = (np.asarray(X_NF, np.float64) - self.mean_F) / self.scale_F
        return z @ self.coef_KF.T + self.intercept_K

    def proba(self, X_NF: np.ndarray) -> np.ndarray:
        """(N, K) calibrated class probabilities; binary heads give (N,) P(yes)."""
        lg = self.logits(X_NF)
        if self.binary:
            a, b = self.platt
            return _sigmoid(a * lg[:, 0] + b)
        return _softmax(lg / self.temperature)

    @property
    def yes_no(self) -> bool:
        """A presence head (classes ``no``/``yes``): decided by its val threshold; other heads by the argmax."""
        return self.classes == ("no", "yes")

    def class_proba(self, X_NF: np.ndarray) -> np.ndarray:
        """(N, K) calibrated class probabilities for every head (binary: ``[1 − p, p]``)."""
        p = self.proba(X_NF)
        return np.stack([1 - p, p], 1) if self.binary else p

    def token_map(
        self, patch_TD: np.ndarray, grid: tuple[int, int], baseline_TD: np.ndarray | None = None
    ) -> np.ndarray:
        """(T,) contribution of each patch token to a binary head's raw logit, relative to ``baseline_TD`` (the
        mean training image's tokens; zeros when None). Exact: the map sums to ``logit(image) − logit(image with
        its patch tokens replaced by the baseline)``. Positive = pushes towards "yes". Against the mean image, a
        position whose token looks like it usually does contributes ~0 — anatomy that every image shares does not
        light up."""
        if not self.binary:
            raise ValueError(f"{self.name}: token maps are defined for binary heads")
        T, D = patch_TD.shape
        w = self.coef_KF[0] / self.scale_F
        per = np.zeros((T, D))
        for r, m in enumerate(region_masks(grid)):  # region r's mean has weights w[(r+1)·D : (r+2)·D]
            per[m] += w[(r + 1) * D : (r + 2) * D] / m.sum()
        delta = patch_TD.astype(np.float64) - (0.0 if baseline_TD is None else baseline_TD)
        return (per * delta).sum(1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def expected_calibration_error(p_N: np.ndarray, correct_N: np.ndarray, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width confidence bins: Σ_b |acc_b − conf_b|·n_b/n."""
    p_N, correct_N = np.asarray(p_N, float), np.asarray(correct_N, float)
    idx = np.minimum((p_N * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(correct_N[idx == b].mean() - p_N[idx == b].mean()) * (idx == b).mean()
            for b in range(bins)
            if (idx == b).any()
        )
    )


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else math.nan


def fit_head(
    name: str,
    classes: Sequence[str],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    Cs: Sequence[float] = (0.05, 0.5),
) -> LinearHead:
    """Fit one head on train (integer class ids into ``classes``) for each inverse penalty in ``Cs``, calibrate
    each on val and keep the one with the best val AUC (binary) or accuracy (multi-class; the first C on ties or
    when val has one class only).

    Raises:
        BadInputError: a class has no training row.
    """
    classes = tuple(classes)
    K = len(classes)
    counts = np.bincount(y_train, minlength=K)
    if (counts == 0).any():
        raise BadInputError(
            None,
            f"{name}: no training rows for class(es) "
            f"{', '.join(c for c, n in zip(classes, counts, strict=True) if n == 0)}",
        )
    mean = X_train.mean(0).astype(np.float64)
    scale = X_train.std(0).astype(np.float64)
    scale[scale < 1e-8] = 1.0
    z = (X_train - mean) / scale
    best: LinearHead | None = None
    # presence heads keep balanced weights (their val threshold sets the operating point); a side or severity head
    # is decided by its argmax, so whether to balance the classes is chosen on val like C
    weights = ("balanced",) if classes == ("no", "yes") else ("balanced", None)
    for C, cw in itertools.product(Cs, weights):
        clf = LogisticRegression(C=C, class_weight=cw, max_iter=2000).fit(z, y_train)
        head = LinearHead(
            name,
            classes,
            mean,
            scale,
            clf.coef_.astype(np.float64),
            clf.intercept_.astype(np.float64),
            n_train={c: int(n) for c, n in zip(classes, counts, strict=True)},
        )
        head.val |= {"C": float(C), "balanced": float(cw is not None)}
        if len(y_val) and len(np.unique(y_val)) > 1:
            _calibrate(head, X_val, y_val)
        key = "auc" if head.yes_no else "accuracy"
        if best is None or head.val.get(key, -1.0) > best.val.get(key, -1.0):
            best = head
    assert best is not None
    return best


def _calibrate(head: LinearHead, X_val: np.ndarray, y_val: np.ndarray) -> None:
    lg = head.logits(X_val)
    if head.binary:
        s = lg[:, 0]
        cal = LogisticRegression(C=1e4, max_iter=1000).fit(s[:, None], y_val)
        head.platt = (float(cal.coef_[0, 0]), float(cal.intercept_[0]))
    if head.yes_no:
        p = head.proba(X_val)
        head.threshold = _youden_threshold(y_val, p)
        pred = p >= head.threshold
        conf = np.where(pred, p, 1 - p)
        head.val |= {
            "auc": _binary_auc(y_val, p),
            "ece": expected_calibration_error(conf, pred == y_val.astype(bool)),
            "n": float(len(y_val)),
            "positives": float(y_val.sum()),
        }
        return

    def nll(log_t: float) -> float:
        p = _softmax(lg / math.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(y_val)), y_val], 1e-12, None)).mean())

    if not head.binary:
        head.temperature = float(math.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))
    p = head.class_proba(X_val)
    pred = p.argmax(1)
    head.val |= {
        "accuracy": float((pred == y_val).mean()),
        "ece": expected_calibration_error(p.max(1), pred == y_val),
        "n": float(len(y_val)),
    }


def _youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut-off with the best balanced accuracy on (y, p) (midpoint between neighbouring scores)."""
    order = np.unique(p)
    if len(order) < 2:
        return 0.5
    cuts = np.concatenate([[order[0] - 1e-9], (order[:-1] + order[1:]) / 2])
    pos, neg = y == 1, y == 0
    best, best_cut = -1.0, 0.5
    for c in cuts:
        pred = p >= c
        ba = 0.5 * (pred[pos].mean() + (~pred[neg]).mean())
        if ba > best:
            best, best_cut = ba, float(c)
    return best_cut
