"""Which studies the showcase page and summary.md show."""

from __future__ import annotations

import pandas as pd

from cxrlens.report.compile import NORMAL_IMPRESSION
from cxrlens.report.showcase import pick_studies


def _row(i: int, impression: str | None) -> dict:
    imp = [] if impression is None else [{"text": impression, "evidence": [{"feature": 1}]}]
    return {"image_id": f"i{i}", "generated_text": "" if impression is None else "x", "report": {"impression": imp}}


def test_pick_studies_prefers_reports_that_state_a_finding() -> None:
    rows = [_row(0, None), _row(1, NORMAL_IMPRESSION), _row(2, "Cardiomegaly."), _row(3, NORMAL_IMPRESSION)]
    rows += [_row(4, "Small left pleural effusion.")]
    df = pd.DataFrame(rows)
    picked = pick_studies(df, 3, seed=1)["image_id"].tolist()
    assert set(picked[:2]) == {"i2", "i4"} and picked[2] in {"i1", "i3"}  # findings first, then normal, never empty
    assert pick_studies(df, 3, seed=1)["image_id"].tolist() == picked  # seeded
