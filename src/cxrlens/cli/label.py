"""``cxrlens label``: CheXpert-14 labels for free-text reports (CSV / parquet table, or a directory of .txt)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cxrlens.console import console, warn_line
from cxrlens.errors import BadInputError


def label(
    reports: Path = typer.Argument(..., help="A .csv/.tsv/.parquet table of reports, or a directory of .txt reports."),
    text_column: str = typer.Option("report", help="Column holding the report text (tables only)."),
    id_column: str | None = typer.Option(
        None, help="Column holding the report id, kept first in the output \\[default: row number; file stem for .txt]."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output .csv or .parquet (written atomically)."),
    sections: bool = typer.Option(
        True, help="Read only FINDINGS/IMPRESSION when the report has section headers (--no-sections: whole text)."
    ),
    conventions: str = typer.Option(
        "iu",
        help="'iu': the readings that agree with IU X-ray's MeSH tags; 'chexpert': CheXpert's labeler conventions "
        "(congestion, 'no new X', 'stable heart size' uncertain; Lung Opacity as parent) — docs/labeler.md.",
    ),
) -> None:
    """Label reports with the 14 CheXpert observations (1 positive, 0 negative, -1 uncertain, empty = not mentioned)."""
    from cxrlens.data.labeler import LabelerConfig, label_reports, read_report_texts
    from cxrlens.data.schema import CHEXPERT_LABELS
    from cxrlens.files import atomic_write_bytes, atomic_write_parquet

    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BadInputError(out, "output must end in .csv or .parquet")
    table, errors = read_report_texts(reports, text_column, id_column)
    for err in errors:
        warn_line(f"{err} — skipped")
    if table.empty:
        raise BadInputError(reports, f"no report to label ({len(errors)} skipped)")
    if conventions not in ("iu", "chexpert"):
        raise BadInputError(None, f"--conventions must be 'iu' or 'chexpert', got {conventions!r}")
    config = LabelerConfig.strict_chexpert(sections=sections) if conventions == "chexpert" else LabelerConfig(sections)
    labels = label_reports(table["text"].tolist(), config)
    result = labels.copy()
    result.insert(0, table.columns[0], table.iloc[:, 0].to_numpy())
    if suffix == ".parquet":
        atomic_write_parquet(out, result)
    else:
        atomic_write_bytes(out, result.to_csv(index=False).encode("utf-8"))

    summary = Table(title=f"Labels of {len(result):,} reports", title_justify="left")
    for col, justify in (("label", "left"), ("positive", "right"), ("uncertain", "right"), ("negative", "right")):
        summary.add_column(col, justify=justify)
    for name in CHEXPERT_LABELS:
        v = labels[name]
        summary.add_row(name, f"{int((v == 1).sum()):,}", f"{int((v == -1).sum()):,}", f"{int((v == 0).sum()):,}")
    console.print(summary)
    console.print(f"[green]✓[/green] labelled {len(result):,} reports, skipped {len(errors):,}: wrote {out}")
