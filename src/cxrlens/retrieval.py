"""Nearest-neighbour retrieval across patients: for each query image, the most cosine-similar training image of
another patient. The evaluation's *nearest* baseline copies that image's report (:mod:`cxrlens.evaluate.baselines`)
and the interpretation's finding readout chooses its β against the same baseline on val
(:func:`cxrlens.interpret.run.retrieval_baseline`) — one function, so both measure the same thing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["nearest_neighbours"]


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def nearest_neighbours(
    train_ND: np.ndarray,
    query_QD: np.ndarray,
    train_groups: Sequence[str] | None = None,
    query_groups: Sequence[str] | None = None,
    *,
    backend: str = "auto",
    block: int = 1024,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Most cosine-similar training row for each query row, excluding training rows of the query's group.

    Args:
        train_ND: (N, D) training activations; query_QD: (Q, D) evaluated images' activations (any float dtype).
        train_groups, query_groups: (N,) and (Q,) patient ids; a query never retrieves a row of its own patient.
            ``None`` = no exclusion.
        backend: ``"auto"`` (faiss when it imports, else numpy), ``"faiss"`` or ``"numpy"``.
        block: queries per numpy block (memory ``block × N`` floats).

    Returns:
        (index (Q,) int64 into the training rows, -1 where every training row is excluded; cosine (Q,) float32, NaN
        where index is -1; the backend used).
    """
    train = _normalised(train_ND)
    query = _normalised(query_QD)
    if train.ndim != 2 or query.ndim != 2 or train.shape[1] != query.shape[1]:
        raise ValueError(f"need (N, D) and (Q, D) arrays with the same D, got {train.shape} and {query.shape}")
    n, q = train.shape[0], query.shape[0]
    if (train_groups is None) != (query_groups is None):
        raise ValueError("give both train_groups and query_groups, or neither")
    if train_groups is not None and (len(train_groups) != n or len(query_groups) != q):
        raise ValueError("train_groups / query_groups must have one entry per row")
    tg = np.asarray(train_groups, dtype=object) if train_groups is not None else None
    qg = np.asarray(query_groups, dtype=object) if query_groups is not None else None
    if backend == "auto":
        try:
            import faiss  # only probing whether it imports

            backend = "faiss"
        except ImportError:
            backend = "numpy"
    if backend not in ("faiss", "numpy"):
        raise ValueError(f"backend must be auto, faiss or numpy, got {backend!r}")
    best = np.full(q, -1, dtype=np.int64)
    score = np.full(q, np.nan, dtype=np.float32)
    if n == 0 or q == 0:
        return best, score, backend
    if backend == "numpy":
        for lo in range(0, q, block):
            sims = query[lo : lo + block] @ train.T  # (b, N)
            if tg is not None:
                sims[qg[lo : lo + block, None] == tg[None, :]] = -np.inf
            arg = np.argmax(sims, axis=1)
            val = sims[np.arange(len(arg)), arg]
            ok = np.isfinite(val)
            best[lo : lo + block] = np.where(ok, arg, -1)
            score[lo : lo + block] = np.where(ok, val, np.nan)
        return best, score, backend

    import faiss

    index = faiss.IndexFlatIP(train.shape[1])
    index.add(np.ascontiguousarray(train))
    # enough candidates that at least one is of another patient: 1 + the most training rows any query must skip
    if tg is not None:
        counts = Counter(tg.tolist())
        k = min(n, 1 + max((counts.get(g, 0) for g in qg.tolist()), default=0))
    else:
        k = 1
    sims, idx = index.search(np.ascontiguousarray(query), k)
    for i in range(q):
        for s, j in zip(sims[i], idx[i], strict=True):
            if j < 0 or (tg is not None and tg[j] == qg[i]):
                continue
            best[i], score[i] = j, s
            break
    return best, score, backend
