"""Training of the label-token ViT (and its CLS baseline): masked BCE, AdamW, warm-up + cosine, exact resume.

The trainer knows tensors, not datasets: :class:`LabelData` holds grayscale images in ``[0, 1]``, labels in the
CheXpert convention (1 positive, 0 negative, -1 uncertain, NaN not mentioned) and, optionally, per-label finding masks
(for grounding). Loaders turn workspace datasets into it (:mod:`cxrlens.labeltokens.data`).

* **Targets** (:func:`prepare_targets`): uncertain labels become 1 (``ones``), 0 (``zeros``) or NaN (``ignore``).
* **Loss** (:func:`masked_bce`): BCE-with-logits averaged over the known (non-NaN) targets only, so a NaN target
  gives exactly zero gradient. ``class_balanced=True`` weights each label's positive terms by ``n_neg / n_pos``
  (counted over the known training targets, clamped to [1, 100]).
* **Schedule**: AdamW; learning rate rises linearly for ``warmup_steps`` then follows a cosine to ``min_lr``.
* **Determinism**: the model init and the batch order derive from ``seed`` only (one permutation of the training set
  per epoch from a generator seeded with ``(seed, epoch)``); no dropout, no augmentation.
* **Checkpoints** (:func:`save_checkpoint`): one safetensors file whose metadata carries a JSON header (schema
  version, package version, full config, step, losses); the tensors are the model and the AdamW state. Resuming from
  step ``s`` recomputes the lr and the batch order from ``s`` and gives bit-identical weights to an uninterrupted
  run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
from sklearn.metrics import roc_auc_score

from cxrlens import __version__
from cxrlens.checkpoint import read_checkpoint
from cxrlens.config import config_from_dict, config_to_dict
from cxrlens.console import progress
from cxrlens.errors import BadInputError
from cxrlens.evaluate.bootstrap import cluster_bootstrap, weighted_auc
from cxrlens.files import atomic_write_bytes
from cxrlens.labeltokens.model import LTViT, LTViTConfig
from cxrlens.schedule import warmup_cosine

__all__ = [
    "CHECKPOINT_SCHEMA",
    "UNCERTAIN_POLICIES",
    "LTTrainConfig",
    "LTTrainResult",
    "LabelData",
    "auc_per_label",
    "load_checkpoint",
    "load_model",
    "lr_at",
    "masked_bce",
    "paired_bootstrap_auc",
    "positive_weights",
    "predict",
    "prepare_targets",
    "save_checkpoint",
    "train",
]

CHECKPOINT_SCHEMA = 1
UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")


@dataclass(frozen=True)
class LTTrainConfig:
    """Everything a training run depends on (hashed into the run's manifest).

    Attributes:
        model: the architecture (``kind`` picks LT-ViT or the CLS baseline).
        steps: optimiser steps; batch_size: images per step.
        lr, min_lr: peak and final learning rate; warmup_steps: linear warm-up length.
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, tokens, position embeddings).
        uncertain: how ``-1`` labels enter the loss: ``ones``, ``zeros`` or ``ignore``.
        class_balanced: weight positives by ``n_neg / n_pos`` per label.
        grad_clip: max global gradient norm (0 disables).
        seed: model init and batch order.
        checkpoint_every: steps between checkpoints (0: only at the end).
    """

    model: LTViTConfig
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 50
    weight_decay: float = 0.05
    uncertain: str = "ignore"
    class_balanced: bool = False
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {self.uncertain!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")


@dataclass
class LabelData:
    """Images and labels as tensors.

    Attributes:
        images: (N, H, W) float32 in [0, 1].
        labels: (N, L) float32, CheXpert convention (1, 0, -1 uncertain, NaN unknown).
        label_names: the L label names.
        masks: optional (N, L, H, W) bool — where each finding is (all False where absent).
        ids: N image ids.
    """

    images: torch.Tensor
    labels: torch.Tensor
    label_names: tuple[str, ...]
    masks: torch.Tensor | None = None
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 3:
            raise BadInputError(None, f"images must be (N, H, W), got {tuple(self.images.shape)}")
        if self.labels.shape != (n, len(self.label_names)):
            raise BadInputError(None, f"labels must be ({n}, {len(self.label_names)}), got {tuple(self.labels.shape)}")
        if self.masks is not None and self.masks.shape[:2] != (n, len(self.label_names)):
            raise BadInputError(None, f"masks must be ({n}, L, H, W), got {tuple(self.masks.shape)}")
        if not self.ids:
            self.ids = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: torch.Tensor | np.ndarray | list[int]) -> LabelData:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return LabelData(
            self.images[idx_t],
            self.labels[idx_t],
            self.label_names,
            None if self.masks is None else self.masks[idx_t],
            [self.ids[i] for i in idx_t.tolist()],
        )


@dataclass
class LTTrainResult:
    """What :func:`train` returns: the trained model, the loss per step, and the step it resumed from (0: fresh)."""

    model: LTViT
    losses: list[float]
    resumed_from: int = 0


# ------------------------------------------------------------------------------------------------------ the loss
def prepare_targets(labels_NL: torch.Tensor, uncertain: str) -> torch.Tensor:
    """CheXpert labels → BCE targets in {0, 1} with NaN where the label is unknown (or uncertain and ignored)."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    t = labels_NL.float().clone()
    unc = t == -1
    t[unc] = {"ones": 1.0, "zeros": 0.0, "ignore": float("nan")}[uncertain]
    bad = ~torch.isnan(t) & (t != 0) & (t != 1)
    if bad.any():
        raise BadInputError(None, f"labels must be 1, 0, -1 or NaN; found {t[bad][0].item()}")
    return t


