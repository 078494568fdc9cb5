"""The ``interpret`` stage: a trained SAE + its activation store → ``interpret/<run>/``.

What is computed (splits are the dataset's patient-level splits, see ``docs/sae-rad.md``):

* SAE codes of every image of the store (the stream the SAE was trained on, one token per image).
* ``features.parquet`` — one row per feature: activation statistics on the ``describe_split``
  (:func:`~cxrlens.interpret.features.feature_stats`), the per-feature **threshold** calibrated on the
  ``calibrate_split`` (median of the feature's positive activations there,
  :func:`~cxrlens.interpret.features.calibrate_thresholds`), the ROC AUC of the activation for each CheXpert label
  (``auc.<label>``, uncertain → positive, not mentioned → negative) and, on phantom datasets, for each rendered
  ground-truth finding kind (``factor.<kind>``), the confound check
  (:func:`~cxrlens.interpret.features.confound_check`, against the rendered truth on phantoms), the top-k
  activating images (``top_image_ids`` / ``top_activations``) and a seeded sample of non-activating images
  (``random_image_ids``).
* ``descriptions.parquet`` — the contrastive extractive describer's output per feature
  (:mod:`cxrlens.interpret.describe`, sentences of the ``describe_split`` reports), with ``describer``.
* ``thresholds.safetensors`` — ``thresholds (n_features,) float32`` (the report compiler reads this).
* ``figures/`` — overview figures.

The stage records everything the report compiler needs to encode a new image (backbone spec, layer, token, SAE
run) in its manifest, so ``cxrlens report --model <run>`` needs only the run name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import save

from cxrlens.console import progress
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_parquet
from cxrlens.interpret.codes import (
    ImageCodes,
    SAEContext,
    by_study,
    image_codes,
    image_reports,
    load_sae_context,
    phantom_truth,
    split_rows,
)
from cxrlens.interpret.describe import (
    AnchorConfig,
    DescribeConfig,
    anchor_descriptions,
    build_sentence_index,
    describe_features,
)
from cxrlens.interpret.features import (
    auc_matrix,
    binarise_label_table,
    calibrate_thresholds,
    confound_check,
    feature_stats,
    top_images,
)
from cxrlens.interpret.llm import LLMConfig, contrast_reports, describe_features_llm
from cxrlens.interpret.readout import READOUT_LABELS, ReadoutConfig, finding_sentences, fit_readout, label_targets
from cxrlens.interpret.scoring import score_descriptions, summarise_scores
from cxrlens.interpret.views import feature_heatmaps_files, overview_figure
from cxrlens.retrieval import nearest_neighbours
from cxrlens.workspace import StageResult, Workspace, artefact_identity, run_stage

__all__ = ["InterpretConfig", "read_interpretation", "retrieval_baseline", "run_interpret"]

SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class InterpretConfig:
    """One interpretation run (hashed into the manifest).

    Attributes:
        sae: SAE run name (``saes/<sae>``); its stream comes from the SAE's own config.
        activations: activation store to interpret on ("" = the store the SAE was trained on).
        describe_split: images whose reports describe the features and whose activations give the statistics,
            label AUCs, top images and the confound check.
        calibrate_split: images on which each feature's report threshold is calibrated (held out from training).
        threshold_quantile: quantile of a feature's positive activations on ``calibrate_split`` used as threshold.
        top_k: top-activating images kept per feature (``features.parquet``; the describer has its own ``top_k``).
        n_random: non-activating images sampled per feature (seeded).
        describe: the extractive describer's config.
        llm: an OpenAI-compatible endpoint (:class:`~cxrlens.interpret.llm.LLMConfig`) whose descriptions become
            the run's ``descriptions.parquet`` (per-feature fallback to the extractive one, marked); the extractive
            descriptions are then also kept in ``descriptions_extractive.parquet`` for the robustness comparison.
        score: score every description on the ``calibrate_split`` (:mod:`cxrlens.interpret.scoring`).
        anchor: the label-anchored describer (:func:`~cxrlens.interpret.describe.anchor_descriptions`), tried
            first for every feature; None = extractive descriptions only.
        readout: the finding readout (:mod:`cxrlens.interpret.readout`) fitted on ``describe_split``, chosen on
            ``calibrate_split`` → ``readout.safetensors`` / ``readout.parquet``.
        heatmap_features: patch-level heatmaps (:func:`~cxrlens.interpret.heatmaps.feature_heatmaps`) on every top
            image of this many described features (most frequent first; 0 = none) → ``heatmaps.safetensors`` and
            ``figures/features.png``; skipped (and said so in the manifest) when the store records no backbone.
        seed: seed of every random draw.
    """

    sae: str
    activations: str = ""
    describe_split: str = "train"
    calibrate_split: str = "val"
    threshold_quantile: float = 0.5
    top_k: int = 16
    n_random: int = 16
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    llm: LLMConfig | None = None
    score: bool = True
    heatmap_features: int = 64
    anchor: AnchorConfig | None = field(default_factory=AnchorConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("describe_split", "calibrate_split"):
            if getattr(self, name) not in SPLITS:
                raise BadInputError(None, f"{name} must be one of {', '.join(SPLITS)}, got {getattr(self, name)!r}")
        if not 0.0 < self.threshold_quantile < 1.0:
            raise BadInputError(None, f"threshold_quantile must lie in (0, 1), got {self.threshold_quantile}")
        if self.top_k < 1 or self.n_random < 0:
            raise BadInputError(None, "top_k must be ≥ 1 and n_random ≥ 0")


def _random_inactive(codes_NF: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n_features, n) row indices of images where each feature is 0 (−1 where there are not enough)."""
    out = np.full((codes_NF.shape[1], n), -1, np.int64)
    if n == 0:
        return out
    for f in range(codes_NF.shape[1]):
        pool = np.flatnonzero(codes_NF[:, f] <= 0)
        if len(pool):
            pick = rng.choice(pool, size=min(n, len(pool)), replace=False)
            out[f, : len(pick)] = pick
    return out


