"""``cxrlens demo``: the main job on the embedded default, one command."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, open_workspace, print_stage_result
from cxrlens.console import console


def demo(
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
    max_images: int | None = typer.Option(
        None, help="Render only the first N IU images (quick look; the default renders all 7,470)."
    ),
) -> None:
    """The whole SAE-Rad chain on the embedded default: IU X-ray reports → phantom images → default-backbone
    activations → SAE → feature descriptions → evidence-linked test-split reports → evaluation with baselines.

    Every stage is skipped when its output in the workspace is current, so a second run is fast.
    """
    from cxrlens.activations import ExtractConfig, extract_activations
    from cxrlens.cli.data import print_iu_summary
    from cxrlens.cli.evaluate import print_evaluation
    from cxrlens.cli.extract import print_extract_summary
    from cxrlens.cli.interpret import print_interpret_summary
    from cxrlens.cli.phantom import print_phantom_summary
    from cxrlens.data.iu_xray import IUXrayImportConfig, import_iu_xray
    from cxrlens.data.phantom.datasets import IUPhantomConfig, build_iu_phantom
    from cxrlens.evaluate.run import EvaluateConfig, evaluate_reports, headline_table
    from cxrlens.interpret.run import interpret_run
    from cxrlens.report.run import ReportConfig, ReportModel, report_dataset
    from cxrlens.report.showcase import write_showcase
    from cxrlens.sae.run import train_sae_run

    ws = open_workspace(workspace)
    console.rule("[bold]cxrlens demo")
    console.print(f"workspace: {ws.root}")

    console.rule("1 · reports: IU X-ray study table with CheXpert-14 labels")
    result = import_iu_xray(ws, IUXrayImportConfig(), force=force)
    print_stage_result(result, "IU X-ray import")
    print_iu_summary(result.manifest.extra["summary"], result.manifest.skipped.get("total", 0))

    console.rule("2 · images: iu-phantom, one report-consistent phantom per IU image")
    phantom = build_iu_phantom(ws, IUPhantomConfig(n=max_images), force=force)
    print_stage_result(phantom, "iu-phantom")
    print_phantom_summary(phantom, "IU-phantom")

    console.rule("3 · activations of the default backbone (cxrlens:default)")
    acts = extract_activations(ws, ExtractConfig(dataset="iu-phantom", backbone="cxrlens:default"), force=force)
    print_extract_summary(acts)

    console.rule("4 · sparse autoencoder on the CLS token")
    quick = (100, 8) if max_images is not None else (1500, 256)  # a quick look: a token run that exercises the chain
    sae = train_sae_run(ws, demo_sae_config(acts.path.name, *quick), run=DEMO_SAE, device="cpu", force=force)
    print_stage_result(sae, f"sae {DEMO_SAE}")
    print_sae_summary(sae)

    console.rule("5 · interpret: feature statistics, confound check, descriptions from the reports")
    interp = interpret_run(ws, demo_interpret_config(), force=force)
    print_interpret_summary(interp)
    print_stage_result(interp, f"interpret {DEMO_SAE}")

    console.rule("6 · reports for the test split, every sentence with its evidence")
    model = ReportModel.load(ws, DEMO_SAE)
    reports = report_dataset(ws, ReportConfig(interpret=DEMO_SAE, split="test"), model=model, force=force)
    m = reports.manifest
    console.print(
        f"{m.rows['reports']:,} reports ({m.rows['empty_reports']:,} with no feature above threshold), "
        f"compilation {m.extra['compile_ms_per_report']:.2f} ms/report"
    )
    print_stage_result(reports, f"reports {reports.path.name}")

    console.rule("7 · evaluation against baselines (same run)")
    evaluation = evaluate_reports(ws, EvaluateConfig(reports=reports.path.name), force=force)
    metrics = json.loads((evaluation.path / "metrics.json").read_text())
    table = headline_table(metrics)
    print_evaluation(evaluation, reports.path.name)
    print_stage_result(evaluation, "evaluation")

    page = reports.path / "report.html"
    if force or not page.exists() or not reports.reused:
        write_showcase(ws, reports.path.name, model, n_studies=6, summary=table.reset_index())
    summary = write_summary(ws, reports.path.name, interp, table, metrics)

    console.rule("written")
    for path in (
        result.path / "studies.parquet",
        phantom.path / "sample_grid.png",
        acts.path,
        sae.path,
        interp.path / "features.parquet",
        reports.path / "reports.jsonl",
        page,
        summary,
    ):
        console.print(f"  {path}")


DEMO_SAE = "iu-phantom-demo-topk"


def demo_sae_config(activations: str, steps: int = 1500, batch_size: int = 256):
    """The demo's SAE: TopK, 1,024 latents (×8 of the 128-d CLS token), k = 16, 1,500 steps of 256 tokens."""
    from cxrlens.sae.base import SAEConfig
    from cxrlens.sae.run import SAERunConfig
    from cxrlens.sae.train import TrainConfig

    sae = SAEConfig(arch="topk", d_in=128, n_latents=1024, k=16)
    train = TrainConfig(sae=sae, steps=steps, batch_size=batch_size, lr=1e-3, warmup_steps=100, log_every=50)
    return SAERunConfig(activations=activations, stream="final/cls", split="train", eval_split="val", train=train)


