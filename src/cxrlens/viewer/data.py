"""Everything the viewer reads from the workspace, and the paging/sorting/filtering of what it serves.

All workspace access of the viewer goes through :class:`WorkspaceData`, so when a stage's artefact or reader moves
only this module changes. Tables are read once and kept in memory, keyed by the stat of the files they came from
(a stage that rewrites an artefact is picked up on the next request). Nothing here writes to the workspace except
the thumbnail cache (:mod:`cxrlens.viewer.thumbs`).

Every name that reaches a path (dataset, run, file under a run) is checked: run and dataset names are plain names,
file paths are resolved and must stay inside the workspace; image paths of a study table are served only when they
resolve inside the workspace root.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrlens.align.stages import search_text
from cxrlens.data.phantom.render import read_label_masks
from cxrlens.data.phantom.spec import LABEL_CHANNELS
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.data.store import image_file, read_side_table, read_studies
from cxrlens.errors import BadInputError
from cxrlens.evaluate.run import read_evaluation
from cxrlens.evaluate.tables import headline_table
from cxrlens.interpret.run import read_interpretation
from cxrlens.interpret.views import read_feature_heatmaps
from cxrlens.report.run import read_reports
from cxrlens.viewer.errors import BadRequest, Forbidden, NotFound
from cxrlens.workspace import Workspace, read_manifest

__all__ = [
    "FEATURE_SORTS",
    "FIGURE_SUFFIXES",
    "TABLE_SUFFIXES",
    "FeatureQuery",
    "WorkspaceData",
    "check_name",
    "clean",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
FEATURE_SORTS = ("feature", "frequency", "n_active", "max", "auc", "score", "confidence", "best_label", "description")
FIGURE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
TABLE_SUFFIXES = (".parquet", ".csv", ".json")
SERVED_SUFFIXES = {
    **FIGURE_SUFFIXES,
    ".csv": "text/csv",
    ".json": "application/json",
    ".md": "text/markdown",
    ".html": "text/html",
}
MAX_TABLE_ROWS = 200
ANALYSIS_KINDS = ("analysis", "align", "lt-vit")  # artefact kinds whose figures and tables the analysis page shows
FILE_KINDS = (*ANALYSIS_KINDS, "interpret", "datasets", "reports")  # kinds whose figures may be served
_FEATURE_COLUMNS = ("feature", "frequency", "n_active", "max", "threshold", "best_label", "auc", "verdict")


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain artefact name (letters, digits, ``.``, ``_``, ``-``; no separators), else 400."""
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
        raise BadRequest(f"{what} {value!r} is not a valid name (letters, digits, '.', '_', '-'; no '/' or '..')")
    return value


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars and arrays → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


@dataclasses.dataclass(frozen=True)
class FeatureQuery:
    """One page of the feature browser.

    Attributes:
        sort: one of :data:`FEATURE_SORTS`; ``order``: ``asc`` or ``desc`` (missing values always last).
        q: case-insensitive substring of the description or best label; ``label``: best label equals this.
        described: only features with a description (True) or only without (False); None = all.
        min_frequency / min_auc: lower bounds; offset / limit: the page.
    """

    sort: str = "frequency"
    order: str = "desc"
    q: str = ""
    label: str = ""
    described: bool | None = None
    min_frequency: float | None = None
    min_auc: float | None = None
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in FEATURE_SORTS:
            raise BadRequest(f"sort must be one of {', '.join(FEATURE_SORTS)}, got {self.sort!r}")
        if self.order not in ("asc", "desc"):
            raise BadRequest(f"order must be asc or desc, got {self.order!r}")
        if self.offset < 0 or self.limit < 1:
            raise BadRequest("offset must be ≥ 0 and limit ≥ 1")


