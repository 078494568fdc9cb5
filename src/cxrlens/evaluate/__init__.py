"""Report evaluation: NLG metrics, clinical label F1, phantom grounding, baselines and the evaluation stage."""

from cxrlens.evaluate.baselines import (
    BASELINES,
    constant_reports,
    most_common_report,
    nearest_neighbours,
    normalise_report,
    random_reports,
    report_plain_text,
)
from cxrlens.evaluate.clinical import FIVE_FINDINGS, clinical_scores, clinical_scores_from_text, per_label_scores
from cxrlens.evaluate.grounding import (
    GROUNDING_LABELS,
    GroundingResult,
    excluded_labels,
    grounding_scores,
    parse_side,
    parse_zone,
    rendered_labels,
)
from cxrlens.evaluate.nlg import NLG_METRICS, nlg_scores, tokenize_report
from cxrlens.evaluate.run import HEADLINE, EvaluateConfig, evaluate_reports, headline_table, read_reports_jsonl

__all__ = [
    "BASELINES",
    "FIVE_FINDINGS",
    "GROUNDING_LABELS",
    "HEADLINE",
    "NLG_METRICS",
    "EvaluateConfig",
    "GroundingResult",
    "clinical_scores",
    "clinical_scores_from_text",
    "constant_reports",
    "evaluate_reports",
    "excluded_labels",
    "grounding_scores",
    "headline_table",
    "most_common_report",
    "nearest_neighbours",
    "nlg_scores",
    "normalise_report",
    "parse_side",
    "parse_zone",
    "per_label_scores",
    "random_reports",
    "read_reports_jsonl",
    "rendered_labels",
    "report_plain_text",
    "tokenize_report",
]
