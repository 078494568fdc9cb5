"""The ``sae.train`` stage: an activation store in the workspace → ``saes/<run>/``.

``saes/<run>/`` holds ``model.safetensors`` + ``config.json`` (:mod:`cxrlens.sae.io`), ``metrics.json``
(:mod:`cxrlens.sae.metrics` on the evaluation split, with the label probe for one-token-per-image streams),
``history.json`` (training curves), ``checkpoints/`` (the final training checkpoint) and ``manifest.json``.
Training batches stream from the store's seeded shuffle buffer (epoch ``e`` uses seed ``1000·seed + e``), so the
stream replays exactly and a killed run resumes from its last checkpoint (kept in
``saes/.<run>.partial/checkpoints/``: the stage is a resumable :func:`cxrlens.workspace.run_stage`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
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
from cxrlens.sae.train import TrainConfig, train
from cxrlens.workspace import StageResult, Workspace, artefact_identity, run_stage

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


def _batches(store, cfg: SAERunConfig, stream: str) -> Iterator[torch.Tensor]:
    split = None if cfg.split == "all" else cfg.split
    epoch = 0
    while True:
        n = 0
        for b in store.iter_batches(
            stream,
            cfg.train.batch_size,
            shuffle_buffer=max(cfg.shuffle_buffer, cfg.train.batch_size),
            seed=1000 * cfg.train.seed + epoch,
            split=split,
            drop_last=True,
        ):
            n += 1
            yield b
        if n == 0:
            raise BadInputError(store.path, f"fewer than {cfg.train.batch_size} rows of {stream!r} in split {split}")
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
) -> StageResult:
    """Train ``cfg`` on ``activations/<cfg.activations>`` into ``saes/<run>`` (skipped when current)."""

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

    def build(tmp: Path) -> dict:
        res = train(
            _batches(store, cfg, stream),
            cfg.train,
            checkpoint_dir=tmp / "checkpoints",  # kept across a killed run: the next one resumes from it
            device=device,
            show_progress=show_progress,
        )
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

    return run_stage(final, stage="sae.train", config=cfg, build=build, force=force, upstream=upstream, resumable=True)


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