def positive_weights(targets_NL: torch.Tensor) -> torch.Tensor:
    """Class-balance weight per label: ``n_neg / n_pos`` over known targets, clamped to [1, 100] → (L,)."""
    known = ~torch.isnan(targets_NL)
    pos = ((targets_NL == 1) & known).sum(0).float()
    neg = ((targets_NL == 0) & known).sum(0).float()
    return (neg / pos.clamp_min(1)).clamp(1.0, 100.0)


def masked_bce(logits_BL: torch.Tensor, targets_BL: torch.Tensor, pos_weight_L: torch.Tensor | None = None):
    """Mean BCE-with-logits over the known (non-NaN) targets; NaN targets contribute no loss and no gradient."""
    known_BL = ~torch.isnan(targets_BL)
    t_BL = torch.where(known_BL, targets_BL, torch.zeros_like(targets_BL))
    per_BL = F.binary_cross_entropy_with_logits(logits_BL, t_BL, pos_weight=pos_weight_L, reduction="none")
    per_BL = torch.where(known_BL, per_BL, torch.zeros_like(per_BL))
    return per_BL.sum() / known_BL.sum().clamp_min(1)


def lr_at(step: int, cfg: LTTrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up to ``lr`` then cosine to ``min_lr`` at ``steps``."""
    return warmup_cosine(step, lr=cfg.lr, steps=cfg.steps, warmup_steps=cfg.warmup_steps, min_lr=cfg.min_lr)


# -------------------------------------------------------------------------------------------------- checkpoints
def _header(cfg: LTTrainConfig, step: int, losses: list[float], kind: str) -> dict[str, str]:

    head = {
        "schema": CHECKPOINT_SCHEMA,
        "kind": kind,
        "package_version": __version__,
        "config": config_to_dict(cfg),
        "step": step,
        "losses": losses,
    }
    return {"cxrlens": json.dumps(head, sort_keys=True)}


def save_checkpoint(
    path: str | Path,
    model: LTViT,
    cfg: LTTrainConfig,
    step: int,
    losses: list[float],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Model (``model.*``) + AdamW state (``optim.<param index>.<key>``) as safetensors with a JSON header, atomic."""

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        for idx, st in optimizer.state_dict()["state"].items():
            for key, val in st.items():
                tensors[f"optim.{idx}.{key}"] = torch.as_tensor(val).detach().contiguous()
    kind = "checkpoint" if optimizer is not None else "model"
    return atomic_write_bytes(path, save(tensors, metadata=_header(cfg, step, losses, kind)))


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, tensors) of a file written by :func:`save_checkpoint`; a clear error for anything else."""

    header, _, tensors = read_checkpoint(path, key="cxrlens", schema=CHECKPOINT_SCHEMA, kind="LT-ViT")
    return header, tensors


def load_model(path: str | Path) -> tuple[LTViT, LTTrainConfig]:
    """A trained model (eval mode) and its training config from a checkpoint or final model file."""
    header, tensors = load_checkpoint(path)
    cfg = config_from_dict(LTTrainConfig, header["config"])
    model = LTViT(cfg.model, seed=None)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.eval(), cfg


# ----------------------------------------------------------------------------------------------------- training
def _param_groups(model: LTViT, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        plain = p.ndim < 2 or name in ("cls_token", "pos_embed", "label_tokens") or ".ls" in name
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the batch at ``step``: epoch-wise permutations seeded by (seed, epoch), last partial batch dropped."""
    bs = min(batch_size, n)
    per_epoch = n // bs
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[pos * bs : (pos + 1) * bs]


def build_model(cfg: LTTrainConfig) -> LTViT:
    """A fresh model for ``cfg`` (random init from ``cfg.seed``)."""
    return LTViT(cfg.model, seed=cfg.seed)


