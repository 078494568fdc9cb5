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
  negative × micro / macro × P / R / F1), generated and reference texts labelled by the same labeler;
* phantom grounding (:func:`cxrlens.evaluate.grounding.grounding_scores`) when the dataset has ``factors.parquet``,
  for uncertain→positive and →negative; the reference text is scored the same way (system ``reference``) — the
  ceiling that labeler–renderer disagreement leaves;
* **gaps**: cxrlens minus each baseline on :data:`HEADLINE` (clinical F1, micro over the 5 CheXpert competition
  labels, uncertain → positive, not mentioned → negative), with a paired bootstrap 95 % interval (reports resampled
  with replacement, ``bootstrap`` resamples seeded by ``seed``; percentile interval).

Bad lines of ``reports.jsonl`` (not JSON, missing/non-string ``image_id`` / ``generated_text`` /
``reference_text``, empty reference, duplicate ``image_id``, image not in the dataset) are skipped, each printed as
one warning line (the first 10), counted by reason in ``metrics.json`` and the manifest. A missing activation store
or stream skips the nearest baseline with a warning (recorded under ``baselines.nearest.skipped``).

Files written (``run_stage``: atomic, reused while the job hash — config + SHA-256 of ``reports.jsonl`` and of the
dataset's and store's manifests — is unchanged):

* ``metrics.json`` — ``systems.<name>.{nlg, clinical, grounding}``, ``baselines`` (definition + details),
  ``gaps``, ``meteor_status``, ``n_reports``, ``skipped_lines``;
* ``metrics.parquet`` — long table ``system, metric, variant, value``;
* ``per_report.parquet`` — one row per (system, image): texts, clinical TP/FP/FN, labels claimed, grounding lists,
  the training study a baseline copied (and, for nearest, the neighbour image and its cosine similarity).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlens.console import progress, warn_line
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.errors import BadInputError
from cxrlens.evaluate.baselines import (
    BASELINES,
    most_common_report,
    nearest_neighbours,
    random_reports,
    report_plain_text,
)
from cxrlens.evaluate.clinical import FIVE_FINDINGS
from cxrlens.workspace import (
    StageResult,
    Workspace,
    atomic_write_json,
    atomic_write_parquet,
    file_sha256,
    read_manifest,
    run_stage,
)

__all__ = ["HEADLINE", "EvaluateConfig", "evaluate_reports", "headline_table", "read_reports_jsonl"]

