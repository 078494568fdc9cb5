"""Any folder of chest X-rays (PNG, JPEG, DICOM at any depth), with optional reports and labels → study table.

For data that is not one of the named datasets: a hospital export, a teaching collection, a test set. Licence and
citation are those of whoever made the images; nothing is downloaded.

Layout::

    <root>/…/<name>.png | .jpg | .jpeg | .dcm | .dicom     (recursive; hidden folders skipped)
    <root>/…/<name>.txt                                     optional report next to its image (UTF-8)
    labels.csv                                              optional (``--csv``), one row per image

The CSV (UTF-8) needs an ``image`` column (name configurable): the image path relative to ``--root`` (or absolute,
or a bare file name when that name is unique under the root). Optional columns: ``report`` (full report text;
name configurable), ``findings``, ``impression``, ``patient_id``, ``study_id``, ``view``, ``split``
(train/val/validate/test) and any of the 14 CheXpert label columns with their exact names (values 1, 0, -1, empty).
With a CSV, the CSV's rows are the dataset (images on disk it does not list are counted in the summary, not
imported); without one, every image found is.

Labels: the CSV's CheXpert columns when it has any; otherwise, when there is report text (CSV or ``.txt``), the
offline labeler :func:`cxrlens.data.labeler.label_reports` labels it (NaN rows for images without text); otherwise
NaN. The ``label_source`` column says which (``csv``, ``labeler``, ``none``).

Text: a report with section headers is parsed (:mod:`cxrlens.data.reports`); without headers the whole text goes to
``findings``. CSV ``findings``/``impression`` columns are used as they are.

Ids: ``image_id`` = the path relative to the root without its suffix (``pa/case01``); ``patient_id`` = the CSV's
``patient_id``, else a DICOM's PatientID, else the image id (one patient per image — say so with a CSV when images
share patients, or the split leaks); ``study_id`` = the CSV's ``study_id`` else the image id. View: CSV ``view``,
else DICOM ViewPosition, else UNKNOWN. Split: the CSV's ``split`` when every row has one, else the patient-level
hash split (70/10/20, ``seed``).

Skipped (one line each): an image that is missing or unreadable, a duplicate CSV row, a CSV row with a label outside
{1, 0, -1, empty} or an empty report cell (when the CSV has a report column), a ``.txt`` report that is empty or not
UTF-8, an unknown split value. A CSV that lacks the image column, is not UTF-8 or is malformed stops the import.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.data._loader_utils import (
    check_verify_mode,
    parse_label_columns,
    read_report,
    read_table,
    summarize_studies,
    verify_images,
)
from cxrlens.data.images import is_image_file
from cxrlens.data.reports import parse_sections
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, normalize_view, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace

__all__ = ["FolderImportConfig", "find_images", "load_folder", "run_data_import_folder"]

SOURCE = "folder"
_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}


@dataclasses.dataclass(frozen=True)
class FolderImportConfig:
    """Config of ``cxrlens data import folder``.

    Attributes:
        root: the folder searched recursively for images.
        csv: optional CSV (image → report text / labels / ids / split), see the module docstring.
        image_column, text_column: names of the CSV's image and report-text columns.
        sidecar_reports: read ``<image stem>.txt`` next to an image as its report when the CSV gives no text.
        label_reports: run the offline labeler on report text when no CheXpert label column is given.
        verify: per image, ``exists`` | ``header`` (default) | ``decode``.
        seed: seed of the patient-level split used when the CSV gives none.
    """

    root: str
    csv: str | None = None
    image_column: str = "image"
    text_column: str = "report"
    sidecar_reports: bool = True
    label_reports: bool = True
    verify: str = "header"
    seed: int = 0

    def __post_init__(self) -> None:
        check_verify_mode(self.verify)


def find_images(root: Path) -> list[Path]:
    """Every PNG/JPEG/DICOM file under ``root`` (by suffix, case-insensitive), sorted; hidden folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if is_image_file(f) and not f.startswith(".")]
    return sorted(found)


def _image_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).with_suffix("").as_posix()
    except ValueError:  # a CSV row pointing outside the root: the absolute path keeps it unique
        return path.with_suffix("").as_posix()


def _text_to_sections(text: str) -> tuple[str, str]:
    sec = parse_sections(text)
    if sec.findings or sec.impression:
        return sec.findings, sec.impression
    return sec.body(), ""


