"""``cxrlens backbone train``: the in-project ViT, trained on a dataset's training split with several objectives.

No pretrained CXR weights can be fetched here, so cxrlens trains its own small ViT (:class:`ViTArch`) and keeps
the objective whose frozen features are best for the 14 CheXpert labels. Objectives (same architecture, same
initialisation, same number of steps and batch size):

* ``mim`` — masked image modelling in the SimMIM style: a random ``mask_ratio`` of patches is set to the mean
  grey level in the (normalised) input and a linear head on the patch tokens regresses the masked patches' pixels.
* ``distill`` — self-distillation without labels (BYOL style): two augmented views; the student's projected CLS
  predicts, through a small predictor, the projected CLS of an EMA teacher on the other view (cosine loss).
* ``contrastive`` — image–report contrastive (CLIP style) against the frozen all-MiniLM-L6-v2 sentence embedding of
  the report (findings + impression), with projection heads on both sides; identical reports count as positives
  of each other (multi-positive InfoNCE), because many studies share the same normal report.
* ``supervised`` — multi-label classification of the 14 labels of the training split (binary cross-entropy on a
  linear head over ``[CLS ‖ mean patch]``; uncertain labels masked). Not self-supervised: it is the reference an
  objective without labels has to approach, and it is kept only if it wins on the held-out probe like any other.
* ``random`` — the untrained initialisation (the baseline every objective is compared with).

Selection: a logistic-regression linear probe per label on frozen ``[CLS ‖ mean patch]`` features of the
``train`` split, scored by ROC AUC on ``val`` (selection) and ``test`` (reported). Macro AUC is the mean over the
evaluated labels (≥ ``min_positives`` positives in train and in the scored split; positives = label 1, negatives =
0 or not mentioned, uncertain (−1) excluded). ``renderable`` restricts the macro to labels the dataset can show in
the image (phantoms list what they cannot draw).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from cxrlens.backbones.vit import DEFAULT_BACKBONE, ViTArch, build_vit
from cxrlens.console import progress, quiet_transformers
from cxrlens.data.images import load_image
from cxrlens.data.reports import plain_report_text
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import image_file, read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_json
from cxrlens.minilm import embed_sentences
from cxrlens.probe import ProbeFit, fit_linear_probe, probe_targets
from cxrlens.schedule import warmup_cosine
from cxrlens.workspace import StageResult, Workspace, artefact_identity, read_manifest, run_stage

__all__ = [
    "OBJECTIVES",
    "BackboneTrainConfig",
    "TrainData",
    "encode_images",
    "load_train_data",
    "probe_aucs_by_split",
    "run_backbone_train",
    "train_objective",
]

OBJECTIVES = ("mim", "distill", "contrastive", "supervised")


@dataclasses.dataclass(frozen=True)
class BackboneTrainConfig:
    """How the in-project ViT is trained and selected.

    Attributes:
        dataset: workspace dataset with ``image_path``, ``split``, report text and the 14 labels.
        name: backbone name written to ``backbones/<name>`` (``cxrlens:<name>``).
        arch: the ViT architecture.
        objectives: objectives to train and compare (subset of :data:`OBJECTIVES`).
        steps, batch_size, lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay.
        mask_ratio: fraction of patches masked (``mim``). ema: teacher momentum (``distill``).
        temperature: initial InfoNCE temperature (``contrastive``).
        pretrain_datasets: further workspace datasets whose images (every split) join the training set only —
            e.g. ``sprites``, phantoms with independently sampled findings and templated reports. The probe is
            still fit on ``dataset``'s train split and scored on its val/test, so they stay held out.
        max_images: use at most this many images per split (0 = all), for quick runs.
        probe_c: inverse L2 strength of the probe's logistic regression. min_positives: label inclusion rule.
        seed: seeds the initialisation, augmentations, masks and batch order.
    """

    dataset: str = "iu-phantom"
    name: str = DEFAULT_BACKBONE
    arch: ViTArch = dataclasses.field(default_factory=ViTArch)
    objectives: tuple[str, ...] = OBJECTIVES
    pretrain_datasets: tuple[str, ...] = ()
    steps: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30
    mask_ratio: float = 0.5
    ema: float = 0.99
    temperature: float = 0.07
    max_images: int = 0
    probe_c: float = 0.5
    min_positives: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise BadInputError(None, f"objectives must be a non-empty subset of {', '.join(OBJECTIVES)}")
        if self.dataset in self.pretrain_datasets:
            raise BadInputError(None, f"pretrain_datasets must not include the probed dataset {self.dataset!r}")


@dataclasses.dataclass
class TrainData:
    """Everything the trainer needs, as arrays (the trainer knows tensors, not datasets).

    Attributes:
        images_NHW: (N, S, S) float32 in [0, 1] at the architecture's input size.
        labels_NL: (N, 14) float32, CheXpert convention (1, 0, −1, NaN).
        texts: N report texts. split: (N,) ``train``/``val``/``test``, or ``pretrain`` for rows of
            ``pretrain_datasets`` (trained on, never probed).
        label_names: the L label names. renderable: the labels the images can show.
        pretrain_counts: images per pretraining dataset.
    """

    images_NHW: torch.Tensor
    labels_NL: np.ndarray
    texts: list[str]
    split: np.ndarray
    label_names: tuple[str, ...]
    renderable: tuple[str, ...]
    pretrain_counts: dict[str, int] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------- data
def load_train_data(workspace: Workspace, cfg: BackboneTrainConfig, show_progress: bool = True) -> TrainData:
    """Decode and downsize the datasets' images once (they fit in memory at the ViT's input size): ``cfg.dataset``
    with its splits, then every image of ``cfg.pretrain_datasets`` with split ``pretrain``."""

    parts = [_load_split_images(workspace, cfg.dataset, cfg, show_progress)]
    for name in cfg.pretrain_datasets:
        images, labels, texts, _ = _load_split_images(workspace, name, cfg, show_progress)
        parts.append((images, labels, texts, np.full(len(texts), "pretrain", dtype=object)))
    return TrainData(
        images_NHW=torch.cat([p[0] for p in parts]),
        labels_NL=np.concatenate([p[1] for p in parts]),
        texts=[t for p in parts for t in p[2]],
        split=np.concatenate([np.asarray(p[3], dtype=object) for p in parts]).astype(str),
        label_names=tuple(CHEXPERT_LABELS),
        renderable=_renderable_labels(workspace, cfg.dataset),
        pretrain_counts={name: len(p[2]) for name, p in zip(cfg.pretrain_datasets, parts[1:], strict=True)},
    )


def _load_split_images(
    workspace: Workspace, dataset: str, cfg: BackboneTrainConfig, show_progress: bool
) -> tuple[torch.Tensor, np.ndarray, list[str], np.ndarray]:
    """One dataset → (images (N, S, S) in [0, 1], labels (N, 14), report texts, split (N,))."""

    studies = read_studies(workspace, dataset)
    studies = studies[studies["image_path"].fillna("").astype(str) != ""]
    if cfg.max_images:
        studies = pd.concat([g.head(cfg.max_images) for _, g in studies.groupby("split", sort=True)], ignore_index=True)
    studies = studies.reset_index(drop=True)
    ds_dir = workspace.dataset(dataset)
    size = cfg.arch.image_size
    images = torch.empty(len(studies), size, size)
    with progress(transient=True, disable=not show_progress) as bar:
        task = bar.add_task(f"decode {dataset} images", total=len(studies))
        for i, rel in enumerate(studies["image_path"].astype(str)):
            path = image_file(ds_dir, rel)
            img = torch.from_numpy(load_image(str(path)))[None, None]
            images[i] = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[
                0, 0
            ]
            bar.advance(task)
    texts = [plain_report_text(f, imp) for f, imp in zip(studies["findings"], studies["impression"], strict=True)]
    return (
        images.clamp(0, 1),
        studies[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float32),
        texts,
        studies["split"].astype(str).to_numpy(),
    )


def _renderable_labels(workspace: Workspace, dataset: str) -> tuple[str, ...]:
    """Labels the dataset's images can show. Phantom datasets draw the labels listed in their manifest
    (``extra.mask_channels``: one mask channel per drawable finding; "No Finding" is not one); for real datasets
    every label counts."""

    manifest = read_manifest(workspace.dataset(dataset))
    channels = (manifest.extra.get("mask_channels") if manifest else None) or ()
    drawable = tuple(lab for lab in CHEXPERT_LABELS if lab in set(channels))
    return drawable or tuple(CHEXPERT_LABELS)


def _text_embeddings(texts: Sequence[str]) -> torch.Tensor:
    """(N, 384) L2-normalised all-MiniLM-L6-v2 embeddings of the texts (unique texts encoded once)."""

    uniq = sorted(set(texts))
    emb = embed_sentences(uniq)
    lookup = {t: i for i, t in enumerate(uniq)}
    return torch.from_numpy(np.asarray(emb, dtype=np.float32)[[lookup[t] for t in texts]])


# --------------------------------------------------------------------------------------------------- augmentation
def augment(x_BHW: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (scale 0.7–1, no flip: laterality matters), ±8° rotation, contrast/brightness/gamma,
    noise. x_BHW: (B, S, S) in [0, 1] → same shape in [0, 1]."""
    b = x_BHW.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)  # noqa: E731
    scale, angle = u(0.7, 1.0).sqrt(), u(-8, 8) * math.pi / 180
    tx, ty = u(-1, 1) * (1 - scale), u(-1, 1) * (1 - scale)
    theta = torch.stack(
        [
            torch.stack([scale * torch.cos(angle), -scale * torch.sin(angle), tx], 1),
            torch.stack([scale * torch.sin(angle), scale * torch.cos(angle), ty], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, (b, 1, *x_BHW.shape[-2:]), align_corners=False)
    x = F.grid_sample(x_BHW[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    x = x.clamp(1e-6, 1) ** u(0.8, 1.25)[:, None, None]
    x = (x - 0.5) * u(0.8, 1.2)[:, None, None] + 0.5 + u(-0.08, 0.08)[:, None, None]
    x = x + 0.02 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


# ----------------------------------------------------------------------------------------------------- objectives
def _normalise(x_BHW: torch.Tensor, arch: ViTArch) -> torch.Tensor:
    return ((x_BHW - arch.pixel_mean) / arch.pixel_std)[:, None]


def _cls_mean(model: nn.Module, px_B1HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    seq_BTD = model(pixel_values=px_B1HW).last_hidden_state
    return seq_BTD[:, 0], seq_BTD[:, 1:]


class _MIM(nn.Module):
    """SimMIM-style: masked patches set to 0 (the mean grey level) in the input; L1 on masked pixels."""

    def __init__(self, arch: ViTArch, mask_ratio: float) -> None:
        super().__init__()
        self.arch, self.mask_ratio = arch, mask_ratio
        self.head = nn.Linear(arch.hidden_size, arch.patch_size**2)

    def loss(self, model: nn.Module, x_BHW: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        a = self.arch
        x = augment(x_BHW, gen)
        px = _normalise(x, a)
        b, g = x.shape[0], a.image_size // a.patch_size
        mask_BP = torch.rand(b, g * g, generator=gen) < self.mask_ratio
        mask_px = mask_BP.view(b, 1, g, 1, g, 1).expand(b, 1, g, a.patch_size, g, a.patch_size)
        mask_px = mask_px.reshape(b, 1, a.image_size, a.image_size)
        _, patches_BPD = _cls_mean(model, px.masked_fill(mask_px, 0.0))
        pred_BPK = self.head(patches_BPD)
        target_BPK = px.view(b, g, a.patch_size, g, a.patch_size).permute(0, 1, 3, 2, 4).reshape(b, g * g, -1)
        err = (pred_BPK - target_BPK).abs().mean(-1)
        return (err * mask_BP).sum() / mask_BP.sum().clamp(min=1)


class _Distill(nn.Module):
    """BYOL-style self-distillation: student → projector → predictor ≈ EMA teacher → projector (other view)."""

    def __init__(self, arch: ViTArch, model: nn.Module, ema: float, dim: int = 128) -> None:
        super().__init__()
        d = arch.hidden_size
        self.arch, self.ema = arch, ema
        self.projector = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, dim))
        self.predictor = nn.Sequential(nn.Linear(dim, 2 * d), nn.GELU(), nn.Linear(2 * d, dim))
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.teacher_proj = copy.deepcopy(self.projector).requires_grad_(False)

    def loss(self, model: nn.Module, x_BHW: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        # one direction per step (student view 1 → teacher view 2): the views are random, so over steps this is the
        # symmetric loss at half the compute
        v1, v2 = _normalise(augment(x_BHW, gen), self.arch), _normalise(augment(x_BHW, gen), self.arch)
        online = self.predictor(self.projector(_cls_mean(model, v1)[0]))
        with torch.no_grad():
            target = self.teacher_proj(_cls_mean(self.teacher, v2)[0])
        return (2 - 2 * F.cosine_similarity(online, target, dim=-1)).mean()

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for t, s in zip(self.teacher.parameters(), model.parameters(), strict=True):
            t.mul_(self.ema).add_(s.detach(), alpha=1 - self.ema)
        for t, s in zip(self.teacher_proj.parameters(), self.projector.parameters(), strict=True):
            t.mul_(self.ema).add_(s.detach(), alpha=1 - self.ema)


class _Contrastive(nn.Module):
    """CLIP-style image ↔ frozen report embedding; reports with (near-)identical text are mutual positives."""

    def __init__(self, arch: ViTArch, text_ND: torch.Tensor, temperature: float, dim: int = 128) -> None:
        super().__init__()
        self.arch = arch
        self.text_ND = text_ND
        self.img_proj = nn.Sequential(nn.Linear(2 * arch.hidden_size, dim))
        self.txt_proj = nn.Sequential(nn.Linear(text_ND.shape[1], dim), nn.GELU(), nn.Linear(dim, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def loss(self, model: nn.Module, x_BHW: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cls, patches = _cls_mean(model, _normalise(augment(x_BHW, gen), self.arch))
        img = F.normalize(self.img_proj(torch.cat([cls, patches.mean(1)], -1)), dim=-1)
        t = self.text_ND[idx]
        txt = F.normalize(self.txt_proj(t), dim=-1)
        logits = self.log_scale.clamp(max=math.log(100)).exp() * img @ txt.T
        same = (t @ t.T > 0.98).float()
        targets = same / same.sum(1, keepdim=True)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class _Supervised(nn.Module):
    """Multi-label BCE on the dataset's labels (1 positive; 0 / not mentioned negative; −1 uncertain masked)."""

    def __init__(self, arch: ViTArch, labels_NL: np.ndarray) -> None:
        super().__init__()
        self.arch = arch
        y = torch.from_numpy(np.nan_to_num(labels_NL, nan=0.0))
        self.target_NL, self.known_NL = (y == 1).float(), (y != -1).float()
        self.head = nn.Linear(2 * arch.hidden_size, labels_NL.shape[1])

    def loss(self, model: nn.Module, x_BHW: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cls, patches = _cls_mean(model, _normalise(augment(x_BHW, gen), self.arch))
        logits = self.head(torch.cat([cls, patches.mean(1)], -1))
        bce = F.binary_cross_entropy_with_logits(logits, self.target_NL[idx], reduction="none")
        return (bce * self.known_NL[idx]).sum() / self.known_NL[idx].sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------------- train / probe


def train_objective(
    objective: str,
    data: TrainData,
    cfg: BackboneTrainConfig,
    *,
    text_ND: torch.Tensor | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train a fresh ViT (seeded init) with ``objective`` on the train split; returns (encoder, loss per step)."""
    model, _ = build_vit(cfg.arch, seed=cfg.seed)
    if objective == "random":
        return model.eval(), []
    torch.manual_seed(cfg.seed + 1)
    if objective == "mim":
        obj: nn.Module = _MIM(cfg.arch, cfg.mask_ratio)
    elif objective == "distill":
        obj = _Distill(cfg.arch, model, cfg.ema)
    elif objective == "contrastive":
        if text_ND is None:
            text_ND = _text_embeddings(data.texts)
        obj = _Contrastive(cfg.arch, text_ND, cfg.temperature)
    elif objective == "supervised":
        obj = _Supervised(cfg.arch, data.labels_NL)
    else:
        raise BadInputError(None, f"unknown objective {objective!r}")
    params = [p for p in [*model.parameters(), *obj.parameters()] if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    train_idx = torch.from_numpy(np.nonzero(np.isin(data.split, ("train", "pretrain")))[0])
    if len(train_idx) < 2:
        raise BadInputError(None, "the dataset has fewer than 2 training images")
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    order = train_idx[torch.randperm(len(train_idx), generator=gen)]
    pos = 0
    for step in range(cfg.steps):
        if pos + cfg.batch_size > len(order):
            order, pos = train_idx[torch.randperm(len(train_idx), generator=gen)], 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, lr=cfg.lr, steps=cfg.steps, warmup_steps=cfg.warmup_steps)
        loss = obj.loss(model, data.images_NHW[idx], idx, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if hasattr(obj, "after_step"):
            obj.after_step(model)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return model.eval(), losses


@torch.inference_mode()
def encode_images(model: nn.Module, images_NHW: torch.Tensor, arch: ViTArch, batch: int = 256) -> np.ndarray:
    """(N, 2D) float32 frozen features ``[CLS ‖ mean patch]`` of the final layer."""
    out = []
    for s in range(0, len(images_NHW), batch):
        cls, patches = _cls_mean(model, _normalise(images_NHW[s : s + batch], arch))
        out.append(torch.cat([cls, patches.mean(1)], -1))
    return torch.cat(out).numpy()


def probe_aucs_by_split(
    feats_ND: np.ndarray,
    labels_NL: np.ndarray,
    split: np.ndarray,
    label_names: Sequence[str],
    *,
    eval_splits: Sequence[str] = ("val", "test"),
    c: float = 0.5,
    min_positives: int = 5,
) -> dict[str, dict[str, float]]:
    """Per-label ROC AUC of a logistic-regression probe fit once on ``train``, scored on each of ``eval_splits``.

    Returns ``{split: {label: auc}}``. Positives: label == 1; negatives: 0 or NaN (not mentioned); uncertain (−1)
    rows are left out for that label. A label is scored on a split only if it has at least ``min_positives``
    positives and negatives both in train and in that split.
    """

    tr = split == "train"
    x = StandardScaler().fit(feats_ND[tr]).transform(feats_ND)
    with threadpool_limits(1):  # one BLAS thread: 7× faster than 2 contending ones for these small fits
        return _probe_fits(x, labels_NL, split, label_names, eval_splits, c, min_positives)


def _probe_fits(x, labels_NL, split, label_names, eval_splits, c, min_positives) -> dict[str, dict[str, float]]:

    tr = split == "train"
    out: dict[str, dict[str, float]] = {s: {} for s in eval_splits}
    fit = ProbeFit(C=c, class_weight="balanced", scaling="none", max_iter=500)  # x is z-scored on all train rows
    for j, name in enumerate(label_names):
        y = probe_targets(labels_NL[:, j], missing="negative")
        known = ~np.isnan(y)
        pos = y == 1
        m_tr = tr & known
        if min(pos[m_tr].sum(), (~pos[m_tr]).sum()) < min_positives:
            continue
        clf = None
        for s in eval_splits:
            m_ev = (split == s) & known
            if min(pos[m_ev].sum(), (~pos[m_ev]).sum()) < min_positives:
                continue
            if clf is None:
                clf = fit_linear_probe(x[m_tr], pos[m_tr], fit)
            out[s][name] = float(roc_auc_score(pos[m_ev], clf.decision(x[m_ev])))
    return out


def _macro(aucs: dict[str, float], labels: Sequence[str]) -> float:
    vals = [aucs[k] for k in labels if k in aucs]
    return float(np.mean(vals)) if vals else float("nan")


def run_backbone_train(
    workspace: Workspace,
    cfg: BackboneTrainConfig,
    *,
    data: TrainData | None = None,
    text_embed: Callable[[list[str]], torch.Tensor] | None = None,
    num_threads: int | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> StageResult:
    """Train every objective in ``cfg``, probe each (and the random init), keep the best in ``backbones/<name>``.

    The artefact holds the chosen encoder (``model.safetensors``, ``config.json``, ``preprocessor_config.json``)
    and ``probe.json``: per objective the per-label val/test AUCs, macro AUCs (all evaluated labels and renderable
    ones), training seconds and the loss curve (every 10th step).

    ``text_embed`` maps report texts to (N, E) embeddings for ``contrastive`` (default: frozen all-MiniLM-L6-v2).
    ``num_threads`` sets torch's intra-op threads for the run (restored afterwards); on a busy 2-core machine 1 thread
    is ~3× faster than 2 contending ones.
    """

    def build(tmp: Path) -> dict[str, Any]:
        nonlocal data
        data = data if data is not None else load_train_data(workspace, cfg, show_progress)
        text_ND = None
        if "contrastive" in cfg.objectives:
            text_ND = F.normalize((text_embed or _text_embeddings)(list(data.texts)).float(), dim=-1)
        results: dict[str, dict[str, Any]] = {}
        models: dict[str, nn.Module] = {}
        probed = torch.from_numpy(data.split != "pretrain")
        for objective in ("random", *cfg.objectives):
            t0 = time.perf_counter()
            with progress(transient=True, disable=not show_progress or objective == "random") as bar:
                task = bar.add_task(f"train {objective}", total=cfg.steps)
                model, losses = train_objective(
                    objective, data, cfg, text_ND=text_ND, on_step=lambda s, _l, t=task: bar.update(t, completed=s + 1)
                )
            seconds = time.perf_counter() - t0
            feats = encode_images(model, data.images_NHW[probed], cfg.arch)
            scored = probe_aucs_by_split(
                feats,
                data.labels_NL[probed.numpy()],
                data.split[probed.numpy()],
                data.label_names,
                c=cfg.probe_c,
                min_positives=cfg.min_positives,
            )
            val, test = scored["val"], scored["test"]
            results[objective] = {
                "val_auc": val,
                "test_auc": test,
                "val_macro": _macro(val, data.label_names),
                "test_macro": _macro(test, data.label_names),
                "val_macro_renderable": _macro(val, data.renderable),
                "test_macro_renderable": _macro(test, data.renderable),
                "train_seconds": round(seconds, 1),
                "loss_curve": [round(v, 5) for v in losses[::10]],
            }
            models[objective] = model
        best = max(cfg.objectives, key=lambda o: np.nan_to_num(results[o]["val_macro_renderable"], nan=-1.0))
        _, processor = build_vit(cfg.arch, seed=cfg.seed)

        with quiet_transformers():
            models[best].save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
        summary = {
            "chosen": best,
            "selected_by": "val_macro_renderable (linear probe, frozen [CLS ‖ mean patch] features)",
            "renderable_labels": list(data.renderable),
            "images": {s: int((data.split == s).sum()) for s in ("train", "val", "test")},
            "pretrain_images": dict(data.pretrain_counts),
            "results": results,
        }
        atomic_write_json(tmp / "probe.json", summary)
        return {
            "rows": {s: int((data.split == s).sum()) for s in ("train", "val", "test")},
            "extra": {"chosen": best, "probe": {o: _headline(r) for o, r in results.items()}},
        }

    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        # the datasets' identity is part of what the weights depend on: a rebuilt dataset retrains
        upstream = {
            f"datasets/{name}": artefact_identity(workspace.dataset(name))
            for name in (cfg.dataset, *cfg.pretrain_datasets)
        }
        return run_stage(
            workspace.backbone(cfg.name),
            stage="backbone.train",
            config=cfg,
            build=build,
            force=force,
            upstream=upstream,
        )
    finally:
        torch.set_num_threads(threads)


def _headline(r: dict[str, Any]) -> dict[str, float]:
    return {
        k: r[k] for k in ("val_macro", "test_macro", "val_macro_renderable", "test_macro_renderable", "train_seconds")
    }


def load_probe_table(backbone_dir: str | Path) -> dict[str, Any]:
    """The ``probe.json`` written by :func:`run_backbone_train`."""
    return json.loads((Path(backbone_dir) / "probe.json").read_text())
