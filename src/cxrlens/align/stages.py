"""Workspace-level entry points of the align evaluations: each reads an ``align train`` run and writes one artefact.

* :func:`run_align_zero_shot` → ``align/<align_run>-zeroshot/``: ``zeroshot.parquet`` (per-finding AUC + CI),
  ``negation.parquet`` (the negation check), ``summary.json``.
* :func:`run_align_index` → ``align/<align_run>-index/``: ``index.faiss`` (faiss ``IndexFlatIP``), ``images.parquet``
  (row → image), ``queries.parquet`` (NDCG@5/@10 per query of :data:`cxrlens.align.search.QUERIES`),
  ``summary.json``.
* :func:`search_text` — a text query against that index (no artefact).
* :func:`run_align_probe` → ``align/<align_run>-probe/``: ``probes.parquet`` (long), ``summary.parquet``,
  ``learning_curve.png``, ``summary.json``.

Labels are the dataset's CheXpert columns joined on ``image_id``; search relevance also uses the dataset's
``factors.parquet`` when it has one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens.activations import ActivationStore
from cxrlens.align.contrastive import AlignRun, load_align_run
from cxrlens.align.probes import ProbeConfig, learning_curve_figure, run_probes, summarize_probes
from cxrlens.align.search import (
    QUERIES,
    SearchConfig,
    build_index,
    deserialize_index,
    evaluate_queries,
    facts_from_any_factors,
    facts_from_labels,
    search_index,
    serialize_index,
)
from cxrlens.align.text import MiniLMEncoder, TextEmbeddingCache, TextEncoder
from cxrlens.align.zeroshot import (
    PROMPTS,
    ZeroShotConfig,
    mean_auc_interval,
    negation_check,
    prompt_embeddings,
    zero_shot,
    zero_shot_scores,
)
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from cxrlens.sae.io import load_sae
from cxrlens.workspace import StageResult, Workspace, artefact_identity, open_artefact, read_manifest, run_stage

__all__ = [
    "PROMPTS",
    "AlignContext",
    "IndexTables",
    "ProbeTables",
    "ZeroShotTables",
    "load_context",
    "read_index",
    "read_probes",
    "read_zero_shot",
    "run_align_index",
    "run_align_probe",
    "run_align_zero_shot",
    "sae_codes",
    "search_facts",
    "search_text",
]


@dataclasses.dataclass
class AlignContext:
    """An align run with what the evaluations need: per-image labels (rows = the run's image rows), the text side."""

    run: AlignRun
    dataset: str
    labels: pd.DataFrame
    cache: TextEmbeddingCache

    @property
    def split(self) -> np.ndarray:
        return self.run.images["split"].astype(str).to_numpy()

    @property
    def image_ids(self) -> np.ndarray:
        return self.run.images["image_id"].astype(str).to_numpy()

    def project(self, text_NDt: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.run.model.text(text_NDt)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Query texts → (Q, E) unit vectors in the image-embedding space."""
        return self.project(torch.from_numpy(self.cache.get(texts))).numpy()

    def rows(self, split: str) -> np.ndarray:
        if split == "all":
            return np.arange(len(self.split))
        rows = np.nonzero(self.split == split)[0]
        if len(rows) == 0:
            raise BadInputError(self.run.path, f"no images in split {split!r}")
        return rows


def load_context(workspace: Workspace, align_run: str, encoder: TextEncoder | None = None) -> AlignContext:
    """Read ``align/<align_run>`` and the labels of its dataset, aligned to its image rows."""

    run = load_align_run(workspace.align(align_run))
    dataset = str(run.header.get("dataset") or run.config.dataset or "")
    if not dataset:
        raise BadInputError(run.path, "the align run does not name its dataset")
    studies = read_studies(workspace, dataset)
    by_id = studies.drop_duplicates("image_id").set_index(studies.drop_duplicates("image_id")["image_id"].astype(str))
    cols = [c for c in CHEXPERT_LABELS if c in by_id.columns]
    labels = by_id.reindex(run.images["image_id"].astype(str))[cols].reset_index(drop=True)
    encoder = encoder or MiniLMEncoder()
    if run.header.get("text_model") not in (None, encoder.name):
        raise BadInputError(run.path, f"trained with text model {run.header['text_model']!r}, not {encoder.name!r}")
    return AlignContext(run, dataset, labels, TextEmbeddingCache.in_workspace(workspace.root, encoder))


def upstream_of(workspace: Workspace, ctx: AlignContext, *more: Path) -> dict[str, str]:
    """Identities of what an alignment sub-stage reads (the align run, its dataset, ``more``), for the skip hash: a
    retrained adapter or rebuilt dataset redoes the zero-shot table, index and probes."""
    paths = [ctx.run.path, workspace.dataset(ctx.dataset), *more]
    return {str(Path(p).relative_to(workspace.root)): artefact_identity(p) for p in paths}


def _finish(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if v is not None}


# --------------------------------------------------------------------------------------------------------- zero-shot
def run_align_zero_shot(
    workspace: Workspace, cfg: ZeroShotConfig, *, encoder: TextEncoder | None = None, force: bool = False
) -> StageResult:
    """Zero-shot AUCs with CIs and the negation check on ``cfg.split``; see module docstring."""

    ctx = load_context(workspace, cfg.align_run, encoder)
    rows = ctx.rows(cfg.split)

    def build(tmp: Path) -> dict[str, Any]:
        img = ctx.run.image_emb_NE[torch.from_numpy(rows)]
        labels = ctx.labels.iloc[rows].reset_index(drop=True)
        studies = ctx.run.images["study_id"].astype(str).to_numpy()[rows]  # CIs resample studies, not images
        table = zero_shot(img, labels, ctx.cache.get, ctx.project, cfg, groups=studies)
        neg = negation_check(img, labels, ctx.cache.get, ctx.project, cfg)
        atomic_write_parquet(tmp / "zeroshot.parquet", table)
        atomic_write_parquet(tmp / "negation.parquet", neg)
        scored = table.dropna(subset=["auc"])
        mean_ci: tuple[float | None, float | None] = (None, None)
        if len(scored):
            names = list(scored["finding"])
            scores = zero_shot_scores(
                img, prompt_embeddings({f: PROMPTS[f] for f in names}, ctx.cache.get, ctx.project)
            )
            _, lo, hi = mean_auc_interval(labels, scores, names, groups=studies, n_boot=cfg.n_boot, seed=cfg.seed)
            mean_ci = (lo, hi)
        summary = {
            "split": cfg.split,
            "images": len(rows),
            "findings_scored": len(scored),
            "mean_auc": float(scored["auc"].mean()) if len(scored) else None,
            "mean_auc_ci_low": mean_ci[0],
            "mean_auc_ci_high": mean_ci[1],
            "mean_auc_neg_prompt_only": float(neg["auc_neg"].mean()) if neg["auc_neg"].notna().any() else None,
            "mean_bacc_at_0": float(neg["bacc_at_0"].mean()) if neg["bacc_at_0"].notna().any() else None,
            "mean_raw_cos_pos_neg": float(neg["raw_cos"].mean()),
            "mean_proj_cos_pos_neg": float(neg["proj_cos"].mean()),
            "label_policy": "u-ignore, nan-negative",
        }
        atomic_write_json(tmp / "summary.json", _finish(summary))
        return {
            "rows": {"images": len(rows), "findings": len(table)},
            "extra": _finish(summary),
        }

    out = workspace.align(f"{cfg.align_run}-zeroshot")
    upstream = upstream_of(workspace, ctx)
    return run_stage(out, stage="align.zeroshot", config=cfg, build=build, force=force, upstream=upstream)


# ------------------------------------------------------------------------------------------------------------ search
def search_facts(workspace: Workspace, ctx: AlignContext) -> tuple[pd.DataFrame, str]:
    """Relevance facts for the run's images: CheXpert labels, plus phantom factors when the dataset has them."""
    studies = ctx.labels.assign(image_id=ctx.image_ids)
    facts = facts_from_labels(studies, list(CHEXPERT_LABELS))
    source = "labels"
    factors_path = workspace.dataset(ctx.dataset) / "factors.parquet"
    if factors_path.exists():
        factors = pd.read_parquet(factors_path)
        facts = pd.concat([facts, facts_from_any_factors(factors)], ignore_index=True)
        source = "labels+factors"
    return facts, source


def run_align_index(
    workspace: Workspace, cfg: SearchConfig, *, encoder: TextEncoder | None = None, force: bool = False
) -> StageResult:
    """Build the faiss index over ``cfg.split``'s image embeddings and evaluate the query set (NDCG@k)."""

    ctx = load_context(workspace, cfg.align_run, encoder)
    rows = ctx.rows(cfg.split)

    def build(tmp: Path) -> dict[str, Any]:
        emb = ctx.run.image_emb_NE[torch.from_numpy(rows)].numpy()
        index = build_index(emb)
        atomic_write_bytes(tmp / "index.faiss", serialize_index(index))
        images = ctx.run.images.iloc[rows].reset_index(drop=True).assign(store_row=rows)
        atomic_write_parquet(tmp / "images.parquet", images)
        facts, source = search_facts(workspace, ctx)
        table = evaluate_queries(emb, ctx.image_ids[rows], facts, ctx.embed_query, QUERIES, cfg.ks)
        atomic_write_parquet(tmp / "queries.parquet", table)
        scored = table[table["has_relevant"]]
        summary = {
            "split": cfg.split,
            "images": len(rows),
            "queries": len(table),
            "queries_with_relevant": len(scored),
            "relevance_source": source,
            **{f"mean_ndcg@{k}": float(scored[f"ndcg@{k}"].mean()) if len(scored) else None for k in cfg.ks},
        }
        atomic_write_json(tmp / "summary.json", _finish(summary))
        return {"rows": {"images": len(rows), "queries": len(table)}, "extra": _finish(summary)}

    out = workspace.align(f"{cfg.align_run}-index")
    return run_stage(
        out, stage="align.index", config=cfg, build=build, force=force, upstream=upstream_of(workspace, ctx)
    )


def search_text(
    workspace: Workspace, align_run: str, query: str, k: int = 10, *, encoder: TextEncoder | None = None
) -> pd.DataFrame:
    """Top-``k`` images of the ``align index`` artefact for a text query: rank, score, image_id, study_id, split,
    image_path and the report's findings (when the dataset has them)."""

    path = workspace.align(f"{align_run}-index")
    if read_manifest(path) is None:
        raise BadInputError(path, f"no search index; run `cxrlens align index --run {align_run}` first")
    if not query.strip():
        raise BadInputError(None, "empty query")
    ctx = load_context(workspace, align_run, encoder)
    index = deserialize_index((path / "index.faiss").read_bytes())
    images = pd.read_parquet(path / "images.parquet")
    scores, rows = search_index(index, ctx.embed_query([query]), k)
    hits = images.iloc[rows[0]].reset_index(drop=True)
    out = pd.DataFrame({"rank": np.arange(1, len(hits) + 1), "score": scores[0]})
    for c in ("image_id", "study_id", "split", "view", "image_path"):
        if c in hits.columns:
            out[c] = hits[c].astype(str).to_numpy()
    return out


# ------------------------------------------------------------------------------------------------------------- probes
def run_align_probe(
    workspace: Workspace,
    cfg: ProbeConfig,
    *,
    encoder: TextEncoder | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> StageResult:
    """Linear probes on adapter embeddings, raw backbone features (the pooled stream the adapter read) and, with
    ``cfg.sae_run``, SAE codes of that stream."""

    ctx = load_context(workspace, cfg.align_run, encoder)
    store = ActivationStore(workspace.activations(ctx.run.config.activations))
    pooled = str(ctx.run.header["pooled_stream"])
    raw = store.read(pooled).numpy()
    if len(raw) != len(ctx.split):
        raise BadInputError(store.path, f"store has {len(raw)} images, the align run {len(ctx.split)}")
    features = {"adapter": ctx.run.image_emb_NE.numpy(), f"backbone ({pooled})": raw}
    mean_stream = pooled.rsplit("/", 1)[0] + "/mean"
    if mean_stream in store.stream_names and mean_stream != pooled:  # the adapter also saw the patch tokens
        features[f"backbone ({pooled} ⊕ {mean_stream})"] = np.concatenate([raw, store.read(mean_stream).numpy()], 1)
    if cfg.sae_run:
        features[f"sae ({cfg.sae_run})"] = sae_codes(workspace, cfg.sae_run, torch.from_numpy(raw)).numpy()

    def build(tmp: Path) -> dict[str, Any]:
        long = run_probes(features, ctx.labels, ctx.split, cfg, show_progress=show_progress)
        summary = summarize_probes(long)
        atomic_write_parquet(tmp / "probes.parquet", long)
        atomic_write_parquet(tmp / "summary.parquet", summary)
        learning_curve_figure(summary, tmp / "learning_curve.png", f"Linear probes · {ctx.dataset}")
        means = summary[summary["finding"].str.startswith("mean")]
        info = {
            "findings": sorted(long["finding"].unique().tolist()),
            "mean_auc": {
                f"{r.finding} · {r.features} @ {r.fraction:g}": [round(float(r.auc_mean), 4), round(float(r.auc_sd), 4)]
                for r in means.itertuples()
            },
        }
        atomic_write_json(tmp / "summary.json", info)
        return {"rows": {"fits": len(long)}, "extra": info}

    out = workspace.align(f"{cfg.align_run}-probe")
    upstream = upstream_of(workspace, ctx, store.path, *([workspace.sae(cfg.sae_run)] if cfg.sae_run else []))
    return run_stage(out, stage="align.probe", config=cfg, build=build, force=force, upstream=upstream)


def sae_codes(workspace: Workspace, sae_run: str, acts_ND: torch.Tensor) -> torch.Tensor:
    """SAE codes (N, K) of ``acts_ND`` with the SAE of ``saes/<sae_run>`` ."""
    sae = load_sae(workspace.sae(sae_run))
    with torch.no_grad():
        return torch.cat([sae.encode(acts_ND[i : i + 4096]) for i in range(0, len(acts_ND), 4096)]).float()


# ------------------------------------------------------------------------------------------------------------ readers
@dataclasses.dataclass(frozen=True)
class ZeroShotTables:
    """``align zero-shot`` read back: per-finding AUC + CI (``table``), the negation check, the summary."""

    table: pd.DataFrame
    negation: pd.DataFrame
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class IndexTables:
    """``align index`` read back: per-query NDCG/recall (``queries``) and the summary."""

    queries: pd.DataFrame
    summary: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ProbeTables:
    """``align probe`` read back: every fit (``long``), means ± sd per finding/features/fraction, the summary."""

    long: pd.DataFrame
    summary: pd.DataFrame
    info: dict[str, Any]


def read_zero_shot(workspace: Workspace, align_run: str) -> ZeroShotTables:
    art = open_artefact(
        workspace.align(f"{align_run}-zeroshot"), "align.zeroshot", hint="run `cxrlens align zero-shot`"
    )
    return ZeroShotTables(art.table("zeroshot"), art.table("negation"), art.json("summary"))


def read_index(workspace: Workspace, align_run: str) -> IndexTables:
    art = open_artefact(workspace.align(f"{align_run}-index"), "align.index", hint="run `cxrlens align index`")
    return IndexTables(art.table("queries"), art.json("summary"))


def read_probes(workspace: Workspace, align_run: str) -> ProbeTables:
    art = open_artefact(workspace.align(f"{align_run}-probe"), "align.probe", hint="run `cxrlens align probe`")
    return ProbeTables(art.table("probes"), art.table("summary"), art.json("summary"))
