"""The shared vocabulary of question answering and report checking: findings, devices, sides, severities.

Everything in :mod:`cxrlens.qa` speaks these names, so a parsed question, a claim read from a report sentence and
what the image model predicts can be compared by equality:

* **findings** — the 13 CheXpert observations a phantom renders (:data:`FINDINGS`, CheXpert spelling);
* **devices** — the device kinds a phantom draws, by their display word (:data:`DEVICES`: ``endotracheal tube``,
  ``enteric tube``, ``central line``, ``pacemaker``, ``chest tube``); a device is also a ``Support Devices`` finding;
* **sides** — patient sides ``left`` / ``right`` / ``bilateral`` (:data:`SIDES`); :data:`LATERAL_FINDINGS` and
  :data:`LATERAL_DEVICES` are the ones for which a side is meaningful;
* **severities** — ``small`` / ``moderate`` / ``large`` (:data:`SEVERITIES`; "mild" and "trace" read as small,
  "severe" and "massive" as large, as in :func:`cxrlens.align.search.normalize_severity`).
"""

from __future__ import annotations

from cxrlens.data.schema import CHEXPERT_LABELS

__all__ = [
    "DEVICES",
    "DEVICE_KIND",
    "FINDINGS",
    "LATERAL_DEVICES",
    "LATERAL_FINDINGS",
    "SEVERITIES",
    "SEVERITY_FINDINGS",
    "SIDES",
]

FINDINGS: tuple[str, ...] = tuple(c for c in CHEXPERT_LABELS if c != "No Finding")
"""The 13 CheXpert findings (CheXpert spelling and order)."""

DEVICE_KIND: dict[str, str] = {
    "endotracheal tube": "ett",
    "enteric tube": "enteric_tube",
    "central line": "central_line",
    "pacemaker": "pacemaker",
    "chest tube": "chest_tube",
}
"""Device word → phantom kind (the ``<kind>.present`` column of ``factors.parquet``)."""

DEVICES: tuple[str, ...] = tuple(DEVICE_KIND)
"""Device words, in the order of :data:`DEVICE_KIND`."""

SIDES: tuple[str, ...] = ("left", "right", "bilateral")
"""Patient sides (not image sides: the patient's right is on the image's left of a PA film)."""

LATERAL_FINDINGS: tuple[str, ...] = (
    "Lung Opacity",
    "Lung Lesion",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
)
"""Findings that have a side (cardiomegaly, enlarged cardiomediastinum and edema do not)."""

LATERAL_DEVICES: tuple[str, ...] = ("central line", "pacemaker", "chest tube")
"""Devices whose side (of insertion / of the generator) is a question one can ask."""

SEVERITIES: tuple[str, ...] = ("small", "moderate", "large")

SEVERITY_FINDINGS: tuple[str, ...] = (
    "Cardiomegaly",
    "Enlarged Cardiomediastinum",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
)
"""Findings whose size / severity a report grades (a nodule's size in cm and a fracture are left out)."""
