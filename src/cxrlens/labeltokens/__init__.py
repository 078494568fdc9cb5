"""Label-token ViT (LT-ViT-style): a multi-label classifier whose per-label attention maps are its explanation.

``model`` (LTViT, its CLS baseline, maps), ``pretrained`` (init from a ``cxrlens.backbones`` ViT), ``train`` (masked
BCE, AdamW + warm-up/cosine, checkpoints, exact resume), ``grounding`` (pointing game, IoU, Grad-CAM, sanity check),
``run`` (workspace stages behind ``cxrlens lt-vit``). See docs/labeltokens.md.
"""

from cxrlens.labeltokens.grounding import MAP_METHODS, compute_maps, gradcam_maps, map_grounding_scores, sanity_check
from cxrlens.labeltokens.model import LTOutput, LTViT, LTViTConfig, config_with, label_maps, upsample_maps
from cxrlens.labeltokens.pretrained import from_backbone
from cxrlens.labeltokens.train import (
    LabelData,
    LTTrainConfig,
    auc_per_label,
    load_model,
    masked_bce,
    paired_bootstrap_auc,
    predict,
    prepare_targets,
    train,
)

__all__ = [
    "MAP_METHODS",
    "LTOutput",
    "LTTrainConfig",
    "LTViT",
    "LTViTConfig",
    "LabelData",
    "auc_per_label",
    "compute_maps",
    "config_with",
    "from_backbone",
    "gradcam_maps",
    "label_maps",
    "load_model",
    "map_grounding_scores",
    "masked_bce",
    "paired_bootstrap_auc",
    "predict",
    "prepare_targets",
    "sanity_check",
    "train",
    "upsample_maps",
]
