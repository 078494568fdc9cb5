"""Tables of an evaluation's ``metrics.json`` (the dict :func:`cxrlens.evaluate.run.run_evaluate_reports` writes):
systems × key metrics, and every gap with its interval."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxrlens.evaluate.baselines import BASELINES
from cxrlens.evaluate.clinical import variant_name
from cxrlens.evaluate.names import AGREEMENT, HEADLINE, MACRO_QUOTED

__all__ = ["gap_table", "headline_table"]


_HEADLINE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("BLEU-4", "nlg", "BLEU-4"),
    ("ROUGE-L", "nlg", "ROUGE-L"),
    ("METEOR", "nlg", "METEOR"),
    ("CIDEr-D", "nlg", "CIDEr-D"),
    ("clinical F1 micro-5 (u=pos)", "clinical", HEADLINE),
    ("clinical F1 micro-14 (u=pos)", "clinical", "f1 micro · CheXpert-14 · uncertain=positive"),
    (
        "clinical F1 macro-14 over labels with a reference positive (u=pos)",
        "clinical",
        variant_name("f1", "macro-ref", "14", "positive"),
    ),
    ("clinical F1 macro-14 over all labels, zero_division=0 (u=pos)", "clinical", MACRO_QUOTED),
    ("empty reports (share)", "system", "empty_reports"),
    ("grounding F1 micro-13 (u=pos)", "grounding", "grounding f1|micro · 13 drawable labels · uncertain=positive"),
    ("hallucination / finding (u=pos)", "grounding", "hallucination rate|per finding · uncertain=positive"),
    ("hallucination / report, all reports (u=pos)", "grounding", "hallucination rate|per report · uncertain=positive"),
    (
        "hallucination / non-empty report (u=pos)",
        "grounding",
        "hallucination rate|per non-empty report · uncertain=positive",
    ),
    ("side accuracy", "grounding", "side accuracy|sentences stating it · uncertain=positive"),
    ("zone accuracy", "grounding", "zone accuracy|sentences stating it · uncertain=positive"),
)


def headline_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Systems × key metrics from a ``metrics.json`` dict (rows in the order cxrlens, constant, random, nearest,
    :data:`AGREEMENT` — the last only on phantoms, and not a ceiling: see :mod:`cxrlens.evaluate.run`).

    Columns name their variant (``u=pos``: uncertain → positive; ``micro-5``: micro over the 5 competition labels;
    grounding columns only on phantom datasets). Missing values (METEOR unavailable, NLG of ``reference``) are NaN.
    """
    has_grounding = any("grounding" in s for s in metrics["systems"].values())
    rows = {}
    for name, s in metrics["systems"].items():
        row = {}
        clin = {r["variant"]: r["value"] for r in s.get("clinical", [])}
        grd = {f"{r['metric']}|{r['variant']}": r["value"] for r in s.get("grounding", [])}
        for col, family, key in _HEADLINE_COLUMNS:
            if family == "grounding" and not has_grounding:
                continue
            empty = {"empty_reports": (s.get("empty_reports") or {}).get("fraction")}
            src = {"nlg": s.get("nlg", {}), "clinical": clin, "grounding": grd, "system": empty}[family]
            value = src.get(key)
            row[col] = float(value) if value is not None else float("nan")
        rows[name] = row
    order = ["cxrlens", *BASELINES, AGREEMENT]
    names = sorted(rows, key=lambda k: (order.index(k) if k in order else len(order), k))
    table = pd.DataFrame.from_dict({k: rows[k] for k in names}, orient="index")
    table.index.name = "system"
    return table


def gap_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Every gap of a ``metrics.json`` dict: columns ``metric, label, baseline, cxrlens, baseline_value, gap, ci_low,
    ci_high, p_le_0, lower_is_better`` (``metric`` the full variant name, ``label`` its short form as in
    :func:`headline_table`; CI NaN when no interval was computed). The unit the interval resampled is in
    ``metrics["bootstrap"]``."""
    cols = [
        "metric",
        "label",
        "baseline",
        "cxrlens",
        "baseline_value",
        "gap",
        "ci_low",
        "ci_high",
        "p_le_0",
        "lower_is_better",
    ]
    rows = []
    for r in metrics.get("gap_table", []):
        ci = r.get("ci95") or [float("nan"), float("nan")]
        rows.append(
            {
                **{k: r.get(k) for k in ("metric", "baseline", "cxrlens", "baseline_value", "gap", "p_le_0")},
                "label": r.get("label") or r.get("metric"),
                "ci_low": ci[0],
                "ci_high": ci[1],
                "lower_is_better": bool(r.get("lower_is_better")),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    for c in ("cxrlens", "baseline_value", "gap", "ci_low", "ci_high", "p_le_0"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out
