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

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.numpy import save

from cxrlens.activations import ActivationStore
from cxrlens.backbones.registry import load_backbone
from cxrlens.console import progress
from cxrlens.data.images import load_image
from cxrlens.data.phantom.spec import KIND_LABEL, KINDS
from cxrlens.data.reports import plain_report_text
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import image_file, read_studies
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_bytes, atomic_write_parquet
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
from cxrlens.interpret.heatmaps import feature_heatmaps, heatmap_method, model_view, upsample
from cxrlens.interpret.llm import LLMConfig, contrast_reports, describe_features_llm
from cxrlens.interpret.readout import READOUT_LABELS, ReadoutConfig, finding_sentences, fit_readout, label_targets
from cxrlens.interpret.scoring import score_descriptions, summarise_scores
from cxrlens.retrieval import nearest_neighbours
from cxrlens.sae.io import CONFIG_FILE, load_sae
from cxrlens.workspace import StageResult, Workspace, artefact_identity, run_stage

__all__ = [
    "ImageCodes",
    "InterpretConfig",
    "SAEContext",
    "by_study",
    "encode_codes",
    "image_codes",
    "image_reports",
    "interpret_run",
    "load_sae_context",
    "phantom_truth",
    "read_interpretation",
    "token_code_maps",
]

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


@dataclass
class SAEContext:
    """An SAE with the store and stream it was trained on, and the dataset behind the store.

    Attributes:
        sae: the model (eval mode, CPU); store: :class:`~cxrlens.activations.ActivationStore`;
        stream: ``"<layer>/<token>"`` (one token per image — CLS, mean — or the patch tokens, see
        :func:`image_codes`); dataset: dataset name; backbone: backbone spec of the store;
        index: (n_images,) table ``image_row, study_id, image_id, split`` of the store's images.
    """

    sae: Any
    sae_run: str
    store: Any
    activations: str
    stream: str
    dataset: str
    backbone: str
    index: pd.DataFrame

    @property
    def tokens_per_image(self) -> int:
        return int(self.store.info(self.stream).tokens_per_image)

    @property
    def layer(self) -> str:
        return self.stream.split("/")[0]

    @property
    def token(self) -> str:
        return self.stream.split("/")[1]


