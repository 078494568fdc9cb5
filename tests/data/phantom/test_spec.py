"""Specs: validation and the flat factors row round-trip."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from cxrlens.data.phantom import KINDS, FindingSpec, ImageSpec
from cxrlens.data.phantom.datasets import sample_specs


def test_factors_row_round_trips_through_parquet(tmp_path):
    specs, _ = sample_specs(40, seed=5, p_present=0.4)
    specs.append(
        ImageSpec(findings=(FindingSpec("edema", "bilateral", severity=0.3, intensity=0.5, uncertain=True),), ctr=0.41)
    )
    df = pd.DataFrame([s.to_row() for s in specs])
    df.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    for spec, row in zip(specs, back.to_dict("records"), strict=True):
        assert ImageSpec.from_row(row) == spec
    assert {f"{k}.present" for k in KINDS} <= set(df.columns)


def test_findings_are_validated_and_kept_in_kind_order():
    with pytest.raises(ValueError, match="side"):
        FindingSpec("pleural_effusion", "none")
    with pytest.raises(ValueError, match="zone"):
        FindingSpec("cardiomegaly", zone="upper")
    with pytest.raises(ValueError, match="severity"):
        FindingSpec("lung_lesion", "left", "upper", severity=1.5)
    with pytest.raises(ValueError, match="one finding per kind"):
        ImageSpec(findings=(FindingSpec("ett"), FindingSpec("ett")))
    spec = ImageSpec(findings=(FindingSpec("ett"), FindingSpec("cardiomegaly")))
    assert [f.kind for f in spec.findings] == ["cardiomegaly", "ett"]


def test_labels_of_a_spec():
    spec = ImageSpec(
        findings=(
            FindingSpec("ett"),
            FindingSpec("pacemaker", "left", uncertain=True, intensity=0.5),
            FindingSpec("pneumonia", "right", "lower", uncertain=True, intensity=0.5),
        )
    )
    lab = spec.labels
    assert lab["Support Devices"] == 1.0 and lab["Pneumonia"] == -1.0 and lab["No Finding"] == 0.0
    assert lab["Pleural Effusion"] == 0.0
    assert ImageSpec().labels["No Finding"] == 1.0
    assert dataclasses.replace(spec, findings=()).labels["Support Devices"] == 0.0
