"""Dataset loaders on small fake trees laid out like the real datasets (real column names; CheXpert and NIH rows are
the real first rows of the CSVs torchxrayvision ships): study tables, splits, labels, and the bad-input battery —
each bad item one line naming its file, skipped, counted in the manifest, the rest imported, nothing half-written."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.chexpert import CheXpertImportConfig, load_chexpert, parse_chexpert_path, run_data_import_chexpert
from cxrlens.data.folder import FolderImportConfig, load_folder, run_data_import_folder
from cxrlens.data.mimic import MimicImportConfig, load_mimic_cxr, run_data_import_mimic_cxr
from cxrlens.data.nih import NIH_ONLY_LABELS, NIHImportConfig, load_nih14, run_data_import_nih14
from cxrlens.data.schema import CHEXPERT_LABELS, STUDY_COLUMNS, validate_study_table
from cxrlens.data.store import read_side_table, read_studies
from cxrlens.errors import BadInputError
from tests.conftest import run_cli
from tests.data.fake_cxr_files import (
    gradient,
    make_chexpert_tree,
    make_mimic_tree,
    make_nih_tree,
    tiny_xray,
    truncate,
    write_dicom,
    write_jpeg,
    write_png,
    xrv_csv_head,
)


def _one_line_naming(err: BadInputError, path: Path, problem: str) -> None:
    msg = str(err)
    assert msg.startswith(f"{path}: "), msg
    assert problem in msg, msg
    assert "\n" not in msg


def _find(errors, path: Path) -> BadInputError:
    hits = [e for e in errors if e.path == str(path)]
    assert len(hits) == 1, [str(e) for e in errors]
    return hits[0]


# ------------------------------------------------------------------------------------------------------ MIMIC
@pytest.fixture
def mimic_tree(tmp_path: Path) -> tuple[Path, Path, dict]:
    info = make_mimic_tree(tmp_path / "mimic-cxr-jpg" / "2.0.0", tmp_path / "mimic-cxr-reports")
    return tmp_path / "mimic-cxr-jpg" / "2.0.0", tmp_path / "mimic-cxr-reports", info


def test_mimic_study_table_split_labels_reports(mimic_tree, workspace) -> None:
    root, reports, info = mimic_tree
    result = run_data_import_mimic_cxr(workspace, MimicImportConfig(root=str(root), reports=str(reports)))
    st = read_studies(workspace, "mimic-cxr")
    validate_study_table(st)
    assert list(st.columns[: len(STUDY_COLUMNS)]) == list(STUDY_COLUMNS)
    assert len(st) == info["n_images"] == 9 and st["study_id"].nunique() == 6 and st["patient_id"].nunique() == 4
    assert result.manifest.rows == {"images": 9, "reports": 6} and result.manifest.skipped == {"total": 0}
    by_id = st.set_index("image_id")
    first = by_id.loc["02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"]
    assert first["image_path"] == str(
        root.resolve() / "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    )
    assert (first["study_id"], first["patient_id"], first["view"], first["split"]) == (
        "50414267",
        "10000032",
        "PA",
        "train",
    )
    # official split kept, "validate" → val
    assert st.groupby("patient_id")["split"].first().to_dict() == {
        "10000032": "train",
        "10000764": "val",
        "10000898": "test",
        "11000011": "train",
    }
    assert by_id.loc["b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f", "view"] == "LATERAL"  # LL
    assert by_id.loc["c3d1b7a0-1e2f3a4b-5c6d7e8f-9a0b1c2d-3e4f5a6b", "view"] == "UNKNOWN"  # empty ViewPosition
    # labels are per study, copied to every image; untouched values stay NaN
    s = st[st["study_id"] == "57375967"]
    assert len(s) == 2 and (s["Cardiomegaly"] == 1).all() and (s["Pneumonia"] == -1).all()
    assert s["Edema"].isna().all()
    assert st.loc[st["study_id"] == "53189527", "Pneumothorax"].tolist() == [0.0]
    # report sections
    assert s["findings"].tolist() == ["Mild cardiomegaly."] * 2
    assert s["impression"].tolist() == ["Possible early pneumonia."] * 2
    assert s["indication"].iloc[0] == "___ with cough // ? pneumonia"
    rep = read_side_table(workspace, "mimic-cxr", "reports")
    assert len(rep) == 6 and rep.set_index("study_id").loc["57375967", "split"] == "val"
    assert "FINAL REPORT" in rep["text"].iloc[0]
    assert (st["image_height"] == 16).all()
    # skipped when current
    assert run_data_import_mimic_cxr(workspace, MimicImportConfig(root=str(root), reports=str(reports))).reused


def test_mimic_without_reports_or_split_file(mimic_tree, capsys) -> None:
    root, _, _ = mimic_tree
    plain = load_mimic_cxr(MimicImportConfig(root=str(root)))
    assert len(plain.studies) == 9 and (plain.studies["findings"] == "").all() and plain.tables == {}
    (root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    fallback = load_mimic_cxr(MimicImportConfig(root=str(root), seed=3))
    assert "using a patient-level hash split (seed 3)" in capsys.readouterr().err
    validate_study_table(fallback.studies)  # patient-level: one split per patient
    assert len(fallback.studies) == 9


def test_mimic_without_label_csv_and_split_leak_is_named(mimic_tree, capsys) -> None:
    root, _, _ = mimic_tree
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").unlink()
    t = load_mimic_cxr(MimicImportConfig(root=str(root)))
    assert "CheXpert labels left empty (NaN)" in capsys.readouterr().err
    assert t.studies[list(CHEXPERT_LABELS)].isna().all().all() and len(t.studies) == 9
    split = root / "mimic-cxr-2.0.0-split.csv.gz"
    sp = pd.read_csv(split, dtype=str)
    sp.loc[sp["study_id"] == "53189527", "split"] = "test"  # patient 10000032 now in train and test
    sp.to_csv(split, index=False)
    with pytest.raises(BadInputError) as info:
        load_mimic_cxr(MimicImportConfig(root=str(root)))
    _one_line_naming(info.value, split.resolve(), "patient '10000032' is in more than one split")


def test_mimic_plain_csv_names_also_work(tmp_path: Path) -> None:
    make_mimic_tree(tmp_path / "jpg", tmp_path / "rep", gz=False)
    assert len(load_mimic_cxr(MimicImportConfig(root=str(tmp_path / "jpg"))).studies) == 9


def test_mimic_bad_inputs_skipped_counted_rest_imported(mimic_tree, workspace) -> None:
    root, reports, _ = mimic_tree
    rep = lambda s, t: reports / "files" / f"p{s[:2]}" / f"p{s}" / f"s{t}.txt"  # noqa: E731
    img = lambda s, t, d: root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg"  # noqa: E731
    empty_report = rep("10000898", "54205396")
    empty_report.write_text("  \n\n ")
    latin1_report = rep("11000011", "56699142")
    latin1_report.write_bytes("FINDINGS: Ödem der Lunge.".encode("latin-1"))
    cut = truncate(img("10000032", "53189527", "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"))
    text_jpg = img("10000764", "57375967", "b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f")
    text_jpg.write_text("not an image")
    labels_path = root / "mimic-cxr-2.0.0-chexpert.csv.gz"
    labels = pd.read_csv(labels_path, dtype=str, keep_default_na=False)
    labels.loc[labels["study_id"] == "50771383", "Edema"] = "2.0"
    labels.to_csv(labels_path, index=False)

    result = run_data_import_mimic_cxr(workspace, MimicImportConfig(root=str(root), reports=str(reports)))
    st = read_studies(workspace, "mimic-cxr")
    skipped = read_side_table(workspace, "mimic-cxr", "skipped")
    assert result.manifest.skipped == {"total": 5} and len(skipped) == 5
    assert set(skipped["path"]) == {str(empty_report), str(latin1_report), str(cut), str(text_jpg), str(labels_path)}
    problems = dict(zip(skipped["path"], skipped["problem"], strict=True))
    assert problems[str(empty_report)] == "empty report (no text)"
    assert problems[str(latin1_report)].startswith("report is not UTF-8 text (byte 0xd6 at offset 10)")
    assert problems[str(cut)].startswith("truncated JPEG")
    assert problems[str(text_jpg)].startswith("not a JPEG image (looks like text")
    assert problems[str(labels_path)] == "line 5 (study 50771383): label 'Edema' is '2.0', not 1, 0, -1 or empty"
    # what went: the images of the 3 bad studies (1 + 1 + 2) and the 2 bad images → 9 - 4 - 2 = 3 left
    assert sorted(st["study_id"].unique()) == ["50414267", "57375967"]
    assert len(st) == 3 and result.manifest.rows == {"images": 3, "reports": 2}  # reports of studies kept
    assert result.manifest.extra["summary"]["skipped"] == 5


def test_mimic_metadata_missing_column_stops_and_writes_nothing(mimic_tree, workspace) -> None:
    root, _, _ = mimic_tree
    run_data_import_mimic_cxr(workspace, MimicImportConfig(root=str(root)), name="m")
    before = (workspace.dataset("m") / "studies.parquet").read_bytes()
    meta = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    pd.read_csv(meta).drop(columns=["study_id"]).to_csv(meta, index=False)
    with pytest.raises(BadInputError) as info:
        run_data_import_mimic_cxr(workspace, MimicImportConfig(root=str(root)), name="m", force=True)
    _one_line_naming(info.value, meta, "missing required column(s) 'study_id'")
    assert (workspace.dataset("m") / "studies.parquet").read_bytes() == before  # old artefact untouched
    assert [p.name for p in workspace.dataset("m").parent.iterdir() if p.name.startswith(".m.")] in ([], [".m.lock"])


# ---------------------------------------------------------------------------------------------------- CheXpert
def test_chexpert_path_parsing() -> None:
    assert parse_chexpert_path("CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg") == {
        "patient_id": "patient00002",
        "study_id": "patient00002/study1",
        "image_id": "patient00002/study1/view2_lateral",
        "frontal_lateral": "lateral",
    }
    assert parse_chexpert_path("somewhere/else.jpg") is None


@pytest.mark.parametrize("small", [True, False])
def test_chexpert_study_table_and_split(tmp_path: Path, workspace, small: bool) -> None:
    root = make_chexpert_tree(tmp_path, n_train=12, small=small)
    result = run_data_import_chexpert(workspace, CheXpertImportConfig(root=str(root), val_frac=0.3, seed=1))
    st = read_studies(workspace, "chexpert")
    validate_study_table(st)
    assert len(st) == 16 and result.manifest.skipped == {"total": 0}
    # labels are exactly the real CSV's (first 12 rows of CheXpert's train.csv)
    real = xrv_csv_head("chexpert_train.csv.gz", 12)
    train = st[st["chexpert_csv"] == "train.csv"].reset_index(drop=True)
    for label in CHEXPERT_LABELS:
        expected = pd.to_numeric(real[label].replace("", np.nan)).to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(train[label].to_numpy(), expected)
    assert train["patient_id"].tolist() == [p.split("/")[2] for p in real["Path"]]
    assert train.loc[1, "study_id"] == "patient00002/study2" and train.loc[1, "Cardiomegaly"] == -1
    lateral = train["image_id"].str.endswith("lateral")
    assert (train.loc[lateral, "view"] == "LATERAL").all()
    assert set(train.loc[~lateral, "view"]) <= {"AP", "PA"}
    # valid.csv → test; train → train/val by patient; patient-level
    assert (st.loc[st["chexpert_csv"] == "valid.csv", "split"] == "test").all()
    assert set(train["split"]) <= {"train", "val"} and "val" in set(train["split"])
    assert (st.groupby("patient_id")["split"].nunique() == 1).all()
    assert Path(st["image_path"].iloc[0]).is_file() and st["image_path"].iloc[0].startswith(str(root.resolve()))
    assert "valid.csv → test" in result.manifest.extra["split_rule"]


def test_chexpert_with_test_csv(tmp_path: Path) -> None:
    root = make_chexpert_tree(tmp_path, n_train=6)
    valid = pd.read_csv(root / "valid.csv", dtype=str, keep_default_na=False)
    test = valid.copy()
    test["Path"] = test["Path"].str.replace("valid/patient6454", "test/patient6474", regex=False)
    test.to_csv(root / "test.csv", index=False)
    for rel in test["Path"]:
        write_jpeg(tmp_path / rel, tiny_xray(7))
    t = load_chexpert(CheXpertImportConfig(root=str(root)))
    got = t.studies.groupby("chexpert_csv")["split"].unique().map(list).to_dict()
    assert got == {"test.csv": ["test"], "train.csv": ["train"], "valid.csv": ["val"]}


def test_chexpert_bad_rows_skipped(tmp_path: Path) -> None:
    root = make_chexpert_tree(tmp_path, n_train=8)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    train.loc[2, "Edema"] = "yes"
    train.loc[3, "Path"] = "CheXpert-v1.0-small/train/img_0003.jpg"
    train.to_csv(root / "train.csv", index=False)
    missing = tmp_path / train.loc[5, "Path"]
    missing.unlink()
    t = load_chexpert(CheXpertImportConfig(root=str(root)))
    assert len(t.errors) == 3 and len(t.studies) == 12 - 3
    msgs = sorted(str(e) for e in t.errors)
    assert any(m.startswith(f"{root / 'train.csv'}: line 4 (") and "label 'Edema' is 'yes'" in m for m in msgs)
    assert any(m.startswith(f"{root / 'train.csv'}: line 5: Path") for m in msgs)
    _one_line_naming(_find(t.errors, missing.resolve()), missing.resolve(), "image file not found")


def test_chexpert_missing_label_column_stops(tmp_path: Path) -> None:
    root = make_chexpert_tree(tmp_path, n_train=4)
    pd.read_csv(root / "valid.csv").drop(columns=["Pleural Effusion"]).to_csv(root / "valid.csv", index=False)
    with pytest.raises(BadInputError) as info:
        load_chexpert(CheXpertImportConfig(root=str(root)))
    _one_line_naming(info.value, root / "valid.csv", "missing required column(s) 'Pleural Effusion'")


# ------------------------------------------------------------------------------------------------------ NIH-14
def test_nih_labels_mapping_extras_and_official_split(tmp_path: Path, workspace) -> None:
    entries = make_nih_tree(tmp_path / "nih", n=10)
    result = run_data_import_nih14(workspace, NIHImportConfig(root=str(tmp_path / "nih"), val_frac=0.5, seed=2))
    st = read_studies(workspace, "nih14").set_index("image_id")
    assert len(st) == 10 and result.manifest.skipped == {"total": 0}
    row = st.loc["00000001_002"]  # "Cardiomegaly|Effusion"
    assert (row["Cardiomegaly"], row["Pleural Effusion"], row["No Finding"], row["Atelectasis"]) == (1, 1, 0, 0)
    assert np.isnan(row["Lung Opacity"]) and np.isnan(row["Support Devices"]) and np.isnan(row["Lung Lesion"])
    assert st.loc["00000001_001", "Emphysema"] == 1 and st.loc["00000002_000", "No Finding"] == 1
    for nih in NIH_ONLY_LABELS:
        assert nih in st.columns and st[nih].dtype == np.float32
    # every finding of the real Data_Entry rows is represented
    for name, labs in zip(entries["Image Index"], entries["Finding Labels"], strict=True):
        for lab in labs.split("|"):
            col = {"Effusion": "Pleural Effusion"}.get(lab, lab)
            assert st.loc[name[:-4], col] == 1.0, (name, lab)
    # test_list → test; train_val → train/val by patient
    test_images = set((tmp_path / "nih" / "test_list.txt").read_text().split())
    assert {f"{i}.png" for i in st.index[st["split"] == "test"]} == test_images
    assert set(st.loc[st["split"] != "test", "split"]) <= {"train", "val"}
    assert (st.reset_index().groupby("patient_id")["split"].nunique() == 1).all()
    assert st.loc["00000001_000", "image_path"].endswith("images_001/images/00000001_000.png")
    assert (st["study_id"] == st.index).all() and (st["findings"] == "").all()


def test_nih_bad_rows_and_missing_lists(tmp_path: Path, capsys) -> None:
    make_nih_tree(tmp_path / "nih", n=8)
    entry = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    df = pd.read_csv(entry, dtype=str, keep_default_na=False)
    df.loc[1, "Finding Labels"] = "Cardiomegaly|Tumour"
    df.to_csv(entry, index=False)
    cut = truncate(tmp_path / "nih" / "images_001" / "images" / df.loc[4, "Image Index"])
    t = load_nih14(NIHImportConfig(root=str(tmp_path / "nih")))
    assert len(t.studies) == 6 and len(t.errors) == 2
    _one_line_naming(_find(t.errors, entry), entry, "line 3 (00000001_001.png): unknown finding label 'Tumour'")
    _one_line_naming(_find(t.errors, cut), cut, "truncated PNG")
    (tmp_path / "nih" / "test_list.txt").unlink()
    t = load_nih14(NIHImportConfig(root=str(tmp_path / "nih")))
    assert "no train_val_list.txt/test_list.txt" in capsys.readouterr().err
    validate_study_table(t.studies)


def test_wrong_root_is_one_error_not_a_line_per_image(tmp_path: Path) -> None:
    make_nih_tree(tmp_path / "nih", n=6)
    elsewhere = tmp_path / "lists-only"
    elsewhere.mkdir()
    for name in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"):
        (elsewhere / name).write_bytes((tmp_path / "nih" / name).read_bytes())
    with pytest.raises(BadInputError) as info:
        load_nih14(NIHImportConfig(root=str(elsewhere)))
    _one_line_naming(info.value, elsewhere, "none of the 6 images listed in")
    assert "check --root" in str(info.value)


def test_nih_missing_column_stops(tmp_path: Path) -> None:
    make_nih_tree(tmp_path / "nih", n=3)
    entry = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    pd.read_csv(entry).drop(columns=["Patient ID"]).to_csv(entry, index=False)
    with pytest.raises(BadInputError) as info:
        load_nih14(NIHImportConfig(root=str(tmp_path / "nih")))
    _one_line_naming(info.value, entry, "missing required column(s) 'Patient ID'")


# ------------------------------------------------------------------------------------------------------ folder
def _folder_tree(root: Path) -> None:
    write_png(root / "pa" / "case01.png", tiny_xray(1))
    write_jpeg(root / "pa" / "case02.jpg", tiny_xray(2))
    write_png(root / "pa" / "deep" / "case03.png", gradient(16, 16, 4095, np.uint16))
    write_dicom(root / "dicom" / "case04.dcm", gradient(8, 8, 4095, np.uint16), patient_id="P4", view_position="AP")
    write_dicom(
        root / "dicom" / "case05.dcm",
        gradient(8, 8, 4095, np.uint16),
        photometric="MONOCHROME1",
        patient_id="P4",
        view_position="LL",
    )
    (root / "notes").mkdir()
    (root / "notes" / "readme.md").write_text("not an image")


def test_folder_without_csv_dicom_header_ids(tmp_path: Path) -> None:
    _folder_tree(tmp_path / "imgs")
    t = load_folder(FolderImportConfig(root=str(tmp_path / "imgs")))
    st = t.studies.set_index("image_id")
    validate_study_table(t.studies)
    assert sorted(st.index) == ["dicom/case04", "dicom/case05", "pa/case01", "pa/case02", "pa/deep/case03"]
    assert st.loc["dicom/case04", "patient_id"] == "P4" and st.loc["dicom/case05", "view"] == "LATERAL"
    assert st.loc["pa/case01", "patient_id"] == "pa/case01" and st.loc["pa/case01", "view"] == "UNKNOWN"
    assert st.loc["dicom/case04", "split"] == st.loc["dicom/case05", "split"]
    assert st[list(CHEXPERT_LABELS)].isna().all().all() and (st["label_source"] == "none").all()
    assert t.errors == ()


def test_folder_same_stem_twice_and_csv_split_leak(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_tree(root)
    twin = write_dicom(root / "pa" / "case01.dcm", gradient(8, 8, 4095, np.uint16))
    t = load_folder(FolderImportConfig(root=str(root)))
    assert len(t.studies) == 5 and len(t.errors) == 1
    # sorted walk: case01.dcm comes first and keeps the id; the PNG is skipped, naming both files
    _one_line_naming(
        t.errors[0], (root / "pa" / "case01.png").resolve(), f"image id 'pa/case01' already used by {twin}"
    )
    csv = tmp_path / "split.csv"
    pd.DataFrame(
        {"image": ["pa/case01.png", "pa/case02.jpg"], "patient_id": ["A", "A"], "split": ["train", "test"]}
    ).to_csv(csv, index=False)
    with pytest.raises(BadInputError) as info:
        load_folder(FolderImportConfig(root=str(root), csv=str(csv)))
    _one_line_naming(info.value, csv, "patient 'A' is in more than one split")


def test_folder_csv_labels_ids_split(tmp_path: Path, workspace) -> None:
    _folder_tree(tmp_path / "imgs")
    csv = tmp_path / "meta.csv"
    pd.DataFrame(
        {
            "image": ["pa/case01.png", "case02.jpg", "dicom/case04.dcm"],
            "patient_id": ["A", "A", "B"],
            "split": ["train", "train", "validate"],
            "Cardiomegaly": ["1", "-1.0", ""],
            "Edema": ["0", "", "1"],
            "findings": ["Big heart.", "", "Edema."],
            "impression": ["Cardiomegaly.", "", ""],
        }
    ).to_csv(csv, index=False)
    r = run_data_import_folder(workspace, FolderImportConfig(root=str(tmp_path / "imgs"), csv=str(csv)), name="f")
    st = read_studies(workspace, "f").set_index("image_id")
    assert list(st.index) == ["pa/case01", "pa/case02", "dicom/case04"]  # CSV rows are the dataset
    assert st["patient_id"].tolist() == ["A", "A", "B"] and st["split"].tolist() == ["train", "train", "val"]
    assert st["Cardiomegaly"].tolist()[:2] == [1.0, -1.0] and np.isnan(st.loc["dicom/case04", "Cardiomegaly"])
    assert st.loc["dicom/case04", "Edema"] == 1 and (st["label_source"] == "csv").all()
    assert (st.loc["pa/case01", "findings"], st.loc["pa/case01", "impression"]) == ("Big heart.", "Cardiomegaly.")
    assert r.manifest.extra["images_not_in_csv"] == 2 and r.manifest.extra["images_found"] == 5


def test_folder_bad_battery(tmp_path: Path, workspace) -> None:
    """Every bad item of the issue in one folder import: each skipped with one line naming it, the rest imported."""
    root = tmp_path / "imgs"
    _folder_tree(root)
    big = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    bad = {
        "truncated png": truncate(write_png(root / "bad" / "cut.png", big)),
        "truncated jpeg": truncate(write_jpeg(root / "bad" / "cut.jpg", big)),
        "text as png": root / "bad" / "text.png",
        "no pixel data": write_dicom(root / "bad" / "nopix.dcm", None),
        "unknown photometric": write_dicom(root / "bad" / "pal.dcm", gradient(4, 4), photometric="PALETTE COLOR"),
        "empty report": root / "pa" / "case01.txt",
        "non-utf8 report": root / "pa" / "case02.txt",
    }
    bad["text as png"].write_text("FINDINGS: normal")
    bad["empty report"].write_text("   \n")
    bad["non-utf8 report"].write_bytes("IMPRESSION: épanchement".encode("cp1252"))
    expected = {
        "truncated png": "truncated PNG",
        "truncated jpeg": "truncated JPEG",
        "text as png": "not a PNG image (looks like text",
        "no pixel data": "DICOM has no pixel data",
        "unknown photometric": "unsupported photometric interpretation 'PALETTE COLOR'",
        "empty report": "empty report (no text)",
        "non-utf8 report": "report is not UTF-8 text (byte 0xe9",
    }
    r = run_data_import_folder(workspace, FolderImportConfig(root=str(root), label_reports=False), name="bad")
    skipped = read_side_table(workspace, "bad", "skipped")
    assert r.manifest.skipped == {"total": 7} and len(skipped) == 7
    for case, path in bad.items():
        _one_line_naming(
            _find(
                [BadInputError(p, q) for p, q in zip(skipped["path"], skipped["problem"], strict=True)], path.resolve()
            ),
            path.resolve(),
            expected[case],
        )
    st = read_studies(workspace, "bad")
    assert sorted(st["image_id"]) == ["dicom/case04", "dicom/case05", "pa/deep/case03"]  # the good ones, whole


def test_verify_decode_catches_what_the_header_check_cannot(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_tree(root)
    damaged = write_png(root / "damaged.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = bytearray(damaged.read_bytes())
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(b ^ 0x5A for b in data[start : start + 40])  # header and IEND intact
    damaged.write_bytes(bytes(data))
    assert len(load_folder(FolderImportConfig(root=str(root), verify="header")).studies) == 6
    t = load_folder(FolderImportConfig(root=str(root), verify="decode"))
    assert len(t.studies) == 5 and len(t.errors) == 1
    _one_line_naming(t.errors[0], damaged.resolve(), "corrupt PNG")
    with pytest.raises(ValueError, match="verify must be one of"):
        FolderImportConfig(root=str(root), verify="full")


def test_folder_csv_bad_rows_and_fatal_csv(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_tree(root)
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "image": ["pa/case01.png", "pa/case02.jpg", "pa/deep/case03.png", "missing.png", "pa/case01.png"],
            "report": ["FINDINGS: clear.", "", "IMPRESSION: effusion.", "text", "FINDINGS: again"],
            "Pleural Effusion": ["0", "1", "3", "", "0"],
        }
    ).to_csv(csv, index=False)
    t = load_folder(FolderImportConfig(root=str(root), csv=str(csv)))
    msgs = sorted(str(e) for e in t.errors)
    assert len(msgs) == 4, msgs
    assert f"{csv}: line 6: image 'pa/case01.png' listed twice" in msgs
    assert f"{csv}: line 3 (pa/case02.jpg): empty report in 'report'" in msgs
    assert f"{csv}: line 4 (pa/deep/case03.png): label 'Pleural Effusion' is '3', not 1, 0, -1 or empty" in msgs
    assert f"{(root / 'missing.png').resolve()}: image file not found" in msgs
    assert t.studies["image_id"].tolist() == ["pa/case01"] and t.studies["findings"].tolist() == ["clear."]
    # a CSV without the image column, or not UTF-8, stops the import with one line
    pd.DataFrame({"file": ["pa/case01.png"]}).to_csv(csv, index=False)
    with pytest.raises(BadInputError) as info:
        load_folder(FolderImportConfig(root=str(root), csv=str(csv)))
    _one_line_naming(info.value, csv, "missing required column(s) 'image'")
    csv.write_bytes("image,report\npa/case01.png,Befund: Pleuraerguß\n".encode("latin-1"))
    with pytest.raises(BadInputError) as info:
        load_folder(FolderImportConfig(root=str(root), csv=str(csv)))
    _one_line_naming(info.value, csv, "not UTF-8 text")


def test_folder_labels_come_from_the_labeler_when_only_text(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_tree(root)
    (root / "pa" / "deep" / "case03.txt").write_text("FINDINGS: No pleural effusion or pneumothorax.\n")
    csv = tmp_path / "reports.csv"
    pd.DataFrame(
        {
            "image": ["pa/case01.png", "pa/case02.jpg", "pa/deep/case03.png"],
            "report": ["FINDINGS: Small right pleural effusion.\nIMPRESSION: Possible pneumonia.", "Lungs clear.", "x"],
        }
    ).to_csv(csv, index=False)
    t = load_folder(FolderImportConfig(root=str(root), csv=str(csv)))
    st = t.studies.set_index("image_id")
    assert (st["label_source"] == "labeler").all()
    assert (st.loc["pa/case01", "Pleural Effusion"], st.loc["pa/case01", "Pneumonia"]) == (1.0, -1.0)
    assert st.loc["pa/case01", "findings"] == "Small right pleural effusion."
    assert st.loc["pa/case01", "impression"] == "Possible pneumonia."
    assert st.loc["pa/case02", "findings"] == "Lungs clear."  # no headers: the whole text is the findings
    # sidecar .txt reports when there is no CSV: labelled too; images without text keep NaN
    t = load_folder(FolderImportConfig(root=str(root)))
    st = t.studies.set_index("image_id")
    assert st.loc["pa/deep/case03", "Pleural Effusion"] == 0.0 and st.loc["pa/deep/case03", "Pneumothorax"] == 0.0
    assert st.loc["pa/deep/case03", "label_source"] == "labeler" and st.loc["pa/case01", "label_source"] == "none"
    assert st.loc["pa/case01", list(CHEXPERT_LABELS)].isna().all()


def test_gzip_csv_corrupt_is_one_line(tmp_path: Path) -> None:
    make_nih_tree(tmp_path / "nih", n=2)
    entry = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    gz = entry.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(entry.read_bytes())[:40])
    entry.unlink()
    with pytest.raises(BadInputError) as info:
        load_nih14(NIHImportConfig(root=str(tmp_path / "nih")))
    assert str(info.value).startswith(f"{gz.resolve()}: ") and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------------- CLI
def test_cli_folder_import_and_fatal_error(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder_tree(root)
    truncate(write_png(root / "bad.png", np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)))
    ws = tmp_path / "ws"
    r = run_cli("data", "import", "folder", "--root", str(root), "-w", str(ws), "--no-label-reports")
    assert r.returncode == 0, r.stderr
    assert "Image folder study table" in r.stdout and "wrote" in r.stdout
    assert f"skipped {(root / 'bad.png').resolve()}: truncated PNG" in r.stderr
    assert len(pd.read_parquet(ws / "datasets" / "folder" / "studies.parquet")) == 5
    bad_csv = tmp_path / "x.csv"
    bad_csv.write_text("file\nz.png\n")
    r = run_cli("data", "import", "folder", "--root", str(root), "--reports", str(bad_csv), "-w", str(ws), "--force")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"error {bad_csv.resolve()}: missing required column(s) 'image' (found: 'file')"]
    assert os.listdir(ws / "datasets") == ["folder"] or sorted(os.listdir(ws / "datasets")) == [
        ".folder.lock",
        "folder",
    ]


@pytest.mark.parametrize(
    ("uncertain", "missing", "expected"),
    [
        ("positive", 0.0, [1, 0, 0, 1]),
        ("negative", 0.0, [1, 0, 0, 0]),
        ("ignore", 0.0, [1, 0, 0, np.nan]),
        ("ignore", np.nan, [1, 0, np.nan, np.nan]),
    ],
)
def test_binarise_labels_policies(uncertain, missing, expected) -> None:
    from cxrlens.data.schema import binarise_labels

    got = binarise_labels([1, 0, np.nan, -1], uncertain=uncertain, missing=missing)
    np.testing.assert_array_equal(got, np.array(expected, dtype=float))


def test_binarise_labels_rejects_unknown_policy() -> None:
    from cxrlens.data.schema import binarise_labels

    with pytest.raises(ValueError, match="uncertain must be one of"):
        binarise_labels([1.0], uncertain="ones")