def train(
    cfg: LTTrainConfig,
    data: LabelData,
    *,
    model: LTViT | None = None,
    checkpoint: str | Path | None = None,
    show_progress: bool = True,
    description: str = "lt-vit train",
    stop_after: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> LTTrainResult:
    """Train ``model`` (default: a fresh one from ``cfg``) on ``data`` for ``cfg.steps`` steps.

    ``checkpoint``: a file to save to every ``cfg.checkpoint_every`` steps and at the end; if it exists with the
    same config, training resumes from it (weights, AdamW state, step, losses) instead of starting over.
    ``stop_after``: stop (after checkpointing) once this many steps are done — to test resumption.
    """
    if tuple(data.label_names) != tuple(cfg.model.labels):
        raise BadInputError(None, f"data labels {data.label_names} differ from the model's {cfg.model.labels}")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg) if model is None else model
    if model.cfg != cfg.model:
        raise BadInputError(None, "the model's config differs from cfg.model; build the config from model.cfg")
    pre = cfg.model.input_preprocessor()
    targets_NL = prepare_targets(data.labels, cfg.uncertain)
    pos_w = positive_weights(targets_NL) if cfg.class_balanced else None
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    start, losses = 0, []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        header, tensors = load_checkpoint(ckpt)
        if header["config"] != config_to_dict(cfg):
            raise BadInputError(ckpt, "checkpoint was written with a different config; remove it or use --force")
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer_state(opt, tensors)
        start, losses = int(header["step"]), list(header["losses"])
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    model.train()
    with progress(disable=not show_progress) as bar:
        task = bar.add_task(description, total=cfg.steps, completed=start)
        for step in range(start, end):
            idx = _batch_indices(step, len(data), cfg.batch_size, cfg.seed)
            x = pre(data.images[idx])
            loss = masked_bce(model(x).logits, targets_NL[idx], pos_w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            opt.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
            done = step + 1
            if ckpt is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
                save_checkpoint(ckpt, model, cfg, done, losses, opt)
            bar.update(task, completed=done, description=f"{description} loss {losses[-1]:.4f}")
    if ckpt is not None and end > start:
        save_checkpoint(ckpt, model, cfg, end, losses, opt)
    return LTTrainResult(model.eval(), losses, resumed_from=start)


def _load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    sd["state"] = state
    opt.load_state_dict(sd)


# --------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: LTViT, images_NHW: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Probabilities (N, L) for grayscale images in [0, 1]."""
    model.eval()
    pre = model.cfg.input_preprocessor()
    out = [
        torch.sigmoid(model(pre(images_NHW[i : i + batch_size])).logits) for i in range(0, len(images_NHW), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, model.cfg.n_labels)


def auc_per_label(probs_NL: torch.Tensor, targets_NL: torch.Tensor, names: tuple[str, ...]) -> dict[str, float]:
    """ROC AUC per label over the known targets (NaN where a label has only one class among them)."""

    out = {}
    for j, name in enumerate(names):
        t = targets_NL[:, j]
        known = ~torch.isnan(t)
        y = t[known].numpy()
        out[name] = float(roc_auc_score(y, probs_NL[known, j].numpy())) if len(np.unique(y)) == 2 else float("nan")
    return out


def paired_bootstrap_auc(
    probs_a_NL: torch.Tensor,
    probs_b_NL: torch.Tensor,
    targets_NL: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Any = None,
    unit: str = "study",
) -> dict[str, Any]:
    """Paired cluster bootstrap of the difference in mean per-label AUC, ``A − B``, over labels with both classes
    among the known targets (:mod:`cxrlens.evaluate.bootstrap`).

    One resample draws whole units — the images' studies (``groups`` = (N,) study ids, ``unit="study"``) or patients
    — with replacement and keeps every image of a drawn unit; the same resample serves both models and every label.
    ``groups=None`` resamples images one by one (unit ``image``). Resamples on which a label has one class only are
    redrawn.

    Returns ``{"diff": observed difference, "lo": 2.5 %, "hi": 97.5 % percentile, "p_le_0": fraction of resamples
    with a difference ≤ 0, "n_boot": resamples the interval rests on, "bootstrap_unit": what was resampled,
    "n_units": how many of them}``.
    """

    cols = []
    for j in range(targets_NL.shape[1]):
        t = targets_NL[:, j]
        known = (~torch.isnan(t)).numpy()
        y = t.numpy()[known]
        if len(np.unique(y)) == 2:
            cols.append((known, y, probs_a_NL[:, j].numpy()[known], probs_b_NL[:, j].numpy()[known]))
    n = int(targets_NL.shape[0])
    if not cols:
        nan = float("nan")
        named = unit if groups is not None else "image"
        return {"diff": nan, "lo": nan, "hi": nan, "p_le_0": nan, "n_boot": 0, "bootstrap_unit": named, "n_units": 0}

    def stat(w_BN: np.ndarray) -> np.ndarray:
        total = np.zeros(len(w_BN))
        for known, y, a, b in cols:
            w = w_BN[:, known]
            total += weighted_auc(y, a, w) - weighted_auc(y, b, w)  # NaN (→ redrawn) where a label lost a class
        return total / len(cols)

    res = cluster_bootstrap(stat, n, groups=groups, unit=unit if groups is not None else None, n_boot=n_boot, seed=seed)
    return {
        "diff": res.estimate,
        "lo": res.low,
        "hi": res.high,
        "p_le_0": res.p_le_0,
        "n_boot": res.n_boot,
        "bootstrap_unit": res.unit,
        "n_units": res.n_units,
    }


def replace_kind(cfg: LTTrainConfig, kind: str) -> LTTrainConfig:
    """The same run config for the other model kind (``"cls"`` baseline ↔ ``"label-tokens"``)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind=kind))
