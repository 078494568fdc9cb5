"""Workspace stages of ``cxrlens analyze``: each reads workspace artefacts, runs one analysis and writes
``analysis/<run>/`` atomically (tables as parquet/JSON, figures as PNG, ``config.toml``, ``manifest.json``).

Every stage has a frozen config; the same config is skipped when its artefact is current (``force`` redoes it).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens.analysis.data import SPRITE_FACTORS, factor_matrix, load_codes, load_factors, load_images, upstream_of
from cxrlens.analysis.disentanglement import (
    VARIANTS,
    DisentanglementConfig,
    InterventionalCodes,
    disentanglement_report,
    report_table,
)
from cxrlens.analysis.embedding import EmbeddingConfig, embed, embedding_plot, validate_embedding
from cxrlens.analysis.importance import ImportanceConfig, feature_importance, importance_plot
from cxrlens.analysis.vae import (
    VAEConfig,
    _read,
    encode,
    latent_activity,
    load_vae,
    save_vae,
    train_vae,
    traversal_grid,
)
from cxrlens.config import save_toml
from cxrlens.console import progress, warn_line
from cxrlens.data.phantom.datasets import SPRITE_GRID, sample
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.figures import new_figure, save_png
from cxrlens.files import atomic_write_json, atomic_write_parquet
from cxrlens.workspace import Artefact, StageResult, Workspace, open_artefact, read_manifest, run_stage

__all__ = [
    "AnalyzeDisentangleConfig",
    "AnalyzeEmbedConfig",
    "AnalyzeImportanceConfig",
    "AnalyzeTrainVAEConfig",
    "read_analysis",
    "run_analyze_disentangle",
    "run_analyze_embed",
    "run_analyze_importance",
    "run_analyze_train_vae",
]


def _threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------------- train-vae
@dataclass(frozen=True)
class AnalyzeTrainVAEConfig:
    """``cxrlens analyze train-vae``: train on ``split`` of ``dataset``, then encode every image of the dataset.

    Writes ``model.safetensors``, ``history.parquet`` (per-step losses), ``latents.parquet`` (image_id, split and
    one column per latent entry ``z<c>_<y>_<x>``), ``traversal.png``, ``summary.json`` (final losses, active units).
    """

    dataset: str = "cxr-sprites"
    split: str = "train"
    vae: VAEConfig = field(default_factory=VAEConfig)
    threads: int = 1


def _latent_columns(c: int, g: int) -> list[str]:
    return [f"z{ci}_{y}_{x}" for ci in range(c) for y in range(g) for x in range(g)]


def run_analyze_train_vae(ws: Workspace, cfg: AnalyzeTrainVAEConfig, run: str, *, force: bool = False) -> StageResult:

    def build(tmp: Path) -> dict[str, Any]:
        ckpt_dir = tmp / "checkpoints"  # kept across a killed run of the same job (resumable stage)
        _threads(cfg.threads)
        images, studies = load_images(ws, cfg.dataset, cfg.vae.image_size)
        train_mask = (
            (studies["split"] == cfg.split).to_numpy(copy=True) if cfg.split != "all" else np.ones(len(studies), bool)
        )
        if train_mask.sum() < cfg.vae.batch_size:
            raise BadInputError(ws.dataset(cfg.dataset), f"only {train_mask.sum()} images in split {cfg.split!r}")
        if (ckpt_dir / "last.safetensors").exists():
            try:
                head = _read(ckpt_dir / "last.safetensors")[0]
                if head["config"] != dataclasses.asdict(cfg.vae):
                    warn_line(f"{ckpt_dir}: checkpoint of another config discarded")
                    shutil.rmtree(ckpt_dir)
            except BadInputError as err:
                warn_line(f"{err}; starting afresh")
                shutil.rmtree(ckpt_dir)
        with progress() as bar:
            task = bar.add_task(f"train {cfg.vae.kind}", total=cfg.vae.steps)
            trained = train_vae(
                images[torch.from_numpy(train_mask)],
                cfg.vae,
                checkpoint_dir=ckpt_dir,
                on_step=lambda s, st: bar.update(
                    task, completed=s, description=f"train {cfg.vae.kind} loss {st['loss']:.1f}"
                ),
            )
        save_vae(trained, tmp / "model.safetensors")
        save_toml(cfg, tmp / "config.toml")
        atomic_write_parquet(tmp / "history.parquet", pd.DataFrame(trained.history).assign(step=lambda d: d.index + 1))
        mu = encode(trained.model, images)
        c, g = cfg.vae.latent_channels, cfg.vae.latent_grid
        lat = pd.DataFrame(mu.reshape(len(mu), -1).numpy(), columns=_latent_columns(c, g))
        lat.insert(0, "split", studies["split"].to_numpy())
        lat.insert(0, "image_id", studies["image_id"].to_numpy())
        atomic_write_parquet(tmp / "latents.parquet", lat)
        test = ~train_mask if (~train_mask).any() else train_mask
        traversal_grid(
            trained.model,
            images[np.flatnonzero(test)[0]],
            mu[torch.from_numpy(train_mask)],
            tmp / "traversal.png",
            title=f"{cfg.vae.kind} latent traversal ({run})",
        )
        act = latent_activity(mu)
        last = pd.DataFrame(trained.history[-100:]).mean().to_dict()
        summary = {
            "final_losses_mean_last_100": last,
            "first_losses": trained.history[0],
            "active_units": int((act >= 0.01).sum()),
            "activity": act.tolist(),
            "images": {"train": int(train_mask.sum()), "encoded": len(images)},
        }
        atomic_write_json(tmp / "summary.json", summary)
        return {"rows": {"images": len(images), "train": int(train_mask.sum())}, "extra": summary}

    upstream = upstream_of(ws, dataset=cfg.dataset)
    return run_stage(
        ws.analysis(run),
        stage="analyze.train-vae",
        config=cfg,
        build=build,
        force=force,
        upstream=upstream,
        resumable=True,
    )


# ------------------------------------------------------------------------------------------------------ helpers
def _targets(ws: Workspace, dataset: str, studies: pd.DataFrame, name: str) -> np.ndarray:
    """A label column of the study table (1 = positive, anything else 0, NaN stays missing) or a factor."""
    if name in studies.columns:
        col = studies[name]
        if col.dtype.kind == "f":
            return np.where(col.isna(), np.nan, (col == 1).astype(float))
        return col.to_numpy()
    factors = load_factors(ws, dataset, studies)
    if name not in factors.columns:
        raise BadInputError(ws.dataset(dataset), f"{name!r} is neither a study-table column nor a factor")
    col = factors[name]
    return col.to_numpy() if col.dtype.kind in "biuf" else col.astype(str).to_numpy()


def _aligned(ws: Workspace, dataset: str, latents: str) -> tuple[Any, pd.DataFrame]:
    """Codes of ``latents`` and the study-table rows of the same images, in the same order."""

    codes = load_codes(ws, latents, dataset)
    studies = read_studies(ws, dataset).set_index("image_id")
    missing = [i for i in codes.image_ids if i not in studies.index]
    if missing:
        raise BadInputError(ws.dataset(dataset), f"{len(missing)} coded images are not in dataset {dataset!r}")
    return codes, studies.loc[codes.image_ids].reset_index()


# --------------------------------------------------------------------------------------------------- importance
@dataclass(frozen=True)
class AnalyzeImportanceConfig:
    """``cxrlens analyze importance``: which latent dims/maps predict ``target`` (a label or factor).

    Trained on the ``train`` split, permutation importance on the other splits.
    """

    latents: str = "vae:beta-vae"
    dataset: str = "cxr-sprites"
    target: str = "Cardiomegaly"
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)


def run_analyze_importance(
    ws: Workspace, cfg: AnalyzeImportanceConfig, run: str, *, force: bool = False
) -> StageResult:

    def build(tmp: Path) -> dict[str, Any]:
        codes, studies = _aligned(ws, cfg.dataset, cfg.latents)
        y = _targets(ws, cfg.dataset, studies, cfg.target)
        res = feature_importance(
            codes.codes_ND,
            y,
            names=codes.names,
            train_mask_N=(studies["split"] == "train").to_numpy(),
            cfg=cfg.importance,
        )
        atomic_write_parquet(tmp / "importance.parquet", res.table)
        atomic_write_json(tmp / "importance.json", {"target": cfg.target, "latents": cfg.latents, **res.summary()})
        importance_plot(res, tmp / "importance.png", title=f"{cfg.target} from {cfg.latents}")
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"train": res.n_train, "test": res.n_test}, "extra": res.summary()}

    upstream = upstream_of(ws, dataset=cfg.dataset, sources=[cfg.latents])
    return run_stage(
        ws.analysis(run), stage="analyze.importance", config=cfg, build=build, force=force, upstream=upstream
    )


# -------------------------------------------------------------------------------------------------------- embed
@dataclass(frozen=True)
class AnalyzeEmbedConfig:
    """``cxrlens analyze embed``: a 2-D embedding of ``latents`` coloured by ``colour_by`` (labels or factors)."""

    latents: str = "vae:beta-vae"
    dataset: str = "cxr-sprites"
    colour_by: tuple[str, ...] = ("Cardiomegaly", "Pleural Effusion", "view")
    split: str = "all"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


def run_analyze_embed(ws: Workspace, cfg: AnalyzeEmbedConfig, run: str, *, force: bool = False) -> StageResult:

    def build(tmp: Path) -> dict[str, Any]:
        codes, studies = _aligned(ws, cfg.dataset, cfg.latents)
        keep = np.ones(len(studies), bool) if cfg.split == "all" else (studies["split"] == cfg.split).to_numpy()
        idx = np.flatnonzero(keep)
        if len(idx) > cfg.embedding.max_points:
            idx = np.sort(
                np.random.default_rng(cfg.embedding.seed).choice(idx, cfg.embedding.max_points, replace=False)
            )
        x = codes.codes_ND[idx]
        emb = embed(x, cfg.embedding)
        colours = {name: _targets(ws, cfg.dataset, studies, name)[idx] for name in cfg.colour_by}
        metrics = {name: validate_embedding(x, emb, y, cfg.embedding) for name, y in colours.items()}
        table = pd.DataFrame({"image_id": studies["image_id"].to_numpy()[idx], "x": emb[:, 0], "y": emb[:, 1]})
        atomic_write_parquet(tmp / "embedding.parquet", table)
        atomic_write_json(
            tmp / "embedding.json", {"latents": cfg.latents, "method": cfg.embedding.method, "metrics": metrics}
        )
        embedding_plot(
            emb,
            colours,
            tmp / "embedding.png",
            metrics=metrics,
            title=f"{cfg.embedding.method.upper()} of {cfg.latents} ({len(idx):,} images)",
        )
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"points": len(idx)}, "extra": {"metrics": metrics}}

    upstream = upstream_of(ws, dataset=cfg.dataset, sources=[cfg.latents])
    return run_stage(ws.analysis(run), stage="analyze.embed", config=cfg, build=build, force=force, upstream=upstream)


# -------------------------------------------------------------------------------------------------- disentangle
@dataclass(frozen=True)
class AnalyzeDisentangleConfig:
    """``cxrlens analyze disentangle``: the five metrics for each latent source against ground-truth factors.

    ``interventional``: VAE sources get BetaVAE/FactorVAE scores from freshly rendered sprites with one factor held
    (the phantom sampler) instead of conditional sampling from the dataset rows.
    """

    latents: tuple[str, ...] = ("vae:beta-vae",)
    dataset: str = "cxr-sprites"
    factors: tuple[str, ...] = SPRITE_FACTORS
    interventional: bool = True
    metrics: DisentanglementConfig = field(default_factory=DisentanglementConfig)
    threads: int = 1


def _sprites_sampling(ws: Workspace, dataset: str) -> dict[str, Any]:
    """``p_present`` and ``vary`` of the sprites dataset's build config (the sampler draws what the dataset drew)."""
    manifest = read_manifest(ws.dataset(dataset))
    conf = manifest.config if manifest is not None else {}
    vary = conf.get("vary")
    return {"p_present": float(conf.get("p_present", 0.25)), "vary": tuple(vary) if vary is not None else None}


