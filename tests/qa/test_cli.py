"""``cxrlens qa train``, ``cxrlens ask`` and ``cxrlens check-report`` end to end on a small phantom workspace with
the shipped default backbone, and their one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrlens.activations import ExtractConfig, run_extract
from cxrlens.cli import main
from cxrlens.data.phantom.datasets import IUPhantomConfig, run_data_build_iu_phantom
from cxrlens.workspace import Workspace
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Workspace, Path, Path]:
    ws = Workspace(tmp_path_factory.mktemp("qa") / "ws")
    run_data_build_iu_phantom(ws, IUPhantomConfig(n=400, size=128), workers=1)
    run_extract(
        ws,
        ExtractConfig("iu-phantom", "cxrlens:default", tokens=("cls", "mean", "patch")),
        run="acts",
        show_progress=False,
    )
    run_extract(ws, ExtractConfig("iu-phantom", "cxrlens:default"), run="no-patch", show_progress=False)
    r = run_cli("qa", "train", "-w", str(ws.root), "-a", "acts", "--min-train", "3")
    assert r.returncode == 0, r.stderr
    assert "presence/Cardiomegaly" in r.stdout and "qa model qa: wrote" in r.stdout
    studies = pd.read_parquet(ws.dataset("iu-phantom") / "studies.parquet")
    factors = pd.read_parquet(ws.dataset("iu-phantom") / "factors.parquet").set_index("image_id")
    test = studies[studies["split"] == "test"]
    row = next(
        r
        for r in test.itertuples()
        if factors.at[r.image_id, "cardiomegaly.present"] == 1 and not factors.at[r.image_id, "cardiomegaly.uncertain"]
    )
    image = ws.dataset("iu-phantom") / row.image_path
    report = ws.root / "report.txt"
    report.write_text(
        f"FINDINGS: {row.findings}\nIMPRESSION: {row.impression}\nThe heart is enlarged. No pleural effusion. "
        "There is a large left pneumothorax."
    )
    return ws, image, report


def test_ask_answers_with_confidence_evidence_and_heatmaps(trained, tmp_path):
    ws, image, _ = trained
    r = run_cli(
        "ask", str(image), "is the heart enlarged?", "-w", str(ws.root), "--json", "--heatmaps", str(tmp_path / "maps")
    )
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)
    assert a["question"]["kind"] == "presence" and a["question"]["finding"] == "Cardiomegaly"
    assert a["answer"] in ("yes", "no") and 0 <= a["confidence"] <= 1
    ev = a["evidence"][0]
    assert ev["head"] == "presence/Cardiomegaly" and Path(ev["heatmap"]).is_file()
    text = run_cli("ask", str(image), "which side is the effusion?", "-w", str(ws.root))
    assert text.returncode == 0 and "evidence" in text.stdout and "parsed: laterality" in text.stdout


def test_ask_refuses_questions_one_image_cannot_answer(trained):
    ws, image, _ = trained
    r = run_cli("ask", str(image), "is the effusion worse than on the prior?", "-w", str(ws.root), "--json")
    a = json.loads(r.stdout)
    assert a["answer"] == "cannot answer" and a["confidence"] is None and "prior" in a["text"]


def test_check_report_text_json_html(trained, tmp_path):
    ws, image, report = trained
    r = run_cli("check-report", str(image), str(report), "-w", str(ws.root))
    assert r.returncode == 0, r.stderr
    assert "There is a large left pneumothorax." in r.stdout and "supported" in r.stdout
    j = run_cli(
        "check-report", str(image), str(report), "-w", str(ws.root), "-f", "json", "--heatmaps", str(tmp_path / "maps")
    )
    doc = json.loads(j.stdout)
    last = next(s for s in doc["sentences"] if s["text"] == "There is a large left pneumothorax.")
    assert last["claims"][0]["finding"] == "Pneumothorax" and last["claims"][0]["side"] == "left"
    flagged = [c for s in doc["sentences"] for c in s["claims"] if c["flag"] != "unverifiable"]
    assert flagged and all(c["evidence"] and c["note"] for c in flagged)
    assert doc["heatmaps"] and all(Path(p).is_file() for p in doc["heatmaps"].values())
    out = tmp_path / "check.html"
    h = run_cli("check-report", str(image), str(report), "-w", str(ws.root), "-f", "html", "-o", str(out))
    assert h.returncode == 0 and out.read_text().startswith("<!doctype html>")


def test_bad_input_gets_one_line(trained, tmp_path, capsys):
    ws, image, report = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    cases = [
        (("ask", str(tmp_path / "nope.png"), "is there an effusion?"), "no such image file"),
        (("check-report", str(image), str(empty)), "the report is empty"),
        (("check-report", str(image), str(binary)), "not UTF-8"),
        (("check-report", str(image), str(tmp_path / "none.txt")), "no such report file"),
        (("check-report", str(image), str(report), "-f", "pdf"), "--format must be"),
        (("ask", str(image), "any effusion?", "-m", "missing"), "qa train"),
        (("qa", "train", "-a", "no-patch", "-r", "np"), "no patch stream"),
        (("ask", str(image), "any effusion?", "--llm-url", "http://127.0.0.1:9/v1"), "go together"),
        (
            ("ask", str(image), "any effusion?", "--llm-url", "https://api.example.com/v1", "--llm-model", "m"),
            "api.example.com",
        ),
        (("qa", "train", "-a", "acts", "-r", "np", "--cs", "x"), "--cs must be"),
    ]
    for args, needle in cases:  # in-process (the CLI entry point as the console script calls it), for speed
        with pytest.raises(SystemExit) as exc:
            main([*args, "-w", str(ws.root)])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2, (args, err)
        assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
