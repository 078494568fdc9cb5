"""Semantic search over image embeddings (``align index`` / ``align search``) and its evaluation by NDCG.

**Index.** A faiss ``IndexFlatIP`` over the unit-norm image embeddings of an ``align train`` run (inner product =
cosine), exact, serialised with ``faiss.serialize_index`` (no pickle) beside a row → image table.

**Query set.** :data:`QUERIES` holds ≥ 19 text queries over findings, laterality, severity and devices. Each names a
CheXpert finding and optionally a side, a severity or a device kind. Graded relevance of an image to a query comes
from a *facts* table (one row per image and finding: ``image_id, finding, side, severity, device, certain``) built
from the CheXpert labels (:func:`facts_from_labels`) and, for phantoms, the ground-truth factors
(:func:`facts_from_factors`):

* 2 — the finding is present (certain) and every attribute the query names matches a fact of that image;
* 1 — the finding is present but a named attribute is unknown or differs, or the finding is uncertain (``-1``);
* 0 — otherwise.

**NDCG@k** (:func:`ndcg_at_k`): linear gains ``rel`` discounted by ``1 / log2(rank + 1)`` over the top ``k`` by score,
divided by the DCG of the ideal order of *all* items' relevances; tied scores share the mean gain of their group.
This is exactly ``sklearn.metrics.ndcg_score(..., k=k)`` (``ignore_ties=False``); a query with no relevant item
scores 0 (sklearn's convention) and is flagged ``has_relevant = False``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrlens.data.phantom.spec import KIND_LABEL, KINDS
from cxrlens.errors import BadInputError

__all__ = [
    "QUERIES",
    "Query",
    "SearchConfig",
    "build_index",
    "deserialize_index",
    "evaluate_queries",
    "facts_from_factors",
    "facts_from_labels",
    "facts_from_phantom",
    "ndcg_at_k",
    "normalize_severity",
    "normalize_side",
    "relevance",
    "search_index",
    "serialize_index",
]


@dataclasses.dataclass(frozen=True)
class Query:
    """A text query and what makes an image relevant to it (see module docstring)."""

    text: str
    finding: str
    side: str | None = None
    severity: str | None = None
    device: str | None = None

    @property
    def kind(self) -> str:
        if self.device:
            return "device"
        if self.side:
            return "laterality"
        if self.severity:
            return "severity"
        return "finding"


QUERIES: tuple[Query, ...] = (
    Query("pleural effusion", "Pleural Effusion"),
    Query("left pleural effusion", "Pleural Effusion", side="left"),
    Query("right pleural effusion", "Pleural Effusion", side="right"),
    Query("bilateral pleural effusions", "Pleural Effusion", side="bilateral"),
    Query("small pleural effusion", "Pleural Effusion", severity="small"),
    Query("large pleural effusion", "Pleural Effusion", severity="large"),
    Query("cardiomegaly", "Cardiomegaly"),
    Query("mild cardiomegaly", "Cardiomegaly", severity="small"),
    Query("severe cardiomegaly", "Cardiomegaly", severity="large"),
    Query("pneumothorax", "Pneumothorax"),
    Query("left pneumothorax", "Pneumothorax", side="left"),
    Query("right pneumothorax", "Pneumothorax", side="right"),
    Query("consolidation", "Consolidation"),
    Query("right lung consolidation", "Consolidation", side="right"),
    Query("left lung consolidation", "Consolidation", side="left"),
    Query("pulmonary edema", "Edema"),
    Query("atelectasis", "Atelectasis"),
    Query("lung nodule", "Lung Lesion"),
    Query("rib fracture", "Fracture"),
    Query("support devices", "Support Devices"),
    Query("cardiac pacemaker", "Support Devices", device="pacemaker"),
    Query("endotracheal tube", "Support Devices", device="endotracheal tube"),
    Query("central venous catheter", "Support Devices", device="central line"),
    Query("chest tube", "Support Devices", device="chest tube"),
)

_SIDES = {"left": "left", "l": "left", "right": "right", "r": "right", "bilateral": "bilateral", "both": "bilateral"}
_SEVERITY = {
    "trace": "small",
    "tiny": "small",
    "small": "small",
    "mild": "small",
    "minimal": "small",
    "moderate": "moderate",
    "medium": "moderate",
    "large": "large",
    "severe": "large",
    "massive": "large",
    "marked": "large",
}


def normalize_side(value: object) -> str | None:
    """``"Left"``/``"L"`` → ``left`` …; unknown → None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return _SIDES.get(str(value).strip().lower())


