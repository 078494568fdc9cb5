from cxrlens.interpret.heatmaps import (
    HEATMAP_METHODS,
    HeatmapResult,
    HeatmapSanity,
    feature_heatmaps,
    heatmap_method,
    heatmap_sanity,
    model_view,
    normalise_maps,
    overlay_png,
    upsample,
)
from cxrlens.interpret.llm import LLMConfig, LLMError, contrast_reports, describe_features_llm
from cxrlens.interpret.scoring import score_descriptions, summarise_scores

__all__ = [
    "HEATMAP_METHODS",
    "HeatmapResult",
    "HeatmapSanity",
    "LLMConfig",
    "LLMError",
    "contrast_reports",
    "describe_features_llm",
    "feature_heatmaps",
    "heatmap_method",
    "heatmap_sanity",
    "model_view",
    "normalise_maps",
    "overlay_png",
    "score_descriptions",
    "summarise_scores",
    "upsample",
]
