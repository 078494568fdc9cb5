"""Options and small printing helpers shared by the command groups."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cxrlens.console import console
from cxrlens.errors import BadInputError
from cxrlens.interpret.llm import LLMConfig, LLMEndpointError, check_endpoint
from cxrlens.workspace import StageResult, Workspace, default_root

__all__ = [
    "FORCE_OPTION",
    "WORKSPACE_OPTION",
    "config_csv_default",
    "config_csv_option",
    "config_default",
    "config_option",
    "human_bytes",
    "kv_table",
    "open_workspace",
    "print_stage_result",
]

WORKSPACE_OPTION = typer.Option(
    None,
    "--workspace",
    "-w",
    envvar="CXRLENS_WORKSPACE",
    help="Workspace directory \\[default: ./cxrlens-workspace].",
    show_default=False,
)
FORCE_OPTION = typer.Option(False, "--force", help="Redo the stage even if its output is current.")


def config_default(config_cls: type, name: str) -> Any:
    """The default of field ``name`` of the frozen config dataclass ``config_cls``. A command's options take their
    defaults from here, so the CLI and the library cannot drift apart (one source of defaults)."""
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{config_cls.__name__}.{name} has no default")
    raise ValueError(f"{config_cls.__name__} has no field {name!r}")


def config_option(config_cls: type, name: str, *flags: str, **kwargs: Any) -> Any:
    """``typer.Option`` whose default is ``config_cls``'s default for ``name`` (see :func:`config_default`)."""
    return typer.Option(config_default(config_cls, name), *flags, **kwargs)


def config_csv_default(config_cls: type, name: str) -> str:
    """A tuple field's default as the comma-separated string a command parses back into the tuple
    (``("cls", "mean")`` → ``"cls,mean"``; ``()`` → ``""``)."""
    return ",".join(str(v) for v in config_default(config_cls, name))


def config_csv_option(config_cls: type, name: str, *flags: str, **kwargs: Any) -> Any:
    """``typer.Option`` for a comma-separated list whose default is the tuple field ``name``'s default (see
    :func:`config_csv_default`)."""
    return typer.Option(config_csv_default(config_cls, name), *flags, **kwargs)


def open_workspace(path: Path | None) -> Workspace:
    return Workspace(path if path is not None else default_root())


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def print_stage_result(result: StageResult, what: str) -> None:
    """One line: reused (and how to redo) or written, with the path."""
    if result.reused:
        console.print(
            f"[green]✓[/green] {what}: reusing {result.path} (same config hash "
            f"{result.manifest.config_hash[:12]}; --force to redo)"
        )
    else:
        console.print(f"[green]✓[/green] {what}: wrote {result.path}")


def kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    return table


def fmt_number(x: object, digits: int = 3, missing: str = "–") -> str:
    """A number for a table cell: ``digits`` decimals, ``missing`` for None/NaN, anything else as ``str``."""
    if x is None:
        return missing
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    return missing if v != v else f"{v:.{digits}f}"


def llm_config(url: str | None, model: str | None, key_env: str, allow_remote: bool) -> LLMConfig | None:
    """The ``--llm-url/--llm-model/--llm-key-env/--llm-allow-remote`` options as an :class:`LLMConfig` (None
    without ``--llm-url``), checked against the endpoint policy here, before any work: a refusal is one line."""
    if bool(url) != bool(model):
        raise BadInputError(None, "--llm-url and --llm-model go together")
    if not url:
        return None
    try:
        cfg = LLMConfig(url=url, model=str(model), api_key_env=key_env, allow_remote=allow_remote)
        check_endpoint(cfg)
    except LLMEndpointError:
        raise
    except ValueError as err:
        raise BadInputError(None, str(err)) from None
    return cfg