def normalize_severity(value: object) -> str | None:
    """Words (``mild``, ``severe`` …) → ``small``/``moderate``/``large``; a number in [0, 1] → thirds; else None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
        if 0.0 <= v <= 1.0:
            return "small" if v < 1 / 3 else ("moderate" if v < 2 / 3 else "large")
        return None
    return _SEVERITY.get(str(value).strip().lower())


# ------------------------------------------------------------------------------------------------------------ facts
FACT_COLUMNS = ("image_id", "finding", "side", "severity", "device", "certain")


def facts_from_labels(studies: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """One fact per image and finding labelled ``1`` (certain) or ``-1`` (uncertain) in the study table."""
    rows = []
    ids = studies["image_id"].astype(str).to_numpy()
    for f in findings:
        if f not in studies.columns:
            continue
        v = studies[f].to_numpy(dtype=np.float64)
        for image_id, val in zip(ids, v, strict=True):
            if val == 1 or val == -1:
                rows.append((image_id, f, None, None, None, bool(val == 1)))
    return pd.DataFrame(rows, columns=list(FACT_COLUMNS))


def facts_from_factors(
    factors: pd.DataFrame,
    *,
    finding_col: str = "finding",
    side_col: str = "side",
    severity_col: str = "severity",
    device_col: str | None = "device",
    present_col: str | None = "present",
) -> pd.DataFrame:
    """Facts from a phantom's ground-truth factors table (one row per image and rendered finding).

    Columns named by the arguments; missing optional columns are treated as unknown. Rows whose ``present_col``
    is false are dropped. All facts from factors are certain.
    """
    if "image_id" not in factors.columns or finding_col not in factors.columns:
        raise BadInputError(None, f"factors table needs image_id and {finding_col!r} columns")
    f = factors
    if present_col and present_col in f.columns:
        f = f[f[present_col].astype(bool)]
    n = len(f)

    def col(name: str | None) -> list[Any]:
        return list(f[name]) if name and name in f.columns else [None] * n

    return pd.DataFrame(
        {
            "image_id": f["image_id"].astype(str).to_numpy(),
            "finding": f[finding_col].astype(str).to_numpy(),
            "side": [normalize_side(v) for v in col(side_col)],
            "severity": [normalize_severity(v) for v in col(severity_col)],
            "device": [
                None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).lower() for v in col(device_col)
            ],
            "certain": np.ones(n, dtype=bool),
        }
    )


# phantom device kind → the words a query uses for it
DEVICE_WORDS = {
    "ett": "endotracheal tube",
    "enteric_tube": "enteric tube",
    "central_line": "central line",
    "pacemaker": "pacemaker",
    "chest_tube": "chest tube",
}


def facts_from_phantom(factors: pd.DataFrame) -> pd.DataFrame:
    """Facts from a phantom's wide ``factors.parquet`` (``<kind>.present``, ``.side``, ``.severity``,
    ``.uncertain`` per finding kind; :mod:`cxrlens.data.phantom.spec`). Kinds map to CheXpert labels; device kinds
    (``ett``, ``pacemaker`` …) become ``Support Devices`` facts with the device named; severities in (0, 1] map to
    small/moderate/large by thirds; sides ``none`` are unknown; uncertain findings are uncertain facts."""

    if "image_id" not in factors.columns:
        raise BadInputError(None, "factors table needs an image_id column")
    parts = []
    ids = factors["image_id"].astype(str).to_numpy()
    for kind in KINDS:
        if f"{kind}.present" not in factors.columns:
            continue
        present = factors[f"{kind}.present"].fillna(0).astype(int).to_numpy() == 1
        if not present.any():
            continue
        side = factors.get(f"{kind}.side", pd.Series([None] * len(factors))).to_numpy()[present]
        sev = factors.get(f"{kind}.severity", pd.Series([np.nan] * len(factors))).to_numpy()[present]
        unc = factors.get(f"{kind}.uncertain", pd.Series([False] * len(factors))).fillna(False).to_numpy()[present]
        parts.append(
            pd.DataFrame(
                {
                    "image_id": ids[present],
                    "finding": KIND_LABEL[kind],
                    "side": [normalize_side(v) for v in side],
                    "severity": [normalize_severity(v) for v in sev],
                    "device": DEVICE_WORDS.get(kind),
                    "certain": ~unc.astype(bool),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FACT_COLUMNS))


def facts_from_any_factors(factors: pd.DataFrame) -> pd.DataFrame:
    """Wide phantom factors (``<kind>.present`` columns) or a long table (``finding``, ``side``, ``severity`` …)."""
    if any(c.endswith(".present") for c in factors.columns):
        return facts_from_phantom(factors)
    return facts_from_factors(factors)


def relevance(query: Query, image_ids: Sequence[str], facts: pd.DataFrame) -> np.ndarray:
    """(n,) int graded relevance (0, 1, 2) of each image to ``query`` (see module docstring)."""
    rel = pd.Series(0, index=pd.Index([str(i) for i in image_ids]), dtype=np.int64)
    sub = facts[facts["finding"] == query.finding]
    for image_id, grp in sub.groupby("image_id"):
        if image_id not in rel.index:
            continue
        certain = bool(grp["certain"].any())
        grade = 1
        if certain:
            grade = 2 if _attributes_match(query, grp[grp["certain"]]) else 1
        rel[image_id] = max(int(rel[image_id]), grade)
    return rel.to_numpy()


def _attributes_match(query: Query, grp: pd.DataFrame) -> bool:
    if not (query.side or query.severity or query.device):
        return True
    for _, fact in grp.iterrows():
        ok = True
        if query.side and fact["side"] != query.side:
            ok = False
        if query.severity and fact["severity"] != query.severity:
            ok = False
        if query.device and not (
            isinstance(fact["device"], str) and re.search(rf"\b{re.escape(query.device)}\b", fact["device"])
        ):
            ok = False
        if ok:
            return True
    return False


# -------------------------------------------------------------------------------------------------------------- ndcg
def ndcg_at_k(y_true: np.ndarray, y_score: np.ndarray, k: int | None = None) -> float:
    """NDCG@k of one ranking, equal to ``sklearn.metrics.ndcg_score([y_true], [y_score], k=k)``.

    Args:
        y_true: (n,) non-negative relevance grades; y_score: (n,) scores (higher = ranked first); k: cut-off.
    """
    rel = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if rel.ndim != 1 or rel.shape != s.shape or len(rel) < 2:
        raise BadInputError(None, f"need two equal-length vectors of ≥ 2 items, got {rel.shape} and {s.shape}")
    if (rel < 0).any():
        raise BadInputError(None, "relevance grades must be non-negative")
    if not np.isfinite(s).all():
        raise BadInputError(None, "scores contain NaN or infinity")
    n = len(rel)
    k = n if k is None else int(k)
    if k < 1:
        raise BadInputError(None, f"k must be ≥ 1, got {k}")
    discount = 1.0 / np.log2(np.arange(n) + 2)
    discount[k:] = 0.0
    ideal = float(np.sort(rel)[::-1] @ discount)
    if ideal == 0:
        return 0.0
    # tie-averaged DCG: groups of equal scores, in descending order, share the mean gain of the group
    uniq, inv, counts = np.unique(-s, return_inverse=True, return_counts=True)
    group_gain = np.zeros(len(uniq))
    np.add.at(group_gain, inv, rel)
    cum = np.concatenate([[0.0], np.cumsum(discount)])
    ends = np.cumsum(counts)
    starts = ends - counts
    dcg = float(((group_gain / counts) * (cum[ends] - cum[starts])).sum())
    return dcg / ideal


# -------------------------------------------------------------------------------------------------------------- faiss
def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BadInputError(None, "semantic search needs faiss: pip install 'cxrlens[align]'") from exc
    return faiss


def build_index(emb_NE: np.ndarray):
    """Exact inner-product faiss index over L2-normalised rows of ``emb_NE`` (N, E) float32."""
    faiss = _faiss()
    x = np.ascontiguousarray(np.asarray(emb_NE, dtype=np.float32))
    if x.ndim != 2 or len(x) == 0:
        raise BadInputError(None, f"need a non-empty (N, E) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise BadInputError(None, "embeddings contain NaN or infinity")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


def search_index(index, query_QE: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows per query: (scores (Q, k) float32, rows (Q, k) int64), best first. Queries are normalised."""
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(query_QE, dtype=np.float32)))
    if q.shape[1] != index.d:
        raise BadInputError(None, f"query dimension {q.shape[1]} ≠ index dimension {index.d}")
    if k < 1:
        raise BadInputError(None, f"k must be ≥ 1, got {k}")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    scores, rows = index.search(q, min(k, index.ntotal))
    return scores, rows.astype(np.int64)


