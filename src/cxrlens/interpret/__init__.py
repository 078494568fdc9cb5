from cxrlens.interpret.llm import LLMConfig, LLMError, contrast_reports, describe_features_llm
from cxrlens.interpret.scoring import score_descriptions, summarise_scores

__all__ = [
    "LLMConfig",
    "LLMError",
    "contrast_reports",
    "describe_features_llm",
    "score_descriptions",
    "summarise_scores",
]
