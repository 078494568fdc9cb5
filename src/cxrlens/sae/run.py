"""The ``sae.train`` stage: an activation store in the workspace → ``saes/<run>/``.

``saes/<run>/`` holds ``model.safetensors`` + ``config.json`` (:mod:`cxrlens.sae.io`), ``metrics.json``
(:mod:`cxrlens.sae.metrics` on the evaluation split, with the label probe for one-token-per-image streams),
``history.json`` (training curves), ``checkpoints/`` (the final training checkpoint) and ``manifest.json``.
Training batches stream from the store's seeded shuffle buffer (epoch ``e`` uses seed ``1000·seed + e``), so the
stream replays exactly and a killed run resumes from its last checkpoint (kept in
``saes/.<run>.partial/checkpoints/``: the stage is a resumable :func:`cxrlens.workspace.run_stage`).

**Data parallel** (``parallel=``, under ``torchrun``: :func:`cxrlens.scale.ddp.run_sae_train_distributed`): rank 0
runs the stage (lock, partial dir, artefact, manifest) and sends its build directory to the other ranks; every rank
trains on its own disjoint part of the store's chunks (``batch_size / world`` rows per step, see
:meth:`cxrlens.activations.ActivationStore.iter_batches`) and resumes from rank 0's checkpoints; rank 0 alone
evaluates and writes the artefact while the others wait at a barrier. ``metrics.json`` has the same schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxrlens.activations import ActivationStore
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_json
from cxrlens.sae.base import OBJECTIVE_VERSION
from cxrlens.sae.io import save_sae
from cxrlens.sae.metrics import evaluate_sae, write_metrics
from cxrlens.sae.registry import build_sae
from cxrlens.sae.train import DataParallel, TrainConfig, train
from cxrlens.workspace import StageResult, Workspace, artefact_identity, run_stage, run_stage_on_rank0

__all__ = ["SAERunConfig", "default_stream", "run_sae_train", "run_sae_untrained"]


@dataclass(frozen=True)
class SAERunConfig:
    """One SAE training run on a store (hashed into the manifest).

    Attributes:
        activations: store name (``activations/<name>``); stream: ``"<layer>/<token>"`` ("" = the first CLS stream).
        split: rows used for training (``all`` for every row); eval_split: rows for metrics.json.
        shuffle_buffer: rows in the reader's shuffle buffer; eval_max_rows: cap on evaluation/probe rows.
        train: the trainer's config (its ``sae.d_in`` must equal the stream width).
    """

    activations: str
    stream: str = ""
    split: str = "train"
    eval_split: str = "test"
    shuffle_buffer: int = 65536
    eval_max_rows: int = 20000
    train: TrainConfig = field(default_factory=TrainConfig)


def default_stream(store) -> str:
    """The first ``…/cls`` stream of a store, else its first stream."""
    names = store.stream_names
    cls = [n for n in names if n.endswith("/cls")]
    return (cls or names)[0]


def _batches(store, cfg: SAERunConfig, stream: str, part: tuple[int, int] = (0, 1)) -> Iterator[torch.Tensor]:
    """Endless (B, D) training batches; with ``part=(rank, world)`` this rank's (B / world, D) share, read from
    its own chunks (chunks of at most 4,096 rows, fewer when needed to give every rank ~8 chunks)."""
    split = None if cfg.split == "all" else cfg.split
    world = part[1]
    if cfg.train.batch_size % world:
        raise BadInputError(None, f"batch size {cfg.train.batch_size} is not divisible by {world} ranks")
    batch = cfg.train.batch_size // world
    chunk_rows = 4096 if world == 1 else max(1, min(4096, store.info(stream).rows // (8 * world)))
    epoch = 0
    while True:
        n = 0
        for b in store.iter_batches(
            stream,
            batch,
            shuffle_buffer=max(cfg.shuffle_buffer // world, batch),
            seed=1000 * cfg.train.seed + epoch,
            split=split,
            drop_last=True,
            chunk_rows=chunk_rows,
            part=part,
        ):
            n += 1
            yield b
        if n == 0:
            raise BadInputError(store.path, f"fewer than {batch} rows of {stream!r} in split {split} (part {part})")
        epoch += 1


def _rows_of(store, stream: str, split: str, cap: int, seed: int) -> np.ndarray:
    tokens = store.info(stream).tokens_per_image
    img = np.nonzero(store.index["split"].astype(str).to_numpy() == split)[0] if split != "all" else None
    img = np.arange(len(store)) if img is None else img
    rows = (img[:, None] * tokens + np.arange(tokens)[None, :]).reshape(-1)
    if len(rows) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(rows, cap, replace=False))
    return rows


def _labels(ws: Workspace, store, image_rows: np.ndarray) -> dict[str, np.ndarray] | None:

    dataset = store.manifest.config.get("dataset")
    if not dataset:
        return None
    try:
        studies = read_studies(ws, dataset)
    except (BadInputError, FileNotFoundError):
        return None
    table = studies.drop_duplicates("image_id").set_index("image_id")
    ids = store.index["image_id"].to_numpy()[image_rows]
    names = [c for c in CHEXPERT_LABELS if c in table.columns]
    return {c: table[c].reindex(ids).to_numpy(dtype=float) for c in names}


def run_sae_train(
    ws: Workspace,
    cfg: SAERunConfig,
    *,
    run: str,
    device: str | None = None,
    force: bool = False,
    show_progress: bool = True,
    parallel: DataParallel | None = None,
) -> StageResult:
    """Train ``cfg`` on ``activations/<cfg.activations>`` into ``saes/<run>`` (skipped when current). With
    ``parallel`` (every rank calls this), see the module docstring; every rank returns the artefact's result."""

    store = ActivationStore(ws.activations(cfg.activations))
    stream = cfg.stream or default_stream(store)
    info = store.info(stream)
    if info.dim != cfg.train.sae.d_in:
        raise BadInputError(store.path, f"stream {stream!r} is {info.dim}-d, the SAE expects {cfg.train.sae.d_in}")
    cfg = dataclasses.replace(cfg, stream=stream)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    final = ws.sae(run)
    upstream = {
        f"activations/{cfg.activations}": artefact_identity(store.path),
        "sae objective": f"v{OBJECTIVE_VERSION}",  # a changed objective retrains, never reuses
    }

    part = (0, 1) if parallel is None else (parallel.rank, parallel.world)

    def fit(tmp: Path):
        return train(
            _batches(store, cfg, stream, part),
            cfg.train,
            checkpoint_dir=tmp / "checkpoints",  # kept across a killed run: the next one resumes from it
            device=device,
            show_progress=show_progress and part[0] == 0,
            parallel=parallel,
        )

    def build(tmp: Path, share: Callable[[], None]) -> dict:
        share()  # the other ranks train beside rank 0 from here (checkpoints in this build directory)
        res = fit(tmp)
        sae = res.sae.cpu()
        save_sae(sae, tmp, extra={"activations": cfg.activations, "stream": stream})
        for old in sorted((tmp / "checkpoints").glob("step-*.safetensors"))[:-1]:
            old.unlink()  # the artefact keeps the last checkpoint only
        atomic_write_json(tmp / "history.json", res.history)
        rows = _rows_of(store, stream, cfg.eval_split, cfg.eval_max_rows, cfg.train.seed)
        if len(rows) == 0:
            raise BadInputError(store.path, f"no rows in evaluation split {cfg.eval_split!r}")
        acts = store.get(stream, rows)
        metrics = evaluate_sae(sae, acts)
        if info.tokens_per_image == 1:  # label probe: fit on training rows, score on the evaluation rows
            tr = _rows_of(store, stream, cfg.split, cfg.eval_max_rows, cfg.train.seed)
            tr = np.setdiff1d(tr, rows)
            both = np.concatenate([tr, rows])
            labels = _labels(ws, store, both)
            if labels:
                mask = np.r_[np.ones(len(tr), bool), np.zeros(len(rows), bool)]
                probe = evaluate_sae(sae, store.get(stream, both), labels=labels, train_mask=mask)["probe"]
                metrics["probe"] = probe
        metrics.update(train_seconds=res.seconds, train_tokens=res.tokens, resumed_from_step=res.resumed_from)
        metrics["train_tokens_per_s"] = (res.tokens - res.resumed_from * cfg.train.batch_size) / max(res.seconds, 1e-9)
        write_metrics(tmp / "metrics.json", metrics)
        return {
            "rows": {"train_tokens": res.tokens, "eval_tokens": len(rows)},
            "extra": {"stream": stream, "metrics": {k: metrics[k] for k in ("fve", "l0_mean", "dead_frac")}},
        }

    return run_stage_on_rank0(
        final,
        group=parallel,
        build=build,
        follow=fit,
        stage="sae.train",
        config=cfg,
        force=force,
        upstream=upstream,
        resumable=True,
    )


