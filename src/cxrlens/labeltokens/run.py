"""Workspace stages of the label-token ViT: train (LT-ViT + same-size CLS baseline), predict, explain.

Artefacts (``lt-vit/<run>``, written atomically by :func:`cxrlens.workspace.run_stage`):

* ``train`` → ``lt-vit/<run>/``: ``config.toml``, ``lt-vit.safetensors`` and (unless ``baseline=False``)
  ``cls-vit.safetensors`` (model + JSON header, see :mod:`cxrlens.labeltokens.train`), ``auc.parquet`` (model,
  label, auc, n, n_pos on the evaluation split), ``losses.parquet``, ``metrics.json``. Resumable: while it runs, the
  checkpoints live in ``lt-vit/.<run>.partial/resume/`` and a re-run of the same job continues from them.
* ``predict`` → ``lt-vit/<run>-predict-<dataset>-<split>/predictions.parquet`` (image_id + one probability
  column per label, per model).
* ``explain`` → ``lt-vit/<run>-explain/``: ``grounding.parquet`` (model, method, label, n, pointing, iou, chance),
  ``sanity.parquet`` (model, method, randomised_through, spearman, ssim, passed), ``maps.png`` (per-label maps of a
  few images).

Images are read as grayscale ``[0, 1]`` and resized once to the model's input size (antialiased); masks are resized
to the same size (nearest), so maps and masks are compared at the model's input resolution.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cxrlens.config import save_toml
from cxrlens.console import progress, warn_line
from cxrlens.data.images import load_image
from cxrlens.data.phantom import LABEL_CHANNELS, read_label_masks
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import image_file, read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_path, atomic_write_json, atomic_write_parquet
from cxrlens.labeltokens.grounding import compute_maps, map_grounding_scores, sanity_check
from cxrlens.labeltokens.model import LTViT, LTViTConfig
from cxrlens.labeltokens.train import (
    LabelData,
    LTTrainConfig,
    auc_per_label,
    load_model,
    paired_bootstrap_auc,
    predict,
    prepare_targets,
    replace_kind,
    save_checkpoint,
    train,
)
from cxrlens.workspace import StageResult, Workspace, artefact_identity, open_artefact, run_stage

__all__ = [
    "LTExplainConfig",
    "LTExplanation",
    "LTPredictConfig",
    "LTRunConfig",
    "LTRunTables",
    "choose_labels",
    "load_label_data",
    "load_run_models",
    "maps_figure",
    "read_explanation",
    "read_lt_vit_metrics",
    "read_predictions",
    "run_lt_vit_explain",
    "run_lt_vit_predict",
    "run_lt_vit_train",
]

MODEL_FILES = {"label-tokens": "lt-vit.safetensors", "cls": "cls-vit.safetensors"}


@dataclass(frozen=True)
class LTRunConfig:
    """A training run: dataset, evaluation split, the LT-ViT training config, and whether to train the baseline.

    The CLS baseline uses ``train`` with ``model.kind = "cls"``: same data, schedule, seed, size.
    """

    dataset: str
    train: LTTrainConfig
    eval_split: str = "test"
    baseline: bool = True


@dataclass(frozen=True)
class LTPredictConfig:
    """Predictions of a trained run on a dataset split (``split=None``: every image)."""

    run: str
    dataset: str
    split: str | None = None


@dataclass(frozen=True)
class LTExplainConfig:
    """Grounding + sanity run over a trained run's models on a dataset split."""

    run: str
    dataset: str
    split: str = "test"
    methods: tuple[str, ...] = ("attention", "rollout", "gradcam")
    max_images: int = 400
    sanity_images: int = 48
    rel_threshold: float = 0.5
    figure_images: int = 4
    seed: int = 0


# -------------------------------------------------------------------------------------------------------- data
def _read_gray(path: Path, size: int) -> torch.Tensor:
    """(size, size) float32 in [0, 1] via :func:`cxrlens.data.images.load_image` (PNG/JPEG/DICOM), resized."""

    t = torch.from_numpy(np.ascontiguousarray(load_image(path), dtype=np.float32))[None, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0, 0].clamp(0, 1)