class _Cache:
    """A small LRU of loaded tables keyed by (key, stat of the source files); thread-safe."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, sources: Iterable[Path], load: Callable[[], Any]) -> Any:
        stamp = []
        for p in sources:
            try:
                st = p.stat()
                stamp.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append((str(p), None, None))
        full = (key, tuple(stamp))
        with self.lock:
            if full in self.items:
                self.items.move_to_end(full)
                return self.items[full]
        value = load()
        with self.lock:
            self.items[full] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def _described(desc: pd.DataFrame) -> pd.Series:
    return desc["sentences"].map(lambda s: s is not None and len(s) > 0)


class WorkspaceData:
    """Read-only access to one workspace for the viewer (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.ws = Workspace(Path(root))
        self.root = self.ws.root
        self._cache = _Cache()

    # ------------------------------------------------------------------------------------------------ paths
    def inside(self, path: Path) -> Path:
        """``path`` resolved (symlinks followed); 403 unless it lies inside the workspace root."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise Forbidden("path is outside the workspace")
        return resolved

    def _artefact(self, kind: str, name: str, what: str) -> Path:
        check_name(name, what)
        d = self.ws.path(kind, name)
        if read_manifest(d) is None:
            raise NotFound(f"{what} {name!r} not found in the workspace (no complete {kind}/{name})")
        return d

    def _names(self, kind: str) -> list[str]:
        d = self.root / kind
        if not d.is_dir():
            return []
        return sorted(
            p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and NAME_RE.match(p.name)
        )

    # --------------------------------------------------------------------------------------------- overview
    def overview(self) -> dict[str, Any]:
        """Datasets, interpretation runs, report runs (with their headline metrics) and analysis runs."""
        datasets = []
        for name in self._names("datasets"):
            m = read_manifest(self.ws.dataset(name))
            datasets.append(
                {
                    "name": name,
                    "complete": m is not None,
                    "stage": m.stage if m else None,
                    "rows": m.rows if m else {},
                    "created": m.created if m else None,
                    "phantom": (self.ws.dataset(name) / "masks").is_dir(),
                }
            )
        return clean(
            {
                "workspace": str(self.root),
                "datasets": datasets,
                "interpret": self.interpret_runs(),
                "reports": self.report_runs(),
                "analysis": [f"{a['kind']}/{a['name']}" for a in self.analysis_runs() if a["kind"] in ANALYSIS_KINDS],
                "search_indexes": self.search_indexes(),
            }
        )

    def interpret_runs(self) -> list[dict[str, Any]]:
        out = []
        for name in self._names("interpret"):
            m = read_manifest(self.ws.interpret(name))
            if m is None:
                continue
            scores = m.extra.get("description_scores") or {}
            out.append(
                {
                    "name": name,
                    "dataset": m.extra.get("dataset"),
                    "sae": m.config.get("sae"),
                    "features": m.rows.get("features"),
                    "described": m.rows.get("described"),
                    "mean_description_auc": scores.get("mean_auc"),
                    "created": m.created,
                }
            )
        return out

    def report_runs(self) -> list[dict[str, Any]]:
        out = []
        for name in self._names("reports"):
            d = self.ws.reports(name)
            m = read_manifest(d)
            if m is None:
                continue
            out.append(
                {
                    "name": name,
                    "interpret": m.config.get("interpret"),
                    "dataset": m.config.get("dataset"),
                    "split": m.config.get("split"),
                    "reports": m.rows.get("reports"),
                    "empty_reports": m.rows.get("empty_reports"),
                    "created": m.created,
                    "metrics": self.metrics(name),
                }
            )
        return out

    def metrics(self, run: str) -> dict[str, Any] | None:
        """Headline metrics of ``reports/<run>/evaluation/metrics.json`` (systems × key metrics), or None."""
        path = self.ws.reports(check_name(run, "report run")) / "evaluation" / "metrics.json"
        if not path.exists():
            return None

        def load() -> dict[str, Any] | None:
            try:
                metrics = read_evaluation(self.ws, run)
                table = headline_table(metrics)
            except BadInputError as exc:
                return {"error": exc.problem}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return {"error": f"metrics.json unreadable ({type(exc).__name__})"}
            return {
                "headline_metric": metrics.get("headline_metric"),
                "n_reports": metrics.get("n_reports"),
                "columns": list(table.columns),
                "rows": [{"system": s, "values": list(r)} for s, r in zip(table.index, table.to_numpy(), strict=True)],
            }

        return self._cache.get(("metrics", run), [path], load)

    # --------------------------------------------------------------------------------------------- features
    def _interpret_manifest(self, run: str) -> Any:
        d = self._artefact("interpret", run, "interpretation run")
        return read_manifest(d)

    def feature_table(self, run: str) -> pd.DataFrame:
        """Features joined with their descriptions: one row per feature, the browser's columns."""
        d = self._artefact("interpret", run, "interpretation run")

        def load() -> pd.DataFrame:
            try:
                feats, desc = read_interpretation(self.ws, run)
            except BadInputError as exc:
                raise NotFound(str(exc)) from None
            table = feats[[c for c in _FEATURE_COLUMNS if c in feats.columns]].copy()
            d2 = desc.set_index("feature")
            table["description"] = table["feature"].map(d2["description"]).fillna("").astype(str)
            table["confidence"] = table["feature"].map(d2["confidence"]).astype(float)
            table["score"] = table["feature"].map(d2["score_auc"]).astype(float) if "score_auc" in d2 else np.nan
            table["described"] = table["feature"].map(_described(d2)).fillna(False).astype(bool)
            table.loc[~table["described"], "description"] = ""
            table["_text"] = (table["description"] + " " + table["best_label"].fillna("").astype(str)).str.lower()
            return _indexed(table, "feature").sort_index()

        return self._cache.get(("features", run), [d / "features.parquet", d / "descriptions.parquet"], load)

    def descriptions(self, run: str) -> dict[int, str]:
        """Feature → description of the run's described features."""
        d = self.ws.interpret(run)

        def load() -> dict[int, str]:
            ft = self.feature_table(run)
            return {int(k): str(v) for k, v in ft.loc[ft["described"], "description"].items()}

        return self._cache.get(("descriptions", run), [d / "features.parquet", d / "descriptions.parquet"], load)

    def features_page(self, run: str, query: FeatureQuery) -> dict[str, Any]:
        """One page of the feature table: ``total`` (after filtering), ``offset``, ``limit`` and ``rows``."""
        table = self.feature_table(run)
        mask = np.ones(len(table), bool)
        if query.q:
            mask &= table["_text"].str.contains(query.q.lower(), regex=False).to_numpy()
        if query.label:
            mask &= (table["best_label"] == query.label).to_numpy()
        if query.described is not None:
            mask &= (table["described"] == query.described).to_numpy()
        if query.min_frequency is not None:
            mask &= (table["frequency"] >= query.min_frequency).to_numpy()
        if query.min_auc is not None:
            mask &= (table["auc"] >= query.min_auc).to_numpy()
        sub = table[mask] if not mask.all() else table
        if query.sort != "feature":
            sub = sub.sort_values(
                [query.sort, "feature"], ascending=[query.order == "asc", True], na_position="last", kind="stable"
            )
        elif query.order == "desc":
            sub = sub.iloc[::-1]
        page = sub.iloc[query.offset : query.offset + query.limit]
        rows = page.drop(columns=["_text"]).to_dict(orient="records")
        return clean(
            {
                "run": run,
                "total": len(sub),
                "features": len(table),
                "offset": query.offset,
                "limit": query.limit,
                "sort": query.sort,
                "order": query.order,
                "rows": rows,
            }
        )

    def feature_labels(self, run: str) -> list[str]:
        """Distinct best labels of the run's features (the browser's label filter)."""
        return sorted(self.feature_table(run)["best_label"].dropna().astype(str).unique().tolist())

    def _feature_rows(self, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        d = self.ws.interpret(run)

        def load() -> tuple[pd.DataFrame, pd.DataFrame]:
            feats, desc = read_interpretation(self.ws, run)
            return _indexed(feats, "feature"), _indexed(desc, "feature")

        return self._cache.get(("feature-rows", run), [d / "features.parquet", d / "descriptions.parquet"], load)

    def feature(self, run: str, feature: int) -> dict[str, Any]:
        """Everything the feature page shows: description and confidence, top images with heatmaps (patch grid),
        non-activating examples, label association (AUC per label and phantom factor) and an activation histogram
        of the images the interpretation recorded (top-k; the non-activating ones count as zeros)."""
        m = self._interpret_manifest(run)
        feats, desc = self._feature_rows(run)
        if feature not in feats.index:
            raise NotFound(
                f"feature {feature} not in interpretation run {run!r} ({len(feats)} features, 0…{len(feats) - 1})"
            )
        row = feats.loc[feature]
        drow = desc.loc[feature] if feature in desc.index else None
        top_ids = [str(i) for i in (row.get("top_image_ids") if row.get("top_image_ids") is not None else [])]
        top_act = [float(a) for a in (row.get("top_activations") if row.get("top_activations") is not None else [])]
        random_ids = [str(i) for i in (row.get("random_image_ids") if row.get("random_image_ids") is not None else [])]
        maps = self.feature_heatmaps(run, feature)
        labels = [{"label": c.removeprefix("auc."), "auc": row[c]} for c in feats.columns if c.startswith("auc.")]
        factors = [
            {"factor": c.removeprefix("factor."), "auc": row[c]} for c in feats.columns if c.startswith("factor.")
        ]
        values = np.asarray(top_act + [0.0] * len(random_ids), float)
        hist: dict[str, Any] = {"counts": [], "edges": [], "source": "recorded images (top-k and non-activating)"}
        if len(values):
            hi = max(float(values.max()), 1e-6)
            counts, edges = np.histogram(values, bins=12, range=(0.0, hi))
            hist.update(counts=counts.tolist(), edges=edges.tolist())
        description = None
        if drow is not None:
            sentences = drow.get("sentences")
            description = {
                "text": str(drow.get("description", "")),
                "sentences": [str(s) for s in (sentences if sentences is not None else [])],
                "confidence": drow.get("confidence"),
                "score_auc": drow.get("score_auc"),
                "sim_top": drow.get("sim_top"),
                "sim_random": drow.get("sim_random"),
                "describer": drow.get("describer"),
                "skip_reason": drow.get("skip_reason") or None,
                "findings": list(drow.get("findings")) if drow.get("findings") is not None else [],
            }
        grid = m.extra.get("grid")
        return clean(
            {
                "run": run,
                "feature": feature,
                "dataset": m.extra.get("dataset"),
                "grid": grid,
                "stats": {c: row.get(c) for c in _FEATURE_COLUMNS if c in row.index}
                | {
                    k: row.get(k)
                    for k in (
                        "mean_active",
                        "cooccurring_label",
                        "auc_without_cooccurring",
                        "factor_auc",
                        "side",
                        "third",
                    )
                },
                "description": description,
                "top_images": [
                    {"image_id": i, "activation": a, "heatmap": maps.get(i)}
                    for i, a in zip(top_ids, top_act + [None] * (len(top_ids) - len(top_act)), strict=False)
                ],
                "non_activating": [{"image_id": i} for i in random_ids],
                "labels": labels,
                "factors": factors,
                "histogram": hist,
                "heatmaps": bool(maps),
            }
        )

    def feature_heatmaps(self, run: str, feature: int) -> dict[str, list[list[float]]]:
        """``{image_id: (h, w) map normalised to [0, 1]}`` of a feature's top images, from ``heatmaps.safetensors``
        (written for the most frequent described features only); empty when the feature has none."""
        try:
            maps = read_feature_heatmaps(self.ws, run, feature)
        except Exception:  # an unreadable heatmap file hides the overlays, it does not break the page
            return {}
        if maps is None:
            return {}
        feats, _ = self._feature_rows(run)
        ids = [str(i) for i in feats.loc[feature, "top_image_ids"]]
        out = {}
        for image_id, m in zip(ids, maps, strict=False):
            out[image_id] = _normalised(m)
        return out

    # ---------------------------------------------------------------------------------------------- images
    def studies(self, dataset: str) -> pd.DataFrame:
        """Study table of ``dataset`` indexed by ``image_id`` (first row per image)."""
        check_name(dataset, "dataset")
        d = self.ws.dataset(dataset)

        def load() -> pd.DataFrame:
            try:
                table = read_studies(self.ws, dataset)
            except BadInputError as exc:
                raise NotFound(str(exc)) from None
            return _indexed(table.drop_duplicates("image_id"), "image_id", str)

        return self._cache.get(("studies", dataset), [d / "studies.parquet"], load)

    def image_path(self, dataset: str, image_id: str) -> Path:
        """The file of ``image_id`` in ``dataset``; 404 when unknown or missing, 403 when outside the workspace."""
        table = self.studies(dataset)
        if image_id not in table.index:
            raise NotFound(f"image {image_id!r} not in dataset {dataset!r}")
        path = self.inside(image_file(self.ws.dataset(dataset), table.at[image_id, "image_path"]))
        if not path.is_file():
            raise NotFound(f"the file of image {image_id!r} is missing from dataset {dataset!r}")
        return path

    def masks(self, dataset: str, image_id: str) -> np.ndarray | None:
        """(13, H, W) bool phantom ground-truth masks of ``image_id``, or None when the dataset has none."""
        self.studies(dataset)  # the dataset exists
        path = self.ws.dataset(dataset) / "masks" / f"{image_id}.png"
        if not (path.parent.is_dir() and NAME_RE.match(image_id)):
            return None
        path = self.inside(path)
        if not path.is_file():
            return None
        try:
            return read_label_masks(path)
        except (OSError, ValueError):
            return None

    def mask_labels(self, dataset: str, image_id: str) -> list[str]:
        masks = self.masks(dataset, image_id)
        if masks is None:
            return []
        return [label for label, m in zip(LABEL_CHANNELS, masks, strict=True) if m.any()]

    def mask(self, dataset: str, image_id: str, label: str) -> np.ndarray:
        """One label's (H, W) bool mask; 404 when the image has no masks or ``label`` is unknown."""
        if label not in LABEL_CHANNELS:
            raise BadRequest(f"label must be one of {', '.join(LABEL_CHANNELS)}, got {label!r}")
        masks = self.masks(dataset, image_id)
        if masks is None:
            raise NotFound(f"image {image_id!r} of dataset {dataset!r} has no ground-truth masks")
        return masks[LABEL_CHANNELS.index(label)]

    def factors(self, dataset: str) -> pd.DataFrame | None:
        d = self.ws.dataset(check_name(dataset, "dataset"))
        if not (d / "factors.parquet").exists():
            return None

        def load() -> pd.DataFrame:
            return _indexed(read_side_table(self.ws, dataset, "factors").drop_duplicates("image_id"), "image_id", str)

        return self._cache.get(("factors", dataset), [d / "factors.parquet"], load)

    # --------------------------------------------------------------------------------------------- reports
    def _report_manifest(self, run: str) -> Any:
        return read_manifest(self._artefact("reports", run, "report run"))

    def report_table(self, run: str) -> pd.DataFrame:
        d = self._artefact("reports", run, "report run")

        def load() -> pd.DataFrame:
            try:
                table = read_reports(self.ws, run)
            except BadInputError as exc:
                raise NotFound(str(exc)) from None
            table = _indexed(table.drop_duplicates("image_id"), "image_id", str)
            table["n_sentences"] = table["report"].map(lambda r: _n_sentences(r))
            return table

        return self._cache.get(("reports", run), [d / "reports.jsonl"], load)

    def studies_page(self, run: str, q: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of a report run's studies: image id, study id, split, number of sentences, generated text."""
        if offset < 0 or limit < 1:
            raise BadRequest("offset must be ≥ 0 and limit ≥ 1")
        table = self.report_table(run)
        if q:
            ql = q.lower()
            hit = table["image_id"].astype(str).str.lower().str.contains(ql, regex=False) | table[
                "generated_text"
            ].fillna("").str.lower().str.contains(ql, regex=False)
            table = table[hit.to_numpy()]
        page = table.iloc[offset : offset + limit]
        rows = [
            {
                "image_id": str(r.image_id),
                "study_id": str(getattr(r, "study_id", "")),
                "split": str(getattr(r, "split", "")),
                "sentences": int(r.n_sentences),
                "generated_text": str(r.generated_text or ""),
            }
            for r in page.itertuples()
        ]
        return {"run": run, "total": len(table), "offset": offset, "limit": limit, "rows": rows}

    def study(self, run: str, image_id: str) -> dict[str, Any]:
        """One study of a report run: generated report (every sentence with its evidence, feature descriptions
        and an evidence map on the patch grid when there is one), reference report, labels and ground truth."""
        m = self._report_manifest(run)
        table = self.report_table(run)
        if image_id not in table.index:
            raise NotFound(f"image {image_id!r} has no report in run {run!r}")
        row = table.loc[image_id]
        dataset = str(m.config.get("dataset") or "")
        interp = str(m.config.get("interpret") or "")
        grid = None
        if interp and NAME_RE.match(interp) and read_manifest(self.ws.interpret(interp)) is not None:
            grid = read_manifest(self.ws.interpret(interp)).extra.get("grid")
        else:
            interp = ""
        report = row["report"] if isinstance(row["report"], dict) else {}
        sections = self.present_report(report, interp or None, image_id, grid)
        labels: dict[str, Any] = {}
        study_row: dict[str, Any] = {}
        has_image = False
        if dataset:
            try:
                studies = self.studies(dataset)
            except NotFound:
                studies = None
            if studies is not None and image_id in studies.index:
                srow = studies.loc[image_id]
                labels = {lab: srow[lab] for lab in CHEXPERT_LABELS if lab in srow.index}
                study_row = {k: srow[k] for k in ("study_id", "patient_id", "view", "split") if k in srow.index}
                has_image = True
        truth = None
        if dataset and has_image:
            present = self.mask_labels(dataset, image_id)
            factors = self.factors(dataset)
            drawn = []
            if factors is not None and image_id in factors.index:
                frow = factors.loc[image_id]
                for c in factors.columns:
                    if c.endswith(".present") and bool(frow[c] == 1):
                        kind = c.removesuffix(".present")
                        drawn.append({"kind": kind, "side": frow.get(f"{kind}.side"), "zone": frow.get(f"{kind}.zone")})
            if present or drawn:
                truth = {"masks": present, "drawn": drawn}
        return clean(
            {
                "run": run,
                "image_id": image_id,
                "dataset": dataset,
                "interpret": interp or None,
                "grid": grid,
                "has_image": has_image,
                "study": study_row,
                "generated": sections,
                "generated_text": row.get("generated_text") or "",
                "reference_text": row.get("reference_text") or "",
                "labels": labels,
                "ground_truth": truth,
            }
        )

    def present_report(
        self, report: dict[str, Any], interp: str | None, image_id: str | None, grid: list[int] | None
    ) -> dict[str, list[dict[str, Any]]]:
        """A compiled report's JSON (``CompiledReport.to_json``) as the study page shows it: per section the
        sentences with their evidence (each with its feature's description) and an evidence map normalised to
        [0, 1] on the patch grid — the sentence's own map (readout reports), else the first evidence feature's
        heatmap of this image when the interpretation stored one (feature-compiled reports), else None."""
        descriptions = self.descriptions(interp) if interp else {}
        sections: dict[str, list[dict[str, Any]]] = {}
        for key in ("findings", "impression", "dropped_contradictions"):
            sentences = []
            for s in report.get(key) or []:
                evidence = [
                    {**e, "description": descriptions.get(int(e.get("feature", -1)))} for e in s.get("evidence") or []
                ]
                emap = s.get("evidence_map")
                sgrid = s.get("grid") or grid
                evidence_map = None
                if emap is not None and sgrid and len(emap) == int(sgrid[0]) * int(sgrid[1]):
                    evidence_map = _normalised(np.asarray(emap, np.float32).reshape(int(sgrid[0]), int(sgrid[1])))
                elif interp and image_id is not None:
                    for e in evidence:
                        hm = self.feature_heatmaps(interp, int(e["feature"])).get(image_id)
                        if hm is not None:
                            evidence_map = hm
                            break
                sentences.append(
                    {
                        "text": s.get("text", ""),
                        "region": s.get("region"),
                        "finding": s.get("finding"),
                        "side": s.get("side"),
                        "zone": s.get("zone"),
                        "score": s.get("score"),
                        "evidence": evidence,
                        "evidence_map": evidence_map,
                    }
                )
            sections[key] = sentences
        return clean(sections)

    # -------------------------------------------------------------------------------------------- analysis
    def analysis_runs(self) -> list[dict[str, Any]]:
        """Every run under ``analysis/``, ``align/`` and ``lt-vit/`` with its stage, figures and tables, plus the
        interpretation runs' figures."""
        out = []
        for kind in (*ANALYSIS_KINDS, "interpret"):
            for name in self._names(kind):
                d = self.root / kind / name
                m = read_manifest(d)
                figures, tables = [], []
                for p in sorted(d.rglob("*")):
                    if not p.is_file() or any(part.startswith(".") for part in p.relative_to(d).parts):
                        continue
                    rel = p.relative_to(d).as_posix()
                    if p.suffix.lower() in FIGURE_SUFFIXES:
                        figures.append(rel)
                    elif kind in ANALYSIS_KINDS and p.suffix.lower() in TABLE_SUFFIXES and p.name != "manifest.json":
                        tables.append(rel)
                if kind == "interpret" and not figures:
                    continue
                out.append(
                    {
                        "kind": kind,
                        "name": name,
                        "stage": m.stage if m else None,
                        "complete": m is not None,
                        "figures": figures,
                        "tables": tables,
                    }
                )
        return out

    def artefact_file(self, kind: str, name: str, rel: str) -> tuple[Path, str]:
        """(path, media type) of a file under ``<kind>/<name>/`` the viewer serves (figures, csv/json/md/html)."""
        if kind not in FILE_KINDS:
            raise Forbidden(f"files of {kind!r} are not served (only {', '.join(FILE_KINDS)})")
        check_name(name, kind)
        parts = rel.replace("\\", "/").split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise BadRequest(f"file path {rel!r} must be a plain relative path (no '..', no hidden parts)")
        base = self.root / kind / name
        path = self.inside(base.joinpath(*parts))
        if base.resolve() not in path.parents:
            raise Forbidden("path is outside the artefact")
        media = SERVED_SUFFIXES.get(path.suffix.lower())
        if media is None:
            raise Forbidden(f"files of type {path.suffix or '(none)'!r} are not served")
        if not path.is_file():
            raise NotFound(f"no file {rel!r} in {kind}/{name}")
        return path, media

    def analysis_table(
        self, kind: str, name: str, rel: str, offset: int = 0, limit: int = MAX_TABLE_ROWS
    ) -> dict[str, Any]:
        """Up to ``limit`` rows of a parquet/csv/json table under ``<kind>/<name>/`` (kind: analysis, align, lt-vit)."""
        if offset < 0 or not 1 <= limit <= MAX_TABLE_ROWS:
            raise BadRequest(f"offset must be ≥ 0 and limit in 1…{MAX_TABLE_ROWS}")
        if kind not in ANALYSIS_KINDS:
            raise Forbidden(f"tables of {kind!r} are not served (only {', '.join(ANALYSIS_KINDS)})")
        check_name(name, "run")
        parts = rel.replace("\\", "/").split("/")
        if not rel or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise BadRequest(f"file path {rel!r} must be a plain relative path (no '..', no hidden parts)")
        base = self.root / kind / name
        path = self.inside(base.joinpath(*parts))
        if base.resolve() not in path.parents:
            raise Forbidden("path is outside the artefact")
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise Forbidden(f"{rel!r} is not a table (parquet, csv or json)")
        if not path.is_file():
            raise NotFound(f"no table {rel!r} in {kind}/{name}")

        def load() -> pd.DataFrame | dict:
            if path.suffix.lower() == ".parquet":
                return pd.read_parquet(path)
            if path.suffix.lower() == ".csv":
                return pd.read_csv(path)
            return json.loads(path.read_text(encoding="utf-8"))

        try:
            table = self._cache.get(("table", kind, name, rel), [path], load)
        except (OSError, ValueError) as exc:
            raise BadRequest(f"{rel!r} is not readable as a table ({type(exc).__name__})") from None
        if isinstance(table, pd.DataFrame):
            page = table.iloc[offset : offset + limit]
            cells = [[_cell(v) for v in r] for r in page.itertuples(index=False)]
            return clean({"columns": [str(c) for c in table.columns], "rows": cells, "total": len(table)})
        return clean({"json": table})

    # ---------------------------------------------------------------------------------------------- search
    def search_indexes(self) -> list[str]:
        """Align runs that have a complete search index (``align/<run>-index``, stage ``align.index``)."""
        out = []
        for name in self._names("align"):
            m = read_manifest(self.root / "align" / name)
            if m is not None and m.stage == "align.index" and name.endswith("-index"):
                out.append(name.removesuffix("-index"))
        return out

    def search(self, query: str, run: str | None, k: int) -> dict[str, Any]:
        """Top-``k`` images for a text query against an alignment index; 404 with the reason when there is none."""
        indexes = self.search_indexes()
        if not indexes:
            raise NotFound(
                "no alignment search index in this workspace; build one with `cxrlens align train` then "
                "`cxrlens align index --run RUN`"
            )
        run = run or indexes[0]
        check_name(run, "align run")
        if run not in indexes:
            raise NotFound(f"align run {run!r} has no search index (indexes: {', '.join(indexes)})")
        if not query.strip():
            raise BadRequest("query must not be empty")
        try:
            hits = search_text(self.ws, run, query, k)
        except BadInputError as exc:
            raise NotFound(str(exc)) from None
        dataset = self._align_dataset(run)
        return clean({"run": run, "dataset": dataset, "query": query, "hits": hits.to_dict(orient="records")})

    def _align_dataset(self, run: str) -> str:
        """The dataset an align run paired with: its config's, else its activation store's."""
        align = read_manifest(self.root / "align" / run)
        if align is None:
            return ""
        if align.config.get("dataset"):
            return str(align.config["dataset"])
        store = str(align.config.get("activations") or "")
        m = read_manifest(self.ws.activations(store)) if NAME_RE.match(store) else None
        if m is None:
            return ""
        return str(m.config.get("dataset") or m.extra.get("dataset") or "")


def _indexed(table: pd.DataFrame, column: str, cast: type | None = None) -> pd.DataFrame:
    """``table`` indexed by the values of ``column`` (kept as a column too; the index is unnamed)."""
    values = table[column].astype(cast) if cast is not None else table[column]
    out = table.copy()
    out.index = pd.Index(values.to_numpy())
    return out


def _n_sentences(report: Any) -> int:
    if not isinstance(report, dict):
        return 0
    return sum(len(report.get(k) or []) for k in ("findings", "impression"))


def _normalised(m: np.ndarray) -> list[list[float]]:
    """A map scaled to [0, 1] (by its maximum; negative values clipped), rounded to 3 decimals for JSON."""
    m = np.nan_to_num(np.asarray(m, np.float32), nan=0.0)
    m = np.clip(m, 0.0, None)
    top = float(m.max()) if m.size else 0.0
    if top > 0:
        m = m / top
    return np.round(m, 3).tolist()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        return str(clean(value))[:200]
    return value
