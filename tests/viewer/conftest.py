"""One real workspace for every viewer test, built once per session: the demo's chain on 40 phantom images
(import, phantoms, activations, SAE, interpretation, test-split reports, evaluation — the stages and configs of
``run_demo`` without its controls, pointing game and summary, which the viewer does not read and which double the
time), plus what a 40-image run is too small to produce, written with the library's own types so the schema is the
pipeline's: a report run whose sentences carry evidence and evidence maps (the 40-image readout states nothing), a
heatmap file for one feature, and an analysis run with a figure and a table. A small alignment adapter (3 epochs)
and its search index make the search page real.

Under pytest-xdist the API and browser modules may run in two workers; the workspace is then built once, by whichever
worker comes first, in the run's shared temporary directory under an exclusive ``flock`` (the other waits and reuses
it), so ``make test`` pays for it once."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save

from cxrlens.activations import run_extract
from cxrlens.align import AlignConfig, SearchConfig, run_align_train
from cxrlens.align.stages import run_align_index
from cxrlens.data.iu_xray import IUXrayImportConfig, run_data_import_iu_xray
from cxrlens.data.phantom.datasets import IUPhantomConfig, run_data_build_iu_phantom
from cxrlens.demo import DEMO_SAE, demo_extract_config, demo_interpret_config, demo_sae_config
from cxrlens.evaluate.run import EvaluateConfig, run_evaluate_reports
from cxrlens.files import atomic_write_bytes, atomic_write_json, atomic_write_parquet, atomic_write_text
from cxrlens.interpret.run import run_interpret
from cxrlens.report.compile import CompiledReport, Evidence, ReportSentence
from cxrlens.report.run import ReportConfig, run_report
from cxrlens.sae.run import run_sae_train
from cxrlens.workspace import Workspace

INTERPRET = "iu-phantom-demo-patch"
REPORTS = "iu-phantom-demo-patch-test"
RICH = "viewer-fixture-test"  # the report run with sentences
ANALYSIS = "viewer-fixture-analysis"
ALIGN = "viewer-align"
GRID = (8, 8)


def _sentence(text: str, finding: str, features: list[int], peak: int) -> ReportSentence:
    emap = np.zeros(GRID[0] * GRID[1], np.float32)
    emap[peak] = 2.0
    emap[max(peak - 1, 0)] = 1.0
    return ReportSentence(
        text=text,
        region="lungs",
        signature=np.full(14, np.nan),
        evidence=[Evidence(f, 1.5 + i, 1.0, 0.8, contribution=0.5 / (i + 1)) for i, f in enumerate(features)],
        finding=finding,
        score=0.7,
        side="right",
        zone="lower",
        evidence_map=emap.tolist(),
        grid=GRID,
    )


def _enrich(ws: Workspace) -> dict:
    """Add the rich report run, a heatmap file and an analysis run; returns ids the tests use."""
    feats = pd.read_parquet(ws.interpret(INTERPRET) / "features.parquet")
    both = (feats["top_image_ids"].map(len) > 0) & (feats["random_image_ids"].map(len) > 0)
    fired = feats[both].sort_values("n_active", ascending=False)
    hm_feature = int(fired.iloc[0]["feature"])
    top_ids = [str(i) for i in fired.iloc[0]["top_image_ids"]]
    maps = np.random.default_rng(0).random((len(top_ids), *GRID)).astype(np.float16)
    atomic_write_bytes(
        ws.interpret(INTERPRET) / "heatmaps.safetensors", save({f"f{hm_feature}": maps}, metadata={"method": "test"})
    )

    src = ws.reports(REPORTS)
    dst = ws.reports(RICH)
    dst.mkdir(parents=True)
    rows = [json.loads(line) for line in (src / "reports.jsonl").read_text().splitlines() if line.strip()]
    for k, row in enumerate(rows):
        report = CompiledReport(
            findings=[
                _sentence("Small right pleural effusion.", "Pleural Effusion", [hm_feature, 7], 40 + k % 8),
                _sentence("Heart size is mildly enlarged.", "Cardiomegaly", [11], 20),
            ],
            impression=[_sentence("Right pleural effusion.", "Pleural Effusion", [hm_feature], 41)],
            dropped=[],
        )
        row["report"] = report.to_json()
        row["generated_text"] = "Small right pleural effusion. Heart size is mildly enlarged. Right pleural effusion."
    atomic_write_text(dst / "reports.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["rows"] = {"reports": len(rows), "empty_reports": 0}
    atomic_write_json(dst / "manifest.json", manifest)

    a = ws.analysis(ANALYSIS)
    a.mkdir(parents=True)
    shutil.copy(ws.interpret(INTERPRET) / "figures" / "overview.png", a / "figure.png")
    atomic_write_parquet(a / "table.parquet", pd.DataFrame({"label": ["Edema", "Cardiomegaly"], "auc": [0.71, 0.64]}))
    atomic_write_json(
        a / "manifest.json",
        {
            "stage": "analysis.test",
            "config": {},
            "config_hash": "0" * 64,
            "package_version": "test",
            "created": "2026-01-01T00:00:00+00:00",
        },
    )
    return {"heatmap_feature": hm_feature, "image_ids": [r["image_id"] for r in rows], "top_ids": top_ids}


def _build(root: Path) -> dict:
    ws = Workspace(root)
    run_data_import_iu_xray(ws, IUXrayImportConfig())
    run_data_build_iu_phantom(ws, IUPhantomConfig(n=40))
    acts = run_extract(ws, demo_extract_config("cxrlens:default"), show_progress=False)
    run_sae_train(ws, demo_sae_config(acts.path.name, 100, 256), run=DEMO_SAE, device="cpu")
    run_interpret(ws, demo_interpret_config())
    reports = run_report(ws, ReportConfig(interpret=DEMO_SAE, split="test"), show_progress=False)
    run_evaluate_reports(ws, EvaluateConfig(reports=reports.path.name, meteor=False, bootstrap=100))  # time: no Java
    align = AlignConfig(activations=acts.path.name, epochs=3, batch_size=16)
    run_align_train(ws, align, run=ALIGN, show_progress=False)
    run_align_index(ws, SearchConfig(align_run=ALIGN, split="all"))
    assert reports.path.name == REPORTS and DEMO_SAE == INTERPRET
    return _enrich(ws)


@pytest.fixture(scope="session")
def viewer_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(workspace root, ids) of the shared viewer workspace (see the module docstring)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "viewer-fixture"
    shared.mkdir(exist_ok=True)
    with (shared / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the worker dies)
        done = shared / "ids.json"
        if not done.exists():
            shutil.rmtree(shared / "ws", ignore_errors=True)  # a worker that died half-way
            atomic_write_json(done, _build(shared / "ws"))
        return shared / "ws", json.loads(done.read_text())
