"""IU X-ray import: counts, text coverage, the patient-level split, and bad XML files."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.iu_xray import (
    IUXrayImportConfig,
    iter_report_files,
    load_iu_xray,
    run_data_import_iu_xray,
    xrv_data_dir,
)
from cxrlens.data.schema import CHEXPERT_LABELS, STUDY_COLUMNS, patient_split, validate_study_table
from cxrlens.data.store import read_side_table, read_studies
from cxrlens.errors import BadInputError


@pytest.fixture(scope="module")
def iu():
    return load_iu_xray()


def test_counts_and_text_coverage(iu) -> None:
    assert len(iu.reports) == 3955
    assert len(iu.studies) == 7470
    assert iu.studies["image_id"].is_unique and iu.reports["study_id"].is_unique
    assert iu.errors == ()
    has_text = (iu.reports["findings"].str.len() > 0) | (iu.reports["impression"].str.len() > 0)
    assert has_text.mean() >= 0.95
    assert iu.reports["n_images"].sum() == 7470
    validate_study_table(iu.studies)
    assert list(iu.studies.columns[: len(STUDY_COLUMNS)]) == list(STUDY_COLUMNS)
    assert all(iu.studies[label].dtype == np.float32 for label in CHEXPERT_LABELS)
    # labels come from the labeler: a normal report is No Finding, common findings are present
    assert (iu.studies.loc[iu.studies["study_id"] == "CXR1", "No Finding"] == 1).all()
    assert (iu.reports["Cardiomegaly"] == 1).sum() > 200 and (iu.reports["Pleural Effusion"] == 1).sum() > 50
    assert (iu.studies["image_path"] == "").all()  # no IU image exists offline
    assert (iu.studies["source"] == "iu-xray").all()


def test_known_report_parsed(iu) -> None:
    r = iu.reports.set_index("study_id").loc["CXR1"]
    assert r["findings"].startswith("The cardiac silhouette and mediastinum size are within normal limits")
    assert r["indication"] == "Positive TB test" and r["comparison"] == "None."
    assert list(r["mesh_major"]) == ["normal"]
    images = iu.studies[iu.studies["study_id"] == "CXR1"]
    assert images["image_id"].tolist() == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    # views joined from the DICOM metadata where the id matches; the rest UNKNOWN
    views = iu.studies["view"].value_counts()
    assert views["PA"] > 3000 and views["LATERAL"] > 500 and views.sum() == 7470


def test_split_is_patient_level_deterministic_and_70_10_20(iu) -> None:
    again = load_iu_xray(IUXrayImportConfig(label_reports=False))  # labels do not touch the split
    pd.testing.assert_series_equal(iu.studies["split"], again.studies["split"])
    assert (iu.studies.groupby("patient_id")["split"].nunique() == 1).all()
    frac = iu.reports["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.2) < 0.03
    other_seed = load_iu_xray(IUXrayImportConfig(seed=1, label_reports=False))
    assert (other_seed.reports["split"] != iu.reports["split"]).mean() > 0.2
    # a patient's split does not depend on which other patients are present
    ids = iu.reports["patient_id"].tolist()
    full = patient_split(ids, seed=0)
    part = patient_split(ids[::3], seed=0)
    assert (full.loc[part.index] == part).all()


def _write_reports(src: Path, dest: Path, n: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in list(iter_report_files(src))[:n]:
        path = dest / Path(name.split(":")[-1]).name
        path.write_bytes(payload)
        written.append(path)
    return written


def test_malformed_xml_is_one_clear_line_and_the_rest_import(tmp_path: Path) -> None:
    files = _write_reports(xrv_data_dir() / "NLMCXR_reports.tgz", tmp_path / "xml", 20)
    broken = tmp_path / "xml" / "broken.xml"
    broken.write_text("<eCitation><uId id='CXR99999'/><MeSH><major>normal</major></eCitation")
    not_iu = tmp_path / "xml" / "zz_other.xml"
    not_iu.write_text("<html><body/></html>")
    t = load_iu_xray(IUXrayImportConfig(reports_source=str(tmp_path / "xml")))
    assert len(t.reports) == len(files)
    assert len(t.errors) == 2
    msgs = sorted(str(e) for e in t.errors)
    assert msgs[0].startswith(str(broken)) and "malformed XML" in msgs[0]
    assert msgs[1].startswith(str(not_iu)) and "not an IU X-ray report" in msgs[1]
    assert all("\n" not in m for m in msgs)


def test_tgz_source_and_workspace_import(tmp_path: Path, workspace) -> None:
    files = _write_reports(xrv_data_dir() / "NLMCXR_reports.tgz", tmp_path / "xml", 12)
    (tmp_path / "xml" / "bad.xml").write_bytes(b"\x00\x01 not xml")
    archive = tmp_path / "small.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted((tmp_path / "xml").iterdir()):
            tar.add(f, arcname=f"ecgen-radiology/{f.name}")
    cfg = IUXrayImportConfig(reports_source=str(archive))
    r = run_data_import_iu_xray(workspace, cfg, name="small")
    assert not r.reused
    assert r.manifest.rows["reports"] == len(files) and r.manifest.skipped == {"total": 1}
    assert str(archive) in r.manifest.inputs and len(r.manifest.inputs[str(archive)]) == 64
    studies = read_studies(workspace, "small")
    assert len(studies) == r.manifest.rows["images"]
    skipped = read_side_table(workspace, "small", "skipped")
    assert skipped["path"].tolist() == [f"{archive}:ecgen-radiology/bad.xml"]
    assert run_data_import_iu_xray(workspace, cfg, name="small").reused
    with pytest.raises(BadInputError, match="not found in the workspace"):
        read_studies(workspace, "absent")


def test_missing_source_is_clear(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="reports source not found"):
        load_iu_xray(IUXrayImportConfig(reports_source=str(tmp_path / "nope.tgz")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no readable IU X-ray report"):
        load_iu_xray(IUXrayImportConfig(reports_source=str(empty)))
