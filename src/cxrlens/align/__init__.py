"""Language-aligned image embeddings (ELIXR-style) on frozen backbone features.

* :mod:`~cxrlens.align.text` — frozen offline sentence encoder (all-MiniLM-L6-v2) + safetensors embedding cache.
* :mod:`~cxrlens.align.contrastive` — adapter + text projection trained by symmetric InfoNCE (``align train``).
* :mod:`~cxrlens.align.negation` — polarity flips of report sentences (hard negatives).
* :mod:`~cxrlens.align.zeroshot` — prompt-ensemble zero-shot AUCs with bootstrap CIs; negation check.
* :mod:`~cxrlens.align.search` — faiss index, query set with graded relevance, NDCG@k.
* :mod:`~cxrlens.align.probes` — data-efficient logistic-regression probes and learning curves.
* :mod:`~cxrlens.align.stages` — the workspace-level evaluation stages used by ``cxrlens align``.
"""

from cxrlens.align.contrastive import (
    AlignConfig,
    AlignModel,
    PairData,
    build_pair_data,
    info_nce,
    load_align_run,
    retrieval_at_k,
    run_align_train,
    train_adapter,
)
from cxrlens.align.negation import flip_polarity
from cxrlens.align.probes import ProbeConfig, run_probes, summarize_probes
from cxrlens.align.search import QUERIES, Query, SearchConfig, build_index, ndcg_at_k, search_index
from cxrlens.align.text import MiniLMEncoder, TextEmbeddingCache
from cxrlens.align.zeroshot import PROMPTS, ZeroShotConfig, auc, bootstrap_auc, zero_shot

__all__ = [
    "PROMPTS",
    "QUERIES",
    "AlignConfig",
    "AlignModel",
    "MiniLMEncoder",
    "PairData",
    "ProbeConfig",
    "Query",
    "SearchConfig",
    "TextEmbeddingCache",
    "ZeroShotConfig",
    "auc",
    "bootstrap_auc",
    "build_index",
    "build_pair_data",
    "flip_polarity",
    "info_nce",
    "load_align_run",
    "ndcg_at_k",
    "retrieval_at_k",
    "run_align_train",
    "run_probes",
    "search_index",
    "summarize_probes",
    "train_adapter",
    "zero_shot",
]
