"""Training the contrastive image–report adapter (ELIXR-C style, on frozen features).

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

**Data parallel** (``parallel=``, a :class:`ContrastiveParallel` such as
:class:`cxrlens.scale.ddp.TorchDataParallel` under ``torchrun``): every rank draws the same global batch (the epoch
order is seeded), embeds its ``batch_size / world`` share and all-gathers the embeddings with autograd, so every
rank computes the single-process loss (the negatives are the whole batch); the gather's backward sums the ranks'
identical gradients and the gradient mean over ranks is then the single-process gradient. Only rank 0 writes
checkpoints. (The ``align train`` stage and CLI do not use it yet.)

The trainer takes tensors (:class:`PairData`), not datasets. It checkpoints after every epoch (safetensors, with a
JSON header of schema version, config, package version, epoch, history and optimiser state) and resumes from the
last checkpoint of the same config; the epoch order is seeded by ``(seed, epoch)``, so a resumed run gives the same
weights as an uninterrupted one. The weights with the best validation loss are kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import nn

from cxrlens import __version__
from cxrlens.align.config import AlignConfig
from cxrlens.align.model import AlignModel, info_nce, retrieval_at_k
from cxrlens.align.pairs import PairData
from cxrlens.checkpoint import read_checkpoint
from cxrlens.config import config_hash, config_to_dict
from cxrlens.console import progress, warn_line
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes
from cxrlens.sae.train import DataParallel
from cxrlens.schedule import warmup_cosine

__all__ = [
    "SCHEMA_VERSION",
    "ContrastiveParallel",
    "embed_images",
    "load_checkpoint",
    "save_checkpoint",
    "train_adapter",
]

SCHEMA_VERSION = 1


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
class ContrastiveParallel(DataParallel, Protocol):
    """A :class:`cxrlens.sae.train.DataParallel` that can also all-gather with autograd: ``all_gather(t)`` → every
    rank's ``t`` concatenated along dim 0 in rank order, its backward summing the gradients sent to each share."""

    def all_gather(self, t: torch.Tensor) -> torch.Tensor: ...


def _embed_rows(
    model: AlignModel, data: PairData, rows: np.ndarray, parallel: ContrastiveParallel | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, E) image and report embeddings of ``rows``; with ``parallel`` each rank embeds its B / world share and
    the shares are all-gathered (with autograd), so every rank holds the whole batch's embeddings."""
    if parallel is not None and parallel.world > 1:
        share = len(rows) // parallel.world
        if share * parallel.world != len(rows):
            raise BadInputError(None, f"batch of {len(rows)} pairs is not divisible by {parallel.world} ranks")
        mine = rows[parallel.rank * share : (parallel.rank + 1) * share]
        img, txt = _embed_rows(model, data, mine, None)
        return parallel.all_gather(img), parallel.all_gather(txt)
    idx = torch.from_numpy(rows)
    patches = None if data.patches_NTD is None else data.patches_NTD[idx]
    return model.image(data.pooled_ND[idx], patches), model.text(data.report_NDt[idx])


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
    model: AlignModel,
    data: PairData,
    rows: np.ndarray,
    cfg: AlignConfig,
    rng: np.random.Generator,
    parallel: ContrastiveParallel | None = None,
) -> torch.Tensor:
    img, txt = _embed_rows(model, data, rows, parallel)
    scale = model.scale()
    groups = data.report_group_N[rows]
    rep_pos = torch.from_numpy(groups[:, None] == groups[None, :])
    loss = info_nce(img, txt, scale, positives_BB=rep_pos)
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
    parallel: ContrastiveParallel | None = None,
) -> tuple[AlignModel, dict[str, Any]]:
    """Train the adapter on ``data``'s train split (validating on val); resumes from ``checkpoint_dir/last`` when
    that checkpoint was written for the same ``identity`` (default: the config's hash; the stage passes its job
    hash, which also names the activations and dataset it read).

    Returns the model holding the best-validation weights and a dict with ``history`` (per epoch: train loss,
    val loss, val r@1/r@5, temperature), ``best_epoch`` and ``resumed_from_epoch``.
    """

    torch.manual_seed(cfg.seed)  # every rank builds the same initial model
    writer = parallel is None or parallel.rank == 0
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
            g["lr"] = warmup_cosine(step, lr=cfg.lr, steps=total_steps)

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
                loss = _batch_loss(model, data, rows, cfg, rng, parallel)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if parallel is not None:
                    parallel.average_gradients(model)
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
                if ckpt_dir is not None and writer:
                    hdr = {"config": config_to_dict(cfg), "config_hash": chash, "epoch": epoch, "val_loss": val["loss"]}
                    save_checkpoint(ckpt_dir / "best.safetensors", model, None, hdr)
            if ckpt_dir is not None and writer:
                hdr = {"config": config_to_dict(cfg), "config_hash": chash, "epoch": epoch, "history": history}
                save_checkpoint(last, model, opt, hdr)  # type: ignore[arg-type]
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model, {"history": history, "best_epoch": best["epoch"], "resumed_from_epoch": resumed_from}
