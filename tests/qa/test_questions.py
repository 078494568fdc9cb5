"""The question parser (a written table of phrasings) and the generated benchmark question set."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from cxrlens.qa import questionset as qs
from cxrlens.qa.questions import KINDS, Question, parse_question
from cxrlens.qa.questionset import QUESTION_COLUMNS, generate_questions
from cxrlens.qa.vocab import DEVICES, FINDINGS, LATERAL_DEVICES, LATERAL_FINDINGS, SEVERITIES, SEVERITY_FINDINGS, SIDES

SD = "Support Devices"
FIELDS = ("kind", "finding", "device", "side", "severity", "polarity")


def P(finding: str, side: str | None = None, severity: str | None = None, polarity: bool = True) -> tuple:
    return ("presence", finding, None, side, severity, polarity)


def L(finding: str) -> tuple:
    return ("laterality", finding, None, None, None, True)


def S(finding: str) -> tuple:
    return ("severity", finding, None, None, None, True)


def D(device: str | None, side: str | None = None, polarity: bool = True) -> tuple:
    return ("device", SD, device, side, None, polarity)


def DP(device: str | None) -> tuple:
    return ("device_position", SD, device, None, None, True)


def N(polarity: bool = True) -> tuple:
    return ("normal", None, None, None, None, polarity)


FL = ("findings", None, None, None, None, True)


def U(why: str) -> tuple:
    """Unsupported; ``why`` is a fragment of the reason."""
    return ("unsupported", None, None, None, None, True, why)


PHRASINGS: list[tuple[str, tuple]] = [
    # ---- presence: plain, case, punctuation
    ("is there a pleural effusion?", P("Pleural Effusion")),
    ("Is there a PNEUMOTHORAX???", P("Pneumothorax")),
    ("any ptx?", P("Pneumothorax")),
    ("PTX", P("Pneumothorax")),
    ("does the patient have cardiomegaly", P("Cardiomegaly")),
    ("is the heart enlarged?", P("Cardiomegaly")),
    ("is the patient's heart big?", P("Cardiomegaly")),
    ("enlarged heart?", P("Cardiomegaly")),
    ("big heart?", P("Cardiomegaly")),
    ("is the cardiac silhouette enlarged?", P("Cardiomegaly")),
    ("is the heart size increased?", P("Cardiomegaly")),
    ("widened mediastinum?", P("Enlarged Cardiomediastinum")),
    ("is the mediastinum widened?", P("Enlarged Cardiomediastinum")),
    ("is there a mediastinal mass?", P("Enlarged Cardiomediastinum")),
    # ---- typos
    ("effusoin?", P("Pleural Effusion")),
    ("pleural efusion", P("Pleural Effusion")),
    ("pleural effussion?", P("Pleural Effusion")),
    ("cardiomegally", P("Cardiomegaly")),
    ("cardio megaly", P("Cardiomegaly")),
    ("pneumo thorax?", P("Pneumothorax")),
    ("pneumothoraks?", P("Pneumothorax")),
    ("pnuemothorax?", P("Pneumothorax")),
    ("pnuemonia?", P("Pneumonia")),
    ("pnemonia", P("Pneumonia")),
    ("atelectisis", P("Atelectasis")),
    ("atelectasiss", P("Atelectasis")),
    ("consolidaton", P("Consolidation")),
    ("edma?", P("Edema")),
    ("opasity?", P("Lung Opacity")),
    ("lefft effusion?", P("Pleural Effusion", side="left")),
    # ---- synonyms: edema vs effusion
    ("CHF?", P("Edema")),
    ("fluid overload?", P("Edema")),
    ("pulmonary edema?", P("Edema")),
    ("vascular congestion?", P("Edema")),
    ("is there pulmonary vascular congestion?", P("Edema")),
    ("does the patient have heart failure?", P("Edema")),
    ("is the heart failing?", P("Edema")),
    ("kerley b lines?", P("Edema")),
    ("fluid in the lungs?", P("Edema")),
    ("fluid around the lung?", P("Pleural Effusion")),
    ("any fluid?", P("Pleural Effusion")),
    ("blunted costophrenic angle?", P("Pleural Effusion")),
    # ---- synonyms: collapse, infiltrate, opacity, lesion, fracture, pleural other
    ("collapse?", P("Atelectasis")),
    ("volume loss?", P("Atelectasis")),
    ("collapsed lung?", P("Pneumothorax")),
    ("infiltrate?", P("Pneumonia")),
    ("airspace disease?", P("Lung Opacity")),
    ("opacity?", P("Lung Opacity")),
    ("ground glass opacity?", P("Lung Opacity")),
    ("nodule?", P("Lung Lesion")),
    ("any lung nodules?", P("Lung Lesion")),
    ("mass?", P("Lung Lesion")),
    ("granuloma?", P("Lung Lesion")),
    ("spot on the lung?", P("Lung Lesion")),
    ("is there a cavitary lesion?", P("Lung Lesion")),
    ("broken rib?", P("Fracture")),
    ("rib fx?", P("Fracture")),
    ("pleural thickening?", P("Pleural Other")),
    ("pleural plaque?", P("Pleural Other")),
    # ---- sides and lobes
    ("is there a left effusion?", P("Pleural Effusion", side="left")),
    ("R ptx?", P("Pneumothorax", side="right")),
    ("lt effusion", P("Pleural Effusion", side="left")),
    ("rt pneumothorax", P("Pneumothorax", side="right")),
    ("is there a right sided pleural effusion", P("Pleural Effusion", side="right")),
    ("bilateral effusions?", P("Pleural Effusion", side="bilateral")),
    ("effusion on both sides?", P("Pleural Effusion", side="bilateral")),
    ("is there effusion on the left and right?", P("Pleural Effusion", side="bilateral")),
    ("is there a RLL consolidation?", P("Consolidation", side="right")),
    ("any LLL atelectasis?", P("Atelectasis", side="left")),
    ("bibasilar atelectasis?", P("Atelectasis", side="bilateral")),
    ("hazy opacity in the right base?", P("Lung Opacity", side="right")),
    ("is there a rib fracture on the left?", P("Fracture", side="left")),
    ("left cardiomegaly?", P("Cardiomegaly")),  # a side of a finding that has none is dropped
    # ---- severities named in a yes/no question
    ("is there a large effusion?", P("Pleural Effusion", severity="large")),
    ("trace effusion?", P("Pleural Effusion", severity="small")),
    ("tiny ptx?", P("Pneumothorax", severity="small")),
    ("mild cardiomegaly?", P("Cardiomegaly", severity="small")),
    ("minimal atelectasis?", P("Atelectasis", severity="small")),
    ("moderate edema?", P("Edema", severity="moderate")),
    ("severe cardiomegaly?", P("Cardiomegaly", severity="large")),
    ("massive effusion?", P("Pleural Effusion", severity="large")),
    ("marked cardiomegaly?", P("Cardiomegaly", severity="large")),
    ("big pneumothorax?", P("Pneumothorax", severity="large")),
    ("is the effusion small?", P("Pleural Effusion", severity="small")),
    # ---- polarity: "yes" means absent
    ("are the lungs clear?", P("Lung Opacity", polarity=False)),
    ("are both lungs clear?", P("Lung Opacity", side="bilateral", polarity=False)),
    ("are the lungs abnormal?", P("Lung Opacity")),
    ("is the heart size normal?", P("Cardiomegaly", polarity=False)),
    ("is the heart normal in size?", P("Cardiomegaly", polarity=False)),
    ("is the heart not enlarged?", P("Cardiomegaly", polarity=False)),
    ("is the mediastinum normal?", P("Enlarged Cardiomediastinum", polarity=False)),
    ("is the cardiomediastinal silhouette normal?", P("Enlarged Cardiomediastinum", polarity=False)),
    ("is there no pneumothorax?", P("Pneumothorax", polarity=False)),
    ("no effusion?", P("Pleural Effusion", polarity=False)),
    ("can you rule out pneumothorax?", P("Pneumothorax", polarity=False)),
    ("are the lungs clear of consolidation?", P("Consolidation", polarity=False)),
    ("is there an effusion, yes or no?", P("Pleural Effusion")),
    # ---- laterality
    ("which side is the pneumothorax?", L("Pneumothorax")),
    ("is the effusion on the left or right?", L("Pleural Effusion")),
    ("where is the consolidation?", L("Consolidation")),
    ("is the effusion unilateral or bilateral?", L("Pleural Effusion")),
    ("which lung is affected by the pneumonia?", L("Pneumonia")),
    ("what is the location of the nodule?", L("Lung Lesion")),
    ("where is the fracture?", L("Fracture")),
    ("where is the effusoin located?", L("Pleural Effusion")),
    ("PTX: left or right?", L("Pneumothorax")),
    # ---- severity
    ("how large is the effusion?", S("Pleural Effusion")),
    ("how bad is the cardiomegaly?", S("Cardiomegaly")),
    ("is the effusion small or large?", S("Pleural Effusion")),
    ("is the pneumothorax large or small?", S("Pneumothorax")),
    ("is the effusion mild, moderate or severe?", S("Pleural Effusion")),
    ("how big is the heart?", S("Cardiomegaly")),
    ("is the heart big or small?", S("Cardiomegaly")),
    ("what is the size of the effusion?", S("Pleural Effusion")),
    ("what grade is the edema?", S("Edema")),
    ("how much fluid is there?", S("Pleural Effusion")),
    ("how extensive is the consolidation?", S("Consolidation")),
    # ---- devices: presence
    ("is there an endotracheal tube?", D("endotracheal tube")),
    ("ETT?", D("endotracheal tube")),
    ("ET tube?", D("endotracheal tube")),
    ("breathing tube?", D("endotracheal tube")),
    ("is the patient intubated?", D("endotracheal tube")),
    ("endotrachial tube", D("endotracheal tube")),
    ("NG tube present?", D("enteric tube")),
    ("NGT?", D("enteric tube")),
    ("OG tube?", D("enteric tube")),
    ("feeding tube?", D("enteric tube")),
    ("Dobhoff?", D("enteric tube")),
    ("nasogastic tube?", D("enteric tube")),
    ("is a PICC in place?", D("central line")),
    ("CVC?", D("central line")),
    ("central venous catheter?", D("central line")),
    ("IJ line?", D("central line")),
    ("subclavian line?", D("central line")),
    ("port?", D("central line")),
    ("is there a port-a-cath?", D("central line")),
    ("pacer?", D("pacemaker")),
    ("PPM?", D("pacemaker")),
    ("does the patient have an AICD?", D("pacemaker")),
    ("ICD?", D("pacemaker")),
    ("defibrillator?", D("pacemaker")),
    ("are there pacing wires?", D("pacemaker")),
    ("pacemkaer", D("pacemaker")),
    ("chest drain?", D("chest tube")),
    ("pigtail?", D("chest tube")),
    ("thoracostomy tube?", D("chest tube")),
    ("any lines or tubes?", D(None)),
    ("are there any support devices?", D(None)),
    ("is the pacemaker on the left?", D("pacemaker", side="left")),
    ("right chest tube?", D("chest tube", side="right")),
    ("is there a central line in the right IJ?", D("central line", side="right")),
    ("no pacemaker?", D("pacemaker", polarity=False)),
    # ---- devices: position
    ("which side is the pacemaker on?", DP("pacemaker")),
    ("where is the central line?", DP("central line")),
    ("is the ET tube in good position?", DP("endotracheal tube")),
    ("is the ETT too low?", DP("endotracheal tube")),
    ("where does the PICC tip terminate?", DP("central line")),
    ("is the NG tube in the stomach?", DP("enteric tube")),
    ("is the enteric tube correctly placed?", DP("enteric tube")),
    ("is the chest tube on the left or right?", DP("chest tube")),
    ("where is the tube?", DP(None)),
    # ---- the whole image: findings, normal
    ("what are the findings?", FL),
    ("what do you see?", FL),
    ("describe the x-ray", FL),
    ("any abnormalities?", FL),
    ("what is wrong with this x-ray?", FL),
    ("tell me about the image", FL),
    ("is this chest x-ray normal?", N()),
    ("is the study unremarkable?", N()),
    ("are there no findings?", N()),
    ("no acute cardiopulmonary process?", N()),
    ("is the chest x ray normal or not?", N()),
    ("is this x-ray abnormal?", N(polarity=False)),
    ("is anything wrong?", N(polarity=False)),
    ("is there anything abnormal?", N(polarity=False)),
    ("is the film not normal?", N(polarity=False)),
    # ---- unsupported: comparison (wins over a named finding)
    ("has the effusion improved since the last study?", U("prior")),
    ("is this new compared to prior?", U("prior")),
    ("is it worse?", U("prior")),
    ("interval change?", U("prior")),
    ("is the effusion larger than before?", U("prior")),
    ("is the effusion bigger than on the prior?", U("prior")),
    ("did the effusion resolve?", U("prior")),
    ("is the pneumothorax still there?", U("prior")),
    ("is the opacity stable?", U("prior")),
    ("is the heart enlarged compared to yesterday?", U("prior")),
    ("any new findings?", U("prior")),
    # ---- unsupported: clinical history, patient facts
    ("why was this ordered?", U("history")),
    ("how old is the patient?", U("history")),
    ("does he smoke?", U("history")),
    ("is the patient male or female?", U("history")),
    ("does the patient have a fever?", U("history")),
    ("what are the patient's symptoms?", U("history")),
    # ---- unsupported: management
    ("should we place a chest tube?", U("management")),
    ("does this patient need a chest tube?", U("management")),
    ("should the ETT be pulled back?", U("management")),
    ("should we give diuretics?", U("management")),
    ("does the patient need antibiotics for the pneumonia?", U("management")),
    # ---- unsupported: outside the vocabulary
    ("is there a hiatal hernia?", U("hiatal hernia")),
    ("is there a pericardial effusion?", U("pericardial effusion")),
    ("is there emphysema?", U("emphysema")),
    ("free air under the diaphragm?", U("free air")),
    ("does the patient have tuberculosis?", U("tuberculosis")),
    ("is there a tracheostomy tube?", U("tracheostomy")),
    ("is there a swan-ganz catheter?", U("swan ganz")),
    ("is there a blorp?", U("names no finding")),
    ("is this a PA film?", U("how the image was taken")),
    # ---- unsupported: no side / no grade / several things at once
    ("which side is the heart on?", U("no side")),
    ("where is the edema?", U("no side")),
    ("how severe is the fracture?", U("not graded")),
    ("is there an effusion or a pneumothorax?", U("more than one")),
    ("is there cardiomegaly and pleural effusion?", U("more than one")),
    # ---- not a question about the image
    ("", U("not a question")),
    ("   ", U("not a question")),
    ("???", U("not a question")),
    ("asdf qwerty", U("not a question")),
    ("12345", U("not a question")),
    ("hello", U("not a question")),
]


def test_the_table_is_large_and_covers_every_kind() -> None:
    assert len(PHRASINGS) >= 120
    assert {e[0] for _, e in PHRASINGS} == set(KINDS)
    assert len({t for t, _ in PHRASINGS}) == len(PHRASINGS), "duplicate phrasing in the table"


@pytest.mark.parametrize(("text", "expected"), PHRASINGS, ids=[t or "<empty>" for t, _ in PHRASINGS])
def test_parse(text: str, expected: tuple) -> None:
    q = parse_question(text)
    assert isinstance(q, Question) and q.text == text
    assert tuple(getattr(q, f) for f in FIELDS) == expected[:6], q
    if q.kind == "unsupported":
        assert expected[6] in q.reason, q.reason
    else:
        assert q.reason == ""


def test_parsed_fields_use_the_shared_vocabulary() -> None:
    for text, _ in PHRASINGS:
        q = parse_question(text)
        assert q.kind in KINDS
        assert q.finding is None or q.finding in FINDINGS
        assert q.device is None or q.device in DEVICES
        assert q.side is None or q.side in SIDES
        assert q.severity is None or q.severity in SEVERITIES
        assert (q.device is None) or q.finding == SD


UNANSWERABLE = [
    "is the effusion bigger than on the prior?",
    "is the pneumothorax larger than before?",
    "has the left effusion increased?",
    "is the cardiomegaly worse than last time?",
    "is the large right effusion new?",
    "is the ETT in the same position as before?",
    "has the pacemaker been removed since the prior study?",
    "compared with the previous film, is there more edema?",
    "is the consolidation improving?",
    "why is there an effusion?",
    "should we drain the pleural effusion?",
    "what is the patient's name?",
    "is there a hiatal hernia on the left?",
]


@pytest.mark.parametrize("text", UNANSWERABLE)
def test_unsupported_has_a_reason_and_claims_nothing(text: str) -> None:
    q = parse_question(text)
    assert q.kind == "unsupported"
    assert q.reason.strip()
    assert (q.finding, q.device, q.side, q.severity, q.polarity) == (None, None, None, None, True)


def test_every_unsupported_question_in_the_table_has_a_sentence_reason() -> None:
    for text, _ in PHRASINGS:
        q = parse_question(text)
        if q.kind == "unsupported":
            assert len(q.reason.split()) >= 5 and q.finding is None and q.device is None


@pytest.mark.parametrize("text", ["x" * 5000, "é ü ß 肺", "\n\t", "effusion " * 200, "?!.,;:()[]", "0.5 cm"])
def test_parse_never_raises(text: str) -> None:
    assert parse_question(text).kind in KINDS


# ------------------------------------------------------------------------------------------- generated questions
def test_every_template_and_name_parses_back() -> None:
    """All phrasings the generator can produce (every template × every name × side / severity word)."""
    cap = qs._capital
    cases: list[tuple[str, tuple]] = []
    for finding, names in qs.FINDING_NAMES.items():
        for f in names:
            cases += [(t.format(f=f, F=cap(f)), P(finding)) for t in qs._TEMPLATES["presence"]]
            if finding in LATERAL_FINDINGS:
                cases += [(t.format(f=f, F=cap(f)), L(finding)) for t in qs._TEMPLATES["laterality"]]
            if finding in SEVERITY_FINDINGS:
                cases += [(t.format(f=f, F=cap(f)), S(finding)) for t in qs._TEMPLATES["severity"]]
        for f in names[:2]:
            for side, words in qs._SIDE_NAMES.items():
                for s in words if finding in LATERAL_FINDINGS else ():
                    cases += [
                        (t.format(f=f, s=s, S=cap(s)), P(finding, side=side)) for t in qs._TEMPLATES["presence_side"]
                    ]
            for sev, words in qs._SEVERITY_NAMES.items():
                for v in words if finding in SEVERITY_FINDINGS else ():
                    cases += [
                        (t.format(f=f, v=v), P(finding, severity=sev)) for t in qs._TEMPLATES["presence_severity"]
                    ]
    for finding, texts in qs._ABSENT_TEMPLATES.items():
        cases += [(t, P(finding, polarity=False)) for t in texts]
    for device, names in qs.DEVICE_NAMES.items():
        for d in names:
            cases += [(t.format(d=d, D=cap(d)), D(device)) for t in qs._TEMPLATES["device"]]
            if device in LATERAL_DEVICES:
                cases += [(t.format(d=d, D=cap(d)), DP(device)) for t in qs._TEMPLATES["device_position"]]
                for side, words in qs._SIDE_NAMES.items():
                    cases += [
                        (t.format(d=d, s=s), D(device, side=side)) for s in words for t in qs._TEMPLATES["device_side"]
                    ]
    cases += [(t, D(None)) for t in qs._TEMPLATES["device_any"]]
    cases += [(t, FL) for t in qs._TEMPLATES["findings"]]
    cases += [(t, N()) for t in qs._TEMPLATES["normal"]] + [(t, N(polarity=False)) for t in qs._TEMPLATES["abnormal"]]
    assert set(qs.FINDING_NAMES) == set(FINDINGS) - {SD} and set(qs.DEVICE_NAMES) == set(DEVICES)
    wrong = [
        (text, tuple(getattr(parse_question(text), f) for f in FIELDS), want)
        for text, want in cases
        if tuple(getattr(parse_question(text), f) for f in FIELDS) != want
    ]
    assert len(cases) > 1000 and wrong == []


def _random_facts(n_images: int = 240, seed: int = 1) -> tuple[pd.DataFrame, list[str]]:
    rng = random.Random(seed)
    ids = [f"img{i:03d}" for i in range(n_images)]
    rows = []
    for i in ids:
        for f in FINDINGS:
            if f != SD and rng.random() < 0.15:
                side = rng.choice(SIDES) if f in LATERAL_FINDINGS else None
                rows.append((i, f, side, rng.choice((*SEVERITIES, None)), None, rng.random() < 0.9))
        for d in DEVICES:
            if rng.random() < 0.1:
                rows.append((i, SD, rng.choice(SIDES), None, d, True))
    return pd.DataFrame(rows, columns=["image_id", "finding", "side", "severity", "device", "certain"]), ids


def _check_parses_back(table: pd.DataFrame) -> None:
    for row in table.itertuples(index=False):
        q = parse_question(row.question)
        assert tuple(getattr(q, f) for f in FIELDS) == tuple(getattr(row, f) for f in FIELDS), row.question


def test_question_set_is_balanced_and_parses_back() -> None:
    facts, ids = _random_facts()
    table = generate_questions(facts, ids, n=420, seed=0)
    assert list(table.columns) == list(QUESTION_COLUMNS) and len(table) == 420
    counts = table["kind"].value_counts()
    assert set(counts.index) == set(KINDS) - {"unsupported"}
    assert counts.max() - counts.min() <= 1, counts
    for kind in ("presence", "device", "normal"):
        answers = table.loc[table["kind"] == kind, "answer"].value_counts()
        assert set(answers.index) == {"yes", "no"} and abs(answers["yes"] - answers["no"]) <= 1, (kind, answers)
    for kind, group in table.groupby("kind"):
        assert group["question"].nunique() >= 4, kind  # several templates, not one
    assert table["polarity"].dtype == bool and (~table["polarity"]).any()
    assert table.loc[table["kind"] == "presence", "side"].notna().any()
    assert table.loc[table["kind"] == "presence", "severity"].notna().any()
    assert table["image_id"].isin(ids).all()
    _check_parses_back(table)


def test_question_set_is_deterministic_by_seed() -> None:
    facts, ids = _random_facts(120)
    a = generate_questions(facts, ids, n=300, seed=3)
    pd.testing.assert_frame_equal(a, generate_questions(facts, ids, n=300, seed=3))
    assert not a.equals(generate_questions(facts, ids, n=300, seed=4))


def test_a_kind_without_candidates_is_skipped_and_the_rest_rebalanced() -> None:
    facts, ids = _random_facts(200)
    facts = facts[facts["finding"] != SD].assign(side=None, severity=None)  # no devices, sides or severities
    table = generate_questions(facts, ids, n=400, seed=0)
    counts = table["kind"].value_counts()
    assert set(counts.index) == {"presence", "findings", "normal"} and len(table) == 400
    assert counts.max() - counts.min() <= 1
    _check_parses_back(table)


def test_fewer_rows_when_the_facts_do_not_allow_more() -> None:
    empty = pd.DataFrame(columns=["image_id", "finding", "side", "severity", "device", "certain"])
    table = generate_questions(empty, ["a", "b"], n=100)  # yes/no kinds would be all "no" (or all "yes"): skipped
    assert table["kind"].tolist() == ["findings"] * 2 and set(table["answer"]) == {"no finding"}
    facts = pd.DataFrame([("a", "Edema", None, None, None, True)], columns=empty.columns)
    table = generate_questions(facts, ["a", "b"], n=100)
    assert table["kind"].value_counts().to_dict() == {"presence": 24, "normal": 2, "findings": 2}
    assert generate_questions(empty, [], n=10).empty


# hand-built ground truth: (image, finding) → [(side, severity)]; devices: (image, device) → side
TRUTH: dict[tuple[str, str], list[tuple[str | None, str | None]]] = {
    ("a", "Pleural Effusion"): [("left", "small")],
    ("b", "Pneumothorax"): [("right", "large")],
    ("d", "Cardiomegaly"): [(None, "moderate")],
    ("d", "Edema"): [(None, None)],
    ("e", "Pleural Effusion"): [("left", "moderate"), ("right", "moderate")],
    ("h", "Lung Opacity"): [("right", "small")],
}
UNCERTAIN = {("b", "Pleural Effusion"), ("g", "Consolidation")}
DEVICE_TRUTH = {("a", "pacemaker"): "left", ("d", "chest tube"): "right", ("h", "endotracheal tube"): "right"}
IMAGES = list("abcdefgh")


def _hand_facts() -> pd.DataFrame:
    rows = [(i, f, side, sev, None, True) for (i, f), facts in TRUTH.items() for side, sev in facts]
    rows += [(i, f, "bilateral", "large", None, False) for i, f in sorted(UNCERTAIN)]
    rows += [(i, SD, side, None, d, True) for (i, d), side in DEVICE_TRUTH.items()]
    rows.append(("f", SD, None, None, None, True))  # a device, but which one is not known
    rows.append(("g", SD, "left", None, "chest tube", False))  # an uncertain device
    rows.append(("zzz", "Pneumothorax", "left", "large", None, True))  # not among the images asked about
    return pd.DataFrame(rows, columns=["image_id", "finding", "side", "severity", "device", "certain"])


def _expected(row) -> str:
    """The right answer from TRUTH, written independently of the generator."""
    img, kind = row.image_id, row.kind
    if kind in ("presence", "device"):
        if kind == "presence":
            facts = TRUTH.get((img, row.finding), [])
        else:
            facts = [(s, None) for (i, d), s in DEVICE_TRUTH.items() if i == img and row.device in (None, d)]
            facts += [(None, None)] if img == "f" and row.device is None else []
        sides = {s for s, _ in facts}
        if row.side == "bilateral":
            present = "bilateral" in sides or {"left", "right"} <= sides
        elif row.side:
            present = bool(sides & {row.side, "bilateral"})
        elif row.severity:
            present = row.severity in {v for _, v in facts}
        else:
            present = bool(facts)
        return "yes" if present == row.polarity else "no"
    if kind == "laterality":
        sides = {s for s, _ in TRUTH[(img, row.finding)]}
        return "bilateral" if len(sides) > 1 else sides.pop()
    if kind == "severity":
        return {v for _, v in TRUTH[(img, row.finding)]}.pop()
    if kind == "device_position":
        return DEVICE_TRUTH[(img, row.device)]
    if kind == "findings":
        found = {f for (i, f) in TRUTH if i == img} | ({SD} if img in "adfh" else set())
        return "; ".join(sorted(found)) or "no finding"
    normal = not any(i == img for i, _ in TRUTH)
    return "yes" if normal == row.polarity else "no"


def test_answers_match_a_hand_built_facts_table() -> None:
    facts = _hand_facts()
    tables = [generate_questions(facts, IMAGES, n=500, seed=s) for s in range(4)]
    table = pd.concat(tables, ignore_index=True)
    assert set(table["image_id"]) <= set(IMAGES)
    for row in table.itertuples(index=False):
        assert row.answer == _expected(row), row
        assert (row.image_id, row.finding) not in UNCERTAIN  # present-but-uncertain: not asked about that finding
        assert not (row.image_id == "f" and row.device is not None)  # which device is unknown
        assert not (row.image_id == "g" and row.finding == SD and row.device in (None, "chest tube"))  # uncertain
        assert not (row.image_id in "bg" and row.kind in ("findings", "normal"))  # an uncertain finding
    asked = set(
        zip(table["image_id"], table["kind"], table["finding"].fillna(""), table["device"].fillna(""), strict=True)
    )
    assert ("e", "laterality", "Pleural Effusion", "") in asked  # left + right rows → "bilateral"
    assert ("d", "severity", "Cardiomegaly", "") in asked
    assert ("a", "device_position", SD, "pacemaker") in asked
    assert ("f", "device", SD, "") in asked and ("f", "normal", "", "") in asked  # devices alone are normal
    assert not any(k == "laterality" and f == "Edema" for _, k, f, _ in asked)  # no side for edema
    assert not any(k == "device_position" and d == "endotracheal tube" for _, k, _, d in asked)
    _check_parses_back(table)
