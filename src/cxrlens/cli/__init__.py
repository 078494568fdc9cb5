"""The ``cxrlens`` command line: a thin typer layer over the library.

One module per command group (``cli/data.py``, ``cli/workspace.py`` …), each defining a ``typer.Typer`` named
``app`` (or single commands) that only parses arguments, calls the library and prints the result. Errors the user
can act on (:class:`cxrlens.errors.CxrlensError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

from cxrlens import __version__
from cxrlens.cli import (
    align,
    analyze,
    backbone,
    data,
    demo,
    evaluate,
    extract,
    interpret,
    label,
    ltvit,
    qa,
    report,
    sae,
    view,
    workspace,
)
from cxrlens.console import err_console
from cxrlens.errors import CxrlensError

__all__ = ["app", "main"]

app = typer.Typer(
    name="cxrlens",
    help="Make chest-X-ray image models explain themselves in radiologists' words.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxrlens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cxrlens: sparse autoencoders, evidence-linked reports and latent-space analysis for chest X-rays."""


app.add_typer(workspace.app, name="workspace")
app.add_typer(data.app, name="data")
app.add_typer(backbone.app, name="backbone")
app.command("extract")(extract.extract)
app.command("demo")(demo.demo)
app.command("label")(label.label)
app.add_typer(ltvit.app, name="lt-vit")
app.add_typer(align.app, name="align")
app.add_typer(analyze.app, name="analyze")
app.add_typer(sae.app, name="sae")
app.command("interpret")(interpret.interpret)
app.command("report")(report.report)
app.add_typer(evaluate.app, name="evaluate")
app.command("view")(view.view)
app.add_typer(qa.app, name="qa")
app.command("ask")(qa.ask)
app.command("check-report")(qa.check_report)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user-facing errors into one line + exit 2."""
    try:
        app(args=argv, prog_name="cxrlens", standalone_mode=True)
    except CxrlensError as exc:
        err_console.print(f"[bold red]error[/bold red] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
