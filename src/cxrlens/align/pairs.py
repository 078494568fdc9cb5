"""Image–report pairing for the adapter: one row per image of an activation store with its report embedding, the
embeddings of its report sentences (and their polarity-flipped twins) and its split (:class:`PairData`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cxrlens.align.config import AlignConfig
from cxrlens.align.negation import flip_polarity
from cxrlens.data.reports import split_sentences
from cxrlens.errors import BadInputError

__all__ = ["PairData", "build_pair_data"]


# ------------------------------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class PairData:
    """Everything the trainer needs, as tensors (rows = images of the activation store).

    Attributes:
        pooled_ND: (N, D) float32 pooled image features; patches_NTD: (N, T, D) float32 pooled patch grid or None.
        report_NDt: (N, Dt) float32 report embeddings; report_group_N: (N,) int64, equal for identical reports.
        sentence_SDt: (S, Dt) float32 embeddings of the unique sentences; image_sentences: per image, the sorted
            int64 sentence ids of its report.
        flipped_SDt: (S, Dt) float32 embedding of each sentence's polarity-flipped twin; has_flip_S: (S,) bool.
        split_N: (N,) str, ``train``/``val``/``test``; has_text_N: (N,) bool, image has a non-empty report.
    """

    pooled_ND: torch.Tensor
    patches_NTD: torch.Tensor | None
    report_NDt: torch.Tensor
    report_group_N: np.ndarray
    sentence_SDt: torch.Tensor
    image_sentences: list[np.ndarray]
    flipped_SDt: torch.Tensor
    has_flip_S: np.ndarray
    split_N: np.ndarray
    has_text_N: np.ndarray

    def __post_init__(self) -> None:
        n = self.pooled_ND.shape[0]
        lengths = {
            "report_NDt": self.report_NDt.shape[0],
            "report_group_N": len(self.report_group_N),
            "image_sentences": len(self.image_sentences),
            "split_N": len(self.split_N),
            "has_text_N": len(self.has_text_N),
        }
        if self.patches_NTD is not None:
            lengths["patches_NTD"] = self.patches_NTD.shape[0]
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise BadInputError(None, f"pair data rows disagree with {n} images: {bad}")
        if self.flipped_SDt.shape != self.sentence_SDt.shape or len(self.has_flip_S) != len(self.sentence_SDt):
            raise BadInputError(None, "flipped sentence embeddings must match the sentence embeddings")


def _pool_patches(patches_NTD: torch.Tensor, grid: tuple[int, int], target: int) -> torch.Tensor:
    """(N, h·w, D) → (N, ≤ target², D) by adaptive average pooling of the (h, w) grid."""
    n, t, d = patches_NTD.shape
    h, w = grid
    if h * w != t:
        raise BadInputError(None, f"patch stream has {t} tokens per image but the grid is {h}x{w}")
    x = patches_NTD.reshape(n, h, w, d).permute(0, 3, 1, 2)
    x = F.adaptive_avg_pool2d(x, (min(h, target), min(w, target)))
    return x.flatten(2).transpose(1, 2).contiguous()


def _report_text(row: pd.Series) -> str:
    parts = [str(row.get(c) or "").strip() for c in ("findings", "impression")]
    return " ".join(p for p in parts if p and p.lower() != "nan")


def build_pair_data(
    store: Any,
    studies: pd.DataFrame,
    cfg: AlignConfig,
    embed: Callable[[Sequence[str]], np.ndarray],
) -> tuple[PairData, dict[str, Any]]:
    """Pair an activation store's images with their reports and sentences.

    Args:
        store: an :class:`cxrlens.activations.ActivationStore`; studies: the dataset's study table (``image_id``,
            ``findings``, ``impression``); embed: texts → (n, Dt) float32 (the cached frozen text encoder).
    Returns the :class:`PairData` and a dict with the resolved streams and counts.
    """

    pooled_name = cfg.pooled_stream or _default_pooled(store.stream_names, store.path)
    patch_name = _patch_stream(store.stream_names, pooled_name, cfg.patch_stream, cfg.adapter, store.path)
    pooled = store.read(pooled_name).float()
    patches = None
    if patch_name:  # read and pool in chunks of images, so peak memory stays ~ one chunk of full patch grids
        tpi = store.info(patch_name).tokens_per_image
        chunks = []
        for lo in range(0, len(store), 256):
            hi = min(lo + 256, len(store))
            block = store.get(patch_name, np.arange(lo * tpi, hi * tpi)).reshape(hi - lo, tpi, -1)
            chunks.append(_pool_patches(block, tuple(store.grid), cfg.patch_grid))
        patches = torch.cat(chunks)
    index = store.index
    if "image_id" not in studies.columns:
        raise BadInputError(None, "study table has no image_id column")
    by_image = studies.drop_duplicates("image_id").set_index(
        studies.drop_duplicates("image_id")["image_id"].astype(str)
    )
    reports: list[str] = []
    for image_id in index["image_id"].astype(str):
        reports.append(_report_text(by_image.loc[image_id]) if image_id in by_image.index else "")
    has_text = np.array([bool(r) for r in reports])
    uniq_reports, report_group = np.unique(np.array(reports, dtype=object), return_inverse=True)
    sentences: dict[str, int] = {}
    image_sentences = []
    for r in reports:
        ids = []
        for s in list(dict.fromkeys(split_sentences(r)))[: cfg.max_sentences]:
            ids.append(sentences.setdefault(s, len(sentences)))
        image_sentences.append(np.array(sorted(ids), dtype=np.int64))
    sent_list = list(sentences)
    flips = [flip_polarity(s) for s in sent_list]
    has_flip = np.array([f is not None for f in flips], dtype=bool)
    texts = [str(t) for t in uniq_reports] + sent_list + [f for f in flips if f is not None]
    emb = np.asarray(embed(texts), dtype=np.float32)
    n_rep, n_sent = len(uniq_reports), len(sent_list)
    rep_emb, sent_emb, flip_emb_present = emb[:n_rep], emb[n_rep : n_rep + n_sent], emb[n_rep + n_sent :]
    flip_emb = np.zeros_like(sent_emb)
    flip_emb[has_flip] = flip_emb_present
    data = PairData(
        pooled_ND=pooled,
        patches_NTD=patches,
        report_NDt=torch.from_numpy(rep_emb[report_group]),
        report_group_N=report_group.astype(np.int64),
        sentence_SDt=torch.from_numpy(sent_emb),
        image_sentences=image_sentences,
        flipped_SDt=torch.from_numpy(flip_emb),
        has_flip_S=has_flip,
        split_N=index["split"].astype(str).to_numpy(),
        has_text_N=has_text,
    )
    info = {
        "pooled_stream": pooled_name,
        "patch_stream": patch_name or "",
        "images": len(reports),
        "images_with_report": int(has_text.sum()),
        "unique_reports": int(n_rep),
        "unique_sentences": int(n_sent),
        "flippable_sentences": int(has_flip.sum()),
    }
    return data, info


def _default_pooled(streams: Sequence[str], path: Any) -> str:
    for suffix in ("/cls", "/mean"):
        for s in streams:
            if s.endswith(suffix):
                return s
    raise BadInputError(path, f"no pooled (cls/mean) stream among {', '.join(streams)}; extract with --tokens cls")


def _patch_stream(streams: Sequence[str], pooled: str, choice: str, adapter: str, path: Any) -> str | None:
    if choice == "none":
        if adapter == "attention":
            raise BadInputError(path, "the attention adapter needs a patch stream")
        return None
    if choice:
        if choice not in streams:
            raise BadInputError(path, f"no stream {choice!r}; streams are {', '.join(streams)}")
        return choice
    guess = pooled.rsplit("/", 1)[0] + "/patch"
    if guess in streams:
        return guess
    if adapter == "attention":
        raise BadInputError(path, f"the attention adapter needs {guess!r}; extract with --tokens cls,patch")
    return None
