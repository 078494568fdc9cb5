"""NIH ChestX-ray14 → the cxrlens study table.

Where to get it: NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC (also on Kaggle as "NIH Chest
X-rays"); public, no registration; the NIH asks for the citation and acknowledgement of the NIH Clinical Center.
Citation: Wang X. et al., "ChestX-ray8: hospital-scale chest X-ray database and benchmarks on weakly-supervised
classification and localization of common thorax diseases", CVPR 2017.

Expected layout (``--root``; images may sit in any sub-folders, e.g. the Kaggle ``images_001/images/``)::

    <root>/Data_Entry_2017_v2020.csv    Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age,
                                        Patient Gender, View Position, OriginalImage[Width, Height], …
    <root>/train_val_list.txt           one image file name per line
    <root>/test_list.txt
    <root>/images/00000001_000.png      (1024 × 1024 8-bit PNG)

(``Data_Entry_2017_v2020.csv`` is preferred to the older ``Data_Entry_2017.csv`` when both are present.)

Labels. ``Finding Labels`` is ``|``-separated text-mined labels (NLP on the reports, which are not released). The
eight that are CheXpert findings are written to the CheXpert columns as 1 (present) / 0 (absent):

    NIH                CheXpert column
    Atelectasis        Atelectasis
    Cardiomegaly       Cardiomegaly
    Consolidation      Consolidation
    Edema              Edema
    Effusion           Pleural Effusion
    Pneumonia          Pneumonia
    Pneumothorax       Pneumothorax
    No Finding         No Finding (1 only when no NIH finding at all)

The other CheXpert columns (Enlarged Cardiomediastinum, Lung Opacity, Lung Lesion, Pleural Other, Fracture, Support
Devices) stay NaN: NIH does not label them, and Mass/Nodule/Infiltration are not claimed to be exhaustive for Lung
Lesion/Lung Opacity. The seven NIH-only labels are kept as extra float columns with NIH's spelling — Infiltration,
Mass, Nodule, Emphysema, Fibrosis, Pleural_Thickening, Hernia — and the raw string as ``finding_labels``. Reports:
none (``findings``/``impression`` empty).

Ids: ``image_id`` = file stem (``00000001_000``); NIH has no study level, so ``study_id`` = ``image_id``;
``patient_id`` = ``Patient ID``. Split: ``test_list.txt`` → test; ``train_val_list.txt`` → train, with ``val_frac`` of
its patients (default 10 %) moved to val by :func:`cxrlens.data.schema.patient_split` (the official lists are
patient-disjoint, so the result is too). Without the two lists the patient-level hash split 70/10/20 is used (a
warning says so).

Skipped (one line each): a row with an unknown finding label or no ``Image Index``/``Patient ID``, an image listed
in both split lists or in neither, an image missing under ``--root`` or unreadable. A Data_Entry CSV without
``Image Index``, ``Finding Labels`` or ``Patient ID`` stops the import.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.console import warn_line
from cxrlens.data._loader_utils import (
    check_verify_mode,
    read_table,
    refuse_if_all_missing,
    summarize_studies,
    verify_images,
)
from cxrlens.data.schema import finalize_study_table, normalize_view, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace

__all__ = ["NIH_ONLY_LABELS", "NIH_TO_CHEXPERT", "NIHImportConfig", "load_nih14", "run_data_import_nih14"]

SOURCE = "nih14"
NIH_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
NIH_ONLY_LABELS: tuple[str, ...] = (
    "Infiltration",
    "Mass",
    "Nodule",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
_KNOWN = {*NIH_TO_CHEXPERT, *NIH_ONLY_LABELS, "No Finding"}
DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


@dataclasses.dataclass(frozen=True)
class NIHImportConfig:
    """Config of ``cxrlens data import nih14``.

    Attributes:
        root: the folder holding ``Data_Entry_2017*.csv``, the split lists and the images (any depth).
        verify: per image, ``exists`` | ``header`` (default) | ``decode``.
        seed, val_frac: patients of train_val_list moved to val (see the module docstring).
    """

    root: str
    verify: str = "header"
    seed: int = 0
    val_frac: float = 0.1

    def __post_init__(self) -> None:
        check_verify_mode(self.verify)
        if not 0.0 <= self.val_frac < 1.0:
            raise BadInputError(None, f"val_frac must be in [0, 1), got {self.val_frac}")


def _find_data_entry(root: Path) -> Path:
    for name in DATA_ENTRY_NAMES:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    others = sorted(root.glob("Data_Entry_2017*.csv*"))
    if others:
        return others[0]
    raise BadInputError(root, "no Data_Entry_2017*.csv here; --root must be the ChestX-ray14 folder")


def _read_list(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    except UnicodeDecodeError as exc:
        raise BadInputError(path, f"not UTF-8 text (byte at offset {exc.start})") from None


def _index_images(root: Path) -> dict[str, str]:
    """File name → path for every ``.png`` under ``root`` (first found wins; hidden folders skipped)."""
    index: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if f.lower().endswith(".png") and f not in index:
                index[f] = os.path.join(dirpath, f)
    return index


def load_nih14(config: NIHImportConfig) -> LoadedDataset:
    """Read ChestX-ray14's Data_Entry CSV and split lists, find and check every image, build the study table."""
    root = Path(config.root).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "ChestX-ray14 root folder not found")
    entry_path = _find_data_entry(root)
    df = read_table(entry_path, ["Image Index", "Finding Labels", "Patient ID"])
    errors: list[BadInputError] = []
    inputs = [entry_path]

    df["Image Index"] = df["Image Index"].str.strip()
    df["Patient ID"] = df["Patient ID"].str.strip()
    found = df["Finding Labels"].str.split("|").map(lambda xs: [x.strip() for x in xs if x.strip()])
    bad = np.zeros(len(df), dtype=bool)
    for i, (name, pid, labs) in enumerate(zip(df["Image Index"], df["Patient ID"], found, strict=True)):
        unknown = [x for x in labs if x not in _KNOWN]
        problem = None
        if not name or not pid:
            problem = "empty Image Index or Patient ID"
        elif not labs:
            problem = "empty Finding Labels"
        elif unknown:
            problem = f"unknown finding label {unknown[0]!r} (NIH has {len(_KNOWN)}: {', '.join(sorted(_KNOWN))})"
        elif "No Finding" in labs and len(labs) > 1:
            problem = f"'No Finding' together with findings ({'|'.join(labs)})"
        if problem:
            errors.append(BadInputError(entry_path, f"line {i + 2} ({name or '?'}): {problem}"))
            bad[i] = True
    dup = df["Image Index"].duplicated(keep="first").to_numpy() & ~bad
    for i in np.flatnonzero(dup):
        errors.append(BadInputError(entry_path, f"line {i + 2}: duplicate Image Index {df['Image Index'].iloc[i]}"))
    keep = ~bad & ~dup
    df, found = df.loc[keep].reset_index(drop=True), found.loc[keep].reset_index(drop=True)

    # ---- split
    tv_path, test_path = root / "train_val_list.txt", root / "test_list.txt"
    if tv_path.is_file() and test_path.is_file():
        inputs += [tv_path, test_path]
        train_val, test = _read_list(tv_path), _read_list(test_path)
        in_tv = df["Image Index"].isin(train_val).to_numpy()
        in_test = df["Image Index"].isin(test).to_numpy()
        for i in np.flatnonzero(in_tv & in_test):
            errors.append(BadInputError(test_path, f"{df['Image Index'].iloc[i]} is in both train_val and test lists"))
        for i in np.flatnonzero(~in_tv & ~in_test):
            errors.append(BadInputError(tv_path, f"{df['Image Index'].iloc[i]} is in neither split list"))
        ok = in_tv ^ in_test
        by_patient = patient_split(
            df.loc[in_tv & ok, "Patient ID"], config.seed, 1.0 - config.val_frac, config.val_frac
        )
        split = np.where(in_test, "test", df["Patient ID"].map(by_patient).fillna("").to_numpy())
        df, found = df.loc[ok].reset_index(drop=True), found.loc[ok].reset_index(drop=True)
        df["split"] = split[ok]
    else:
        warn_line(f"{root}: no train_val_list.txt/test_list.txt; using a patient-level hash split (seed {config.seed})")
        by_patient = patient_split(df["Patient ID"], config.seed, 0.7, 0.1)
        df["split"] = df["Patient ID"].map(by_patient).astype(str)

    # ---- images
    index = _index_images(root)
    paths = [index.get(name, str(root / "images" / name)) for name in df["Image Index"]]
    height, width, img_errors, _ = verify_images(paths, config.verify, description="checking ChestX-ray14 images")
    refuse_if_all_missing(img_errors, len(paths), root, entry_path)
    errors.extend(img_errors[i] for i in sorted(img_errors))
    keep = np.ones(len(df), dtype=bool)
    keep[list(img_errors)] = False

    label_sets = [set(x) for x in found]
    cols: dict[str, object] = {
        "study_id": df["Image Index"].str.replace(r"\.png$", "", regex=True, case=False),
        "image_id": df["Image Index"].str.replace(r"\.png$", "", regex=True, case=False),
        "patient_id": df["Patient ID"],
        "image_path": paths,
        "view": df.get("View Position", pd.Series("", index=df.index)).map(normalize_view),
        "split": df["split"],
        "source": SOURCE,
        "No Finding": [float(s == {"No Finding"}) for s in label_sets],
    }
    for nih, chexpert in NIH_TO_CHEXPERT.items():
        cols[chexpert] = [float(nih in s) for s in label_sets]
    for nih in NIH_ONLY_LABELS:
        cols[nih] = np.array([float(nih in s) for s in label_sets], dtype=np.float32)
    cols["finding_labels"] = df["Finding Labels"]
    cols["follow_up"] = pd.to_numeric(df.get("Follow-up #", pd.Series("", index=df.index)), errors="coerce")
    cols["age"] = pd.to_numeric(df.get("Patient Age", pd.Series("", index=df.index)), errors="coerce").astype("float32")
    cols["sex"] = df.get("Patient Gender", pd.Series("", index=df.index))
    cols["image_height"], cols["image_width"] = height, width
    studies = finalize_study_table(pd.DataFrame(cols).loc[keep])
    extra = {
        "license": "public (NIH Clinical Center); cite Wang et al. CVPR 2017",
        "label_map": {**NIH_TO_CHEXPERT, "No Finding": "No Finding"},
        "summary": summarize_studies(studies, len(errors), NIH_ONLY_LABELS),
    }
    return LoadedDataset(studies, {}, tuple(errors), tuple(inputs), extra)


def run_data_import_nih14(
    workspace: Workspace, config: NIHImportConfig, *, name: str = "nih14", force: bool = False
) -> StageResult:
    """Import NIH ChestX-ray14 into ``datasets/<name>``; skipped when current (same config)."""
    return import_dataset(
        workspace, name, stage="data.import.nih14", config=config, load=lambda: load_nih14(config), force=force
    )
