"""``cxrlens demo``: the main job on the embedded default, one command."""

from __future__ import annotations

from pathlib import Path

from cxrlens.cli.common import FORCE_OPTION, WORKSPACE_OPTION, open_workspace, print_stage_result
from cxrlens.console import console


def demo(workspace: Path | None = WORKSPACE_OPTION, force: bool = FORCE_OPTION) -> None:
    """Run the pipeline on the embedded default: import IU X-ray reports and summarise them.

    Every stage is skipped when its output in the workspace is current, so a second run is fast.
    """
    from cxrlens.cli.data import print_iu_summary
    from cxrlens.data.iu_xray import IUXrayImportConfig, import_iu_xray

    ws = open_workspace(workspace)
    console.rule("[bold]cxrlens demo")
    console.print(f"workspace: {ws.root}")
    result = import_iu_xray(ws, IUXrayImportConfig(), force=force)
    print_stage_result(result, "IU X-ray import")
    print_iu_summary(result.manifest.extra["summary"], result.manifest.skipped.get("total", 0))
    console.print(f"wrote: {result.path / 'studies.parquet'}  ·  {result.path / 'reports.parquet'}")