def _interventional_sampler(
    ws: Workspace, source: str, factor_names: tuple[str, ...], cache: dict[tuple, torch.Tensor], dataset: str
):
    """BetaVAE/FactorVAE codes from freshly rendered sprites, drawn like ``dataset`` (its ``p_present`` and, for a
    dataset that varies only some factors, the same factors held). Renders are cached by (n, fixed, seed): every VAE
    of one run draws the same sequence of requests (same metric seed), so each batch is rendered once per run."""

    trained = load_vae(ws.analysis(source.partition(":")[2]) / "model.safetensors")
    size = trained.cfg.image_size
    drawn = _sprites_sampling(ws, dataset)

    def sample_images(n: int, fixed, seed: int) -> torch.Tensor:
        key = (n, tuple(sorted((fixed or {}).items())), seed, size)
        if key not in cache:
            images = sample(fixed, n, seed=seed, size=size, **drawn)[0]
            cache[key] = torch.from_numpy((images * 255).round().astype(np.uint8))
        return cache[key].float() / 255

    def encode_pooled(images: torch.Tensor) -> np.ndarray:
        return encode(trained.model, images).mean((2, 3)).numpy()

    return InterventionalCodes(
        sample_images, encode_pooled, {f: SPRITE_GRID[f] for f in factor_names}, name="interventional (sprites sampler)"
    )