@dataclass(frozen=True)
class _Coded:
    """The store's images encoded once (``encoded``) with the image ids and the rows of the describe split
    (``d_rows``: statistics, descriptions, readout fit) and of the calibrate split (``c_rows``: thresholds, the
    readout's choices, description scores)."""

    encoded: ImageCodes
    ids: np.ndarray
    d_rows: np.ndarray
    c_rows: np.ndarray

    @property
    def codes(self) -> np.ndarray:
        return self.encoded.codes_NF


def _coded(ctx: SAEContext, cfg: InterpretConfig, encoded: ImageCodes) -> _Coded:
    d_rows, c_rows = split_rows(ctx.index, cfg.describe_split), split_rows(ctx.index, cfg.calibrate_split)
    if len(d_rows) == 0 or len(c_rows) == 0:
        raise BadInputError(ctx.store.path, "the describe or calibrate split has no images")
    return _Coded(encoded, ctx.index["image_id"].to_numpy(), d_rows, c_rows)


def _feature_table(
    ws: Workspace, ctx: SAEContext, studies: pd.DataFrame, coded: _Coded, thresholds: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Per feature on the describe split: statistics, its report threshold, the ROC AUC of every CheXpert label
    (uncertain → positive) and, on phantoms, of every rendered kind, and the confound check's verdict. Returns
    (table, the describe images' labels, the phantom truth or None)."""
    codes_d = coded.codes[coded.d_rows]
    stats = feature_stats(codes_d)
    stats.insert(5, "threshold", thresholds)
    labels = studies.drop_duplicates("image_id").set_index("image_id").reindex(coded.ids[coded.d_rows])
    present = [c for c in CHEXPERT_LABELS if c in labels.columns]
    labels = labels[present].reset_index(drop=True)
    y = binarise_label_table(labels, uncertain="positive")
    auc = auc_matrix(codes_d, y.to_numpy())
    truth = phantom_truth(ws, ctx.dataset, coded.ids[coded.d_rows])
    factors = None
    if truth is not None:
        kinds, factors = truth
        factors = factors.reindex(columns=present, fill_value=0.0)
        kind_auc = auc_matrix(codes_d, kinds.to_numpy())
    conf = confound_check(codes_d, y, auc=auc, factors=factors)
    table = stats.merge(conf, on="feature")
    for j, name in enumerate(present):
        table[f"auc.{name}"] = auc[:, j]
    if truth is not None:
        for j, kind in enumerate(kinds.columns):
            table[f"factor.{kind}"] = kind_auc[:, j]
    return table, labels, truth


def _with_top_images(table: pd.DataFrame, coded: _Coded, cfg: InterpretConfig) -> pd.DataFrame:
    """``table`` with each feature's top images (and activations), seeded random inactive images and, for patch
    SAEs, where the feature peaks on its top images."""
    codes_d, d_ids = coded.codes[coded.d_rows], coded.ids[coded.d_rows]
    top = top_images(codes_d, cfg.top_k)
    rnd = _random_inactive(codes_d, cfg.n_random, np.random.default_rng(cfg.seed))
    table["top_image_ids"] = [[str(d_ids[r]) for r in row if r >= 0] for row in top]
    table["top_activations"] = [[float(codes_d[r, f]) for r in row if r >= 0] for f, row in enumerate(top)]
    table["random_image_ids"] = [[str(d_ids[r]) for r in row if r >= 0] for row in rnd]
    if coded.encoded.peak_NF is not None:
        table = table.join(_feature_places(coded.encoded.peak_NF[coded.d_rows], top, coded.encoded.grid))
    return table


def _finding_readout(
    ctx: SAEContext,
    studies: pd.DataFrame,
    coded: _Coded,
    labels: pd.DataFrame,
    table: pd.DataFrame,
    cfg: InterpretConfig,
) -> tuple[Any, dict[str, Any] | None]:
    """The finding readout fitted on the describe split, its choices made on the calibrate split against nearest
    retrieval there (:func:`retrieval_baseline`); confounded features excluded. Returns (readout, baseline)."""
    d_rows, c_rows, ids = coded.d_rows, coded.c_rows, coded.ids
    baseline = None
    if cfg.readout.baseline == "nearest":
        baseline = retrieval_baseline(ctx, studies, d_rows, c_rows, READOUT_LABELS)
    readout = fit_readout(
        coded.codes[d_rows],
        label_targets(labels, READOUT_LABELS),
        coded.codes[c_rows],
        label_targets(_labels_of(studies, ids[c_rows]), READOUT_LABELS),
        READOUT_LABELS,
        cfg.readout,
        exclude=table.loc[table["verdict"] == "confounded", "feature"].astype(int).tolist(),
        baseline=baseline,
        val_groups=_patients_of(studies, ids[c_rows]),
    )
    return readout, baseline


def _describe(
    study_codes: np.ndarray,
    s_ids: np.ndarray,
    reports: list[str],
    index: Any,
    studies: pd.DataFrame,
    cfg: InterpretConfig,
    *,
    show_progress: bool,
    say: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(primary descriptions, offline descriptions): label-anchored first, the extractive description where it names
    nothing; with ``cfg.llm`` the LLM's descriptions are primary and the offline ones their fallback. ``say``
    receives a progress line before the LLM step."""
    extractive = describe_features(study_codes, index, cfg.describe)
    extractive["describer"] = "extractive"
    if cfg.anchor is not None:
        targets = label_targets(_labels_of(studies, s_ids), READOUT_LABELS)
        anchored = anchor_descriptions(study_codes, targets, READOUT_LABELS, index, CHEXPERT_LABELS, cfg.anchor)
        extractive = _merge_describers(anchored, extractive)
    if cfg.llm is None:
        return extractive, extractive
    say("interpret: LLM describer")
    feats_, tops, rands = contrast_reports(study_codes, reports, extractive, n_random=16, seed=cfg.seed)
    desc = describe_features_llm(
        feats_, tops, rands, cfg.llm, fallback=extractive.drop(columns=["describer"]), show_progress=show_progress
    )
    return desc, extractive


def _manifest_extra(
    ctx: SAEContext,
    table: pd.DataFrame,
    desc: pd.DataFrame,
    index: Any,
    readout: Any,
    baseline: dict[str, Any] | None,
    encoded: ImageCodes,
    phantom: bool,
) -> dict[str, Any]:
    """What the interpretation's manifest records beside its config (read by ``cxrlens interpret`` and the demo)."""
    verdicts = table["verdict"].value_counts().to_dict()
    return {
        "activations": ctx.activations,
        "stream": ctx.stream,
        "dataset": ctx.dataset,
        "backbone": ctx.backbone,
        "phantom": phantom,
        "verdicts": {str(k): int(v) for k, v in verdicts.items()},
        "sentence_clusters": int(index.n_clusters),
        "describers": {str(k): int(v) for k, v in desc["describer"].value_counts().items()},
        "tokens_per_image": ctx.tokens_per_image,
        "grid": list(encoded.grid) if encoded.grid else None,
        "readout": {
            "beta_choice": readout.beta_choice,
            "baseline": baseline,
            "kept": [str(x) for x in readout.table.loc[readout.table["kept"], "label"]],
            "dropped": {str(r.label): str(r.reason) for r in readout.table.itertuples() if not r.kept},
        },
    }


def _score_descriptions(
    ctx: SAEContext,
    studies: pd.DataFrame,
    coded: _Coded,
    desc: pd.DataFrame,
    extractive: pd.DataFrame | None,
    cfg: InterpretConfig,
    embed: Any,
    signature: Any,
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any]]:
    """Score the descriptions (and the extractive ones of an LLM run) on the calibrate split's studies
    (:func:`~cxrlens.interpret.scoring.score_descriptions`); returns the tables with the score columns and the
    summary of the primary descriptions' scores."""
    c_rows = coded.c_rows
    c_codes, c_first = by_study(coded.codes[c_rows], ctx.index["study_id"].to_numpy()[c_rows])
    c_reports = image_reports(studies, coded.ids[c_rows][c_first])
    cols = ["score_auc", "sim_top", "sim_random", "skip_reason"]
    out, summary = [], {}
    for table in (desc, extractive):
        if table is None:
            out.append(None)
            continue
        scored = score_descriptions(
            table, c_codes, c_reports, embed=embed, signature=signature, seed=cfg.seed, show_progress=False
        )
        out.append(table.merge(scored[["feature", *cols]], on="feature", how="left"))
        if table is desc:
            summary = summarise_scores(scored)
    return out[0], out[1], summary


def _write_tables(
    tmp: Path, table: pd.DataFrame, desc: pd.DataFrame, extractive: pd.DataFrame | None, thresholds: np.ndarray
) -> None:
    """``features.parquet``, ``descriptions.parquet`` (+ ``descriptions_extractive.parquet`` of an LLM run) and
    ``thresholds.safetensors`` into the build directory."""
    atomic_write_parquet(tmp / "features.parquet", table)
    atomic_write_parquet(tmp / "descriptions.parquet", desc)
    if extractive is not None:
        atomic_write_parquet(tmp / "descriptions_extractive.parquet", extractive)
    atomic_write_bytes(tmp / "thresholds.safetensors", save({"thresholds": thresholds.astype(np.float32)}))


def run_interpret(
    ws: Workspace,
    cfg: InterpretConfig,
    *,
    run: str | None = None,
    force: bool = False,
    show_progress: bool = True,
    embed: Any = None,
    signature: Any = None,
) -> StageResult:
    """Interpret ``saes/<cfg.sae>`` into ``interpret/<run>`` (default run name = the SAE run); skipped when current.

    ``embed`` / ``signature`` replace the MiniLM sentence encoder and the labeler's sentence signature (tests).
    """

    ctx = load_sae_context(ws, cfg.sae, cfg.activations)
    if not ctx.dataset:
        raise BadInputError(ctx.store.path, "the activation store records no dataset; cannot find reports")
    studies = read_studies(ws, ctx.dataset)
    out_dir = ws.interpret(run or cfg.sae)

    def build(tmp: Path) -> dict[str, Any]:
        with progress(disable=not show_progress) as bar:
            task = bar.add_task("interpret: encode", total=7)
            encoded = image_codes(ctx.sae, ctx.store, ctx.stream)
            coded = _coded(ctx, cfg, encoded)
            codes, d_rows, c_rows, ids = coded.codes, coded.d_rows, coded.c_rows, coded.ids
            thresholds = calibrate_thresholds(codes[c_rows], cfg.threshold_quantile)
            bar.advance(task)

            bar.update(task, description="interpret: label association")
            table, labels, truth = _feature_table(ws, ctx, studies, coded, thresholds)
            bar.advance(task)

            bar.update(task, description="interpret: top images")
            table = _with_top_images(table, coded, cfg)
            bar.advance(task)

            bar.update(task, description="interpret: finding readout")
            readout, baseline = _finding_readout(ctx, studies, coded, labels, table, cfg)

            bar.update(task, description="interpret: sentence index")
            study_codes, first = by_study(codes[d_rows], ctx.index["study_id"].to_numpy()[d_rows])
            s_ids = ids[d_rows][first]  # one representative image per study
            reports = image_reports(studies, s_ids)
            index = build_sentence_index(
                reports, cluster_threshold=cfg.describe.cluster_threshold, embed=embed, signature=signature
            )
            bar.advance(task)
            bar.update(task, description="interpret: describe")
            desc, extractive = _describe(
                study_codes,
                s_ids,
                reports,
                index,
                studies,
                cfg,
                show_progress=show_progress,
                say=lambda what: bar.update(task, description=what),
            )
            score_summary = None
            if cfg.score:
                bar.update(task, description="interpret: score descriptions")
                desc, extractive, score_summary = _score_descriptions(
                    ctx, studies, coded, desc, extractive if cfg.llm is not None else None, cfg, embed, signature
                )
                extractive = desc if cfg.llm is None else extractive
            for table_ in (desc, extractive):
                table_["top_image_ids"] = [[str(s_ids[r]) for r in rows] for rows in table_["top_rows"]]
            desc, extractive = desc.drop(columns=["top_rows"]), extractive.drop(columns=["top_rows"])
            bar.advance(task)

            bar.update(task, description="interpret: heatmaps")
            heatmap_info = feature_heatmaps_files(ws, ctx, table, desc, cfg, tmp)
            bar.advance(task)

            bar.update(task, description="interpret: write")
            _write_tables(tmp, table, desc, extractive if cfg.llm is not None else None, thresholds)
            words = finding_sentences(index, READOUT_LABELS, CHEXPERT_LABELS)
            for col in ("positive_sentence", "negative_sentence"):
                readout.table[col] = words[col].to_numpy()
            readout.save(tmp)
            (tmp / "figures").mkdir(exist_ok=True)
            overview_figure(table, desc, tmp / "figures" / "overview.png")
            bar.advance(task)

        described = int((desc["sentences"].map(len) > 0).sum())
        return {
            "rows": {"features": len(table), "described": described, "describe_images": len(d_rows)},
            "extra": _manifest_extra(ctx, table, desc, index, readout, baseline, encoded, truth is not None)
            | {"description_scores": score_summary, "heatmaps": heatmap_info},
        }

    upstream = {
        f"saes/{cfg.sae}": artefact_identity(ws.sae(cfg.sae)),
        f"activations/{ctx.activations}": artefact_identity(ctx.store.path),
        f"datasets/{ctx.dataset}": artefact_identity(ws.dataset(ctx.dataset)),
    }
    return run_stage(out_dir, stage="interpret", config=cfg, build=build, force=force, upstream=upstream)


def retrieval_baseline(
    ctx: SAEContext, studies: pd.DataFrame, train_rows: np.ndarray, query_rows: np.ndarray, labels: Sequence[str]
) -> dict[str, Any] | None:
    """Label-level micro precision (uncertain → positive) on ``query_rows`` of copying the labels of the most
    cosine-similar ``train_rows`` image of another patient, on an image-level stream of the SAE's store (``final/cls``
    when present, as the evaluation's nearest-neighbour baseline) — the baseline the readout's β is chosen against
    on val, with its recall.
    None when the store has no image-level stream, the studies no patient ids, or the copied labels state nothing."""

    image_level = [n for n in ctx.store.stream_names if ctx.store.info(n).tokens_per_image == 1]
    if not image_level or "patient_id" not in studies.columns:
        return None
    stream = "final/cls" if "final/cls" in image_level else image_level[0]
    ids = ctx.index["image_id"].to_numpy()
    best, _, _ = nearest_neighbours(
        ctx.store.get(stream, train_rows).numpy(),
        ctx.store.get(stream, query_rows).numpy(),
        _patients_of(studies, ids[train_rows]),
        _patients_of(studies, ids[query_rows]),
    )
    ok = best >= 0
    truth = label_targets(_labels_of(studies, ids[query_rows[ok]]), labels)
    copied = label_targets(_labels_of(studies, ids[train_rows[best[ok]]]), labels)
    stated = int(copied.sum())
    if not stated:  # retrieval states nothing: no precision to reach
        return None
    return {
        "stream": stream,
        "precision": float((copied & truth).sum() / stated),
        "recall": float((copied & truth).sum() / max(int(truth.sum()), 1)),
        "images": int(ok.sum()),
    }


def _patients_of(studies: pd.DataFrame, image_ids: Any) -> list[str]:
    """The patient id of each image (study id where the table has no patients)."""
    key = "patient_id" if "patient_id" in studies.columns else "study_id"
    return studies.drop_duplicates("image_id").set_index("image_id")[key].astype(str).reindex(list(image_ids)).tolist()


def _labels_of(studies: pd.DataFrame, image_ids: Any) -> pd.DataFrame:
    """The CheXpert label columns of ``image_ids`` (one row per id, in order)."""
    table = studies.drop_duplicates("image_id").set_index("image_id").reindex(list(image_ids))
    return table[[c for c in CHEXPERT_LABELS if c in table.columns]].reset_index(drop=True)


def _merge_describers(anchored: pd.DataFrame, extractive: pd.DataFrame) -> pd.DataFrame:
    """Per feature the label-anchored description when it names a finding, else the extractive one."""
    anchored = anchored.set_index("feature")
    out = extractive.set_index("feature").copy()
    out["findings"] = [[] for _ in range(len(out))]
    named = anchored.index[anchored["sentences"].map(len) > 0]
    cols = ["description", "sentences", "confidence", "log_odds", "support", "background", "p_value", "p_adjusted"]
    for col in [*cols, "top_rows"]:
        out[col] = out[col].astype(object)
    for f in named:
        for col in [*cols, "findings", "top_rows"]:
            out.at[f, col] = anchored.at[f, col]
        out.at[f, "describer"] = "label-anchored"
    return out.reset_index()


def _feature_places(peak_NF: np.ndarray, top: np.ndarray, grid: tuple[int, int] | None) -> pd.DataFrame:
    """Where each feature fires on its top images (patch streams): mean peak ``peak_y``/``peak_x`` in [0, 1]
    (image rows/columns), the image ``side`` where most peaks fall (``image-left`` / ``image-right`` / ``both``,
    two thirds needed) and the vertical ``third`` (upper / middle / lower)."""
    h, w = grid or (1, 1)
    ys, xs, sides, thirds = [], [], [], []
    for f, rows in enumerate(top):
        rows = rows[rows >= 0]
        if len(rows) == 0:
            ys.append(np.nan), xs.append(np.nan), sides.append(""), thirds.append("")
            continue
        y, x = np.divmod(peak_NF[rows, f].astype(int), w)
        yf, xf = (y + 0.5) / h, (x + 0.5) / w
        ys.append(float(yf.mean())), xs.append(float(xf.mean()))
        left = float((xf < 0.5).mean())
        sides.append("image-left" if left >= 2 / 3 else "image-right" if left <= 1 / 3 else "both")
        thirds.append(("upper", "middle", "lower")[min(int(np.median(yf) * 3), 2)])
    return pd.DataFrame({"peak_y": ys, "peak_x": xs, "side": sides, "third": thirds})


def read_interpretation(ws: Workspace, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, descriptions) tables of ``interpret/<run>``."""
    d = ws.interpret(run)
    for name in ("features.parquet", "descriptions.parquet"):
        if not (d / name).exists():
            raise BadInputError(d / name, "interpretation run not found or incomplete; run `cxrlens interpret`")
    return pd.read_parquet(d / "features.parquet"), pd.read_parquet(d / "descriptions.parquet")
