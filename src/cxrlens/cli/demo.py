"""``cxrlens demo``: the main job on the embedded default, one command."""

from __future__ import annotations

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
    """Run the pipeline on the embedded default: IU X-ray reports → phantom images → default-backbone activations.

    Every stage is skipped when its output in the workspace is current, so a second run is fast.
    """
    from cxrlens.activations import ExtractConfig, extract_activations
    from cxrlens.cli.data import print_iu_summary
    from cxrlens.cli.extract import print_extract_summary
    from cxrlens.cli.phantom import print_phantom_summary
    from cxrlens.data.iu_xray import IUXrayImportConfig, import_iu_xray
    from cxrlens.data.phantom.datasets import IUPhantomConfig, build_iu_phantom

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

    console.rule("written")
    for path in (result.path / "studies.parquet", phantom.path / "images", phantom.path / "sample_grid.png", acts.path):
        console.print(f"  {path}")
