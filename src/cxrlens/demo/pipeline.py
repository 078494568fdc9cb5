"""The main job on the embedded default, as a library call: :func:`run_demo` runs the whole SAE-Rad chain
(IU X-ray reports → iu-phantom → default-backbone activations → patch-token SAE → interpretation with the finding
readout → test-split reports → evaluation with baselines → pointing game → untrained-SAE and random-backbone
controls → probe → ``summary.md``), each stage skipped when its artefact is current. ``cxrlens demo`` only prints
what each stage returns (``on_stage``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrlens.activations import ExtractConfig, run_extract
from cxrlens.backbones.vit import write_random_vit
from cxrlens.data.iu_xray import IUXrayImportConfig, run_data_import_iu_xray
from cxrlens.data.phantom.datasets import IUPhantomConfig, run_data_build_iu_phantom
from cxrlens.demo.config import DEMO_LAYER, DEMO_SAE, DEMO_STAGES, DEMO_STREAM, DemoConfig
from cxrlens.demo.summary import CONTROL_METRICS, overall_pointing, write_summary
from cxrlens.evaluate.report_pointing import report_pointing
from cxrlens.evaluate.run import EvaluateConfig, read_evaluation, run_evaluate_reports
from cxrlens.evaluate.tables import headline_table
from cxrlens.files import atomic_write_json
from cxrlens.interpret.describe import DescribeConfig
from cxrlens.interpret.recovery import feature_recovery, image_probe
from cxrlens.interpret.run import InterpretConfig, read_interpretation, run_interpret
from cxrlens.report.run import ReportConfig, ReportModel, run_report
from cxrlens.report.showcase import write_showcase
from cxrlens.sae.base import SAEConfig
from cxrlens.sae.run import SAERunConfig, run_sae_train, run_sae_untrained
from cxrlens.sae.train import TrainConfig
from cxrlens.workspace import Workspace

__all__ = [
    "DEMO_SAE",
    "DEMO_STAGES",
    "DemoConfig",
    "DemoResult",
    "control_row",
    "demo_extract_config",
    "demo_interpret_config",
    "demo_sae_config",
    "run_demo",
]


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """Every stage's result (:class:`~cxrlens.workspace.StageResult` where the stage writes an artefact) and what
    the summary is made of: ``metrics`` (the evaluation's ``metrics.json``), ``table`` (systems × headline
    metrics), ``pointing`` (:func:`~cxrlens.evaluate.report_pointing.report_pointing`), ``controls`` (one row per
    SAE: trained, untrained, random backbone), ``probe`` (:func:`~cxrlens.interpret.recovery.image_probe`),
    ``page`` (the showcase HTML) and ``summary`` (``summary.md``)."""

    imported: Any
    phantom: Any
    activations: Any
    sae: Any
    interpretation: Any
    reports: Any
    evaluation: Any
    metrics: dict
    table: Any
    pointing: dict | None
    controls: list[dict]
    probe: dict
    page: Path
    summary: Path


def run_demo(
    ws: Workspace,
    config: DemoConfig | None = None,
    *,
    force: bool = False,
    on_stage: Callable[[str, bool, Any], None] | None = None,
) -> DemoResult:
    """Run the demo chain (see the module docstring). ``on_stage(name, False, None)`` is called before each stage
    of :data:`DEMO_STAGES` and ``on_stage(name, True, value)`` after it with what it returned (which may be None:
    e.g. no pointing game without evidence maps)."""
    cfg = config or DemoConfig()
    hook = on_stage or (lambda name, done, value: None)

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        hook(name, False, None)
        value = fn()
        hook(name, True, value)
        return value

    imported = stage("import", lambda: run_data_import_iu_xray(ws, IUXrayImportConfig(), force=force))
    phantom = stage("phantom", lambda: run_data_build_iu_phantom(ws, IUPhantomConfig(n=cfg.max_images), force=force))
    acts = stage("activations", lambda: run_extract(ws, demo_extract_config("cxrlens:default"), force=force))
    sae_cfg = demo_sae_config(acts.path.name, *((100, 256) if cfg.quick else (3000, 1024)))
    sae = stage("sae", lambda: run_sae_train(ws, sae_cfg, run=DEMO_SAE, device="cpu", force=force))
    interp = stage("interpret", lambda: run_interpret(ws, demo_interpret_config(), force=force))
    model = ReportModel.load(ws, DEMO_SAE)
    reports = stage(
        "reports",
        lambda: run_report(ws, ReportConfig(interpret=DEMO_SAE, split="test"), model=model, force=force),
    )
    run = reports.path.name
    evaluation = stage("evaluation", lambda: run_evaluate_reports(ws, EvaluateConfig(reports=run), force=force))
    metrics = evaluation.open().json("metrics")
    table = headline_table(metrics)
    pointing = stage(
        "pointing", lambda: cached_json(reports.path / "pointing.json", lambda: report_pointing(ws, run), force)
    )

    def controls() -> list[dict]:
        rows = run_controls(ws, acts.path.name, sae_cfg, force=force)
        return [control_row(ws, "trained", DEMO_SAE, run, pointing), *rows]

    rows = stage("controls", controls)

    def summary() -> tuple[Path, dict, Path]:
        page = reports.path / "report.html"
        if force or not page.exists() or not reports.reused:
            write_showcase(ws, run, model, n_studies=6, summary=table.reset_index())
        raw = (f"{DEMO_LAYER}/mean", "final/cls")  # what the codes keep of the SAE layer's and the output's knowledge
        probe = cached_json(reports.path / "probe.json", lambda: image_probe(ws, DEMO_SAE, raw), force)
        return write_summary(ws, run, interp, table, metrics, pointing, rows, probe), probe, page

    path, probe, page = stage("summary", summary)
    return DemoResult(
        imported, phantom, acts, sae, interp, reports, evaluation, metrics, table, pointing, rows, probe, page, path
    )


def demo_extract_config(backbone: str):
    """CLS, mean and patch tokens of the backbone's output and of block 2 (the SAE's layer)."""
    return ExtractConfig(
        dataset="iu-phantom", backbone=backbone, layers=(DEMO_LAYER, "final"), tokens=("cls", "mean", "patch")
    )


def demo_sae_config(activations: str, steps: int = 3000, batch_size: int = 1024):
    """The demo's SAE: BatchTopK, 1,024 latents (×8 of the 128-d token), k = 32 on average, on the **patch tokens
    of block 2** (3,000 steps of 1,024 tokens). Layer, k and architecture chosen on the **validation** split
    (docs/sae-rad.md, "Choices made on val"): block 2 has the best val grounding F1 and hallucination rate of the
    three layers tried, k = 32 beat k = 16 on every report measure and on pointing, and BatchTopK won three of the
    four val criteria (val pointing, kinds named, probe ratio; Matryoshka had the best cross-fitted val F1) against
    TopK, Matryoshka and the hybrid."""
    sae = SAEConfig(arch="batchtopk", d_in=128, n_latents=1024, k=32)
    train = TrainConfig(
        sae=sae, steps=steps, batch_size=batch_size, lr=1e-3, warmup_steps=100, log_every=50, checkpoint_every=0
    )
    return SAERunConfig(activations=activations, stream=DEMO_STREAM, split="train", eval_split="val", train=train)


def demo_interpret_config(sae: str = DEMO_SAE, heatmap_features: int = 64):
    """The demo's interpretation: label-anchored descriptions (extractive where a feature names no finding; the
    extractive describer reads 32 top studies against 128 random ones) and the finding readout, fitted on train
    and chosen on **val**; the test split is only used for the reported numbers."""
    describe = DescribeConfig(top_k=32, n_random=128)
    return InterpretConfig(sae=sae, describe=describe, heatmap_features=heatmap_features)


def cached_json(path: Path, compute, force: bool):
    """``compute()`` written to ``path`` as JSON, or the file's content when it exists (and not ``force``)."""
    if path.exists() and not force:
        return json.loads(path.read_text())
    value = compute()
    atomic_write_json(path, value)
    return value


