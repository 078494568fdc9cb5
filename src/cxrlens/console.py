"""Terminal output shared by the CLI and long-running library jobs: one console, one progress-bar style."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "err_console", "progress", "warn_line"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def progress(*, transient: bool = False, disable: bool = False) -> Progress:
    """A rich progress bar on stderr: description, bar, n/N, %, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=disable,
    )


def warn_line(message: str) -> None:
    """One warning line on stderr (bad input that was skipped, a fallback that was taken …)."""
    err_console.print(f"[yellow]warning[/yellow] {escape(message)}", soft_wrap=True)
