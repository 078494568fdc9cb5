"""2-D embeddings of latents (UMAP, t-SNE), coloured by labels or factors, with numbers that say what they keep.

A scatter plot invites reading clusters into it; two checks say how much to trust it:

* **cross-validated random-forest score** of a label/factor from the 2-D embedding vs from the full latent
  (accuracy for categorical targets, R² for continuous ones; ``cv_folds`` stratified folds). If the 2-D score is
  far below the full one, the plot hides structure the latent has; if both are near chance, the latent does not
  encode the target, however the plot looks.
* **trustworthiness** (Venna & Kaski; sklearn ``trustworthiness``) at ``k`` neighbours: 1 when every 2-D neighbour
  is a true neighbour in the latent, lower when the embedding invents neighbourhoods.

Embedding inputs are standardised per dim (z-scores) first, unless ``standardize=False``. UMAP needs ``umap-learn``
(``pip install 'cxrlens[analysis]'``); t-SNE uses scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from cxrlens.errors import CxrlensError
from cxrlens.figures import new_figure, save_png

__all__ = ["EmbeddingConfig", "embed", "embedding_plot", "validate_embedding"]


@dataclass(frozen=True)
class EmbeddingConfig:
    """``method``: umap or tsne; UMAP ``n_neighbors``/``min_dist``; t-SNE ``perplexity``; validation ``cv_folds``,
    ``trust_k``; ``max_points``: subsample (seeded) above this; ``threads``: OpenMP/BLAS/numba threads (on a busy
    machine more threads than free cores make t-SNE ~10× slower through spin-waiting); ``seed``."""

    method: str = "umap"
    n_neighbors: int = 15
    min_dist: float = 0.1
    perplexity: float = 30.0
    standardize: bool = True
    cv_folds: int = 5
    trust_k: int = 10
    n_trees: int = 100
    max_points: int = 5000
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("umap", "tsne"):
            raise ValueError(f"method must be umap or tsne, got {self.method!r}")


def _prepare(x_ND: np.ndarray, cfg: EmbeddingConfig) -> np.ndarray:
    x = np.asarray(x_ND, dtype=np.float64)
    x = x[:, x.std(0) > 0]
    if cfg.standardize:
        x = (x - x.mean(0)) / x.std(0)
    return x


def embed(x_ND: np.ndarray, cfg: EmbeddingConfig = EmbeddingConfig()) -> np.ndarray:
    """``(N, D)`` → ``(N, 2)`` float32 embedding."""

    with threadpool_limits(limits=cfg.threads):
        return _embed(_prepare(x_ND, cfg), cfg)


def _embed(x: np.ndarray, cfg: EmbeddingConfig) -> np.ndarray:
    if cfg.method == "umap":
        try:
            import umap
        except ImportError:
            raise CxrlensError(
                "UMAP needs umap-learn: pip install 'cxrlens[analysis]' (or use --method tsne)"
            ) from None
        import numba

        numba.set_num_threads(min(cfg.threads, numba.config.NUMBA_NUM_THREADS))
        reducer = umap.UMAP(n_neighbors=cfg.n_neighbors, min_dist=cfg.min_dist, random_state=cfg.seed, n_jobs=1)
        return reducer.fit_transform(x).astype(np.float32)

    perplexity = min(cfg.perplexity, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=cfg.seed).fit_transform(x).astype(np.float32)


def _is_categorical(y: np.ndarray) -> bool:
    if y.dtype.kind in "OUSb":
        return True
    u = np.unique(y[~np.isnan(y.astype(float))])
    return len(u) <= 10 and bool(np.all(np.mod(u, 1) == 0))


def validate_embedding(
    x_ND: np.ndarray, emb_N2: np.ndarray, y_N: np.ndarray, cfg: EmbeddingConfig = EmbeddingConfig()
) -> dict[str, float | str]:
    """CV random-forest score from 2-D vs full latent, chance level, and trustworthiness at ``trust_k``."""

    with threadpool_limits(limits=cfg.threads):
        return _validate(x_ND, emb_N2, y_N, cfg)


def _validate(x_ND: np.ndarray, emb_N2: np.ndarray, y_N: np.ndarray, cfg: EmbeddingConfig) -> dict[str, float | str]:

    y = np.asarray(y_N)
    ok = ~pd_isna(y)
    x, e, y = _prepare(x_ND, cfg)[ok], np.asarray(emb_N2)[ok], y[ok]
    cat = _is_categorical(y)
    if cat:
        y = np.unique(y.astype(str), return_inverse=True)[1]
        model = RandomForestClassifier(n_estimators=cfg.n_trees, random_state=cfg.seed, n_jobs=1)
        folds = StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        scoring, chance = "accuracy", float(np.bincount(y).max() / len(y))
    else:
        y = y.astype(np.float64)
        model = RandomForestRegressor(n_estimators=cfg.n_trees, random_state=cfg.seed, n_jobs=1)
        folds = KFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        scoring, chance = "r2", 0.0
    s2 = cross_val_score(model, e, y, cv=folds, scoring=scoring)
    sfull = cross_val_score(model, x, y, cv=folds, scoring=scoring)
    return {
        "metric": scoring,
        "score_2d": float(s2.mean()),
        "score_2d_std": float(s2.std()),
        "score_full": float(sfull.mean()),
        "score_full_std": float(sfull.std()),
        "chance": chance,
        "trustworthiness": float(trustworthiness(x, e, n_neighbors=cfg.trust_k)),
        "trust_k": cfg.trust_k,
        "n": len(y),
    }


def pd_isna(y: np.ndarray) -> np.ndarray:

    return np.asarray(pd.isna(y), dtype=bool)


def embedding_plot(
    emb_N2: np.ndarray,
    colour_by: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    title: str = "",
    metrics: Mapping[str, Mapping[str, float | str]] | None = None,
) -> Path:
    """One scatter panel per colouring (categorical → legend, continuous → colour bar); panel titles carry the
    validation numbers when ``metrics`` is given."""

    n = len(colour_by)
    fig = new_figure(3.3 * n, 3.4)
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (name, values) in zip(axes, colour_by.items(), strict=True):
        v = np.asarray(values)
        if _is_categorical(v):
            from matplotlib.lines import Line2D

            cats, codes = np.unique(v.astype(str), return_inverse=True)
            palette = np.array([f"C{i % 10}" for i in range(len(cats))])
            order = np.random.default_rng(0).permutation(len(v))  # no class hides under another
            ax.scatter(emb_N2[order, 0], emb_N2[order, 1], c=palette[codes[order]], s=3, alpha=0.6)
            handles = [Line2D([], [], marker="o", ls="", color=palette[i], label=c) for i, c in enumerate(cats)]
            ax.legend(handles=handles, fontsize=6, loc="best")
        else:
            sc = ax.scatter(emb_N2[:, 0], emb_N2[:, 1], c=v.astype(float), s=3, alpha=0.7, cmap="viridis")
            fig.colorbar(sc, ax=ax, shrink=0.8)
        text = name
        if metrics and name in metrics:
            mt = metrics[name]
            text += f"\nRF {mt['metric']}: 2-D {mt['score_2d']:.2f} vs full {mt['score_full']:.2f} "
            text += f"(chance {mt['chance']:.2f})\ntrustworthiness@{mt['trust_k']} {mt['trustworthiness']:.2f}"
        ax.set_title(text, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)
