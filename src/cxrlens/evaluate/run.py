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
from cxrlens.evaluate.bootstrap import units_phrase
from cxrlens.evaluate.clinical import FIVE_FINDINGS, clinical_scores
from cxrlens.evaluate.gaps import gap_intervals, headline_gaps
from cxrlens.evaluate.grounding import excluded_labels, grounding_scores
from cxrlens.evaluate.leak import LeakCheck, LeakyEvaluationError, leak_check
from cxrlens.evaluate.leak import leak_record as leak_record_of
from cxrlens.evaluate.names import AGREEMENT, BOOTSTRAP_UNITS, GAP_METRICS, HEADLINE, MACRO_QUOTED
from cxrlens.evaluate.nlg import nlg_scores
from cxrlens.files import atomic_write_json, atomic_write_parquet, file_sha256
from cxrlens.retrieval import nearest_neighbours
from cxrlens.workspace import StageResult, Workspace, artefact_identity, open_artefact, read_manifest, run_stage

__all__ = ["EVALUATION_DIR", "EvaluateConfig", "read_evaluation", "read_reports_jsonl", "run_evaluate_reports"]

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


def run_evaluate_reports(ws: Workspace, config: EvaluateConfig, force: bool = False) -> StageResult:
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
    upstream = {  # the reports scored (their bytes), the truth they are scored against, the retrieval baseline's store
        f"reports/{config.reports}/reports.jsonl": file_sha256(jsonl),
        f"datasets/{dataset_dir.name}": artefact_identity(dataset_dir),
        "evaluation format": "2",
    }
    if store_dir is not None:
        upstream[f"activations/{store_dir.name}"] = artefact_identity(store_dir)

    def build(tmp: Path) -> dict[str, Any]:
        return _build(ws, config, run_dir, run_cfg, dataset_dir, tmp, leak)

    out = run_dir / EVALUATION_DIR
    return run_stage(out, stage="evaluate.reports", config=config, build=build, force=force, upstream=upstream)


