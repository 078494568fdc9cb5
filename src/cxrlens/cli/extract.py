"""``cxrlens extract``: a backbone's activations over a dataset → a sharded, resumable activation store."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.activations import ExtractConfig
from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_csv_option,
    config_option,
    human_bytes,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.console import console


def extract(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name in the workspace (e.g. iu-phantom)."),
    backbone: str = typer.Option(
        "cxrlens:default", "--backbone", "-b", help="Backbone spec: hf:<id or dir>, xrv:<weights>, cxrlens:<name>."
    ),
    layers: str = config_csv_option(
        ExtractConfig, "layers", help="Comma-separated layer names or indices (-1 = the model's output)."
    ),
    tokens: str = config_csv_option(ExtractConfig, "tokens", help="Comma-separated token kinds: cls, mean, patch."),
    dtype: str = config_option(ExtractConfig, "dtype", help="Storage dtype: float16, bfloat16 or float32."),
    batch_size: int = config_option(ExtractConfig, "batch_size", help="Images per forward pass."),
    split: str = config_option(ExtractConfig, "split", help="train, val, test or all."),
    shard_mb: float = config_option(ExtractConfig, "shard_mb", help="Maximum shard size in MiB."),
    shard_images: int = config_option(
        ExtractConfig, "shard_images", help="Maximum images per shard (what a crash can cost)."
    ),
    run: str | None = typer.Option(None, help="Store name \\[default: <dataset>-<backbone>]."),
    device: str | None = typer.Option(None, help="cpu, cuda … \\[default: cuda if available]."),
    workers: int | None = typer.Option(None, help="DataLoader workers decoding images \\[default: CPUs-1, ≤ 4]."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let transformers fetch hub weights."),
    xrv_cache_dir: Path | None = typer.Option(
        None, help="torchxrayvision weights dir \\[default: ~/.torchxrayvision]."
    ),
    engine: str = typer.Option("local", help="local (this process) or ray (Ray Data; pip install 'cxrlens\\[scale]')."),
    ray_address: str | None = typer.Option(None, help="Ray cluster for --engine ray (auto = the running one)."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Extract activations into activations/<run> (kill it any time; re-running resumes from the last shard)."""
    from cxrlens.activations import run_extract
    from cxrlens.errors import BadInputError

    if engine not in ("local", "ray"):
        raise BadInputError(None, f"--engine must be local or ray, got {engine!r}")
    if engine == "ray":  # docs/scale.md
        from cxrlens.scale.ray_extract import RayOptions, ray_engine

        engine_fn = ray_engine(RayOptions(address=ray_address))
    else:
        engine_fn = None
    cfg = ExtractConfig(
        dataset=dataset,
        backbone=backbone,
        layers=tuple(x.strip() for x in layers.split(",") if x.strip()),
        tokens=tuple(x.strip() for x in tokens.split(",") if x.strip()),
        dtype=dtype,
        split=split,
        batch_size=batch_size,
        shard_mb=shard_mb,
        shard_images=shard_images,
    )
    result = run_extract(
        open_workspace(workspace),
        cfg,
        run=run,
        device=device,
        num_workers=workers,
        engine=engine_fn,
        allow_download=allow_download,
        xrv_cache_dir=xrv_cache_dir,
        force=force,
    )
    print_extract_summary(result)


def print_extract_summary(result) -> None:
    """The activation store's summary table and where it is (also used by ``cxrlens demo``)."""
    from cxrlens.files import dir_size

    m = result.manifest
    timing = m.extra.get("timing", {})
    secs, imgs = timing.get("seconds_this_run", 0.0), timing.get("images_this_run", 0)
    rows = [
        ("backbone", f"{m.config['backbone']} ({m.extra['backbone']['parameters']:,} parameters)"),
        ("images", f"{m.rows['images']:,} (skipped {m.skipped.get('images', 0):,})"),
        ("streams", ", ".join(f"{k} {v['dim']}-d" for k, v in m.extra["streams"].items())),
        ("patch grid", "x".join(str(g) for g in m.extra["grid"])),
        ("shards", f"{len(m.extra['shards'])} ({human_bytes(dir_size(result.path))} on disk, {m.extra['dtype']})"),
    ]
    if not result.reused and secs > 0:
        rows.append(("throughput this run", f"{imgs / secs:,.1f} images/s ({imgs:,} images in {secs:.1f} s)"))
    console.print(kv_table("Activation store", rows))
    print_stage_result(result, f"activations {result.path.name}")
