"""The labeler on phrasing it was not tuned on: the MIMIC-style gold set, and the rules fixed against it (issue 16).

``labeler_gold_mimic_style.csv`` (413 sentences, written before the rules were read; CheXpert conventions, see its
header and docs/labeler.md) is scored per label with uncertain counted as positive (U-Ones). Thresholds are the
measured F1 minus 0.03 — about one more error on the labels with 15–25 positives — so any regression shows:

* ``LabelerConfig.strict_chexpert()`` (the gold set's own conventions) on all rows, per label, and on the held-out
  third (every third row, not looked at while fixing) as macro-F1 and uncertain recall;
* the default configuration (the conventions of the IU X-ray MeSH tags and the first gold set), per label — its Lung
  Opacity is low by convention (no opacity hierarchy), not by error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.labeler import LabelerConfig, label_reports
from cxrlens.data.schema import CHEXPERT_LABELS

GOLD = Path(__file__).parent / "labeler_gold_mimic_style.csv"
CHILDREN = ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion")

# measured F1 (u=pos) on all 413 sentences minus 0.03 (docs/labeler.md has the measured table)
STRICT_F1_MIN = {
    "No Finding": 0.95,
    "Enlarged Cardiomediastinum": 0.97,
    "Cardiomegaly": 0.97,
    "Lung Opacity": 0.95,
    "Lung Lesion": 0.97,
    "Edema": 0.95,
    "Consolidation": 0.97,
    "Pneumonia": 0.95,
    "Atelectasis": 0.97,
    "Pneumothorax": 0.93,
    "Pleural Effusion": 0.94,
    "Pleural Other": 0.93,
    "Fracture": 0.94,
    "Support Devices": 0.96,
}
DEFAULT_F1_MIN = {
    "No Finding": 0.90,
    "Enlarged Cardiomediastinum": 0.72,
    "Cardiomegaly": 0.86,
    "Lung Opacity": 0.46,
    "Lung Lesion": 0.97,
    "Edema": 0.95,
    "Consolidation": 0.89,
    "Pneumonia": 0.95,
    "Atelectasis": 0.97,
    "Pneumothorax": 0.91,
    "Pleural Effusion": 0.93,
    "Pleural Other": 0.93,
    "Fracture": 0.94,
    "Support Devices": 0.96,
}
STRICT_UNCERTAIN_RECALL_MIN = 0.91  # measured 0.947 (151 gold -1)
DEFAULT_UNCERTAIN_RECALL_MIN = 0.56  # measured 0.596; before the fixes 0.576
HELDOUT_MACRO_F1_MIN = 0.95  # strict, u=pos, measured 0.980 (137 sentences; before the fixes 0.937)
HELDOUT_UNCERTAIN_RECALL_MIN = 0.90  # strict, measured 0.935 (46 gold -1; before the fixes 0.717)


@pytest.fixture(scope="module")
def gold() -> pd.DataFrame:
    return pd.read_csv(GOLD, comment="#")


@pytest.fixture(scope="module")
def strict(gold) -> pd.DataFrame:
    return label_reports(gold["text"].tolist(), LabelerConfig.strict_chexpert())


@pytest.fixture(scope="module")
def default(gold) -> pd.DataFrame:
    return label_reports(gold["text"].tolist())


def f1_upos(gold_values: np.ndarray, pred_values: np.ndarray) -> float:
    """F1 with uncertain counted as positive (U-Ones); not mentioned counts as negative."""
    g, p = np.isin(gold_values, (1, -1)), np.isin(pred_values, (1, -1))
    tp, fp, fn = (g & p).sum(), (~g & p).sum(), (g & ~p).sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def uncertain_recall(gold: pd.DataFrame, pred: pd.DataFrame) -> float:
    g = gold[list(CHEXPERT_LABELS)].to_numpy(float)
    p = pred[list(CHEXPERT_LABELS)].to_numpy(float)
    return float((p[g == -1] == -1).mean())


def one(text: str, name: str, config: LabelerConfig | None = None) -> float:
    return float(label_reports([text], config)[name].iloc[0])


# ------------------------------------------------------------------------------------------------- the gold set
def test_gold_set_shape_and_conventions(gold) -> None:
    assert len(gold) >= 300
    assert list(gold.columns) == ["id", "split", "category", "text", *CHEXPERT_LABELS]
    assert gold["id"].is_unique and gold["text"].is_unique
    assert (gold["split"] == np.where(np.arange(len(gold)) % 3 == 2, "heldout", "dev")).all()
    vals = gold[list(CHEXPERT_LABELS)].to_numpy(float)
    assert np.isin(vals[~np.isnan(vals)], (1, 0, -1)).all()
    # No Finding is 1 or blank, and never 1 beside a positive/uncertain finding other than Support Devices
    nf = gold["No Finding"].to_numpy(float)
    assert np.isin(nf[~np.isnan(nf)], (1,)).all()
    findings = gold[[c for c in CHEXPERT_LABELS if c not in ("No Finding", "Support Devices")]].to_numpy(float)
    assert not (np.isin(findings, (1, -1)).any(axis=1) & (nf == 1)).any()
    # the opacity hierarchy: a positive child makes Lung Opacity positive, an uncertain one at least uncertain
    lo = gold["Lung Opacity"].to_numpy(float)
    for child in CHILDREN:
        c = gold[child].to_numpy(float)
        assert (lo[c == 1] == 1).all(), child
        assert np.isin(lo[c == -1], (1, -1)).all(), child
    # every category of the brief is there, and every label has uncertain examples except Support Devices
    assert {"hedge", "device", "comparison", "hierarchy", "negation", "normal", "mixed", "cardiomediastinal",
            "fracture", "pleural_other"} <= set(gold["category"])  # fmt: skip
    for name in CHEXPERT_LABELS[1:-1]:
        assert (gold[name] == -1).any(), name


@pytest.mark.parametrize("name", CHEXPERT_LABELS)
def test_strict_per_label_f1(gold, strict, name: str) -> None:
    f1 = f1_upos(gold[name].to_numpy(float), strict[name].to_numpy(float))
    assert f1 >= STRICT_F1_MIN[name], f"{name}: F1 {f1:.3f} < {STRICT_F1_MIN[name]}"


@pytest.mark.parametrize("name", CHEXPERT_LABELS)
def test_default_per_label_f1(gold, default, name: str) -> None:
    f1 = f1_upos(gold[name].to_numpy(float), default[name].to_numpy(float))
    assert f1 >= DEFAULT_F1_MIN[name], f"{name}: F1 {f1:.3f} < {DEFAULT_F1_MIN[name]}"


def test_uncertain_recall(gold, strict, default) -> None:
    assert uncertain_recall(gold, strict) >= STRICT_UNCERTAIN_RECALL_MIN
    assert uncertain_recall(gold, default) >= DEFAULT_UNCERTAIN_RECALL_MIN


def test_heldout_third(gold, strict) -> None:
    held = (gold["split"] == "heldout").to_numpy()
    g, p = gold[held], strict[held]
    f1s = [f1_upos(g[n].to_numpy(float), p[n].to_numpy(float)) for n in CHEXPERT_LABELS if np.isin(g[n], (1, -1)).any()]
    assert float(np.mean(f1s)) >= HELDOUT_MACRO_F1_MIN
    assert uncertain_recall(g, p) >= HELDOUT_UNCERTAIN_RECALL_MIN


# --------------------------------------------------------------------------------------- the rules fixed (default)
@pytest.mark.parametrize(
    "text",
    [
        "Transvenous pacing wire terminates in the right ventricle.",
        "Prosthetic aortic valve is noted.",
        "Right IJ Cordis sheath terminates in the brachiocephalic vein.",
        "Left humeral arthroplasty is noted.",
        "A single sternal wire is fractured.",
    ],
)
def test_device_phrases(text: str) -> None:
    assert one(text, "Support Devices") == 1


def test_withdrawn_tube_is_still_there_removed_is_gone() -> None:
    assert one("The ET tube tip is 2 cm above the carina and could be withdrawn by 2 cm.", "Support Devices") == 1
    assert one("The ET tube has been withdrawn and now ends 4 cm above the carina.", "Support Devices") == 1
    assert one("The nasogastric tube has been removed.", "Support Devices") == 0


def test_hedged_position_is_not_a_hedged_device() -> None:
    assert one("Possible malposition of the enteric tube in the right mainstem bronchus.", "Support Devices") == 1
    assert one("Possible pacemaker leads projecting over the heart.", "Support Devices") == -1  # the device is hedged


def test_negation_stops_at_after_following_status_post() -> None:
    out = label_reports(["No evidence of pneumothorax after right IJ line placement."]).iloc[0]
    assert out["Pneumothorax"] == 0 and out["Support Devices"] == 1
    out = label_reports(["No pneumothorax status post chest tube placement."]).iloc[0]
    assert out["Pneumothorax"] == 0 and out["Support Devices"] == 1
    assert one("No pneumothorax following removal of the chest tube.", "Support Devices") == 0


def test_clearing_of_and_no_apparent_negate() -> None:
    assert one("Interval clearing of the right lower lobe opacity.", "Lung Opacity") == 0
    assert one("No apparent pleural effusion.", "Pleural Effusion") == 0


def test_correlation_for_is_a_hedge() -> None:
    assert one("Clinical correlation for pneumonia is recommended.", "Pneumonia") == -1
    assert one("Opacity in the right lower lobe may be infectious in etiology.", "Pneumonia") == -1


def test_versus_reaches_three_tokens_but_not_across_a_comma() -> None:
    assert one("Possible pleural thickening versus a small effusion at the right base.", "Pleural Effusion") == -1
    out = label_reports(["Left basilar opacity, atelectasis versus consolidation."]).iloc[0]
    assert out["Lung Opacity"] == 1 and out["Atelectasis"] == -1 and out["Consolidation"] == -1


def test_forward_hedge_ends_at_comma_and_or_with() -> None:
    out = label_reports(["Left basilar opacity, possibly atelectasis, and a tiny left effusion."]).iloc[0]
    assert out["Atelectasis"] == -1 and out["Pleural Effusion"] == 1
    out = label_reports(["New consolidation concerning for pneumonia, with a small effusion."]).iloc[0]
    assert out["Pneumonia"] == -1 and out["Pleural Effusion"] == 1
    # a list inside the hedge stays hedged
    out = label_reports(["Possible small effusion, atelectasis, or pneumonia."]).iloc[0]
    assert out["Pleural Effusion"] == out["Atelectasis"] == out["Pneumonia"] == -1


def test_cardiomediastinal_alone_is_an_anatomy_word() -> None:
    assert one("Cardiomediastinal and hilar contours are within normal limits.", "Enlarged Cardiomediastinum") == 0
    assert np.isnan(one("Cardiomediastinal and hilar contours are unchanged.", "Enlarged Cardiomediastinum"))


# ------------------------------------------------------------------------------- the CheXpert switches (strict)
def test_strict_chexpert_sets_the_switches_and_keeps_overrides() -> None:
    c = LabelerConfig.strict_chexpert(opacity_hierarchy=False, sections=False)
    assert c.congestion_uncertain and c.no_new_uncertain and c.unchanged_size_uncertain
    assert not c.opacity_hierarchy and not c.sections
    d = LabelerConfig()
    assert not (d.congestion_uncertain or d.no_new_uncertain or d.unchanged_size_uncertain or d.opacity_hierarchy)


def test_congestion_switch() -> None:
    text = "Mild pulmonary vascular congestion."
    assert one(text, "Edema") == 1
    assert one(text, "Edema", LabelerConfig(congestion_uncertain=True)) == -1
    assert one("Moderate pulmonary edema.", "Edema", LabelerConfig(congestion_uncertain=True)) == 1
    assert one("No vascular congestion.", "Edema", LabelerConfig(congestion_uncertain=True)) == 0


def test_no_new_switch() -> None:
    cfg = LabelerConfig(no_new_uncertain=True)
    assert one("No new focal consolidation.", "Consolidation") == 0
    assert one("No new focal consolidation.", "Consolidation", cfg) == -1
    out = label_reports(["No new pleural effusion or pneumothorax."], cfg).iloc[0]
    assert out["Pleural Effusion"] == out["Pneumothorax"] == -1 and np.isnan(out["No Finding"])
    assert one("No pleural effusion.", "Pleural Effusion", cfg) == 0


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("Cardiomediastinal silhouette is unchanged.", "Enlarged Cardiomediastinum", -1),
        ("Heart size is stable.", "Cardiomegaly", -1),
        ("The heart size and mediastinal contours are similar to prior.", "Cardiomegaly", -1),
        ("Heart size is difficult to assess on this portable view.", "Cardiomegaly", -1),
        # a size word anywhere in the sentence keeps the rule out (here the clause reading finds none: unlabelled)
        ("Heart size and mediastinal contour are similar to prior and within normal limits.", "Cardiomegaly", None),
        ("Stable enlarged cardiomediastinal silhouette.", "Enlarged Cardiomediastinum", 1),
        ("Stable cardiomegaly.", "Cardiomegaly", 1),
    ],
)
def test_unchanged_size_switch(text: str, name: str, value: int | None) -> None:
    got = one(text, name, LabelerConfig(unchanged_size_uncertain=True))
    assert np.isnan(got) if value is None else got == value
    if value == -1:
        assert np.isnan(one(text, name))


def test_opacity_hierarchy_switch() -> None:
    cfg = LabelerConfig(opacity_hierarchy=True)
    assert np.isnan(one("Bibasilar atelectasis.", "Lung Opacity"))
    assert one("Bibasilar atelectasis.", "Lung Opacity", cfg) == 1
    assert one("Possible early pneumonia.", "Lung Opacity", cfg) == -1
    assert one("Right lower lobe opacity concerning for pneumonia.", "Lung Opacity", cfg) == 1
    assert np.isnan(one("No pneumonia or edema.", "Lung Opacity", cfg))  # a negated child says nothing
    assert one("No focal opacity. Mild pulmonary edema.", "Lung Opacity", cfg) == 1
