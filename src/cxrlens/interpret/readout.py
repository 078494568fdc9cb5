"""The finding readout: which findings a report states, decided from a handful of SAE features per finding.

SAE-Rad states a feature's description whenever the feature fires. On the iu-phantom benchmark that loses to
copying the nearest training report: a feature's description names at best one finding, most features describe
nothing, and nothing checks that a sentence is right more often than chance where its feature fires. The readout
makes the decision quantitative and keeps it tied to features:

* **Per finding L, a sparse logistic model over SAE codes** fitted on the ``train`` split (images; the label is the
  report's CheXpert label with uncertain → positive and not mentioned → negative). Only the ``candidates`` features
  whose activation best separates L on train (ROC AUC furthest from 0.5) enter, and the L1 penalty keeps few of
  them, so the evidence of a sentence is a short list of features with their weights. Features the confound check
  marked ``confounded`` are never candidates.
* **Chosen on val, never on test**: the penalty ``C`` and the decision threshold maximise F-beta on the
  ``calibrate`` split (``val``). A finding is **kept** only when its val F-beta beats stating it for every image
  (the base-rate F-beta, ``(1 + β²)·p / (β² + p)`` with ``p`` the val prevalence) and the images it is stated for
  are enriched for it (one-sided Fisher exact test, p ≤ 0.05); otherwise it is never stated. β itself is chosen
  on val too, against the baseline the reports must beat — copying the nearest training image's labels: of
  ``betas``, the one whose **worse** margin over that baseline, in val micro precision (fewer hallucinated
  findings) or in val micro F1 (over all stated findings), is largest. A report must beat retrieval on both, so
  the β with the widest worst-case margin is the one least likely to lose either on new studies. The readout's
  val figures are cross-fitted (thresholds chosen on one half of the val patients, counted on the other).
* **Negatives from evidence**: L is stated absent when its score lies below the largest cutoff at which at least
  ``negative_npv`` of the val images below it are L-negative (and at least half the val negatives are covered);
  findings where no such cutoff exists are left unsaid.

Everything is stored in ``readout.safetensors`` (weights ``(L, F)`` in code units, bias, thresholds) and
``readout.parquet`` (one row per finding: kept, C, features used, val P/R/F-beta, base rate, negative cutoff, why a
finding was dropped), so :mod:`cxrlens.report.compile` needs no sklearn at report time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.numpy import save
from scipy.stats import fisher_exact, rankdata
from sklearn.linear_model import LogisticRegression

from cxrlens.data.reports import states_change
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_parquet

__all__ = [
    "READOUT_FILES",
    "READOUT_LABELS",
    "FindingReadout",
    "ReadoutConfig",
    "finding_sentences",
    "fit_readout",
    "label_targets",
]

READOUT_FILES = ("readout.safetensors", "readout.parquet")
BASELINES = ("nearest", "none")
READOUT_LABELS: tuple[str, ...] = tuple(CHEXPERT_LABELS[1:])  # the 13 findings ("No Finding" is their absence)


@dataclasses.dataclass(frozen=True)
class ReadoutConfig:
    """How the finding readout is fitted.

    Attributes:
        candidates: features per finding that enter the logistic model (highest |train AUC − 0.5|).
        Cs: L1 inverse penalties tried; the one with the best val F-beta is kept.
        betas: F-beta weights of the val choice of C and threshold (1 = F1; < 1 favours precision, i.e. fewer
            hallucinated findings). With a ``baseline`` (:func:`fit_readout`) the readout uses the β whose smaller
            margin over it — val micro precision or val micro F1 — is largest (ties: the earlier β); without
            one, the first.
        baseline: where :func:`cxrlens.interpret.run.run_interpret` takes that baseline from: ``"nearest"`` =
            label-level micro precision / recall on val of copying the nearest training image's report (cosine on
            an image-level stream of the same store, other patients only); ``"none"`` = no baseline.
        min_positive: findings with fewer train or val positives are not fitted.
        negative_npv: val negative predictive value a "no <finding>" statement must reach.
        max_evidence: at most this many features are listed as a sentence's evidence.
    """

    candidates: int = 64
    Cs: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    betas: tuple[float, ...] = (1.0, 0.85, 0.7, 0.6, 0.5)
    baseline: str = "nearest"
    min_positive: int = 2
    negative_npv: float = 0.97
    max_evidence: int = 5

    def __post_init__(self) -> None:
        if self.candidates < 1 or not self.Cs or not self.betas or min(self.betas) <= 0:
            raise BadInputError(None, "readout: candidates ≥ 1, at least one C and betas > 0 are required")
        if self.baseline not in BASELINES:
            raise BadInputError(None, f"readout: baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if not 0.5 <= self.negative_npv <= 1.0:
            raise BadInputError(None, f"readout: negative_npv must lie in [0.5, 1], got {self.negative_npv}")


def label_targets(labels: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """(N, L) {0, 1}: CheXpert values with uncertain (−1) → 1, positive → 1, negative and not mentioned → 0."""
    values = labels.reindex(columns=list(names)).to_numpy(dtype=float)
    return (np.nan_to_num(values, nan=0.0) != 0).astype(np.int8)


def _fbeta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * fn + fp
    return np.where(den > 0, (1 + b2) * tp / np.maximum(den, 1e-12), 0.0)


def _best_threshold(score: np.ndarray, y: np.ndarray, beta: float) -> tuple[float, float, float, float]:
    """(threshold, F-beta, precision, recall) maximising F-beta when stating ``score ≥ threshold``."""
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order].astype(float)
    tp = np.cumsum(t)
    fp = np.cumsum(1 - t)
    fn = t.sum() - tp
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    f = np.where(last, _fbeta(tp, fp, fn, beta), -1.0)
    k = int(np.argmax(f))
    prec = tp[k] / max(tp[k] + fp[k], 1.0)
    rec = tp[k] / max(t.sum(), 1.0)
    cut = (s[k] + s[k + 1]) / 2 if k + 1 < len(s) else s[k] - 1e-3 * max(abs(s[k]), 1.0)  # midway: rounding-safe
    return float(cut), float(f[k]), float(prec), float(rec)


def _negative_cutoff(score: np.ndarray, y: np.ndarray, npv: float) -> float:
    """The largest score cutoff c such that the val images with score < c are ≥ ``npv`` negative and cover at least
    half of the negatives; −inf when none."""
    order = np.argsort(score, kind="stable")
    s, neg = score[order], 1 - y[order].astype(float)
    covered = np.cumsum(neg)
    frac = covered / np.arange(1, len(s) + 1)
    ok = (frac >= npv) & (covered >= 0.5 * max(neg.sum(), 1.0)) & np.r_[s[1:] != s[:-1], True]
    if not ok.any():
        return float("-inf")
    k = int(np.flatnonzero(ok)[-1])
    return float((s[k] + s[k + 1]) / 2) if k + 1 < len(s) else float(s[k] + 1e-3 * max(abs(s[k]), 1.0))


def _ranks(codes_NF: np.ndarray) -> np.ndarray:
    """(N, F) column-wise ranks (ties averaged) for :func:`_auc_columns`."""

    return rankdata(codes_NF, axis=0)


def _auc_columns(codes_NF: np.ndarray, y_N: np.ndarray, ranks_NF: np.ndarray | None = None) -> np.ndarray:
    """(F,) ROC AUC of each column for binary ``y`` (rank formula, ties averaged; 0.5 for constant columns);
    ``ranks_NF``: the columns' ranks when already computed (:func:`_ranks`)."""
    pos = y_N.astype(bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return np.full(codes_NF.shape[1], 0.5)
    ranks = _ranks(codes_NF) if ranks_NF is None else ranks_NF
    auc = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where(codes_NF.std(0) > 0, auc, 0.5)


@dataclasses.dataclass(frozen=True)
class FindingReadout:
    """A fitted readout (see the module docstring).

    Attributes:
        labels: (L,) finding names; weights_LF: (L, F) float32 logistic weights on raw SAE codes (0 = unused);
        bias_L: (L,); threshold_L: (L,) decision thresholds on the logit (+inf = never stated);
        negative_L: (L,) "stated absent below this logit" (−inf = never stated absent);
        table: one row per finding (see :func:`fit_readout`).
    """

    labels: tuple[str, ...]
    weights_LF: np.ndarray
    bias_L: np.ndarray
    threshold_L: np.ndarray
    negative_L: np.ndarray
    table: pd.DataFrame
    beta_choice: dict | None = None  # {"beta", "baseline", "tried": [{beta, precision, recall, f1, margin, kept}]}

    def logits(self, codes_NF: np.ndarray) -> np.ndarray:
        """(N, L) logits of every finding for codes ``(N, F)`` (or ``(F,)`` → ``(L,)``)."""
        codes = np.asarray(codes_NF, np.float32)
        return codes @ self.weights_LF.T + self.bias_L

    def stated(self, codes_NF: np.ndarray) -> np.ndarray:
        """(N, L) int8: 1 stated present, 0 stated absent, −1 not stated."""
        z = self.logits(codes_NF)
        out = np.full(z.shape, -1, np.int8)
        out[z < self.negative_L] = 0
        out[z >= self.threshold_L] = 1
        return out

    def evidence(self, codes_F: np.ndarray, label: int, k: int = 5) -> list[tuple[int, float]]:
        """Up to k (feature, contribution = weight × activation) pairs that push finding ``label`` towards present,
        largest first (only features active on this image, positive contributions)."""
        c = self.weights_LF[label] * np.asarray(codes_F, np.float32)
        idx = np.flatnonzero(c > 0)
        idx = idx[np.argsort(-c[idx], kind="stable")][:k]
        return [(int(f), float(c[f])) for f in idx]

    def sentences(self) -> dict[str, tuple[str, str]]:
        """finding → (present sentence, absent sentence) from the table (see :func:`finding_sentences`)."""
        t = self.table
        if "positive_sentence" not in t.columns:
            return {}
        return {str(r.label): (str(r.positive_sentence), str(r.negative_sentence)) for r in t.itertuples()}

    def save(self, directory: Path) -> None:

        tensors = {
            "weights": self.weights_LF.astype(np.float32),
            "bias": self.bias_L.astype(np.float32),
            "threshold": self.threshold_L.astype(np.float32),
            "negative": self.negative_L.astype(np.float32),
        }
        meta = {"labels": json.dumps(list(self.labels)), "beta_choice": json.dumps(self.beta_choice)}
        atomic_write_bytes(directory / READOUT_FILES[0], save(tensors, metadata=meta))
        atomic_write_parquet(directory / READOUT_FILES[1], self.table)

    @classmethod
    def load(cls, directory: Path) -> FindingReadout:

        path = directory / READOUT_FILES[0]
        if not path.exists() or not (directory / READOUT_FILES[1]).exists():
            raise BadInputError(path, "no finding readout in this interpretation run (re-run `cxrlens interpret`)")
        with safe_open(str(path), "numpy") as f:
            meta = f.metadata() or {}
            labels = tuple(json.loads(meta.get("labels", "[]")))
            choice = json.loads(meta.get("beta_choice", "null"))
            t = {k: f.get_tensor(k) for k in ("weights", "bias", "threshold", "negative")}
        if len(labels) != t["weights"].shape[0]:
            raise BadInputError(path, "readout labels and weights disagree")
        table = pd.read_parquet(directory / READOUT_FILES[1])
        return cls(labels, t["weights"], t["bias"], t["threshold"], t["negative"], table, choice)


def fit_readout(
    codes_train_NF: np.ndarray,
    y_train_NL: np.ndarray,
    codes_val_NF: np.ndarray,
    y_val_NL: np.ndarray,
    labels: Sequence[str],
    config: ReadoutConfig | None = None,
    *,
    exclude: Sequence[int] = (),
    baseline: Mapping[str, float] | None = None,
    val_groups: Sequence[str] | None = None,
) -> FindingReadout:
    """Fit the readout on train codes/labels and choose β, C and thresholds on val (see the module docstring).

    Args:
        codes_train_NF / codes_val_NF: SAE codes (N, F); y_*_NL: (N, L) {0, 1} targets (:func:`label_targets`).
        labels: (L,) finding names; exclude: features never used (e.g. confounded ones).
        baseline: ``{"precision": p, "recall": r}`` — val micro precision and recall (over all stated findings)
            of the system to beat; the chosen β maximises ``min(P − p, F1 − F1(p, r))`` over ``config.betas``.
            None = the first β. Each β's P and F1 are **cross-fitted** (thresholds chosen on one half of val,
            counted on the other, both ways), since a threshold scored on the images it was chosen on looks better
            than it is.
        val_groups: (N_val,) e.g. patient ids, kept within one half of val (default: each image its own group).

    ``table`` columns: ``label, kept, reason, C, n_features, val_fbeta, val_precision, val_recall, base_rate,
    base_fbeta, negative_cutoff, val_negative_coverage, train_positive, val_positive, beta``; ``beta_choice`` the
    val micro precision / recall of every β tried and the one used.
    """

    cfg = config or ReadoutConfig()
    Xtr, Xva = np.asarray(codes_train_NF, np.float32), np.asarray(codes_val_NF, np.float32)
    ytr, yva = np.asarray(y_train_NL).astype(int), np.asarray(y_val_NL).astype(int)
    L, F = len(labels), Xtr.shape[1]
    if ytr.shape != (len(Xtr), L) or yva.shape != (len(Xva), L) or Xva.shape[1] != F:
        raise BadInputError(None, "readout: codes and targets do not line up")
    scale = Xtr.std(0) + 1e-6  # the penalty sees unit-variance features
    usable = np.ones(F, bool)
    usable[list(exclude)] = False
    usable &= Xtr.std(0) > 0
    ranks = _ranks(Xtr[:, usable])  # label-free: ranked once, every finding's AUCs read from them

    fits = [  # not threaded: liblinear seeds one process-wide C RNG (srand)
        _fit_label(Xtr, ytr[:, j], Xva, yva[:, j], usable, ranks, scale, cfg) for j in range(L)
    ]
    tried = _score_betas(fits, yva, cfg, baseline, _val_folds(len(yva), val_groups))
    pick = tried[0]
    if baseline is not None:  # max(): the first of equal margins; a NaN margin (nothing stated) never wins
        pick = max(tried, key=lambda t: np.nan_to_num(t["margin"], nan=-np.inf))
    return _assemble(labels, pick, tried, ytr, yva, scale, cfg, baseline)


_Fit = tuple[float, np.ndarray, object, np.ndarray]  # (C, candidate features, classifier, val decision values)


def _fit_label(
    Xtr: np.ndarray,
    ytr: np.ndarray,
    Xva: np.ndarray,
    yva: np.ndarray,
    usable: np.ndarray,
    ranks: np.ndarray,
    scale: np.ndarray,
    cfg: ReadoutConfig,
) -> list[_Fit] | str:
    """One finding's L1 logistic fits, one per ``cfg.Cs`` on its ``cfg.candidates`` most label-associated
    features (train AUC furthest from 0.5), or the reason it gets none."""
    npos_tr, npos_va = int(ytr.sum()), int(yva.sum())
    if min(npos_tr, npos_va) < max(cfg.min_positive, 1) or npos_tr == len(ytr):
        return f"too few positives (train {npos_tr}, val {npos_va})"
    auc = _auc_columns(Xtr[:, usable], ytr, ranks)
    cand = np.flatnonzero(usable)[np.argsort(-np.abs(auc - 0.5), kind="stable")[: cfg.candidates]]
    per_c = []
    for C in cfg.Cs:  # the logistic fits do not depend on β: fitted once, chosen per β below
        clf = LogisticRegression(  # liblinear's coordinate descent is seeded, not drawn from the global RNG
            C=C, l1_ratio=1.0, solver="liblinear", tol=1e-3, max_iter=2000, class_weight="balanced", random_state=0
        )
        clf.fit(Xtr[:, cand] / scale[cand], ytr)
        if np.any(clf.coef_):
            per_c.append((C, cand, clf, clf.decision_function(Xva[:, cand] / scale[cand])))
    return per_c or "no feature survives the L1 penalty"


def _score_betas(
    fits: list[list[_Fit] | str],
    yva: np.ndarray,
    cfg: ReadoutConfig,
    baseline: Mapping[str, float] | None,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> list[dict]:
    """For every β: the per-finding choice on all of val, and the cross-fitted val micro precision / recall / F1
    (thresholds chosen on one half of val, counted on the other) with the margin over ``baseline``."""
    tried = []
    for beta in cfg.betas:
        choice = [_choose(f, yva[:, j], beta) for j, f in enumerate(fits)]  # what is used: all of val
        tp = fp = fn = 0
        for j, f in enumerate(fits):
            for fit_rows, score_rows in folds:
                c = _choose(_subset(f, fit_rows), yva[fit_rows, j], beta)
                stated = np.zeros(len(score_rows), bool)
                if c.get("kept"):
                    stated = next(s for C, _, _, s in f if c["C"] == C)[score_rows] >= c["t"]
                truth = yva[score_rows, j] == 1
                tp, fp, fn = (
                    tp + int((stated & truth).sum()),
                    fp + int((stated & ~truth).sum()),
                    fn + int((~stated & truth).sum()),
                )
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / max(tp + fn, 1)
        entry = {"beta": beta, "precision": prec, "recall": rec, "f1": _f1(prec, rec)}
        if baseline is not None:
            base_f1 = _f1(baseline["precision"], baseline["recall"])
            entry["margin"] = min(prec - baseline["precision"], entry["f1"] - base_f1)
        tried.append({**entry, "kept": sum(bool(c.get("kept")) for c in choice), "choice": choice})
    return tried


def _assemble(
    labels: Sequence[str],
    pick: dict,
    tried: list[dict],
    ytr: np.ndarray,
    yva: np.ndarray,
    scale: np.ndarray,
    cfg: ReadoutConfig,
    baseline: Mapping[str, float] | None,
) -> FindingReadout:
    """The readout of the chosen β: weights in raw code units, bias, thresholds, negative cut-offs, the table."""
    L, F = len(labels), len(scale)
    W = np.zeros((L, F), np.float32)
    bias = np.zeros(L, np.float32)
    thr = np.full(L, np.inf, np.float32)
    neg = np.full(L, -np.inf, np.float32)
    b2 = pick["beta"] ** 2
    rows = []
    for j, name in enumerate(labels):
        npos_tr, npos_va = int(ytr[:, j].sum()), int(yva[:, j].sum())
        p = npos_va / max(len(yva), 1)
        base = (1 + b2) * p / (b2 + p) if p > 0 else 0.0
        c = pick["choice"][j]
        row = {
            "label": name, "kept": False, "reason": c.get("reason", ""), "C": np.nan, "n_features": 0,
            "val_fbeta": np.nan, "val_precision": np.nan, "val_recall": np.nan, "base_rate": p, "base_fbeta": base,
            "negative_cutoff": -np.inf, "val_negative_coverage": 0.0, "train_positive": npos_tr,
            "val_positive": npos_va, "beta": pick["beta"],
        }  # fmt: skip
        if "clf" in c:
            clf, cand, s = c["clf"], c["cand"], c["s"]
            w = np.zeros(F, np.float32)
            w[cand] = clf.coef_[0] / scale[cand]
            cut = _negative_cutoff(s, yva[:, j], cfg.negative_npv)
            row.update(C=c["C"], n_features=int((w != 0).sum()), val_fbeta=c["f"], val_precision=c["precision"])
            row.update(val_recall=c["recall"], negative_cutoff=cut, val_negative_coverage=float((s < cut).mean()))
            W[j], bias[j], neg[j] = w, float(clf.intercept_[0]), cut
            if c["kept"]:
                row["kept"] = True
                thr[j] = c["t"]
        rows.append(row)
    summary = {
        "beta": pick["beta"],
        "baseline": None if baseline is None else {k: float(baseline[k]) for k in ("precision", "recall")},
        "tried": [
            {
                k: (None if isinstance(t[k], float) and not np.isfinite(t[k]) else t[k])
                for k in ("beta", "precision", "recall", "f1", "margin", "kept")
                if k in t
            }
            for t in tried
        ],
    }
    return FindingReadout(tuple(labels), W, bias, thr, neg, pd.DataFrame(rows), summary)


def _f1(precision: float, recall: float) -> float:
    """Harmonic mean; NaN when precision is NaN (nothing stated), 0 when both are 0."""
    if not np.isfinite(precision):
        return float("nan")
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _val_folds(n: int, groups: Sequence[str] | None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two halves of the val rows, whole groups on one side (seeded): [(fit A, score B), (fit B, score A)]."""
    g = np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)
    uniq = np.unique(g)
    half = set(np.random.default_rng(seed).permutation(uniq)[: len(uniq) // 2].tolist())
    a = np.array([x in half for x in g])
    return [(np.flatnonzero(a), np.flatnonzero(~a)), (np.flatnonzero(~a), np.flatnonzero(a))]


def _subset(fits: list | str, rows: np.ndarray) -> list | str:
    return fits if isinstance(fits, str) else [(C, cand, clf, s[rows]) for C, cand, clf, s in fits]


def _choose(fits: list | str, y: np.ndarray, beta: float) -> dict:
    """The (C, threshold) of one finding with the best val F-beta, and whether it is kept: its F-beta beats stating
    it for every image **and** the images it is stated for are enriched for it (one-sided Fisher exact test on val,
    p ≤ 0.05) — at β = 1 a threshold that states a signal-free finding for nearly every image can edge past the
    base rate by chance."""

    if isinstance(fits, str):
        return {"reason": fits}
    best = None
    for C, cand, clf, s in fits:
        t, f, pr, rc = _best_threshold(s, y, beta)
        if best is None or f > best["f"] + 1e-9:
            best = {"C": C, "cand": cand, "clf": clf, "s": s, "t": t, "f": f, "precision": pr, "recall": rc}
    assert best is not None
    p = float(y.mean())
    b2 = beta * beta
    base = (1 + b2) * p / (b2 + p) if p > 0 else 0.0
    stated = best["s"] >= best["t"]
    table = [[int((stated & (y == 1)).sum()), int((stated & (y == 0)).sum())],
             [int((~stated & (y == 1)).sum()), int((~stated & (y == 0)).sum())]]  # fmt: skip
    best["p_value"] = float(fisher_exact(table, alternative="greater")[1])
    best["kept"] = best["f"] > base + 1e-9 and best["p_value"] <= 0.05
    if best["f"] <= base + 1e-9:
        best["reason"] = f"val F-beta {best['f']:.3f} does not beat stating it always ({base:.3f})"
    elif not best["kept"]:
        best["reason"] = f"stated images are not enriched for it on val (Fisher p = {best['p_value']:.2g} > 0.05)"
    return best


def finding_sentences(index: object, labels: Sequence[str], signature_names: Sequence[str]) -> pd.DataFrame:
    """For each finding, the corpus's most frequent sentence that states it present (signature 1 or −1) and the
    most frequent that states it absent (0), each mentioning no other finding and no change against a prior study
    (:func:`cxrlens.data.reports.states_change`) — the words a report uses when no
    describing feature offers its own. ``index``: a :class:`~cxrlens.interpret.describe.SentenceIndex` with
    signatures (columns ``signature_names``). Columns: ``label, positive_sentence, negative_sentence`` ("" = none)."""
    sig = getattr(index, "signature", None)
    if sig is None:
        raise BadInputError(None, "the sentence index carries no signatures")
    sentences, counts = index.sentences, index.counts  # type: ignore[attr-defined]
    col = {n: i for i, n in enumerate(signature_names)}
    finding_cols = [col[n] for n in labels if n in col]

    mentioned = ~np.isnan(sig[:, finding_cols])
    single_image = np.array([not states_change(str(t)) for t in sentences])
    rows = []
    for name in labels:
        pos = neg = ""
        if name in col:
            c = col[name]
            alone = (mentioned.sum(1) == 1) & single_image
            for want, is_pos in (((1.0, -1.0), True), ((0.0,), False)):
                ok = np.flatnonzero(alone & np.isin(sig[:, c], want))
                if len(ok):
                    best = str(sentences[ok[np.argmax(counts[ok])]])
                    pos, neg = (best, neg) if is_pos else (pos, best)
        rows.append({"label": name, "positive_sentence": pos, "negative_sentence": neg})
    return pd.DataFrame(rows)
