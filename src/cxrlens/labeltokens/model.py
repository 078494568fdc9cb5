"""Label-token ViT (LT-ViT-style) and its same-size CLS baseline, with per-label attention maps.

Design (after Marikkar et al., "LT-ViT: A Vision Transformer for multi-label Chest X-ray classification",
arXiv 2311.07263: randomly initialised label tokens attend jointly with image tokens; the paper's claims are better
AUC than a CLS ViT, agnosticism to the pre-training of the ViT, and maps without Grad-CAM):

* **Image stream** — a plain pre-norm ViT over ``[CLS] + patch tokens`` (``n_img = 1 + h * w`` tokens). Image tokens
  attend to image tokens only, never to label tokens, so the image stream is exactly the (possibly pre-trained)
  backbone and one label's token cannot change what another label sees.
* **Label tokens** — ``L`` learned vectors (one per label, no position embedding) join the sequence before block
  ``join_at`` and pass through every later block with the *same* block weights. In each such block a label token's
  query attends jointly to the image tokens of that depth and to all label tokens (one softmax over both).
* **Multi-scale by depth.** Because they join at ``join_at < depth``, label tokens aggregate image tokens from
  ``depth - join_at`` depths: earlier blocks hold more local, patch-faithful tokens (good for localisation), later
  blocks more mixed, semantic ones (good for classification). We use depths rather than a second patch size because
  it costs no extra image tokens (2 CPU cores), keeps one patch grid for all maps, and works unchanged on any
  pre-trained ViT. ``join_at = depth - 1`` gives the single-scale variant.
* **Per-label head** — after the final LayerNorm, label token ``l`` gives logit ``l`` through its own linear head
  (``w_l · t_l + b_l``).
* **CLS baseline** (``kind="cls"``) — the same ViT (same depth, width, patch grid, CLS token) with a linear head
  ``(D → L)`` on the final CLS token: same size, no label tokens.

Maps (:func:`label_maps`): for each label, the head-averaged attention of its label token over the patch tokens
(``"last"``: the last block; ``"rollout"``: attention rollout through every block, Abnar & Zuidema 2020, with the
residual as ``0.5 · I``). **Normalisation:** on the patch grid a map is non-negative and sums to 1 over the patches
(attention to CLS/label tokens is dropped and the rest renormalised); after bilinear upsampling to the image it is
renormalised to sum to 1 over the pixels — a probability distribution over the image. The CLS baseline has one
map (its CLS token's), repeated for every label.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxrlens.backbones.base import Preprocessor
from cxrlens.errors import BadInputError

__all__ = ["MAP_MODES", "MODEL_KINDS", "LTOutput", "LTViT", "LTViTConfig", "config_with", "label_maps", "upsample_maps"]

MODEL_KINDS = ("label-tokens", "cls")
MAP_MODES = ("last", "rollout")


@dataclass(frozen=True)
class LTViTConfig:
    """Architecture of :class:`LTViT`.

    Attributes:
        labels: label names, one label token (and head) each.
        kind: ``"label-tokens"`` (LT-ViT) or ``"cls"`` (same-size ViT with a CLS head, the ablation baseline).
        image_size, patch_size, in_channels: input ``(in_channels, image_size, image_size)``; grid ``image_size /
            patch_size`` squared.
        dim, depth, heads, mlp_ratio: width, number of blocks, attention heads, MLP hidden = ``mlp_ratio * dim``.
        join_at: index of the first block the label tokens enter (0 ≤ join_at < depth); they then see the image tokens
            of ``depth - join_at`` depths. ``None`` means ``depth // 2``.
        layer_scale: per-channel residual scales (DINOv2 has them; plain ViT does not).
        norm_eps: LayerNorm epsilon (ViT 1e-12, DINOv2 1e-6).
        preprocessor: grayscale ``[0, 1]`` → model input (resize + normalise), see
            :class:`cxrlens.backbones.base.Preprocessor`.
        init_from: the backbone spec the image stream was initialised from (``None``: random), for the record.
    """

    labels: tuple[str, ...]
    kind: str = "label-tokens"
    image_size: int = 64
    patch_size: int = 8
    in_channels: int = 1
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    join_at: int | None = None
    layer_scale: bool = False
    norm_eps: float = 1e-6
    preprocessor: Preprocessor | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if not self.labels:
            raise ValueError("at least one label is needed")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if not 0 <= self.first_label_block < self.depth:
            raise ValueError(f"join_at must lie in [0, {self.depth}), got {self.join_at}")

    @property
    def first_label_block(self) -> int:
        return self.depth // 2 if self.join_at is None else self.join_at

    @property
    def grid(self) -> tuple[int, int]:
        g = self.image_size // self.patch_size
        return (g, g)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def input_preprocessor(self) -> Preprocessor:
        """The preprocessor (a default one for random init: resize, mean 0.5, std 0.25, ``in_channels`` channels)."""
        if self.preprocessor is not None:
            return self.preprocessor
        c = self.in_channels
        return Preprocessor(size=(self.image_size, self.image_size), channels=c, mean=(0.5,) * c, std=(0.25,) * c)


@dataclass
class LTOutput:
    """Forward result.

    ``logits``: (B, L); ``tokens``: (B, T, D) after the final LayerNorm; ``attn``: per block, (B, heads, T, T)
    attention probabilities (only with ``return_attn=True``; T = n_img before ``join_at``, n_img + L from it on for
    the label-token model).
    """

    logits: torch.Tensor
    tokens: torch.Tensor
    attn: list[torch.Tensor] | None = None


class Block(nn.Module):
    """Pre-norm transformer block. Tokens ``[:n_img]`` are image tokens; any after them are label tokens.

    Image queries attend to image keys only; label queries attend to every token (joint attention).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layer_scale: bool, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = round(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ls1 = nn.Parameter(torch.ones(dim)) if layer_scale else None
        self.ls2 = nn.Parameter(torch.ones(dim)) if layer_scale else None

    def forward(self, x_BTD: torch.Tensor, n_img: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x_BTD: (B, T, D) → ((B, T, D), attention (B, heads, T, T))."""
        B, T, D = x_BTD.shape
        hd = D // self.heads
        qkv = self.qkv(self.norm1(x_BTD)).reshape(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q_BHTd, k_BHTd, v_BHTd = qkv.unbind(0)
        scores_BHTT = (q_BHTd @ k_BHTd.transpose(-2, -1)) / math.sqrt(hd)
        if n_img < T:  # image queries must not see label keys
            block_TT = torch.zeros(T, T, dtype=torch.bool, device=x_BTD.device)
            block_TT[:n_img, n_img:] = True
            scores_BHTT = scores_BHTT.masked_fill(block_TT, float("-inf"))
        attn_BHTT = scores_BHTT.softmax(dim=-1)
        y_BTD = self.proj((attn_BHTT @ v_BHTd).transpose(1, 2).reshape(B, T, D))
        x_BTD = x_BTD + (y_BTD * self.ls1 if self.ls1 is not None else y_BTD)
        m_BTD = self.fc2(F.gelu(self.fc1(self.norm2(x_BTD))))
        x_BTD = x_BTD + (m_BTD * self.ls2 if self.ls2 is not None else m_BTD)
        return x_BTD, attn_BHTT


class LTViT(nn.Module):
    """ViT image stream + (``kind="label-tokens"``) label tokens in joint attention, or (``kind="cls"``) a CLS head.

    ``forward(x)``: x (B, in_channels, image_size, image_size), already preprocessed (see
    :meth:`LTViTConfig.input_preprocessor`) → :class:`LTOutput` with logits (B, L).
    """

    def __init__(self, cfg: LTViTConfig, *, seed: int | None = 0) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.grid
        self.patch_embed = nn.Conv2d(cfg.in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g[0] * g[1], cfg.dim))
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.layer_scale, cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        L = cfg.n_labels
        if cfg.kind == "label-tokens":
            self.label_tokens = nn.Parameter(torch.zeros(1, L, cfg.dim))
            self.head_weight = nn.Parameter(torch.zeros(L, cfg.dim))
            self.head_bias = nn.Parameter(torch.zeros(L))
        else:
            self.head = nn.Linear(cfg.dim, L)
        self.reset_parameters(seed)

    @property
    def n_img(self) -> int:
        """Image tokens: CLS + patches."""
        g = self.cfg.grid
        return 1 + g[0] * g[1]

    def reset_parameters(self, seed: int | None = 0) -> None:
        """Random init (truncated normal 0.02 for tokens/linears, zero biases), from ``seed`` when given."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None

        def tn(t: torch.Tensor) -> None:
            with torch.no_grad():
                t.copy_(torch.randn(t.shape, generator=gen).clamp_(-2, 2) * 0.02)

        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.startswith("norm") or ".norm" in name or ".ls" in name:
                nn.init.ones_(p)
            else:
                tn(p)

    def embed(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        """x_BCHW → image tokens (B, n_img, D) with CLS and position embeddings."""
        cfg = self.cfg
        if x_BCHW.ndim != 4 or x_BCHW.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise BadInputError(
                None,
                f"expected input (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x_BCHW.shape)}",
            )
        p_BND = self.patch_embed(x_BCHW).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x_BCHW.shape[0], -1, -1)
        return torch.cat([cls, p_BND], dim=1) + self.pos_embed

    def forward(self, x_BCHW: torch.Tensor, *, return_attn: bool = False) -> LTOutput:
        x_BTD = self.embed(x_BCHW)
        B = x_BTD.shape[0]
        n_img = self.n_img
        attns: list[torch.Tensor] = []
        lt = self.cfg.kind == "label-tokens"
        for i, block in enumerate(self.blocks):
            if lt and i == self.cfg.first_label_block:
                x_BTD = torch.cat([x_BTD, self.label_tokens.expand(B, -1, -1)], dim=1)
            x_BTD, a = block(x_BTD, n_img)
            if return_attn:
                attns.append(a)
        x_BTD = self.norm(x_BTD)
        # label tokens: one linear head per label token; CLS baseline: one linear head on the CLS token
        logits_BL = (x_BTD[:, n_img:] * self.head_weight).sum(-1) + self.head_bias if lt else self.head(x_BTD[:, 0])
        return LTOutput(logits=logits_BL, tokens=x_BTD, attn=attns if return_attn else None)

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ------------------------------------------------------------------------------------------------------------ maps
def label_maps(model: LTViT, attn: list[torch.Tensor], mode: str = "last") -> torch.Tensor:
    """Per-label maps on the patch grid from a forward's attention (``return_attn=True``).

    Returns (B, L, h, w) float32, each map ≥ 0 and summing to 1 over the patches. ``"last"``: head-mean attention of
    each label token (CLS for the baseline) in the last block over the patch tokens, renormalised. ``"rollout"``:
    attention rollout — per block ``Ā = ½·mean_heads(A) + ½·I``; image tokens are rolled through every block,
    label tokens start with no image provenance when they join and pick it up through their attention rows; the
    label rows' mass on patch tokens (CLS column dropped) is renormalised.
    """
    if mode not in MAP_MODES:
        raise ValueError(f"mode must be one of {MAP_MODES}, got {mode!r}")
    if len(attn) != model.cfg.depth:
        raise ValueError(f"expected {model.cfg.depth} attention tensors, got {len(attn)}")
    n_img, L = model.n_img, model.cfg.n_labels
    lt = model.cfg.kind == "label-tokens"
    rows = slice(n_img, n_img + L) if lt else slice(0, 1)
    if mode == "last":
        a_BRN = attn[-1].float().mean(1)[:, rows, 1:n_img]
    else:
        B = attn[0].shape[0]
        R_BTS = torch.eye(n_img).expand(B, n_img, n_img).clone()  # token → input image tokens (CLS + patches)
        for a in attn:
            a_BTT = a.float().mean(1)
            n_tok, n_have = a_BTT.shape[-1], R_BTS.shape[1]
            if n_tok > n_have:  # label tokens join: no image provenance yet
                R_BTS = torch.cat([R_BTS, torch.zeros(B, n_tok - n_have, n_img)], dim=1)
            a_BTT = 0.5 * a_BTT + 0.5 * torch.eye(n_tok)
            R_BTS = a_BTT @ R_BTS
        a_BRN = R_BTS[:, rows, 1:]
    if not lt:
        a_BRN = a_BRN.expand(-1, L, -1)
    a_BRN = a_BRN / a_BRN.sum(-1, keepdim=True).clamp_min(1e-12)
    h, w = model.cfg.grid
    return a_BRN.reshape(a_BRN.shape[0], L, h, w).contiguous()


def upsample_maps(maps_BLhw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of patch-grid maps to ``size`` (H, W), renormalised to sum to 1 over the pixels.

    maps_BLhw: (B, L, h, w) ≥ 0 → (B, L, H, W) float32.
    """
    up = F.interpolate(maps_BLhw.float(), size=size, mode="bilinear", align_corners=False).clamp_min(0)
    return up / up.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def config_with(cfg: LTViTConfig, **changes: object) -> LTViTConfig:
    """A copy of ``cfg`` with fields changed (e.g. ``kind="cls"`` for the baseline of the same size)."""
    return dataclasses.replace(cfg, **changes)
