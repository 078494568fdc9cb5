"""Sparse autoencoders: one module per family over a common interface (:mod:`cxrlens.sae.base`), a trainer and metrics.

``build_sae(SAEConfig(arch=…))`` → model; ``train(batches, TrainConfig(…))`` → trained model;
``evaluate_sae(sae, acts)`` → metrics; ``save_sae`` / ``load_sae`` → ``model.safetensors`` + ``config.json``.
"""

from cxrlens.sae.base import SAE, SAEConfig
from cxrlens.sae.io import load_sae, save_sae
from cxrlens.sae.registry import ARCHS, build_sae, default_latents

__all__ = ["ARCHS", "SAE", "SAEConfig", "build_sae", "default_latents", "load_sae", "save_sae"]
