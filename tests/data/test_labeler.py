"""The CheXpert-14 report labeler: gold-set accuracy per class, and targeted behaviour (negation, uncertainty,
pseudo-negation, sections, sentence scope, No Finding rule, study-table labelling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.labeler import (
    LabelerConfig,
    expand_pattern,
    label_reports,
    label_study_table,
    report_mentions,
    report_text,
    scope_sentences,
    select_sections,
)
from cxrlens.data.schema import CHEXPERT_LABELS

GOLD = Path(__file__).parent / "labeler_gold.csv"
FINDINGS = [x for x in CHEXPERT_LABELS if x != "No Finding"]
KINDS = ("pos", "neg", "unc", "pseudo", "double")


@pytest.fixture(scope="module")
def gold() -> tuple[pd.DataFrame, pd.DataFrame]:
    g = pd.read_csv(GOLD)
    return g, label_reports(g["text"].tolist())


def one(text: str, name: str, **kw) -> float:
    return float(label_reports([text], LabelerConfig(**kw))[name].iloc[0])


def test_gold_set_covers_every_finding_and_kind(gold) -> None:
    g, _ = gold
    assert len(g) >= 300
    assert list(g.columns[1:15]) == list(CHEXPERT_LABELS)
    for finding in FINDINGS:
        for kind in KINDS:
            rows = g[(g["target"] == finding) & (g["kind"] == kind)]
            assert len(rows) >= 4, (finding, kind)
            if kind in ("pos", "pseudo"):
                assert (rows[finding] == 1).all(), (finding, kind)
            if kind == "neg":
                assert (rows[finding] == 0).all(), (finding, kind)
            if kind == "unc":
                assert (rows[finding] == -1).all(), (finding, kind)
        doubles = set(g.loc[(g["target"] == finding) & (g["kind"] == "double"), finding])
        assert 1.0 in doubles and len(doubles) >= 2, (finding, doubles)  # the winner varies across double mentions
    values = g[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
    assert np.isin(values[~np.isnan(values)], (1.0, 0.0, -1.0)).all()


def test_gold_set_per_class_accuracy(gold) -> None:
    g, pred = gold
    for name in CHEXPERT_LABELS:
        truth, got = g[name].to_numpy(dtype=float), pred[name].to_numpy(dtype=float)
        same = (truth == got) | (np.isnan(truth) & np.isnan(got))
        mentioned = ~np.isnan(truth)
        assert same.mean() >= 0.95, (name, same.mean())
        assert same[mentioned].mean() >= 0.95, (name, "on rows that mention it", same[mentioned].mean())


def test_output_columns_dtype_and_index() -> None:
    texts = pd.Series(["Small left pleural effusion.", "No pneumothorax.", "", None], index=["a", "b", "c", "d"])
    out = label_reports(texts)
    assert list(out.columns) == list(CHEXPERT_LABELS)
    assert list(out.index) == ["a", "b", "c", "d"]
    assert all(out[c].dtype == np.float32 for c in out.columns)
    assert out.loc["a", "Pleural Effusion"] == 1 and out.loc["b", "Pneumothorax"] == 0
    assert out.loc[["c", "d"]].isna().all().all()  # nothing read, nothing claimed
    assert label_reports([]).shape == (0, 14)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("There is no pneumothorax.", "Pneumothorax"),
        ("No evidence of focal consolidation.", "Consolidation"),
        ("The lungs are clear without infiltrate.", "Lung Opacity"),
        ("Lungs are clear of consolidation.", "Consolidation"),
        ("The right pneumothorax has resolved.", "Pneumothorax"),
        ("The endotracheal tube has been removed.", "Support Devices"),
        ("Pleural effusion is not seen.", "Pleural Effusion"),
        ("Negative for fracture.", "Fracture"),
        ("Heart size is normal.", "Cardiomegaly"),
        ("The heart is not enlarged.", "Cardiomegaly"),
        ("The mediastinum is within normal limits.", "Enlarged Cardiomediastinum"),
        ("No pleural effusions, pneumothorax, or focal consolidation.", "Consolidation"),
    ],
)
def test_negation(text: str, name: str) -> None:
    assert one(text, name) == 0


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Pleural effusion cannot be excluded.", "Pleural Effusion"),
        ("Possible right lower lobe pneumonia.", "Pneumonia"),
        ("The opacity may represent atelectasis.", "Atelectasis"),
        ("Questionable left apical pneumothorax.", "Pneumothorax"),
        ("Atelectasis versus pneumonia.", "Pneumonia"),
        ("Atelectasis vs. pneumonia.", "Atelectasis"),
        ("Findings suspicious for a mass.", "Lung Lesion"),
        ("Heart size at the upper limits of normal.", "Cardiomegaly"),
        ("Edema is not excluded.", "Edema"),
        ("Evaluate for pneumonia.", "Pneumonia"),
    ],
)
def test_uncertainty(text: str, name: str) -> None:
    assert one(text, name) == -1


def test_hypothetical_can_be_dropped() -> None:
    assert one("Evaluate for pneumonia.", "Pneumonia", hypothetical_as_uncertain=False) != one(
        "Evaluate for pneumonia.", "Pneumonia"
    )
    assert np.isnan(one("Evaluate for pneumonia.", "Pneumonia", hypothetical_as_uncertain=False))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("No change in the left pleural effusion.", "Pleural Effusion"),
        ("No significant interval change in the bibasilar atelectasis.", "Atelectasis"),
        ("Cardiomegaly is not significantly changed.", "Cardiomegaly"),
        ("The PICC line tip is not well seen.", "Support Devices"),
        ("The right pneumothorax has not resolved.", "Pneumothorax"),
        ("No interval increase in the size of the nodule.", "Lung Lesion"),
    ],
)
def test_pseudo_negation_is_positive(text: str, name: str) -> None:
    assert one(text, name) == 1


def test_negation_does_not_cross_sentences_or_terminators() -> None:
    out = label_reports(["No pneumothorax. Small left effusion.", "No pneumothorax, but there is a small effusion."])
    assert (out["Pneumothorax"] == 0).all() and (out["Pleural Effusion"] == 1).all()
    # a clause break must also cut a backward scope that an earlier terminator ("There is") already narrowed
    assert one("There is stable, mild cardiomegaly with normal caliber pulmonary vasculature.", "Cardiomegaly") == 1


def test_strongest_mention_wins() -> None:
    out = label_reports(
        [
            "No right effusion. Small left effusion.",  # 0 and 1 → 1
            "No effusion. Effusion cannot be excluded.",  # 0 and -1 → -1
            "Possible effusion. Definite left effusion.",  # -1 and 1 → 1
        ]
    )
    assert out["Pleural Effusion"].tolist() == [1, -1, 1]


def test_lookalikes_are_not_findings() -> None:
    out = label_reports(["Small pericardial effusion.", "Nodular opacity in the right upper lobe."])
    assert np.isnan(out.loc[0, "Pleural Effusion"])
    assert out.loc[1, "Lung Lesion"] == 1 and np.isnan(out.loc[1, "Lung Opacity"])


def test_abbreviations_plurals_misspellings() -> None:
    out = label_reports(["ETT and NGT in place.", "Tiny left PTX.", "Findings of CHF.", "Bilateral pneumothoraces.",
                         "Left lower lobe atelectsis.", "Right pleural efusion."])  # fmt: skip
    assert out.loc[0, "Support Devices"] == 1 and out.loc[1, "Pneumothorax"] == 1
    assert out.loc[2, "Edema"] == 1 and out.loc[2, "Cardiomegaly"] == -1  # CheXpert's CHF rule
    assert out.loc[3, "Pneumothorax"] == 1 and out.loc[4, "Atelectasis"] == 1 and out.loc[5, "Pleural Effusion"] == 1


def test_sections_only_findings_and_impression() -> None:
    text = (
        "INDICATION: Rule out pneumonia.\nCOMPARISON: None.\nFINDINGS: Small left effusion.\n"
        "IMPRESSION: No pneumothorax."
    )
    kept = select_sections(text)
    assert "pneumonia" not in kept.lower() and "effusion" in kept and "pneumothorax" in kept
    out = label_reports([text])
    assert np.isnan(out.loc[0, "Pneumonia"]) and out.loc[0, "Pleural Effusion"] == 1 and out.loc[0, "Pneumothorax"] == 0
    whole = label_reports([text], LabelerConfig(sections=False))
    assert whole.loc[0, "Pneumonia"] == -1  # "rule out" is read when sections are off
    no_headers = "Rule out pneumonia. Small left effusion."
    assert select_sections(no_headers) == no_headers
    assert select_sections("INDICATION: cough\nSmall left effusion.").strip() == "Small left effusion."


def test_sentence_splitting() -> None:
    assert scope_sentences("Atelectasis vs. pneumonia. No effusion.") == ["Atelectasis vs pneumonia.", "No effusion."]
    assert scope_sentences("1. Cardiomegaly. 2. No effusion; no pneumothorax.") == [
        "Cardiomegaly.",
        "No effusion;",
        "no pneumothorax.",
    ]
    assert scope_sentences("IMPRESSION:\n1. Cardiomegaly\n2. No effusion")[-2:] == ["Cardiomegaly", "No effusion"]
    assert scope_sentences("  \n\n ") == []


def test_no_finding_rule() -> None:
    out = label_reports(
        [
            "No pneumothorax or effusion. Heart size normal.",  # only negatives → 1
            "ETT in good position. Lungs clear.",  # Support Devices does not count → 1
            "Calcified granuloma. Otherwise clear.",  # abnormality outside the 14 → NaN
            "Possible small left effusion.",  # uncertain finding → NaN
            "Small left effusion.",  # positive finding → NaN
            "No acute cardiopulmonary process.",  # nothing mentioned → 1
        ]
    )
    assert out["No Finding"].fillna(-9).tolist() == [1, 1, -9, -9, -9, 1]


def test_mentions_explain_the_labels() -> None:
    (mentions,) = report_mentions(["Left basilar opacity may represent atelectasis."])
    got = {(m.label, m.value) for m in mentions}
    assert got == {("Lung Opacity", 1), ("Atelectasis", -1)}
    assert any("may represent" in m.cues for m in mentions)


def test_expand_pattern() -> None:
    pat = [{"LOWER": {"IN": ["is", "are"]}, "OP": "?"}, {"LOWER": "not"}, {"LOWER": {"IN": ["seen", "present"]}}]
    assert sorted(expand_pattern(pat)) == sorted(
        ["not seen", "not present", "is not seen", "is not present", "are not seen", "are not present"]
    )


def test_label_study_table_fills_from_findings_and_impression() -> None:
    studies = pd.DataFrame(
        {
            "study_id": ["s1", "s1", "s2"],
            "findings": ["Small left effusion.", "Small left effusion.", ""],
            "impression": ["No pneumothorax.", "No pneumothorax.", "Cardiomegaly."],
            "Cardiomegaly": [np.nan, np.nan, 0.0],
        }
    )
    out = label_study_table(studies)
    assert out["Pleural Effusion"].tolist()[:2] == [1, 1] and out["Pneumothorax"].tolist()[:2] == [0, 0]
    assert out.loc[2, "Cardiomegaly"] == 1 and all(c in out.columns for c in CHEXPERT_LABELS)
    kept = label_study_table(studies, overwrite=False)
    assert kept.loc[2, "Cardiomegaly"] == 0  # an existing label wins when overwrite=False
    assert report_text("A.", "") == "FINDINGS: A." and report_text(None, "B.") == "IMPRESSION: B."


def _iu_xml(uid: str, findings: str, impression: str, image: str) -> str:
    return (
        f'<eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        f'<AbstractText Label="IMPRESSION">{impression}</AbstractText>'
        f"</Abstract></Article></MedlineCitation><MeSH><major>normal</major></MeSH>"
        f'<parentImage id="{image}"><caption>PA</caption></parentImage></eCitation>'
    )


def test_iu_xray_import_labels_findings_and_impression(tmp_path: Path) -> None:
    from cxrlens.data.iu_xray import IUXrayImportConfig, load_iu_xray

    (tmp_path / "1.xml").write_text(_iu_xml("CXR1", "Small left effusion.", "No pneumothorax.", "CXR1_1_IM-0001-3001"))
    (tmp_path / "2.xml").write_text(_iu_xml("CXR2", "Heart size normal.", "No acute disease.", "CXR2_1_IM-0002-1001"))
    t = load_iu_xray(IUXrayImportConfig(reports_source=str(tmp_path)))
    s = t.studies.set_index("study_id")
    assert s.loc["CXR1", "Pleural Effusion"] == 1 and s.loc["CXR1", "Pneumothorax"] == 0
    assert s.loc["CXR2", "Cardiomegaly"] == 0 and s.loc["CXR2", "No Finding"] == 1
    assert s["Pleural Effusion"].dtype == np.float32
    r = t.reports.set_index("study_id")
    assert list(t.reports.columns[-14:]) == list(CHEXPERT_LABELS) and r.loc["CXR1", "Pleural Effusion"] == 1
    off = load_iu_xray(IUXrayImportConfig(reports_source=str(tmp_path), label_reports=False))
    assert off.studies[list(CHEXPERT_LABELS)].isna().all().all() and "No Finding" not in off.reports.columns
