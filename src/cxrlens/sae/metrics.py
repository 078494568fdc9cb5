"""Quality metrics of a trained SAE on held-out activations, written to ``metrics.json``.

* ``mse``: mean squared error per element in the caller's units; ``mse_normalised``: the same in the SAE's
  normalised units (``E‖x‖² = D``).
* ``nmse = Σ‖x − x̂‖² / Σ‖x − x̄‖²`` and ``fve = 1 − nmse`` (fraction of variance explained; x̄ the data mean).
* ``l0_mean`` and ``l0_hist`` (counts of tokens per L0 bin, ``l0_bins`` the bin edges).
* ``dead_frac``: latents that never fire on the evaluation set; ``dense_frac``: latents firing on more than
  ``dense_threshold`` of the tokens.
* Probe (optional, :func:`codes_vs_raw_probe`): for each label, the same L2 logistic regression (liblinear, features
  scaled to unit variance without centring; C = 1 by default, or C chosen per representation by cross-validation
  inside the training rows) is fitted on SAE codes and on the raw activations of the training rows, and its ROC
  AUC measured on the test rows. Labels are CheXpert-convention values: ``1`` positive, ``0`` negative; uncertain
  (``-1``) and unmentioned (NaN) rows are left out of both fit and test. Labels with fewer than ``min_pos``
  positives (or negatives) in either part are skipped and listed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cxrlens.files import atomic_write_json
from cxrlens.probe import ProbeFit, linear_probe_auc, probe_targets
from cxrlens.sae.base import SAE

__all__ = ["codes_vs_raw_probe", "evaluate_sae", "max_cosine", "write_metrics"]


@torch.no_grad()
def _codes_and_stats(sae: SAE, acts_ND: torch.Tensor, batch_size: int, keep_codes: bool):
    sae.eval()
    D, L = sae.cfg.d_in, sae.cfg.n_latents
    sq_err = sq_err_n = 0.0
    fires = torch.zeros(L, dtype=torch.int64)
    l0s, codes_parts = [], []
    for i in range(0, len(acts_ND), batch_size):
        x = acts_ND[i : i + batch_size].float()
        x_hat, codes, _ = sae(x)
        sq_err += float((x_hat - x).pow(2).sum())
        sq_err_n += float((x_hat - x).pow(2).sum()) * float(sae.input_scale) ** 2
        active = codes != 0
        fires += active.sum(0).cpu()
        l0s.append(active.sum(1).cpu())
        if keep_codes:
            codes_parts.append(codes.to_sparse_csr().cpu() if L > 4096 else codes.cpu())
    n = len(acts_ND)
    x = acts_ND.float()
    total_var = float((x - x.mean(0)).pow(2).sum())
    return sq_err / (n * D), sq_err_n / (n * D), sq_err / max(total_var, 1e-12), fires, torch.cat(l0s), codes_parts


def evaluate_sae(
    sae: SAE,
    acts_ND: torch.Tensor,
    *,
    batch_size: int = 1024,
    dense_threshold: float = 0.1,
    labels: dict[str, np.ndarray] | None = None,
    train_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of ``sae`` on ``acts_ND: (N, D)``; with ``labels`` (name → (N,) 0/1/NaN) and ``train_mask`` also the
    probe AUCs (fit on ``train_mask`` rows, scored on the rest)."""
    mse, mse_n, nmse, fires, l0, codes_parts = _codes_and_stats(sae, acts_ND, batch_size, labels is not None)
    n = len(acts_ND)
    freq = fires.float() / max(n, 1)
    edges = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1 << 30]
    hist, _ = np.histogram(l0.numpy(), bins=edges)
    out: dict[str, Any] = {
        "tokens": n,
        "mse": mse,
        "mse_normalised": mse_n,
        "nmse": nmse,
        "fve": 1.0 - nmse,
        "l0_mean": float(l0.float().mean()),
        "l0_hist": hist.tolist(),
        "l0_bins": edges,
        "dead_frac": float((fires == 0).float().mean()),
        "dense_frac": float((freq > dense_threshold).float().mean()),
        "dense_threshold": dense_threshold,
    }
    if labels is not None and train_mask is not None:
        codes = _stack(codes_parts)
        out["probe"] = codes_vs_raw_probe(codes, acts_ND.float().numpy(), labels, train_mask)
    return out


def _stack(parts):

    if parts and parts[0].layout == torch.sparse_csr:
        mats = [
            sp.csr_matrix((p.values().numpy(), p.col_indices().numpy(), p.crow_indices().numpy()), p.shape)
            for p in parts
        ]
        return sp.vstack(mats).tocsr()
    return torch.cat(parts).numpy()


