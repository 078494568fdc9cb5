"""Pieces the dataset loaders (mimic, chexpert, nih, folder) share: checked CSV reading, label validation, report
files, image verification and the import summary. Every problem is a :class:`BadInputError` naming the file."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.console import progress
from cxrlens.data.images import load_image, probe_image
from cxrlens.data.schema import CHEXPERT_LABELS, SPLITS
from cxrlens.errors import BadInputError

__all__ = [
    "VERIFY_MODES",
    "check_verify_mode",
    "find_table",
    "parse_label_columns",
    "read_report",
    "read_table",
    "refuse_if_all_missing",
    "summarize_studies",
    "verify_images",
]

VERIFY_MODES = ("exists", "header", "decode")


def check_verify_mode(mode: str) -> None:
    """Refuse an unknown ``verify`` mode (a :class:`BadInputError`, so the CLI prints one line)."""
    if mode not in VERIFY_MODES:
        raise BadInputError(None, f"verify must be one of {', '.join(VERIFY_MODES)}; got {mode!r}")


def find_table(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (each also tried with ``.gz``) that exists in ``root``."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_table(path: Path, required: Iterable[str], *, what: str = "CSV") -> pd.DataFrame:
    """Read a CSV (``.gz`` too) with every cell as a string (``""`` when empty).

    Raises:
        BadInputError: naming ``path`` — unreadable, not UTF-8, malformed, or missing a required column.
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(path, f"{what} not found") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(
            path, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    except pd.errors.EmptyDataError:
        raise BadInputError(path, f"empty {what} (no header line)") from None
    except pd.errors.ParserError as exc:
        raise BadInputError(path, f"malformed {what} ({exc})") from None
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise BadInputError(path, f"corrupt gzip file ({exc})") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot read {what} ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = ", ".join(repr(c) for c in list(df.columns)[:12])
        raise BadInputError(
            path, f"missing required column(s) {', '.join(repr(c) for c in missing)} (found: {found or 'none'})"
        )
    return df


def parse_label_columns(
    df: pd.DataFrame, columns: Sequence[str], path: Path, row_names: Sequence[str] | None = None
) -> tuple[pd.DataFrame, np.ndarray, list[BadInputError]]:
    """Turn string label cells into float32 (``1, 0, -1, NaN``); cells outside that set make their row bad.

    Returns:
        labels: (n_rows, len(columns)) float32 frame (NaN in bad rows); bad_N: bool mask of rows with a bad value;
        errors: one :class:`BadInputError` per bad row, naming ``path``, the CSV line and the first bad value.
    """
    n = len(df)
    out = pd.DataFrame(index=df.index)
    bad = np.zeros(n, dtype=bool)
    first_bad: dict[int, tuple[str, str]] = {}
    for col in columns:
        raw = df[col].astype(str).str.strip()
        empty = raw.str.lower().isin(["", "nan"]).to_numpy()
        mapped = pd.to_numeric(raw.where(~empty, ""), errors="coerce")
        invalid = ~empty & ~np.isin(mapped.to_numpy(dtype=np.float64), (1.0, 0.0, -1.0))
        mapped = mapped.where(~invalid)
        for i in np.flatnonzero(invalid & ~bad):
            first_bad[int(i)] = (col, raw.iloc[i])
        bad |= invalid
        out[col] = mapped.astype("float32")
    errors = []
    for i in sorted(first_bad):
        col, value = first_bad[i]
        who = f" ({row_names[i]})" if row_names is not None else ""
        errors.append(BadInputError(path, f"line {i + 2}{who}: label {col!r} is {value!r}, not 1, 0, -1 or empty"))
    out.loc[bad, list(columns)] = np.nan
    return out, bad, errors


def read_report(path: Path) -> str:
    """A report file as text: must exist, be UTF-8 (a BOM is allowed) and hold more than white space."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(path, "report file not found") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot read report ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(
            path, f"report is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise BadInputError(path, "empty report (no text)")
    return text


def verify_images(
    paths: Sequence[str], mode: str, *, description: str = "checking images"
) -> tuple[np.ndarray, np.ndarray, dict[int, BadInputError], dict[int, tuple[str, str]]]:
    """Check every image: ``exists`` (the file is there), ``header`` (:func:`probe_image`: signature, header,
    end-of-file marker, DICOM pixel data and photometric) or ``decode`` (:func:`load_image` on every pixel).

    Returns:
        height_N, width_N: int32 sizes (-1 when unknown); errors: row → error; dicom_N: row → (PatientID,
        ViewPosition) read from DICOM headers.
    """

    check_verify_mode(mode)
    n = len(paths)
    height = np.full(n, -1, dtype=np.int32)
    width = np.full(n, -1, dtype=np.int32)
    errors: dict[int, BadInputError] = {}
    dicom: dict[int, tuple[str, str]] = {}
    with progress(transient=True, disable=n < 200) as bar:
        task = bar.add_task(description, total=n)
        for i, p in enumerate(paths):
            try:
                if mode == "exists":
                    if not os.path.isfile(p):
                        raise BadInputError(p, "image file not found")
                else:
                    info = probe_image(p)
                    height[i], width[i] = info.height, info.width
                    if info.format == "dicom":
                        dicom[i] = (info.patient_id, info.view_position)
                    if mode == "decode":
                        img = load_image(p)
                        height[i], width[i] = img.shape
            except BadInputError as exc:
                errors[i] = exc
            bar.advance(task)
    return height, width, errors, dicom


def refuse_if_all_missing(errors: dict[int, BadInputError], n: int, root: Path, listed_in: Path | str) -> None:
    """One clear error instead of ``n`` warning lines when not a single listed image exists (a wrong ``--root``)."""
    if n and len(errors) == n and all(e.problem == "image file not found" for e in errors.values()):
        first = errors[min(errors)].path
        raise BadInputError(
            root, f"none of the {n:,} images listed in {listed_in} exists here (first expected: {first}); check --root"
        )


def summarize_studies(studies: pd.DataFrame, n_errors: int, extra_labels: Sequence[str] = ()) -> dict:
    """Counts for the import summary: images, studies, patients, per split, views, and per label the number of
    positive / uncertain / negative / unmentioned images."""

    def per_split(col: str) -> dict[str, int]:
        counts = studies.groupby("split")[col].nunique() if len(studies) else pd.Series(dtype=int)
        return {s: int(counts.get(s, 0)) for s in SPLITS}

    labels = {}
    for label in (*CHEXPERT_LABELS, *extra_labels):
        if label not in studies.columns:
            continue
        v = studies[label].to_numpy(dtype=np.float64)
        labels[label] = {
            "pos": int((v == 1).sum()),
            "unc": int((v == -1).sum()),
            "neg": int((v == 0).sum()),
            "nan": int(np.isnan(v).sum()),
        }
    has_text = (studies["findings"].str.len() > 0) | (studies["impression"].str.len() > 0)
    return {
        "images": len(studies),
        "studies": int(studies["study_id"].nunique()),
        "patients": int(studies["patient_id"].nunique()),
        "split_images": per_split("image_id"),
        "split_patients": per_split("patient_id"),
        "views": {k: int(v) for k, v in studies["view"].value_counts().items()},
        "images_with_text": int(has_text.sum()),
        "labels": labels,
        "skipped": n_errors,
    }
