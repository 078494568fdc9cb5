"""``cxrlens data build …``: render the phantom datasets (iu-phantom, cxr-sprites) into the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console
from cxrlens.data.phantom.datasets import IUPhantomConfig, SpritesConfig

build_app = typer.Typer(help="Render phantom chest X-ray datasets with pixel-level ground truth.", no_args_is_help=True)


def _size_option(config_cls: type) -> Any:
    return config_option(config_cls, "size", help="Image side in pixels (32 … 512).")


WORKERS_OPTION = typer.Option(None, help="Render processes \\[default: number of CPUs].")


def print_phantom_summary(result, title: str) -> None:
    """Counts of what a phantom build drew, and its sample grid (also used by ``cxrlens demo``)."""

    from cxrlens.data.phantom.datasets import SAMPLE_GRID
    from cxrlens.data.phantom.spec import KINDS

    factors = result.open().table("factors")
    drawn = {k: int(factors[f"{k}.present"].sum()) for k in KINDS}
    rows = [
        ("images", f"{len(factors):,}"),
        ("size", f"{result.manifest.extra.get('size')} px"),
        ("normal (nothing drawn)", f"{int((factors[[f'{k}.present' for k in KINDS]].sum(1) == 0).sum()):,}"),
        ("findings drawn", ", ".join(f"{k} {v:,}" for k, v in drawn.items() if v)),
    ]
    if "unrendered" in factors:
        n_unr = int((factors["unrendered"].map(len) > 0).sum())
        rows.append(("images with unrendered report findings", f"{n_unr:,}"))
    console.print(kv_table(title, rows))
    console.print(f"  sample grid: {result.path / SAMPLE_GRID}")


@build_app.command("iu-phantom")
def build_iu_phantom_cmd(
    n: int | None = config_option(
        IUPhantomConfig, "n", help="Render only the first N IU image ids \\[default: all 7,470]."
    ),
    size: int = _size_option(IUPhantomConfig),
    seed: int = config_option(
        IUPhantomConfig, "seed", help="Seed of anatomy, acquisition, unstated sides/zones/severities, textures."
    ),
    uncertain: str = config_option(
        IUPhantomConfig, "uncertain", help="Uncertain findings: 'faint' (drawn at half intensity) or 'omit'."
    ),
    name: str = typer.Option("iu-phantom", help="Dataset name in the workspace."),
    workers: int | None = WORKERS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """One phantom frontal image per IU X-ray image id, drawn from its report (labels + MeSH tags)."""
    from cxrlens.data.phantom.datasets import run_data_build_iu_phantom

    cfg = IUPhantomConfig(n=n, size=size, seed=seed, uncertain=uncertain)
    result = run_data_build_iu_phantom(open_workspace(workspace), cfg, name=name, force=force, workers=workers)
    print_stage_result(result, f"dataset {name}")
    print_phantom_summary(result, "IU-phantom")


@build_app.command("sprites")
def build_sprites_cmd(
    n: int = config_option(SpritesConfig, "n", help="Number of images."),
    size: int = _size_option(SpritesConfig),
    seed: int = config_option(SpritesConfig, "seed", help="Seed of factor sampling and rendering."),
    p_present: float = config_option(
        SpritesConfig, "p_present", help="Probability that each finding kind is present (independently)."
    ),
    vary: str | None = typer.Option(
        None,
        help="Comma-separated factors that vary (e.g. 'rotation,scale,edema.present'); every other factor is held "
        "at its neutral value (cxrlens.data.phantom.datasets.SPRITE_NEUTRAL) \\[default: all: every factor varies].",
    ),
    name: str = typer.Option("cxr-sprites", help="Dataset name in the workspace."),
    workers: int | None = WORKERS_OPTION,
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Phantoms whose factors are sampled independently on a documented grid, with templated reports."""
    from cxrlens.data.phantom.datasets import run_data_build_sprites
    from cxrlens.errors import BadInputError

    factors = None if vary is None or vary.strip() == "all" else tuple(f.strip() for f in vary.split(",") if f.strip())
    try:
        cfg = SpritesConfig(n=n, size=size, seed=seed, p_present=p_present, vary=factors)
    except ValueError as err:
        raise BadInputError(None, f"--vary: {err}") from None
    result = run_data_build_sprites(open_workspace(workspace), cfg, name=name, force=force, workers=workers)
    print_stage_result(result, f"dataset {name}")
    print_phantom_summary(result, "cxr-sprites")