def _build(
    ws: Workspace,
    config: EvaluateConfig,
    run_dir: Path,
    run_cfg: dict[str, Any],
    dataset_dir: Path,
    tmp: Path,
    leak: LeakCheck,
) -> dict[str, Any]:
    """The stage body: the evaluated rows, the systems (cxrlens and baselines), each scored, then the gaps."""
    ev = _evaluated(config, run_dir, run_cfg, dataset_dir)
    systems, baselines = _systems(ws, config, run_cfg, ev, dataset_dir)
    refs = ev.rows["reference_text"].tolist()
    all_texts = refs + [t for s in systems.values() for t in s["text"]]
    labels = _label_cache(all_texts)  # each distinct text labelled once
    ref_labels = labels.loc[refs].reset_index(drop=True)
    truth = _phantom_truth(dataset_dir, ev.rows, all_texts)
    names = [*systems, *([AGREEMENT] if truth is not None else [])]
    scored: dict[str, _Scored] = {}
    with progress(transient=True) as bar:
        task = bar.add_task("evaluate", total=len(names))
        for name in names:
            bar.update(task, description=f"evaluate {name}")
            system = None if name == AGREEMENT else systems[name]
            scored[name] = _score_system(name, system, ev, labels, ref_labels, truth, config)
            bar.advance(task)
    sufficient = {name: sc.counts for name, sc in scored.items() if name != AGREEMENT}
    compared = [b for b in config.baselines if b in sufficient]
    gap_rows, intervals, point = gap_intervals(sufficient, compared, ev.groups, config)
    gaps = headline_gaps(gap_rows, point, config, ev.n_units)
    long_rows = [row for sc in scored.values() for row in sc.long_rows]
    long_rows += [
        {"system": "cxrlens", "metric": f"gap vs {r['baseline']}", "variant": r["metric"], "value": r["gap"]}
        for r in gap_rows
    ]
    meteor_status = next((sc.meteor_status for sc in reversed(scored.values()) if sc.meteor_status), "not computed")
    leak_record = leak_record_of(leak)
    n = len(ev.rows)
    metrics = {
        "report_run": config.reports,
        "dataset": run_cfg["dataset"],
        "n_reports": n,
        "skipped_lines": ev.skipped,
        "meteor_status": meteor_status,
        "leaky": leak.leaky,
        "leak": leak_record,
        "leak_check": leak.checked,
        "headline_metric": f"clinical {HEADLINE}",
        "macro_quoted": f"clinical {MACRO_QUOTED}",
        "systems": {name: sc.entry for name, sc in scored.items()},
        "baselines": baselines,
        "bootstrap": {
            "unit": config.bootstrap_unit,
            "n_units": ev.n_units,
            "n_images": n,
            "resamples": config.bootstrap,
            "seed": config.seed,
            "interval": "percentile 95 %, paired (same resampled units for both systems of a gap)",
            "method": f"cluster bootstrap: {units_phrase(ev.n_units, config.bootstrap_unit)} drawn with replacement "
            f"per resample, every image of a drawn {config.bootstrap_unit} kept",
        },
        "gaps": gaps,
        "gap_table": gap_rows,
        "intervals": intervals,
        "grounding": None
        if truth is None
        else {
            "truth": f"datasets/{run_cfg['dataset']}/factors.parquet",
            "excluded_cells": int(truth.excluded.to_numpy().sum()),
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
    per_report = pd.concat([sc.frame for sc in scored.values()], ignore_index=True).assign(leaky=leak.leaky)
    atomic_write_parquet(tmp / "per_report.parquet", per_report)
    return {
        "inputs": {str(run_dir / "reports.jsonl"): file_sha256(run_dir / "reports.jsonl")},
        "rows": {"reports": n, "systems": len(systems)},
        "skipped": ev.skipped,
        "extra": {
            "headline": gaps,
            "meteor_status": meteor_status,
            "leaky": leak.leaky,
            "leak": leak_record,
            "bootstrap_unit": config.bootstrap_unit,
            "bootstrap_units": ev.n_units,
        },
    }


@dataclasses.dataclass
class _Evaluated:
    """The report lines that are scored: ``rows`` (image_id, study_id, split, generated/reference text …), the
    dataset's ``studies`` table, lines ``skipped`` by reason, and the bootstrap unit of each row (``groups``)."""

    rows: pd.DataFrame
    studies: pd.DataFrame
    skipped: dict[str, int]
    groups: np.ndarray
    n_units: int


def _evaluated(config: EvaluateConfig, run_dir: Path, run_cfg: dict[str, Any], dataset_dir: Path) -> _Evaluated:
    """Read ``reports.jsonl``, drop lines whose image is not in the dataset (counted, warned), fill study/split
    from the dataset, and find each row's bootstrap unit (study or patient id; every row must have one)."""
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
    for col in ("study_id", "split"):
        evaluated[col] = np.where(
            evaluated[col] == "", by_image.loc[evaluated["image_id"], col].astype(str), evaluated[col]
        )
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
    return _Evaluated(evaluated, studies, skipped, groups, len(set(groups.tolist())))


def _systems(
    ws: Workspace, config: EvaluateConfig, run_cfg: dict[str, Any], ev: _Evaluated, dataset_dir: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, Any]]]:
    """``{system: frame with "text" (and "source_study", neighbour columns)}`` — cxrlens first, then each baseline
    of ``config.baselines`` — and each baseline's definition and details for ``metrics.json``."""
    n = len(ev.rows)
    systems: dict[str, pd.DataFrame] = {
        "cxrlens": pd.DataFrame({"text": ev.rows["generated_text"], "source_study": None})
    }
    baselines: dict[str, dict[str, Any]] = {}
    pool = _training_pool(ev.studies) if config.baselines else None
    if config.baselines and pool.empty:
        raise BadInputError(dataset_dir / "studies.parquet", "no training-split report to build the baselines from")
    for name in config.baselines:
        details: dict[str, Any] = {"definition": _DEFINITIONS[name], "training_studies": len(pool)}
        if name == "constant":
            text, count = most_common_report(pool["text"].tolist())
            details.update(text=text, studies_with_text=count)
            systems[name] = pd.DataFrame({"text": [text] * n, "source_study": None})
        elif name == "random":
            texts, picked = random_reports(pool["text"].tolist(), ev.rows["image_id"].tolist(), config.seed)
            details.update(seed=config.seed, distinct_reports_drawn=len(set(picked.tolist())))
            systems[name] = pd.DataFrame({"text": texts, "source_study": pool["study_id"].to_numpy()[picked]})
        else:
            more, frame = _nearest(ws, run_cfg, ev.studies, pool, ev.rows)
            details.update(more)
            if frame is None:
                warn_line(f"nearest-neighbour baseline skipped: {more['skipped']}")
            else:
                systems[name] = frame
        baselines[name] = details
    return systems, baselines


@dataclasses.dataclass
class _Truth:
    """Phantom ground truth of the evaluated rows: ``factors`` (one row per row of the evaluation), the finding
    mentions of every distinct text, and the label cells the renderer could not draw (``excluded``)."""

    factors: pd.DataFrame
    mentions_of: dict[str, list]
    excluded: pd.DataFrame


def _phantom_truth(dataset_dir: Path, rows: pd.DataFrame, all_texts: list[str]) -> _Truth | None:
    """The dataset's ``factors.parquet`` for the evaluated images, or None (no phantom, or an image lacks factors —
    then grounding is skipped with a warning)."""
    factors_path = dataset_dir / "factors.parquet"
    if not factors_path.is_file():
        return None
    f = pd.read_parquet(factors_path)
    f["image_id"] = f["image_id"].astype(str)
    f = f.drop_duplicates("image_id").set_index("image_id")
    if not rows["image_id"].isin(f.index).all():
        warn_line(f"{factors_path}: not every evaluated image has factors; phantom grounding skipped")
        return None
    factors = f.loc[rows["image_id"]].reset_index()
    unique = list(dict.fromkeys(all_texts))
    return _Truth(factors, dict(zip(unique, report_mentions(unique), strict=True)), excluded_labels(factors))


