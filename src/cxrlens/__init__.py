"""cxrlens: make chest-X-ray image models explain themselves in radiologists' words.

Sub-packages (each re-exports its public API): ``cxrlens.data`` (study tables, loaders, labeler, phantoms),
``cxrlens.workspace`` (artefact paths, atomic writes, manifests), ``cxrlens.config`` (frozen configs, TOML, hash).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxrlens")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
