"""The names an evaluation is quoted by: the headline and quoted-macro clinical variants, the agreement row, the
bootstrap units and every gap metric with its statistic — shared by the stage (:mod:`cxrlens.evaluate.run`), the
gap bootstrap (:mod:`cxrlens.evaluate.gaps`) and the tables (:mod:`cxrlens.evaluate.tables`)."""

from __future__ import annotations

from cxrlens.evaluate.clinical import variant_name

__all__ = ["AGREEMENT", "BOOTSTRAP_UNITS", "GAP_METRICS", "HEADLINE", "MACRO_QUOTED"]

HEADLINE = variant_name("f1", "micro", "5", "positive")
"""The headline clinical variant (as named by ``clinical_scores``): F1, micro over the 5 competition labels,
uncertain → positive, not mentioned → negative."""
MACRO_QUOTED = variant_name("f1", "macro-all", "14", "positive")
"""The macro variant quoted in summaries: F1 macro over all 14 labels, zero_division=0 (= scikit-learn's
``f1_score(average="macro", zero_division=0)``): the same fixed 14 labels for every system and every resample."""
AGREEMENT = "reference-render agreement"
"""Row of the reference text scored against the phantom truth drawn from the labeler's reading of it."""
BOOTSTRAP_UNITS = ("study", "patient")
GAP_METRICS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("clinical", f"clinical {HEADLINE}", "micro_f1", False, "clinical F1 micro-5 (u=pos)"),
    (
        "clinical",
        f"clinical {MACRO_QUOTED}",
        "macro_f1",
        False,
        "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)",
    ),
    (
        "grounding",
        "grounding f1 micro · 13 drawable labels · uncertain=positive",
        "micro_f1",
        False,
        "grounding F1 micro-13 (u=pos)",
    ),
    (
        "grounding",
        "hallucination rate per finding · uncertain=positive",
        "fp_share",
        True,
        "hallucination / finding (u=pos)",
    ),
)
"""(family, metric name, statistic, lower is better, short label as in
:func:`cxrlens.evaluate.tables.headline_table`) of every gap with a bootstrap interval; grounding ones only on
phantom datasets."""
