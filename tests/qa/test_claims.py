"""Claims read from report sentences (finding, polarity, side, severity, device) and reports perturbed in known ways:
hand-written sentences with their expected claims, perturbations of hand-written reports (applies / does not apply /
visible on re-reading / deterministic), and a run over real IU X-ray reports that must agree with the labeler."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cxrlens.data.iu_xray import IUXrayImportConfig, load_iu_xray
from cxrlens.data.labeler import label_reports, report_text
from cxrlens.qa.claims import CLAIM_COLUMNS, Claim, ReportSentence, claims_table, read_claims, read_claims_many
from cxrlens.qa.perturb import EXPECTED, INSERT_TEMPLATES, PERTURBATIONS, Perturbation, perturb_report
from cxrlens.qa.vocab import DEVICES, FINDINGS, SEVERITY_FINDINGS

SD = "Support Devices"
ETT, NGT, CVC, PM, CT = DEVICES  # endotracheal tube, enteric tube, central line, pacemaker, chest tube

# sentence → its claims in order: (finding, value, side, severity, device)
CASES: list[tuple[str, list[tuple]]] = [
    # normal statements: the labeler is the source of polarity ("clear lungs" is no mention)
    ("The lungs are clear.", []),
    ("No acute cardiopulmonary abnormality.", []),
    ("Normal heart size.", [("Cardiomegaly", 0, None, None, None)]),
    ("Heart size is normal.", [("Cardiomegaly", 0, None, None, None)]),
    (
        "The cardiac and mediastinal contours are normal.",
        [("Cardiomegaly", 0, None, None, None), ("Enlarged Cardiomediastinum", 0, None, None, None)],
    ),
    (
        "Heart size normal, lungs clear, no effusion.",
        [("Cardiomegaly", 0, None, None, None), ("Pleural Effusion", 0, None, None, None)],
    ),
    # heart and mediastinum, graded
    ("The heart is mildly enlarged.", [("Cardiomegaly", 1, None, "small", None)]),
    ("Moderate cardiomegaly.", [("Cardiomegaly", 1, None, "moderate", None)]),
    ("Severe cardiomegaly.", [("Cardiomegaly", 1, None, "large", None)]),
    ("Mild to moderate cardiomegaly.", [("Cardiomegaly", 1, None, None, None)]),  # a range: no single level
    ("Borderline cardiomegaly.", [("Cardiomegaly", -1, None, None, None)]),
    ("The mediastinum is widened.", [("Enlarged Cardiomediastinum", 1, None, None, None)]),
    (
        "Cardiomegaly with mild interstitial edema.",
        [("Cardiomegaly", 1, None, None, None), ("Edema", 1, None, "small", None)],
    ),
    # several findings, different sides and severities, each from its own clause
    (
        "Left pleural effusion and right lower lobe atelectasis.",
        [("Pleural Effusion", 1, "left", None, None), ("Atelectasis", 1, "right", None, None)],
    ),
    (
        "There is moderate left pleural effusion and small right pleural effusion.",
        [("Pleural Effusion", 1, "left", "moderate", None), ("Pleural Effusion", 1, "right", "small", None)],
    ),
    (
        "Large left pleural effusion with adjacent compressive atelectasis.",
        [("Pleural Effusion", 1, "left", "large", None), ("Atelectasis", 1, None, None, None)],
    ),
    (
        "Stable left lower lobe opacity, likely atelectasis.",
        [("Lung Opacity", 1, "left", None, None), ("Atelectasis", -1, None, None, None)],
    ),
    (
        "Left basilar opacity may represent atelectasis or pneumonia.",
        [
            ("Lung Opacity", 1, "left", None, None),
            ("Atelectasis", -1, "left", None, None),
            ("Pneumonia", -1, "left", None, None),
        ],
    ),
    (
        "Minimal left base atelectasis/infiltrate.",
        [("Atelectasis", 1, "left", "small", None), ("Lung Opacity", 1, "left", "small", None)],
    ),
    # negations
    (
        "No pneumothorax or effusion.",
        [("Pneumothorax", 0, None, None, None), ("Pleural Effusion", 0, None, None, None)],
    ),
    (
        "No pneumothorax, pleural effusion, or focal consolidation.",
        [
            ("Pneumothorax", 0, None, None, None),
            ("Pleural Effusion", 0, None, None, None),
            ("Consolidation", 0, None, None, None),
        ],
    ),
    ("No large pleural effusion.", [("Pleural Effusion", 0, None, "large", None)]),  # not a denial of a small one
    ("No pulmonary edema.", [("Edema", 0, None, None, None)]),
    ("No acute fracture.", [("Fracture", 0, None, None, None)]),
    # uncertainty
    ("Possible left lower lobe pneumonia.", [("Pneumonia", -1, "left", None, None)]),
    ("Right lower lobe pneumonia cannot be excluded.", [("Pneumonia", -1, "right", None, None)]),
    (
        "Left lower lobe consolidation concerning for pneumonia.",
        [("Consolidation", 1, "left", None, None), ("Pneumonia", -1, "left", None, None)],
    ),
    # sides
    ("There is a small right pleural effusion.", [("Pleural Effusion", 1, "right", "small", None)]),
    ("Trace left pleural effusion.", [("Pleural Effusion", 1, "left", "small", None)]),
    ("Right-sided pleural effusion.", [("Pleural Effusion", 1, "right", None, None)]),
    ("Effusion on the left.", [("Pleural Effusion", 1, "left", None, None)]),
    ("Small bilateral pleural effusions.", [("Pleural Effusion", 1, "bilateral", "small", None)]),
    ("Bilateral pleural effusions, right greater than left.", [("Pleural Effusion", 1, "bilateral", None, None)]),
    ("Pleural effusions on both sides.", [("Pleural Effusion", 1, "bilateral", None, None)]),
    ("Right and left pleural effusions.", [("Pleural Effusion", 1, "bilateral", None, None)]),
    ("Bibasilar atelectasis.", [("Atelectasis", 1, "bilateral", None, None)]),
    ("Mild bibasilar atelectasis.", [("Atelectasis", 1, "bilateral", "small", None)]),
    ("Lingular atelectasis.", [("Atelectasis", 1, "left", None, None)]),
    ("Opacities in the right upper lobe and left lower lobe.", [("Lung Opacity", 1, "bilateral", None, None)]),
    ("In the left base, there is patchy atelectasis.", [("Atelectasis", 1, "left", None, None)]),
    ("Opacity obscuring the right heart border.", [("Lung Opacity", 1, "right", None, None)]),
    ("Moderate right pneumothorax.", [("Pneumothorax", 1, "right", "moderate", None)]),
    ("Tiny left apical pneumothorax.", [("Pneumothorax", 1, "left", "small", None)]),
    (
        "Small left hydropneumothorax.",
        [("Pleural Effusion", 1, "left", "small", None), ("Pneumothorax", 1, "left", "small", None)],
    ),
    ("Interval increase in the small right effusion.", [("Pleural Effusion", 1, "right", "small", None)]),
    ("These opacities appear slightly increased.", [("Lung Opacity", 1, None, None, None)]),  # a change, no grade
    # lesions, fractures, pleura, edema (no severity for a nodule or a fracture, no side for edema)
    ("Right upper lobe mass.", [("Lung Lesion", 1, "right", None, None)]),
    ("A small nodule in the left upper lobe.", [("Lung Lesion", 1, "left", None, None)]),
    ("Healed right rib fractures.", [("Fracture", 1, "right", None, None)]),
    ("Right apical pleural thickening.", [("Pleural Other", 1, "right", None, None)]),
    ("Mild bilateral pulmonary edema.", [("Edema", 1, None, "small", None)]),
    # devices, abbreviations included
    ("ET tube tip 4 cm above the carina.", [(SD, 1, None, None, ETT)]),
    ("ETT in good position.", [(SD, 1, None, None, ETT)]),
    ("ET and NG tubes in standard position.", [(SD, 1, None, None, ETT), (SD, 1, None, None, NGT)]),
    ("NG tube tip in the stomach.", [(SD, 1, None, None, NGT)]),
    ("Dobhoff tube courses below the diaphragm.", [(SD, 1, None, None, NGT)]),
    ("Right PICC with tip in the SVC.", [(SD, 1, "right", None, CVC)]),
    ("Right IJ line tip in the SVC.", [(SD, 1, "right", None, CVC)]),
    ("Right internal jugular catheter with tip in the SVC.", [(SD, 1, "right", None, CVC)]),
    ("Left subclavian central venous catheter.", [(SD, 1, "left", None, CVC)]),
    ("Left-sided pacemaker with leads in the right atrium and right ventricle.", [(SD, 1, "left", None, PM)]),
    ("Left chest wall pacer.", [(SD, 1, "left", None, PM)]),
    ("Left-sided AICD.", [(SD, 1, "left", None, PM)]),
    ("Right chest tube in place.", [(SD, 1, "right", None, CT)]),
    ("Right chest drain in place.", [(SD, 1, "right", None, CT)]),
    ("Left pigtail catheter.", [(SD, 1, "left", None, CT)]),
    ("The endotracheal tube has been removed.", [(SD, 0, None, None, ETT)]),
    ("No chest tube.", [(SD, 0, None, None, CT)]),
    ("Sternotomy wires are intact.", [(SD, 1, None, None, None)]),
    (
        "Endotracheal tube 4 cm above the carina, enteric tube in the stomach, and right PICC tip in the SVC.",
        [(SD, 1, None, None, ETT), (SD, 1, None, None, NGT), (SD, 1, "right", None, CVC)],
    ),
]


@pytest.fixture(scope="module")
def case_reads() -> list[list[ReportSentence]]:
    return read_claims_many([s for s, _ in CASES])


def test_enough_cases() -> None:
    assert len(CASES) >= 40
    assert {f for _, claims in CASES for f, *_ in claims} == set(FINDINGS)
    assert {c[4] for _, claims in CASES for c in claims} >= set(DEVICES)


@pytest.mark.parametrize("k", range(len(CASES)), ids=[s[:40] for s, _ in CASES])
def test_sentence_claims(case_reads, k: int) -> None:
    sentence, expected = CASES[k]
    (read,) = case_reads[k]
    assert read.index == 0 and read.text == sentence
    got = [(c.finding, c.value, c.side, c.severity, c.device) for c in read.claims]
    assert got == expected
    for c in read.claims:  # the matched words and their clause are placed in the sentence
        assert c.span is not None and sentence[c.span[0] : c.span[1]].lower() == c.text.lower()
        assert c.clause is not None and c.clause[0] <= c.span[0] < c.clause[1]


REPORT = """INDICATION: Cough, rule out pneumonia.
COMPARISON: None.
FINDINGS: The heart is mildly enlarged. There is a small left pleural effusion and right lower lobe atelectasis.
No pneumothorax. Left chest wall pacemaker with leads in the right atrium and right ventricle.

