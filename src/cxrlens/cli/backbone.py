"""``cxrlens backbone …``: inspect a backbone spec; train the in-project ViT."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.table import Table

from cxrlens.backbones.train import BackboneTrainConfig
from cxrlens.backbones.vit import ViTArch
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

app = typer.Typer(help="Vision backbones: inspect a spec, train the in-project ViT.", no_args_is_help=True)


@app.command("info")
def info(
    spec: str = typer.Argument(..., help="hf:<id or dir>, xrv:<weights>, cxrlens:<name> or cxrlens:default."),
    allow_download: bool = typer.Option(False, "--allow-download", help="Let transformers fetch hub weights."),
    xrv_cache_dir: Path | None = typer.Option(None, help="torchxrayvision weights dir."),
    workspace: Path | None = WORKSPACE_OPTION,
) -> None:
    """Load a backbone and print its layers, widths and preprocessing."""
    from cxrlens.backbones import load_backbone

    b = load_backbone(
        spec, workspace=open_workspace(workspace), allow_download=allow_download, xrv_cache_dir=xrv_cache_dir
    )
    d = b.describe()
    p = d["preprocessor"]
    rows = [
        ("class", d["class"]),
        ("parameters", f"{d['parameters']:,}"),
        ("layers", ", ".join(f"{name} ({b.dims[name]})" for name in b.layers)),
        ("input", f"{p['channels']}×{p['size'][0]}×{p['size'][1]}, {p['interpolation']}"),
        ("normalisation", f"x·{p['scale']:g}{p['offset']:+g}, mean {p['mean']}, std {p['std']}"),
        ("fingerprint", b.fingerprint()[:16]),
    ]
    console.print(kv_table(spec, rows))


@app.command("train")
def train(
    dataset: str = config_option(
        BackboneTrainConfig, "dataset", help="Dataset with images, report text and the 14 labels."
    ),
    name: str = config_option(BackboneTrainConfig, "name", help="Backbone name in the workspace (backbones/<name>)."),
    objectives: str = config_csv_option(
        BackboneTrainConfig, "objectives", help="Comma-separated: mim, distill, contrastive, supervised."
    ),
    pretrain: str = config_csv_option(
        BackboneTrainConfig,
        "pretrain_datasets",
        "--pretrain-datasets",
        help="Comma-separated datasets whose images (all splits) join training only, e.g. sprites; "
        "the probe stays on --dataset.",
    ),
    steps: int = config_option(BackboneTrainConfig, "steps", help="Optimiser steps per objective."),
    batch_size: int = config_option(BackboneTrainConfig, "batch_size", help="Images per step."),
    lr: float = config_option(BackboneTrainConfig, "lr", help="Peak learning rate (AdamW, warm-up + cosine)."),
    image_size: int = config_option(ViTArch, "image_size", help="ViT input side in pixels."),
    patch_size: int = config_option(ViTArch, "patch_size", help="ViT patch side."),
    hidden_size: int = config_option(ViTArch, "hidden_size", help="Token width."),
    layers: int = config_option(ViTArch, "num_layers", "--layers", help="Transformer blocks."),
    heads: int = config_option(ViTArch, "num_heads", "--heads", help="Attention heads."),
    max_images: int = config_option(
        BackboneTrainConfig, "max_images", help="At most this many images per split (0 = all)."
    ),
    seed: int = config_option(BackboneTrainConfig, "seed", help="Seed of init, augmentations and batch order."),
    threads: int = typer.Option(0, help="torch CPU threads for the run (0 = torch's default)."),
    export: Path | None = typer.Option(None, help="Also copy the chosen weights to this directory."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train the in-project ViT with each objective, probe them, keep the best → backbones/<name>."""
    from cxrlens.backbones.train import load_probe_table, run_backbone_train

    arch = ViTArch(
        image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, num_layers=layers, num_heads=heads
    )
    cfg = BackboneTrainConfig(
        dataset=dataset,
        name=name,
        arch=arch,
        objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()),
        pretrain_datasets=tuple(d.strip() for d in pretrain.split(",") if d.strip()),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_images=max_images,
        seed=seed,
    )
    result = run_backbone_train(open_workspace(workspace), cfg, num_threads=threads or None, force=force)
    print_probe_table(load_probe_table(result.path))
    print_stage_result(result, f"backbone cxrlens:{cfg.name}")
    if export is not None:
        export.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors", "preprocessor_config.json", "probe.json", "manifest.json"):
            shutil.copy2(result.path / f, export / f)
        console.print(f"  copied to {export}")


def print_probe_table(probe: dict) -> None:
    """Objectives side by side: macro AUC (renderable labels and all evaluated labels), val and test, seconds."""
    table = Table(title="Linear-probe ROC AUC on frozen features (macro over labels)", title_justify="left")
    for col in ("objective", "val (renderable)", "test (renderable)", "val (all)", "test (all)", "train s"):
        table.add_column(col, justify="left" if col == "objective" else "right")
    for name, r in probe["results"].items():
        mark = " ← chosen" if name == probe["chosen"] else ""
        table.add_row(
            name + mark,
            f"{r['val_macro_renderable']:.3f}",
            f"{r['test_macro_renderable']:.3f}",
            f"{r['val_macro']:.3f}",
            f"{r['test_macro']:.3f}",
            f"{r['train_seconds']:.0f}",
        )
    console.print(table)
