"""``cxrlens evaluate …``: score a report run against the reference reports and the baselines."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.evaluate.run import EvaluateConfig

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
    baselines: str = config_csv_option(
        EvaluateConfig, "baselines", help="Comma-separated baselines to evaluate in the same run ('' for none)."
    ),
    seed: int = config_option(
        EvaluateConfig, "seed", help="Seed of the random baseline and of the bootstrap intervals."
    ),
    meteor: bool = config_option(
        EvaluateConfig, "meteor", "--meteor/--no-meteor", help="Compute METEOR (Java; the slowest metric)."
    ),
    bootstrap: int = config_option(
        EvaluateConfig, "bootstrap", help="Paired bootstrap resamples for the intervals (0 = none)."
    ),
    bootstrap_unit: str = config_option(
        EvaluateConfig,
        "bootstrap_unit",
        help="What the bootstrap resamples: 'study' (a study's images, which share one report, kept together) "
        "or 'patient'.",
    ),
    allow_leaky: bool = config_option(
        EvaluateConfig,
        "allow_leaky",
        "--allow-leaky",
        help="Evaluate even a split the interpretation used (describe or threshold-calibration split); every "
        "output is then marked leaky. Without it such a run is refused.",
    ),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Evaluate a report run and its baselines; write reports/<run>/evaluation/ and print the headline table."""
    from cxrlens.evaluate.run import run_evaluate_reports

    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    cfg = EvaluateConfig(
        reports=reports,
        baselines=names,
        seed=seed,
        meteor=meteor,
        bootstrap=bootstrap,
        bootstrap_unit=bootstrap_unit,
        allow_leaky=allow_leaky,
    )
    result = run_evaluate_reports(open_workspace(workspace), cfg, force=force)
    print_evaluation(result, reports)
    print_stage_result(result, f"evaluation of {reports}")


def _ci(low: float, high: float) -> str:
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return ""
    return f"[{low:+.3f}, {high:+.3f}]"


def print_evaluation(result, reports: str) -> None:
    """The headline table (metrics × systems), the gaps with their study-level intervals and the notes, as
    ``evaluate reports`` prints them (a leaky evaluation says so above and below the table)."""
    from cxrlens.evaluate.baselines import BASELINES
    from cxrlens.evaluate.bootstrap import units_phrase
    from cxrlens.evaluate.summary import bootstrap_note, leak_line
    from cxrlens.evaluate.tables import gap_table, headline_table

    metrics = result.open().json("metrics")
    table = headline_table(metrics)
    leak = leak_line(metrics)
    title = f"Evaluation of {reports} ({metrics['n_reports']:,} reports)"
    if leak:
        console.print(f"[bold red]{leak}[/]")
        title += " — LEAKY"
    out = Table(title=title, title_justify="left")
    out.add_column("metric", style="bold")
    for system in table.index:
        out.add_column(system, justify="right")
    for col in table.columns:  # metrics as rows: a few systems fit a narrow terminal
        out.add_row(col, *(_fmt(v) for v in table[col]))
    console.print(out)
    gaps = gap_table(metrics)
    if len(gaps):
        boot = metrics.get("bootstrap") or {}
        unit = f"{units_phrase(boot.get('n_units', 0), boot.get('unit', 'unit'))} resampled"
        gt = Table(title=f"Gaps, cxrlens − baseline (95 % CI, {unit})", title_justify="left")
        for c in ("metric", "baseline", "cxrlens", "baseline value", "gap", "95 % CI"):
            gt.add_column(c, justify="left" if c in ("metric", "baseline") else "right")
        for r in gaps.itertuples():
            name = r.label + (", lower is better" if r.lower_is_better else "")
            gt.add_row(name, r.baseline, _fmt(r.cxrlens), _fmt(r.baseline_value), _sgn(r.gap), _ci(r.ci_low, r.ci_high))
        console.print(gt)
    g = metrics["gaps"]
    rows = [("headline", g["metric"]), ("cxrlens", _fmt(g["cxrlens"]))]
    for name in sorted(g["vs"], key=lambda b: BASELINES.index(b) if b in BASELINES else len(BASELINES)):
        v = g["vs"][name]
        ci = v.get("ci95")
        units = units_phrase(v.get("n_units", 0), v.get("bootstrap_unit", "unit"))
        interval = f"  95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}] ({units})" if ci else ""
        rows.append((f"gap vs {name}", f"{_sgn(v['gap'])} (baseline {_fmt(v['baseline'])}){interval}"))
    rows.append(("bootstrap", bootstrap_note(metrics)))
    if "macro_quoted" in metrics:
        rows.append(("macro quoted", metrics["macro_quoted"]))
    for name, b in metrics["baselines"].items():
        if "skipped" in b:
            rows.append((f"{name} baseline", f"skipped: {b['skipped']}"))
    if metrics.get("grounding"):
        rows.append(
            (
                "reference-render agreement",
                "not a ceiling: the phantom was drawn from the labeler's reading "
                "of the reference text (docs/sae-rad.md)",
            )
        )
    rows.append(("leak check", leak or metrics.get("leak_check", "not recorded")))
    rows.append(("METEOR", metrics["meteor_status"]))
    skipped = sum(metrics["skipped_lines"].values())
    if skipped:
        detail = ", ".join(f"{k}: {v}" for k, v in metrics["skipped_lines"].items())
        rows.append(("skipped lines", f"{skipped} ({detail})"))
    console.print(kv_table("Gaps and notes", rows))


def _sgn(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"
