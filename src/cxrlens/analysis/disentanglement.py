"""Disentanglement metrics against ground-truth factors: BetaVAE, FactorVAE, MIG, DCI and SAP.

Definitions follow the papers (and, where the papers leave a choice open, google-research/disentanglement_lib);
every place this code takes a different variant says so in the metric's ``variant`` string, which is written into
every table.

* **BetaVAE score** (Higgins et al. 2017): pick a factor ``k``; draw ``L`` pairs of samples that share factor ``k``;
  the feature is ``mean_l |z1_l - z2_l|`` (one value per code dim); a logistic regression predicts ``k`` from it;
  the score is its accuracy on held-out points. *Variant here*: all ``L`` pairs of one point share one value of the
  fixed factor (the paper fixes it per pair; the feature's expectation is the same for independent factors).
* **FactorVAE score** (Kim & Mnih 2018): scale each code dim by its global standard deviation; for a batch of ``L``
  samples with factor ``k`` fixed, the dim with the smallest scaled variance votes for ``k``; the majority-vote
  classifier (dim → most voted factor) is fitted on training votes; the score is its accuracy on evaluation votes.
  Dims whose global std is below ``prune_std`` (collapsed dims) do not vote.
* **MIG** (Chen et al. 2018): codes discretised into ``bins`` equal-width bins per dim, discrete mutual information
  with each (discretised) factor, ``MIG = mean_k (I_(1)k - I_(2)k) / H(v_k)`` (top two codes per factor).
* **DCI** (Eastwood & Williams 2018): importance matrix ``R`` (codes × factors) from a random forest per factor
  (the paper's second regressor; disentanglement_lib uses gradient-boosted trees) classifying the discretised
  factor, with every code considered at every split (``max_features=None``: with sklearn's default of √D codes per
  split, trees split on noise codes and an identity code scores D ≈ 0.5); disentanglement
  ``D = Σ_i ρ_i (1 - H_K(P_i·))`` (rows of R normalised, ρ_i = row share of all importance), completeness
  ``C = mean_k (1 - H_D(Q_·k))`` (columns of R normalised), informativeness = mean held-out accuracy of the forests.
* **SAP** (Kumar et al. 2018): score matrix codes × factors: continuous factors → squared Pearson correlation (R² of
  a 1-D linear fit); discrete factors → held-out balanced accuracy of a 1-D classifier on one code dim. *Variant
  here*: the 1-D classifier is a nearest-class-mean rule (disentanglement_lib fits a LinearSVC per pair; the
  nearest-mean rule is vectorised, so SAP stays cheap for thousands of SAE codes). SAP = mean over factors of the
  gap between the two best codes.

Two ways to get codes with a factor held fixed (:class:`CodeSampler`):

* :class:`InterventionalCodes`: a generative sampler (``sample(n, fixed={factor: value}, seed)``, e.g. the sprites
  phantoms) and an encoder; the BetaVAE and FactorVAE scores are then interventional, as defined.
* :class:`ConditionalCodes`: pre-computed codes with their factors; "fixing" a factor draws rows whose (discretised)
  factor equals one value. This equals intervention only when the factors are independent in the data; the table
  names which sampler each row used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.stats import entropy
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score

__all__ = [
    "CodeSampler",
    "ConditionalCodes",
    "DisentanglementConfig",
    "InterventionalCodes",
    "beta_vae_score",
    "dci",
    "discretize",
    "disentanglement_report",
    "factor_vae_score",
    "mig",
    "sap",
]

VARIANTS = {
    "beta_vae": "BetaVAE score: logistic regression on mean |z1-z2| over L pairs; one fixed value per batch",
    "factor_vae": "FactorVAE score: argmin of variance/global variance, majority vote; collapsed dims pruned",
    "mig": "MIG: equal-width histogram bins per code dim, discrete MI / H(factor)",
    "dci": "DCI: random-forest (all codes per split) importances per discretised factor; I = held-out accuracy",
    "sap": "SAP: R² (continuous) / 1-D nearest-class-mean balanced accuracy (discrete), top-2 gap",
}


@dataclass(frozen=True)
class DisentanglementConfig:
    """Sizes of the metric estimates.

    Attributes:
        batch_size: ``L``, samples per point of the BetaVAE / FactorVAE scores.
        num_train / num_eval: points (BetaVAE) or votes (FactorVAE) for fitting and evaluating.
        num_variance: samples for the FactorVAE global standard deviation.
        bins: histogram bins per code dim (MIG) and maximum levels of a discretised continuous factor.
        prune_std: FactorVAE dims with global std below this do not vote.
        n_trees: random-forest size for DCI.
        seed: all randomness.
    """

    batch_size: int = 64
    num_train: int = 500
    num_eval: int = 300
    num_variance: int = 2000
    bins: int = 20
    prune_std: float = 1e-6
    n_trees: int = 50
    seed: int = 0


# ---------------------------------------------------------------------------------------------- discretisation
def discretize(values_NF: np.ndarray, bins: int = 20) -> np.ndarray:
    """Per column: integer codes; a column with at most ``bins`` distinct values keeps them (as ranks), otherwise
    equal-width histogram bins. ``values_NF: (n, f)`` → ``(n, f)`` int64."""
    values_NF = np.asarray(values_NF, dtype=np.float64)
    if values_NF.ndim == 1:
        values_NF = values_NF[:, None]
    out = np.zeros(values_NF.shape, dtype=np.int64)
    for j in range(values_NF.shape[1]):
        col = values_NF[:, j]
        uniq = np.unique(col)
        if len(uniq) <= bins:
            out[:, j] = np.searchsorted(uniq, col)
        else:
            edges = np.histogram_bin_edges(col, bins=bins)
            out[:, j] = np.digitize(col, edges[1:-1])
    return out


def _mutual_info_matrix(a_NA: np.ndarray, b_NB: np.ndarray) -> np.ndarray:
    """Discrete MI (nats) between every column of ``a`` and of ``b``: ``(A, B)``."""

    return np.array(
        [[mutual_info_score(b_NB[:, j], a_NA[:, i]) for j in range(b_NB.shape[1])] for i in range(a_NA.shape[1])]
    )


def _entropy(x_N: np.ndarray) -> float:
    _, counts = np.unique(x_N, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


# ------------------------------------------------------------------------------------------------ code samplers
class CodeSampler(Protocol):
    """Codes of samples, free or with one ground-truth factor held at one (randomly chosen) value."""

    factor_names: tuple[str, ...]
    name: str

    def free(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, d)`` codes of samples with all factors free."""
        ...

    def fixed(self, factor: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, d)`` codes of samples sharing one random value of factor ``factor``."""
        ...


@dataclass
class InterventionalCodes:
    """Interventional sampling: ``sample(n, fixed, seed) -> observations`` and ``encode(observations) -> (n, d)``.

    ``factor_values[name]`` lists the values a factor can be fixed to (the generator's grid).
    """

    sample: Callable[[int, Mapping[str, Any] | None, int], Any]
    encode: Callable[[Any], np.ndarray]
    factor_values: Mapping[str, Sequence[Any]]
    name: str = "interventional"
    factor_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.factor_names = tuple(self.factor_values)

    def free(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.encode(self.sample(n, None, int(rng.integers(2**31)))), dtype=np.float64)

    def fixed(self, factor: int, n: int, rng: np.random.Generator) -> np.ndarray:
        fname = self.factor_names[factor]
        values = list(self.factor_values[fname])
        value = values[int(rng.integers(len(values)))]
        obs = self.sample(n, {fname: value}, int(rng.integers(2**31)))
        return np.asarray(self.encode(obs), dtype=np.float64)


@dataclass
class ConditionalCodes:
    """Conditional sampling from pre-computed ``codes_ND`` and ``factors_NF`` (observational data).

    Fixing factor ``k`` picks a value of the discretised factor (weighted by frequency) and draws ``n`` rows with that
    value, with replacement. Equals interventional sampling when the factors are independent in the data.
    """

    codes_ND: np.ndarray
    factors_NF: np.ndarray
    factor_names: tuple[str, ...]
    bins: int = 20
    name: str = "conditional"
    _disc: np.ndarray = field(init=False, repr=False)
    _groups: list[dict[int, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.codes_ND = np.asarray(self.codes_ND, dtype=np.float64)
        self._disc = discretize(self.factors_NF, self.bins)
        if len(self.codes_ND) != len(self._disc):
            raise ValueError(f"codes ({len(self.codes_ND)}) and factors ({len(self._disc)}) differ in rows")
        self._groups = [{int(v): np.flatnonzero(col == v) for v in np.unique(col)} for col in self._disc.T]

    def free(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.codes_ND[rng.integers(len(self.codes_ND), size=n)]

    def fixed(self, factor: int, n: int, rng: np.random.Generator) -> np.ndarray:
        row = rng.integers(len(self.codes_ND))  # a value drawn with its frequency in the data
        group = self._groups[factor][int(self._disc[row, factor])]
        return self.codes_ND[rng.choice(group, size=n)]


# ------------------------------------------------------------------------------------- interventional metrics
def beta_vae_score(sampler: CodeSampler, cfg: DisentanglementConfig = DisentanglementConfig()) -> dict[str, float]:
    """BetaVAE score: ``{"train_accuracy", "eval_accuracy"}`` of the factor-index classifier (chance = 1/F)."""

    rng = np.random.default_rng(cfg.seed)
    n_f = len(sampler.factor_names)

    def points(n: int) -> tuple[np.ndarray, np.ndarray]:
        feats, labels = [], []
        for _ in range(n):
            k = int(rng.integers(n_f))
            z = sampler.fixed(k, 2 * cfg.batch_size, rng)
            feats.append(np.abs(z[: cfg.batch_size] - z[cfg.batch_size :]).mean(0))
            labels.append(k)
        return np.stack(feats), np.array(labels)

    x_tr, y_tr = points(cfg.num_train)
    x_ev, y_ev = points(cfg.num_eval)
    clf = LogisticRegression(max_iter=2000, random_state=cfg.seed).fit(x_tr, y_tr)
    return {"train_accuracy": float(clf.score(x_tr, y_tr)), "eval_accuracy": float(clf.score(x_ev, y_ev))}


def factor_vae_score(sampler: CodeSampler, cfg: DisentanglementConfig = DisentanglementConfig()) -> dict[str, float]:
    """FactorVAE score: ``{"train_accuracy", "eval_accuracy", "active_dims"}`` of the majority-vote classifier."""
    rng = np.random.default_rng(cfg.seed)
    n_f = len(sampler.factor_names)
    global_std = sampler.free(cfg.num_variance, rng).std(0, ddof=1)
    active = np.flatnonzero(global_std > cfg.prune_std)
    if len(active) == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0.0}

    def votes(n: int) -> np.ndarray:
        v = np.zeros((n_f, len(global_std)), dtype=np.int64)
        for _ in range(n):
            k = int(rng.integers(n_f))
            z = sampler.fixed(k, cfg.batch_size, rng)[:, active]
            v[k, active[np.argmin(z.var(0, ddof=1) / global_std[active] ** 2)]] += 1
        return v

    train, ev = votes(cfg.num_train), votes(cfg.num_eval)
    cls = np.argmax(train, axis=0)  # dim → factor it votes for most
    cols = np.arange(train.shape[1])
    return {
        "train_accuracy": float(train[cls, cols].sum() / train.sum()),
        "eval_accuracy": float(ev[cls, cols].sum() / ev.sum()),
        "active_dims": float(len(active)),
    }


# ---------------------------------------------------------------------------------------- observational metrics
def mig(codes_ND: np.ndarray, factors_NF: np.ndarray, bins: int = 20) -> dict[str, Any]:
    """Mutual information gap: ``{"mig": float, "per_factor": [F floats]}``."""
    codes_ND, factors_NF = np.asarray(codes_ND), np.asarray(factors_NF)
    z = discretize(codes_ND, bins)
    y = discretize(factors_NF, bins)
    mi = _mutual_info_matrix(z, y)  # (D, F)
    ent = np.array([_entropy(y[:, j]) for j in range(y.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(top.shape[1])
    per = np.where(ent > 0, (top[0] - second) / np.maximum(ent, 1e-12), 0.0)
    return {"mig": float(per.mean()), "per_factor": per.tolist()}


def _split(n: int, rng: np.random.Generator, frac: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    cut = round(frac * n)
    return perm[:cut], perm[cut:]


def dci(
    codes_ND: np.ndarray, factors_NF: np.ndarray, cfg: DisentanglementConfig = DisentanglementConfig()
) -> dict[str, Any]:
    """DCI: ``{"disentanglement", "completeness", "informativeness", "importance"}`` (importance: D × F list)."""

    codes_ND = np.asarray(codes_ND, dtype=np.float64)
    y = discretize(factors_NF, cfg.bins)
    rng = np.random.default_rng(cfg.seed)
    tr, te = _split(len(codes_ND), rng)
    n_d, n_f = codes_ND.shape[1], y.shape[1]
    imp = np.zeros((n_d, n_f))
    acc = []
    for j in range(n_f):
        rf = RandomForestClassifier(
            n_estimators=cfg.n_trees, max_features=None, min_samples_leaf=10, random_state=cfg.seed, n_jobs=1
        )  # every split sees every code: importance goes to the informative code, not to whichever was drawn
        rf.fit(codes_ND[tr], y[tr, j])
        imp[:, j] = np.abs(rf.feature_importances_)
        acc.append(rf.score(codes_ND[te], y[te, j]))
    return {**_dci_from_importance(imp), "informativeness": float(np.mean(acc)), "importance": imp.tolist()}


def _dci_from_importance(imp_DF: np.ndarray) -> dict[str, float]:
    """Disentanglement and completeness of an importance matrix ``(codes, factors)`` (Eastwood & Williams 2018)."""

    n_d, n_f = imp_DF.shape
    eps = 1e-11
    d_per_code = 1.0 - entropy(imp_DF.T + eps, base=n_f) if n_f > 1 else np.ones(n_d)  # entropy over factors
    weight = imp_DF.sum(1) / max(imp_DF.sum(), eps)
    c_per_factor = 1.0 - entropy(imp_DF + eps, base=n_d) if n_d > 1 else np.ones(n_f)
    return {"disentanglement": float((d_per_code * weight).sum()), "completeness": float(np.mean(c_per_factor))}


def sap(
    codes_ND: np.ndarray,
    factors_NF: np.ndarray,
    discrete: Sequence[bool] | None = None,
    cfg: DisentanglementConfig = DisentanglementConfig(),
) -> dict[str, Any]:
    """SAP score: ``{"sap": float, "per_factor": [F floats]}``; ``discrete[j]`` marks categorical factors."""
    codes_ND = np.asarray(codes_ND, dtype=np.float64)
    factors_NF = np.asarray(factors_NF, dtype=np.float64)
    n_f = factors_NF.shape[1]
    discrete = [False] * n_f if discrete is None else list(discrete)
    rng = np.random.default_rng(cfg.seed)
    tr, te = _split(len(codes_ND), rng)
    scores = np.zeros((codes_ND.shape[1], n_f))
    for j in range(n_f):
        scores[:, j] = (
            _sap_discrete(codes_ND, factors_NF[:, j], tr, te)
            if discrete[j]
            else _sap_continuous(codes_ND, factors_NF[:, j])
        )
    top = np.sort(scores, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(n_f)
    per = top[0] - second
    return {"sap": float(per.mean()), "per_factor": per.tolist()}


def _sap_continuous(codes_ND: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    zc = codes_ND - codes_ND.mean(0)
    yc = y_N - y_N.mean()
    var_z, var_y = (zc**2).mean(0), (yc**2).mean()
    cov = (zc * yc[:, None]).mean(0)
    ok = (var_z > 1e-12) & (var_y > 1e-12)
    return np.where(ok, cov**2 / np.maximum(var_z * var_y, 1e-24), 0.0)


def _sap_discrete(codes_ND: np.ndarray, y_N: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    classes = np.unique(y_N[tr])
    means_CD = np.stack([codes_ND[tr][y_N[tr] == c].mean(0) for c in classes])
    pred = classes[np.argmin(np.abs(codes_ND[te][None, :, :] - means_CD[:, None, :]), axis=0)]  # (n_te, D)
    truth = y_N[te]
    recalls = [(pred[truth == c] == c).mean(0) for c in np.unique(truth)]
    return np.mean(recalls, axis=0)


# ---------------------------------------------------------------------------------------------------- the table
def disentanglement_report(
    name: str,
    codes_ND: np.ndarray,
    factors_NF: np.ndarray,
    factor_names: Sequence[str],
    *,
    sampler: CodeSampler | None = None,
    discrete: Sequence[bool] | None = None,
    cfg: DisentanglementConfig = DisentanglementConfig(),
) -> dict[str, Any]:
    """All five metrics for one representation as one table row (plus per-factor details).

    ``codes_ND``/``factors_NF`` feed MIG, DCI and SAP; ``sampler`` feeds the BetaVAE and FactorVAE scores (default:
    :class:`ConditionalCodes` over the same rows). Constant code dims are dropped first (they carry no information and
    would only add ties).
    """
    codes_ND = np.asarray(codes_ND, dtype=np.float64)
    keep = codes_ND.std(0) > 0
    codes_ND = codes_ND[:, keep]
    sampler = sampler or ConditionalCodes(codes_ND, factors_NF, tuple(factor_names), bins=cfg.bins)
    bv = beta_vae_score(sampler, cfg)
    fv = factor_vae_score(sampler, cfg)
    m = mig(codes_ND, factors_NF, cfg.bins)
    d = dci(codes_ND, factors_NF, cfg)
    s = sap(codes_ND, factors_NF, discrete, cfg)
    return {
        "representation": name,
        "dims": int(keep.size),
        "active_dims": int(keep.sum()),
        "sampler": sampler.name,
        "beta_vae": bv["eval_accuracy"],
        "factor_vae": fv["eval_accuracy"],
        "mig": m["mig"],
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "sap": s["sap"],
        "mig_per_factor": dict(zip(factor_names, m["per_factor"], strict=True)),
        "sap_per_factor": dict(zip(factor_names, s["per_factor"], strict=True)),
    }


def report_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The comparison table (one row per representation), scalar columns only."""
    cols = [
        "representation",
        "dims",
        "active_dims",
        "sampler",
        "beta_vae",
        "factor_vae",
        "mig",
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness",
        "sap",
    ]
    return pd.DataFrame([{c: r[c] for c in cols} for r in rows])
