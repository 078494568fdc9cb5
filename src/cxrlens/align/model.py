"""The adapter: image features (pooled token, optionally attention-pooled patch tokens) and frozen sentence
embeddings projected into one L2-normalised space with a learnable temperature; the symmetric InfoNCE loss and
recall@k."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrlens.align.config import AlignConfig

__all__ = ["MAX_LOGIT_SCALE", "AlignModel", "AttentionPool", "info_nce", "retrieval_at_k"]

MAX_LOGIT_SCALE = math.log(100.0)


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