def run_sae_untrained(ws: Workspace, cfg: SAERunConfig, *, run: str, force: bool = False) -> StageResult:
    """The random-weight control of ``cfg``: the same SAE family and size, initialised exactly as training would
    start it (seed ``cfg.train.seed``; input scale and ``b_dec`` fitted on a first training batch, as the trainer
    does) and **never trained**, saved like a trained run into ``saes/<run>`` so every later stage treats it alike.
    Interpretability metrics that an untrained SAE also reaches say nothing about what training learnt."""

    store = ActivationStore(ws.activations(cfg.activations))
    stream = cfg.stream or default_stream(store)
    cfg = dataclasses.replace(cfg, stream=stream)
    upstream = {f"activations/{cfg.activations}": artefact_identity(store.path), "control": "untrained"}

    def build(tmp: Path) -> dict:
        torch.manual_seed(cfg.train.seed)
        sae = build_sae(cfg.train.sae)
        x = next(_batches(store, cfg, stream))
        with torch.no_grad():
            if cfg.train.normalise_input:
                sae.fit_input_scale(x)
            sae.init_b_dec(x, cfg.train.b_dec_init)
        save_sae(sae, tmp, extra={"activations": cfg.activations, "stream": stream, "untrained": True})
        rows = _rows_of(store, stream, cfg.eval_split, cfg.eval_max_rows, cfg.train.seed)
        metrics = evaluate_sae(sae, store.get(stream, rows))
        write_metrics(tmp / "metrics.json", metrics)
        return {"rows": {"eval_tokens": len(rows)}, "extra": {"stream": stream, "untrained": True}}

    return run_stage(ws.sae(run), stage="sae.untrained", config=cfg, build=build, force=force, upstream=upstream)