def run_analyze_disentangle(
    ws: Workspace, cfg: AnalyzeDisentangleConfig, run: str, *, force: bool = False
) -> StageResult:

    def build(tmp: Path) -> dict[str, Any]:
        _threads(cfg.threads)
        rows = []
        renders: dict[tuple, torch.Tensor] = {}
        for source in cfg.latents:
            codes, studies = _aligned(ws, cfg.dataset, source)
            fmat, discrete = factor_matrix(load_factors(ws, cfg.dataset, studies), cfg.factors)
            sampler = None
            if cfg.interventional and source.startswith("vae:"):
                sampler = _interventional_sampler(ws, source, cfg.factors, renders, cfg.dataset)
            rows.append(
                disentanglement_report(
                    source, codes.codes_ND, fmat, cfg.factors, sampler=sampler, discrete=discrete, cfg=cfg.metrics
                )
            )
        table = report_table(rows)
        atomic_write_parquet(tmp / "disentanglement.parquet", table)
        atomic_write_json(tmp / "disentanglement.json", {"variants": VARIANTS, "rows": rows})
        disentanglement_plot(table, tmp / "disentanglement.png")
        save_toml(cfg, tmp / "config.toml")
        return {"rows": {"representations": len(rows)}, "extra": {"table": table.to_dict("records")}}

    upstream = upstream_of(ws, dataset=cfg.dataset, sources=cfg.latents)
    return run_stage(
        ws.analysis(run), stage="analyze.disentangle", config=cfg, build=build, force=force, upstream=upstream
    )