def _rows_from_csv(config: FolderImportConfig, root: Path, on_disk: list[Path], errors: list) -> pd.DataFrame:
    csv_path = Path(config.csv).expanduser().resolve()
    df = read_table(csv_path, [config.image_column])
    by_name: dict[str, list[Path]] = {}
    for p in on_disk:
        by_name.setdefault(p.name, []).append(p)
    paths: list[str] = []
    bad = np.zeros(len(df), dtype=bool)
    for i, raw in enumerate(df[config.image_column].str.strip()):
        if not raw:
            errors.append(BadInputError(csv_path, f"line {i + 2}: empty {config.image_column!r} cell"))
            bad[i] = True
            paths.append("")
            continue
        p = Path(raw)
        if not p.is_absolute():
            p = root / raw
            if not p.exists() and "/" not in raw.replace("\\", "/") and len(by_name.get(raw, [])) == 1:
                p = by_name[raw][0]
        paths.append(str(p))
    df["_path"] = paths
    dup = df["_path"].duplicated(keep="first").to_numpy() & ~bad
    for i in np.flatnonzero(dup):
        errors.append(BadInputError(csv_path, f"line {i + 2}: image {df[config.image_column].iloc[i]!r} listed twice"))
    bad |= dup
    df["_line"] = np.arange(len(df)) + 2
    labels = [c for c in CHEXPERT_LABELS if c in df.columns]
    if labels:
        values, bad_label, label_errors = parse_label_columns(df, labels, csv_path, list(df[config.image_column]))
        errors.extend(e for i, e in zip(np.flatnonzero(bad_label), label_errors, strict=True) if not bad[i])
        bad |= bad_label
        for c in labels:
            df[c] = values[c]
    if config.text_column in df.columns:
        empty = (df[config.text_column].str.strip() == "").to_numpy() & ~bad
        for i in np.flatnonzero(empty):
            errors.append(
                BadInputError(
                    csv_path,
                    f"line {i + 2} ({df[config.image_column].iloc[i]}): empty report in {config.text_column!r}",
                )
            )
        bad |= empty
    df.attrs["label_columns"] = labels
    df.attrs["csv_path"] = csv_path
    return df.loc[~bad].reset_index(drop=True)


def load_folder(config: FolderImportConfig) -> LoadedDataset:
    """Scan the folder (and CSV), read reports, check images, label reports when needed, build the study table."""
    root = Path(config.root).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "image folder not found")
    errors: list[BadInputError] = []
    on_disk = find_images(root)
    inputs: list[Path] = []
    if config.csv:
        df = _rows_from_csv(config, root, on_disk, errors)
        label_cols: list[str] = df.attrs["label_columns"]
        inputs.append(df.attrs["csv_path"])
        listed = set(df["_path"])
        unlisted = sum(str(p) not in listed for p in on_disk)
    else:
        if not on_disk:
            raise BadInputError(root, "no PNG, JPEG or DICOM file found (searched recursively)")
        df = pd.DataFrame({"_path": [str(p) for p in on_disk]})
        label_cols, unlisted = [], 0
    n = len(df)

    findings, impression, full_text, bad = _report_texts(df, config, errors)

    # ---- images
    height, width, img_errors, dicom = verify_images(list(df["_path"]), config.verify, description="checking images")
    for i in sorted(img_errors):
        if not bad[i]:
            errors.append(img_errors[i])
    bad[list(img_errors)] = True

    image_ids = [_image_id(Path(p), root) for p in df["_path"]]
    first_use: dict[str, str] = {}
    for i, (iid, p) in enumerate(zip(image_ids, df["_path"], strict=True)):
        if bad[i]:
            continue
        if iid in first_use:  # case01.png next to case01.dcm
            errors.append(BadInputError(p, f"image id {iid!r} already used by {first_use[iid]}"))
            bad[i] = True
        else:
            first_use[iid] = p
    col = lambda name: df[name].str.strip() if name in df.columns else pd.Series("", index=df.index)  # noqa: E731
    patient = col("patient_id").to_numpy(dtype=object)
    view_raw = col("view").to_numpy(dtype=object)
    for i in range(n):
        pid, vp = dicom.get(i, ("", ""))
        if not patient[i]:
            patient[i] = pid or image_ids[i]
        if not view_raw[i]:
            view_raw[i] = vp
    study = col("study_id").to_numpy(dtype=object)
    study = np.where(study == "", np.array(image_ids, dtype=object), study)

    split = _split_column(df, patient, bad, config, errors)

    studies = pd.DataFrame(
        {
            "study_id": study,
            "image_id": image_ids,
            "patient_id": patient,
            "image_path": list(df["_path"]),
            "view": [normalize_view(v) for v in view_raw],
            "split": split,
            "findings": findings,
            "impression": impression,
            "source": SOURCE,
            "view_raw": view_raw,
            "report_text": full_text,
            "image_height": height,
            "image_width": width,
        }
    )
    label_source = np.full(n, "none", dtype=object)
    if label_cols:
        for c in label_cols:
            studies[c] = df[c].to_numpy(dtype=np.float32)
        label_source[:] = "csv"
    studies["label_source"] = label_source
    studies = studies.loc[~bad].reset_index(drop=True)
    if not label_cols and config.label_reports and (studies["report_text"] != "").any():
        studies = _label_with_labeler(studies)
    try:
        studies = finalize_study_table(studies)
    except BadInputError as exc:  # e.g. a patient given two splits in the CSV
        raise BadInputError(df.attrs.get("csv_path", root), exc.problem) from None
    extra = {
        "license": "as set by the images' owner",
        "images_found": len(on_disk),
        "images_not_in_csv": int(unlisted),
        "summary": summarize_studies(studies, len(errors)),
    }
    return LoadedDataset(studies, {}, tuple(errors), tuple(inputs), extra)