CONTROL_SAE = f"{DEMO_SAE}-untrained"
RANDOM_BACKBONE = "random-init"
RANDOM_SAE = f"{DEMO_SAE}-random-backbone"


def run_controls(ws, activations: str, sae_cfg, *, force: bool) -> list[dict]:
    """The same chain (interpret → test reports → evaluation → pointing) for an untrained SAE of the same config,
    and for the demo's SAE config trained on a randomly initialised backbone's activations."""
    rows = []
    run_sae_untrained(ws, sae_cfg, run=CONTROL_SAE, force=force)
    rows.append(control_chain(ws, "untrained SAE", CONTROL_SAE, force))
    write_random_vit(ws, RANDOM_BACKBONE)
    acts = run_extract(ws, demo_extract_config(f"cxrlens:{RANDOM_BACKBONE}"), force=force, show_progress=False)
    cfg = dataclasses.replace(sae_cfg, activations=acts.path.name)
    run_sae_train(ws, cfg, run=RANDOM_SAE, device="cpu", force=force, show_progress=False)
    rows.append(control_chain(ws, "random backbone", RANDOM_SAE, force))
    return rows


def control_chain(ws, name: str, sae_run: str, force: bool) -> dict:
    run_interpret(ws, demo_interpret_config(sae_run, heatmap_features=0), force=force, show_progress=False)
    reps = run_report(ws, ReportConfig(interpret=sae_run, split="test"), force=force, show_progress=False)
    run_evaluate_reports(
        ws, EvaluateConfig(reports=reps.path.name, baselines=(), meteor=False, bootstrap=200), force=force
    )
    path = reps.path / "pointing.json"
    pointing = cached_json(path, lambda: report_pointing(ws, reps.path.name, gradcam=False), force)
    return control_row(ws, name, sae_run, reps.path.name, pointing)


def control_row(ws, name: str, sae_run: str, reports_run: str, pointing) -> dict:
    """One row of the controls table: report metrics, feature recovery, description quality, pointing."""
    metrics = read_evaluation(ws, reports_run)
    values = {r.get("label", r["metric"]): r["value"] for r in metrics.get("intervals", []) if r["system"] == "cxrlens"}
    rec = feature_recovery(*read_interpretation(ws, sae_run))
    row = {"control": name, "sae": sae_run}
    for short, label in CONTROL_METRICS:
        row[short] = values.get(label)
    row["kinds recovered"] = f"{rec['recovered']}/{rec['renderable_kinds']}"
    row["described, score ≥ 0.7"] = rec["described_score_ge"]
    row["pointing"] = overall_pointing(pointing, "SAE")
    row["recovery"] = rec
    return row
