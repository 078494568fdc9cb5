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
    """``reports/<run>/summary.md``: what ran, the metrics table with baselines, the study-level intervals and gaps,
    the named macro variant, three example reports (a leaky evaluation is marked at the top)."""
    from cxrlens.cli.evaluate import bootstrap_note, leak_line
    from cxrlens.report.render import render_text
    from cxrlens.report.run import read_reports
    from cxrlens.report.showcase import pick_studies
    from cxrlens.workspace import atomic_write_text

    m = interp.manifest
    leak = leak_line(metrics)
    lines = [f"# cxrlens demo — {run}", ""]
    if leak:
        lines += [f"> **{leak}**", ""]
    lines += [
        f"SAE `{m.config['sae']}` on `{m.extra['activations']}` ({m.extra['stream']}); "
        f"{m.rows['features']:,} features, {m.rows['described']:,} described.",
        "",
        "## Metrics (test split)",
        "",
        _markdown(table),
        "",
        *metric_notes(metrics),
        "",
        f"METEOR: {metrics.get('meteor_status', 'n/a')}",
        "",
        "## Study-level 95 % intervals",
        "",
        bootstrap_note(metrics) + ".",
        "",
        *interval_tables(metrics),
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


def metric_notes(metrics: dict) -> list[str]:
    """Markdown bullets that say what the less obvious rows of the metrics table are."""
    from cxrlens.evaluate.clinical import variant_name
    from cxrlens.evaluate.run import AGREEMENT

    clin = {r["variant"]: r for r in metrics["systems"].get("cxrlens", {}).get("clinical", [])}
    ref_labels = clin.get(variant_name("f1", "macro-ref", "14", "positive"), {}).get("n_labels")
    notes = [
        f"- Macro F1 quoted: `{metrics.get('macro_quoted', 'n/a')}` — scikit-learn's "
        '`f1_score(average="macro", zero_division=0)` over all 14 labels, the same labels for every system'
        + (f"; {ref_labels} of the 14 have a reference positive here." if ref_labels is not None else "."),
        "- `hallucination / report, all reports` counts empty reports as clean; `hallucination / non-empty report` "
        "leaves them out; `empty reports (share)` says how many there are.",
    ]
    if metrics.get("grounding"):
        notes.append(
            f"- Row `{AGREEMENT}`: the reference text scored against the phantom drawn from the labeler's reading of "
            "that same text — agreement between the labeler-derived render and the labeler, high largely by "
            "construction; **not** a ceiling for generated reports (docs/sae-rad.md)."
        )
    return notes


def interval_tables(metrics: dict) -> list[str]:
    """Markdown: each system's value with its interval, then every gap (cxrlens − baseline) with its interval (metrics
    by their short names, as in the metrics table; ``metrics.json`` keeps the full variant names)."""

    def ci(c) -> str:
        return "–" if not c else f"[{c[0]:.3f}, {c[1]:.3f}]"

    def num(v) -> str:
        return "–" if v is None or v != v else f"{v:.3f}"

    out: list[str] = []
    intervals = metrics.get("intervals") or []
    if intervals:
        out += ["| metric | system | value | 95 % CI |", "|---|---|---:|---:|"]
        out += [
            f"| {r.get('label', r['metric'])} | {r['system']} | {num(r['value'])} | {ci(r['ci95'])} |"
            for r in intervals
        ]
        out.append("")
    gaps = metrics.get("gap_table") or []
    if gaps:
        out += ["| metric | cxrlens − | gap | 95 % CI |", "|---|---|---:|---:|"]
        for r in gaps:
            gap = "–" if r["gap"] is None else f"{r['gap']:+.3f}"
            c = "–" if not r["ci95"] else f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
            better = ", lower is better" if r.get("lower_is_better") else ""
            out.append(f"| {r.get('label', r['metric'])}{better} | {r['baseline']} | {gap} | {c} |")
        out.append("")
    return out


def _markdown(table) -> str:
    """A pandas table as a GitHub markdown table (3 decimals; – for missing)."""
    cols = [str(table.index.name or "")] + [str(c) for c in table.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for name, row in table.iterrows():
        out.append("| " + " | ".join([str(name)] + ["–" if v != v else f"{v:.3f}" for v in row.to_numpy()]) + " |")
    return "\n".join(out)