def load_sae_context(ws: Workspace, sae_run: str, activations: str = "") -> SAEContext:
    """Open ``saes/<sae_run>`` and the activation store it was trained on (or ``activations``, another store with
    the same stream, e.g. the same backbone on another dataset); one clear error for each gap."""

    sae_dir = ws.sae(sae_run)
    if not (sae_dir / CONFIG_FILE).exists():
        raise BadInputError(sae_dir, "SAE run not found; train one with `cxrlens sae train`")
    header = json.loads((sae_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    trained_on, stream = header.get("activations"), header.get("stream")
    activations = activations or trained_on
    if not activations or not stream:
        raise BadInputError(sae_dir / CONFIG_FILE, "no activation store recorded (train with `cxrlens sae train`)")
    store = ActivationStore(ws.activations(activations))
    if stream not in store.stream_names:
        raise BadInputError(store.path, f"stream {stream!r} of SAE {sae_run!r} is not in the store")
    sae = load_sae(sae_dir)
    if store.info(stream).dim != sae.cfg.d_in:
        raise BadInputError(
            store.path, f"stream {stream!r} is {store.info(stream).dim}-d; SAE {sae_run!r} reads another"
        )
    meta = {**store.manifest.extra, **store.manifest.config}  # array stores keep dataset/backbone in extra
    missing = [c for c in ("study_id", "image_id", "split") if c not in store.index.columns]
    if missing:
        raise BadInputError(store.path, f"the store's index lacks {', '.join(missing)}")
    index = store.index[["study_id", "image_id", "split"]].reset_index(drop=True)
    index.insert(0, "image_row", np.arange(len(index)))
    dataset, backbone = str(meta.get("dataset") or ""), str(meta.get("backbone") or "")
    return SAEContext(sae, sae_run, store, activations, stream, dataset, backbone, index)


@torch.no_grad()
def encode_codes(sae: Any, acts_ND: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """(N, n_latents) float32 SAE codes of activations ``acts_ND: (N, D)``."""
    out = [sae.encode(acts_ND[i : i + batch_size].float()).numpy() for i in range(0, len(acts_ND), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, sae.cfg.n_latents), np.float32)


@dataclass(frozen=True)
class ImageCodes:
    """Image-level SAE codes of a store's images.

    Attributes:
        codes_NF: (N, F) float32 — the SAE code of the image's token for one-token streams (CLS, mean); for patch
            streams the **maximum over the image's patch tokens** (a feature is as active as its strongest patch).
        peak_NF: (N, F) int16 token index (row-major on ``grid``) of that maximum; None for one-token streams.
        grid: (h, w) patch grid of a patch stream, else None.
    """

    codes_NF: np.ndarray
    peak_NF: np.ndarray | None
    grid: tuple[int, int] | None


@torch.no_grad()
def image_codes(
    sae: Any, store: Any, stream: str, image_rows: np.ndarray | None = None, batch_images: int = 256
) -> ImageCodes:
    """SAE codes per image of ``stream`` for ``image_rows`` (default: every image), see :class:`ImageCodes`."""
    n_img = len(store)
    rows = np.arange(n_img) if image_rows is None else np.asarray(image_rows, np.int64)
    T = int(store.info(stream).tokens_per_image)
    if T == 1:
        acts = store.read(stream) if image_rows is None else store.get(stream, rows)
        return ImageCodes(encode_codes(sae, acts), None, None)
    codes = np.zeros((len(rows), sae.cfg.n_latents), np.float32)
    peak = np.zeros((len(rows), sae.cfg.n_latents), np.int16)
    for s in range(0, len(rows), batch_images):
        img = rows[s : s + batch_images]
        tok = (img[:, None] * T + np.arange(T)[None, :]).reshape(-1)
        c = torch.from_numpy(encode_codes(sae, store.get(stream, tok))).reshape(len(img), T, -1)
        v, a = c.max(1)
        codes[s : s + len(img)], peak[s : s + len(img)] = v.numpy(), a.numpy().astype(np.int16)
    grid = tuple(int(g) for g in store.grid) if store.grid is not None else (T, 1)
    return ImageCodes(codes, peak, grid)  # type: ignore[arg-type]


@torch.no_grad()
def token_code_maps(sae: Any, store: Any, stream: str, image_row: int) -> np.ndarray:
    """(T, F) SAE codes of every token of one image of a patch stream (row-major on the store's grid)."""
    T = int(store.info(stream).tokens_per_image)
    return encode_codes(sae, store.get(stream, np.arange(image_row * T, (image_row + 1) * T)))


def image_reports(studies: pd.DataFrame, image_ids: Any) -> list[str]:
    """The report text (findings, then impression) of each image id, in order ("" where none)."""

    table = studies.drop_duplicates("image_id").set_index("image_id")
    parts = [table[c].reindex(list(image_ids)).tolist() for c in ("findings", "impression")]
    return [plain_report_text(f, i) for f, i in zip(*parts, strict=True)]


def phantom_truth(ws: Workspace, dataset: str, image_ids: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """On a phantom dataset: (kinds, labels) rendered ground truth per image id, else None.

    ``kinds``: (n, n_kinds) {0, 1} per finding kind (``<kind>.present``); ``labels``: (n, 13) {0, 1} per CheXpert
    label (a label is present when any kind mapping to it was drawn; "No Finding" is left out).
    """

    path = ws.dataset(dataset) / "factors.parquet"
    if not path.exists():
        return None
    factors = pd.read_parquet(path).drop_duplicates("image_id").set_index("image_id").reindex(list(image_ids))
    kinds = pd.DataFrame(
        {k: factors[f"{k}.present"].fillna(0).to_numpy(dtype=float) > 0 for k in KINDS if f"{k}.present" in factors},
    ).astype(float)
    labels = pd.DataFrame(
        {
            lab: kinds[[k for k in kinds.columns if KIND_LABEL[k] == lab]].max(axis=1).to_numpy()
            for lab in CHEXPERT_LABELS[1:]
            if any(KIND_LABEL[k] == lab for k in kinds.columns)
        }
    )
    return kinds, labels


def _rows(index: pd.DataFrame, split: str) -> np.ndarray:
    rows = np.arange(len(index)) if split == "all" else np.flatnonzero(index["split"].astype(str).to_numpy() == split)
    return rows


def by_study(codes_NF: np.ndarray, study_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Study-level codes: (n_studies, F) maximum over each study's images, and (n_studies,) the row of each study's
    first image. Images of one study share one report, so reports are counted once per study, not per image."""
    uniq, first, inv = np.unique(np.asarray(study_ids).astype(str), return_index=True, return_inverse=True)
    out = np.zeros((len(uniq), codes_NF.shape[1]), np.float32)
    np.maximum.at(out, inv, np.asarray(codes_NF, np.float32))
    order = np.argsort(first, kind="stable")  # keep the store's order of first appearance
    return out[order], first[order]


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


def interpret_run(
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
            codes = encoded.codes_NF
            bar.advance(task)

            d_rows, c_rows = _rows(ctx.index, cfg.describe_split), _rows(ctx.index, cfg.calibrate_split)
            if len(d_rows) == 0 or len(c_rows) == 0:
                raise BadInputError(ctx.store.path, "the describe or calibrate split has no images")
            ids = ctx.index["image_id"].to_numpy()
            codes_d = codes[d_rows]
            thresholds = calibrate_thresholds(codes[c_rows], cfg.threshold_quantile)
            stats = feature_stats(codes_d)
            stats.insert(5, "threshold", thresholds)

            bar.update(task, description="interpret: label association")
            labels = studies.drop_duplicates("image_id").set_index("image_id").reindex(ids[d_rows])
            present = [c for c in CHEXPERT_LABELS if c in labels.columns]
            y = binarise_label_table(labels[present].reset_index(drop=True), uncertain="positive")
            auc = auc_matrix(codes_d, y.to_numpy())
            truth = phantom_truth(ws, ctx.dataset, ids[d_rows])
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
            bar.advance(task)

            bar.update(task, description="interpret: top images")
            top = top_images(codes_d, cfg.top_k)
            rnd = _random_inactive(codes_d, cfg.n_random, np.random.default_rng(cfg.seed))
            d_ids = ids[d_rows]
            table["top_image_ids"] = [[str(d_ids[r]) for r in row if r >= 0] for row in top]
            table["top_activations"] = [[float(codes_d[r, f]) for r in row if r >= 0] for f, row in enumerate(top)]
            table["random_image_ids"] = [[str(d_ids[r]) for r in row if r >= 0] for row in rnd]
            if encoded.peak_NF is not None:
                table = table.join(_feature_places(encoded.peak_NF[d_rows], top, encoded.grid))
            bar.advance(task)

            bar.update(task, description="interpret: finding readout")
            baseline = None
            if cfg.readout.baseline == "nearest":
                baseline = retrieval_baseline(ctx, studies, d_rows, c_rows, READOUT_LABELS)
            readout = fit_readout(
                codes_d,
                label_targets(labels[present].reset_index(drop=True), READOUT_LABELS),
                codes[c_rows],
                label_targets(_labels_of(studies, ids[c_rows]), READOUT_LABELS),
                READOUT_LABELS,
                cfg.readout,
                exclude=table.loc[table["verdict"] == "confounded", "feature"].astype(int).tolist(),
                baseline=baseline,
                val_groups=_patients_of(studies, ids[c_rows]),
            )

            bar.update(task, description="interpret: sentence index")
            study_codes, first = by_study(codes_d, ctx.index["study_id"].to_numpy()[d_rows])
            s_ids = d_ids[first]  # one representative image per study
            reports = image_reports(studies, s_ids)
            index = build_sentence_index(
                reports, cluster_threshold=cfg.describe.cluster_threshold, embed=embed, signature=signature
            )
            bar.advance(task)
            bar.update(task, description="interpret: describe")
            extractive = describe_features(study_codes, index, cfg.describe)
            extractive["describer"] = "extractive"
            if cfg.anchor is not None:  # label-anchored first; the extractive description where it names nothing
                targets = label_targets(_labels_of(studies, s_ids), READOUT_LABELS)
                anchored = anchor_descriptions(study_codes, targets, READOUT_LABELS, index, CHEXPERT_LABELS, cfg.anchor)
                extractive = _merge_describers(anchored, extractive)
            desc = extractive
            if cfg.llm is not None:
                bar.update(task, description="interpret: LLM describer")
                feats_, tops, rands = contrast_reports(study_codes, reports, extractive, n_random=16, seed=cfg.seed)
                desc = describe_features_llm(
                    feats_,
                    tops,
                    rands,
                    cfg.llm,
                    fallback=extractive.drop(columns=["describer"]),
                    show_progress=show_progress,
                )
            score_summary = None
            if cfg.score:
                bar.update(task, description="interpret: score descriptions")
                c_codes, c_first = by_study(codes[c_rows], ctx.index["study_id"].to_numpy()[c_rows])
                c_reports = image_reports(studies, ids[c_rows][c_first])
                tables = {"": desc} if cfg.llm is None else {"": desc, "_extractive": extractive}
                for suffix, table_ in tables.items():
                    scored = score_descriptions(
                        table_,
                        c_codes,
                        c_reports,
                        embed=embed,
                        signature=signature,
                        seed=cfg.seed,
                        show_progress=False,
                    )
                    cols = ["score_auc", "sim_top", "sim_random", "skip_reason"]
                    merged = table_.merge(scored[["feature", *cols]], on="feature", how="left")
                    tables[suffix] = merged
                    if suffix == "":
                        score_summary = summarise_scores(scored)
                desc = tables[""]
                extractive = tables.get("_extractive", extractive)
            for table_ in (desc, extractive):
                table_["top_image_ids"] = [[str(s_ids[r]) for r in rows] for rows in table_["top_rows"]]
            desc, extractive = desc.drop(columns=["top_rows"]), extractive.drop(columns=["top_rows"])
            bar.advance(task)

            bar.update(task, description="interpret: heatmaps")
            heatmap_info = _feature_heatmaps(ws, ctx, table, desc, cfg, tmp)
            bar.advance(task)

            bar.update(task, description="interpret: write")
            atomic_write_parquet(tmp / "features.parquet", table)
            atomic_write_parquet(tmp / "descriptions.parquet", desc)
            if cfg.llm is not None:
                atomic_write_parquet(tmp / "descriptions_extractive.parquet", extractive)

            atomic_write_bytes(tmp / "thresholds.safetensors", save({"thresholds": thresholds.astype(np.float32)}))
            words = finding_sentences(index, READOUT_LABELS, CHEXPERT_LABELS)
            for col in ("positive_sentence", "negative_sentence"):
                readout.table[col] = words[col].to_numpy()
            readout.save(tmp)
            (tmp / "figures").mkdir(exist_ok=True)
            _overview_figure(table, desc, tmp / "figures" / "overview.png")
            bar.advance(task)

        described = int((desc["sentences"].map(len) > 0).sum())
        verdicts = table["verdict"].value_counts().to_dict()
        return {
            "rows": {"features": len(table), "described": described, "describe_images": len(d_rows)},
            "extra": {
                "activations": ctx.activations,
                "stream": ctx.stream,
                "dataset": ctx.dataset,
                "backbone": ctx.backbone,
                "phantom": truth is not None,
                "verdicts": {str(k): int(v) for k, v in verdicts.items()},
                "sentence_clusters": int(index.n_clusters),
                "describers": {str(k): int(v) for k, v in desc["describer"].value_counts().items()},
                "description_scores": score_summary,
                "heatmaps": heatmap_info,
                "tokens_per_image": ctx.tokens_per_image,
                "grid": list(encoded.grid) if encoded.grid else None,
                "readout": {
                    "beta_choice": readout.beta_choice,
                    "baseline": baseline,
                    "kept": [str(x) for x in readout.table.loc[readout.table["kept"], "label"]],
                    "dropped": {str(r.label): str(r.reason) for r in readout.table.itertuples() if not r.kept},
                },
            },
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


def _feature_heatmaps(
    ws: Workspace, ctx: SAEContext, table: pd.DataFrame, desc: pd.DataFrame, cfg: InterpretConfig, tmp: Path
) -> dict[str, Any]:
    """Heatmaps of the top images of up to ``cfg.heatmap_features`` described features → ``heatmaps.safetensors``
    (key ``f<feature>``: (k, h, w) float16 on the patch grid, rows in ``top_image_ids`` order) and a figure."""
    if cfg.heatmap_features <= 0:
        return {"method": "none", "reason": "heatmap_features = 0"}
    if not ctx.backbone:
        return {"method": "none", "reason": "the activation store records no backbone"}

    described = set(desc.loc[desc["sentences"].map(len) > 0, "feature"].astype(int))
    chosen = table[table["feature"].isin(described)].sort_values("n_active", ascending=False)
    chosen = chosen.head(cfg.heatmap_features)
    backbone = load_backbone(ctx.backbone, workspace=ws)
    method = heatmap_method(backbone, ctx.token)
    studies = read_studies(ws, ctx.dataset).drop_duplicates("image_id").set_index("image_id")
    ds_dir = ws.dataset(ctx.dataset)
    cache: dict[str, Any] = {}

    def image(image_id: str) -> torch.Tensor:
        if image_id not in cache:
            path = image_file(ds_dir, studies.loc[image_id, "image_path"])
            cache[image_id] = torch.from_numpy(np.asarray(load_image(path)))
        return cache[image_id]

    maps: dict[str, np.ndarray] = {}
    shown: list[tuple[int, list[str], np.ndarray]] = []
    for row in chosen.itertuples():
        ids = [str(i) for i in row.top_image_ids]
        if not ids:
            continue
        res = feature_heatmaps(
            backbone,
            ctx.sae,
            layer=ctx.layer,
            token=ctx.token,
            images_BHW=_stack([image(i) for i in ids]),
            features=[int(row.feature)] * len(ids),
        )
        maps[f"f{int(row.feature)}"] = res.maps.numpy().astype(np.float16)
        shown.append((int(row.feature), ids, res.maps.numpy()))
    if maps:
        atomic_write_bytes(tmp / "heatmaps.safetensors", save(maps, metadata={"method": method}))
        texts = dict(zip(desc["feature"].astype(int), desc["description"].astype(str), strict=True))
        _heatmap_figure(backbone, shown[:6], texts, image, tmp / "figures" / "features.png")
    return {"method": method, "features": len(maps), "images_per_feature": cfg.top_k}


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """(B, H, W) float32 from grayscale images; any of another size is resized (bilinear) to the first one's."""

    size = tuple(images[0].shape)
    out = [
        x if tuple(x.shape) == size else F.interpolate(x[None, None].float(), size=size, mode="bilinear")[0, 0]
        for x in images
    ]
    return torch.stack(out).float().clamp(0, 1)


def _heatmap_figure(backbone: Any, shown: list, texts: dict[int, str], image: Any, path: Path, cols: int = 6) -> None:
    """One row per feature: its top images with the heatmap overlaid, the description as the row title."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.9 * cols, 2.1 * len(shown)), squeeze=False)
    for r, (feature, ids, maps) in enumerate(shown):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(ids):
                continue
            view = model_view(backbone, image(ids[c])[None].float())[0]
            heat = upsample(torch.from_numpy(maps[c : c + 1]), tuple(view.shape))[0].numpy()
            ax.imshow(view.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.imshow(heat, cmap="inferno", alpha=0.45)
        axes[r, 0].set_title(f"f{feature}: {texts.get(feature, '')[:70]}", loc="left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _overview_figure(table: pd.DataFrame, desc: pd.DataFrame, path: Path) -> None:
    """Two panels: activation frequency of live features (log) and best-label AUC by confound verdict."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    live = table[table["n_active"] > 0]
    freq = live["frequency"].to_numpy()
    if len(freq):
        axes[0].hist(np.log10(freq), bins=40, color="#4477aa")
    axes[0].set_xlabel("log10 activation frequency (describe split)")
    axes[0].set_ylabel("features")
    axes[0].set_title(f"{len(live)} live / {len(table)} features")
    for verdict, colour in (("associated", "#228833"), ("confounded", "#ee6677"), ("undetermined", "#bbbbbb")):
        sel = table[table["verdict"] == verdict]["auc"].dropna().to_numpy()
        if len(sel):
            axes[1].hist(sel, bins=30, range=(0.5, 1.0), alpha=0.7, label=f"{verdict} ({len(sel)})", color=colour)
    described = int((desc["sentences"].map(len) > 0).sum())
    axes[1].set_xlabel("ROC AUC of the best-associated CheXpert label")
    axes[1].set_title(f"label association ({described} features described)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def read_interpretation(ws: Workspace, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, descriptions) tables of ``interpret/<run>``."""
    d = ws.interpret(run)
    for name in ("features.parquet", "descriptions.parquet"):
        if not (d / name).exists():
            raise BadInputError(d / name, "interpretation run not found or incomplete; run `cxrlens interpret`")
    return pd.read_parquet(d / "features.parquet"), pd.read_parquet(d / "descriptions.parquet")