def demo_interpret_config():
    """The demo's interpretation: the describer reads 32 top studies against 128 random ones (support ≥ 25 %,
    log-odds ≥ 1) — chosen among four settings by clinical F1 on the **validation** split (docs/sae-rad.md); the
    test split is only used for the reported numbers."""
    from cxrlens.interpret.describe import DescribeConfig
    from cxrlens.interpret.run import InterpretConfig

    describe = DescribeConfig(top_k=32, n_random=128)
    return InterpretConfig(sae=DEMO_SAE, describe=describe)


def print_sae_summary(result) -> None:
    from cxrlens.cli.common import kv_table

    full = json.loads((result.path / "metrics.json").read_text())
    rows = [
        ("FVE / L0", f"{full['fve']:.4f} / {full['l0_mean']:.1f} (split val)"),
        ("dead / dense", f"{full['dead_frac']:.1%} / {full['dense_frac']:.1%}"),
    ]
    probe = full.get("probe")
    if probe and probe.get("per_label"):
        rows.append(("probe AUC", f"SAE codes {probe['mean_auc_codes']:.3f} vs raw CLS {probe['mean_auc_raw']:.3f}"))
    console.print(kv_table("SAE", rows))


def write_summary(ws, run: str, interp, table, metrics) -> Path:
    """``reports/<run>/summary.md``: what ran, the metrics table with baselines, three example reports."""
    from cxrlens.report.render import render_text
    from cxrlens.report.run import read_reports
    from cxrlens.report.showcase import pick_studies
    from cxrlens.workspace import atomic_write_text

    m = interp.manifest
    lines = [
        f"# cxrlens demo — {run}",
        "",
        f"SAE `{m.config['sae']}` on `{m.extra['activations']}` ({m.extra['stream']}); "
        f"{m.rows['features']:,} features, {m.rows['described']:,} described.",
        "",
        "## Metrics (test split)",
        "",
        _markdown(table),
        "",
        f"METEOR: {metrics.get('meteor_status', 'n/a')}",
        "",
        "## Example reports",
        "",
    ]
    for row in pick_studies(read_reports(ws, run), 3).itertuples():
        lines += [
            f"### {row.image_id}",
            "",
            "```",
            render_text(row.report),
            "```",
            "",
            "Reference:",
            "",
            f"> {row.reference_text}",
            "",
        ]
    return atomic_write_text(ws.reports(run) / "summary.md", "\n".join(lines))


def _markdown(table) -> str:
    """A pandas table as a GitHub markdown table (3 decimals; – for missing)."""
    cols = [str(table.index.name or "")] + [str(c) for c in table.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for name, row in table.iterrows():
        out.append("| " + " | ".join([str(name)] + ["–" if v != v else f"{v:.3f}" for v in row.to_numpy()]) + " |")
    return "\n".join(out)
