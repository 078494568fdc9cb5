"""The image model of question answering: heads fit on planted features find what was planted, are calibrated,
point at where it was drawn, and the answers / report checks built on them say what the image shows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrlens.align.search import facts_from_labels
from cxrlens.qa.answer import CANNOT, answer_question
from cxrlens.qa.check import check_report, render_check_html, render_check_text
from cxrlens.qa.heads import expected_calibration_error, fit_head, image_features, region_masks
from cxrlens.qa.model import FindingEvidence, ImageFindings, QAModel, QATrainConfig, fit_heads, head_targets
from cxrlens.qa.questions import parse_question
from tests.qa.planted import GRID, planted


@pytest.fixture(scope="module")
def fitted():
    data = planted()
    targets = head_targets(data.facts, data.ids, "rendered")
    heads, table = fit_heads(data.X, targets, data.split, QATrainConfig("x", min_train=8))
    model = QAModel(heads, {"grid": list(GRID)})
    return data, model, table


def test_image_features_are_pooled_mean_and_quadrant_means():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(3, 16, 5)).astype(np.float32)
    cls = rng.normal(size=(3, 5)).astype(np.float32)
    X = image_features(cls, P, (4, 4))
    assert X.shape == (3, 30)
    np.testing.assert_allclose(X[:, :5], cls)
    np.testing.assert_allclose(X[:, 5:10], P.mean(1), rtol=1e-6)
    masks = region_masks((4, 4))
    assert masks.shape == (5, 16) and masks[1:].sum(0).tolist() == [1] * 16  # quadrants tile the grid
    np.testing.assert_allclose(X[:, 10:15], P[:, masks[1]].mean(1), rtol=1e-6)


def test_heads_find_the_planted_findings_sides_and_severities(fitted):
    _, _, table = fitted
    t = table.set_index("head")
    for name in ("presence/Pleural Effusion", "presence/Pneumothorax", "device/pacemaker"):
        assert t.at[name, "test_auc"] > 0.97, name
    for name in ("side/Pleural Effusion", "side/Pneumothorax", "device_side/pacemaker"):
        assert t.at[name, "test_accuracy"] > 0.85 > t.at[name, "test_majority"] + 0.2, name
    assert t.at["severity/Pleural Effusion", "test_accuracy"] > t.at["severity/Pleural Effusion", "test_majority"]
    # devices only when the truth has them; no side head for a finding with no side truth
    assert "presence/Cardiomegaly" not in t.index


def test_calibrated_probabilities_are_calibrated_on_held_out_rows(fitted):
    data, model, _ = fitted
    te = data.split == "test"
    y = np.isin(data.ids[te], data.facts.loc[data.facts.finding == "Pleural Effusion", "image_id"])
    p = model.heads["presence/Pleural Effusion"].proba(data.X[te])
    assert expected_calibration_error(np.where(p >= 0.5, p, 1 - p), (p >= 0.5) == y) < 0.08


def test_a_head_with_too_few_training_rows_is_not_fitted_and_says_why():
    data = planted(n=300)
    targets = head_targets(data.facts, data.ids, "rendered")
    _, table = fit_heads(data.X, targets, data.split, QATrainConfig("x", min_train=60))
    row = table.set_index("head").loc["side/Pneumothorax"]
    assert not row["fitted"] and "< 60" in row["reason"]


def test_fit_head_refuses_a_class_without_rows():
    X = np.zeros((4, 3))
    with pytest.raises(Exception, match="no training rows for class"):
        fit_head("h", ("no", "yes"), X, np.array([0, 0, 0, 0]), X, np.array([0, 1, 0, 1]))


def test_token_maps_are_an_exact_split_of_the_logit_and_point_where_the_finding_was_drawn(fitted):
    data, model, _ = fitted
    head = model.heads["presence/Pleural Effusion"]
    te = np.nonzero(data.split == "test")[0]
    k = te[0]
    m = head.token_map(data.P[k], GRID)
    D = data.P.shape[2]
    const = ((data.X[k, :D] - head.mean_F[:D]) / head.scale_F[:D]) @ head.coef_KF[0, :D]
    const += head.intercept_K[0] - (head.mean_F[D:] / head.scale_F[D:]) @ head.coef_KF[0, D:]
    np.testing.assert_allclose(m.sum() + const, head.logits(data.X[k : k + 1])[0, 0], rtol=1e-5, atol=1e-5)
    base = data.P[data.split == "train"].mean(0)
    swapped = image_features(data.X[k : k + 1, :D], base[None], GRID)
    np.testing.assert_allclose(
        head.token_map(data.P[k], GRID, base).sum(),
        head.logits(data.X[k : k + 1])[0, 0] - head.logits(swapped)[0, 0],
        rtol=1e-5,
        atol=1e-5,
    )
    hits = [
        data.quadrant[(i, "Pleural Effusion")][np.argmax(head.token_map(data.P[j], GRID, base))]
        for j, i in zip(te, data.ids[te], strict=True)
        if (i, "Pleural Effusion") in data.quadrant
    ]
    assert len(hits) > 30 and np.mean(hits) > 0.9


# ------------------------------------------------------------------------------------------------------- answers
def _findings(**present) -> ImageFindings:
    """Hand-made model output: ``name=(P, side dist or None, severity dist or None)``; threshold 0.3."""
    ev = {}
    for key, (p, side, sev) in present.items():
        name = key.replace("_", " ")
        ev[name] = FindingEvidence(name, p, 0.3, side, sev, np.linspace(-1, 1, 16), 0.9)
    findings = {k: v for k, v in ev.items() if k[0].isupper()}
    devices = {k: v for k, v in ev.items() if not k[0].isupper()}
    return ImageFindings(findings, devices, FindingEvidence("normal", 0.05, 0.5), GRID, "img.png")


LEFT = {"left": 0.8, "right": 0.1, "bilateral": 0.1}
F = _findings(
    Pleural_Effusion=(0.9, LEFT, {"small": 0.7, "moderate": 0.2, "large": 0.1}),
    Pneumothorax=(0.05, {"left": 0.5, "right": 0.4, "bilateral": 0.1}, None),
    Cardiomegaly=(0.1, None, {"small": 0.4, "moderate": 0.3, "large": 0.3}),
    Support_Devices=(0.8, None, None),
    Atelectasis=(0.35, LEFT, None),
    pacemaker=(0.85, {"left": 0.1, "right": 0.9}, None),
)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("is there a pleural effusion?", "yes"),
        ("is there atelectasis?", "possible"),
        ("any ptx?", "no"),
        ("is there a left pleural effusion?", "yes"),
        ("is there a right pleural effusion?", "no"),
        ("is there a large effusion?", "no"),
        ("which side is the effusion?", "left"),
        ("how big is the effusion?", "small"),
        ("is the heart size normal?", "yes"),
        ("is there a pacemaker?", "yes"),
        ("which side is the pacemaker on?", "right"),
        ("any lines or tubes?", "yes"),
        ("what are the findings?", "Pleural Effusion; Support Devices"),
        ("is this chest x-ray normal?", "no"),
    ],
)
def test_answers_follow_the_image_model(question, answer):
    a = answer_question(parse_question(question), F)
    assert a.answer == answer, (a, parse_question(question))
    assert a.confidence is not None and 0 <= a.confidence <= 1
    assert a.evidence and all("probability" in e and "threshold" in e for e in a.evidence)


def test_confidence_is_the_calibrated_probability_of_the_answer():
    assert answer_question(parse_question("is there a pleural effusion?"), F).confidence == pytest.approx(0.9)
    assert answer_question(parse_question("any pneumothorax?"), F).confidence == pytest.approx(0.95)
    assert answer_question(parse_question("which side is the effusion?"), F).confidence == pytest.approx(0.8)


@pytest.mark.parametrize(
    "question",
    [
        "has the effusion improved since the last study?",
        "why was this study ordered?",
        "is there a hiatal hernia?",
        "should we place a chest tube?",
        "",
        "asdf qwer",
    ],
)
def test_unsupported_questions_never_get_a_confident_answer(question):
    a = answer_question(parse_question(question), F)
    assert a.answer == CANNOT and a.confidence is None and not a.answered and a.text


def test_a_finding_or_device_without_a_head_is_not_answered():
    for q in ("is there a chest tube?", "is there a rib fracture?", "which side is the central line?"):
        a = answer_question(parse_question(q), F)
        assert a.answer == CANNOT and a.confidence is None, q


def test_side_of_a_finding_the_model_does_not_call_present_says_so():
    a = answer_question(parse_question("which side is the pneumothorax?"), F)
    assert a.answer == "left" and "not called present" in a.text


# --------------------------------------------------------------------------------------------------- report check
def test_check_report_flags_each_sentence_with_evidence():
    report = (
        "FINDINGS: There is a right pleural effusion. No pneumothorax. The heart is enlarged. "
        "Possible pneumonia. Left-sided pacemaker. Degenerative changes of the spine."
    )
    f = _findings(
        Pleural_Effusion=(0.9, LEFT, None),
        Pneumothorax=(0.02, None, None),
        Cardiomegaly=(0.1, None, None),
        Pneumonia=(0.2, None, None),
        Edema=(0.95, None, None),
        pacemaker=(0.9, {"left": 0.9, "right": 0.1}, None),
    )
    check = check_report(report, f)
    by_text = {s.text: s for s in check.sentences}
    effusion = by_text["There is a right pleural effusion."]
    assert effusion.flag == "contradicted" and effusion.claims[0].problem == "side"
    assert by_text["No pneumothorax."].flag == "supported"
    heart = by_text["The heart is enlarged."]
    assert heart.flag == "contradicted" and heart.claims[0].problem == "absent"
    assert by_text["Possible pneumonia."].flag == "unverifiable"
    assert by_text["Left-sided pacemaker."].flag == "supported"
    assert by_text["Degenerative changes of the spine."].flag == "unverifiable"
    assert [m["name"] for m in check.missed] == ["Edema"]
    for s in check.sentences:
        for c in s.claims:
            if c.flag != "unverifiable":
                assert c.evidence and c.note and np.isfinite(c.score), c
    assert check.score("side") > 0 and check.score("missed") > 0
    doc = check.to_json()
    json.dumps(doc)
    assert doc["counts"] == {"supported": 2, "contradicted": 2, "unverifiable": 2, "missed": 1}
    assert "CONTRADICTED" in render_check_text(check) and "<table>" in render_check_html(check)


def test_a_flagged_finding_below_even_odds_is_a_hedged_answer_and_no_verdict_on_a_denial():
    a = answer_question(parse_question("is there atelectasis?"), F)
    assert a.answer == "possible" and a.confidence == pytest.approx(0.35) and "less likely than not" in a.text
    check = check_report("No atelectasis.", _findings(Atelectasis=(0.35, None, None)))
    assert check.sentences[0].flag == "unverifiable" and check.score("present") < 0
    assert check_report("No atelectasis.", _findings(Atelectasis=(0.6, None, None))).sentences[0].flag == "contradicted"


def test_a_negated_finding_that_is_present_is_contradicted_but_not_a_negated_grade_it_does_not_reach():
    f = _findings(Pleural_Effusion=(0.9, LEFT, {"small": 0.8, "moderate": 0.15, "large": 0.05}))
    assert check_report("No pleural effusion.", f).sentences[0].flag == "contradicted"
    assert check_report("No large pleural effusion.", f).sentences[0].flag == "supported"
    assert check_report("No right pleural effusion.", f).sentences[0].flag == "supported"


def test_without_rendered_truth_only_presence_and_normal_heads_are_built():
    """A dataset with CheXpert labels but no phantom factors: presence from labels (uncertain left out), no side,
    severity or device heads (there is no truth for them)."""
    studies = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "Pleural Effusion": [1.0, 0.0, -1.0, np.nan],
            "Cardiomegaly": [np.nan, 1.0, np.nan, np.nan],
        }
    )
    targets = head_targets(
        facts_from_labels(studies, ["Pleural Effusion", "Cardiomegaly"]), ["a", "b", "c", "d"], "labels"
    )
    assert set(targets) == {"presence/Pleural Effusion", "presence/Cardiomegaly", "normal"}
    assert targets["presence/Pleural Effusion"][1].tolist() == [1, 0, -1, 0]
    assert targets["normal"][1].tolist() == [0, 0, -1, 1]