def _read_masks(ds_dir: Path, image_id: str, labels: tuple[str, ...], size: int) -> torch.Tensor | None:
    """(L, size, size) bool masks of one image, or None when the dataset has none for it.

    Two layouts: the phantoms' ``masks/<image_id>.png`` (16-bit bit field, one bit per
    :data:`cxrlens.data.phantom.LABEL_CHANNELS` label, read with :func:`cxrlens.data.phantom.read_label_masks`) or
    ``masks/<image_id>.npz`` (one array per label name). Labels without a channel get an empty mask.
    """
    png, npz = ds_dir / "masks" / f"{image_id}.png", ds_dir / "masks" / f"{image_id}.npz"
    arrays: dict[str, np.ndarray] = {}
    if png.is_file():
        try:
            planes = read_label_masks(png)
        except ValueError as exc:
            raise BadInputError(png, f"unreadable mask ({exc})") from None
        arrays = {name: planes[i] for i, name in enumerate(LABEL_CHANNELS)}
    elif npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    else:
        return None
    out = torch.zeros(len(labels), size, size, dtype=torch.bool)
    for j, name in enumerate(labels):
        if name in arrays:
            m = torch.from_numpy(np.asarray(arrays[name], dtype=np.float32))[None, None]
            out[j] = F.interpolate(m, size=(size, size), mode="nearest")[0, 0] > 0.5
    return out


def load_label_data(
    ws: Workspace, dataset: str, labels: tuple[str, ...], split: str | None, size: int, max_images: int | None = None
) -> LabelData:
    """Images, labels and (where present) masks of ``dataset`` (one split or all) at ``size`` × ``size``.

    Unreadable images are skipped with one warning line each and counted; a missing label column is an error.
    """

    ds_dir = ws.dataset(dataset)
    studies = read_studies(ws, dataset)
    missing = [lab for lab in labels if lab not in studies.columns]
    if missing:
        raise BadInputError(ds_dir / "studies.parquet", f"no label column(s) {', '.join(missing)}")
    if split is not None:
        studies = studies[studies["split"] == split]
    studies = studies[studies["image_path"].fillna("").astype(str) != ""]
    if max_images is not None:
        studies = studies.iloc[:max_images]
    if studies.empty:
        raise BadInputError(ds_dir, f"no images in split {split!r}")
    images, masks, ids, keep = [], [], [], []
    any_mask, skipped = False, 0
    with progress(transient=True) as bar:
        task = bar.add_task(f"reading {dataset}/{split or 'all'}", total=len(studies))
        for pos, row in enumerate(studies.itertuples(index=False)):
            p = image_file(ds_dir, row.image_path)
            try:
                img = _read_gray(p, size)
                m = _read_masks(ds_dir, str(row.image_id), labels, size)
            except BadInputError as err:
                warn_line(f"skipped {err}")
                skipped += 1
                bar.advance(task)
                continue
            images.append(img)
            any_mask |= m is not None
            masks.append(m)
            ids.append(str(row.image_id))
            keep.append(pos)
            bar.advance(task)
    if not images:
        raise BadInputError(ds_dir, "no readable image")
    if skipped:
        warn_line(f"{dataset}/{split or 'all'}: skipped {skipped} of {len(studies)} images")
    lab = torch.tensor(studies.iloc[keep][list(labels)].to_numpy(dtype=np.float32))
    mask_t = None
    if any_mask:
        mask_t = torch.stack(
            [m if m is not None else torch.zeros(len(labels), size, size, dtype=torch.bool) for m in masks]
        )
    return LabelData(torch.stack(images), lab, tuple(labels), mask_t, ids)


def choose_labels(ws: Workspace, dataset: str, min_count: int = 10) -> tuple[str, ...]:
    """CheXpert label columns of ``dataset`` with at least ``min_count`` positives and negatives in its train split."""

    st = read_studies(ws, dataset)
    tr = st[st["split"] == "train"]
    out = tuple(
        c
        for c in CHEXPERT_LABELS
        if c in tr.columns and (tr[c] == 1).sum() >= min_count and (tr[c] == 0).sum() >= min_count
    )
    if not out:
        raise BadInputError(
            ws.dataset(dataset), f"no label with ≥ {min_count} positives and negatives in the train split"
        )
    return out


