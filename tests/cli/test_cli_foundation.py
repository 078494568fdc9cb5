"""The CLI as a user runs it: --version, the demo chain twice (second reuses), workspace info, import errors."""

from __future__ import annotations

import json
from pathlib import Path

from cxrlens import __version__
from tests.conftest import run_cli


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"cxrlens {__version__}"


def test_demo_then_reuse_then_info(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    first = run_cli("demo", "--workspace", str(ws), "--max-images", "60", timeout=600)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout and "3,955" in first.stdout and "7,470" in first.stdout
    assert (ws / "datasets" / "iu-xray" / "studies.parquet").exists()
    assert len(list((ws / "datasets" / "iu-phantom" / "images").glob("*.png"))) == 60
    assert (ws / "activations" / "iu-phantom-cxrlens-default" / "manifest.json").exists()
    report = ws / "reports" / "iu-phantom-demo-patch-test"
    assert (report / "reports.jsonl").exists() and (report / "evaluation" / "metrics.json").exists()
    summary = (report / "summary.md").read_text()
    assert "| cxrlens |" in summary and "| random |" in summary and "FINDINGS" in summary
    assert "<html" in (report / "report.html").read_text().lower()
    assert "clinical F1" in first.stdout and "gap vs random" in first.stdout
    second = run_cli("demo", "--max-images", "60", env={"CXRLENS_WORKSPACE": str(ws)}, timeout=600)
    assert second.returncode == 0, second.stderr
    # import, phantom, activations, SAE, interpret, reports, evaluation: no stage ran again
    assert second.stdout.count("reusing") == 7 and "--force to redo" in second.stdout
    info = run_cli("workspace", "info", "-w", str(ws))
    assert info.returncode == 0
    assert "iu-xray" in info.stdout and "data.import.iu-xray" in info.stdout and "reports 3,955" in info.stdout
    assert "iu-phantom" in info.stdout and "activations" in info.stdout
    # the demo's store and interpretation also serve `ask`: heads on its features, SAE features as evidence
    qa = run_cli("qa", "train", "-w", str(ws), "-a", "iu-phantom-cxrlens-default", "--min-train", "2")
    assert qa.returncode == 0, qa.stderr
    interp = next(d.name for d in sorted((ws / "interpret").iterdir()) if (d / "manifest.json").exists())
    image = next((ws / "datasets" / "iu-phantom" / "images").glob("*.png"))
    ask = run_cli("ask", str(image), "is the heart enlarged?", "-w", str(ws), "--json", "--interpret", interp)
    assert ask.returncode == 0, ask.stderr
    evidence = json.loads(ask.stdout)["evidence"]
    sae = [e for e in evidence if e["head"] == f"sae/{interp}"]
    assert len(sae) == 1 and isinstance(sae[0]["features"], list)
    assert all({"feature", "description", "activation", "threshold", "auc"} <= set(f) for f in sae[0]["features"])


def test_empty_workspace_info(tmp_path: Path) -> None:
    r = run_cli("workspace", "info", "-w", str(tmp_path / "none"))
    assert r.returncode == 0 and "no artefacts yet" in r.stdout


def test_import_with_bad_file_prints_one_line_and_continues(tmp_path: Path) -> None:
    src = tmp_path / "xml"
    src.mkdir()
    (src / "1.xml").write_text(
        '<eCitation><uId id="CXR1"/><MedlineCitation><Article><Abstract>'
        '<AbstractText Label="FINDINGS">Heart size normal.</AbstractText>'
        '<AbstractText Label="IMPRESSION">No acute disease.</AbstractText>'
        "</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>"
        '<parentImage id="CXR1_1_IM-0001-3001"><caption>PA</caption></parentImage></eCitation>'
    )
    (src / "2.xml").write_text("<eCitation><uId id='CXR2'/>")
    r = run_cli("data", "import", "iu-xray", "--reports", str(src), "-w", str(tmp_path / "ws"))
    assert r.returncode == 0, r.stderr
    bad_lines = [line for line in r.stderr.splitlines() if "2.xml" in line]
    assert len(bad_lines) == 1 and "malformed XML" in bad_lines[0]
    assert "reports (studies)" in r.stdout and "skipped inputs" in r.stdout


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    r = run_cli("data", "import", "iu-xray", "--reports", str(tmp_path / "missing.tgz"), "-w", str(tmp_path / "ws"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "reports source not found" in r.stderr
    assert "Traceback" not in r.stderr
