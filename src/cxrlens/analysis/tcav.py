"""TCAV (Kim et al. 2018) with its statistical test: is a class's prediction sensitive to a human concept?

* **CAV**: a linear classifier (L2 logistic regression, liblinear) separates a layer's activations of concept
  examples from those of a random set of examples; the CAV is its unit normal, pointing towards the concept.
* **Conceptual sensitivity** of an input of class ``k``: the directional derivative of the class-``k`` logit along
  the CAV at that layer, ``∇h_k(f_l(x)) · v``.
* **TCAV score**: the fraction of class-``k`` inputs with positive sensitivity.
* **Test**: one CAV (and score) per random counterpart set ``R_1 … R_n`` (``n ≥ 20``), each with a fresh subset of the
  concept's examples (a fixed concept set would make the 20 scores share one positive set: pseudo-replication that
  shrinks their spread and inflates t); the null distribution comes
  from CAVs trained on a random set against another random set (``R_i`` vs ``R_{i+1}``), so a concept is only
  credited when its scores differ from what random directions give. Two-sided Welch t-test of concept scores vs
  null scores, then Benjamini–Hochberg across all (concept, class) tests of one run. A score is reported as
  significant only when its BH-adjusted p-value is below ``alpha`` *and* its CAVs separate the concept from random
  sets (mean held-out CAV accuracy ≥ ``min_cav_accuracy``: a CAV at chance is a random direction, and its score says
  nothing about the concept); others are shown as not significant.

Gradients of the class examples are computed once; every CAV then costs a dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import t as student_t
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from cxrlens.figures import new_figure, save_png

__all__ = [
    "LayerProbe",
    "TCAVConfig",
    "benjamini_hochberg",
    "run_tcav",
    "tcav_plot",
    "tcav_test",
    "train_cav",
    "welch_t_test",
]


@dataclass(frozen=True)
class TCAVConfig:
    """TCAV run settings.

    Attributes:
        n_random: random counterpart sets (and null CAVs); at least 20.
        alpha: false-discovery rate for Benjamini–Hochberg.
        min_cav_accuracy: a concept whose CAVs separate it from random sets with a mean held-out accuracy below
            this is not linearly represented at the layer; its score is never called significant.
        c: inverse L2 strength of the logistic-regression CAV.
        cav_test_size: fraction of each CAV's examples held out to report the CAV's accuracy.
        batch_size: inputs per forward/backward pass.
        seed: random sets and classifiers.
        pool: ``flatten`` (a CAV over every value of the layer's output, the original TCAV) or ``mean`` (a token
            layer's ``(N, T, D)`` output averaged over its tokens: the CAV lives in the D-dim token space, and the
            directional derivative is that of adding the CAV to every token, ``Σ_t ∂logit/∂a_t · v``).
    """

    n_random: int = 20
    alpha: float = 0.05
    min_cav_accuracy: float = 0.7
    c: float = 1.0
    cav_test_size: float = 0.25
    batch_size: int = 64
    seed: int = 0
    pool: str = "flatten"

    def __post_init__(self) -> None:
        if self.pool not in ("flatten", "mean"):
            raise ValueError(f"pool must be 'flatten' or 'mean', got {self.pool!r}")
        if self.n_random < 20:
            raise ValueError(f"n_random must be ≥ 20 for a meaningful null distribution, got {self.n_random}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


class LayerProbe:
    """Activations of one layer of ``model`` and gradients of class logits with respect to them.

    ``layer`` is a sub-module name (``dict(model.named_modules())``); its output (a tensor, or the first element of
    a tuple) is flattened per example to ``(N, D)`` — or, with ``pool="mean"`` and a ``(N, T, D)`` token output,
    averaged over the tokens, with the gradients summed over them (the derivative along adding a D-vector to every
    token). ``logits_fn`` maps the model's output to ``(N, classes)`` (default: the output itself).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layer: str,
        logits_fn: Callable[[object], torch.Tensor] | None = None,
        batch_size: int = 64,
        pool: str = "flatten",
    ) -> None:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(f"model has no layer {layer!r}; layers: {', '.join(n for n in modules if n)}")
        self.model, self.layer, self.module = model.eval(), layer, modules[layer]
        self.logits_fn = logits_fn or (lambda out: out)  # type: ignore[assignment,return-value]
        self.batch_size = batch_size
        if pool not in ("flatten", "mean"):
            raise ValueError(f"pool must be 'flatten' or 'mean', got {pool!r}")
        self.pool = pool

    def _reduce(self, t: torch.Tensor, grad: bool) -> torch.Tensor:
        if self.pool == "mean" and t.dim() == 3:
            return t.sum(1) if grad else t.mean(1)
        return t.flatten(1)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        store: dict[str, torch.Tensor] = {}

        def hook(_m: torch.nn.Module, _i: object, out: object) -> None:
            store["a"] = out[0] if isinstance(out, tuple) else out  # type: ignore[index,assignment]

        handle = self.module.register_forward_hook(hook)
        try:
            logits = self.logits_fn(self.model(x))
        finally:
            handle.remove()
        return store["a"], logits

    @torch.no_grad()
    def activations(self, x_N: torch.Tensor) -> np.ndarray:
        """Layer activations ``(N, D)`` float64 of inputs ``x_N`` (any shape with a leading batch dim)."""
        out = [
            self._reduce(self._run(x_N[i : i + self.batch_size])[0], False) for i in range(0, len(x_N), self.batch_size)
        ]
        return torch.cat(out).double().numpy()

    def gradients(self, x_N: torch.Tensor, class_index: int) -> np.ndarray:
        """``∂ logit_k / ∂ activation`` per input, ``(N, D)`` float64 (flattened, or summed over tokens)."""
        grads = []
        for i in range(0, len(x_N), self.batch_size):
            with torch.enable_grad():
                act, logits = self._run(x_N[i : i + self.batch_size])
                (g,) = torch.autograd.grad(logits[:, class_index].sum(), act)
            grads.append(self._reduce(g, True).detach())
        return torch.cat(grads).double().numpy()


