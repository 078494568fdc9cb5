"""MIMIC-CXR-JPG 2.x (+ the MIMIC-CXR free-text reports) → the cxrlens study table.

Where to get it: PhysioNet, credentialed access (CITI training + data use agreement):
MIMIC-CXR-JPG https://physionet.org/content/mimic-cxr-jpg/ (JPEG images, metadata, split and label CSVs) and, for the
reports, MIMIC-CXR https://physionet.org/content/mimic-cxr/ (``mimic-cxr-reports.zip``). Licence: PhysioNet
Credentialed Health Data License 1.5.0 — the data may not be shared. Citation: Johnson A.E.W. et al., "MIMIC-CXR-JPG,
a large publicly available database of labeled chest radiographs", arXiv:1901.07042, 2019; and Johnson A.E.W. et al.,
"MIMIC-CXR, a de-identified publicly available database of chest radiographs with free-text reports", Scientific
Data 6:317, 2019. Also cite PhysioNet (Goldberger et al., Circulation 101(23), 2000).

Expected layout (``--root`` is the MIMIC-CXR-JPG version folder; CSVs plain or ``.gz``)::

    <root>/mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
                                             ViewPosition, Rows, Columns, StudyDate, StudyTime, …
    <root>/mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train | validate | test)
    <root>/mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, + the 14 CheXpert label columns
    <root>/files/p10/p10000032/s50414267/02aa804e-….jpg
    <reports>/files/p10/p10000032/s50414267.txt     (``--reports``: the unzipped mimic-cxr-reports folder)

Labels: the official ``-chexpert.csv`` labels (the CheXpert labeler run on the reports, per study; 1, 0, -1, NaN)
are kept as they are and copied to every image of the study; a study missing from it has NaN labels. Split: the
official ``-split.csv`` (``validate`` → ``val``); without that file the patient-level hash split of
:func:`cxrlens.data.schema.patient_split` is used (a warning says so). Reports: parsed into findings, impression,
indication, comparison (:mod:`cxrlens.data.reports`); the full text and sections go to ``reports.parquet``.

One row per image in ``studies.parquet``: ``study_id`` and ``patient_id`` are MIMIC's numbers as text
(``50414267``, ``10000032``), ``image_id`` the ``dicom_id``, ``image_path`` absolute. Extra columns: ``indication``,
``comparison``, ``view_raw`` (ViewPosition), ``procedure``, ``study_date``, ``image_height``/``image_width``.

Skipped (one line each, counted in the manifest): a metadata row with a malformed id, an image that is missing or
does not pass :func:`cxrlens.data.images.probe_image`, a dicom_id absent from the split file, a study whose label row
holds a value outside {1, 0, -1, empty} (all its images), and — when ``--reports`` is given — a study whose report
is missing, empty or not UTF-8 (all its images). A metadata CSV without its required columns stops the import.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.console import progress, warn_line
from cxrlens.data._loader_utils import (
    check_verify_mode,
    find_table,
    parse_label_columns,
    read_report,
    read_table,
    refuse_if_all_missing,
    summarize_studies,
    verify_images,
)
from cxrlens.data.reports import parse_sections
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, normalize_view, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace

__all__ = ["METADATA", "MimicImportConfig", "load_mimic_cxr", "mimic_image_path", "run_data_import_mimic_cxr"]

SOURCE = "mimic-cxr"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
_SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "validation": "val", "test": "test"}


@dataclasses.dataclass(frozen=True)
class MimicImportConfig:
    """Config of ``cxrlens data import mimic-cxr``.

    Attributes:
        root: the MIMIC-CXR-JPG folder holding the CSVs and ``files/``.
        reports: the MIMIC-CXR reports folder (holding ``files/pXX/…/sXXXXXXXX.txt``); ``None`` = no report text.
        verify: per image, ``exists`` | ``header`` (signature, header, end marker; default) | ``decode``.
        seed, val_frac: the patient-level fallback split when the split CSV is absent (70/10/20 at the default).
    """

    root: str
    reports: str | None = None
    verify: str = "header"
    seed: int = 0
    val_frac: float = 0.1

    def __post_init__(self) -> None:
        check_verify_mode(self.verify)
        if not 0.0 <= self.val_frac < 0.8:
            raise BadInputError(None, f"val_frac must be in [0, 0.8), got {self.val_frac}")


def mimic_image_path(root: Path, subject_id: str, study_id: str, dicom_id: str) -> Path:
    """``<root>/files/p10/p10000032/s50414267/<dicom_id>.jpg``."""
    return root / "files" / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}" / f"{dicom_id}.jpg"


def _report_root(reports: Path) -> Path:
    """Accept the unzipped folder itself or its ``files`` sub-folder."""
    return reports.parent if reports.name == "files" else reports


def _digits(series: pd.Series) -> pd.Series:
    """Ids as canonical digit strings (``"10000032"``; ``"10000032.0"`` from a float column also accepted)."""
    s = series.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    return s.where(s.str.fullmatch(r"\d{1,12}"), "")


def load_mimic_cxr(config: MimicImportConfig) -> LoadedDataset:
    """Read MIMIC-CXR-JPG's CSVs (and reports), check every image, and build the study table + reports table.

    Returns:
        LoadedDataset with ``studies`` (one row per image), ``tables["reports"]`` (one row per study that has a
        report, when ``reports`` is set), the skipped items and the CSVs read.
    """
    root = Path(config.root).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "MIMIC-CXR-JPG root folder not found")
    meta_path = find_table(root, [METADATA])
    if meta_path is None:
        raise BadInputError(root, f"no {METADATA}(.gz) here; --root must be the MIMIC-CXR-JPG folder")
    errors: list[BadInputError] = []
    inputs = [meta_path]
    meta = _read_metadata(meta_path, errors)
    meta, split_path = _with_split(root, meta, config, errors, inputs)
    meta, labels = _study_labels(root, meta, errors, inputs)
    reports_table = None
    if config.reports:
        meta, reports_table = _read_reports(Path(config.reports), meta, errors)
    studies = _image_rows(root, meta_path, meta, config, errors)
    studies = studies.merge(labels.drop(columns="subject_id"), on="study_id", how="left")
    if reports_table is not None:
        cols = ["study_id", "findings", "impression", "indication", "comparison"]
        studies = studies.merge(reports_table[cols], on="study_id", how="left")
        reports_table = reports_table.loc[reports_table["study_id"].isin(set(studies["study_id"]))]
        split_of = studies.drop_duplicates("study_id").set_index("study_id")["split"]
        reports_table.insert(2, "split", reports_table["study_id"].map(split_of).astype(str))
        reports_table = reports_table.reset_index(drop=True)
    else:
        for col in ("findings", "impression", "indication", "comparison"):
            studies[col] = ""
    try:
        studies = finalize_study_table(studies)
    except BadInputError as exc:  # e.g. a patient in two splits of the split CSV
        raise BadInputError(split_path or meta_path, exc.problem) from None
    tables = {"reports": reports_table} if reports_table is not None else {}
    extra = {
        "license": "PhysioNet Credentialed Health Data License 1.5.0",
        "summary": summarize_studies(studies, len(errors)),
    }
    return LoadedDataset(studies, tables, tuple(errors), tuple(inputs), extra)


def _read_metadata(meta_path: Path, errors: list[BadInputError]) -> pd.DataFrame:
    """The metadata CSV with malformed and duplicate rows skipped (each counted in ``errors``)."""
    meta = read_table(meta_path, ["dicom_id", "subject_id", "study_id"])
    meta["subject_id"], meta["study_id"] = _digits(meta["subject_id"]), _digits(meta["study_id"])
    meta["dicom_id"] = meta["dicom_id"].str.strip()
    bad_id = (meta["subject_id"] == "") | (meta["study_id"] == "") | ~meta["dicom_id"].str.fullmatch(r"[0-9a-fA-F-]+")
    for i in np.flatnonzero(bad_id.to_numpy()):
        errors.append(BadInputError(meta_path, f"line {i + 2}: malformed dicom_id/subject_id/study_id, row skipped"))
    dup = meta["dicom_id"].duplicated() & ~bad_id
    for i in np.flatnonzero(dup.to_numpy()):
        errors.append(BadInputError(meta_path, f"line {i + 2}: duplicate dicom_id {meta['dicom_id'].iloc[i]}"))
    return meta.loc[~bad_id & ~dup].reset_index(drop=True)


def _with_split(
    root: Path, meta: pd.DataFrame, config: MimicImportConfig, errors: list[BadInputError], inputs: list[Path]
) -> tuple[pd.DataFrame, Path | None]:
    """``meta`` with its ``split`` column: the official split CSV when present (images missing from it or with an
    unknown split skipped), else a patient-level hash split."""
    split_path = find_table(root, [SPLIT])
    if split_path is None:
        warn_line(f"{root}: no {SPLIT}(.gz); using a patient-level hash split (seed {config.seed})")
        split = patient_split(meta["subject_id"], config.seed, 1.0 - 0.2 - config.val_frac, config.val_frac)
        meta["split"] = meta["subject_id"].map(split).astype(str)
        return meta, None
    inputs.append(split_path)
    sp = read_table(split_path, ["dicom_id", "split"])
    sp_map = dict(zip(sp["dicom_id"].str.strip(), sp["split"].str.strip().str.lower(), strict=True))
    raw = meta["dicom_id"].map(sp_map)
    meta["split"] = raw.map(_SPLIT_NAMES)
    missing = raw.isna().to_numpy()
    unknown = ~missing & meta["split"].isna().to_numpy()
    for i in np.flatnonzero(missing):
        errors.append(BadInputError(split_path, f"dicom_id {meta['dicom_id'].iloc[i]} is not in the split file"))
    for i in np.flatnonzero(unknown):
        errors.append(BadInputError(split_path, f"dicom_id {meta['dicom_id'].iloc[i]}: unknown split {raw.iloc[i]!r}"))
    return meta.loc[~missing & ~unknown].reset_index(drop=True), split_path


def _study_labels(
    root: Path, meta: pd.DataFrame, errors: list[BadInputError], inputs: list[Path]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(meta without studies whose label row is malformed, one CheXpert label row per study — empty without the
    CSV)."""
    label_path = find_table(root, [CHEXPERT])
    labels = pd.DataFrame(columns=["subject_id", "study_id", *CHEXPERT_LABELS])
    if label_path is None:
        warn_line(f"{root}: no {CHEXPERT}(.gz); CheXpert labels left empty (NaN)")
        return meta, labels
    inputs.append(label_path)
    lab = read_table(label_path, ["subject_id", "study_id", *CHEXPERT_LABELS])
    lab["subject_id"], lab["study_id"] = _digits(lab["subject_id"]), _digits(lab["study_id"])
    values, bad, label_errors = parse_label_columns(
        lab, CHEXPERT_LABELS, label_path, [f"study {s}" for s in lab["study_id"]]
    )
    errors.extend(label_errors)
    bad_studies = set(lab.loc[bad, "study_id"])
    if bad_studies:
        meta = meta.loc[~meta["study_id"].isin(bad_studies)].reset_index(drop=True)
    labels = pd.concat([lab[["subject_id", "study_id"]], values], axis=1).loc[~bad]
    return meta, labels.drop_duplicates("study_id", keep="first")


