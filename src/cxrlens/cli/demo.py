"""``cxrlens demo``: the main job on the embedded default, one command (:func:`cxrlens.demo.run_demo` does the work;
this module prints what each stage returns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, kv_table, open_workspace, print_stage_result
from cxrlens.console import console
from cxrlens.demo.config import DEMO_SAE, DEMO_STREAM, DemoConfig

TITLES = {
    "import": "1 · reports: IU X-ray study table with CheXpert-14 labels",
    "phantom": "2 · images: iu-phantom, one report-consistent phantom per IU image",
    "activations": "3 · activations of the default backbone (cxrlens:default): CLS and patch tokens",
    "sae": f"4 · sparse autoencoder on the {DEMO_STREAM} patch tokens",
    "interpret": "5 · interpret: feature statistics, descriptions, the finding readout (chosen on val)",
    "reports": "6 · reports for the test split, every sentence with its evidence",
    "evaluation": "7 · evaluation against baselines (same run)",
    "pointing": "8 · does the evidence point where the finding was drawn? (pointing game, same run)",
    "controls": "9 · honesty controls: untrained SAE, SAE on a randomly initialised backbone",
}


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
    from cxrlens.demo.pipeline import run_demo

    ws = open_workspace(workspace)
    console.rule("[bold]cxrlens demo")
    console.print(f"workspace: {ws.root}")
    result = run_demo(ws, DemoConfig(max_images=max_images), force=force, on_stage=print_stage)
    console.rule("written")
    for path in (
        result.imported.path / "studies.parquet",
        result.phantom.path / "sample_grid.png",
        result.activations.path,
        result.sae.path,
        result.interpretation.path / "features.parquet",
        result.reports.path / "reports.jsonl",
        result.page,
        result.summary,
    ):
        console.print(f"  {path}")


def print_stage(name: str, done: bool, value: Any) -> None:
    """``on_stage`` of :func:`~cxrlens.demo.run_demo`: the stage's heading before it runs, what it returned after."""
    from cxrlens.cli.data import print_iu_summary
    from cxrlens.cli.evaluate import print_evaluation
    from cxrlens.cli.extract import print_extract_summary
    from cxrlens.cli.interpret import print_interpret_summary
    from cxrlens.cli.phantom import print_phantom_summary

    if not done:
        if name in TITLES:
            console.rule(TITLES[name])
        return
    if name == "import":
        print_stage_result(value, "IU X-ray import")
        print_iu_summary(value.manifest.extra["summary"], value.manifest.skipped.get("total", 0))
    elif name == "phantom":
        print_stage_result(value, "iu-phantom")
        print_phantom_summary(value, "IU-phantom")
    elif name == "activations":
        print_extract_summary(value)
    elif name == "sae":
        print_stage_result(value, f"sae {DEMO_SAE}")
        print_sae_summary(value)
    elif name == "interpret":
        print_interpret_summary(value)
        print_stage_result(value, f"interpret {DEMO_SAE}")
    elif name == "reports":
        m = value.manifest
        console.print(
            f"{m.rows['reports']:,} reports ({m.rows['empty_reports']:,} with no feature above threshold), "
            f"compilation {m.extra['compile_ms_per_report']:.2f} ms/report"
        )
        print_stage_result(value, f"reports {value.path.name}")
    elif name == "evaluation":
        print_evaluation(value, value.path.parent.name)
        print_stage_result(value, "evaluation")
    elif name == "pointing":
        print_pointing(value)
    elif name == "controls":
        print_controls(value)


def print_pointing(pointing) -> None:
    if not pointing:
        console.print("no sentence with an evidence map on a finding with a mask")
        return
    rows = [
        (r["method"], f"{r['pointing']:.3f} ({r['n']} sentences)") for r in pointing["table"] if r["finding"] == "all"
    ]
    for key in ("side", "zone"):
        acc = pointing[key]
        if acc["accuracy"] is not None:
            rows.append((f"{key} of the evidence peak", f"{acc['accuracy']:.3f} ({acc['n']} sentences)"))
    rows.append(("tolerance", f"{pointing['tolerance_px']} px of {pointing['mask_size']} (half a patch)"))
    console.print(kv_table("pointing game", rows))


def print_controls(rows: list[dict]) -> None:
    from rich.table import Table

    from cxrlens.demo.summary import format_cell

    cols = [c for c in rows[0] if c not in ("sae", "recovery")]
    t = Table(title="trained vs controls (test split)")
    for c in cols:
        t.add_column(c, justify="left" if c == "control" else "right")
    for r in rows:
        t.add_row(*[format_cell(r[c]) for c in cols])
    console.print(t)


def print_sae_summary(result) -> None:
    full = result.open().json("metrics")
    rows = [
        ("FVE / L0", f"{full['fve']:.4f} / {full['l0_mean']:.1f} (split val)"),
        ("dead / dense", f"{full['dead_frac']:.1%} / {full['dense_frac']:.1%}"),
    ]
    probe = full.get("probe")
    if probe and probe.get("per_label"):
        rows.append(("probe AUC", f"SAE codes {probe['mean_auc_codes']:.3f} vs raw CLS {probe['mean_auc_raw']:.3f}"))
    console.print(kv_table("SAE", rows))
