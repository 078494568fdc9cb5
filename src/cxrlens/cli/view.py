"""``cxrlens view``: serve the local web viewer over a workspace (:mod:`cxrlens.viewer` does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrlens.cli.common import WORKSPACE_OPTION, config_default, config_option, open_workspace
from cxrlens.console import console
from cxrlens.errors import CxrlensError
from cxrlens.viewer.config import ViewerConfig


def view(
    workspace: Path | None = WORKSPACE_OPTION,
    host: str = config_option(
        ViewerConfig, "host", "--host", help="Interface to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it)."
    ),
    port: int = config_option(ViewerConfig, "port", "--port", help="TCP port."),
    upload_limit_mb: float = typer.Option(
        config_default(ViewerConfig, "upload_limit_bytes") / 2**20,
        "--upload-limit-mb",
        help="Largest image accepted by the upload endpoint, in MiB.",
    ),
    uploads: bool = config_option(
        ViewerConfig, "uploads", "--uploads/--no-uploads", help="Enable POST /api/upload (report for a new image)."
    ),
    page_size: int = config_option(ViewerConfig, "page_size", "--page-size", help="Rows per page by default."),
) -> None:
    """Browse a workspace in the browser: features, reports with evidence, search and analysis figures.

    Only reads the workspace (thumbnails are cached in <workspace>/.viewer-cache). Everything is served by the app
    itself; nothing is loaded from the internet.
    """
    try:
        from cxrlens.viewer.app import serve
    except ImportError as exc:
        raise CxrlensError(
            f"the viewer needs the [viewer] extra ({exc.name or exc} missing): pip install 'cxrlens[viewer]'"
        ) from None

    ws = open_workspace(workspace)
    cfg = ViewerConfig(
        host=host, port=port, upload_limit_bytes=int(upload_limit_mb * 2**20), uploads=uploads, page_size=page_size
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[yellow]warning[/yellow] binding {host}: anyone who can reach this machine can read the workspace"
        )
    console.print(f"cxrlens viewer: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/  (workspace {ws.root})")
    serve(ws.root, cfg)
