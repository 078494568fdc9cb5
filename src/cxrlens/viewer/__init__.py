"""The local web viewer (``cxrlens view``): a FastAPI app that reads a workspace and serves HTML pages, a JSON API
and image thumbnails. See ``docs/viewer.md``.

Names are loaded on first use (PEP 562): ``cxrlens.viewer.config`` stays importable without FastAPI (an optional
extra, ``cxrlens[viewer]``) and the report stack, which the CLI relies on for ``cxrlens view --help``."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ViewerConfig": "config",
    "create_app": "app",
    "serve": "app",
    "FeatureQuery": "data",
    "WorkspaceData": "data",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cxrlens.viewer' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cxrlens.viewer.{_WHERE[name]}"), name)