# ------------------------------------------------------------------------------------------------------- train
def run_lt_vit_train(
    ws: Workspace, cfg: LTRunConfig, run: str, *, model: LTViT | None = None, force: bool = False
) -> StageResult:
    """Train LT-ViT (and the CLS baseline) on the train split, evaluate per-label AUC on ``cfg.eval_split``.

    ``model``: an initialised LT-ViT (e.g. :func:`cxrlens.labeltokens.pretrained.from_backbone`) whose config must
    equal ``cfg.train.model``; the baseline is then initialised from the same backbone weights.
    """
    labels = cfg.train.model.labels
    size = cfg.train.model.image_size
    upstream = {f"datasets/{cfg.dataset}": artefact_identity(ws.dataset(cfg.dataset))}  # a rebuilt dataset retrains

    def build(tmp: Path) -> dict[str, Any]:
        tr = load_label_data(ws, cfg.dataset, labels, "train", size)
        ev = load_label_data(ws, cfg.dataset, labels, cfg.eval_split, size)
        save_toml(cfg, tmp / "config.toml")
        kinds = ["label-tokens", "cls"] if cfg.baseline else ["label-tokens"]
        auc_rows, loss_rows, metrics = [], [], {"n_train": len(tr), "n_eval": len(ev), "models": {}}
        probs: dict[str, torch.Tensor] = {}
        targets = prepare_targets(ev.labels, cfg.train.uncertain)
        for kind in kinds:
            tcfg = replace_kind(cfg.train, kind)
            init = None
            if model is not None:
                init = model if kind == "label-tokens" else _same_init(model, tcfg.model)
            ck = tmp / RESUME_DIR / f"{kind}.safetensors"  # survives a killed run of the same job (resumable)
            res = train(tcfg, tr, model=init, checkpoint=ck, description=f"train {kind}")
            save_checkpoint(tmp / MODEL_FILES[kind], res.model, tcfg, tcfg.steps, res.losses)
            probs[kind] = predict(res.model, ev.images)
            auc = auc_per_label(probs[kind], targets, labels)
            known = ~torch.isnan(targets)
            for j, name in enumerate(labels):
                auc_rows.append(
                    {
                        "model": kind,
                        "label": name,
                        "auc": auc[name],
                        "n": int(known[:, j].sum()),
                        "n_pos": int((targets[:, j] == 1).sum()),
                    }
                )
            loss_rows += [{"model": kind, "step": i, "loss": v} for i, v in enumerate(res.losses)]
            vals = [v for v in auc.values() if v == v]
            metrics["models"][kind] = {
                "params": res.model.param_count(),
                "mean_auc": float(np.mean(vals)) if vals else float("nan"),
                "auc": auc,
                "final_loss": res.losses[-1],
            }
        if "cls" in probs:  # the ablation: is LT-ViT's mean AUC higher than the CLS ViT's beyond resampling noise?
            metrics["lt_minus_cls_mean_auc"] = paired_bootstrap_auc(
                probs["label-tokens"], probs["cls"], targets, seed=cfg.train.seed, groups=_study_ids(ws, cfg, ev.ids)
            )
        atomic_write_parquet(tmp / "auc.parquet", pd.DataFrame(auc_rows))
        atomic_write_parquet(tmp / "losses.parquet", pd.DataFrame(loss_rows))
        atomic_write_json(tmp / "metrics.json", metrics)
        shutil.rmtree(tmp / RESUME_DIR)
        return {"rows": {"train_images": len(tr), "eval_images": len(ev)}, "extra": {"metrics": metrics}}

    return run_stage(
        ws.lt_vit(run), stage="lt-vit.train", config=cfg, build=build, force=force, upstream=upstream, resumable=True
    )


RESUME_DIR = "resume"


def _study_ids(ws: Workspace, cfg: LTRunConfig, image_ids: list[str]) -> list[str]:
    """Study id of each evaluated image: the bootstrap resamples studies, whose images share one report's labels."""

    st = read_studies(ws, cfg.dataset).drop_duplicates("image_id")
    study_of = dict(zip(st["image_id"].astype(str), st["study_id"].astype(str), strict=True))
    return [study_of[str(i)] for i in image_ids]


