"""The study table (one row per image) shared by every loader, and the patient-level split.

Columns (DESIGN.md): ``study_id, image_id, patient_id, image_path, view, split, findings, impression, source`` and
the 14 CheXpert labels as float columns — ``1`` positive, ``0`` negative, ``-1`` uncertain, ``NaN`` not mentioned.
Loaders may add extra columns after these (IU X-ray adds ``indication``, ``comparison``, ``mesh_major`` …).
``image_path`` is relative to the dataset directory (or absolute) and may be empty when no image exists yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from cxrlens.errors import BadInputError

__all__ = [
    "CHEXPERT_LABELS",
    "SPLITS",
    "STUDY_COLUMNS",
    "VIEWS",
    "binarise_labels",
    "finalize_study_table",
    "normalize_view",
    "patient_split",
    "validate_study_table",
]

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
STUDY_COLUMNS: tuple[str, ...] = (
    "study_id",
    "image_id",
    "patient_id",
    "image_path",
    "view",
    "split",
    "findings",
    "impression",
    "source",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL", "UNKNOWN")

UNCERTAIN_POLICIES: tuple[str, ...] = ("positive", "negative", "ignore")


def binarise_labels(values: object, uncertain: str = "positive", missing: float = 0.0) -> np.ndarray:
    """CheXpert-convention values (any shape) → float {0, 1} labels for training and evaluation.

    ``1`` → 1; ``0`` → 0; ``-1`` (uncertain) → 1 (``"positive"``, U-Ones), 0 (``"negative"``, U-Zeros) or NaN
    (``"ignore"``: left out by the caller); NaN (not mentioned) → ``missing`` (0 = CheXpert's usual reading of
    silence as absence; pass ``np.nan`` to leave such rows out too).
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    v = np.asarray(values, dtype=np.float64)
    out = np.where(v == 1, 1.0, 0.0)
    out[np.isnan(v)] = missing
    out[v == -1] = {"positive": 1.0, "negative": 0.0, "ignore": np.nan}[uncertain]
    return out


_VIEW_ALIASES = {
    "PA": "PA",
    "POSTEROANTERIOR": "PA",
    "AP": "AP",
    "ANTEROPOSTERIOR": "AP",
    "AP SUPINE": "AP",
    "AP AXIAL": "AP",
    "LATERAL": "LATERAL",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "LAT": "LATERAL",
    "LARGE LATERAL": "LATERAL",
    "LLD": "LATERAL",
    "RLD": "LATERAL",
}


def normalize_view(raw: object) -> str:
    """Map a dataset's view string (``"PA"``, ``"LL"``, ``"Frontal/AP"`` …) to one of :data:`VIEWS`."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return "UNKNOWN"
    text = str(raw).strip().upper()
    if "/" in text:  # CheXpert's "Frontal/AP"
        text = text.split("/")[-1]
    return _VIEW_ALIASES.get(text, "UNKNOWN")


def patient_split(patient_ids: Iterable[str], seed: int = 0, train: float = 0.7, val: float = 0.1) -> pd.Series:
    """Deterministic patient-level split: patient → ``"train" | "val" | "test"``.

    Each patient's split depends only on its id and ``seed``: ``u = sha256(f"{seed}:{id}")`` read as a number in
    [0, 1); ``u < train`` → train, ``u < train + val`` → val, else test. So the split never changes when patients are
    added or removed, is identical across processes and platforms, and all images of a patient share one split.
    Proportions are those of the fractions up to sampling noise (±1 % at 4,000 patients).
    """
    ids = pd.Index(pd.unique(pd.Series(list(patient_ids), dtype="string")))
    u = np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{pid}".encode()).digest()[:8], "big") / 2.0**64 for pid in ids],
        dtype=np.float64,
    )
    labels = np.where(u < train, "train", np.where(u < train + val, "val", "test"))
    return pd.Series(labels, index=ids, name="split")


def finalize_study_table(df: pd.DataFrame) -> pd.DataFrame:
    """Order columns (standard ones first, then labels, then extras), fill missing label columns with NaN, fix
    dtypes (ids and text as strings, labels float32) and validate."""
    df = df.copy()
    for col in STUDY_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    for label in CHEXPERT_LABELS:
        if label not in df.columns:
            df[label] = np.nan
        df[label] = df[label].astype("float32")
    for col in STUDY_COLUMNS:
        df[col] = df[col].fillna("").astype(str)
    extras = [c for c in df.columns if c not in STUDY_COLUMNS and c not in CHEXPERT_LABELS]
    df = df[[*STUDY_COLUMNS, *CHEXPERT_LABELS, *extras]].reset_index(drop=True)
    validate_study_table(df)
    return df


def validate_study_table(df: pd.DataFrame, path: str | None = None) -> None:
    """Raise :class:`BadInputError` (naming ``path``) unless ``df`` is a valid study table."""
    missing = [c for c in (*STUDY_COLUMNS, *CHEXPERT_LABELS) if c not in df.columns]
    if missing:
        raise BadInputError(path, f"study table lacks column(s): {', '.join(missing)}")
    if df["image_id"].duplicated().any():
        dup = df.loc[df["image_id"].duplicated(), "image_id"].iloc[0]
        raise BadInputError(path, f"duplicate image_id {dup!r}")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise BadInputError(path, f"split must be one of {SPLITS}, found {bad_split[:3]}")
    bad_view = sorted(set(df["view"]) - set(VIEWS))
    if bad_view:
        raise BadInputError(path, f"view must be one of {VIEWS}, found {bad_view[:3]}")
    for label in CHEXPERT_LABELS:
        values = df[label].to_numpy(dtype=np.float64)
        ok = np.isnan(values) | np.isin(values, (1.0, 0.0, -1.0))
        if not ok.all():
            raise BadInputError(path, f"label {label!r} has value {values[~ok][0]!r} outside {{1, 0, -1, NaN}}")
    per_patient = df.groupby("patient_id")["split"].nunique()
    if (per_patient > 1).any():
        raise BadInputError(path, f"patient {per_patient[per_patient > 1].index[0]!r} is in more than one split")
