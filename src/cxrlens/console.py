"""Terminal output shared by the CLI and long-running library jobs: one console, one progress-bar style."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

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

__all__ = ["console", "err_console", "progress", "quiet_transformers", "warn_line"]

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


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bars and stdout prints for one call (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_disabled = not hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()