def serialize_index(index) -> bytes:
    return _faiss().serialize_index(index).tobytes()


def deserialize_index(data: bytes):
    return _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8))


# --------------------------------------------------------------------------------------------------------- evaluation
@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """``align index`` / search evaluation: the align run, the split indexed and evaluated, the NDCG cut-offs."""

    align_run: str
    split: str = "test"
    ks: tuple[int, ...] = (5, 10)


def evaluate_queries(
    emb_NE: np.ndarray,
    image_ids: Sequence[str],
    facts: pd.DataFrame,
    embed_query: Callable[[Sequence[str]], np.ndarray],
    queries: Sequence[Query] = QUERIES,
    ks: Sequence[int] = (5, 10),
) -> pd.DataFrame:
    """NDCG@k per query over the indexed images (retrieval through the faiss index, all images ranked).

    ``embed_query`` maps query texts → (Q, E) vectors in the image-embedding space. Returns columns
    ``query, kind, finding, n_rel2, n_rel1, has_relevant, ndcg@k…, top_relevance`` (grades of the top 5).
    """
    index = build_index(emb_NE)
    q_emb = np.asarray(embed_query([q.text for q in queries]), dtype=np.float32)
    scores, rows = search_index(index, q_emb, index.ntotal)
    out = []
    for qi, q in enumerate(queries):
        rel = relevance(q, image_ids, facts)
        full = np.empty(len(rel), dtype=np.float64)
        full[rows[qi]] = scores[qi]
        rec: dict[str, Any] = {
            "query": q.text,
            "kind": q.kind,
            "finding": q.finding,
            "n_rel2": int((rel == 2).sum()),
            "n_rel1": int((rel == 1).sum()),
            "has_relevant": bool(rel.any()),
        }
        for k in ks:
            rec[f"ndcg@{k}"] = ndcg_at_k(rel, full, k)
        rec["top_relevance"] = " ".join(str(int(r)) for r in rel[rows[qi][:5]])
        out.append(rec)
    return pd.DataFrame(out)
