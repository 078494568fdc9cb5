"""The main job on the embedded default (``make demo`` / ``cxrlens demo``) as a library: :func:`run_demo` and its
``summary.md``.

Names are loaded on first use (PEP 562): ``cxrlens.demo.config`` stays importable without the pipeline's torch /
scikit-learn imports, which the CLI relies on to build ``cxrlens demo --help`` quickly."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEMO_SAE": "config",
    "DEMO_STAGES": "config",
    "DEMO_STREAM": "config",
    "DemoConfig": "config",
    "DemoResult": "pipeline",
    "control_row": "pipeline",
    "demo_extract_config": "pipeline",
    "demo_interpret_config": "pipeline",
    "demo_sae_config": "pipeline",
    "run_demo": "pipeline",
    "CONTROL_METRICS": "summary",
    "overall_pointing": "summary",
    "write_summary": "summary",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cxrlens.demo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cxrlens.demo.{_WHERE[name]}"), name)
