"""IU X-ray (Open-i, Indiana University) reports → the cxrlens study table.

Source: the 3,955 XML reports that torchxrayvision ships as ``torchxrayvision/data/NLMCXR_reports.tgz`` and its DICOM
metadata table ``nlmcxr_dicom_metadata.csv.gz`` (for the view). Read from the installed package, never copied.
Licence of the reports: CC BY-NC-ND 4.0 (stated in every XML file's ``licenseURL``). Citation: Demner-Fushman D. et
al., "Preparing a collection of radiology examinations for distribution and retrieval", JAMIA 23(2), 2016.

Two tables come out:

* ``reports`` — one row per report (3,955): ``study_id`` (the report uid, e.g. ``CXR1``), ``patient_id`` (IU X-ray
  has one report per patient, so the same id), findings, impression, indication, comparison, MeSH major and
  automatic tags (list columns), ``n_images``, split, and the 14 CheXpert labels of findings + impression
  (:mod:`cxrlens.data.labeler`; ``IUXrayImportConfig.label_reports=False`` leaves them out).
* ``studies`` — the study table of :mod:`cxrlens.data.schema`, one row per image id (7,470; 104 reports have no
  image). ``image_path`` is empty: no IU image is available offline (the phantom dataset draws them). ``view`` comes
  from the DICOM metadata's *View Position* where the image id joins (LL/RL → LATERAL), else ``UNKNOWN``.

The split is by patient (= report) with :func:`cxrlens.data.schema.patient_split` (70/10/20, seeded).
Text keeps the de-identification token ``XXXX`` as it is in the source.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.data.labeler import label_reports, report_text
from cxrlens.data.schema import CHEXPERT_LABELS, finalize_study_table, normalize_view, patient_split
from cxrlens.data.store import LoadedDataset, import_dataset
from cxrlens.errors import BadInputError
from cxrlens.workspace import StageResult, Workspace

__all__ = [
    "IUXrayImportConfig",
    "IUXrayTables",
    "iter_report_files",
    "load_iu_xray",
    "parse_report_xml",
    "run_data_import_iu_xray",
    "summarize",
    "xrv_data_dir",
]

SOURCE = "iu-xray"
REPORTS_ARCHIVE = "NLMCXR_reports.tgz"
DICOM_METADATA = "nlmcxr_dicom_metadata.csv.gz"
_SECTIONS = {
    "FINDINGS": "findings",
    "IMPRESSION": "impression",
    "INDICATION": "indication",
    "COMPARISON": "comparison",
}


@dataclasses.dataclass(frozen=True)
class IUXrayImportConfig:
    """Config of ``cxrlens data import iu-xray``.

    Attributes:
        seed: seed of the patient-level split.
        train_frac, val_frac: fractions of patients in train and val; the rest is test (default 70/10/20).
        reports_source: a ``.tgz`` of XML reports or a directory of ``*.xml``; ``None`` = torchxrayvision's copy.
        label_reports: fill the 14 CheXpert label columns of both tables from findings + impression with
            :func:`cxrlens.data.labeler.label_reports` (else they stay NaN).
    """

    seed: int = 0
    train_frac: float = 0.7
    val_frac: float = 0.1
    reports_source: str | None = None
    label_reports: bool = True

    def __post_init__(self) -> None:
        if not (0 < self.train_frac < 1 and 0 <= self.val_frac < 1 and self.train_frac + self.val_frac < 1):
            raise ValueError(
                "split fractions must satisfy 0 < train, 0 <= val, train + val < 1; "
                f"got train={self.train_frac}, val={self.val_frac}"
            )


@dataclasses.dataclass(frozen=True)
class IUXrayTables:
    """Result of :func:`load_iu_xray`: the two tables, the files that were skipped, and the inputs read."""

    reports: pd.DataFrame
    studies: pd.DataFrame
    errors: tuple[BadInputError, ...]
    inputs: tuple[Path, ...]


def xrv_data_dir() -> Path:
    """``torchxrayvision/data`` of the installed package (holds the bundled report and label files)."""

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(None, "torchxrayvision is not installed; `pip install torchxrayvision`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def iter_report_files(source: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, xml bytes)`` for every ``*.xml`` in a ``.tgz``/``.tar`` archive or a directory, sorted by name.

    ``name`` is ``archive.tgz:member`` for archive members and the file path for directories.
    """
    source = Path(source)
    if source.is_dir():
        for path in sorted(source.rglob("*.xml")):
            yield str(path), path.read_bytes()
        return
    if not source.exists():
        raise BadInputError(source, "reports source not found")
    try:
        with tarfile.open(source, "r:*") as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")), key=lambda m: m.name
            )
            for m in members:
                fh = tar.extractfile(m)
                if fh is not None:
                    yield f"{source}:{m.name}", fh.read()
    except tarfile.TarError as exc:
        raise BadInputError(source, f"not a readable tar archive ({exc})") from None