def _report_texts(
    df: pd.DataFrame, config: FolderImportConfig, errors: list[BadInputError]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(findings, impression, full text, unreadable) per row: the CSV's text column, else its findings/impression
    columns, else a sidecar ``.txt`` next to the image (an unreadable one marks the row bad, counted in ``errors``)."""
    n = len(df)
    findings = np.full(n, "", dtype=object)
    impression = np.full(n, "", dtype=object)
    full_text = np.full(n, "", dtype=object)
    bad = np.zeros(n, dtype=bool)
    has_csv_text = config.text_column in df.columns
    has_sections = "findings" in df.columns or "impression" in df.columns
    for i, p in enumerate(df["_path"]):
        text = ""
        if has_csv_text:
            text = df[config.text_column].iloc[i]
        elif has_sections:
            f = df["findings"].iloc[i].strip() if "findings" in df.columns else ""
            m = df["impression"].iloc[i].strip() if "impression" in df.columns else ""
            findings[i], impression[i] = " ".join(f.split()), " ".join(m.split())
            full_text[i] = f"FINDINGS: {f}\nIMPRESSION: {m}" if (f or m) else ""
            continue
        elif config.sidecar_reports:
            txt = Path(p).with_suffix(".txt")
            if txt.is_file():
                try:
                    text = read_report(txt)
                except BadInputError as exc:
                    errors.append(exc)
                    bad[i] = True
                    continue
        if text:
            full_text[i] = text
            findings[i], impression[i] = _text_to_sections(text)
    return findings, impression, full_text, bad


def _split_column(
    df: pd.DataFrame, patient: np.ndarray, bad: np.ndarray, config: FolderImportConfig, errors: list[BadInputError]
) -> np.ndarray:
    """The CSV's split column when every row has one (unknown values mark the row bad, in place), else a
    patient-level hash split."""
    split_raw = df["split"].str.strip().str.lower() if "split" in df.columns else pd.Series("", index=df.index)
    if "split" in df.columns and (split_raw != "").all():
        split = split_raw.map(_SPLITS)
        for i in np.flatnonzero(split.isna().to_numpy() & ~bad):
            errors.append(
                BadInputError(df.attrs["csv_path"], f"line {df['_line'].iloc[i]}: unknown split {split_raw.iloc[i]!r}")
            )
        bad |= split.isna().to_numpy()
        return split.fillna("").to_numpy(dtype=object)
    by_patient = patient_split(list(patient), config.seed, 0.7, 0.1)
    return pd.Series(patient).map(by_patient).to_numpy(dtype=object)


def _label_with_labeler(studies: pd.DataFrame) -> pd.DataFrame:
    """CheXpert-14 labels from report text with the offline labeler (rows without text keep NaN)."""
    try:
        from cxrlens.data.labeler import label_reports
    except ImportError as exc:
        raise BadInputError(None, f"the report labeler (cxrlens.data.labeler) cannot be imported: {exc}") from None
    has = (studies["report_text"] != "").to_numpy()
    labelled = label_reports(studies.loc[has, "report_text"].tolist())
    studies = studies.copy()
    for c in CHEXPERT_LABELS:
        values = np.full(len(studies), np.nan, dtype=np.float32)
        values[has] = np.asarray(labelled[c], dtype=np.float32)
        studies[c] = values
    studies.loc[has, "label_source"] = "labeler"
    return studies


def run_data_import_folder(
    workspace: Workspace, config: FolderImportConfig, *, name: str = "folder", force: bool = False
) -> StageResult:
    """Import an image folder into ``datasets/<name>``; skipped when current (same config)."""
    return import_dataset(
        workspace, name, stage="data.import.folder", config=config, load=lambda: load_folder(config), force=force
    )
