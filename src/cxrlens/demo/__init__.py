"""The main job on the embedded default (``make demo`` / ``cxrlens demo``) as a library: :func:`run_demo` and its
``summary.md``."""

from cxrlens.demo.pipeline import (
    DEMO_SAE,
    DEMO_STAGES,
    DemoConfig,
    DemoResult,
    control_row,
    demo_extract_config,
    demo_interpret_config,
    demo_sae_config,
    run_demo,
)
from cxrlens.demo.summary import CONTROL_METRICS, overall_pointing, write_summary

__all__ = [
    "CONTROL_METRICS",
    "DEMO_SAE",
    "DEMO_STAGES",
    "DemoConfig",
    "DemoResult",
    "control_row",
    "demo_extract_config",
    "demo_interpret_config",
    "demo_sae_config",
    "overall_pointing",
    "run_demo",
    "write_summary",
]
