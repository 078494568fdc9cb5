"""The ``align train`` stage: pair an activation store's images with their reports, train the adapter
(:mod:`cxrlens.align.train`), embed every image, and write ``align/<run>``; :func:`load_align_run` reads it back.

**Data parallel** (``parallel=``, under ``torchrun``: :func:`cxrlens.scale.ddp.run_align_train_distributed`): rank 0
runs the stage (lock, partial dir, artefact, manifest), builds the pair data first — which fills the workspace's
text-embedding cache (each :meth:`TextEmbeddingCache.get` writes the file before it returns) — and only then sends its
build directory to the other ranks, which build their pair data from the filled cache (reads only: no two ranks
ever write it), train with ``parallel`` (every rank embeds its share of the global batch, see
:func:`cxrlens.align.train.train_adapter`) and wait at a barrier while rank 0 embeds the images and writes the
artefact. A current artefact is reused on every rank."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from cxrlens.activations import ActivationStore
from cxrlens.align.config import AlignConfig
from cxrlens.align.model import AlignModel
from cxrlens.align.pairs import build_pair_data
from cxrlens.align.text import MiniLMEncoder, TextEmbeddingCache
from cxrlens.align.train import ContrastiveParallel, embed_images, load_checkpoint, save_checkpoint, train_adapter
from cxrlens.config import config_from_dict, config_to_dict
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from cxrlens.workspace import artefact_identity, read_manifest, run_stage_on_rank0, stage_hash

__all__ = ["AlignRun", "load_align_run", "run_align_train"]


# ------------------------------------------------------------------------------------------------------ the stage
def run_align_train(
    workspace: Any,
    cfg: AlignConfig,
    *,
    run: str | None = None,
    encoder: Any = None,
    force: bool = False,
    show_progress: bool = True,
    parallel: ContrastiveParallel | None = None,
) -> Any:
    """``align train``: pair, train, embed every image; writes ``align/<run>`` (default ``align-<activations>``).

    Files: ``model.safetensors`` (best weights + JSON header), ``config.json``, ``history.json``,
    ``image_embeddings.safetensors`` (``embeddings`` (N, E) float32, rows = the store's rows), ``images.parquet``
    (the store's index), ``manifest.json``. Checkpoints live in ``align/.<run>.partial/`` until the run is done,
    so a killed run resumes there. Returns the :class:`cxrlens.workspace.StageResult`. With ``parallel`` (every
    rank calls this with the same arguments), see the module docstring; every rank returns the artefact's result.
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

    text_encoder = encoder or MiniLMEncoder()

    def pairs() -> tuple[Any, dict[str, Any]]:
        cache = TextEmbeddingCache.in_workspace(workspace.root, text_encoder)
        return build_pair_data(store, studies=read_studies(workspace, dataset), cfg=cfg, embed=cache.get)

    def fit(data: Any, partial: Path) -> tuple[AlignModel, dict[str, Any]]:
        return train_adapter(
            data,
            cfg,
            checkpoint_dir=partial / "checkpoints",  # written by rank 0 only, read by every rank on resume
            show_progress=show_progress and (parallel is None or parallel.rank == 0),
            identity=chash,
            parallel=parallel,
        )

    def build(partial: Path, share: Callable[[], None]) -> dict[str, Any]:
        data, info = pairs()  # fills the text-embedding cache before any other rank reads it
        share()
        t0 = time.perf_counter()
        model, result = fit(data, partial)
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

    return run_stage_on_rank0(
        final,
        group=parallel,
        build=build,
        follow=lambda partial: fit(pairs()[0], partial),
        stage="align.train",
        config=cfg,
        force=force,
        upstream=upstream,
        resumable=True,
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
