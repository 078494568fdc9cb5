"""``cxrlens data …``: import datasets into the workspace as study tables."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, kv_table, open_workspace, print_stage_result
from cxrlens.console import console

app = typer.Typer(help="Import datasets into the workspace.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset as a study table.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("iu-xray")
def import_iu(
    seed: int = typer.Option(0, help="Seed of the patient-level 70/10/20 split."),
    reports: Path | None = typer.Option(
        None, help="A .tgz or directory of IU X-ray XML reports [default: torchxrayvision's bundled copy]."
    ),
    name: str = typer.Option("iu-xray", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """IU X-ray (Open-i) reports bundled with torchxrayvision → datasets/iu-xray (reports have no images here)."""
    from cxrlens.data.iu_xray import IUXrayImportConfig, import_iu_xray

    cfg = IUXrayImportConfig(seed=seed, reports_source=str(reports) if reports else None)
    result = import_iu_xray(open_workspace(workspace), cfg, name=name, force=force)
    print_iu_summary(result.manifest.extra["summary"], result.manifest.skipped.get("total", 0))
    print_stage_result(result, f"dataset {name}")
    console.print(f"  {result.path / 'studies.parquet'}")


def print_iu_summary(s: dict, skipped: int) -> None:
    """The IU X-ray import summary: counts, splits, views, report length, top MeSH terms."""
    split = lambda d: " / ".join(f"{d[k]:,}" for k in ("train", "val", "test"))  # noqa: E731
    rows = [
        ("reports (studies)", f"{s['reports']:,}"),
        ("images", f"{s['images']:,}"),
        ("patients", f"{s['patients']:,}"),
        ("split train / val / test (reports)", split(s["split_reports"])),
        ("split train / val / test (images)", split(s["split_images"])),
        ("views", ", ".join(f"{k} {v:,}" for k, v in s["views"].items())),
        ("reports with findings or impression", f"{100 * s['reports_with_text']:.1f} %"),
        (
            "report length, words (mean / median / p95)",
            f"{s['words_mean']:.1f} / {s['words_median']:.0f} / {s['words_p95']:.0f}",
        ),
        ("skipped inputs", f"{skipped:,}"),
    ]
    console.print(kv_table("IU X-ray study table", rows))
    mesh = Table(title="Most frequent MeSH major terms (first component)", title_justify="left")
    mesh.add_column("term")
    mesh.add_column("reports", justify="right")
    for term, n in s["top_mesh"]:
        mesh.add_row(term, f"{n:,}")
    console.print(mesh)
