"""Phantom grounding on handmade factor rows and texts: hits, hallucinations, unrendered exclusions, side and zone."""

from __future__ import annotations

import pandas as pd
import pytest

from cxrlens.data.phantom.spec import FindingSpec, ImageSpec
from cxrlens.data.reports import parse_side, parse_zone
from cxrlens.evaluate.grounding import (
    GROUNDING_LABELS,
    excluded_labels,
    grounding_scores,
    rendered_labels,
)


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("Small right pleural effusion.", "right"),
        ("RT pleural effusion", "right"),
        ("left basilar atelectasis", "left"),
        ("Bilateral pleural effusions.", "bilateral"),
        ("Effusions in both lungs.", "bilateral"),
        ("Right and left pleural effusions.", "bilateral"),
        ("Opacities in the right upper lobe and left base.", "bilateral"),
        ("Bibasilar atelectasis.", "bilateral"),
        ("Pleural effusion.", "none"),
        ("Copyright notice.", "none"),  # whole words only
    ],
)
def test_parse_side(text: str, side: str) -> None:
    assert parse_side(text) == side


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("Right upper lobe consolidation.", "upper"),
        ("Apical scarring.", "upper"),
        ("Left base atelectasis.", "lower"),
        ("Bibasilar opacities.", "lower"),
        ("Retrocardiac opacity.", "lower"),
        ("Perihilar opacity.", "middle"),
        ("Lingular atelectasis.", "middle"),
        ("Right middle lobe pneumonia.", "middle"),
        ("Opacities in the upper and lower lobes.", "several"),
        ("Focal consolidation.", "none"),
        ("Lowering of the diaphragm.", "none"),  # whole words only
    ],
)
def test_parse_zone(text: str, zone: str) -> None:
    assert parse_zone(text) == zone


def _factors() -> pd.DataFrame:
    specs = [
        # 0: right effusion, left lower atelectasis
        ImageSpec(findings=(FindingSpec("pleural_effusion", "right"), FindingSpec("atelectasis", "left", "lower"))),
        # 1: two devices (→ Support Devices) on different sides, right upper consolidation
        ImageSpec(
            findings=(
                FindingSpec("pacemaker", "left"),
                FindingSpec("central_line", "right"),
                FindingSpec("consolidation", "right", "upper"),
            )
        ),
        # 2: nothing drawn; the report named a clavicle fracture the renderer cannot draw
        ImageSpec(),
        # 3: nothing drawn; an uncertain pneumothorax was recorded but omitted
        ImageSpec(),
    ]
    f = pd.DataFrame([s.to_row() for s in specs])
    f["unrendered"] = [[], ["Aorta/tortuous"], ["Fractures, Bone/clavicle/left"], []]
    f["uncertain_omitted"] = [[], [], [], ["pneumothorax"]]
    return f


TEXTS = [
    # 0: both right (effusion: right ✓; atelectasis: left ✓ lower ✓) + a hallucinated cardiomegaly mentioned twice
    "Right pleural effusion and left basilar atelectasis. Cardiomegaly. The heart is enlarged, cardiomegaly.",
    # 1: device side stated (right ∈ {left, right} ✓), consolidation with wrong side and no zone, a possible edema
    "Right central venous catheter. Left consolidation. Possible pulmonary edema.",
    # 2: fracture is excluded (unrendered), effusion is a hallucination
    "Left clavicle fracture. Small pleural effusion.",
    # 3: pneumothorax excluded (uncertain omitted); nothing else claimed
    "Pneumothorax. No pleural effusion.",
]


def test_rendered_and_excluded_labels() -> None:
    f = _factors()
    r = rendered_labels(f)
    assert list(r.columns) == list(GROUNDING_LABELS) and "No Finding" not in r.columns
    assert set(r.columns[r.iloc[0]]) == {"Pleural Effusion", "Atelectasis"}
    assert set(r.columns[r.iloc[1]]) == {"Support Devices", "Consolidation"}
    assert not r.iloc[2].any() and not r.iloc[3].any()
    e = excluded_labels(f)
    assert set(e.columns[e.iloc[2]]) == {"Fracture"}  # from the unrendered MeSH tag, via the labeler
    assert set(e.columns[e.iloc[3]]) == {"Pneumothorax"}  # from uncertain_omitted
    assert not e.iloc[0].any() and not e.iloc[1].any()  # "Aorta/tortuous" is no CheXpert label


def _summary(res, metric: str, variant: str) -> pd.Series:
    rows = res.summary[(res.summary.metric == metric) & (res.summary.variant == variant)]
    assert len(rows) == 1, (metric, variant)
    return rows.iloc[0]


