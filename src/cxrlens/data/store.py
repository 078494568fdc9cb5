"""Datasets in the workspace: write a study table (and side tables) as one atomic artefact, read it back.

A dataset artefact is ``<workspace>/datasets/<name>/`` with ``studies.parquet`` (the study table), optional side
tables (``reports.parquet``, ``factors.parquet`` …), ``skipped.parquet`` (every bad input: file and problem) and
``manifest.json``. :func:`import_dataset` is the one way loaders write it, so every import skips, counts and
reports bad items the same way and is skipped when current.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrlens.console import warn_line
from cxrlens.errors import BadInputError
from cxrlens.files import atomic_write_parquet, file_sha256
from cxrlens.workspace import StageResult, Workspace, run_stage

__all__ = ["LoadedDataset", "image_file", "import_dataset", "read_side_table", "read_studies"]

STUDIES = "studies.parquet"
SKIPPED = "skipped.parquet"


@dataclass(frozen=True)
class LoadedDataset:
    """What a loader returns: the study table, side tables by file stem, skipped inputs, input files read."""

    studies: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    errors: Sequence[BadInputError]
    inputs: Sequence[Path]
    extra: dict[str, Any] | None = None


def import_dataset(
    workspace: Workspace,
    name: str,
    *,
    stage: str,
    config: Any,
    load: Callable[[], LoadedDataset],
    force: bool = False,
    write_files: Callable[[Path, LoadedDataset], None] | None = None,
    upstream: Mapping[str, str] | None = None,
) -> StageResult:
    """Run ``load()`` and write its tables into ``datasets/<name>`` unless that artefact is current (for ``config``
    and ``upstream``, e.g. the version of the code that draws the images).

    Every skipped item is printed as one warning line (file: problem), stored in ``skipped.parquet`` and counted
    in the manifest. ``write_files(tmp_dir, loaded)`` may add files (images, masks) inside the build directory.
    """

    def build(tmp: Path) -> dict[str, Any]:
        loaded = load()
        for err in loaded.errors:
            warn_line(f"skipped {err}")
        atomic_write_parquet(tmp / STUDIES, loaded.studies)
        for table_name, table in loaded.tables.items():
            atomic_write_parquet(tmp / f"{table_name}.parquet", table)
        skipped = pd.DataFrame(
            {"path": [e.path or "" for e in loaded.errors], "problem": [e.problem for e in loaded.errors]},
            dtype="string",
        )
        atomic_write_parquet(tmp / SKIPPED, skipped)
        if write_files is not None:
            write_files(tmp, loaded)
        rows = {"images": len(loaded.studies), **{k: len(v) for k, v in loaded.tables.items()}}
        return {
            "inputs": {str(p): file_sha256(p) for p in loaded.inputs if Path(p).is_file()},
            "rows": rows,
            "skipped": {"total": len(loaded.errors)},
            "extra": loaded.extra or {},
        }

    return run_stage(workspace.dataset(name), stage=stage, config=config, build=build, force=force, upstream=upstream)


def read_studies(workspace: Workspace, name: str) -> pd.DataFrame:
    """The study table of dataset ``name``; a clear error if it has not been imported."""
    path = workspace.dataset(name) / STUDIES
    if not path.exists():
        raise BadInputError(path, f"dataset {name!r} not found in the workspace; import or build it first")
    return pd.read_parquet(path)


def image_file(dataset_dir: str | Path, image_path: object) -> Path:
    """The file of a study-table ``image_path``: absolute as given, else relative to the dataset directory."""
    p = Path(str(image_path))
    return p if p.is_absolute() else Path(dataset_dir) / p


def read_side_table(workspace: Workspace, name: str, table: str) -> pd.DataFrame:
    """A side table (``reports``, ``factors`` …) of dataset ``name``."""
    path = workspace.dataset(name) / f"{table}.parquet"
    if not path.exists():
        raise BadInputError(path, f"dataset {name!r} has no {table!r} table")
    return pd.read_parquet(path)
