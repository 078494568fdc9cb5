"""``cxrlens evaluate …``: score a report run against the reference reports and the baselines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, kv_table, open_workspace, print_stage_result
from cxrlens.console import console

app = typer.Typer(
    help="Evaluate generated reports: NLG, clinical F1, phantom grounding, baselines.", no_args_is_help=True
)


def _fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


@app.command("reports")
def reports_cmd(
    reports: str = typer.Option(
        ..., "--reports", "-r", help="Report run under reports/ (written by `cxrlens report`)."
    ),
    baselines: str = typer.Option(
        "constant,random,nearest", help="Comma-separated baselines to evaluate in the same run ('' for none)."
    ),
    seed: int = typer.Option(0, help="Seed of the random baseline and of the bootstrap intervals."),
    meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="Compute METEOR (Java; the slowest metric)."),
    bootstrap: int = typer.Option(1000, help="Paired bootstrap resamples for the gap intervals (0 = none)."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Evaluate a report run and its baselines; write reports/<run>/evaluation/ and print the headline table."""
    from cxrlens.evaluate.run import EvaluateConfig, evaluate_reports

    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    cfg = EvaluateConfig(reports=reports, baselines=names, seed=seed, meteor=meteor, bootstrap=bootstrap)
    result = evaluate_reports(open_workspace(workspace), cfg, force=force)
    print_evaluation(result, reports)
    print_stage_result(result, f"evaluation of {reports}")


def print_evaluation(result, reports: str) -> None:
    """The headline table (metrics × systems) and the gaps with their intervals, as ``evaluate reports`` prints."""
    from cxrlens.evaluate.baselines import BASELINES
    from cxrlens.evaluate.run import headline_table

    metrics = json.loads((result.path / "metrics.json").read_text(encoding="utf-8"))
    table = headline_table(metrics)
    out = Table(title=f"Evaluation of {reports} ({metrics['n_reports']:,} reports)", title_justify="left")
    out.add_column("metric", style="bold")
    for system in table.index:
        out.add_column(system, justify="right")
    for col in table.columns:  # metrics as rows: a few systems fit a narrow terminal
        out.add_row(col, *(_fmt(v) for v in table[col]))
    console.print(out)
    gaps = metrics["gaps"]
    rows = [("headline", gaps["metric"]), ("cxrlens", _fmt(gaps["cxrlens"]))]
    for name in sorted(gaps["vs"], key=lambda b: BASELINES.index(b) if b in BASELINES else len(BASELINES)):
        g = gaps["vs"][name]
        ci = g.get("ci95")
        interval = f"  95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        rows.append((f"gap vs {name}", f"{g['gap']:+.3f} (baseline {_fmt(g['baseline'])}){interval}"))
    for name, b in metrics["baselines"].items():
        if "skipped" in b:
            rows.append((f"{name} baseline", f"skipped: {b['skipped']}"))
    rows.append(("METEOR", metrics["meteor_status"]))
    skipped = sum(metrics["skipped_lines"].values())
    if skipped:
        detail = ", ".join(f"{k}: {v}" for k, v in metrics["skipped_lines"].items())
        rows.append(("skipped lines", f"{skipped} ({detail})"))
    console.print(kv_table("Gaps and notes", rows))
