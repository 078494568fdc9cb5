"""Contrastive image–report adapter (ELIXR-C style, on frozen features): the ``align train`` stage.

Frozen image features (a pooled token, optionally a coarse grid of patch tokens) go through a small trainable
adapter (an MLP, or attention pooling with learned queries) into a shared space of ``embed_dim`` dimensions; frozen
MiniLM sentence embeddings go through a trainable projection into the same space. Both sides are L2-normalised and
compared with a learnable temperature (CLIP's ``logit_scale``, clamped at 100).

Loss per batch (symmetric InfoNCE, both directions averaged):

* **(image, report)**: each image against the embeddings of every report in the batch. Identical reports (the
  frontal and lateral image of one study; the many "no acute disease" reports) are all positives — the target row
  is uniform over them — instead of being pushed apart as false negatives.
* **(image, sentence)**: one sentence drawn at random from each image's report; every batch sentence that occurs in
  image ``i``'s report is a positive for ``i``. With ``hard_negatives`` the polarity-flipped twin of image ``i``'s
  sentence (:func:`cxrlens.align.negation.flip_polarity`) is one more column in row ``i`` only — "this image
  matches *no effusion*, not *effusion*" — which the frozen MiniLM cannot tell apart on its own. One column among
  a batch of negatives carries little weight until the model is confident, so a two-way term
  ``softplus(−scale · (cos(img, own) − cos(img, twin)))`` (weight ``polarity_weight``) trains that choice directly.

The trainer takes tensors (:class:`PairData`), not datasets. It checkpoints after every epoch (safetensors, with a
JSON header of schema version, config, package version, epoch, history and optimiser state) and resumes from the
last checkpoint of the same config; the epoch order is seeded by ``(seed, epoch)``, so a resumed run gives the same
weights as an uninterrupted one. The weights with the best validation loss are kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from cxrlens import __version__
from cxrlens.activations import ActivationStore
from cxrlens.align.negation import flip_polarity
from cxrlens.align.text import MiniLMEncoder, TextEmbeddingCache
from cxrlens.checkpoint import read_checkpoint
from cxrlens.config import config_from_dict, config_hash, config_to_dict
from cxrlens.console import progress, warn_line
from cxrlens.data.reports import split_sentences
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from cxrlens.workspace import artefact_identity, read_manifest, run_stage, stage_hash

__all__ = [
    "AlignConfig",
    "AlignModel",
    "PairData",
    "build_pair_data",
    "info_nce",
    "load_align_run",
    "load_checkpoint",
    "retrieval_at_k",
    "run_align_train",
    "save_checkpoint",
    "train_adapter",
]

SCHEMA_VERSION = 1
MAX_LOGIT_SCALE = math.log(100.0)


# ---------------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class AlignConfig:
    """The contrastive adapter stage.

    Attributes:
        activations: activation store run name (``activations/<run>``).
        dataset: dataset whose reports pair with the images ("" = the store's own dataset).
        pooled_stream: pooled image stream ("" = the store's first ``…/cls``, else ``…/mean``).
        patch_stream: patch stream ("" = the ``…/patch`` stream of the pooled stream's layer if stored; "none" = off).
        patch_grid: patch tokens are average-pooled to at most ``patch_grid × patch_grid`` tokens (memory bound).
        adapter: ``mlp`` (pooled ⊕ mean patch → MLP) or ``attention`` (learned queries over pooled + patch tokens).
        embed_dim: shared embedding size. hidden_dim: adapter MLP width. queries: attention-pooling queries.
        text_hidden: width of the residual MLP in the text projection (0 = linear projection only).
        epochs, batch_size, lr, weight_decay: AdamW training; init_temperature: initial softmax temperature.
        sentence_weight: weight of the (image, sentence) loss (0 = reports only).
        hard_negatives: add polarity-flipped sentences as per-image hard negatives (an extra InfoNCE column, plus
            ``polarity_weight`` × the two-way loss ``softplus(−scale · (cos(img, own) − cos(img, twin)))``).
        max_sentences: at most this many (unique) sentences per report are used.
        seed: seeds initialisation, the epoch order and the sentence draws.
    """

    activations: str
    dataset: str = ""
    pooled_stream: str = ""
    patch_stream: str = ""
    patch_grid: int = 4
    adapter: str = "mlp"
    embed_dim: int = 128
    hidden_dim: int = 512
    text_hidden: int = 256
    queries: int = 4
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    init_temperature: float = 0.07
    sentence_weight: float = 1.0
    hard_negatives: bool = True
    polarity_weight: float = 1.0
    max_sentences: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.adapter not in ("mlp", "attention"):
            raise BadInputError(None, f"adapter must be mlp or attention, got {self.adapter!r}")
        if self.embed_dim < 2 or self.hidden_dim < 1 or self.batch_size < 2 or self.epochs < 1:
            raise BadInputError(None, "need embed_dim ≥ 2, hidden_dim ≥ 1, batch_size ≥ 2 and epochs ≥ 1")
        if not 0 < self.init_temperature < 1 or self.lr <= 0 or self.sentence_weight < 0:
            raise BadInputError(None, "need 0 < init_temperature < 1, lr > 0 and sentence_weight ≥ 0")


# ------------------------------------------------------------------------------------------------------------ model
class AttentionPool(nn.Module):
    """``queries`` learned queries attend over tokens (B, T, D) → (B, queries · D)."""

    def __init__(self, dim: int, queries: int, heads: int = 1) -> None:
        super().__init__()
        self.q_QD = nn.Parameter(torch.randn(queries, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens_BTD: torch.Tensor) -> torch.Tensor:
        kv = self.norm(tokens_BTD)
        q = self.q_QD.unsqueeze(0).expand(tokens_BTD.shape[0], -1, -1)
        out_BQD, _ = self.attn(q, kv, kv, need_weights=False)
        return out_BQD.flatten(1)


class AlignModel(nn.Module):
    """Image adapter + text projection + learnable temperature.

    ``image(pooled_BD, patches_BTD | None)`` → (B, E) unit rows; ``text(text_BDt)`` → (B, E) unit rows.
    """

    def __init__(self, image_dim: int, text_dim: int, cfg: AlignConfig, has_patches: bool) -> None:
        super().__init__()
        self.kind = cfg.adapter
        self.has_patches = has_patches
        self.in_norm = nn.LayerNorm(image_dim)
        if cfg.adapter == "attention":
            self.pool = AttentionPool(image_dim, cfg.queries)
            adapter_in = image_dim * (cfg.queries + 1)
        else:
            adapter_in = image_dim * (2 if has_patches else 1)
        self.image_mlp = nn.Sequential(
            nn.Linear(adapter_in, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.embed_dim)
        )
        self.text_lin = nn.Linear(text_dim, cfg.embed_dim)
        self.text_mlp = (
            nn.Sequential(nn.Linear(text_dim, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.embed_dim))
            if cfg.text_hidden > 0
            else None
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def image(self, pooled_BD: torch.Tensor, patches_BTD: torch.Tensor | None = None) -> torch.Tensor:
        x = self.in_norm(pooled_BD)
        if self.kind == "attention":
            tokens = x.unsqueeze(1) if patches_BTD is None else torch.cat([x.unsqueeze(1), patches_BTD], dim=1)
            x = torch.cat([x, self.pool(self.in_norm(tokens))], dim=-1)
        elif self.has_patches:
            if patches_BTD is None:
                raise ValueError("this adapter was trained with patch tokens; pass patches_BTD")
            x = torch.cat([x, self.in_norm(patches_BTD.mean(1))], dim=-1)
        return F.normalize(self.image_mlp(x), dim=-1)

    def text(self, text_BDt: torch.Tensor) -> torch.Tensor:
        out = self.text_lin(text_BDt)
        if self.text_mlp is not None:  # non-linear part: lets "no X" land away from "X" (a linear map cannot)
            out = out + self.text_mlp(text_BDt)
        return F.normalize(out, dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def info_nce(
    img_BE: torch.Tensor,
    txt_BE: torch.Tensor,
    scale: torch.Tensor | float,
    *,
    positives_BB: torch.Tensor | None = None,
    hard_neg_BE: torch.Tensor | None = None,
    hard_mask_B: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between unit-norm image and text rows (pair ``i`` ↔ ``i``).

    Args:
        img_BE, txt_BE: (B, E) L2-normalised embeddings; scale: the inverse temperature.
        positives_BB: (B, B) bool, ``[i, j]`` = text ``j`` also describes image ``i`` (diagonal implied); targets
            are uniform over a row's (column's) positives.
        hard_neg_BE: (B, E) one extra negative text per image, used in the image→text direction for that row only;
            hard_mask_B: (B,) bool, which rows have one.
    Returns the scalar loss ``(CE(image→text) + CE(text→image)) / 2``.
    """
    if img_BE.shape != txt_BE.shape or img_BE.ndim != 2:
        raise ValueError(f"need matching (B, E) inputs, got {tuple(img_BE.shape)} and {tuple(txt_BE.shape)}")
    b = img_BE.shape[0]
    logits_BB = scale * img_BE @ txt_BE.T
    pos = torch.eye(b, dtype=torch.bool, device=img_BE.device)
    if positives_BB is not None:
        pos = pos | positives_BB.to(img_BE.device)
    pos_f = pos.float()
    logits_i2t = logits_BB
    tgt_i2t = pos_f / pos_f.sum(1, keepdim=True)
    if hard_neg_BE is not None:
        extra_B1 = (scale * (img_BE * hard_neg_BE).sum(-1)).unsqueeze(1)
        if hard_mask_B is not None:
            extra_B1 = extra_B1.masked_fill(~hard_mask_B.to(img_BE.device).unsqueeze(1), float("-inf"))
        logits_i2t = torch.cat([logits_BB, extra_B1], dim=1)
        tgt_i2t = torch.cat([tgt_i2t, torch.zeros(b, 1, device=img_BE.device)], dim=1)
    logp_i2t = F.log_softmax(logits_i2t, dim=1)
    loss_i2t = -(tgt_i2t * logp_i2t.masked_fill(tgt_i2t == 0, 0.0)).sum(1).mean()
    tgt_t2i = pos_f.T / pos_f.T.sum(1, keepdim=True)
    loss_t2i = -(tgt_t2i * F.log_softmax(logits_BB.T, dim=1)).sum(1).mean()
    return (loss_i2t + loss_t2i) / 2


def retrieval_at_k(img_NE: torch.Tensor, txt_NE: torch.Tensor, k: int = 1, groups_N: np.ndarray | None = None) -> float:
    """Image→text recall@k: share of images whose own text (or one with the same group id) is in its top k."""
    sims = img_NE @ txt_NE.T
    top = sims.topk(min(k, sims.shape[1]), dim=1).indices.cpu().numpy()
    own = np.arange(len(sims))
    if groups_N is None:
        hit = (top == own[:, None]).any(1)
    else:
        g = np.asarray(groups_N)
        hit = (g[top] == g[:, None]).any(1)
    return float(hit.mean())


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


# ------------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, header: dict[str, Any]
) -> Path:
    """Weights (``model.*``) and optimiser state (``optim.*``) as safetensors; ``header`` (plus schema and package
    version) as JSON in the safetensors metadata. Written atomically."""

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim_meta: dict[str, Any] = {}
    if optimizer is not None:
        state = optimizer.state_dict()
        for pid, st in state["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"optim.{pid}.{key}"] = val.detach().contiguous()
                else:
                    optim_meta.setdefault(str(pid), {})[key] = val
        optim_meta["param_groups"] = state["param_groups"]
    full = {"schema": SCHEMA_VERSION, "package_version": __version__, **header, "optim": optim_meta}
    return atomic_write_bytes(path, save(tensors, metadata={"header": json.dumps(full, default=str)}))


def load_checkpoint(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load weights (and optimiser state) saved by :func:`save_checkpoint`; returns the JSON header."""

    header, _, tensors = read_checkpoint(path, key="header", schema=SCHEMA_VERSION, kind="alignment adapter")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and header.get("optim"):
        meta = header["optim"]
        state: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, key = k.split(".", 2)
                state.setdefault(int(pid), {})[key] = v
        for pid, extra in meta.items():
            if pid != "param_groups":
                state.setdefault(int(pid), {}).update(extra)
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return header


# ---------------------------------------------------------------------------------------------------------- trainer
def _sentence_positives(image_sentences: list[np.ndarray], rows: np.ndarray, drawn: np.ndarray) -> torch.Tensor:
    """(B, B) bool: ``[i, j]`` = the sentence drawn for image ``j`` occurs in image ``i``'s report."""
    b = len(rows)
    out = np.zeros((b, b), dtype=bool)
    for i, r in enumerate(rows):
        own = image_sentences[r]
        if len(own):
            out[i] = np.isin(drawn, own)
    return torch.from_numpy(out)


def _batch_loss(
    model: AlignModel, data: PairData, rows: np.ndarray, cfg: AlignConfig, rng: np.random.Generator
) -> torch.Tensor:
    idx = torch.from_numpy(rows)
    patches = None if data.patches_NTD is None else data.patches_NTD[idx]
    img = model.image(data.pooled_ND[idx], patches)
    scale = model.scale()
    groups = data.report_group_N[rows]
    rep_pos = torch.from_numpy(groups[:, None] == groups[None, :])
    loss = info_nce(img, model.text(data.report_NDt[idx]), scale, positives_BB=rep_pos)
    if cfg.sentence_weight > 0:
        keep = np.array([len(data.image_sentences[r]) > 0 for r in rows])
        if keep.sum() >= 2:
            r_s = rows[keep]
            drawn = np.array([rng.choice(data.image_sentences[r]) for r in r_s], dtype=np.int64)
            d = torch.from_numpy(drawn)
            pos = _sentence_positives(data.image_sentences, r_s, drawn)
            hard = hard_mask = None
            img_s = img[torch.from_numpy(keep)]
            txt_s = model.text(data.sentence_SDt[d])
            if cfg.hard_negatives:
                hard = model.text(data.flipped_SDt[d])
                hard_mask = torch.from_numpy(data.has_flip_S[drawn])
            sent_loss = info_nce(img_s, txt_s, scale, positives_BB=pos, hard_neg_BE=hard, hard_mask_B=hard_mask)
            loss = loss + cfg.sentence_weight * sent_loss
            if hard is not None and hard_mask.any():
                # two-way polarity term: own sentence vs its flipped twin (the zero-shot decision, trained directly)
                margin = scale * ((img_s * txt_s).sum(-1) - (img_s * hard).sum(-1))
                loss = loss + cfg.polarity_weight * F.softplus(-margin[hard_mask]).mean()
    return loss


@torch.no_grad()
def _evaluate(model: AlignModel, data: PairData, rows: np.ndarray, cfg: AlignConfig) -> dict[str, float]:
    """Validation loss (fixed sentence draws) and image→report recall@1/@5 (identical reports count as hits)."""
    model.eval()
    rng = np.random.default_rng([cfg.seed, 10**6])
    losses, weights = [], []
    for b0 in range(0, len(rows), cfg.batch_size):
        chunk = rows[b0 : b0 + cfg.batch_size]
        if len(chunk) < 2:
            continue
        losses.append(float(_batch_loss(model, data, chunk, cfg, rng)))
        weights.append(len(chunk))
    img = embed_images(model, data, rows)
    txt = model.text(data.report_NDt[torch.from_numpy(rows)])
    groups = data.report_group_N[rows]
    model.train()
    return {
        "loss": float(np.average(losses, weights=weights)) if losses else float("nan"),
        "r@1": retrieval_at_k(img, txt, 1, groups),
        "r@5": retrieval_at_k(img, txt, 5, groups),
        "chance_r@1": float(np.mean([np.mean(groups == g) for g in groups])),
    }


@torch.no_grad()
def embed_images(model: AlignModel, data: PairData, rows: np.ndarray | None = None, batch: int = 1024) -> torch.Tensor:
    """(len(rows), E) unit-norm image embeddings (all images when ``rows`` is None)."""
    rows = np.arange(len(data.pooled_ND)) if rows is None else rows
    was = model.training
    model.eval()
    out = []
    for b0 in range(0, len(rows), batch):
        idx = torch.from_numpy(rows[b0 : b0 + batch])
        patches = None if data.patches_NTD is None else data.patches_NTD[idx]
        out.append(model.image(data.pooled_ND[idx], patches))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.image_mlp[-1].out_features)


def train_adapter(
    data: PairData,
    cfg: AlignConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool = True,
    identity: str | None = None,
) -> tuple[AlignModel, dict[str, Any]]:
    """Train the adapter on ``data``'s train split (validating on val); resumes from ``checkpoint_dir/last`` when
    that checkpoint was written for the same ``identity`` (default: the config's hash; the stage passes its job
    hash, which also names the activations and dataset it read).

    Returns the model holding the best-validation weights and a dict with ``history`` (per epoch: train loss,
    val loss, val r@1/r@5, temperature), ``best_epoch`` and ``resumed_from_epoch``.
    """

    torch.manual_seed(cfg.seed)
    train_rows = np.nonzero((data.split_N == "train") & data.has_text_N)[0]
    val_rows = np.nonzero((data.split_N == "val") & data.has_text_N)[0]
    if len(train_rows) < cfg.batch_size:
        raise BadInputError(None, f"only {len(train_rows)} training images with reports (< batch {cfg.batch_size})")
    if len(val_rows) < 2:
        warn_line("no validation images with reports: model selection uses the first 10 % of the training images")
        val_rows = train_rows[: max(2, len(train_rows) // 10)]
    model = AlignModel(data.pooled_ND.shape[1], data.report_NDt.shape[1], cfg, data.patches_NTD is not None)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "logit_scale"]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "logit_scale"]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    steps_per_epoch = len(train_rows) // cfg.batch_size
    total_steps = max(1, cfg.epochs * steps_per_epoch)

    def set_lr(step: int) -> None:  # cosine decay from cfg.lr to 0, a pure function of the step (exact resume)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"loss": float("inf"), "epoch": -1, "state": None}
    start_epoch = 0
    chash = identity or config_hash(cfg)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    last = ckpt_dir / "last.safetensors" if ckpt_dir else None
    if last is not None and last.exists():
        probe = AlignModel(data.pooled_ND.shape[1], data.report_NDt.shape[1], cfg, data.patches_NTD is not None)
        header = load_checkpoint(last, probe)
        if header.get("config_hash") == chash:
            header = load_checkpoint(last, model, opt)
            start_epoch = int(header["epoch"]) + 1
            history = list(header["history"])
            best_path = ckpt_dir / "best.safetensors"
            if best_path.exists():
                bh = load_checkpoint(best_path, probe)
                best = {"loss": float(bh["val_loss"]), "epoch": int(bh["epoch"]), "state": probe.state_dict()}
    resumed_from = start_epoch - 1 if start_epoch else None
    with progress(disable=not show_progress) as bar:
        task = bar.add_task("align train", total=cfg.epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(train_rows)
            t0, total = time.perf_counter(), 0.0
            for s in range(steps_per_epoch):
                rows = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                set_lr(epoch * steps_per_epoch + s)
                loss = _batch_loss(model, data, rows, cfg, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                bar.advance(task)
            val = _evaluate(model, data, val_rows, cfg)
            rec = {
                "epoch": epoch,
                "train_loss": total / steps_per_epoch,
                "val_loss": val["loss"],
                "val_r@1": val["r@1"],
                "val_r@5": val["r@5"],
                "chance_r@1": val["chance_r@1"],
                "temperature": 1.0 / model.scale().item(),
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            bar.update(task, description=f"align train ep {epoch + 1}/{cfg.epochs} val r@1 {val['r@1']:.3f}")
            if val["loss"] < best["loss"]:
                best = {
                    "loss": val["loss"],
                    "epoch": epoch,
                    "state": {k: v.clone() for k, v in model.state_dict().items()},
                }
                if ckpt_dir is not None:
                    hdr = {"config": config_to_dict(cfg), "config_hash": chash, "epoch": epoch, "val_loss": val["loss"]}
                    save_checkpoint(ckpt_dir / "best.safetensors", model, None, hdr)
            if ckpt_dir is not None:
                hdr = {"config": config_to_dict(cfg), "config_hash": chash, "epoch": epoch, "history": history}
                save_checkpoint(last, model, opt, hdr)  # type: ignore[arg-type]
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model, {"history": history, "best_epoch": best["epoch"], "resumed_from_epoch": resumed_from}


# ------------------------------------------------------------------------------------------------------ the stage
def run_align_train(
    workspace: Any,
    cfg: AlignConfig,
    *,
    run: str | None = None,
    encoder: Any = None,
    force: bool = False,
    show_progress: bool = True,
) -> Any:
    """``align train``: pair, train, embed every image; writes ``align/<run>`` (default ``align-<activations>``).

    Files: ``model.safetensors`` (best weights + JSON header), ``config.json``, ``history.json``,
    ``image_embeddings.safetensors`` (``embeddings`` (N, E) float32, rows = the store's rows), ``images.parquet``
    (the store's index), ``manifest.json``. Checkpoints live in ``align/.<run>.partial/`` until the run is done,
    so a killed run resumes there. Returns the :class:`cxrlens.workspace.StageResult`.
    """

    run = run or f"align-{cfg.activations}"
    final = workspace.align(run)
    store = ActivationStore(workspace.activations(cfg.activations))
    dataset = cfg.dataset or str(store.manifest.config.get("dataset", ""))
    upstream = {  # a store or dataset rebuilt under the same name retrains the adapter instead of reusing it
        f"activations/{cfg.activations}": artefact_identity(store.path),
        f"datasets/{dataset}": artefact_identity(workspace.dataset(dataset)),
    }
    chash = stage_hash(cfg, upstream)  # what run_stage keys the artefact on; the checkpoints carry it too

    def build(partial: Path) -> dict[str, Any]:
        studies = read_studies(workspace, dataset)
        text_encoder = encoder or MiniLMEncoder()
        cache = TextEmbeddingCache.in_workspace(workspace.root, text_encoder)
        data, info = build_pair_data(store, studies, cfg, cache.get)
        t0 = time.perf_counter()
        model, result = train_adapter(
            data, cfg, checkpoint_dir=partial / "checkpoints", show_progress=show_progress, identity=chash
        )
        elapsed = time.perf_counter() - t0
        header = {
            "config": config_to_dict(cfg),
            "config_hash": chash,
            "epoch": result["best_epoch"],
            "image_dim": int(data.pooled_ND.shape[1]),
            "text_dim": int(data.report_NDt.shape[1]),
            "has_patches": data.patches_NTD is not None,
            "text_model": text_encoder.name,
            "dataset": dataset,
            **info,
        }
        save_checkpoint(partial / "model.safetensors", model, None, header)
        emb = embed_images(model, data)
        atomic_write_bytes(partial / "image_embeddings.safetensors", save({"embeddings": emb.contiguous()}))
        atomic_write_parquet(partial / "images.parquet", store.index)
        atomic_write_json(partial / "config.json", config_to_dict(cfg))
        atomic_write_json(partial / "history.json", result)
        shutil.rmtree(partial / "checkpoints", ignore_errors=True)
        last = result["history"][-1] if result["history"] else {}
        best = result["history"][result["best_epoch"]] if result["best_epoch"] >= 0 else {}
        return {
            "inputs": {"activations": store.manifest.config_hash, "dataset": dataset},
            "rows": {
                "images": int(emb.shape[0]),
                "train_images": int(((data.split_N == "train") & data.has_text_N).sum()),
            },
            "skipped": {"images_without_report": int((~data.has_text_N).sum())},
            "extra": {
                **info,
                "dataset": dataset,
                "text_model": text_encoder.name,
                "best_epoch": result["best_epoch"],
                "best": best,
                "last": last,
                "resumed_from_epoch": result["resumed_from_epoch"],
                "train_seconds_this_run": round(elapsed, 2),
            },
        }

    return run_stage(
        final, stage="align.train", config=cfg, build=build, force=force, upstream=upstream, resumable=True
    )


@dataclasses.dataclass
class AlignRun:
    """A trained adapter read back: the model, its header, image embeddings (N, E) and the image table."""

    path: Path
    model: AlignModel
    header: dict[str, Any]
    image_emb_NE: torch.Tensor
    images: pd.DataFrame
    config: AlignConfig


def load_align_run(path: str | Path) -> AlignRun:
    """Read an ``align train`` artefact (``align/<run>``)."""

    path = Path(path)
    m = read_manifest(path)
    if m is None or m.stage != "align.train":
        raise BadInputError(path, "not a complete `cxrlens align train` run (no align.train manifest)")
    cfg = config_from_dict(AlignConfig, m.config)

    with safe_open(str(path / "model.safetensors"), framework="pt") as fh:
        header = json.loads((fh.metadata() or {})["header"])
    model = AlignModel(int(header["image_dim"]), int(header["text_dim"]), cfg, bool(header["has_patches"]))
    load_checkpoint(path / "model.safetensors", model)
    model.eval()
    emb = load_file(str(path / "image_embeddings.safetensors"))["embeddings"].float()
    images = pd.read_parquet(path / "images.parquet")
    return AlignRun(path, model, header, emb, images, cfg)