HEADLINE = "f1 micro · CheXpert-5 · uncertain=positive"
"""The headline clinical variant (as named by ``clinical_scores``): F1, micro over the 5 competition labels,
uncertain → positive, not mentioned → negative."""
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
        bootstrap: paired bootstrap resamples for the gap intervals (0 = no interval).
    """

    reports: str
    baselines: tuple[str, ...] = BASELINES
    seed: int = 0
    meteor: bool = True
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise BadInputError(None, f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
        if len(set(self.baselines)) != len(self.baselines):
            raise BadInputError(None, f"baseline listed twice: {', '.join(self.baselines)}")
        if self.bootstrap < 0:
            raise BadInputError(None, f"bootstrap must be ≥ 0, got {self.bootstrap}")


@dataclasses.dataclass(frozen=True)
class _EvaluateJob:
    """What the artefact depends on: the config plus the identity of every input (its hash is the stage's)."""

    config: EvaluateConfig
    reports_sha256: str
    dataset_manifest_sha256: str
    activations_manifest_sha256: str
    format: int = 1


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
    from cxrlens.activations import ActivationStore

    name, stream = cfg.get("activations"), cfg.get("stream")
    if not isinstance(name, str) or not isinstance(stream, str):
        return {"skipped": "the report run's config names no activations store / stream"}, None
    try:
        store = ActivationStore(ws.activations(name))
        info = store.info(stream)
    except BadInputError as exc:
        return {"skipped": str(exc)}, None
    if info.tokens_per_image != 1:
        why = f"stream {stream!r} has {info.tokens_per_image} tokens per image; need one row per image"
        return {"skipped": why}, None
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
    from cxrlens.data.labeler import label_reports

    unique = list(dict.fromkeys(texts))
    labels = label_reports(unique)
    labels.index = unique
    return labels


def _counts(gen: pd.DataFrame, ref: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Per-report TP/FP/FN over ``cols`` (uncertain → positive, not mentioned → negative)."""
    from cxrlens.data.schema import binarise_labels

    g = binarise_labels(gen[list(cols)], "positive") == 1.0
    r = binarise_labels(ref[list(cols)], "positive") == 1.0
    return (g & r).sum(1), (g & ~r).sum(1), (~g & r).sum(1)


def _micro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    den = 2 * tp.sum() + fp.sum() + fn.sum()
    return float(2 * tp.sum() / den) if den else float("nan")


def _gap_interval(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], n_boot: int, seed: int) -> list[float] | None:
    """Paired percentile bootstrap 95 % interval of micro-F1(a) − micro-F1(b) over resampled reports."""
    if n_boot == 0 or len(a[0]) == 0:
        return None
    rng = np.random.default_rng(seed)
    n = len(a[0])
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        w = np.bincount(rng.integers(n, size=n), minlength=n)
        fa = [(x * w).sum() for x in a]
        fb = [(x * w).sum() for x in b]
        da, db = 2 * fa[0] + fa[1] + fa[2], 2 * fb[0] + fb[1] + fb[2]
        diffs[k] = (2 * fa[0] / da if da else 0.0) - (2 * fb[0] / db if db else 0.0)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return [float(lo), float(hi)]


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
    jsonl = run_dir / "reports.jsonl"
    store_dir = ws.activations(run_cfg["activations"]) if isinstance(run_cfg.get("activations"), str) else None
    job = _EvaluateJob(
        config=config,
        reports_sha256=file_sha256(jsonl),
        dataset_manifest_sha256=_manifest_sha(dataset_dir),
        activations_manifest_sha256=_manifest_sha(store_dir) if store_dir is not None else "none",
    )

    def build(tmp: Path) -> dict[str, Any]:
        return _build(ws, config, run_dir, run_cfg, dataset_dir, tmp)

    return run_stage(run_dir / EVALUATION_DIR, stage="evaluate.reports", config=job, build=build, force=force)


def _build(
    ws: Workspace, config: EvaluateConfig, run_dir: Path, run_cfg: dict[str, Any], dataset_dir: Path, tmp: Path
) -> dict[str, Any]:
    from cxrlens.evaluate.clinical import clinical_scores
    from cxrlens.evaluate.nlg import nlg_scores

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
        from cxrlens.data.labeler import report_mentions
        from cxrlens.evaluate.grounding import excluded_labels

        unique = list(dict.fromkeys(all_texts))
        mentions_of = dict(zip(unique, report_mentions(unique), strict=True))
        excluded = excluded_labels(factors)

    # ------------------------------------------------------------------ scores
    metrics_systems: dict[str, Any] = {}
    long_rows: list[dict[str, Any]] = []
    per_report: list[pd.DataFrame] = []
    counts5: dict[str, tuple[np.ndarray, ...]] = {}
    meteor_status = "not computed"
    names = [*systems, *(["reference"] if factors is not None else [])]
    with progress(transient=True) as bar:
        task = bar.add_task("evaluate", total=len(names))
        for name in names:
            bar.update(task, description=f"evaluate {name}")
            texts = refs if name == "reference" else systems[name]["text"].tolist()
            entry: dict[str, Any] = {}
            gen_labels = labels.loc[texts].reset_index(drop=True)
            if name != "reference":
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
                counts5[name] = _counts(gen_labels, ref_labels, FIVE_FINDINGS)
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
            if name != "reference":
                tp5, fp5, fn5 = counts5[name]
                tp14, fp14, fn14 = _counts(gen_labels, ref_labels, CHEXPERT_LABELS)
                frame = frame.assign(tp5=tp5, fp5=fp5, fn5=fn5, tp14=tp14, fp14=fp14, fn14=fn14)
                for col in ("source_study", "neighbour_image_id", "neighbour_similarity"):
                    if col in systems[name]:
                        frame[col] = systems[name][col].to_numpy()
            if factors is not None:
                from cxrlens.evaluate.grounding import grounding_scores

                ms = [mentions_of[t] for t in texts]
                grounding = []
                for unc in ("positive", "negative"):
                    g = grounding_scores(texts, factors, uncertain=unc, mentions=ms, excluded=excluded)
                    grounding += g.summary.to_dict("records")
                    if unc == "positive":
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

    # ------------------------------------------------------------------ gaps
    head = {name: _micro_f1(*c) for name, c in counts5.items()}
    gaps = {"metric": f"clinical {HEADLINE}", "cxrlens": head["cxrlens"], "vs": {}}
    for k, name in enumerate(b for b in config.baselines if b in counts5):
        gaps["vs"][name] = {
            "baseline": head[name],
            "gap": head["cxrlens"] - head[name],
            "ci95": _gap_interval(counts5["cxrlens"], counts5[name], config.bootstrap, config.seed + k),
            "bootstrap": config.bootstrap,
        }
    for name, g in gaps["vs"].items():
        long_rows.append(
            {"system": "cxrlens", "metric": f"gap vs {name}", "variant": f"clinical {HEADLINE}", "value": g["gap"]}
        )

    metrics = {
        "report_run": config.reports,
        "dataset": run_cfg["dataset"],
        "n_reports": n,
        "skipped_lines": skipped,
        "meteor_status": meteor_status,
        "headline_metric": f"clinical {HEADLINE}",
        "systems": metrics_systems,
        "baselines": baselines,
        "gaps": gaps,
        "grounding": None
        if factors is None
        else {
            "truth": f"datasets/{run_cfg['dataset']}/factors.parquet",
            "excluded_cells": int(excluded.to_numpy().sum()),
            "reference": "system 'reference' = the reference text scored against the rendered truth (the ceiling)",
        },
    }
    atomic_write_json(tmp / "metrics.json", _jsonable(metrics))
    long = pd.DataFrame(long_rows, columns=["system", "metric", "variant", "value"])
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype("float64")
    atomic_write_parquet(tmp / "metrics.parquet", long)
    atomic_write_parquet(tmp / "per_report.parquet", pd.concat(per_report, ignore_index=True))
    return {
        "inputs": {str(run_dir / "reports.jsonl"): file_sha256(run_dir / "reports.jsonl")},
        "rows": {"reports": n, "systems": len(systems)},
        "skipped": skipped,
        "extra": {"headline": gaps, "meteor_status": meteor_status},
    }


# ----------------------------------------------------------------------------------------------------- headline
_HEADLINE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("BLEU-4", "nlg", "BLEU-4"),
    ("ROUGE-L", "nlg", "ROUGE-L"),
    ("METEOR", "nlg", "METEOR"),
    ("CIDEr-D", "nlg", "CIDEr-D"),
    ("clinical F1 micro-5 (u=pos)", "clinical", HEADLINE),
    ("clinical F1 micro-14 (u=pos)", "clinical", "f1 micro · CheXpert-14 · uncertain=positive"),
    ("clinical F1 macro-14 (u=pos)", "clinical", "f1 macro · CheXpert-14 · uncertain=positive"),
    ("grounding F1 micro-13 (u=pos)", "grounding", "grounding f1|micro · 13 drawable labels · uncertain=positive"),
    ("hallucination / finding (u=pos)", "grounding", "hallucination rate|per finding · uncertain=positive"),
    ("hallucination / report (u=pos)", "grounding", "hallucination rate|per report · uncertain=positive"),
    ("side accuracy", "grounding", "side accuracy|sentences stating it · uncertain=positive"),
    ("zone accuracy", "grounding", "zone accuracy|sentences stating it · uncertain=positive"),
)


def headline_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Systems × key metrics from a ``metrics.json`` dict (rows in the order cxrlens, constant, random, nearest,
    reference — the last only on phantoms).

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
            src = {"nlg": s.get("nlg", {}), "clinical": clin, "grounding": grd}[family]
            value = src.get(key)
            row[col] = float(value) if value is not None else float("nan")
        rows[name] = row
    order = ["cxrlens", *BASELINES, "reference"]
    names = sorted(rows, key=lambda k: (order.index(k) if k in order else len(order), k))
    table = pd.DataFrame.from_dict({k: rows[k] for k in names}, orient="index")
    table.index.name = "system"
    return table