IMPRESSION:
1. Mild cardiomegaly.
2. Small left pleural effusion."""
TRUTH = {
    "Cardiomegaly": {"side": None, "severity": "small"},
    "Pleural Effusion": {"side": "left", "severity": 0.2},
    "Atelectasis": {"side": "right", "severity": None},
    "pacemaker": {"side": "left"},
}


def test_report_sentences_in_text_order_with_spans() -> None:
    sentences = read_claims(REPORT)
    assert [s.text for s in sentences] == [
        "The heart is mildly enlarged.",
        "There is a small left pleural effusion and right lower lobe atelectasis.",
        "No pneumothorax.",
        "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
        "Mild cardiomegaly.",
        "Small left pleural effusion.",
    ]
    assert [s.index for s in sentences] == list(range(6))
    for s in sentences:
        a, b = s.span
        assert " ".join(REPORT[a:b].split()) == s.text
    assert [len(s.claims) for s in sentences] == [1, 2, 1, 1, 1, 1]
    assert sentences[3].claims[0] == Claim(SD, 1, "left", None, PM, "pacemaker")
    # sections=False reads the indication too (a hypothetical pneumonia) and keeps "COMPARISON: None." claimless
    every = read_claims(REPORT, sections=False)
    assert every[0].text == "INDICATION: Cough, rule out pneumonia." and every[0].claims[0].value == -1
    assert every[1].text == "COMPARISON: None." and every[1].claims == ()
    assert read_claims("") == [] and read_claims(None) == [] and read_claims(float("nan")) == []


def test_claims_table() -> None:
    table = claims_table(read_claims(REPORT))
    assert list(table.columns) == list(CLAIM_COLUMNS) and len(table) == 7
    assert table["sentence"].tolist() == [0, 1, 1, 2, 3, 4, 5]
    row = table.iloc[2]
    assert (row["finding"], row["value"], row["side"], row["text"]) == ("Atelectasis", 1, "right", "atelectasis")
    empty = claims_table(read_claims("The lungs are clear."))
    assert list(empty.columns) == list(CLAIM_COLUMNS) and empty.empty


# ------------------------------------------------------------------------------------------------- perturbations
def _perturb(kind: str, seed: int = 0, report: str = REPORT, truth=TRUTH) -> Perturbation | None:
    return perturb_report(report, kind, present=truth, rng=np.random.default_rng(seed))


def _claims(sentences: list[ReportSentence]) -> list[Claim]:
    return [c for s in sentences for c in s.claims]


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_each_kind_applies_and_is_deterministic(kind: str) -> None:
    for seed in range(4):
        p = _perturb(kind, seed)
        assert p is not None and p.kind == kind and p.expected == EXPECTED[kind]
        assert p == _perturb(kind, seed)  # the same rng seed gives the same perturbation
        assert p.text != REPORT and p.finding in FINDINGS
    assert len({_perturb(kind, seed).text for seed in range(8)}) > 1  # and the rng does choose


def test_swap_laterality_swaps_the_clause_only() -> None:
    before = read_claims(REPORT)
    seen = set()
    for seed in range(8):
        p = _perturb("swap_laterality", seed)
        after = read_claims(p.text)
        assert len(after) == len(before)
        changed = [k for k in range(len(before)) if after[k].text != before[k].text]
        assert changed == [p.sentence]
        old, new = before[p.sentence], after[p.sentence]
        flipped = [(a, b) for a, b in zip(old.claims, new.claims, strict=True) if a.side != b.side]
        assert len(flipped) == 1
        a, b = flipped[0]
        assert a.finding == b.finding == p.finding and {a.side, b.side} == {"left", "right"}
        assert a.side == (TRUTH[a.device] if a.device else TRUTH[a.finding])["side"]
        seen.add((p.sentence, p.finding))
    # "small left pleural effusion and right lower lobe atelectasis": only the effusion's clause is swapped
    assert (1, "Pleural Effusion") in seen
    p = next(p for s in range(8) if (p := _perturb("swap_laterality", s)).sentence == 1)
    assert "small right pleural effusion and right lower lobe atelectasis" in p.text
    # the pacemaker's side is swapped, the heart chambers are not
    p = next(p for s in range(16) if (p := _perturb("swap_laterality", s)).sentence == 3)
    assert "Right chest wall pacemaker with leads in the right atrium and right ventricle." in p.text
    assert p.device == PM


def test_swap_laterality_does_not_apply() -> None:
    assert _perturb("swap_laterality", report="Small bilateral pleural effusions. Moderate cardiomegaly.") is None
    # the report's side disagrees with the truth: swapping would make the report right
    assert _perturb("swap_laterality", truth={"Pleural Effusion": {"side": "right"}}) is None
    # the truth's side is unknown
    assert _perturb("swap_laterality", truth={"Pleural Effusion": {"side": None}}) is None
    assert _perturb("swap_laterality", report="No left pleural effusion.") is None  # a negative claim


def test_change_severity() -> None:
    before = read_claims(REPORT)
    for seed in range(8):
        p = _perturb("change_severity", seed)
        after = read_claims(p.text)
        assert [s.text for k, s in enumerate(after) if k != p.sentence] == [
            s.text for k, s in enumerate(before) if k != p.sentence
        ]
        new = [c for c in after[p.sentence].claims if c.finding == p.finding]
        old = [c for c in before[p.sentence].claims if c.finding == p.finding]
        assert [c.severity for c in old] == ["small"] and [c.severity for c in new] == ["large"]
    report = "Moderate right pneumothorax. The heart is moderately enlarged."
    got = {(_perturb("change_severity", s, report, {"Pneumothorax": {"severity": "moderate"}}).text) for s in range(8)}
    assert got == {"Small right pneumothorax. The heart is moderately enlarged.", report.replace("Moderate", "Large")}
    # moderate never becomes the true level
    truth = {"Pneumothorax": {"severity": "small"}}
    assert {_perturb("change_severity", s, report, truth).text for s in range(6)} == {
        report.replace("Moderate", "Large")
    }


def test_change_severity_does_not_apply() -> None:
    assert _perturb("change_severity", report="Left pleural effusion. Cardiomegaly.") is None  # no severity word
    assert _perturb("change_severity", truth={"Pleural Effusion": {"side": "left"}}) is None  # truth unknown
    assert _perturb("change_severity", report="No large pleural effusion.") is None  # not a positive claim


def test_drop_finding_removes_every_report_of_it() -> None:
    dropped = set()
    for seed in range(12):
        p = _perturb("drop_finding", seed)
        assert p.sentence is None and p.expected == "missed"
        after = _claims(read_claims(p.text))
        key = p.device or p.finding
        assert not any(c.value != 0 and (c.device == key if p.device else c.finding == key) for c in after)
        for other in TRUTH:  # nothing else that is present went missing
            if other != key:
                assert any(c.value == 1 and other in (c.finding, c.device) for c in after)
        dropped.add(key)
    # the effusion shares its sentence with the only atelectasis: it cannot be dropped alone
    assert dropped == {"Cardiomegaly", "pacemaker"}
    p = next(p for s in range(12) if (p := _perturb("drop_finding", s)).finding == "Cardiomegaly")
    assert "mildly enlarged" not in p.text and "Mild cardiomegaly" not in p.text and "1." not in p.text
    assert "2. Small left pleural effusion." in p.text


def test_drop_finding_does_not_apply() -> None:
    assert _perturb("drop_finding", truth={"Pneumothorax": {"side": "left"}}) is None  # not reported
    assert _perturb("drop_finding", report="Small left pleural effusion.", truth=TRUTH) is None  # nothing left


def test_insert_finding_asserts_an_absent_finding() -> None:
    before = [s.text for s in read_claims(REPORT)]
    inserted = set()
    for seed in range(20):
        p = _perturb("insert_finding", seed)
        after = read_claims(p.text)
        assert [s.text for k, s in enumerate(after) if k != p.sentence] == before
        new = after[p.sentence].claims
        assert new and all(c.finding == p.finding and c.value == 1 and c.device == p.device for c in new)
        assert p.finding not in TRUTH and p.finding not in ("Enlarged Cardiomediastinum", "Lung Opacity")
        assert p.finding != SD  # a device is present (the pacemaker): no device is inserted
        inserted.add(p.finding)
        if p.finding in ("Pleural Other", "Fracture", "Lung Lesion", "Pneumonia", "Consolidation"):
            assert new[0].side in ("left", "right")
    assert len(inserted) >= 4
    # no device present nor reported: devices may be inserted, with their side where they have one
    report = "The heart is normal in size. No pleural effusion."
    devices = [p for s in range(60) if (p := _perturb("insert_finding", s, report, {})).device]
    assert len({p.device for p in devices}) >= 3
    for p in devices:
        (claim,) = read_claims(p.text)[p.sentence].claims
        assert claim.device == p.device and (claim.side is not None) == (p.device in ("central line", PM, CT))


def test_insert_templates_read_back() -> None:
    """Every template, at every side and severity, reads back as one positive claim with those attributes."""
    words = {
        "small": ("small", "mild", "mildly"),
        "moderate": ("moderate",) * 3,
        "large": ("large", "severe", "markedly"),
    }
    for key, templates in INSERT_TEMPLATES.items():
        finding, device = (SD, key) if key in DEVICES else (key, None)
        for template, side, level in itertools.product(templates, ("left", "right"), ("small", "moderate", "large")):
            size, grade, adverb = words[level]
            sev = size if finding in ("Pleural Effusion", "Pneumothorax") else grade
            values = {"side": side, "sev": sev, "sevly": adverb, "cm": "2.5", "mm": "8", "rib": "sixth"}
            text = template.format(**values, **{k.capitalize(): v.capitalize() for k, v in values.items()})
            (read,) = read_claims(text[0].upper() + text[1:])
            (claim,) = read.claims
            want_side = side if "{side}" in template.lower() and device in (None, "central line", PM, CT) else None
            want_severity = level if "{sev" in template.lower() and finding in SEVERITY_FINDINGS else None
            got = (claim.finding, claim.value, claim.side, claim.severity, claim.device)
            assert got == (finding, 1, want_side, want_severity, device), text


def test_insert_finding_does_not_apply_when_everything_is_present() -> None:
    everything = {k: {} for k in (*FINDINGS, *DEVICES)}
    assert _perturb("insert_finding", truth=everything) is None
    assert _perturb("insert_finding", report="") is None


def test_none_and_unknown_kinds() -> None:
    p = _perturb("none")
    assert p == Perturbation("none", REPORT, None, None, "")
    with pytest.raises(ValueError, match="unknown perturbation"):
        _perturb("shuffle")


# ------------------------------------------------------------------------------------------------------ real text
@pytest.fixture(scope="module")
def iu_texts() -> list[str]:
    reports = load_iu_xray(IUXrayImportConfig(label_reports=False)).reports.iloc[::12]
    return [report_text(f, i) for f, i in zip(reports["findings"], reports["impression"], strict=True)]


def test_iu_reports_agree_with_the_labeler(iu_texts) -> None:
    assert len(iu_texts) >= 300
    reads = read_claims_many(iu_texts)
    labels = label_reports(iu_texts)
    for text, sentences, (_, row) in zip(iu_texts, reads, labels.iterrows(), strict=True):
        mine = {c.finding for c in _claims(sentences) if c.value == 1}
        assert mine == {f for f in FINDINGS if row[f] == 1}, text
        for s in sentences:
            assert s.span is not None
            assert all(c.span is not None for c in s.claims)
    assert isinstance(claims_table(reads[0]), pd.DataFrame)


def test_iu_reports_perturb_visibly(iu_texts) -> None:
    applied = dict.fromkeys(PERTURBATIONS, 0)
    rng = np.random.default_rng(7)
    for text in iu_texts[:120]:
        sentences = read_claims(text)
        truth = {}
        for c in _claims(sentences):  # the report taken as the truth of its image
            if c.value == 1:
                truth.setdefault(c.device or c.finding, {"side": c.side, "severity": c.severity})
        for kind in PERTURBATIONS:
            p = perturb_report(text, kind, present=truth, rng=rng)
            if p is None:
                continue
            applied[kind] += 1
            after = read_claims(p.text)
            if kind == "drop_finding":
                key = p.device or p.finding
                assert not any(c.value != 0 and key in (c.finding, c.device) for c in _claims(after))
            else:
                assert p.sentence is not None and p.sentence < len(after)
                assert any(c.finding == p.finding and c.value == 1 for c in after[p.sentence].claims)
                assert after[p.sentence].text not in [s.text for s in sentences]
    assert applied["insert_finding"] == 120 and applied["drop_finding"] >= 20
    assert applied["swap_laterality"] >= 3 and applied["change_severity"] >= 3
