"""``report.html`` for a report run: a few studies with image, evidence heatmaps, generated vs reference report.

For each chosen study the heatmap of every evidence feature is computed on that image with
:func:`cxrlens.interpret.heatmaps.feature_heatmaps` (its method — gradient × input at the patch embedding for an
SAE on CLS tokens of a ViT — is named on the page), drawn over the image as the model sees it and written to
``reports/<run>/heatmaps/<image_id>-f<feature>.png``; the page embeds them (self-contained, offline).

Every map shown is put through the parameter-randomisation sanity check
(:func:`~cxrlens.interpret.heatmaps.heatmap_sanity`, on all shown (image, feature) pairs at once); its verdict and
per-step similarities go to ``reports/<run>/heatmap_sanity.json`` and onto the page. A failed check is shown as
such — the maps are then not evidence of *where*, only of *which* features.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlens.data.images import load_image
from cxrlens.data.store import image_file, read_studies
from cxrlens.files import atomic_write_json
from cxrlens.interpret.heatmaps import feature_heatmaps, heatmap_method, heatmap_sanity, model_view, overlay_png
from cxrlens.report.compile import NORMAL_IMPRESSION
from cxrlens.report.render import StudyView, render_html, write_html
from cxrlens.report.run import read_reports
from cxrlens.workspace import Workspace, read_manifest

__all__ = ["pick_studies", "write_showcase"]


def pick_studies(reports: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` reports to show: non-empty ones, those whose impression states a finding first (then normal ones),
    seeded."""

    rng = np.random.default_rng(seed)
    nonempty = reports[reports["generated_text"].str.len() > 0]
    pool = nonempty if len(nonempty) else reports
    positive = pool[pool["report"].map(lambda r: any(s["text"] != NORMAL_IMPRESSION for s in r.get("impression", [])))]
    order = rng.permutation(len(pool))
    picked = pool.iloc[order]
    picked = pd.concat([picked[picked.index.isin(positive.index)], picked[~picked.index.isin(positive.index)]])
    return picked.head(n)


def write_showcase(
    ws: Workspace,
    run: str,
    model: Any,
    *,
    n_studies: int = 6,
    heatmaps: bool = True,
    summary: Mapping | pd.DataFrame | None = None,
    seed: int = 0,
) -> Path:
    """Write ``reports/<run>/report.html`` (and its heatmap PNGs); returns the page's path.

    ``model`` is the run's :class:`~cxrlens.report.run.ReportModel` (heatmaps need its backbone and SAE).
    """

    out_dir = ws.reports(run)
    cfg = read_manifest(out_dir).config
    reports = read_reports(ws, run)
    studies = read_studies(ws, cfg["dataset"]).drop_duplicates("image_id").set_index("image_id")
    ds_dir = ws.dataset(cfg["dataset"])
    views = []
    method = None
    pairs: list[tuple[Any, int]] = []  # (gray image, feature) of every map shown, for the sanity check
    for row in pick_studies(reports, n_studies, seed).itertuples():
        path = image_file(ds_dir, studies.loc[row.image_id, "image_path"])
        maps: dict[int, str] = {}
        feats = sorted({e["feature"] for s in row.report["findings"] for e in s["evidence"]})
        if heatmaps and feats and model.backbone_spec:
            gray = torch.from_numpy(np.asarray(load_image(path), np.float32))[None]
            batch = gray.expand(len(feats), -1, -1)
            res = feature_heatmaps(
                model.backbone, model.sae, layer=model.layer, token=model.token, images_BHW=batch, features=feats
            )
            method = heatmap_method(model.backbone, model.token)
            view = model_view(model.backbone, gray)[0]
            pairs += [(gray[0], int(f)) for f in feats]
            for f, m in zip(feats, res.maps, strict=True):
                target = out_dir / "heatmaps" / f"{row.image_id}-f{f}.png"
                target.parent.mkdir(exist_ok=True)
                overlay_png(view, m, target)
                maps[int(f)] = str(target)
        views.append(
            StudyView(
                image_id=str(row.image_id),
                image_path=str(path),
                report=row.report,
                reference=row.reference_text,
                descriptions=model.descriptions,
                heatmaps=maps,
                extra={"study": str(row.study_id), "heatmaps": method or "none"},
            )
        )
    if pairs:
        verdict = _sanity(model, pairs, out_dir / "heatmap_sanity.json")
        views = [dataclasses.replace(v, extra={**v.extra, "heatmap sanity check": verdict}) for v in views]
    page = render_html(views, title=f"cxrlens reports — {run}", summary=summary)
    return write_html(out_dir / "report.html", page)


def _sanity(model: Any, pairs: list[tuple[Any, int]], path: Path, max_maps: int = 16, seed: int = 0) -> str:
    """Run the randomisation check on (a seeded sample of at most ``max_maps`` of) the shown maps; write its table;
    return a one-line verdict."""

    sizes = {tuple(g.shape) for g, _ in pairs}
    if len(sizes) > 1:  # the check batches images: keep those of the most common size
        common = max(sizes, key=lambda s: sum(tuple(g.shape) == s for g, _ in pairs))
        pairs = [(g, f) for g, f in pairs if tuple(g.shape) == common]
    if len(pairs) > max_maps:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), max_maps, replace=False))
        pairs = [pairs[i] for i in keep]
    images = torch.stack([g for g, _ in pairs])
    check = heatmap_sanity(
        model.backbone,
        model.sae,
        layer=model.layer,
        token=model.token,
        images_BHW=images,
        features=[f for _, f in pairs],
        draws=2,
    )
    table = check.table()
    atomic_write_json(
        path,
        {
            "passed": bool(check.passed),
            "informative_maps": int(check.informative),
            "maps": len(pairs),
            "notes": list(check.notes),
            "steps": json.loads(table.to_json(orient="records")),
        },
    )
    word = (
        "passed" if check.passed else "FAILED (maps do not depend enough on the parameters; do not read them as where)"
    )
    return f"{word}; {check.informative}/{len(pairs)} maps informative; details in {path.name}"