def _text(el: ET.Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def parse_report_xml(data: bytes, name: str = "<report>") -> dict:
    """Parse one IU X-ray XML report into a dict; raises :class:`BadInputError` naming ``name`` on bad input.

    Returns keys ``study_id, findings, impression, indication, comparison, mesh_major, mesh_automatic,
    image_ids, captions, license``.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise BadInputError(name, f"malformed XML ({exc})") from None
    if root.tag != "eCitation":
        raise BadInputError(name, f"not an IU X-ray report (root element <{root.tag}>, expected <eCitation>)")
    uid = root.find("uId")
    study_id = (uid.get("id") or "").strip() if uid is not None else ""
    if not study_id:
        raise BadInputError(name, "report has no <uId id=…> (report id)")
    out: dict = {"study_id": study_id, **{v: "" for v in _SECTIONS.values()}}
    for node in root.iter("AbstractText"):
        key = _SECTIONS.get((node.get("Label") or "").upper())
        if key:
            out[key] = _text(node)
    mesh = root.find("MeSH")
    out["mesh_major"] = [_text(m) for m in mesh.findall("major")] if mesh is not None else []
    out["mesh_automatic"] = [_text(m) for m in mesh.findall("automatic")] if mesh is not None else []
    images = root.findall("parentImage")
    out["image_ids"] = [(img.get("id") or "").strip() for img in images]
    if any(not i for i in out["image_ids"]):
        raise BadInputError(name, "a <parentImage> has no id")
    out["captions"] = [_text(img.find("caption")) for img in images]
    out["license"] = _text(root.find("licenseURL"))
    return out


def _views_from_dicom_metadata(path: Path) -> dict[str, str]:
    meta = pd.read_csv(path, usecols=["imageid", "View Position"])
    return dict(zip(meta["imageid"].astype(str), meta["View Position"], strict=True))


def load_iu_xray(config: IUXrayImportConfig | None = None) -> IUXrayTables:
    """Read and parse every IU X-ray report; bad files are collected in ``errors`` and skipped.

    Returns:
        reports: (n_reports, 11 + 14) one row per report; studies: (n_images, 9 + 14 + extras) study table, the
        labels labelled from each report's findings + impression unless ``config.label_reports`` is False.
    """
    config = config or IUXrayImportConfig()
    data_dir = xrv_data_dir()
    source = Path(config.reports_source) if config.reports_source else data_dir / REPORTS_ARCHIVE
    rows, errors = [], []
    seen: dict[str, str] = {}
    for name, payload in iter_report_files(source):
        try:
            rec = parse_report_xml(payload, name)
            if rec["study_id"] in seen:
                raise BadInputError(name, f"duplicate report id {rec['study_id']} (also in {seen[rec['study_id']]})")
        except BadInputError as exc:
            errors.append(exc)
            continue
        seen[rec["study_id"]] = name
        rows.append(rec)
    if not rows:
        raise BadInputError(source, "no readable IU X-ray report found")

    reports = pd.DataFrame(rows)
    reports["patient_id"] = reports["study_id"]
    split = patient_split(reports["patient_id"], config.seed, config.train_frac, config.val_frac)
    reports["split"] = reports["patient_id"].map(split).astype(str)
    reports["n_images"] = reports["image_ids"].map(len).astype("int32")
    reports["_order"] = reports["study_id"].str.extract(r"(\d+)$")[0].astype(float)
    reports = reports.sort_values(["_order", "study_id"]).drop(columns="_order").reset_index(drop=True)
    label_cols = list(CHEXPERT_LABELS) if config.label_reports else []
    if config.label_reports:
        texts = [report_text(f, i) for f, i in zip(reports["findings"], reports["impression"], strict=True)]
        labels = label_reports(texts)
        for name in label_cols:
            reports[name] = labels[name].to_numpy()

    inputs = [source]
    meta_path = data_dir / DICOM_METADATA
    views = _views_from_dicom_metadata(meta_path) if meta_path.exists() else {}
    if views:
        inputs.append(meta_path)
    images = reports.explode(["image_ids", "captions"]).dropna(subset=["image_ids"])
    studies = pd.DataFrame(
        {
            "study_id": images["study_id"],
            "image_id": images["image_ids"],
            "patient_id": images["patient_id"],
            "image_path": "",
            "view_raw": images["image_ids"].map(views).astype(object),
            "split": images["split"],
            "findings": images["findings"],
            "impression": images["impression"],
            "source": SOURCE,
            "indication": images["indication"],
            "comparison": images["comparison"],
            "mesh_major": images["mesh_major"],
            "mesh_automatic": images["mesh_automatic"],
            "caption": images["captions"],
            **{name: images[name].astype("float32") for name in label_cols},
        }
    )
    studies["view"] = studies["view_raw"].map(normalize_view)
    studies["view_raw"] = studies["view_raw"].fillna("").astype(str)
    dup = studies["image_id"].duplicated(keep="first")
    for image_id in studies.loc[dup, "image_id"]:
        errors.append(BadInputError(source, f"image id {image_id} appears in more than one report; kept the first"))
    studies = finalize_study_table(studies.loc[~dup])
    reports = reports.drop(columns=["image_ids", "captions"])
    cols = [
        "study_id",
        "patient_id",
        "split",
        "findings",
        "impression",
        "indication",
        "comparison",
        "mesh_major",
        "mesh_automatic",
        "n_images",
        "license",
        *label_cols,
    ]
    return IUXrayTables(reports[cols], studies, tuple(errors), tuple(inputs))


def summarize(reports: pd.DataFrame, studies: pd.DataFrame, top: int = 10) -> dict:
    """Numbers for the import summary: counts, split sizes, top MeSH terms, report length (words) stats."""
    words = (reports["findings"] + " " + reports["impression"]).str.split().map(len)
    terms = Counter(t.split("/")[0].strip().lower() for tags in reports["mesh_major"] for t in tags if t)
    has_text = ((reports["findings"].str.len() > 0) | (reports["impression"].str.len() > 0)).mean()
    return {
        "reports": len(reports),
        "images": len(studies),
        "patients": int(reports["patient_id"].nunique()),
        "reports_with_text": float(has_text),
        "split_reports": reports["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).to_dict(),
        "split_images": studies["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).to_dict(),
        "views": studies["view"].value_counts().to_dict(),
        "top_mesh": terms.most_common(top),
        "words_mean": float(words.mean()),
        "words_median": float(np.median(words)),
        "words_p95": float(np.percentile(words, 95)),
    }


def run_data_import_iu_xray(
    workspace: Workspace,
    config: IUXrayImportConfig | None = None,
    *,
    name: str = "iu-xray",
    force: bool = False,
) -> StageResult:
    """Import IU X-ray into ``datasets/<name>`` (``studies.parquet`` + ``reports.parquet``); skipped when current."""
    config = config or IUXrayImportConfig()

    def load() -> LoadedDataset:
        t = load_iu_xray(config)
        s = summarize(t.reports, t.studies)
        extra = {"license": "CC BY-NC-ND 4.0", "summary": s}
        return LoadedDataset(t.studies, {"reports": t.reports}, t.errors, t.inputs, extra)

    return import_dataset(workspace, name, stage="data.import.iu-xray", config=config, load=load, force=force)
