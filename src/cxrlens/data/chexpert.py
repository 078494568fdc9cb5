"""CheXpert (v1.0 and v1.0-small) → the cxrlens study table.

Where to get it: Stanford AIMI, https://stanfordaimi.azurewebsites.net/datasets/8cbd9ed4-2eb9-4565-affc-111cf4f7ebe2
(free registration; the Stanford University School of Medicine CheXpert Dataset Research Use Agreement; no
redistribution). The downsampled ``CheXpert-v1.0-small`` (~11 GB) is also mirrored on Kaggle under the same terms.
Citation: Irvin J. et al., "CheXpert: a large chest radiograph dataset with uncertainty labels and expert
comparison", AAAI 2019.

Expected layout (``--root`` is the folder holding the CSVs)::

    <root>/train.csv     Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding, …, Support Devices (14 labels)
    <root>/valid.csv     same columns (radiologist labels, 0/1 only)
    <root>/test.csv      optional: the later-released test labels, ``Path`` + the 14 labels
    <root>/train/patient00001/study1/view1_frontal.jpg

``Path`` values start with ``CheXpert-v1.0-small/`` (or ``CheXpert-v1.0/``); they are resolved against the parent of
``--root``, or ``--root`` itself with or without that first component — whichever finds the first rows' images —
so either the dataset folder or a renamed copy works.

Ids come from the path: ``patient_id`` = ``patient00001``, ``study_id`` = ``patient00001/study1``, ``image_id`` =
``patient00001/study1/view1_frontal``. View: ``Frontal/Lateral`` = Lateral → LATERAL, else ``AP/PA`` (AP, PA; LL/RL →
LATERAL); missing → from the file name (``_lateral``) or UNKNOWN.

Labels: the 14 CheXpert columns as given (train: the CheXpert labeler on the reports, 1/0/-1/NaN; valid/test:
radiologist consensus, 0/1). There are no reports in this release.

**Split.** The original test set's labels were not public for years, so the usual protocol is used: with no
``test.csv``, ``valid.csv`` (200 patients, radiologist labels) becomes **test**, and **val** is carved out of
``train.csv`` by patient with :func:`cxrlens.data.schema.patient_split` (``val_frac`` of train patients, default
10 %, seeded and stable when patients are added). With a ``test.csv``: train → train, valid → val, test → test.
The CheXpert CSV a row came from is kept in the ``chexpert_csv`` column.

Skipped (one line each): a row whose ``Path`` does not look like CheXpert's, a label outside {1, 0, -1, empty}, an
image that is missing or unreadable. A CSV without ``Path`` or a label column stops the import.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.data._loader_utils import (
    check_verify_mode,
    parse_label_columns,
    read_table,
    refuse_if_all_missing,
    summarize_studies,
    verify_images,
)
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, normalize_view, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace

__all__ = ["CheXpertImportConfig", "load_chexpert", "parse_chexpert_path", "run_data_import_chexpert"]

SOURCE = "chexpert"
CSV_NAMES = ("train.csv", "valid.csv", "test.csv")
_PATH_RE = re.compile(
    r"(?:^|/)(?P<part>train|valid|test)/(?P<patient>patient\d+)/(?P<study>study\d+)/"
    r"(?P<view>view\d+_(?P<fl>frontal|lateral))\.(?:jpg|jpeg|png)$",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class CheXpertImportConfig:
    """Config of ``cxrlens data import chexpert``.

    Attributes:
        root: the folder holding ``train.csv`` / ``valid.csv`` (e.g. ``…/CheXpert-v1.0-small``).
        verify: per image, ``exists`` | ``header`` (default) | ``decode``.
        seed, val_frac: the patient-level split of train.csv into train / val (see the module docstring).
    """

    root: str
    verify: str = "header"
    seed: int = 0
    val_frac: float = 0.1

    def __post_init__(self) -> None:
        check_verify_mode(self.verify)
        if not 0.0 <= self.val_frac < 1.0:
            raise BadInputError(None, f"val_frac must be in [0, 1), got {self.val_frac}")


def parse_chexpert_path(path: str) -> dict[str, str] | None:
    """``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`` → patient, study, image ids; else None."""
    m = _PATH_RE.search(path.strip().replace("\\", "/"))
    if m is None:
        return None
    patient, study = m.group("patient"), m.group("study")
    return {
        "patient_id": patient,
        "study_id": f"{patient}/{study}",
        "image_id": f"{patient}/{study}/{m.group('view')}",
        "frontal_lateral": m.group("fl").lower(),
    }


def resolve_image_paths(root: Path, rels: list[str]) -> list[str]:
    """Absolute image paths for CSV ``Path`` values: the first base (``root``'s parent, ``root``, or ``root`` with the
    ``CheXpert-v1.0(-small)/`` component dropped) under which one of the first 50 rows exists is used for all rows."""
    rels = [r.strip().replace("\\", "/").lstrip("/") for r in rels]
    base_parent, base_root = str(root.parent), str(root)

    def candidate(how: str, rel: str) -> str:
        if how == "parent":
            return os.path.join(base_parent, rel)
        if how == "root":
            return os.path.join(base_root, rel)
        return os.path.join(base_root, rel.split("/", 1)[-1])

    chosen = "parent"
    for rel in rels[:50]:
        hit = next((how for how in ("parent", "root", "strip") if os.path.isfile(candidate(how, rel))), None)
        if hit is not None:
            chosen = hit
            break
    return [candidate(chosen, rel) for rel in rels]


def load_chexpert(config: CheXpertImportConfig) -> LoadedDataset:
    """Read CheXpert's CSVs, check every image, build the study table (no side tables: CheXpert has no reports)."""
    root = Path(config.root).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "CheXpert root folder not found")
    csvs = {name: root / name for name in CSV_NAMES if (root / name).is_file()}
    if "train.csv" not in csvs and "valid.csv" not in csvs:
        raise BadInputError(root, "no train.csv or valid.csv here; --root must be the CheXpert-v1.0(-small) folder")
    errors: list[BadInputError] = []
    frames = []
    for name, path in csvs.items():
        df = read_table(path, ["Path", *CHEXPERT_LABELS])
        parsed = [parse_chexpert_path(p) for p in df["Path"]]
        bad_path = np.array([p is None for p in parsed], dtype=bool)
        for i in np.flatnonzero(bad_path):
            errors.append(
                BadInputError(path, f"line {i + 2}: Path {df['Path'].iloc[i]!r} is not a CheXpert image path")
            )
        labels, bad_label, label_errors = parse_label_columns(df, CHEXPERT_LABELS, path, list(df["Path"]))
        errors.extend(e for i, e in zip(np.flatnonzero(bad_label), label_errors, strict=True) if not bad_path[i])
        ok = ~bad_path & ~bad_label
        ids = pd.DataFrame([p for p, k in zip(parsed, ok, strict=True) if k], index=df.index[ok])
        part = pd.concat([df.loc[ok].drop(columns=list(CHEXPERT_LABELS)), ids, labels.loc[ok]], axis=1)
        part["chexpert_csv"] = name
        frames.append(part)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        raise BadInputError(root, "no usable row in the CheXpert CSVs")
    dup = table["image_id"].duplicated(keep="first")
    for i in np.flatnonzero(dup.to_numpy()):
        errors.append(BadInputError(root / table["chexpert_csv"].iloc[i], f"duplicate image {table['Path'].iloc[i]}"))
    table = table.loc[~dup].reset_index(drop=True)

    # ---- split (see module docstring)
    has_test = "test.csv" in csvs
    split = pd.Series("", index=table.index, dtype=object)
    train_rows = table["chexpert_csv"] == "train.csv"
    if has_test:
        split[train_rows] = "train"
    else:
        train_patients = table.loc[train_rows, "patient_id"]
        by_patient = patient_split(train_patients, config.seed, 1.0 - config.val_frac, config.val_frac)
        split[train_rows] = train_patients.map(by_patient).astype(str)
    split[table["chexpert_csv"] == "valid.csv"] = "val" if has_test else "test"
    split[table["chexpert_csv"] == "test.csv"] = "test"
    table["split"] = split

    # ---- view
    fl = table.get("Frontal/Lateral", pd.Series("", index=table.index)).str.strip().str.lower()
    fl = fl.where(fl != "", table["frontal_lateral"])
    appa = table.get("AP/PA", pd.Series("", index=table.index)).map(normalize_view)
    table["view"] = np.where(fl == "lateral", "LATERAL", appa)

    # ---- images
    paths = resolve_image_paths(root, list(table["Path"]))
    height, width, img_errors, _ = verify_images(paths, config.verify, description="checking CheXpert images")
    refuse_if_all_missing(img_errors, len(paths), root, ", ".join(csvs))
    errors.extend(img_errors[i] for i in sorted(img_errors))
    keep = np.ones(len(table), dtype=bool)
    keep[list(img_errors)] = False

    studies = pd.DataFrame(
        {
            "study_id": table["study_id"],
            "image_id": table["image_id"],
            "patient_id": table["patient_id"],
            "image_path": paths,
            "view": table["view"],
            "split": table["split"],
            "findings": "",
            "impression": "",
            "source": SOURCE,
            **{label: table[label] for label in CHEXPERT_LABELS},
            "sex": table.get("Sex", pd.Series("", index=table.index)),
            "age": pd.to_numeric(table.get("Age", pd.Series("", index=table.index)), errors="coerce").astype("float32"),
            "view_raw": table.get("AP/PA", pd.Series("", index=table.index)),
            "chexpert_csv": table["chexpert_csv"],
            "image_height": height,
            "image_width": width,
        }
    ).loc[keep]
    studies = finalize_study_table(studies)
    extra = {
        "license": "Stanford CheXpert Dataset Research Use Agreement",
        "split_rule": "valid.csv → val, test.csv → test"
        if has_test
        else f"valid.csv → test; train.csv patients → train/val by patient hash (val_frac={config.val_frac})",
        "summary": summarize_studies(studies, len(errors)),
    }
    return LoadedDataset(studies, {}, tuple(errors), tuple(csvs.values()), extra)


def run_data_import_chexpert(
    workspace: Workspace, config: CheXpertImportConfig, *, name: str = "chexpert", force: bool = False
) -> StageResult:
    """Import CheXpert into ``datasets/<name>``; skipped when current (same config)."""
    return import_dataset(
        workspace, name, stage="data.import.chexpert", config=config, load=lambda: load_chexpert(config), force=force
    )