def train_cav(pos_ND: np.ndarray, neg_ND: np.ndarray, *, c: float = 1.0, test_size: float = 0.25, seed: int = 0):
    """A CAV: unit normal ``(D,)`` of a logistic regression (concept = 1), and its held-out accuracy."""

    x = np.concatenate([pos_ND, neg_ND])
    y = np.r_[np.ones(len(pos_ND)), np.zeros(len(neg_ND))]
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    clf = LogisticRegression(C=c, solver="liblinear", max_iter=2000, random_state=seed).fit(xtr, ytr)
    w = clf.coef_[0]
    return w / max(np.linalg.norm(w), 1e-12), float(clf.score(xte, yte))


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


def welch_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Welch t-test ``(t, p)`` (as ``scipy.stats.ttest_ind(equal_var=False)``), written out so that a
    sample with zero variance (every TCAV score 1.0) needs no special case; identical constant samples give p = 1."""

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    diff = a.mean() - b.mean()
    if se2 == 0:
        return (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t_stat = diff / np.sqrt(se2)
    return float(t_stat), float(2 * student_t.sf(abs(t_stat), df))


def tcav_test(
    grads_by_class: Mapping[str, np.ndarray],
    concept_acts: Mapping[str, np.ndarray],
    random_acts: Sequence[np.ndarray],
    cfg: TCAVConfig = TCAVConfig(),
) -> pd.DataFrame:
    """TCAV scores and tests from precomputed arrays.

    Args:
        grads_by_class: class name → ``(N_k, D)`` logit gradients of that class's examples at the layer.
        concept_acts: concept name → ``(n_c, D)`` activations of its example pool; each run draws a subset of the
            random-set size from it (the whole pool when it is that small: then the concept's 20 scores share one
            positive set and vary less than the null, see ``concept_pool``).
        random_acts: ``n_random`` arrays ``(n_r, D)``, activations of random example sets.

    Returns one row per (class, concept): ``tcav_mean``, ``tcav_std``, ``null_mean``, ``null_std``, ``t``, ``p``,
    ``q`` (BH), ``cav_accuracy`` (mean held-out accuracy of the concept CAVs), ``cav_ok``, ``significant``
    (q < alpha and cav_ok), ``concept_pool`` and the raw ``scores``/``null_scores`` lists.
    """
    if len(random_acts) < cfg.n_random:
        raise ValueError(f"{len(random_acts)} random sets given, config asks for {cfg.n_random}")
    rand = list(random_acts)[: cfg.n_random]
    n = len(rand)
    null_cavs = [
        train_cav(rand[i], rand[(i + 1) % n], c=cfg.c, test_size=cfg.cav_test_size, seed=cfg.seed + i)[0]
        for i in range(n)
    ]
    set_size = len(rand[0])
    concept_cavs: dict[str, list[np.ndarray]] = {}
    cav_acc: dict[str, float] = {}
    pool_size: dict[str, int] = {}
    for j, (name, acts) in enumerate(concept_acts.items()):
        rng = np.random.default_rng([cfg.seed, j])
        k = min(set_size, len(acts))
        # a fresh concept subset per run when the pool allows: concept CAVs then vary like the null CAVs do
        subsets = [acts[rng.choice(len(acts), size=k, replace=False)] for _ in range(n)]
        fits = [
            train_cav(subsets[i], rand[i], c=cfg.c, test_size=cfg.cav_test_size, seed=cfg.seed + i) for i in range(n)
        ]
        concept_cavs[name] = [f[0] for f in fits]
        cav_acc[name] = float(np.mean([f[1] for f in fits]))
        pool_size[name] = len(acts)
    rows = []
    for cls, grads in grads_by_class.items():
        null = np.array([(grads @ v > 0).mean() for v in null_cavs])
        for name, cavs in concept_cavs.items():
            scores = np.array([(grads @ v > 0).mean() for v in cavs])
            t_stat, p = welch_t_test(scores, null)
            rows.append(
                {
                    "class": cls,
                    "concept": name,
                    "tcav_mean": float(scores.mean()),
                    "tcav_std": float(scores.std(ddof=1)),
                    "null_mean": float(null.mean()),
                    "null_std": float(null.std(ddof=1)),
                    "t": t_stat,
                    "p": p,
                    "cav_accuracy": cav_acc[name],
                    "cav_ok": cav_acc[name] >= cfg.min_cav_accuracy,
                    "concept_pool": pool_size[name],
                    "n_class_examples": len(grads),
                    "scores": scores.tolist(),
                    "null_scores": null.tolist(),
                }
            )
    table = pd.DataFrame(rows)
    table["q"] = benjamini_hochberg(table["p"].to_numpy()) if len(table) else []
    table["significant"] = (table["q"] < cfg.alpha) & table["cav_ok"] if len(table) else []
    return table


def run_tcav(
    probe: LayerProbe,
    class_inputs: Mapping[str, tuple[int, torch.Tensor]],
    concepts: Mapping[str, torch.Tensor],
    random_pool: torch.Tensor,
    cfg: TCAVConfig = TCAVConfig(),
    *,
    set_size: int | None = None,
) -> pd.DataFrame:
    """TCAV for a model: ``class_inputs`` maps a class name to (logit index, its example inputs); ``concepts`` maps a
    concept name to its example pool; random sets of ``set_size`` (default: the median concept pool, at most 50) are
    drawn without replacement from ``random_pool`` (e.g. random dataset images).
    """
    rng = np.random.default_rng(cfg.seed)
    sizes = [len(v) for v in concepts.values()]
    size = set_size or min(int(np.median(sizes)), 50)
    if size > len(random_pool):
        raise ValueError(f"random pool has {len(random_pool)} inputs, fewer than a set of {size}")
    pool_acts = probe.activations(random_pool)
    random_acts = [pool_acts[rng.choice(len(pool_acts), size=size, replace=False)] for _ in range(cfg.n_random)]
    concept_acts = {k: probe.activations(v) for k, v in concepts.items()}
    grads = {k: probe.gradients(x, idx) for k, (idx, x) in class_inputs.items()}
    table = tcav_test(grads, concept_acts, random_acts, cfg)
    table.insert(2, "layer", probe.layer)
    return table


def tcav_plot(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Bars of mean TCAV score per (class, concept) with the random-CAV null; non-significant bars are grey, hatched
    and labelled "n.s."; significant ones carry their BH q-value."""

    fig = new_figure(max(4.0, 1.05 * len(table) + 1.5), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    for i, r in enumerate(table.itertuples()):
        sig = bool(r.significant)
        ax.bar(
            i,
            r.tcav_mean,
            yerr=r.tcav_std,
            color="#228833" if sig else "#bbbbbb",
            hatch=None if sig else "//",
            edgecolor="black",
            capsize=3,
        )
        ax.plot([i - 0.4, i + 0.4], [r.null_mean] * 2, color="#cc3311", lw=1.5)
        label = f"q={r.q:.1e}" if sig else (f"n.s.\n(q={r.q:.2f})" if r.cav_ok else f"CAV acc\n{r.cav_accuracy:.2f}")
        ax.text(i, min(r.tcav_mean + r.tcav_std + 0.03, 1.02), label, ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, [f"{r['class']}\n← {r['concept']}" for _, r in table.iterrows()], fontsize=6)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("TCAV score")
    ax.set_title((title + "\n" if title else "") + "red line: mean score of random-vs-random CAVs (null)", fontsize=8)
    return save_png(fig, path)