def _same_init(lt: LTViT, cls_cfg: LTViTConfig) -> LTViT:
    """A CLS model whose shared weights (image stream) equal ``lt``'s — the baseline starts where LT-ViT starts."""
    cls = LTViT(cls_cfg, seed=0)
    shared = {k: v for k, v in lt.state_dict().items() if k in cls.state_dict() and not k.startswith("head")}
    cls.load_state_dict(shared, strict=False)
    return cls


def load_run_models(ws: Workspace, run: str) -> dict[str, LTViT]:
    """The trained models of run ``run`` by kind (``label-tokens``, ``cls`` if trained)."""
    d = ws.lt_vit(run)
    if not (d / "manifest.json").is_file():
        raise BadInputError(d, f"no trained lt-vit run {run!r}; run `cxrlens lt-vit train --run {run}` first")
    return {kind: load_model(d / f)[0] for kind, f in MODEL_FILES.items() if (d / f).is_file()}


# ----------------------------------------------------------------------------------------------------- predict
def run_lt_vit_predict(ws: Workspace, cfg: LTPredictConfig, *, force: bool = False) -> StageResult:
    """Probabilities of every model of ``cfg.run`` on ``cfg.dataset`` (one split or all) → ``predictions.parquet``."""
    models = load_run_models(ws, cfg.run)
    lt = models["label-tokens"]
    labels, size = lt.cfg.labels, lt.cfg.image_size
    dataset, split = cfg.dataset, cfg.split
    out_name = f"{cfg.run}-predict-{dataset}-{split or 'all'}"

    def build(tmp: Path) -> dict[str, Any]:
        data = load_label_data(ws, dataset, labels, split, size)
        table = {"image_id": data.ids}
        for kind, m in models.items():
            probs = predict(m, data.images)
            for j, name in enumerate(labels):
                table[f"{kind}:{name}"] = probs[:, j].numpy()
        atomic_write_parquet(tmp / "predictions.parquet", pd.DataFrame(table))
        return {"rows": {"images": len(data)}}

    upstream = {  # a retrained run or rebuilt dataset predicts again
        f"lt-vit/{cfg.run}": artefact_identity(ws.lt_vit(cfg.run)),
        f"datasets/{dataset}": artefact_identity(ws.dataset(dataset)),
    }
    return run_stage(
        ws.lt_vit(out_name), stage="lt-vit.predict", config=cfg, build=build, force=force, upstream=upstream
    )


# ----------------------------------------------------------------------------------------------------- explain
def run_lt_vit_explain(ws: Workspace, cfg: LTExplainConfig, *, force: bool = False) -> StageResult:
    """Grounding (pointing game, IoU per label and method) and the sanity check for every model of the run."""

    models = load_run_models(ws, cfg.run)
    lt = models["label-tokens"]
    labels, size = lt.cfg.labels, lt.cfg.image_size

    def build(tmp: Path) -> dict[str, Any]:
        data = load_label_data(ws, cfg.dataset, labels, cfg.split, size, max_images=cfg.max_images)
        if data.masks is None:
            raise BadInputError(ws.dataset(cfg.dataset), "dataset has no finding masks (masks/): nothing to ground")
        g_rows, s_rows = [], []
        all_maps: dict[tuple[str, str], torch.Tensor] = {}
        for kind, m in models.items():
            for method in cfg.methods:
                maps = compute_maps(m, data.images, method)
                all_maps[(kind, method)] = maps
                scores = map_grounding_scores(maps, data.masks, data.labels, labels, rel_threshold=cfg.rel_threshold)
                g_rows += [{"model": kind, "method": method, "label": k, **v} for k, v in scores.items()]
                n = cfg.sanity_images
                res = sanity_check(m, data.images[:n], data.labels[:n], method, seed=cfg.seed + 1)
                s_rows += [{"model": kind, **r, "passed": res.passed} for r in res.rows()]
        atomic_write_parquet(tmp / "grounding.parquet", pd.DataFrame(g_rows))
        atomic_write_parquet(tmp / "sanity.parquet", pd.DataFrame(s_rows))
        probs = predict(lt, data.images)
        maps_figure(data, probs, all_maps, tmp / "maps.png", n_images=cfg.figure_images)
        return {"rows": {"images": len(data)}}

    upstream = {
        f"lt-vit/{cfg.run}": artefact_identity(ws.lt_vit(cfg.run)),
        f"datasets/{cfg.dataset}": artefact_identity(ws.dataset(cfg.dataset)),
    }
    out = ws.lt_vit(f"{cfg.run}-explain")
    return run_stage(out, stage="lt-vit.explain", config=cfg, build=build, force=force, upstream=upstream)