def test_grounding_counts_hallucinations_and_excludes_unrendered() -> None:
    res = grounding_scores(TEXTS, _factors(), uncertain="positive")
    pr = res.per_report
    assert [set(x) for x in pr["hallucinated"]] == [{"Cardiomegaly"}, {"Edema"}, {"Pleural Effusion"}, set()]
    assert [set(x) for x in pr["excluded_claims"]] == [set(), set(), {"Fracture"}, {"Pneumothorax"}]
    assert [set(x) for x in pr["missed"]] == [set(), set(), set(), set()]
    # claims: TP = effusion, atelectasis, devices, consolidation = 4; FP = cardiomegaly, edema, effusion = 3
    p = _summary(res, "grounding precision", "micro · 13 drawable labels · uncertain=positive")
    assert (p.numerator, p.denominator) == (4, 7)
    assert _summary(res, "grounding recall", "micro · 13 drawable labels · uncertain=positive").value == 1.0
    f1 = _summary(res, "grounding f1", "micro · 13 drawable labels · uncertain=positive")
    assert f1.value == pytest.approx(8 / 11)
    h = _summary(res, "hallucination rate", "per finding · uncertain=positive")
    assert (h.numerator, h.denominator) == (3, 7)
    # per mention: the cardiomegaly phrases count separately ("cardiomegaly" twice, "heart … enlarged" once), so
    # 3 + edema + effusion = 5 hallucinated of 9 claiming mentions (fracture and pneumothorax are excluded)
    m = _summary(res, "hallucination rate", "per mention · uncertain=positive")
    assert (m.numerator, m.denominator) == (5, 9)
    r = _summary(res, "hallucination rate", "per report · uncertain=positive")
    assert (r.numerator, r.denominator) == (3, 4)
    ex = _summary(res, "excluded claims", "claimed but unrendered · fraction of claims · uncertain=positive")
    assert ex.numerator == 2
    per = res.per_label.set_index("label")
    assert per.loc["Pleural Effusion", ["tp", "fp", "fn"]].tolist() == [1, 1, 0]
    assert per.loc["Fracture", ["tp", "fp", "excluded"]].tolist() == [0, 0, 1]


def test_uncertain_negative_variant_drops_hedged_claims() -> None:
    res = grounding_scores(TEXTS, _factors(), uncertain="negative")
    assert [set(x) for x in res.per_report["hallucinated"]] == [{"Cardiomegaly"}, set(), {"Pleural Effusion"}, set()]
    h = _summary(res, "hallucination rate", "per finding · uncertain=negative")
    assert (h.numerator, h.denominator) == (2, 6)
    assert res.summary["variant"].str.endswith("uncertain=negative").all()


def test_side_and_zone_accuracy_with_unstated_sides() -> None:
    res = grounding_scores(TEXTS, _factors())
    s = res.sentences.set_index("label")
    assert s.loc["Pleural Effusion", "scope"] == "Right pleural effusion"  # clause of a two-finding sentence
    assert (s.loc["Pleural Effusion", "side_result"], s.loc["Pleural Effusion", "zone_result"]) == (
        "correct",
        "not assessed",
    )
    assert (s.loc["Atelectasis", "side_result"], s.loc["Atelectasis", "zone_result"]) == ("correct", "correct")
    assert s.loc["Support Devices", "side_truth"] == "left|right"
    assert s.loc["Support Devices", "side_result"] == "correct"
    assert (s.loc["Consolidation", "side_result"], s.loc["Consolidation", "zone_result"]) == ("wrong", "not stated")
    side = _summary(res, "side accuracy", "sentences stating it · uncertain=positive")
    assert (side.numerator, side.denominator) == (3, 4)
    zone = _summary(res, "zone accuracy", "sentences stating it · uncertain=positive")
    assert (zone.numerator, zone.denominator) == (1, 1)
    nz = _summary(res, "no zone stated", "fraction of assessed sentences · uncertain=positive")
    assert (nz.numerator, nz.denominator) == (1, 2)
    # a sentence with no side word is counted apart, never as an error
    f = _factors().iloc[[0]]
    res2 = grounding_scores(["Pleural effusion."], f)
    ns = _summary(res2, "no side stated", "fraction of assessed sentences · uncertain=positive")
    assert (ns.numerator, ns.denominator) == (1, 1)
    assert _summary(res2, "side accuracy", "sentences stating it · uncertain=positive").denominator == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 texts but 4"):
        grounding_scores(["a", "b"], _factors())
    with pytest.raises(ValueError, match="uncertain"):
        grounding_scores(TEXTS, _factors(), uncertain="maybe")
