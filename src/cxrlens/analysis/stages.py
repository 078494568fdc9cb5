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

from cxrlens.analysis.data import load_images
from cxrlens.analysis.vae import VAEConfig
from cxrlens.config import save_toml
from cxrlens.console import progress, warn_line
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace, atomic_write_json, atomic_write_parquet, run_stage

__all__ = ["TrainVAEStage", "train_vae_stage"]


def _threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------------- train-vae
@dataclass(frozen=True)
class TrainVAEStage:
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


def train_vae_stage(ws: Workspace, cfg: TrainVAEStage, run: str, *, force: bool = False) -> StageResult:
    from cxrlens.analysis.vae import encode, latent_activity, save_vae, train_vae, traversal_grid

    ckpt_dir = ws.analysis(run).parent / f".{run}.checkpoints"

    def build(tmp: Path) -> dict[str, Any]:
        _threads(cfg.threads)
        images, studies = load_images(ws, cfg.dataset, cfg.vae.image_size)
        train_mask = (
            (studies["split"] == cfg.split).to_numpy(copy=True) if cfg.split != "all" else np.ones(len(studies), bool)
        )
        if train_mask.sum() < cfg.vae.batch_size:
            raise BadInputError(ws.dataset(cfg.dataset), f"only {train_mask.sum()} images in split {cfg.split!r}")
        if (ckpt_dir / "last.safetensors").exists():
            try:
                from cxrlens.analysis.vae import _read

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
        traversal_grid(trained.model, images[np.flatnonzero(test)[0]], mu[torch.from_numpy(train_mask)],
                       tmp / "traversal.png", title=f"{cfg.vae.kind} latent traversal ({run})")  # fmt: skip
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

    result = run_stage(ws.analysis(run), stage="analyze.train-vae", config=cfg, build=build, force=force)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result
