"""What a phantom image shows: frozen finding and image specifications, and their flat-row form.

A :class:`FindingSpec` is one drawable finding (``kind`` from :data:`KINDS`) with side, zone, severity and drawing
intensity. An :class:`ImageSpec` holds at most one finding per kind plus the anatomy and acquisition factors. The
five support devices are separate kinds (an image can carry several) that all map to the CheXpert label
``Support Devices``; every other kind maps to the CheXpert label of the same name (:data:`KIND_LABEL`).

:meth:`ImageSpec.to_row` flattens a spec to one ``factors.parquet`` row (``<kind>.present``, ``<kind>.side``,
``<kind>.zone``, ``<kind>.severity``, ``<kind>.intensity``, ``<kind>.uncertain`` for every kind, plus the image
factors); :meth:`ImageSpec.from_row` inverts it exactly (extra columns are ignored).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from cxrlens.data.schema import CHEXPERT_LABELS

__all__ = [
    "DEVICE_KINDS",
    "IMAGE_FACTORS",
    "KINDS",
    "KIND_LABEL",
    "LABEL_CHANNELS",
    "SIDES",
    "ZONES",
    "FindingSpec",
    "ImageSpec",
]

SIDES = ("right", "left", "bilateral", "none")
ZONES = ("upper", "middle", "lower", "none")

# kind → (CheXpert label, allowed sides, zoned)
_KIND_TABLE: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "cardiomegaly": ("Cardiomegaly", ("none",), False),
    "enlarged_cardiomediastinum": ("Enlarged Cardiomediastinum", ("none",), False),
    "pleural_effusion": ("Pleural Effusion", ("right", "left", "bilateral"), False),
    "pneumothorax": ("Pneumothorax", ("right", "left", "bilateral"), False),
    "consolidation": ("Consolidation", ("right", "left", "bilateral"), True),
    "pneumonia": ("Pneumonia", ("right", "left", "bilateral"), True),
    "atelectasis": ("Atelectasis", ("right", "left", "bilateral"), True),
    "edema": ("Edema", ("bilateral",), False),
    "lung_lesion": ("Lung Lesion", ("right", "left", "bilateral"), True),
    "lung_opacity": ("Lung Opacity", ("right", "left", "bilateral"), True),
    "pleural_other": ("Pleural Other", ("right", "left", "bilateral"), True),
    "fracture": ("Fracture", ("right", "left", "bilateral"), True),
    "ett": ("Support Devices", ("none",), False),
    "enteric_tube": ("Support Devices", ("none",), False),
    "central_line": ("Support Devices", ("right", "left"), False),
    "pacemaker": ("Support Devices", ("left", "right"), False),
    "chest_tube": ("Support Devices", ("right", "left"), False),
}
KINDS: tuple[str, ...] = tuple(_KIND_TABLE)
KIND_LABEL: dict[str, str] = {k: v[0] for k, v in _KIND_TABLE.items()}
KIND_SIDES: dict[str, tuple[str, ...]] = {k: v[1] for k, v in _KIND_TABLE.items()}
KIND_ZONED: dict[str, bool] = {k: v[2] for k, v in _KIND_TABLE.items()}
DEVICE_KINDS: tuple[str, ...] = ("ett", "enteric_tube", "central_line", "pacemaker", "chest_tube")
# one mask channel per drawable CheXpert label (No Finding has no mask), in CheXpert order
LABEL_CHANNELS: tuple[str, ...] = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")


@dataclasses.dataclass(frozen=True)
class FindingSpec:
    """One finding to draw.

    Attributes:
        kind: one of :data:`KINDS`.
        side: ``right`` | ``left`` | ``bilateral`` | ``none`` (patient side; must be allowed for the kind).
        zone: ``upper`` | ``middle`` | ``lower`` | ``none`` (lung thirds; ``none`` for kinds without a zone).
        severity: in [0, 1]; what it scales is per kind (effusion height, nodule → mass size, CTR, displacement …).
        intensity: drawing strength in [0, 1]; 1 = as severe as stated, < 1 = drawn faint (uncertain mentions).
        uncertain: the source called it possible/cannot exclude (recorded; drawing policy sets ``intensity``).
    """

    kind: str
    side: str = "none"
    zone: str = "none"
    severity: float = 0.5
    intensity: float = 1.0
    uncertain: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KIND_TABLE:
            raise ValueError(f"unknown finding kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.side not in KIND_SIDES[self.kind]:
            raise ValueError(f"{self.kind}: side {self.side!r} not in {KIND_SIDES[self.kind]}")
        if self.zone not in ZONES or (self.zone != "none" and not KIND_ZONED[self.kind]):
            raise ValueError(f"{self.kind}: zone {self.zone!r} not allowed")
        for name in ("severity", "intensity"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and math.isfinite(val) and 0.0 <= val <= 1.0):
                raise ValueError(f"{self.kind}: {name} must be in [0, 1], got {val!r}")

    @property
    def label(self) -> str:
        return KIND_LABEL[self.kind]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One phantom image: findings (at most one per kind, kept in :data:`KINDS` order) and image factors.

    Attributes:
        findings: the findings to draw; absence of a kind = that finding is absent (drawn normal).
        anatomy: index into the lung-mask atlas (taken modulo its size).
        view: ``PA`` or ``AP`` (AP magnifies the heart and mediastinum by ``AP_MAGNIFICATION``).
        ctr: cardiothoracic ratio of a normal heart (cardiomegaly overrides it from its severity).
        exposure: -1 (under-exposed, washed out) … 1 (over-exposed, dark lungs).
        contrast: gamma-like contrast, 0.8 … 1.25.
        noise: quantum noise level, 0 … 1. blur: Gaussian blur sigma in pixels at 224 px, 0 … 1.5.
        rotation: degrees (positive = counter-clockwise); scale: zoom factor; shift_u, shift_v: fraction of size.
        marker: side marker letter drawn at the patient-left upper corner: ``L``, ``R`` (mislabelled) or ``none``.
        markings: lung-marking texture variant (0 … 5).
    """

    findings: tuple[FindingSpec, ...] = ()
    anatomy: int = 0
    view: str = "PA"
    ctr: float = 0.45
    exposure: float = 0.0
    contrast: float = 1.0
    noise: float = 0.3
    blur: float = 0.5
    rotation: float = 0.0
    scale: float = 1.0
    shift_u: float = 0.0
    shift_v: float = 0.0
    marker: str = "L"
    markings: int = 0

    def __post_init__(self) -> None:
        kinds = [f.kind for f in self.findings]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"an ImageSpec holds at most one finding per kind, got {kinds}")
        ordered = tuple(sorted(self.findings, key=lambda f: KINDS.index(f.kind)))
        object.__setattr__(self, "findings", ordered)
        if self.view not in ("PA", "AP"):
            raise ValueError(f"view must be PA or AP, got {self.view!r}")
        if self.marker not in ("L", "R", "none"):
            raise ValueError(f"marker must be L, R or none, got {self.marker!r}")
        if not 0.3 <= self.ctr <= 0.75:
            raise ValueError(f"ctr must be in [0.3, 0.75], got {self.ctr}")

    def finding(self, kind: str) -> FindingSpec | None:
        return next((f for f in self.findings if f.kind == kind), None)

    @property
    def labels(self) -> dict[str, float]:
        """CheXpert labels of what is drawn: 1 drawn, -1 uncertain, 0 absent; ``No Finding`` = 1 iff nothing."""
        out = {lab: 0.0 for lab in LABEL_CHANNELS}
        for f in self.findings:
            if not f.uncertain:
                out[f.label] = 1.0
            elif out[f.label] == 0.0:
                out[f.label] = -1.0
        out["No Finding"] = 0.0 if self.findings else 1.0
        return out

    def to_row(self) -> dict[str, Any]:
        """Flat dict for ``factors.parquet``: image factors + 6 columns per kind (absent kinds: present = 0)."""
        row: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "findings"}
        for kind in KINDS:
            f = self.finding(kind)
            row[f"{kind}.present"] = int(f is not None)
            row[f"{kind}.side"] = f.side if f else "none"
            row[f"{kind}.zone"] = f.zone if f else "none"
            row[f"{kind}.severity"] = float(f.severity) if f else 0.0
            row[f"{kind}.intensity"] = float(f.intensity) if f else 0.0
            row[f"{kind}.uncertain"] = bool(f.uncertain) if f else False
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ImageSpec:
        """Inverse of :meth:`to_row` (numpy scalars accepted; unknown columns ignored)."""
        findings = []
        for kind in KINDS:
            if int(row.get(f"{kind}.present", 0)):
                findings.append(
                    FindingSpec(
                        kind=kind,
                        side=str(row[f"{kind}.side"]),
                        zone=str(row[f"{kind}.zone"]),
                        severity=float(row[f"{kind}.severity"]),
                        intensity=float(row[f"{kind}.intensity"]),
                        uncertain=bool(row[f"{kind}.uncertain"]),
                    )
                )
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "findings" or f.name not in row:
                continue
            default = getattr(cls, f.name)
            kwargs[f.name] = type(default)(row[f.name])
        return cls(findings=tuple(findings), **kwargs)


IMAGE_FACTORS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ImageSpec) if f.name != "findings")
