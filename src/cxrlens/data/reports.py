"""Free-text radiology reports: sections (findings, impression, indication, comparison …) and sentences.

Written for MIMIC-CXR's ``sXXXXXXXX.txt`` reports and anything shaped like them::

                                     FINAL REPORT
     EXAMINATION:  CHEST (PA AND LAT)
     INDICATION:  ___ with cough
     COMPARISON:  ___
     FINDINGS:
     The lungs are clear.  There is no pleural effusion or pneumothorax.
     IMPRESSION:  No acute cardiopulmonary process.

A **header** is a name followed by a colon at the start of a line. Names in capitals (``WET READ:``,
``NOTIFICATION:``) are all headers; in mixed case (``Findings:``) only the known names below are, so a line such as
``Heart size: normal`` inside a section stays text. Known names (any case) are also found inside a line after a
sentence end (``… stable. IMPRESSION: …``), for reports whose line breaks were lost.

Known names → section (the first of each kind wins when a report repeats it, later ones are appended):

* findings: FINDINGS, FINDING, FINDINGS AND IMPRESSION, FINDINGS/IMPRESSION, REPORT
* impression: IMPRESSION, IMPRESSIONS, CONCLUSION, CONCLUSIONS, OPINION, SUMMARY
* indication: INDICATION(S), HISTORY, CLINICAL HISTORY, CLINICAL INDICATION, CLINICAL INFORMATION, CLINICAL DATA,
  REASON FOR EXAM(INATION), REASON FOR STUDY
* comparison: COMPARISON(S), PRIOR, PRIORS, PRIOR STUDIES
* technique: TECHNIQUE, EXAMINATION, EXAM, PROCEDURE, STUDY

Other headers land in ``other`` by their lower-cased name; text before the first header is the ``preamble`` (the
``FINAL REPORT`` banner is dropped). Whitespace inside a section is collapsed to single spaces; the de-identification
token ``___`` is kept as it is.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "ReportSections",
    "parse_sections",
    "parse_side",
    "parse_zone",
    "plain_report_text",
    "split_sentences",
    "states_change",
]

_ALIASES: dict[str, str] = {
    "FINDINGS": "findings",
    "FINDING": "findings",
    "FINDINGS AND IMPRESSION": "findings",
    "FINDINGS/IMPRESSION": "findings",
    "FINDINGS / IMPRESSION": "findings",
    "REPORT": "findings",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
    "CONCLUSION": "impression",
    "CONCLUSIONS": "impression",
    "OPINION": "impression",
    "SUMMARY": "impression",
    "INDICATION": "indication",
    "INDICATIONS": "indication",
    "HISTORY": "indication",
    "CLINICAL HISTORY": "indication",
    "CLINICAL INDICATION": "indication",
    "CLINICAL INFORMATION": "indication",
    "CLINICAL DATA": "indication",
    "REASON FOR EXAM": "indication",
    "REASON FOR EXAMINATION": "indication",
    "REASON FOR STUDY": "indication",
    "COMPARISON": "comparison",
    "COMPARISONS": "comparison",
    "PRIOR": "comparison",
    "PRIORS": "comparison",
    "PRIOR STUDIES": "comparison",
    "TECHNIQUE": "technique",
    "EXAMINATION": "technique",
    "EXAM": "technique",
    "PROCEDURE": "technique",
    "STUDY": "technique",
}
_MAIN = ("findings", "impression", "indication", "comparison", "technique")
_LINE_HEADER = re.compile(r"^[ \t]*(?P<name>[A-Za-z][A-Za-z /&()'-]{0,40}?)[ \t]*:(?P<rest>.*)$")
_INLINE_HEADER = re.compile(
    r"(?<=[.!?])[ \t]+(?P<name>"
    + "|".join(sorted((re.escape(k) for k in _ALIASES), key=len, reverse=True))
    + r")[ \t]*:",
    re.IGNORECASE,
)
_BANNER = re.compile(r"^\s*(FINAL REPORT|PRELIMINARY REPORT|ADDENDUM)\s*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class ReportSections:
    """The sections of one report; every field is a single-spaced string (``""`` when absent)."""

    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    technique: str = ""
    preamble: str = ""
    other: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def has_sections(self) -> bool:
        """True when at least one header was found."""
        return any(getattr(self, k) for k in _MAIN) or bool(self.other)

    def body(self) -> str:
        """Findings + impression when either exists, else the whole text that was parsed (minus banner)."""
        text = " ".join(t for t in (self.findings, self.impression) if t)
        if text:
            return text
        parts = [self.preamble, *(getattr(self, k) for k in _MAIN), *self.other.values()]
        return " ".join(p for p in parts if p)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _header_key(name: str) -> str | None:
    """Section key for a header name, or ``None`` when ``name`` is not a header (mixed-case unknown name)."""
    norm = " ".join(name.replace("_", " ").split()).upper()
    if norm in _ALIASES:
        return _ALIASES[norm]
    if name.strip() == name.strip().upper() and any(c.isalpha() for c in name) and len(norm.split()) <= 5:
        return norm.lower()
    return None


def parse_sections(text: str) -> ReportSections:
    """Split a report into sections by its headers (see the module docstring for the rules).

    Args:
        text: the report; ``\\r\\n`` and ``\\r`` line ends are accepted.

    Returns:
        ReportSections with findings, impression, indication, comparison, technique, preamble and ``other``.
    """
    text = _BANNER.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    # Known headers that lost their line break ("… stable. IMPRESSION: …") get one back.
    text = _INLINE_HEADER.sub(lambda m: "\n" + m.group("name") + ":", text)
    chunks: list[tuple[str, list[str]]] = [("preamble", [])]
    for line in text.split("\n"):
        m = _LINE_HEADER.match(line)
        key = _header_key(m.group("name")) if m else None
        if m and key is not None:
            chunks.append((key, [m.group("rest")]))
        else:
            chunks[-1][1].append(line)
    found: dict[str, list[str]] = {}
    for key, lines in chunks:
        body = _squash(" ".join(lines))
        if body or key not in found:
            found.setdefault(key, [])
            if body:
                found[key].append(body)
    joined = {k: " ".join(v) for k, v in found.items()}
    other = {k: v for k, v in joined.items() if k not in _MAIN and k != "preamble"}
    return ReportSections(**{k: joined.get(k, "") for k in _MAIN}, preamble=joined.get("preamble", ""), other=other)


# ------------------------------------------------------------------------------------------------------ sentences
_ABBREVIATIONS = frozenset(
    {
        "dr",
        "mr",
        "mrs",
        "ms",
        "vs",
        "approx",
        "e.g",
        "i.e",
        "eg",
        "ie",
        "etc",
        "cf",
        "fig",
        "no",
        "st",
        "sq",
        "min",
        "max",
        "pt",
        "pts",
        "hx",
        "h/o",
        "s/p",
        "ant",
        "post",
        "lat",
        "rt",
        "lt",
        "bilat",
        "incl",
    }
)
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s)")
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•])\s+")


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences (whitespace squashed, list markers like ``1.`` / ``-`` removed).

    A sentence ends at ``.``, ``!`` or ``?`` followed by white space and then a capital letter, a digit, ``_`` or an
    opening bracket/quote — except after common abbreviations (``Dr.``, ``vs.``, ``e.g.``, ``approx.`` …) and after
    a list number (``1.``). Blank lines and new list items always start a new sentence. Lower-case continuations
    (``… 2.5 cm. in size``) stay joined.
    """
    paragraphs = re.split(r"\n\s*\n|\n(?=\s*(?:\(?\d{1,2}[.)]|[-*•])\s)", text.replace("\r\n", "\n"))
    out: list[str] = []
    for para in paragraphs:
        para = _squash(para)
        start = 0
        for m in _BOUNDARY.finditer(para):
            end = m.end()
            after = para[end:].lstrip()
            if not after:
                break
            if not (after[0].isupper() or after[0].isdigit() or after[0] in "_([\"'"):
                continue
            before = para[start : m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            if para[m.start()] == "." and (last in _ABBREVIATIONS or (len(before) == 1 and last.isdigit())):
                continue
            if para[m.start()] == "." and len(last) == 1 and last.isalpha():  # initials: "J. Smith"
                continue
            out.append(para[start:end])
            start = end
        out.append(para[start:])
    cleaned = [_LIST_MARKER.sub("", s).strip() for s in out]
    return [s for s in cleaned if s and any(c.isalnum() for c in s)]


def plain_report_text(findings: object, impression: object) -> str:
    """``findings`` then ``impression``, each stripped, joined by one space (None/NaN read as empty): the one plain
    form of a report that describers read, reports are compared with and baselines emit."""

    def clean(value: object) -> str:
        return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()

    return f"{clean(findings)} {clean(impression)}".strip()


_CHANGE = re.compile(
    r"\b(?:compared|comparison|prior|previous(?:ly)?|interval|stable|unchanged|again|removal|removed|since|"
    r"improv(?:ed|ement)|worsen(?:ed|ing)|resolved|resolution|new|increased|decreased)\b",
    re.IGNORECASE,
)


def states_change(sentence: str) -> bool:
    """True when a sentence describes change against an earlier study ("stable cardiomegaly", "compared to prior",
    "interval removal of the catheter", "new opacity"): such a sentence cannot be stated from one image."""
    return bool(_CHANGE.search(sentence))


# ------------------------------------------------------------------ side and zone words (report text and grounding)
_BILATERAL = re.compile(
    r"\b(?:bilateral(?:ly)?|both|bibasilar|bibasal|biapical|bilat|right\s+and\s+left|left\s+and\s+right)\b", re.I
)
_RIGHT = re.compile(r"\b(?:right|rt)\b", re.I)
_LEFT = re.compile(r"\b(?:left|lt)\b", re.I)
_ZONES = {
    "upper": re.compile(r"\b(?:upper|apex|apices|apical|biapical)\b", re.I),
    "middle": re.compile(r"\b(?:middle|mid|midlung|perihilar|hilar|hilum|lingula|lingular)\b", re.I),
    "lower": re.compile(r"\b(?:lower|bases?|basal|basilar|bibasilar|bibasal|retrocardiac|costophrenic)\b", re.I),
}


def parse_side(text: str) -> str:
    """Laterality stated in ``text``: ``right`` | ``left`` | ``bilateral`` | ``none`` (rules:
    :mod:`cxrlens.evaluate.grounding`)."""
    if _BILATERAL.search(text):
        return "bilateral"
    right, left = bool(_RIGHT.search(text)), bool(_LEFT.search(text))
    if right and left:
        return "bilateral"
    return "right" if right else "left" if left else "none"


def parse_zone(text: str) -> str:
    """Lung zone stated in ``text``: ``upper`` | ``middle`` | ``lower`` | ``several`` | ``none``."""
    found = [z for z, rx in _ZONES.items() if rx.search(text)]
    return found[0] if len(found) == 1 else "several" if found else "none"