def codes_vs_raw_probe(
    codes,
    raw_ND: np.ndarray,
    labels: dict[str, np.ndarray],
    train_mask: np.ndarray,
    min_pos: int = 5,
    *,
    Cs: tuple[float, ...] = (1.0,),
    folds: int = 3,
    groups: np.ndarray | None = None,
    seed: int = 0,
    codes_C: float | None = None,
) -> dict[str, Any]:
    """Per-label test AUC of one logistic-regression probe on SAE codes vs on raw activations (see module doc).

    ``Cs``: inverse L2 penalties. With one value (default ``(1.0,)``) both probes use it. With several, each
    representation gets its own: the C with the best mean AUC over labels in ``folds``-fold stratified
    cross-validation **inside the training rows** (the test rows are never used for the choice) — a 1,024-feature
    sparse code and a 128-d dense vector need different penalties, and one fixed C would compare regularisation,
    not knowledge. ``groups`` (N,): e.g. study ids, kept within one fold (``StratifiedGroupKFold``) so that two
    views of a study never sit on both sides of a CV split. The chosen C is returned in ``C``
    (``{"codes": …, "raw": …}``); ``codes_C`` fixes the codes' C (e.g. the one an earlier call chose against
    another raw stream), so only the raw probe's is chosen. The cross-validation fits run on two threads."""

    def fit_score(X: np.ndarray, y: np.ndarray, fit: np.ndarray, score: np.ndarray, C: float) -> float:
        spec = ProbeFit(C=C, solver="liblinear", scaling="no-centre", max_iter=1000)
        return linear_probe_auc(X[fit], y[fit], X[score], y[score], spec)

    if not Cs or any(c <= 0 for c in Cs):
        raise ValueError(f"Cs must be positive inverse penalties, got {Cs!r}")
    train_mask = np.asarray(train_mask, dtype=bool)
    usable: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    skipped = []
    for name, y in labels.items():
        y = probe_targets(y, missing="dropped")
        known = ~np.isnan(y)
        tr, te = known & train_mask, known & ~train_mask
        ok = all(min(int((y[m] == 1).sum()), int((y[m] == 0).sum())) >= min_pos for m in (tr, te))
        if ok:
            usable[name] = (y, tr, te)
        else:
            skipped.append(name)
    feats = {"codes": np.asarray(codes, np.float64), "raw": np.asarray(raw_ND, np.float64)}  # cast once (liblinear)
    chosen = {kind: float(Cs[0]) for kind in feats}
    if codes_C is not None:
        chosen["codes"] = float(codes_C)
    choose = [kind for kind in feats if len(Cs) > 1 and usable and not (kind == "codes" and codes_C is not None)]
    tasks = []  # (kind, C, y, fit rows, score rows) of every cross-validation fit
    for y, tr, _ in usable.values() if choose else ():
        rows = np.flatnonzero(tr)
        k = min(folds, int((y[rows] == 1).sum()), int((y[rows] == 0).sum()))
        if k < 2:
            continue
        splitter = (
            StratifiedGroupKFold(k, shuffle=True, random_state=seed)
            if groups is not None
            else StratifiedKFold(k, shuffle=True, random_state=seed)
        )
        g = None if groups is None else np.asarray(groups)[rows]
        for a, b in splitter.split(rows, y[rows], g):
            fit, score = np.zeros_like(tr), np.zeros_like(tr)
            fit[rows[a]], score[rows[b]] = True, True
            tasks += [(kind, C, y, fit, score) for kind in choose for C in Cs]
    with ThreadPoolExecutor(max_workers=2) as pool:  # liblinear releases the GIL; L2 primal (TRON) draws no rand()
        scores = list(pool.map(lambda t: fit_score(feats[t[0]], t[2], t[3], t[4], t[1]), tasks))
    for kind in choose:
        cv = {C: [v for t, v in zip(tasks, scores, strict=True) if t[0] == kind and t[1] == C] for C in Cs}
        if all(cv.values()):
            chosen[kind] = float(max(Cs, key=lambda C: (np.mean(cv[C]), -C)))
    per_label = {
        name: {kind: fit_score(X, y, tr, te, chosen[kind]) for kind, X in feats.items()}
        for name, (y, tr, te) in usable.items()
    }
    mean = {
        k: float(np.mean([r[k] for r in per_label.values()])) if per_label else float("nan") for k in ("codes", "raw")
    }
    return {
        "per_label": per_label,
        "mean_auc_codes": mean["codes"],
        "mean_auc_raw": mean["raw"],
        "skipped": skipped,
        "C": chosen,
    }


@torch.no_grad()
def max_cosine(learned_LD: torch.Tensor, true_FD: torch.Tensor) -> torch.Tensor:
    """(F,) for each true atom, the largest cosine similarity with any learned atom (feature recovery)."""
    a = learned_LD / learned_LD.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = true_FD / true_FD.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (b @ a.t()).max(dim=1).values


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` as JSON (atomically); NaN becomes null."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v

    return atomic_write_json(Path(path), clean(metrics))
