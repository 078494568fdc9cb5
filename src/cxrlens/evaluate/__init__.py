"""Report evaluation: NLG metrics, clinical label F1, phantom grounding, baselines, the cluster bootstrap and the
evaluation stage."""

from cxrlens.evaluate.baselines import (
    BASELINES,
    constant_reports,
    most_common_report,
    normalise_report,
    random_reports,
    report_plain_text,
)
from cxrlens.evaluate.bootstrap import UNITS, BootstrapResult, bootstrap_weights, cluster_bootstrap, weighted_auc
from cxrlens.evaluate.clinical import (
    AVERAGES,
    FIVE_FINDINGS,
    clinical_scores,
    clinical_scores_from_text,
    macro_over_all_labels,
    macro_over_reference_positive,
    micro_scores,
    per_label_scores,
    variant_name,
)
from cxrlens.evaluate.grounding import (
    GROUNDING_LABELS,
    GroundingResult,
    excluded_labels,
    grounding_scores,
    rendered_labels,
)
from cxrlens.evaluate.leak import LeakCheck, LeakyEvaluationError, leak_check
from cxrlens.evaluate.names import AGREEMENT, GAP_METRICS, HEADLINE, MACRO_QUOTED
from cxrlens.evaluate.nlg import NLG_METRICS, nlg_scores, tokenize_report
from cxrlens.evaluate.run import EvaluateConfig, read_reports_jsonl, run_evaluate_reports
from cxrlens.evaluate.tables import gap_table, headline_table

__all__ = [
    "AGREEMENT",
    "AVERAGES",
    "BASELINES",
    "FIVE_FINDINGS",
    "GAP_METRICS",
    "GROUNDING_LABELS",
    "HEADLINE",
    "MACRO_QUOTED",
    "NLG_METRICS",
    "UNITS",
    "BootstrapResult",
    "EvaluateConfig",
    "GroundingResult",
    "LeakCheck",
    "LeakyEvaluationError",
    "bootstrap_weights",
    "clinical_scores",
    "clinical_scores_from_text",
    "cluster_bootstrap",
    "constant_reports",
    "excluded_labels",
    "gap_table",
    "grounding_scores",
    "headline_table",
    "leak_check",
    "macro_over_all_labels",
    "macro_over_reference_positive",
    "micro_scores",
    "most_common_report",
    "nlg_scores",
    "normalise_report",
    "per_label_scores",
    "random_reports",
    "read_reports_jsonl",
    "rendered_labels",
    "report_plain_text",
    "run_evaluate_reports",
    "tokenize_report",
    "variant_name",
    "weighted_auc",
]
