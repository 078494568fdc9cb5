"""Scoring question answering and report checking (:mod:`cxrlens.qa.evaluate`) and SAE feature evidence
(:mod:`cxrlens.qa.sae_evidence`).

Questions: heads fit on planted features answer a generated question set far better than the majority answer of a
*train* question set (skewed sets show which set the baseline comes from), with a CI over images. Report checks:
a perfect hand-made image model detects every perturbation it has the evidence for, a model that says the same thing
about every image scores chance, and the random baseline stays near 0.5 with the checker's own flag rate (
the AUC is claim-level, so an uninformed model scores 0.5 on inserted findings too; dropped devices are flagged).
Pointing: the heads' token maps point at the quadrant a finding was drawn in, far better than the weight-randomised
control and random maps. SAE evidence: a hand-made interpretation run's features for a finding, an answer and a check.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.phantom.render import encode_label_masks
from cxrlens.data.phantom.spec import LABEL_CHANNELS
from cxrlens.qa.answer import CANNOT, answer_question
from cxrlens.qa.check import check_report
from cxrlens.qa.evaluate import (
    PROBLEM_OF,
    answer_table,
    findings_by_image,
    majority_answers,
    qa_pointing,
    question_scores,
    report_check_scores,
    report_check_table,
    truth_by_image,
)
from cxrlens.qa.model import FindingEvidence, ImageFindings, QAModel, QATrainConfig, fit_heads, head_targets
from cxrlens.qa.perturb import PERTURBATIONS
from cxrlens.qa.questions import parse_question
from cxrlens.qa.questionset import generate_questions
from cxrlens.qa.sae_evidence import SAEEvidence, with_answer_features, with_check_features
from cxrlens.qa.vocab import (
    DEVICES,
    FINDINGS,
    LATERAL_DEVICES,
    LATERAL_FINDINGS,
    SEVERITIES,
    SEVERITY_FINDINGS,
    SIDES,
)
from tests.qa.planted import GRID, planted

SD = "Support Devices"


@pytest.fixture(scope="module")
def fitted():
    """Planted data, heads fit on its train rows (token maps relative to the mean train image), test findings."""
    data = planted()
    targets = head_targets(data.facts, data.ids, "rendered")
    heads, _ = fit_heads(data.X, targets, data.split, QATrainConfig("x", min_train=8, Cs=(0.5,)))
    model = QAModel(heads, {"grid": list(GRID)}, patch_baseline=data.P[data.split == "train"].mean(0))
    te = data.split == "test"
    findings = findings_by_image(model, data.X[te], data.P[te], data.ids[te])
    return data, model, findings


@pytest.fixture(scope="module")
def question_sets(fitted):
    data, _, _ = fitted
    test = generate_questions(data.facts, data.ids[data.split == "test"], n=300, seed=0)
    train = generate_questions(data.facts, data.ids[data.split == "train"], n=300, seed=1)
    return test, train


# ----------------------------------------------------------------------------------------------------- questions
def test_findings_by_image_keys_every_row_by_its_image_id(fitted):
    data, _, findings = fitted
    te = data.ids[data.split == "test"]
    assert sorted(findings) == sorted(te)
    assert all(f.image == i for i, f in findings.items())
    assert {"Pleural Effusion", "Pneumothorax", SD} <= set(findings[te[0]].findings)
    assert set(findings[te[0]].devices) == {"pacemaker"}


def test_planted_heads_answer_far_above_the_majority_baseline_with_a_ci_over_images(fitted, question_sets):
    _, _, findings = fitted
    questions, train_q = question_sets
    answered = answer_table(questions, findings)
    assert len(answered) == len(questions)
    pd.testing.assert_frame_equal(answered[questions.columns], questions.reset_index(drop=True))
    assert answered["correct"].tolist() == (answered["predicted"] == answered["answer"]).tolist()
    # a question about a finding without a head is answered "cannot answer" and counted wrong, not left out
    cannot = answered["predicted"] == CANNOT
    assert cannot.any() and not answered.loc[cannot, "correct"].any()
    assert answered.loc[cannot, "confidence"].isna().all()

    scores = question_scores(answered, majority_answers(train_q), n_boot=300).set_index("kind")
    overall = scores.loc["overall"]
    assert overall["questions"] == len(questions)
    assert overall["images"] == questions["image_id"].nunique()
    assert overall["accuracy"] == pytest.approx(answered["correct"].mean())
    assert overall["accuracy"] > overall["majority_baseline"] + 0.2, scores
    # what the planted heads can see, they answer nearly always right; the baseline cannot
    for kind in ("laterality", "device_position", "findings"):
        assert scores.at[kind, "accuracy"] >= 0.9 > scores.at[kind, "majority_baseline"] + 0.3, kind
    assert (scores["ci_low"] <= scores["accuracy"] + 1e-12).all() and (
        scores["accuracy"] <= scores["ci_high"] + 1e-12
    ).all(), scores
    assert overall["ci_low"] < overall["accuracy"] < overall["ci_high"]
    assert overall["ci_high"] - overall["ci_low"] < 0.2
    assert (scores["parsed_as_asked"] == 1.0).all(), scores
    assert scores.at["overall", "answered"] == pytest.approx(1 - cannot.mean())
    assert scores.at["presence", "answered"] < 1.0
    assert scores.at["findings", "jaccard"] >= scores.at["findings", "accuracy"]
    assert math.isnan(scores.at["laterality", "jaccard"])


def test_the_majority_baseline_comes_from_the_train_question_set(fitted, question_sets):
    _, _, findings = fitted
    questions, train_q = question_sets
    # test presence questions mostly "no", train presence questions all "yes": the two majorities differ
    yes_test = questions.index[(questions["kind"] == "presence") & (questions["answer"] == "yes")]
    test = questions.drop(yes_test[3:]).reset_index(drop=True)
    train = train_q[~((train_q["kind"] == "presence") & (train_q["answer"] == "no"))]
    train = train[train["kind"] != "severity"]  # a kind the train set never asks: the baseline has no answer
    maj_train, maj_test = majority_answers(train), majority_answers(test)
    assert maj_train["presence"] == "yes" and maj_test["presence"] == "no"
    assert "severity" not in maj_train

    scores = question_scores(answer_table(test, findings), maj_train, n_boot=50).set_index("kind")
    presence = test[test["kind"] == "presence"]
    assert scores.at["presence", "majority_baseline"] == pytest.approx((presence["answer"] == "yes").mean())
    assert scores.at["presence", "majority_baseline"] < 0.2 < (presence["answer"] == "no").mean()
    assert scores.at["severity", "majority_baseline"] == 0.0
    expected = np.mean([maj_train.get(k, "") == a for k, a in zip(test["kind"], test["answer"], strict=True)])
    assert scores.at["overall", "majority_baseline"] == pytest.approx(expected)


def test_majority_answers_breaks_ties_alphabetically():
    q = pd.DataFrame(
        {
            "kind": ["presence"] * 4 + ["laterality"] * 5,
            "answer": ["yes", "no", "no", "yes", "right", "left", "right", "left", "bilateral"],
        }
    )
    assert majority_answers(q) == {"presence": "no", "laterality": "left"}


def test_the_ci_resamples_images_so_questions_of_one_image_move_together(fitted, question_sets):
    _, _, findings = fitted
    answered = answer_table(question_sets[0], findings)
    maj = majority_answers(question_sets[1])
    once = question_scores(answered, maj, n_boot=200, seed=3)
    # every question asked four times about the same image: no more evidence, the same interval
    four = question_scores(pd.concat([answered] * 4, ignore_index=True), maj, n_boot=200, seed=3)
    for col in ("accuracy", "ci_low", "ci_high", "majority_baseline", "images"):
        np.testing.assert_allclose(four[col].to_numpy(float), once[col].to_numpy(float), err_msg=col)
    assert (four["questions"] == 4 * once["questions"]).all()
    # had every copy counted as its own unit, the four copies would have narrowed the interval by about half
    rows = pd.concat([answered] * 4, ignore_index=True)
    as_units = question_scores(rows.assign(image_id=[f"q{i}" for i in range(len(rows))]), maj, n_boot=200, seed=3)
    width = (once["ci_high"] - once["ci_low"]).iloc[-1]
    assert (as_units["ci_high"] - as_units["ci_low"]).iloc[-1] < 0.7 * width


# -------------------------------------------------------------------------------------------------- report check
_SENTENCES = {
    "Pleural Effusion": "There is a {sev} {side} pleural effusion.",
    "Pneumothorax": "{Sev} {side} pneumothorax.",
    "Atelectasis": "{Sev} {side} basilar atelectasis.",
    "Consolidation": "There is {sev} consolidation in the {side} lower lobe.",
    "pacemaker": "{Side} chest wall pacemaker in place.",
}
_NEGATIONS = {
    "Pneumothorax": "No pneumothorax.",
    "Pleural Effusion": "No pleural effusion.",
    "Consolidation": "No focal consolidation.",
    "Cardiomegaly": "Heart size is normal.",
}
_WORD = {"small": "small", "moderate": "moderate", "large": "large"}
_GRADE = {"small": "mild", "moderate": "moderate", "large": "severe"}


def _reports(n: int, seed: int, *, devices: bool = True) -> tuple[dict[str, str], dict[str, dict[str, dict]]]:
    """``n`` truthful reports (1–3 positive findings with side and severity, some negations) and their truth in
    the ``present`` format of :func:`cxrlens.qa.perturb.perturb_report`."""
    rng = np.random.default_rng(seed)
    keys = [k for k in _SENTENCES if devices or k not in DEVICES]
    reports, truths = {}, {}
    for i in range(n):
        truth: dict[str, dict] = {}
        sentences = []
        for key in rng.choice(keys, size=int(rng.integers(1, 4)), replace=False):
            side = str(rng.choice(["left", "right"]))
            sev = None if key in DEVICES else str(rng.choice(SEVERITIES))
            truth[str(key)] = {"side": side, "severity": sev}
            if key in DEVICES:
                truth[SD] = {"side": side, "severity": None}
            word = (_WORD if key in ("Pleural Effusion", "Pneumothorax") else _GRADE).get(sev or "", "")
            sentences.append(_SENTENCES[key].format(side=side, Side=side.capitalize(), sev=word, Sev=word.capitalize()))
        sentences += [s for f, s in _NEGATIONS.items() if f not in truth and rng.random() < 0.5]
        rng.shuffle(sentences)
        reports[f"r{i:03d}"] = " ".join(sentences)
        truths[f"r{i:03d}"] = truth
    return reports, truths


def _peaked(classes: tuple[str, ...], top: str) -> dict[str, float]:
    return {c: 0.9 if c == top else 0.1 / (len(classes) - 1) for c in classes}


def _perfect(truth: dict[str, dict], image: str) -> ImageFindings:
    """What a perfect image model says: every finding and device with a head, P 0.95 / 0.02 (threshold 0.3), the
    true side and severity at 0.9."""
    findings, devices = {}, {}
    for name in FINDINGS:
        t = truth.get(name)
        side = _peaked(SIDES, t["side"]) if t and name in LATERAL_FINDINGS and t.get("side") else None
        sev = _peaked(SEVERITIES, t["severity"]) if t and name in SEVERITY_FINDINGS and t.get("severity") else None
        findings[name] = FindingEvidence(name, 0.95 if t else 0.02, 0.3, side, sev, None, 0.99)
    for name in DEVICES:
        t = truth.get(name)
        side = _peaked(SIDES[:2], t["side"]) if t and name in LATERAL_DEVICES else None
        devices[name] = FindingEvidence(name, 0.95 if t else 0.02, 0.3, side, None, None, 0.99)
    return ImageFindings(findings, devices, FindingEvidence("normal", 0.02, 0.5), GRID, image)


def _constant(p: float, image: str, *, distributions: bool) -> ImageFindings:
    """A model with no information: the same output for every image, P = ``p`` for everything (threshold 0.3),
    uniform side and severity distributions (or none)."""

    def uniform(classes):
        return {c: 1 / len(classes) for c in classes} if distributions else None

    findings = {
        n: FindingEvidence(
            n,
            p,
            0.3,
            uniform(SIDES) if n in LATERAL_FINDINGS else None,
            uniform(SEVERITIES) if n in SEVERITY_FINDINGS else None,
        )
        for n in FINDINGS
    }
    devices = {n: FindingEvidence(n, p, 0.3, uniform(SIDES[:2]) if n in LATERAL_DEVICES else None) for n in DEVICES}
    return ImageFindings(findings, devices, FindingEvidence("normal", 0.5, 0.5), GRID, image)


@pytest.fixture(scope="module")
def reports():
    return _reports(120, seed=0)


@pytest.fixture(scope="module")
def perfect_table(reports):
    texts, truths = reports
    return report_check_table(texts, truths, {i: _perfect(truths[i], i) for i in texts}, seed=0)


def test_the_untouched_reports_read_as_written(reports):
    texts, truths = reports
    for i in list(texts)[:30]:
        check = check_report(texts[i], _perfect(truths[i], i))
        assert check.counts()["contradicted"] == 0 and not check.missed, (texts[i], check.to_json())


def test_a_perfect_image_model_detects_inserted_findings_swapped_sides_and_changed_severities(reports, perfect_table):
    texts, _ = reports
    table = perfect_table
    assert set(table["perturbation"]) == set(PERTURBATIONS)
    assert set(table["image_id"]) == set(texts)
    counts = table["perturbation"].value_counts()
    # every report has a positive left/right claim that agrees with the truth and room for an absent finding
    assert counts["swap_laterality"] == counts["insert_finding"] == len(texts)
    assert counts["change_severity"] > len(texts) // 2
    scores = report_check_scores(table).set_index("perturbation")
    for kind in ("insert_finding", "swap_laterality", "change_severity"):
        row = scores.loc[kind]
        assert row["detected"] == row["clean"] == row["accuracy"] == 1.0, (kind, row)
        assert row["auc"] == 1.0, (kind, row)
        rows = table[table["perturbation"] == kind]
        assert (rows["score_perturbed"] > 0).all(), kind
        assert rows["scores_untouched"].map(lambda v: all(x <= 0 for _, x in v)).all(), kind
    assert table["clean"].all()


def test_a_perfect_image_model_detects_a_dropped_finding():
    texts, truths = _reports(60, seed=1, devices=False)
    table = report_check_table(texts, truths, {i: _perfect(truths[i], i) for i in texts}, seed=1)
    drop = table[table["perturbation"] == "drop_finding"]
    assert len(drop) > 40 and drop["detected"].all() and drop["clean"].all()
    assert (drop["score_perturbed"] > 0).all()
    assert drop["scores_untouched"].map(lambda v: all(x <= 0 for _, x in v)).all()


def test_a_perfect_image_model_detects_a_dropped_device(perfect_table):
    drop = perfect_table[(perfect_table["perturbation"] == "drop_finding") & perfect_table["finding"].isin(DEVICES)]
    assert len(drop) > 10
    assert drop["detected"].all()


@pytest.mark.parametrize(
    ("p", "distributions", "devices"),
    [(0.1, False, True), (0.1, True, True), (0.3, False, True), (0.3, True, True), (0.6, False, False)],
    ids=["called-absent", "called-absent-uniform", "at-threshold", "at-threshold-uniform", "called-present"],
)
def test_an_image_model_without_information_scores_chance(p, distributions, devices):
    texts, truths = _reports(40, seed=2, devices=devices)
    table = report_check_table(texts, truths, {i: _constant(p, i, distributions=distributions) for i in texts})
    scores = report_check_scores(table).set_index("perturbation")
    assert set(scores.index) == {*PERTURBATIONS, "overall"}
    for kind, row in scores.iterrows():
        assert abs(row["accuracy"] - 0.5) <= 0.02, (kind, row)
        # claim-level AUC: the inserted claim against the genuine ones, so a report with one more claim is not
        # ranked higher by the text alone
        if row["claims_untouched"] == 0:  # nothing to compare (no side / severity head): no AUC, not a fake one
            assert np.isnan(row["auc"]), (kind, row)
        else:
            assert abs(row["auc"] - 0.5) <= 0.02, (kind, row)
    if p > 0.5:  # every finding the report leaves out is "missed": the dropped one, and others on the untouched
        drop = scores.loc["drop_finding"]
        assert drop["detected"] == 1.0 and drop["clean"] == 0.0


def test_an_image_model_without_information_has_chance_auc_on_inserted_findings():
    texts, truths = _reports(40, seed=2)
    table = report_check_table(texts, truths, {i: _constant(0.3, i, distributions=True) for i in texts})
    auc = report_check_scores(table).set_index("perturbation").at["insert_finding", "auc"]
    assert abs(auc - 0.5) <= 0.02


def test_the_random_baseline_stays_near_half_over_many_seeds(perfect_table):
    runs = [report_check_scores(perfect_table, seed=s) for s in range(20)]
    acc = np.stack([r["random_accuracy"].to_numpy(float) for r in runs])  # (seeds, kinds + overall)
    auc = np.stack([r["random_auc"].to_numpy(float) for r in runs])
    assert np.abs(acc - 0.5).max() < 0.12 and np.abs(auc - 0.5).max() < 0.15
    assert np.abs(acc.mean(0) - 0.5).max() < 0.03 and np.abs(auc.mean(0) - 0.5).max() < 0.04
    assert acc.std() > 0.005 and auc.std() > 0.005  # random, not a constant 0.5
    pd.testing.assert_frame_equal(
        report_check_scores(perfect_table, seed=7), report_check_scores(perfect_table, seed=7)
    )
    # the checker's own numbers do not depend on the seed
    for col in ("pairs", "detected", "clean", "accuracy", "auc"):
        np.testing.assert_array_equal(runs[0][col].to_numpy(), runs[1][col].to_numpy())


def _flag_table(n: int, detected: int, flagged_untouched: int) -> pd.DataFrame:
    det = np.arange(n) < detected
    clean = np.arange(n) >= flagged_untouched
    return pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "perturbation": "insert_finding",
            "finding": "Edema",
            "detected": det,
            "clean": clean,
            "score_perturbed": np.where(det, 1.0, -1.0),
            "scores_untouched": [[("Edema", -1.0)] if c else [("Edema", 1.0)] for c in clean],
        }
    )


def test_the_random_baseline_raises_flags_at_the_checkers_own_rate():
    n = 100
    # a checker that never flags (or always does): random flags at its rate are constant, accuracy exactly 0.5
    for table in (_flag_table(n, 0, 0), _flag_table(n, n, n)):
        for seed in range(3):
            assert (report_check_scores(table, seed=seed)["random_accuracy"] == 0.5).all()

    # flag rate r: random accuracy = 0.5 + (Σ random flags on perturbed − Σ on untouched) / 2n, sd √(r(1−r)/2n)
    def spread(table):
        return np.std([report_check_scores(table, seed=s)["random_accuracy"].iloc[0] for s in range(50)])

    rare = spread(_flag_table(n, 3, 1))  # (3 + 1) / 200 = 0.02: sd 0.0099
    even = spread(_flag_table(n, 60, 40))  # 0.5: sd 0.035
    assert 0.0065 < rare < 0.0135 and 0.026 < even < 0.045, (rare, even)
    s = report_check_scores(_flag_table(n, 60, 40)).iloc[0]
    assert s["detected"] == 0.6 and s["clean"] == 0.6 and s["accuracy"] == 0.6 and s["auc"] == pytest.approx(0.6)


def test_truth_by_image_keys_certain_findings_and_device_words():
    facts = pd.DataFrame(
        [
            ("a", "Pleural Effusion", "left", "small", None, True),
            ("a", "Pleural Effusion", "right", "large", None, True),  # a second fact: the first one is kept
            ("a", SD, "right", None, "pacemaker", True),
            ("a", "Edema", None, "moderate", None, False),
            ("b", "Pneumothorax", "right", "large", None, False),
        ],
        columns=["image_id", "finding", "side", "severity", "device", "certain"],
    )
    truth = truth_by_image(facts)
    assert list(truth) == ["a"]  # uncertain facts are not positives
    assert list(truth["a"]) == ["Pleural Effusion", SD, "pacemaker"]
    assert truth["a"]["Pleural Effusion"] == {"side": "left", "severity": "small"}
    for key in (SD, "pacemaker"):
        assert truth["a"][key]["side"] == "right" and pd.isna(truth["a"][key]["severity"])
    assert set(PROBLEM_OF) == set(PERTURBATIONS)


# ------------------------------------------------------------------------------------------------------ pointing
@pytest.fixture(scope="module")
def mask_dir(fitted, tmp_path_factory):
    """``masks/<image_id>.png`` of the test images: 32 × 32 label masks marking the quadrant(s) of each finding."""
    data, _, _ = fitted
    out = tmp_path_factory.mktemp("phantom") / "masks"
    out.mkdir()
    cell = 32 // GRID[0]
    for image_id in data.ids[data.split == "test"]:
        masks = np.zeros((len(LABEL_CHANNELS), 32, 32), bool)
        for finding in ("Pleural Effusion", "Pneumothorax"):
            where = data.quadrant.get((image_id, finding))
            if where is not None:
                masks[LABEL_CHANNELS.index(finding)] = np.kron(where.reshape(GRID), np.ones((cell, cell), bool))
        (out / f"{image_id}.png").write_bytes(encode_label_masks(masks))
    return out


def test_head_token_maps_point_where_the_finding_was_drawn(fitted, mask_dir):
    data, model, _ = fitted
    te = data.split == "test"
    ids = data.ids[te]
    for seed in (0, 1):
        table = qa_pointing(model, data.P[te], ids, data.facts, mask_dir, seed=seed)
        t = table.set_index(["method", "finding"])
        units = sum((i, f) in data.quadrant for i in ids for f in ("Pleural Effusion", "Pneumothorax"))
        assert units > 100
        # the Support Devices head has a presence head but an empty mask channel: not a unit
        assert set(table["finding"]) == {"all", "Pleural Effusion", "Pneumothorax"}
        assert (table.loc[table["finding"] == "all", "n"] == units).all()
        head = t.at[("qa head token map", "all"), "pointing"]
        assert head >= 0.95, table
        for finding in ("Pleural Effusion", "Pneumothorax"):
            assert t.at[("qa head token map", finding), "pointing"] >= 0.9, table
        assert head > t.at[("same, head weights randomised", "all"), "pointing"] + 0.2, table
        assert head > t.at[("random", "all"), "pointing"] + 0.25, table


def test_pointing_skips_images_without_a_mask_file(fitted, mask_dir, tmp_path):
    data, model, _ = fitted
    te = data.split == "test"
    ids = data.ids[te]
    some = tmp_path / "masks"
    some.mkdir()
    keep = [i for i in ids if (i, "Pleural Effusion") in data.quadrant][:5]
    for i in keep:
        (some / f"{i}.png").write_bytes((mask_dir / f"{i}.png").read_bytes())
    table = qa_pointing(model, data.P[te], ids, data.facts, some).set_index(["method", "finding"])
    n = sum((i, f) in data.quadrant for i in keep for f in ("Pleural Effusion", "Pneumothorax"))
    assert table.at[("qa head token map", "all"), "n"] == n
    empty = qa_pointing(model, data.P[te], ids, data.facts, tmp_path / "nowhere")
    assert empty.empty and list(empty.columns) == ["method", "finding", "n", "pointing"]


# -------------------------------------------------------------------------------------------------- SAE evidence
def _sae() -> SAEEvidence:
    feats = pd.DataFrame(
        {
            "feature": [0, 2, 3, 5, 7, 8],
            "threshold": [0.5, 0.2, 1.0, 0.3, 0.0, 0.4],
            "auc.Pleural Effusion": [0.95, 0.80, 0.99, 0.72, 0.99, 0.60],
            "auc.Pneumothorax": [0.50, 0.90, 0.40, 0.50, 0.50, 0.85],
            f"auc.{SD}": [0.5, 0.5, 0.5, 0.5, 0.5, 0.93],
        }
    )
    descriptions = {0: "fluid at the base", 2: "apical lucency", 3: "meniscus", 5: "blunted angle", 8: "wire"}
    return SAEEvidence("run1", feats.set_index("feature", drop=False), descriptions, None, "final/patch", None)


# feature:   0    1    2    3    4    5    6    7    8
CODES = np.array([0.9, 5.0, 0.3, 0.4, 0.0, 0.8, 0.0, 0.0, 0.5])


def test_for_finding_gives_active_features_above_min_auc_best_first():
    sae = _sae()
    got = sae.for_finding(CODES, "Pleural Effusion")
    # 3 is inactive (0.4 < 1.0), 7 has no threshold, 8 tracks it too weakly (0.60 < 0.7)
    assert [g["feature"] for g in got] == [0, 2, 5]
    assert got[0] == {
        "feature": 0,
        "description": "fluid at the base",
        "activation": 0.9,
        "threshold": 0.5,
        "auc": 0.95,
    }
    assert [g["auc"] for g in got] == sorted((g["auc"] for g in got), reverse=True)
    assert [g["feature"] for g in sae.for_finding(CODES, "Pleural Effusion", k=2)] == [0, 2]
    assert [g["feature"] for g in sae.for_finding(CODES, "Pleural Effusion", min_auc=0.9)] == [0]
    assert [g["feature"] for g in sae.for_finding(CODES, "Pleural Effusion", k=9, min_auc=0.5)] == [0, 2, 5, 8]
    assert [g["feature"] for g in sae.for_finding(CODES, "Pneumothorax")] == [2, 8]
    assert sae.for_finding(CODES, "Cardiomegaly") == [] and sae.for_finding(CODES, "not a label") == []
    assert sae.for_finding(np.zeros(9), "Pleural Effusion") == []


def _image() -> ImageFindings:
    left = {"left": 0.8, "right": 0.1, "bilateral": 0.1}
    f = {
        "Pleural Effusion": FindingEvidence("Pleural Effusion", 0.9, 0.3, left, None, None, 0.9),
        "Pneumothorax": FindingEvidence("Pneumothorax", 0.8, 0.3, left, None, None, 0.9),
        "Cardiomegaly": FindingEvidence("Cardiomegaly", 0.1, 0.3, None, None, None, 0.9),
        SD: FindingEvidence(SD, 0.9, 0.3, None, None, None, 0.9),
    }
    d = {"pacemaker": FindingEvidence("pacemaker", 0.9, 0.3, {"left": 0.9, "right": 0.1}, None, None, 0.9)}
    return ImageFindings(f, d, FindingEvidence("normal", 0.05, 0.5), GRID, "img.png")


def test_with_answer_features_adds_one_record_for_the_question_finding():
    sae, image = _sae(), _image()
    a = answer_question(parse_question("is there a pleural effusion?"), image)
    got = with_answer_features(a, sae, CODES)
    assert got.evidence[:-1] == a.evidence and len(got.evidence) == len(a.evidence) + 1
    rec = got.evidence[-1]
    assert rec["head"] == "sae/run1" and rec["name"] == "Pleural Effusion"
    assert [r["feature"] for r in rec["features"]] == [0, 2, 5]
    assert (got.answer, got.confidence, got.text) == (a.answer, a.confidence, a.text)
    # a device question: the features of Support Devices
    dev = with_answer_features(answer_question(parse_question("is there a pacemaker?"), image), sae, CODES)
    assert dev.evidence[-1]["name"] == SD and [r["feature"] for r in dev.evidence[-1]["features"]] == [8]
    # nothing to add: an unanswered question, or one about no single finding
    for q in ("why was this study ordered?", "is there a rib fracture?", "what are the findings?"):
        a = answer_question(parse_question(q), image)
        assert with_answer_features(a, sae, CODES) == a, q


def test_with_check_features_adds_features_to_judged_claims_and_missed_findings():
    sae, image = _sae(), _image()
    report = "There is a left pleural effusion. Possible consolidation. Left chest wall pacemaker in place."
    check = check_report(report, image)
    assert [m["name"] for m in check.missed] == ["Pneumothorax"]
    got = with_check_features(check, sae, CODES)
    assert dataclasses.replace(got, sentences=check.sentences, missed=check.missed) == check
    judged = untouched = 0
    for s, t in zip(check.sentences, got.sentences, strict=True):
        assert (s.index, s.text, s.flag) == (t.index, t.text, t.flag)
        for c, d in zip(s.claims, t.claims, strict=True):
            if not c.evidence:  # consolidation has no head: unverifiable without evidence, left alone
                assert d == c and c.problem == "no head"
                untouched += 1
                continue
            judged += 1
            assert d.evidence[:-1] == c.evidence and (d.flag, d.problem, d.score) == (c.flag, c.problem, c.score)
            rec = d.evidence[-1]
            assert rec["head"] == "sae/run1" and rec["name"] == c.claim.finding
            assert rec["features"] == sae.for_finding(CODES, c.claim.finding)
    assert judged == 2 and untouched == 1
    (missed,) = got.missed
    assert {k: v for k, v in missed.items() if k != "sae_features"} == check.missed[0]
    assert [r["feature"] for r in missed["sae_features"]] == [2, 8]