def maps_figure(
    data: LabelData,
    probs_NL: torch.Tensor,
    maps: dict[tuple[str, str], torch.Tensor],
    path: Path,
    *,
    n_images: int = 4,
    max_labels: int = 3,
    show: tuple[tuple[str, str], ...] = (
        ("label-tokens", "attention"),
        ("label-tokens", "rollout"),
        ("label-tokens", "gradcam"),
        ("cls", "gradcam"),
    ),
) -> Path:
    """A grid PNG: per image (row) the image, then for up to ``max_labels`` of its positive labels (with a mask) the
    map of each shown (model, method), the finding's mask outlined in cyan, the LT-ViT probability in the title.

    Images: those with the most positive, masked labels (ties: dataset order). Each map is shown on its own colour
    scale (min → max).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    show = tuple(s for s in show if s in maps)
    has = (data.labels == 1) & data.masks.flatten(2).any(-1) if data.masks is not None else data.labels == 1
    order = torch.argsort(has.sum(1), descending=True, stable=True)[:n_images].tolist()
    cols = 1 + max_labels * len(show)
    fig, axes = plt.subplots(len(order), cols, figsize=(1.45 * cols, 1.6 * len(order)), squeeze=False)
    short = {"label-tokens": "LT", "cls": "CLS"}
    for r, i in enumerate(order):
        img = data.images[i].numpy()
        axes[r, 0].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(data.ids[i][:16], fontsize=6)
        chosen = has[i].nonzero().flatten().tolist()[:max_labels]
        c = 1
        for j in chosen:
            for kind, method in show:
                ax = axes[r, c]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
                ax.imshow(maps[(kind, method)][i, j].numpy(), cmap="inferno", alpha=0.55)
                if data.masks is not None and data.masks[i, j].any():
                    ax.contour(data.masks[i, j].numpy().astype(float), levels=[0.5], colors="cyan", linewidths=0.7)
                head = f"{data.label_names[j][:18]} p={float(probs_NL[i, j]):.2f}"
                ax.set_title(f"{head}\n{short[kind]} {method}", fontsize=5.5)
                c += 1
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=140, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class LTRunTables:
    """``lt-vit train`` read back: per-label AUC (model, label, auc, n, n_pos), losses, ``metrics.json``."""

    auc: pd.DataFrame
    losses: pd.DataFrame
    metrics: dict[str, Any]


@dataclass(frozen=True)
class LTExplanation:
    """``lt-vit explain`` read back: grounding per model/method/label, the sanity check, the map figure."""

    grounding: pd.DataFrame
    sanity: pd.DataFrame
    figure: Path


def read_lt_vit_metrics(ws: Workspace, run: str) -> LTRunTables:
    art = open_artefact(ws.lt_vit(run), "lt-vit.train", hint="run `cxrlens lt-vit train`")
    return LTRunTables(art.table("auc"), art.table("losses"), art.json("metrics"))


def read_predictions(ws: Workspace, run: str, dataset: str, split: str | None) -> pd.DataFrame:
    """``image_id`` + one probability column ``<model>:<label>`` per model and label."""
    path = ws.lt_vit(f"{run}-predict-{dataset}-{split or 'all'}")
    return open_artefact(path, "lt-vit.predict", hint="run `cxrlens lt-vit predict`").table("predictions")


def read_explanation(ws: Workspace, run: str) -> LTExplanation:
    art = open_artefact(ws.lt_vit(f"{run}-explain"), "lt-vit.explain", hint="run `cxrlens lt-vit explain`")
    return LTExplanation(art.table("grounding"), art.table("sanity"), art.file("maps.png"))
