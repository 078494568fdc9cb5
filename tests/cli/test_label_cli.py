"""``cxrlens label`` as a user runs it: CSV/parquet/.txt-directory input, id column first, and bad input.

One test runs the real console entry point in a fresh interpreter; the others call the same ``main()`` in-process
(same argument parsing and error handling, without paying the interpreter start-up each time).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from cxrlens.cli import main
from cxrlens.data.schema import CHEXPERT_LABELS
from tests.conftest import run_cli


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """Run ``cxrlens <args>`` in-process; returns (returncode, stdout, stderr) like ``subprocess.run``."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


REPORTS = {
    "r1": "FINDINGS: Small left pleural effusion. IMPRESSION: No pneumothorax.",
    "r2": "Heart size is normal. The lungs are clear.",
    "r3": "ETT tip 4 cm above the carina. Possible right lower lobe pneumonia.",
}


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("csv")
    src = d / "reports.csv"
    pd.DataFrame({"id": list(REPORTS), "report": list(REPORTS.values()), "other": 1}).to_csv(src, index=False)
    out = d / "labels.csv"
    return out, run_cli("label", str(src), "--text-column", "report", "--id-column", "id", "--out", str(out))


def test_csv_in_csv_out(csv_run) -> None:
    out, r = csv_run
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert list(df.columns) == ["id", *CHEXPERT_LABELS]
    df = df.set_index("id")
    assert df.loc["r1", "Pleural Effusion"] == 1 and df.loc["r1", "Pneumothorax"] == 0
    assert df.loc["r2", "Cardiomegaly"] == 0 and df.loc["r2", "No Finding"] == 1
    assert df.loc["r3", "Support Devices"] == 1 and df.loc["r3", "Pneumonia"] == -1
    assert "labelled 3 reports, skipped 0" in r.stdout


def test_parquet_in_parquet_out_and_row_ids(tmp_path: Path, cli) -> None:
    src = tmp_path / "reports.parquet"
    pd.DataFrame({"text": ["No pneumothorax.", "Cardiomegaly."]}).to_parquet(src)
    out = tmp_path / "labels.parquet"
    r = cli("label", str(src), "--text-column", "text", "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert list(df.columns) == ["row", *CHEXPERT_LABELS] and df["row"].tolist() == [0, 1]
    assert df.loc[1, "Cardiomegaly"] == 1


def test_txt_directory_with_bad_files_skips_and_counts(tmp_path: Path, cli) -> None:
    d = tmp_path / "txt"
    d.mkdir()
    for k, v in REPORTS.items():
        (d / f"{k}.txt").write_text(v, encoding="utf-8")
    (d / "latin1.txt").write_bytes("Épanchement pleural gauche.".encode("latin-1"))
    (d / "empty.txt").write_text("  \n")
    out = tmp_path / "labels.csv"
    r = cli("label", str(d), "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert df.columns[0] == "id" and sorted(df["id"]) == ["r1", "r2", "r3"]
    bad = [line for line in r.stderr.splitlines() if "latin1.txt" in line]
    assert len(bad) == 1 and "not UTF-8" in bad[0]
    assert sum("empty.txt" in line and "empty report" in line for line in r.stderr.splitlines()) == 1
    assert "labelled 3 reports, skipped 2" in r.stdout


def test_empty_report_rows_are_skipped(tmp_path: Path, cli) -> None:
    src = tmp_path / "reports.csv"
    pd.DataFrame({"id": ["a", "b"], "report": ["No effusion.", ""]}).to_csv(src, index=False)
    out = tmp_path / "labels.csv"
    r = cli("label", str(src), "--id-column", "id", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(out)["id"].tolist() == ["a"]
    lines = [line for line in r.stderr.splitlines() if "reports.csv" in line]
    assert len(lines) == 1 and "empty report (id b)" in lines[0]


def _one_line_error(r: Result, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


def test_missing_column_is_one_line(tmp_path: Path, cli) -> None:
    src = tmp_path / "reports.csv"
    pd.DataFrame({"id": ["a"], "text": ["No effusion."]}).to_csv(src, index=False)
    out = tmp_path / "labels.csv"
    _one_line_error(cli("label", str(src), "--out", str(out)), "reports.csv", "no column 'report'")
    _one_line_error(
        cli("label", str(src), "--text-column", "text", "--id-column", "study", "--out", str(out)),
        "no column 'study'",
    )
    assert not out.exists()


def test_unreadable_and_missing_files_are_one_line(tmp_path: Path, cli) -> None:
    junk = tmp_path / "reports.parquet"
    junk.write_bytes(b"this is not parquet")
    out = tmp_path / "labels.csv"
    _one_line_error(cli("label", str(junk), "--out", str(out)), "reports.parquet", "cannot read table")
    _one_line_error(cli("label", str(tmp_path / "none.csv"), "--out", str(out)), "none.csv", "file not found")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("report\nÉpanchement\n".encode("latin-1"))
    _one_line_error(cli("label", str(latin), "--out", str(out)), "latin.csv", "not UTF-8")
    good = tmp_path / "ok.csv"
    pd.DataFrame({"report": ["No effusion."]}).to_csv(good, index=False)
    _one_line_error(cli("label", str(good), "--out", str(tmp_path / "labels.json")), "labels.json", ".csv or")
    assert not out.exists()


def test_conventions_switch_reads_congestion_as_chexpert_does(tmp_path: Path, cli) -> None:
    src = tmp_path / "r.csv"
    pd.DataFrame({"report": ["Mild pulmonary vascular congestion. Patchy consolidation at the left base."]}).to_csv(
        src, index=False
    )
    iu, chx = tmp_path / "iu.csv", tmp_path / "chx.csv"
    assert cli("label", str(src), "--out", str(iu)).returncode == 0
    assert cli("label", str(src), "--out", str(chx), "--conventions", "chexpert").returncode == 0
    a, b = pd.read_csv(iu).iloc[0], pd.read_csv(chx).iloc[0]
    assert a["Edema"] == 1 and b["Edema"] == -1  # congestion: edema (MeSH) vs uncertain edema (CheXpert)
    assert pd.isna(a["Lung Opacity"]) and b["Lung Opacity"] == 1  # opacity as parent of consolidation
    bad = cli("label", str(src), "--out", str(chx), "--conventions", "mimic")
    assert bad.returncode == 2 and "--conventions must be 'iu' or 'chexpert'" in bad.stderr