def disentanglement_plot(table: pd.DataFrame, path: Path) -> Path:
    """The comparison table as an annotated heatmap (rows: representations, columns: metrics, all in [0, 1])."""

    cols = ["beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"]
    vals = table[cols].to_numpy(float)
    fig = new_figure(1.0 * len(cols) + 2.5, 0.5 * len(table) + 1.4)
    ax = fig.add_subplot()
    ax.imshow(vals, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            ax.text(
                j,
                i,
                f"{vals[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if vals[i, j] < 0.5 else "black",
            )
    ax.set_xticks(
        range(len(cols)), [c.replace("dci_", "DCI ").replace("_", " ") for c in cols], fontsize=7, rotation=30
    )
    names = [f"{r} ({s})" for r, s in zip(table["representation"], table["sampler"], strict=True)]
    ax.set_yticks(range(len(table)), names, fontsize=7)
    return save_png(fig, path)


def read_analysis(ws: Workspace, run: str) -> Artefact:
    """An ``analyze …`` artefact: ``.table(name)`` / ``.json(name)`` / ``.figures()`` (files listed in each stage's
    config docstring: ``importance``, ``embedding``, ``disentanglement``, ``masking``, ``tcav``, ``sanity`` …)."""
    return open_artefact(ws.analysis(run), "analyze", hint="run one of `cxrlens analyze …`")
