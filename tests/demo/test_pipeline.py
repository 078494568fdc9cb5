"""The demo as a library call: every stage announced before and reported after it runs, in order; a second call
reuses every artefact and rewrites the same summary.md."""

from __future__ import annotations

from pathlib import Path

from cxrlens.demo import DEMO_STAGES, DemoConfig, run_demo
from cxrlens.workspace import Workspace


def test_run_demo_stages_in_order_then_reuse(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    events: list[tuple[str, bool]] = []
    result = run_demo(ws, DemoConfig(max_images=40), on_stage=lambda name, done, value: events.append((name, done)))
    assert events == [e for name in DEMO_STAGES for e in ((name, False), (name, True))]
    summary = result.summary.read_text()
    assert result.summary == result.reports.path / "summary.md" and "## Goals (issue 17)" in summary
    assert [r["control"] for r in result.controls] == ["trained", "untrained SAE", "random backbone"]
    assert result.page.exists() and set(result.probe) <= {"block.2/mean", "final/cls"}
    assert "micro-5" in summary and ("met" in summary or "MISSED" in summary)
    again = run_demo(ws, DemoConfig(max_images=40))
    staged = (again.imported, again.phantom, again.activations, again.sae, again.interpretation, again.reports)
    assert all(s.reused for s in (*staged, again.evaluation))
    assert again.summary.read_text() == summary
