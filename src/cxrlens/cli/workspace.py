"""``cxrlens workspace …``: what is in the workspace."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.cli.common import WORKSPACE_OPTION, human_bytes, open_workspace
from cxrlens.console import console

app = typer.Typer(help="Inspect the workspace.", no_args_is_help=True)


@app.command("info")
def info(workspace: Path | None = WORKSPACE_OPTION) -> None:
    """List every artefact: kind, name, size, stage, config hash, rows, created; incomplete ones are marked."""
    ws = open_workspace(workspace)
    artefacts = ws.artefacts()
    console.print(f"workspace: {ws.root}")
    if not artefacts:
        console.print("no artefacts yet — run `cxrlens demo` or `cxrlens data import iu-xray`")
        return
    table = Table(show_lines=False)
    for col in ("kind", "name", "size", "stage", "config", "rows", "skipped", "created"):
        table.add_column(col, justify="right" if col in ("size", "skipped") else "left")
    total = 0
    for a in artefacts:
        total += a.size_bytes
        m = a.manifest
        if m is None:
            table.add_row(
                a.kind,
                a.name,
                human_bytes(a.size_bytes),
                "[red]incomplete (no manifest)[/red]",
                "",
                "",
                "",
                "",
            )
            continue
        rows = ", ".join(f"{k} {v:,}" for k, v in m.rows.items())
        table.add_row(
            a.kind,
            a.name,
            human_bytes(a.size_bytes),
            m.stage,
            m.config_hash[:12],
            rows,
            str(m.skipped.get("total", 0)),
            m.created,
        )
    console.print(table)
    console.print(f"{len(artefacts)} artefact(s), {human_bytes(total)}")
