"""``cxrlens data …``: import datasets into the workspace as study tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cxrlens.cli.common import (
    FORCE_OPTION,
    WORKSPACE_OPTION,
    config_option,
    kv_table,
    open_workspace,
    print_stage_result,
)
from cxrlens.cli.phantom import build_app as phantom_build_app
from cxrlens.console import console
from cxrlens.data.chexpert import CheXpertImportConfig
from cxrlens.data.folder import FolderImportConfig
from cxrlens.data.iu_xray import IUXrayImportConfig
from cxrlens.data.mimic import MimicImportConfig
from cxrlens.data.nih import NIHImportConfig

app = typer.Typer(help="Import datasets into the workspace.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset as a study table.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(phantom_build_app, name="build")


@import_app.command("iu-xray")
def import_iu(
    seed: int = config_option(IUXrayImportConfig, "seed", help="Seed of the patient-level train/val/test split."),
    reports: Path | None = typer.Option(
        None, help="A .tgz or directory of IU X-ray XML reports \\[default: torchxrayvision's bundled copy]."
    ),
    name: str = typer.Option("iu-xray", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """IU X-ray (Open-i) reports bundled with torchxrayvision → datasets/iu-xray (reports have no images here)."""
    from cxrlens.data.iu_xray import run_data_import_iu_xray

    cfg = IUXrayImportConfig(seed=seed, reports_source=str(reports) if reports else None)
    result = run_data_import_iu_xray(open_workspace(workspace), cfg, name=name, force=force)
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


# ---------------------------------------------------------------- user datasets: MIMIC-CXR-JPG, CheXpert, NIH, folder


def _verify_option(config_cls: type) -> Any:
    return config_option(
        config_cls,
        "verify",
        help="Image check per file: exists | header (signature, header, end marker) | decode (full decode).",
    )


def _print_loader_result(result, title: str, name: str) -> None:
    """Summary table of a loader import (counts, split, views, label prevalence) + where it was written."""
    s = result.manifest.extra["summary"]
    split = lambda d: " / ".join(f"{d[k]:,}" for k in ("train", "val", "test"))  # noqa: E731
    rows = [
        ("images", f"{s['images']:,}"),
        ("studies", f"{s['studies']:,}"),
        ("patients", f"{s['patients']:,}"),
        ("split train / val / test (images)", split(s["split_images"])),
        ("split train / val / test (patients)", split(s["split_patients"])),
        ("views", ", ".join(f"{k} {v:,}" for k, v in s["views"].items()) or "-"),
        ("images with report text", f"{s['images_with_text']:,}"),
        ("skipped inputs", f"{result.manifest.skipped.get('total', 0):,}"),
    ]
    console.print(kv_table(title, rows))
    labels = Table(title="Labels (images)", title_justify="left")
    for col in ("label", "positive", "uncertain", "negative", "not mentioned"):
        labels.add_column(col, justify="left" if col == "label" else "right")
    for label, c in s["labels"].items():
        labels.add_row(label, f"{c['pos']:,}", f"{c['unc']:,}", f"{c['neg']:,}", f"{c['nan']:,}")
    console.print(labels)
    print_stage_result(result, f"dataset {name}")
    console.print(f"  {result.path / 'studies.parquet'}")


@import_app.command("mimic-cxr")
def import_mimic(
    root: Path = typer.Option(..., help="MIMIC-CXR-JPG folder (mimic-cxr-2.0.0-*.csv(.gz) and files/)."),
    reports: Path | None = typer.Option(None, help="MIMIC-CXR reports folder (files/pXX/pXXXXXXXX/sXXXXXXXX.txt)."),
    verify: str = _verify_option(MimicImportConfig),
    name: str = typer.Option("mimic-cxr", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """MIMIC-CXR-JPG 2.x with its official split and CheXpert labels (+ report sections with --reports)."""
    from cxrlens.data.mimic import run_data_import_mimic_cxr

    cfg = MimicImportConfig(
        root=str(root.resolve()), reports=str(reports.resolve()) if reports else None, verify=verify
    )
    result = run_data_import_mimic_cxr(open_workspace(workspace), cfg, name=name, force=force)
    _print_loader_result(result, "MIMIC-CXR-JPG study table", name)


@import_app.command("chexpert")
def import_chexpert_cmd(
    root: Path = typer.Option(..., help="CheXpert-v1.0(-small) folder holding train.csv / valid.csv."),
    val_frac: float = config_option(
        CheXpertImportConfig, "val_frac", help="Fraction of train.csv patients held out as val (without test.csv)."
    ),
    seed: int = config_option(CheXpertImportConfig, "seed", help="Seed of the patient-level train/val split."),
    verify: str = _verify_option(CheXpertImportConfig),
    name: str = typer.Option("chexpert", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """CheXpert: valid.csv → test, train.csv → train/val by patient (test.csv, when present, → test)."""
    from cxrlens.data.chexpert import run_data_import_chexpert

    cfg = CheXpertImportConfig(root=str(root.resolve()), verify=verify, seed=seed, val_frac=val_frac)
    result = run_data_import_chexpert(open_workspace(workspace), cfg, name=name, force=force)
    _print_loader_result(result, "CheXpert study table", name)
    console.print(f"  split: {result.manifest.extra['split_rule']}")


@import_app.command("nih14")
def import_nih_cmd(
    root: Path = typer.Option(..., help="ChestX-ray14 folder: Data_Entry_2017*.csv, split lists, images (any depth)."),
    val_frac: float = config_option(
        NIHImportConfig, "val_frac", help="Fraction of train_val_list patients held out as val."
    ),
    seed: int = config_option(NIHImportConfig, "seed", help="Seed of the patient-level train/val split."),
    verify: str = _verify_option(NIHImportConfig),
    name: str = typer.Option("nih14", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """NIH ChestX-ray14: 7 findings mapped to CheXpert columns, the 7 NIH-only labels kept as extra columns."""
    from cxrlens.data.nih import run_data_import_nih14

    cfg = NIHImportConfig(root=str(root.resolve()), verify=verify, seed=seed, val_frac=val_frac)
    result = run_data_import_nih14(open_workspace(workspace), cfg, name=name, force=force)
    _print_loader_result(result, "NIH ChestX-ray14 study table", name)


@import_app.command("folder")
def import_folder_cmd(
    root: Path = typer.Option(..., help="Folder searched recursively for PNG / JPEG / DICOM images."),
    reports: Path | None = typer.Option(
        None, "--reports", "--csv", help="CSV: image → report text / CheXpert labels / patient_id / split."
    ),
    image_column: str = config_option(
        FolderImportConfig, "image_column", help="CSV column with the image path (relative to --root)."
    ),
    text_column: str = config_option(FolderImportConfig, "text_column", help="CSV column with the report text."),
    label_reports: bool = config_option(
        FolderImportConfig, "label_reports", help="Label report text with the offline labeler when no labels given."
    ),
    seed: int = config_option(
        FolderImportConfig, "seed", help="Seed of the patient-level split (when the CSV has no split column)."
    ),
    verify: str = _verify_option(FolderImportConfig),
    name: str = typer.Option("folder", help="Dataset name in the workspace."),
    workspace: Path | None = WORKSPACE_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Any image folder; reports from the CSV or <image>.txt files; labels from the CSV or the labeler."""
    from cxrlens.data.folder import run_data_import_folder

    cfg = FolderImportConfig(
        root=str(root.resolve()),
        csv=str(reports.resolve()) if reports else None,
        image_column=image_column,
        text_column=text_column,
        label_reports=label_reports,
        verify=verify,
        seed=seed,
    )
    result = run_data_import_folder(open_workspace(workspace), cfg, name=name, force=force)
    _print_loader_result(result, "Image folder study table", name)
