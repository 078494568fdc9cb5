"""Options and small printing helpers shared by the command groups."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.console import console
from cxrlens.workspace import StageResult, Workspace, default_root

__all__ = [
    "FORCE_OPTION",
    "WORKSPACE_OPTION",
    "human_bytes",
    "kv_table",
    "open_workspace",
    "print_stage_result",
]

WORKSPACE_OPTION = typer.Option(
    None,
    "--workspace",
    "-w",
    envvar="CXRLENS_WORKSPACE",
    help="Workspace directory [default: ./cxrlens-workspace].",
    show_default=False,
)
FORCE_OPTION = typer.Option(False, "--force", help="Redo the stage even if its output is current.")


def open_workspace(path: Path | None) -> Workspace:
    return Workspace(path if path is not None else default_root())


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def print_stage_result(result: StageResult, what: str) -> None:
    """One line: reused (and how to redo) or written, with the path."""
    if result.reused:
        console.print(
            f"[green]✓[/green] {what}: reusing {result.path} (same config hash "
            f"{result.manifest.config_hash[:12]}; --force to redo)"
        )
    else:
        console.print(f"[green]✓[/green] {what}: wrote {result.path}")


def kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table
