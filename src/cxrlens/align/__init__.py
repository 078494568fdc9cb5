"""Language-aligned image embeddings (ELIXR-style) on frozen backbone features.

* :mod:`~cxrlens.align.text` — frozen offline sentence encoder (all-MiniLM-L6-v2) + safetensors embedding cache.
* :mod:`~cxrlens.align.config` — :class:`AlignConfig`, the adapter's config.
* :mod:`~cxrlens.align.model` — the adapter and text projection, symmetric InfoNCE, recall@k.
* :mod:`~cxrlens.align.pairs` — image–report pairing (:class:`PairData`) from an activation store and its reports.
* :mod:`~cxrlens.align.train` — the trainer on tensors: checkpoints every epoch, exact resume, best-val weights.
* :mod:`~cxrlens.align.contrastive` — the ``align train`` stage and its reader :func:`load_align_run`.
* :mod:`~cxrlens.align.negation` — polarity flips of report sentences (hard negatives).
* :mod:`~cxrlens.align.zeroshot` — prompt-ensemble zero-shot AUCs with bootstrap CIs; negation check.
* :mod:`~cxrlens.align.search` — faiss index, query set with graded relevance, NDCG@k.
* :mod:`~cxrlens.align.probes` — data-efficient logistic-regression probes and learning curves.
* :mod:`~cxrlens.align.stages` — the workspace-level evaluation stages used by ``cxrlens align``.
"""

from cxrlens.align.config import AlignConfig
from cxrlens.align.contrastive import load_align_run, run_align_train
from cxrlens.align.model import AlignModel, info_nce, retrieval_at_k
from cxrlens.align.negation import flip_polarity
from cxrlens.align.pairs import PairData, build_pair_data
from cxrlens.align.probes import ProbeConfig, run_probes, summarize_probes
from cxrlens.align.search import QUERIES, Query, SearchConfig, build_index, ndcg_at_k, search_index
from cxrlens.align.text import MiniLMEncoder, TextEmbeddingCache
from cxrlens.align.train import train_adapter
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