_REPORT_COLUMNS = [
    "study_id",
    "patient_id",
    "findings",
    "impression",
    "indication",
    "comparison",
    "technique",
    "text",
    "report_path",
]


def _read_reports(reports: Path, meta: pd.DataFrame, errors: list[BadInputError]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(meta without studies whose report is unreadable, one sectioned report row per study)."""
    rroot = _report_root(reports.expanduser().resolve())
    if not rroot.is_dir():
        raise BadInputError(rroot, "reports folder not found")
    bad_studies = set()
    studies_u = meta[["subject_id", "study_id"]].drop_duplicates("study_id")
    texts = {}
    with progress(transient=True, disable=len(studies_u) < 200) as bar:
        task = bar.add_task("reading MIMIC-CXR reports", total=len(studies_u))
        for subject, study in zip(studies_u["subject_id"], studies_u["study_id"], strict=True):
            path = rroot / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            bar.advance(task)
            try:
                texts[study] = (subject, path, read_report(path))
            except BadInputError as exc:
                errors.append(exc)
                bad_studies.add(study)
    rows = []
    for study, (subject, path, text) in texts.items():
        sec = parse_sections(text)
        rows.append(
            {
                "study_id": study,
                "patient_id": subject,
                "findings": sec.findings,
                "impression": sec.impression,
                "indication": sec.indication,
                "comparison": sec.comparison,
                "technique": sec.technique,
                "text": text,
                "report_path": str(path),
            }
        )
    meta = meta.loc[~meta["study_id"].isin(bad_studies)].reset_index(drop=True)
    return meta, pd.DataFrame(rows, columns=_REPORT_COLUMNS)


def _image_rows(
    root: Path, meta_path: Path, meta: pd.DataFrame, config: MimicImportConfig, errors: list[BadInputError]
) -> pd.DataFrame:
    """One study-table row per readable image (unreadable ones counted in ``errors``)."""
    paths = [
        str(mimic_image_path(root, s, t, d))
        for s, t, d in zip(meta["subject_id"], meta["study_id"], meta["dicom_id"], strict=True)
    ]
    height, width, img_errors, _ = verify_images(paths, config.verify, description="checking MIMIC-CXR images")
    refuse_if_all_missing(img_errors, len(paths), root, meta_path)
    errors.extend(img_errors[i] for i in sorted(img_errors))
    keep = np.ones(len(meta), dtype=bool)
    keep[list(img_errors)] = False
    column = lambda name: meta.get(name, pd.Series("", index=meta.index))  # noqa: E731 — optional CSV columns
    return pd.DataFrame(
        {
            "study_id": meta["study_id"],
            "image_id": meta["dicom_id"],
            "patient_id": meta["subject_id"],
            "image_path": paths,
            "view": column("ViewPosition").map(normalize_view),
            "split": meta["split"],
            "source": SOURCE,
            "view_raw": column("ViewPosition").fillna(""),
            "procedure": column("PerformedProcedureStepDescription").fillna(""),
            "study_date": column("StudyDate").fillna(""),
            "image_height": height,
            "image_width": width,
        }
    ).loc[keep]


def run_data_import_mimic_cxr(
    workspace: Workspace, config: MimicImportConfig, *, name: str = "mimic-cxr", force: bool = False
) -> StageResult:
    """Import MIMIC-CXR-JPG into ``datasets/<name>``; skipped when current (same config)."""
    return import_dataset(
        workspace, name, stage="data.import.mimic-cxr", config=config, load=lambda: load_mimic_cxr(config), force=force
    )
