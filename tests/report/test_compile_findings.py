"""The finding-readout compiler: the readout decides, descriptions give words, evidence maps give the place."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlens.interpret.readout import FindingReadout
from cxrlens.report.compile import NORMAL_IMPRESSION, compile_findings, place_of
from tests.report.test_compile import _bank

LABELS = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax")
WORDS = {
    "Cardiomegaly": ("Cardiomegaly.", "The heart is normal in size."),
    "Pleural Effusion": ("Pleural effusion.", "No pleural effusion."),
    "Pneumothorax": ("Pneumothorax.", "No pneumothorax."),
}


def _readout(weights: np.ndarray, threshold=(1.0, 1.0, 1.0), negative=(-1.0, -1.0, -1.0)) -> FindingReadout:
    return FindingReadout(
        LABELS,
        np.asarray(weights, np.float32),
        np.zeros(3, np.float32),
        np.asarray(threshold, np.float32),
        np.asarray(negative, np.float32),
        pd.DataFrame({"label": LABELS}),
    )


def _setup():
    # f0: "Small left pleural effusion." — the readout's effusion feature; f1: same description, but it fires on a
    # confound (flagged at interpretation, so the readout gave it no weight); f2: "The heart is enlarged."
    bank = _bank(
        [
            (0, ["Small left pleural effusion."], 0.6),
            (1, ["There is a small left pleural effusion."], 0.9),
            (2, ["The heart is enlarged."], 0.5),
        ]
    )
    W = np.zeros((3, 4), np.float32)
    W[1, 0] = 2.0  # effusion ← f0
    W[0, 2] = 1.5  # cardiomegaly ← f2
    W[2, 3] = 1.0  # pneumothorax ← f3 (no description)
    return bank, _readout(W), np.ones(4, np.float32)


def test_a_sentence_whose_feature_fires_on_a_confound_is_dropped() -> None:
    bank, ro, thr = _setup()
    codes = np.array([0.0, 5.0, 0.0, 0.0], np.float32)  # only the confound feature fires, strongly
    rep = compile_findings(codes, ro, bank, thr, WORDS)
    texts = [s.text for s in rep.findings]
    assert "There is a small left pleural effusion." not in texts and "Small left pleural effusion." not in texts
    assert not any(s.positive for s in rep.findings + rep.impression)
    assert rep.text.strip() == "FINDINGS: \nIMPRESSION:".strip()  # nothing decided: nothing said, never padded


def test_present_findings_take_their_features_words_else_the_corpus_sentence() -> None:
    bank, ro, thr = _setup()
    codes = np.array([1.0, 5.0, 0.0, 2.0], np.float32)
    rep = compile_findings(codes, ro, bank, thr, WORDS)
    by_finding = {s.finding: s for s in rep.findings}
    eff = by_finding["Pleural Effusion"]
    assert eff.text == "Small left pleural effusion." and [e.feature for e in eff.evidence] == [0]
    assert eff.evidence[0].contribution == 2.0 and eff.score == 1.0
    assert by_finding["Pneumothorax"].text == "Pneumothorax."  # f3 has no description: the corpus's words
    assert "Cardiomegaly" not in by_finding  # logit 0: neither ≥ 1 (present) nor < −1 (absent) — unsaid
    assert [s.finding for s in rep.impression] == ["Pleural Effusion", "Pneumothorax"]  # by margin


def test_unsure_findings_are_left_unsaid_and_absent_ones_use_the_negative_sentence() -> None:
    bank, _, thr = _setup()
    W = np.zeros((3, 4), np.float32)
    W[0, 2], W[1, 0], W[2, 3] = 1.0, 1.0, -1.0
    ro = _readout(W, threshold=(1.0, 1.0, 1.0), negative=(-0.5, 0.2, -0.5))
    rep = compile_findings(np.array([0.0, 0.0, 0.5, 1.0], np.float32), ro, bank, thr, WORDS)
    texts = {s.finding: s.text for s in rep.findings}
    # cardiomegaly logit 0.5: between −0.5 and 1 → unsaid; effusion 0 < 0.2 → absent; pneumothorax −1 → absent
    assert "Cardiomegaly" not in texts
    assert texts["Pleural Effusion"] == "No pleural effusion." and texts["Pneumothorax"] == "No pneumothorax."
    assert rep.impression[0].text == NORMAL_IMPRESSION


def test_evidence_map_and_place_from_the_patch_codes() -> None:
    bank, ro, thr = _setup()
    maps = np.zeros((16, 4), np.float32)  # 4 × 4 grid; f0 fires at row 3, column 0 (image left, bottom)
    maps[12, 0] = 1.0
    maps[13, 0] = 0.4
    codes = maps.max(0)
    rep = compile_findings(codes, ro, bank, thr, WORDS, maps_TF=maps, grid=(4, 4))
    eff = next(s for s in rep.findings if s.finding == "Pleural Effusion")
    assert (eff.side, eff.zone) == ("right", "lower")  # image left = patient right on a frontal view
    assert eff.grid == (4, 4) and len(eff.evidence_map) == 16 and eff.evidence_map[12] == 2.0
    js = eff.to_json()
    assert js["side"] == "right" and js["evidence"][0]["contribution"] == 2.0


def test_place_of() -> None:
    m = np.zeros(9)
    m[4] = 1
    assert place_of(m, (3, 3)) == ("midline", "middle")
    m = np.zeros(8)
    m[7] = 1
    assert place_of(m, (2, 4)) == ("left", "lower")
    m = np.zeros(8)
    m[0] = 1
    assert place_of(m, (2, 4)) == ("right", "upper")


def test_words_never_name_another_side_than_the_evidence() -> None:
    bank = _bank([(0, ["Small left pleural effusion."], 0.6), (1, ["There is a small left pleural effusion."], 0.9)])
    W = np.zeros((3, 2), np.float32)
    W[1, 0] = W[1, 1] = 1.0
    ro = _readout(W)
    maps = np.zeros((16, 2), np.float32)
    maps[4, 0] = 2.0  # peaks in column 0: image left = patient RIGHT, while both descriptions say left
    rep = compile_findings(maps.max(0), ro, bank, np.ones(2, np.float32), WORDS, maps_TF=maps, grid=(4, 4))
    eff = next(s for s in rep.findings if s.finding == "Pleural Effusion")
    assert eff.side == "right" and eff.text == "Pleural effusion."  # the side-free corpus sentence instead
    maps[4, 0], maps[7, 0] = 0.0, 2.0  # now it peaks on the patient's left: the feature's own words fit
    rep = compile_findings(maps.max(0), ro, bank, np.ones(2, np.float32), WORDS, maps_TF=maps, grid=(4, 4))
    eff = next(s for s in rep.findings if s.finding == "Pleural Effusion")
    assert eff.side == "left" and eff.text == "Small left pleural effusion."
