"""Report compilation: evidence on every sentence, dedupe, contradiction resolution, anatomy order, impression."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.interpret.features import calibrate_thresholds
from cxrlens.report.compile import (
    NORMAL_IMPRESSION,
    CompileConfig,
    DescriptionBank,
    compile_report,
)

L = {name: i for i, name in enumerate(CHEXPERT_LABELS)}
# sentence → (label, value) that the stand-in signature gives it
SIG = {
    "Small left pleural effusion.": ("Pleural Effusion", 1.0),
    "There is a small left pleural effusion.": ("Pleural Effusion", 1.0),
    "No pleural effusion.": ("Pleural Effusion", 0.0),
    "The heart is enlarged.": ("Cardiomegaly", 1.0),
    "Endotracheal tube in good position.": ("Support Devices", 1.0),
    "No pneumothorax.": ("Pneumothorax", 0.0),
    "Degenerative changes of the spine.": (None, None),
}


def _signature(texts):
    out = np.full((len(texts), 14), np.nan, np.float32)
    for i, t in enumerate(texts):
        label, value = SIG[t]
        if label:
            out[i, L[label]] = value
    return out


def _embed(texts):
    """Same-finding paraphrases get near-identical vectors; everything else is orthogonal."""
    keys = sorted({(SIG[t][0] or t, SIG[t][1]) for t in texts}, key=str)
    out = np.zeros((len(texts), len(keys) + 1), np.float32)
    for i, t in enumerate(texts):
        out[i, keys.index((SIG[t][0] or t, SIG[t][1]))] = 1.0
    return out


def _bank(rows):
    df = pd.DataFrame(rows, columns=["feature", "sentences", "confidence"])
    return DescriptionBank.from_descriptions(df, embed=_embed, signature=_signature)


BANK_ROWS = [
    (0, ["Small left pleural effusion."], 0.9),
    (1, ["There is a small left pleural effusion."], 0.8),  # paraphrase of feature 0
    (2, ["No pleural effusion."], 0.5),  # contradicts 0/1
    (3, ["The heart is enlarged."], 0.7),
    (4, ["Endotracheal tube in good position."], 0.9),
    (5, ["No pneumothorax.", "Degenerative changes of the spine."], 0.6),
    (6, [], 0.0),  # "no consistent finding": never in a report
]


def test_dedupe_contradiction_order_and_evidence() -> None:
    bank = _bank(BANK_ROWS)
    thr = np.ones(7, np.float32)
    codes = np.array([3.0, 2.0, 1.5, 2.0, 1.2, 1.1, 9.0], np.float32)
    rep = compile_report(codes, bank, thr, heatmaps={0: "heatmaps/f0.png"})
    texts = [s.text for s in rep.findings]
    assert texts.count("Small left pleural effusion.") == 1 and "There is a small left pleural effusion." not in texts
    eff = next(s for s in rep.findings if s.text == "Small left pleural effusion.")
    assert [e.feature for e in eff.evidence] == [0, 1] and eff.evidence[0].heatmap == "heatmaps/f0.png"
    # contradiction: effusion present (evidence 3*0.9 + 2*0.8) beats absent (1.5*0.5)
    assert "No pleural effusion." not in texts and [s.text for s in rep.dropped] == ["No pleural effusion."]
    assert texts == [
        "Endotracheal tube in good position.",  # lines and tubes
        "Small left pleural effusion.",  # pleura
        "No pneumothorax.",
        "The heart is enlarged.",  # heart
        "Degenerative changes of the spine.",  # bones
    ]
    assert all(s.evidence and all(e.activation >= e.threshold for e in s.evidence) for s in rep.findings)
    assert rep.impression[0].text == "Small left pleural effusion."  # strongest positive first
    js = rep.to_json()
    assert js["findings"][0]["evidence"][0]["feature"] == 4 and js["text"].startswith("FINDINGS: Endotracheal")


def test_stronger_negative_wins_and_normal_impression() -> None:
    bank = _bank(BANK_ROWS)
    codes = np.zeros(7, np.float32)
    codes[[0, 2, 5]] = [1.0, 9.0, 2.0]  # weak positive effusion vs strong negative
    rep = compile_report(codes, bank, np.ones(7, np.float32))
    assert [s.text for s in rep.findings] == [
        "No pleural effusion.",
        "No pneumothorax.",
        "Degenerative changes of the spine.",
    ]
    assert [s.text for s in rep.impression] == [NORMAL_IMPRESSION]
    assert {e.feature for e in rep.impression[0].evidence} == {2, 5}


def test_threshold_and_max_features() -> None:
    bank = _bank(BANK_ROWS)
    codes = np.array([0.5, 0, 0, 2.0, 3.0, 0, 0], np.float32)
    thr = np.array([1.0, 1, 1, 1, 1, 1, 1], np.float32)
    rep = compile_report(codes, bank, thr, CompileConfig(max_features=1))
    assert [s.text for s in rep.findings] == ["Endotracheal tube in good position."]
    assert compile_report(np.zeros(7), bank, thr).text == "FINDINGS: \nIMPRESSION:"


def test_calibrated_thresholds() -> None:
    codes = np.array([[0, 1, 0], [0, 3, 0], [0, 5, 2]], np.float32)
    thr = calibrate_thresholds(codes, quantile=0.5)
    assert np.isinf(thr[0]) and thr[1] == 3 and thr[2] == 2