@dataclasses.dataclass
class _Scored:
    """One system's scores: its ``metrics.json`` entry, its rows of ``per_report.parquet`` and ``metrics.parquet``,
    the per-image counts the gap bootstrap resamples (``counts``: gap metric → arrays) and METEOR's status."""

    entry: dict[str, Any]
    frame: pd.DataFrame
    long_rows: list[dict[str, Any]]
    counts: dict[str, tuple[np.ndarray, ...]]
    meteor_status: str


def _score_system(
    name: str,
    system: pd.DataFrame | None,
    ev: _Evaluated,
    labels: pd.DataFrame,
    ref_labels: pd.DataFrame,
    truth: _Truth | None,
    config: EvaluateConfig,
) -> _Scored:
    """NLG, clinical and (phantoms) grounding scores of one system; ``system`` None = the reference text itself
    (:data:`AGREEMENT`: grounding only). ``labels``: every distinct text's labels; ``ref_labels``: the reference
    texts' rows of it, in evaluation order (looked up once for all systems)."""
    refs = ev.rows["reference_text"].tolist()
    n = len(refs)
    texts = refs if system is None else system["text"].tolist()
    n_empty = sum(1 for t in texts if not t.strip())
    entry: dict[str, Any] = {"empty_reports": {"n": n_empty, "fraction": n_empty / n}}
    long_rows: list[dict[str, Any]] = []
    counts: dict[str, tuple[np.ndarray, ...]] = {}
    meteor_status = ""
    frame = pd.DataFrame(
        {
            "system": name,
            "image_id": ev.rows["image_id"],
            "study_id": ev.rows["study_id"],
            "split": ev.rows["split"],
            "generated_text": texts,
            "reference_text": refs,
        }
    )
    if system is not None:
        gen_labels = labels.loc[texts].reset_index(drop=True)
        nlg = nlg_scores(texts, refs, meteor=config.meteor)
        meteor_status = str(nlg.pop("meteor_status"))
        entry["nlg"] = nlg
        for metric, value in nlg.items():
            variant = "METEOR 1.5 -l en -norm" if metric == "METEOR" else "pycocoevalcap, corpus"
            long_rows.append({"system": name, "metric": metric, "variant": variant, "value": value})
        clin = clinical_scores(gen_labels, ref_labels)
        entry["clinical"] = clin.to_dict("records")
        for r in clin.itertuples():
            long_rows.append({"system": name, "metric": f"clinical {r.metric}", "variant": r.variant, "value": r.value})
        m5 = _label_matrix(gen_labels, ref_labels, FIVE_FINDINGS)
        m14 = _label_matrix(gen_labels, ref_labels, CHEXPERT_LABELS)
        counts = {GAP_METRICS[0][1]: tuple(x.sum(1) for x in m5), GAP_METRICS[1][1]: m14}
        tp5, fp5, fn5 = counts[GAP_METRICS[0][1]]
        tp14, fp14, fn14 = (x.sum(1) for x in m14)
        frame = frame.assign(tp5=tp5, fp5=fp5, fn5=fn5, tp14=tp14, fp14=fp14, fn14=fn14)
        for col in ("source_study", "neighbour_image_id", "neighbour_similarity"):
            if col in system:
                frame[col] = system[col].to_numpy()
    if truth is not None:
        ms = [truth.mentions_of[t] for t in texts]
        grounding = []
        for unc in ("positive", "negative"):
            g = grounding_scores(texts, truth.factors, uncertain=unc, mentions=ms, excluded=truth.excluded)
            grounding += g.summary.to_dict("records")
            if unc != "positive":
                continue
            if system is not None:
                tp_g, fp_g, fn_g = (g.per_report[c].to_numpy(np.int64) for c in ("n_tp", "n_fp", "n_fn"))
                counts[GAP_METRICS[2][1]] = (tp_g, fp_g, fn_g)
                counts[GAP_METRICS[3][1]] = (tp_g, fp_g)
            frame = frame.assign(
                grounding_claimed=g.per_report["claimed"],
                grounding_hallucinated=g.per_report["hallucinated"],
                grounding_excluded=g.per_report["excluded_claims"],
                grounding_missed=g.per_report["missed"],
            )
        entry["grounding"] = grounding
        long_rows += [
            {"system": name, "metric": r["metric"], "variant": r["variant"], "value": r["value"]} for r in grounding
        ]
    entry["n_reports"] = n
    return _Scored(entry, frame, long_rows, counts, meteor_status)


def read_evaluation(ws: Workspace, reports_run: str) -> dict[str, Any]:
    """``metrics.json`` of ``reports/<reports_run>/evaluation`` (see the module docstring for its keys)."""
    path = ws.reports(reports_run) / EVALUATION_DIR
    hint = f"run `cxrlens evaluate reports --reports {reports_run}`"
    return open_artefact(path, "evaluate", hint=hint).json("metrics")
