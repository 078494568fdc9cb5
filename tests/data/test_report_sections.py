"""Report section parsing (MIMIC-style free text) and sentence splitting."""

from __future__ import annotations

from cxrlens.data.reports import parse_sections, split_sentences

MIMIC_STYLE = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. Heart size: normal.

 IMPRESSION:

 1. No acute cardiopulmonary process.
 2. Dr. ___ was notified at 2:30 p.m. by phone.

 NOTIFICATION:  The findings were discussed with Dr. ___.
"""


def test_mimic_style_sections() -> None:
    s = parse_sections(MIMIC_STYLE)
    assert s.indication == "___F with new onset ascites // eval for infection"
    assert s.comparison == "None."
    assert s.technique == "CHEST (PA AND LAT) Chest PA and lateral"  # EXAMINATION + TECHNIQUE
    assert s.findings.startswith("There is no focal consolidation") and s.findings.endswith("Heart size: normal.")
    assert "Bilateral nodular opacities" in s.findings  # wrapped line joined
    assert s.impression.startswith("1. No acute cardiopulmonary process.") and "NOTIFICATION" not in s.impression
    assert s.other == {"notification": "The findings were discussed with Dr. ___."}
    assert s.preamble == "" and s.has_sections  # FINAL REPORT banner dropped


def test_headers_in_mixed_case_inline_and_history_alias() -> None:
    s = parse_sections("Clinical history: fever.\nFindings: lungs clear. Impression: normal chest.")
    assert (s.indication, s.findings, s.impression) == ("fever.", "lungs clear.", "normal chest.")
    s = parse_sections("HISTORY: cough\nFINDINGS AND IMPRESSION: Stable cardiomegaly.\r\nCONCLUSION: no change")
    assert s.indication == "cough" and s.findings == "Stable cardiomegaly." and s.impression == "no change"


def test_no_headers_keeps_text_as_body() -> None:
    s = parse_sections("Heart size: normal.\nNo effusion or pneumothorax.")
    assert not s.has_sections and s.findings == ""
    assert s.body() == "Heart size: normal. No effusion or pneumothorax."  # mixed-case unknown name is not a header


def test_sentences_numbered_lists_abbreviations_decimals() -> None:
    text = "1. Cardiomegaly.\n2. Small effusion vs. atelectasis, approx. 2.5 cm. in size. No PTX!  Is there fluid? Yes"
    assert split_sentences(text) == [
        "Cardiomegaly.",
        "Small effusion vs. atelectasis, approx. 2.5 cm. in size.",
        "No PTX!",
        "Is there fluid?",
        "Yes",
    ]
    s = parse_sections(MIMIC_STYLE)
    assert split_sentences(s.impression) == [
        "No acute cardiopulmonary process.",
        "Dr. ___ was notified at 2:30 p.m. by phone.",
    ]
    assert split_sentences(s.findings) == [
        "There is no focal consolidation, pleural effusion or pneumothorax.",
        "Bilateral nodular opacities that most likely represent nipple shadows.",
        "Heart size: normal.",
    ]
    assert split_sentences("") == [] and split_sentences(" . ") == []
    assert split_sentences("Paragraph one\n\nParagraph two") == ["Paragraph one", "Paragraph two"]
