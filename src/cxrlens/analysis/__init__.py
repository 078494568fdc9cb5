"""Latent-space analysis: VAEs to analyse, random-forest ranking, latent masking, TCAV with statistics, embeddings
with validation and disentanglement metrics (the cascading-randomisation sanity check every map passes lives in
:mod:`cxrlens.saliency`). See docs/analysis.md.

Workspace stages (what ``cxrlens analyze …`` runs) live in :mod:`cxrlens.analysis.stages` and
:mod:`cxrlens.analysis.stages_maps`.
"""

from cxrlens.analysis.disentanglement import (
    ConditionalCodes,
    DisentanglementConfig,
    InterventionalCodes,
    beta_vae_score,
    dci,
    disentanglement_report,
    factor_vae_score,
    mig,
    sap,
)
from cxrlens.analysis.embedding import EmbeddingConfig, embed, embedding_plot, validate_embedding
from cxrlens.analysis.importance import ImportanceConfig, feature_importance, importance_plot, pool_maps
from cxrlens.analysis.masking import MaskingConfig, fit_factor_reader, mask_channel, masking_effects
from cxrlens.analysis.tcav import LayerProbe, TCAVConfig, benjamini_hochberg, run_tcav, tcav_test, train_cav
from cxrlens.analysis.vae import VAEConfig, decode, encode, load_vae, train_vae, traversal_grid

__all__ = [
    "ConditionalCodes",
    "DisentanglementConfig",
    "EmbeddingConfig",
    "ImportanceConfig",
    "InterventionalCodes",
    "LayerProbe",
    "MaskingConfig",
    "TCAVConfig",
    "VAEConfig",
    "benjamini_hochberg",
    "beta_vae_score",
    "dci",
    "decode",
    "disentanglement_report",
    "embed",
    "embedding_plot",
    "encode",
    "factor_vae_score",
    "feature_importance",
    "fit_factor_reader",
    "importance_plot",
    "load_vae",
    "mask_channel",
    "masking_effects",
    "mig",
    "pool_maps",
    "run_tcav",
    "sap",
    "tcav_test",
    "train_cav",
    "train_vae",
    "traversal_grid",
    "validate_embedding",
]
