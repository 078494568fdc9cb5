"""Driving the viewer in a real browser: the app served by uvicorn in a thread on a free loopback port, and Debian's
``chromium`` launched headless by Playwright (never a downloaded browser; background networking off, so everything
runs offline). Shared by the browser tests and ``tests/viewer/screenshots.py``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from playwright.sync_api import Browser, sync_playwright

from cxrlens.viewer.app import create_app
from cxrlens.viewer.config import ViewerConfig

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium() -> str | None:
    """Debian's chromium executable, or None (the browser tests then skip)."""
    return shutil.which("chromium")


@contextlib.contextmanager
def serve(workspace: Path, config: ViewerConfig | None = None) -> Iterator[str]:
    """The viewer over ``workspace`` on ``http://127.0.0.1:<free port>`` while the block runs; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(workspace, config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the viewer did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def browser(executable: str) -> Iterator[Browser]:
    """A headless Playwright ``Browser`` on ``executable`` (closed afterwards)."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
