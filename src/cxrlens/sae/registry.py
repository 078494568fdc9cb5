"""SAE families by name: ``build_sae(SAEConfig(arch="topk", …))``."""

from __future__ import annotations

from cxrlens.sae.base import SAE, SAEConfig
from cxrlens.sae.gated import GatedSAE
from cxrlens.sae.hybrid import HybridSAE
from cxrlens.sae.jumprelu import JumpReLUSAE
from cxrlens.sae.matryoshka import MatryoshkaSAE
from cxrlens.sae.relu import ReLUSAE
from cxrlens.sae.topk import BatchTopKSAE, TopKSAE

__all__ = ["ARCHS", "build_sae", "default_latents"]

ARCHS: dict[str, type[SAE]] = {
    "relu": ReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
    "gated": GatedSAE,
    "matryoshka": MatryoshkaSAE,
    "hybrid": HybridSAE,
}

# expansion factor used when the number of latents is not given (SAE-Rad found ×64 best for its hybrid)
DEFAULT_EXPANSION = {"hybrid": 64}


def default_latents(arch: str, d_in: int) -> int:
    return DEFAULT_EXPANSION.get(arch, 16) * d_in


def build_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of family ``cfg.arch`` (parameters drawn from torch's global RNG)."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown SAE arch {cfg.arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[cfg.arch](cfg)
