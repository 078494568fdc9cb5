"""The evaluation stage: ``reports/<run>/reports.jsonl`` → ``reports/<run>/evaluation/`` (cxrlens vs baselines).

Inputs: the report run (``reports.jsonl`` lines ``{"image_id", "study_id", "split", "generated_text",
"reference_text", "report"}`` and its ``manifest.json`` whose ``config`` names ``dataset``, ``activations``,
``stream`` and ``split``), the dataset's ``studies.parquet`` (training reports for the baselines, patient ids) and,
on phantoms, ``factors.parquet``; the activation store for the nearest-neighbour baseline.

Every system — ``cxrlens`` (the run's ``generated_text``) and each baseline of :mod:`cxrlens.evaluate.baselines` —
is scored on the **same** images against the **same** ``reference_text``:

* NLG (:func:`cxrlens.evaluate.nlg.nlg_scores`): BLEU-1..4, ROUGE-L, METEOR (or ``None`` + ``meteor_status``),
  CIDEr-D;
* clinical (:func:`cxrlens.evaluate.clinical.clinical_scores`): every variant (5 / 14 labels × uncertain→positive /
  negative × micro / macro-ref / macro-all × P / R / F1), generated and reference texts labelled by the same
  labeler; the macro variant quoted in summaries is :data:`MACRO_QUOTED` (macro over all 14 labels,
  zero_division=0);
* empty reports: per system, how many generated texts are empty (``empty_reports``);
* phantom grounding (:func:`cxrlens.evaluate.grounding.grounding_scores`) when the dataset has ``factors.parquet``,
  for uncertain→positive and →negative (hallucination per report over all reports *and* over non-empty reports).
  The reference text is scored the same way as row :data:`AGREEMENT` (``reference-render agreement``): the
  phantom was drawn from the labeler's reading of that very text, so the row measures how far the labeler and
  the renderer agree with each other (tags the renderer could not draw, mention-level vs report-level reading),
  **not** a ceiling a perfect report could reach;
* **gaps**: cxrlens minus each baseline on :data:`GAP_METRICS` (headline clinical F1 micro-5, the quoted macro-14,
  and on phantoms grounding F1 micro-13 and hallucination per finding), each with a paired **cluster** bootstrap
  95 % interval (:mod:`cxrlens.evaluate.bootstrap`: ``bootstrap_unit`` studies — or patients — resampled with
  replacement, all images of a drawn unit kept; ``bootstrap`` resamples seeded by ``seed``; percentile interval),
  and each system's own value with its interval (``intervals``).

**Leak guard**: the report run's ``interpret`` run used its dataset's ``describe_split`` (descriptions written from
those reports) and ``calibrate_split`` (report thresholds). Evaluating a report run on either split of the same
dataset is refused (:class:`LeakyEvaluationError`, one line naming the run, the split and ``--allow-leaky``) unless
``allow_leaky`` is set; the outputs then carry ``leaky: true`` and which split was used for what (``leak``).

Bad lines of ``reports.jsonl`` (not JSON, missing/non-string ``image_id`` / ``generated_text`` /
``reference_text``, empty reference, duplicate ``image_id``, image not in the dataset) are skipped, each printed as
one warning line (the first 10), counted by reason in ``metrics.json`` and the manifest. A missing activation store
or stream skips the nearest baseline with a warning (recorded under ``baselines.nearest.skipped``).

Files written (``run_stage``: atomic, reused while the job hash — config + SHA-256 of ``reports.jsonl`` and of the
dataset's and store's manifests — is unchanged):

* ``metrics.json`` — ``systems.<name>.{nlg, clinical, grounding, empty_reports}``, ``baselines`` (definition +
  details), ``bootstrap`` (unit, number of units and images, resamples), ``gaps`` (headline), ``gap_table`` (every
  gap metric × baseline), ``intervals`` (each system's value with its interval), ``leaky``, ``leak``,
  ``leak_check``, ``meteor_status``, ``n_reports``, ``skipped_lines``;
* ``metrics.parquet`` — long table ``system, metric, variant, value, leaky``;
* ``per_report.parquet`` — one row per (system, image): texts, clinical TP/FP/FN, labels claimed, grounding lists,
  the training study a baseline copied (and, for nearest, the neighbour image and its cosine similarity), ``leaky``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlens.activations import ActivationStore
from cxrlens.console import progress, warn_line
from cxrlens.data.labeler import label_reports, report_mentions
from cxrlens.data.schema import CHEXPERT_LABELS, binarise_labels
from cxrlens.errors import BadInputError
from cxrlens.evaluate.baselines import (
    BASELINES,
    most_common_report,
    random_reports,
    report_plain_text,
)
from cxrlens.evaluate.bootstrap import BootstrapResult, cluster_bootstrap, units_phrase
from cxrlens.evaluate.clinical import FIVE_FINDINGS, clinical_scores, ratio, variant_name
from cxrlens.evaluate.grounding import excluded_labels, grounding_scores
from cxrlens.evaluate.nlg import nlg_scores
from cxrlens.files import atomic_write_json, atomic_write_parquet, file_sha256
from cxrlens.retrieval import nearest_neighbours
from cxrlens.workspace import StageResult, Workspace, read_manifest, run_stage

__all__ = [
    "AGREEMENT",
    "BOOTSTRAP_UNITS",
    "GAP_METRICS",
    "HEADLINE",
    "MACRO_QUOTED",
    "EvaluateConfig",
    "LeakCheck",
    "LeakyEvaluationError",
    "evaluate_reports",
    "gap_table",
    "headline_table",
    "leak_check",
    "read_reports_jsonl",
]

HEADLINE = variant_name("f1", "micro", "5", "positive")
"""The headline clinical variant (as named by ``clinical_scores``): F1, micro over the 5 competition labels,
uncertain → positive, not mentioned → negative."""
MACRO_QUOTED = variant_name("f1", "macro-all", "14", "positive")
"""The macro variant quoted in summaries: F1 macro over all 14 labels, zero_division=0 (= scikit-learn's
``f1_score(average="macro", zero_division=0)``): the same fixed 14 labels for every system and every resample."""
AGREEMENT = "reference-render agreement"
"""Row of the reference text scored against the phantom truth drawn from the labeler's reading of it."""
BOOTSTRAP_UNITS = ("study", "patient")
GAP_METRICS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("clinical", f"clinical {HEADLINE}", "micro_f1", False, "clinical F1 micro-5 (u=pos)"),
    (
        "clinical",
        f"clinical {MACRO_QUOTED}",
        "macro_f1",
        False,
        "clinical F1 macro-14 over all labels, zero_division=0 (u=pos)",
    ),
    (
        "grounding",
        "grounding f1 micro · 13 drawable labels · uncertain=positive",
        "micro_f1",
        False,
        "grounding F1 micro-13 (u=pos)",
    ),
    (
        "grounding",
        "hallucination rate per finding · uncertain=positive",
        "fp_share",
        True,
        "hallucination / finding (u=pos)",
    ),
)
"""(family, metric name, statistic, lower is better, short label as in :func:`headline_table`) of every gap with a
bootstrap interval; grounding ones only on phantom datasets."""
EVALUATION_DIR = "evaluation"
_MAX_WARNINGS = 10
_DEFINITIONS = {
    "cxrlens": "the report run's generated_text",
    "constant": "the most common training-split report text (per study; lower-cased, white space collapsed); "
    "its most frequent spelling, emitted for every image",
    "random": "a training-split report drawn uniformly per image (generator seeded by seed and sha256(image_id))",
    "nearest": "the report of the training image most cosine-similar in the backbone stream, other patients only",
}


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """Config of ``cxrlens evaluate reports``.

    Attributes:
        reports: the report run under ``reports/``.
        baselines: any of ``constant``, ``random``, ``nearest`` (evaluated in the same run).
        seed: seed of the random baseline and of the bootstrap.
        meteor: compute METEOR (Java) — off only to save time; the status then says ``not requested``.
        bootstrap: paired bootstrap resamples for the intervals (0 = no interval).
        bootstrap_unit: what the bootstrap resamples — ``study`` (images of a study, which share one reference
            report, kept together) or ``patient`` (all studies of a patient kept together).
        allow_leaky: evaluate even a split that the interpretation used (describe or calibrate split); the outputs
            are then marked ``leaky``. Off: such a run is refused.
    """

    reports: str
    baselines: tuple[str, ...] = BASELINES
    seed: int = 0
    meteor: bool = True
    bootstrap: int = 1000
    bootstrap_unit: str = "study"
    allow_leaky: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise BadInputError(None, f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
        if len(set(self.baselines)) != len(self.baselines):
            raise BadInputError(None, f"baseline listed twice: {', '.join(self.baselines)}")
        if self.bootstrap < 0:
            raise BadInputError(None, f"bootstrap must be ≥ 0, got {self.bootstrap}")
        if self.bootstrap_unit not in BOOTSTRAP_UNITS:
            raise BadInputError(
                None, f"bootstrap_unit must be one of {', '.join(BOOTSTRAP_UNITS)}, got {self.bootstrap_unit!r}"
            )


class LeakyEvaluationError(BadInputError):
    """Refusal to score a split that the interpretation behind the report run used (see the module docstring)."""


_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class LeakCheck:
    """What :func:`leak_check` found.

    Attributes:
        leaky: the evaluated split(s) include a split the interpretation used.
        splits: those splits; uses: split → what the interpretation used it for.
        interpretation: the interpretation run named by the report run ("" = none).
        checked: one sentence saying what was compared (or why nothing could be).
    """

    leaky: bool
    splits: tuple[str, ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    interpretation: str = ""
    checked: str = ""

    def why(self) -> str:
        """``"val for report-threshold calibration (calibrate_split)"``-style summary of the overlap."""
        return "; ".join(f"{s} for {u}" for s, u in self.uses)


def _expand(split: str) -> set[str]:
    return set(_SPLITS) if split == "all" else {split}


def leak_check(ws: Workspace, run_cfg: dict[str, Any]) -> LeakCheck:
    """Compare the splits a report run covers with the splits its interpretation used (describe / calibrate).

    ``run_cfg`` is the report run's manifest config (``interpret``, ``dataset``, ``split``). No interpretation named,
    or its manifest unreadable → not leaky, with ``checked`` saying why nothing was compared. An interpretation of
    another dataset never leaks into this one.
    """
    interp = run_cfg.get("interpret")
    if not isinstance(interp, str) or not interp:
        return LeakCheck(False, checked="not checked: the report run names no interpretation")
    manifest = read_manifest(ws.interpret(interp))
    if manifest is None:
        return LeakCheck(
            False, interpretation=interp, checked=f"not checked: interpretation {interp!r} has no readable manifest"
        )
    icfg, extra = manifest.config, manifest.extra
    i_dataset = str(extra.get("dataset") or "")
    r_dataset = str(run_cfg.get("dataset") or "")
    r_split = str(run_cfg.get("split") or "all")
    if i_dataset and r_dataset and i_dataset != r_dataset:
        checked = f"interpretation {interp!r} is on dataset {i_dataset!r}, the reports on {r_dataset!r}: no overlap"
        return LeakCheck(False, interpretation=interp, checked=checked)
    purposes = (
        (str(icfg.get("describe_split", "train")), "feature descriptions and statistics (describe_split)"),
        (str(icfg.get("calibrate_split", "val")), "report-threshold calibration (calibrate_split)"),
    )
    used: dict[str, list[str]] = {}
    for split, purpose in purposes:
        for s in sorted(_expand(split)):
            used.setdefault(s, []).append(purpose)
    overlap = sorted(_expand(r_split) & set(used))
    desc = ", ".join(f"{s} for {' and '.join(u)}" for s, u in sorted(used.items()))
    checked = f"report split {r_split!r} vs interpretation {interp!r}, which used {desc}"
    uses = tuple((s, " and ".join(used[s])) for s in overlap)
    return LeakCheck(bool(overlap), tuple(overlap), uses, interp, checked)


@dataclasses.dataclass(frozen=True)
class _EvaluateJob:
    """What the artefact depends on: the config plus the identity of every input (its hash is the stage's)."""

    config: EvaluateConfig
    reports_sha256: str
    dataset_manifest_sha256: str
    activations_manifest_sha256: str
    format: int = 2


# ------------------------------------------------------------------------------------------------------- inputs
_REQUIRED = ("image_id", "generated_text", "reference_text")


def read_reports_jsonl(path: str | Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """Valid lines of a ``reports.jsonl`` (columns image_id, study_id, split, generated_text, reference_text) and
    the count of skipped lines by reason; each skipped line is printed as one warning (the first 10)."""
    path = Path(path)
    rows, skipped, shown = [], {}, 0
    seen: set[str] = set()

    def skip(lineno: int, reason: str) -> None:
        nonlocal shown
        skipped[reason] = skipped.get(reason, 0) + 1
        if shown < _MAX_WARNINGS:
            warn_line(f"{path}:{lineno}: skipped ({reason})")
        shown += 1

    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                skip(lineno, "not valid JSON")
                continue
            if not isinstance(rec, dict):
                skip(lineno, "not a JSON object")
                continue
            bad = [k for k in _REQUIRED if not isinstance(rec.get(k), str)]
            if bad:
                skip(lineno, f"missing or non-string {bad[0]}")
                continue
            if not rec["reference_text"].strip():
                skip(lineno, "empty reference_text")
                continue
            if rec["image_id"] in seen:
                skip(lineno, "duplicate image_id")
                continue
            seen.add(rec["image_id"])
            rows.append(
                {
                    "image_id": rec["image_id"],
                    "study_id": str(rec.get("study_id") or ""),
                    "split": str(rec.get("split") or ""),
                    "generated_text": rec["generated_text"],
                    "reference_text": rec["reference_text"],
                }
            )
    if shown > _MAX_WARNINGS:
        warn_line(f"{path}: {shown - _MAX_WARNINGS} more line(s) skipped")
    cols = ["image_id", "study_id", "split", "generated_text", "reference_text"]
    return pd.DataFrame(rows, columns=cols), skipped


def _manifest_sha(path: Path) -> str:
    f = path / "manifest.json"
    return file_sha256(f) if f.exists() else "missing"


def _resolve(ws: Workspace, config: EvaluateConfig) -> tuple[Path, dict[str, Any], Path]:
    run_dir = ws.reports(config.reports)
    if not run_dir.is_dir():
        raise BadInputError(run_dir, f"no report run {config.reports!r}; compile one first with `cxrlens report`")
    jsonl = run_dir / "reports.jsonl"
    if not jsonl.is_file():
        raise BadInputError(jsonl, "missing; the report run is incomplete — re-run `cxrlens report`")
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise BadInputError(run_dir / "manifest.json", "missing or unreadable; the report run is incomplete")
    cfg = manifest.config
    if not isinstance(cfg.get("dataset"), str) or not cfg["dataset"]:
        raise BadInputError(run_dir / "manifest.json", "config names no dataset; cannot find training reports")
    dataset_dir = ws.dataset(cfg["dataset"])
    if not (dataset_dir / "studies.parquet").is_file():
        raise BadInputError(
            dataset_dir, f"dataset {cfg['dataset']!r} (named by report run {config.reports!r}) is not in the workspace"
        )
    return run_dir, cfg, dataset_dir


# --------------------------------------------------------------------------------------------------- baselines
def _training_pool(studies: pd.DataFrame) -> pd.DataFrame:
    """One row per training study with a non-empty report: study_id, patient_id, text."""
    train = studies[studies["split"].astype(str) == "train"].drop_duplicates("study_id")
    texts = [report_plain_text(f, i) for f, i in zip(train["findings"], train["impression"], strict=True)]
    pool = pd.DataFrame(
        {
            "study_id": train["study_id"].astype(str).to_numpy(),
            "patient_id": train["patient_id"].astype(str),
            "text": texts,
        }
    )
    return pool[pool["text"].str.strip() != ""].reset_index(drop=True)


def _nearest(
    ws: Workspace, cfg: dict[str, Any], studies: pd.DataFrame, pool: pd.DataFrame, evaluated: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """(details, per-image frame of text/source_study/neighbour/similarity) or (details with ``skipped``, None)."""

    name, stream = cfg.get("activations"), cfg.get("stream")
    if not isinstance(name, str) or not isinstance(stream, str):
        return {"skipped": "the report run's config names no activations store / stream"}, None
    try:
        store = ActivationStore(ws.activations(name))
        info = store.info(stream)
    except BadInputError as exc:
        return {"skipped": str(exc)}, None
    if info.tokens_per_image != 1:  # a patch-token model: retrieve on the store's image-level stream instead
        image_level = [n for n in store.stream_names if store.info(n).tokens_per_image == 1]
        if not image_level:
            why = f"stream {stream!r} has {info.tokens_per_image} tokens per image and the store no image-level one"
            return {"skipped": why}, None
        stream = "final/cls" if "final/cls" in image_level else image_level[0]
    try:
        index = store.index
        row_of = dict(zip(index["image_id"].astype(str), index["row"].astype(np.int64), strict=True))
        missing = [i for i in evaluated["image_id"] if i not in row_of]
        if missing:
            return {"skipped": f"{len(missing)} evaluated image(s) are not in store {name!r} (e.g. {missing[0]})"}, None
        train_img = studies[
            (studies["split"].astype(str) == "train")
            & studies["study_id"].astype(str).isin(set(pool["study_id"]))
            & studies["image_id"].isin(row_of)
        ]
        if train_img.empty:
            return {"skipped": f"store {name!r} holds no training image with a report"}, None
        train_rows = np.array([row_of[i] for i in train_img["image_id"].astype(str)], dtype=np.int64)
        query_rows = np.array([row_of[i] for i in evaluated["image_id"]], dtype=np.int64)
        train_x = store.get(stream, train_rows).numpy()
        query_x = store.get(stream, query_rows).numpy()
    finally:
        store.close()
    patient = dict(zip(studies["image_id"].astype(str), studies["patient_id"].astype(str), strict=True))
    best, sim, backend = nearest_neighbours(
        train_x,
        query_x,
        train_img["patient_id"].astype(str).tolist(),
        [patient[i] for i in evaluated["image_id"]],
    )
    text_of = dict(zip(pool["study_id"], pool["text"], strict=True))
    t_img = train_img["image_id"].astype(str).to_numpy()
    t_study = train_img["study_id"].astype(str).to_numpy()
    out = pd.DataFrame(
        {
            "text": [text_of[t_study[b]] if b >= 0 else "" for b in best],
            "source_study": [t_study[b] if b >= 0 else None for b in best],
            "neighbour_image_id": [t_img[b] if b >= 0 else None for b in best],
            "neighbour_similarity": sim.astype(np.float64),
        }
    )
    details = {
        "activations": name,
        "stream": stream,
        "backend": backend,
        "training_images": len(train_img),
        "no_neighbour": int((best < 0).sum()),
        "mean_similarity": float(np.nanmean(sim)) if np.isfinite(sim).any() else None,
    }
    return details, out


# ------------------------------------------------------------------------------------------------------ scoring
def _label_cache(texts: list[str]) -> pd.DataFrame:

    unique = list(dict.fromkeys(texts))
    labels = label_reports(unique)
    labels.index = unique
    return labels


def _label_matrix(gen: pd.DataFrame, ref: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Per image and label TP / FP / FN indicators, each (n, len(cols)) int64 (uncertain → positive, not mentioned
    → negative)."""

    g = binarise_labels(gen[list(cols)], "positive") == 1.0
    r = binarise_labels(ref[list(cols)], "positive") == 1.0
    return tuple(x.astype(np.int64) for x in (g & r, g & ~r, ~g & r))


def _statistic(kind: str, counts: tuple[np.ndarray, ...], weights_BN: np.ndarray) -> np.ndarray:
    """(B,) value of a gap metric on weighted images, from per-image counts (each (n,) or (n, L)).

    ``micro_f1``: 2·TP / (2·TP + FP + FN) of the weighted sums (0 when nothing is positive anywhere);
    ``macro_f1``: per-label F1 of the weighted sums, 0/0 → 0, averaged over all labels; ``fp_share``:
    FP / (TP + FP) (NaN when nothing is claimed: the resample is redrawn).
    """
    w = np.asarray(weights_BN, dtype=np.float64)
    sums = [w @ np.asarray(c, dtype=np.float64) for c in counts]
    if kind == "micro_f1":
        tp, fp, fn = sums
        return ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    if kind == "macro_f1":
        tp, fp, fn = sums
        return ratio(2 * tp, 2 * tp + fp + fn, 0.0).mean(axis=1)
    if kind == "fp_share":
        tp, fp = sums[:2]
        return ratio(fp, tp + fp, np.nan)
    raise ValueError(f"unknown statistic {kind!r}")


def _interval(
    kind: str,
    a: tuple[np.ndarray, ...],
    b: tuple[np.ndarray, ...] | None,
    groups: np.ndarray,
    config: EvaluateConfig,
) -> BootstrapResult:
    """Cluster-bootstrap interval of metric ``kind`` of system ``a`` (``b`` None) or of the paired gap a − b."""

    def stat(w: np.ndarray) -> np.ndarray:
        value = _statistic(kind, a, w)
        return value if b is None else value - _statistic(kind, b, w)

    return cluster_bootstrap(
        stat, len(groups), groups=groups, unit=config.bootstrap_unit, n_boot=config.bootstrap, seed=config.seed
    )


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (np.floating,)):
        return _jsonable(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def evaluate_reports(ws: Workspace, config: EvaluateConfig, force: bool = False) -> StageResult:
    """Evaluate a report run against the baselines; writes ``reports/<run>/evaluation/`` (see module docstring)."""
    run_dir, run_cfg, dataset_dir = _resolve(ws, config)
    leak = leak_check(ws, run_cfg)
    if leak.leaky and not config.allow_leaky:
        split = str(run_cfg.get("split") or "all")
        raise LeakyEvaluationError(
            None,
            f"refusing to evaluate report run {config.reports!r} on split {split!r}: interpretation "
            f"{leak.interpretation!r} used {leak.why()}, so the scores would be leaky; evaluate a held-out split, "
            "or pass --allow-leaky to score it anyway (marked leaky)",
        )
    jsonl = run_dir / "reports.jsonl"
    store_dir = ws.activations(run_cfg["activations"]) if isinstance(run_cfg.get("activations"), str) else None
    job = _EvaluateJob(
        config=config,
        reports_sha256=file_sha256(jsonl),
        dataset_manifest_sha256=_manifest_sha(dataset_dir),
        activations_manifest_sha256=_manifest_sha(store_dir) if store_dir is not None else "none",
    )

    def build(tmp: Path) -> dict[str, Any]:
        return _build(ws, config, run_dir, run_cfg, dataset_dir, tmp, leak)

    return run_stage(run_dir / EVALUATION_DIR, stage="evaluate.reports", config=job, build=build, force=force)


def _build(
    ws: Workspace,
    config: EvaluateConfig,
    run_dir: Path,
    run_cfg: dict[str, Any],
    dataset_dir: Path,
    tmp: Path,
    leak: LeakCheck,
) -> dict[str, Any]:

    evaluated, skipped = read_reports_jsonl(run_dir / "reports.jsonl")
    studies = pd.read_parquet(dataset_dir / "studies.parquet")
    studies["image_id"] = studies["image_id"].astype(str)
    by_image = studies.drop_duplicates("image_id").set_index("image_id")
    known = evaluated["image_id"].isin(by_image.index)
    if (~known).any():
        n_bad = int((~known).sum())
        skipped[f"image_id not in dataset {run_cfg['dataset']!r}"] = n_bad
        warn_line(
            f"{run_dir / 'reports.jsonl'}: {n_bad} line(s) skipped (image_id not in dataset {run_cfg['dataset']!r})"
        )
        evaluated = evaluated[known].reset_index(drop=True)
    if evaluated.empty:
        raise BadInputError(
            run_dir / "reports.jsonl", f"no valid report line to evaluate (skipped: {skipped or 'none'})"
        )
    evaluated["study_id"] = np.where(
        evaluated["study_id"] == "", by_image.loc[evaluated["image_id"], "study_id"].astype(str), evaluated["study_id"]
    )
    evaluated["split"] = np.where(
        evaluated["split"] == "", by_image.loc[evaluated["image_id"], "split"].astype(str), evaluated["split"]
    )
    n = len(evaluated)
    refs = evaluated["reference_text"].tolist()
    unit_column = "study_id" if config.bootstrap_unit == "study" else "patient_id"
    if unit_column == "study_id":
        groups = evaluated["study_id"].astype(str).to_numpy()
    else:
        groups = by_image.loc[evaluated["image_id"], "patient_id"].astype(str).to_numpy()
    if (pd.Series(groups).str.strip().isin(["", "nan", "None"])).any():
        raise BadInputError(
            dataset_dir / "studies.parquet",
            f"some evaluated images have no {unit_column}; the {config.bootstrap_unit}-level bootstrap needs one each",
        )
    n_units = len(set(groups.tolist()))

    # ------------------------------------------------------------------ systems
    systems: dict[str, pd.DataFrame] = {
        "cxrlens": pd.DataFrame({"text": evaluated["generated_text"], "source_study": None})
    }
    baselines: dict[str, dict[str, Any]] = {}
    pool = _training_pool(studies) if config.baselines else None
    if config.baselines and pool.empty:
        raise BadInputError(dataset_dir / "studies.parquet", "no training-split report to build the baselines from")
    for name in config.baselines:
        details: dict[str, Any] = {"definition": _DEFINITIONS[name], "training_studies": len(pool)}
        if name == "constant":
            text, count = most_common_report(pool["text"].tolist())
            details.update(text=text, studies_with_text=count)
            systems[name] = pd.DataFrame({"text": [text] * n, "source_study": None})
        elif name == "random":
            texts, picked = random_reports(pool["text"].tolist(), evaluated["image_id"].tolist(), config.seed)
            details.update(seed=config.seed, distinct_reports_drawn=len(set(picked.tolist())))
            systems[name] = pd.DataFrame({"text": texts, "source_study": pool["study_id"].to_numpy()[picked]})
        else:
            more, frame = _nearest(ws, run_cfg, studies, pool, evaluated)
            details.update(more)
            if frame is None:
                warn_line(f"nearest-neighbour baseline skipped: {more['skipped']}")
            else:
                systems[name] = frame
        baselines[name] = details

    # ------------------------------------------------------------------ labels (each distinct text once)
    all_texts = refs + [t for s in systems.values() for t in s["text"]]
    labels = _label_cache(all_texts)
    ref_labels = labels.loc[refs].reset_index(drop=True)
    factors = None
    factors_path = dataset_dir / "factors.parquet"
    if factors_path.is_file():
        f = pd.read_parquet(factors_path)
        f["image_id"] = f["image_id"].astype(str)
        f = f.drop_duplicates("image_id").set_index("image_id")
        if evaluated["image_id"].isin(f.index).all():
            factors = f.loc[evaluated["image_id"]].reset_index()
        else:
            warn_line(f"{factors_path}: not every evaluated image has factors; phantom grounding skipped")
    mentions_of: dict[str, list] = {}
    excluded = None
    if factors is not None:
        unique = list(dict.fromkeys(all_texts))
        mentions_of = dict(zip(unique, report_mentions(unique), strict=True))
        excluded = excluded_labels(factors)

    # ------------------------------------------------------------------ scores
    metrics_systems: dict[str, Any] = {}
    long_rows: list[dict[str, Any]] = []
    per_report: list[pd.DataFrame] = []
    sufficient: dict[str, dict[str, tuple[np.ndarray, ...]]] = {}  # system → gap metric → per-image counts
    meteor_status = "not computed"
    names = [*systems, *([AGREEMENT] if factors is not None else [])]
    with progress(transient=True) as bar:
        task = bar.add_task("evaluate", total=len(names))
        for name in names:
            bar.update(task, description=f"evaluate {name}")
            texts = refs if name == AGREEMENT else systems[name]["text"].tolist()
            n_empty = sum(1 for t in texts if not t.strip())
            entry: dict[str, Any] = {"empty_reports": {"n": n_empty, "fraction": n_empty / n}}
            gen_labels = labels.loc[texts].reset_index(drop=True)
            if name != AGREEMENT:
                nlg = nlg_scores(texts, refs, meteor=config.meteor)
                meteor_status = str(nlg.pop("meteor_status"))
                entry["nlg"] = nlg
                for metric, value in nlg.items():
                    variant = "METEOR 1.5 -l en -norm" if metric == "METEOR" else "pycocoevalcap, corpus"
                    long_rows.append({"system": name, "metric": metric, "variant": variant, "value": value})
                clin = clinical_scores(gen_labels, ref_labels)
                entry["clinical"] = clin.to_dict("records")
                for r in clin.itertuples():
                    long_rows.append(
                        {"system": name, "metric": f"clinical {r.metric}", "variant": r.variant, "value": r.value}
                    )
                m5 = _label_matrix(gen_labels, ref_labels, FIVE_FINDINGS)
                m14 = _label_matrix(gen_labels, ref_labels, CHEXPERT_LABELS)
                sufficient[name] = {
                    GAP_METRICS[0][1]: tuple(x.sum(1) for x in m5),
                    GAP_METRICS[1][1]: m14,
                }
            frame = pd.DataFrame(
                {
                    "system": name,
                    "image_id": evaluated["image_id"],
                    "study_id": evaluated["study_id"],
                    "split": evaluated["split"],
                    "generated_text": texts,
                    "reference_text": refs,
                }
            )
            if name != AGREEMENT:
                tp5, fp5, fn5 = sufficient[name][GAP_METRICS[0][1]]
                tp14, fp14, fn14 = (x.sum(1) for x in sufficient[name][GAP_METRICS[1][1]])
                frame = frame.assign(tp5=tp5, fp5=fp5, fn5=fn5, tp14=tp14, fp14=fp14, fn14=fn14)
                for col in ("source_study", "neighbour_image_id", "neighbour_similarity"):
                    if col in systems[name]:
                        frame[col] = systems[name][col].to_numpy()
            if factors is not None:
                ms = [mentions_of[t] for t in texts]
                grounding = []
                for unc in ("positive", "negative"):
                    g = grounding_scores(texts, factors, uncertain=unc, mentions=ms, excluded=excluded)
                    grounding += g.summary.to_dict("records")
                    if unc == "positive":
                        if name != AGREEMENT:
                            pr = g.per_report
                            tp_g, fp_g, fn_g = (pr[c].to_numpy(np.int64) for c in ("n_tp", "n_fp", "n_fn"))
                            sufficient[name][GAP_METRICS[2][1]] = (tp_g, fp_g, fn_g)
                            sufficient[name][GAP_METRICS[3][1]] = (tp_g, fp_g)
                        frame = frame.assign(
                            grounding_claimed=g.per_report["claimed"],
                            grounding_hallucinated=g.per_report["hallucinated"],
                            grounding_excluded=g.per_report["excluded_claims"],
                            grounding_missed=g.per_report["missed"],
                        )
                entry["grounding"] = grounding
                for r in grounding:
                    long_rows.append(
                        {"system": name, "metric": r["metric"], "variant": r["variant"], "value": r["value"]}
                    )
            entry["n_reports"] = n
            metrics_systems[name] = entry
            per_report.append(frame)
            bar.advance(task)

    # ------------------------------------------------------------------ gaps and intervals (cluster bootstrap)
    gap_rows: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    point: dict[tuple[str, str], float] = {}  # (system, gap metric) → value on the evaluated set
    compared = [b for b in config.baselines if b in sufficient]
    with progress(transient=True) as bar:
        task = bar.add_task(f"bootstrap ({config.bootstrap_unit}s)", total=len(GAP_METRICS) * (1 + len(sufficient)))
        for _family, metric, kind, lower, label in GAP_METRICS:
            if metric not in sufficient["cxrlens"]:
                continue
            for name in sufficient:
                res = _interval(kind, sufficient[name][metric], None, groups, config)
                point[name, metric] = res.estimate
                intervals.append(
                    {"metric": metric, "label": label, "system": name, "value": res.estimate, "ci95": res.ci()}
                )
                bar.advance(task)
            for name in compared:
                res = _interval(kind, sufficient["cxrlens"][metric], sufficient[name][metric], groups, config)
                gap_rows.append(
                    {
                        "metric": metric,
                        "label": label,
                        "lower_is_better": lower,
                        "baseline": name,
                        "cxrlens": point["cxrlens", metric],
                        "baseline_value": point[name, metric],
                        "gap": res.estimate,
                        "ci95": res.ci(),
                        "p_le_0": res.p_le_0,
                        "bootstrap": res.n_boot,
                    }
                )
                bar.advance(task)
    head_metric = GAP_METRICS[0][1]
    head_rows = [r for r in gap_rows if r["metric"] == head_metric]
    gaps = {
        "metric": head_metric,
        "cxrlens": point["cxrlens", head_metric],
        "bootstrap_unit": config.bootstrap_unit,
        "n_units": n_units,
        "vs": {
            r["baseline"]: {
                "baseline": r["baseline_value"],
                "gap": r["gap"],
                "ci95": r["ci95"],
                "p_le_0": r["p_le_0"],
                "bootstrap": r["bootstrap"],
                "bootstrap_unit": config.bootstrap_unit,
                "n_units": n_units,
            }
            for r in head_rows
        },
    }
    for r in gap_rows:
        long_rows.append(
            {"system": "cxrlens", "metric": f"gap vs {r['baseline']}", "variant": r["metric"], "value": r["gap"]}
        )
    leak_record = (
        {
            "splits": list(leak.splits),
            "uses": dict(leak.uses),
            "interpretation": leak.interpretation,
            "why": f"evaluated split(s) {', '.join(leak.splits)} used by interpretation {leak.interpretation!r} "
            f"({leak.why()}); scored anyway because allow_leaky (--allow-leaky) was set",
        }
        if leak.leaky
        else None
    )

    metrics = {
        "report_run": config.reports,
        "dataset": run_cfg["dataset"],
        "n_reports": n,
        "skipped_lines": skipped,
        "meteor_status": meteor_status,
        "leaky": leak.leaky,
        "leak": leak_record,
        "leak_check": leak.checked,
        "headline_metric": f"clinical {HEADLINE}",
        "macro_quoted": f"clinical {MACRO_QUOTED}",
        "systems": metrics_systems,
        "baselines": baselines,
        "bootstrap": {
            "unit": config.bootstrap_unit,
            "n_units": n_units,
            "n_images": n,
            "resamples": config.bootstrap,
            "seed": config.seed,
            "interval": "percentile 95 %, paired (same resampled units for both systems of a gap)",
            "method": f"cluster bootstrap: {units_phrase(n_units, config.bootstrap_unit)} drawn with replacement "
            f"per resample, every image of a drawn {config.bootstrap_unit} kept",
        },
        "gaps": gaps,
        "gap_table": gap_rows,
        "intervals": intervals,
        "grounding": None
        if factors is None
        else {
            "truth": f"datasets/{run_cfg['dataset']}/factors.parquet",
            "excluded_cells": int(excluded.to_numpy().sum()),
            "agreement_row": f"system {AGREEMENT!r} = the reference text scored against the phantom drawn from the "
            "labeler's reading of that same text: agreement between the labeler-derived render and the labeler, "
            "high largely by construction, not a ceiling for generated reports",
        },
    }
    atomic_write_json(tmp / "metrics.json", _jsonable(metrics))
    long = pd.DataFrame(long_rows, columns=["system", "metric", "variant", "value"])
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype("float64")
    long["leaky"] = leak.leaky
    atomic_write_parquet(tmp / "metrics.parquet", long)
    atomic_write_parquet(tmp / "per_report.parquet", pd.concat(per_report, ignore_index=True).assign(leaky=leak.leaky))
    return {
        "inputs": {str(run_dir / "reports.jsonl"): file_sha256(run_dir / "reports.jsonl")},
        "rows": {"reports": n, "systems": len(systems)},
        "skipped": skipped,
        "extra": {
            "headline": gaps,
            "meteor_status": meteor_status,
            "leaky": leak.leaky,
            "leak": leak_record,
            "bootstrap_unit": config.bootstrap_unit,
            "bootstrap_units": n_units,
        },
    }


# ----------------------------------------------------------------------------------------------------- headline
_HEADLINE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("BLEU-4", "nlg", "BLEU-4"),
    ("ROUGE-L", "nlg", "ROUGE-L"),
    ("METEOR", "nlg", "METEOR"),
    ("CIDEr-D", "nlg", "CIDEr-D"),
    ("clinical F1 micro-5 (u=pos)", "clinical", HEADLINE),
    ("clinical F1 micro-14 (u=pos)", "clinical", "f1 micro · CheXpert-14 · uncertain=positive"),
    (
        "clinical F1 macro-14 over labels with a reference positive (u=pos)",
        "clinical",
        variant_name("f1", "macro-ref", "14", "positive"),
    ),
    ("clinical F1 macro-14 over all labels, zero_division=0 (u=pos)", "clinical", MACRO_QUOTED),
    ("empty reports (share)", "system", "empty_reports"),
    ("grounding F1 micro-13 (u=pos)", "grounding", "grounding f1|micro · 13 drawable labels · uncertain=positive"),
    ("hallucination / finding (u=pos)", "grounding", "hallucination rate|per finding · uncertain=positive"),
    ("hallucination / report, all reports (u=pos)", "grounding", "hallucination rate|per report · uncertain=positive"),
    (
        "hallucination / non-empty report (u=pos)",
        "grounding",
        "hallucination rate|per non-empty report · uncertain=positive",
    ),
    ("side accuracy", "grounding", "side accuracy|sentences stating it · uncertain=positive"),
    ("zone accuracy", "grounding", "zone accuracy|sentences stating it · uncertain=positive"),
)


def headline_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Systems × key metrics from a ``metrics.json`` dict (rows in the order cxrlens, constant, random, nearest,
    :data:`AGREEMENT` — the last only on phantoms, and not a ceiling: see the module docstring).

    Columns name their variant (``u=pos``: uncertain → positive; ``micro-5``: micro over the 5 competition labels;
    grounding columns only on phantom datasets). Missing values (METEOR unavailable, NLG of ``reference``) are NaN.
    """
    has_grounding = any("grounding" in s for s in metrics["systems"].values())
    rows = {}
    for name, s in metrics["systems"].items():
        row = {}
        clin = {r["variant"]: r["value"] for r in s.get("clinical", [])}
        grd = {f"{r['metric']}|{r['variant']}": r["value"] for r in s.get("grounding", [])}
        for col, family, key in _HEADLINE_COLUMNS:
            if family == "grounding" and not has_grounding:
                continue
            empty = {"empty_reports": (s.get("empty_reports") or {}).get("fraction")}
            src = {"nlg": s.get("nlg", {}), "clinical": clin, "grounding": grd, "system": empty}[family]
            value = src.get(key)
            row[col] = float(value) if value is not None else float("nan")
        rows[name] = row
    order = ["cxrlens", *BASELINES, AGREEMENT]
    names = sorted(rows, key=lambda k: (order.index(k) if k in order else len(order), k))
    table = pd.DataFrame.from_dict({k: rows[k] for k in names}, orient="index")
    table.index.name = "system"
    return table


def gap_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Every gap of a ``metrics.json`` dict: columns ``metric, label, baseline, cxrlens, baseline_value, gap, ci_low,
    ci_high, p_le_0, lower_is_better`` (``metric`` the full variant name, ``label`` its short form as in
    :func:`headline_table`; CI NaN when no interval was computed). The unit the interval resampled is in
    ``metrics["bootstrap"]``."""
    cols = [
        "metric",
        "label",
        "baseline",
        "cxrlens",
        "baseline_value",
        "gap",
        "ci_low",
        "ci_high",
        "p_le_0",
        "lower_is_better",
    ]
    rows = []
    for r in metrics.get("gap_table", []):
        ci = r.get("ci95") or [float("nan"), float("nan")]
        rows.append(
            {
                **{k: r.get(k) for k in ("metric", "baseline", "cxrlens", "baseline_value", "gap", "p_le_0")},
                "label": r.get("label") or r.get("metric"),
                "ci_low": ci[0],
                "ci_high": ci[1],
                "lower_is_better": bool(r.get("lower_is_better")),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    for c in ("cxrlens", "baseline_value", "gap", "ci_low", "ci_high", "p_le_0"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out
