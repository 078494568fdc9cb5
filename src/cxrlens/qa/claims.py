"""Claims read from report text, sentence by sentence: what each sentence says about which finding (``check-report``).

:func:`read_claims` turns a report into its **display sentences** (the sentences a user sees, in text order) and,
for each, the **claims** it makes. The polarity of every claim comes from the CheXpert labeler
(:func:`cxrlens.data.labeler.report_mentions`), so a report's positive findings here are exactly the ones
:func:`cxrlens.data.labeler.label_reports` gives it; this module only adds *where* and *how much*:

* **Sentences.** The labeler's sections are read (findings + impression when the report has headers, else the whole
  text: :func:`~cxrlens.data.labeler.select_sections`) and split with :func:`cxrlens.data.reports.split_sentences`.
  Each sentence is labelled on its own (the labeler splits it further at ``;``, never across two sentences).
  A sentence without a mention ("No acute cardiopulmonary abnormality.", "The lungs are clear.") has no claim: the
  labeler does not read "clear lungs" as a negated opacity, so neither does this module. ``sections=False`` reads
  every line, headers included ("COMPARISON: none." is then a sentence without a claim).
* **Clauses.** Side and severity are read from the words that go with a mention, not from the whole sentence: a
  sentence is cut into clauses at ``, ; :`` and at *and / but / with / without / while / which …* ("Left pleural
  effusion and right lower lobe atelectasis" → effusion left, atelectasis right). A clause without a mention and
  without a verb or a normal word continues its neighbour ("opacities in the right upper lobe and left lower lobe"
  → bilateral; "in the left base, there is atelectasis" → left). "right and left" is never cut.
* **Side** (:data:`~cxrlens.qa.vocab.LATERAL_FINDINGS` and the side-able devices only): *left*, *right*, *lt*,
  *rt*, *lingula(r)* (left); *bilateral(ly)*, *both*, *bibasilar*, *bibasal*, *biapical*, *bilat*, or a clause
  naming both sides → ``bilateral``.
* **Severity** (:data:`~cxrlens.qa.vocab.SEVERITY_FINDINGS` only): *trace, tiny, small, minimal, mild, slight* →
  ``small``; *moderate, medium* → ``moderate``; *large, severe, massive, marked* → ``large`` (and their *-ly*
  forms); a range of two levels ("mild to moderate") gives none. A negated claim keeps its severity: "no large
  pleural effusion" is ``Pleural Effusion`` 0 ``large``, which does not deny a small one.
* **Devices.** A ``Support Devices`` mention gets the device word of :data:`~cxrlens.qa.vocab.DEVICES` that it names
  ("ETT", "PICC", "pacer", "NG tube", "pigtail catheter") or, for a generic word (*tube, line, catheter, drain,
  device*), that the words before it name ("right IJ catheter" → central line, "chest drain" → chest tube); "ET and
  NG tubes" gives two claims, one per device. Other devices (sternotomy wires, valves, stents) keep ``device=None``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cxrlens.data.labeler import LabelerConfig, Mention, report_mentions, select_sections
from cxrlens.data.reports import split_sentences
from cxrlens.qa.vocab import FINDINGS, LATERAL_DEVICES, LATERAL_FINDINGS, SEVERITY_FINDINGS

__all__ = [
    "CLAIM_COLUMNS",
    "SEVERITY_WORDS",
    "SIDE_WORD_RX",
    "Claim",
    "ReportSentence",
    "claims_table",
    "read_claims",
    "read_claims_many",
    "severity_words",
]

DEVICE_FINDING = "Support Devices"

# ------------------------------------------------------------------------------------------------------- tables
SIDE_WORD_RX = re.compile(r"\b(?:left|right|lt|rt)\b(?!\s+(?:atri|ventric))", re.I)
"""A left / right word that states a patient side (not "right atrium", "left ventricle")."""
_SIDE_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bilateral", re.compile(r"\b(?:bilateral(?:ly)?|both|bibasilar|bibasal|biapical|bilat)\b", re.I)),
    ("left", re.compile(r"\b(?:(?:left|lt)(?!\s+(?:atri|ventric))|lingula|lingular)\b", re.I)),
    ("right", re.compile(r"\b(?:right|rt)\b(?!\s+(?:atri|ventric))", re.I)),
)
SEVERITY_WORDS: dict[str, str] = {
    "trace": "small",
    "tiny": "small",
    "small": "small",
    "minimal": "small",
    "minimally": "small",
    "mild": "small",
    "mildly": "small",
    "slight": "small",
    "slightly": "small",
    "moderate": "moderate",
    "moderately": "moderate",
    "medium": "moderate",
    "large": "large",
    "severe": "large",
    "severely": "large",
    "massive": "large",
    "massively": "large",
    "marked": "large",
    "markedly": "large",
}
"""Severity word (lower case) → level; the words :mod:`cxrlens.qa.perturb` rewrites."""
SEVERITY_RX = re.compile(
    r"\b(?:" + "|".join(sorted(SEVERITY_WORDS, key=len, reverse=True)) + r")\b"
    r"(?!\s+(?:increas|decreas|improv|worsen|chang|progress|diminish|reduc|interval|larger|smaller|more|less))",
    re.I,
)
_CHAIN = re.compile(r"\s*(?:/|or|and/or|versus|vs\.?)\s*", re.I)

# clause cuts: punctuation and conjunctions; "right and left" / "left and right" are one side phrase
_CUT = re.compile(
    r"[,;:]|\b(?:and|but|however|although|though|whereas|while|with|without|which|plus|as well as)\b", re.I
)
_SIDE_PAIR = re.compile(r"\b(?:right|left)\s+(?:and|or|greater than|more than|>)\s+(?:right|left)\b", re.I)
_VERB = re.compile(
    r"\b(?:is|are|was|were|appears?|remains?|seems?|looks?|measures?|has|have|had|been|noted|seen|identified)\b",
    re.I,
)
_NORMAL = re.compile(r"\b(?:no|not|clear|normal|unremarkable|intact|negative|stable|unchanged)\b", re.I)
_MERGE_ACROSS = frozenset({",", "and"})

# device words: a specific mention names its device; a generic one takes it from the words before it
_DEVICE_PHRASES: dict[str, tuple[str, ...]] = {
    "endotracheal tube": ("ett", "et tube", "endotracheal tube", "endotracheal"),
    "enteric tube": (
        "ngt", "ng tube", "nasogastric tube", "nasogastric", "ogt", "og tube", "orogastric tube", "enteric tube",
        "feeding tube", "dobhoff", "dobhoff tube",
    ),
    "central line": (
        "picc", "picc line", "picc lines", "central line", "central lines", "central venous catheter",
        "central venous line", "cvc", "ij line", "subclavian line", "swan-ganz catheter", "swan ganz catheter",
        "pulmonary artery catheter", "port", "port-a-cath", "portacath", "port a cath", "mediport", "cordis",
    ),
    "pacemaker": (
        "pacemaker", "pacer", "pacemaker leads", "pacer leads", "pacing leads", "pacing wires", "pacing wire",
        "pacer wire", "pacer wires", "aicd", "icd", "defibrillator",
    ),
    "chest tube": ("chest tube", "chest tubes", "pigtail catheter"),
}  # fmt: skip
_DEVICE_OF_PHRASE: dict[str, str] = {p: d for d, phrases in _DEVICE_PHRASES.items() for p in phrases}
_GENERIC_DEVICE = frozenset(
    {"tube", "tubes", "line", "lines", "catheter", "catheters", "drain", "device", "devices", "tubing",
     "lines and tubes", "tubes and lines", "support devices", "electronic device", "cardiac device", "hardware"}
)  # fmt: skip
_DEVICE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("endotracheal tube", re.compile(r"\b(?:ett?|endotracheal|e\.t\.)(?=\W|$)", re.I)),
    (
        "enteric tube",
        re.compile(
            r"\b(?:ngt?|ogt?|nasogastric|orogastric|enteric|feeding|dobhoff|gastric|gastrostomy|nasoenteric|"
            r"g-tube|peg)\b",
            re.I,
        ),
    ),
    ("chest tube", re.compile(r"\b(?:chest|thoracostomy|pleural|pigtail)\s+$", re.I)),
    (
        "central line",
        re.compile(
            r"\b(?:picc|ij|internal jugular|subclavian|central|cvc|venous|port|swan|dialysis|hemodialysis|svc|"
            r"cavoatrial|brachiocephalic|superior vena cava)\b",
            re.I,
        ),
    ),
    ("pacemaker", re.compile(r"\b(?:pacemaker|pacer|pacing|aicd|icd|defibrillator)\b", re.I)),
)
_SIDELESS_DEVICES = frozenset({"endotracheal tube", "enteric tube"})


# ------------------------------------------------------------------------------------------------------ classes
@dataclasses.dataclass(frozen=True)
class Claim:
    """One thing a sentence says about one finding.

    Attributes:
        finding: a :data:`cxrlens.qa.vocab.FINDINGS` label (``Support Devices`` for a device).
        value: ``1`` present, ``0`` absent, ``-1`` uncertain (the labeler's value for the mention).
        side: ``left`` / ``right`` / ``bilateral`` when the mention's clause gives it (lateral findings and
            side-able devices only), else None.
        severity: ``small`` / ``moderate`` / ``large`` when the clause grades it (severity findings only), else None.
        device: a :data:`cxrlens.qa.vocab.DEVICES` word for a device mention that names one, else None.
        text: the matched words (the labeler's mention).
        span: ``(start, end)`` of the matched words in the sentence text (None where they could not be placed).
        clause: ``(start, end)`` of the clause the side and severity were read from.
    """

    finding: str
    value: int
    side: str | None
    severity: str | None
    device: str | None
    text: str
    span: tuple[int, int] | None = dataclasses.field(default=None, compare=False, repr=False)
    clause: tuple[int, int] | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class ReportSentence:
    """A display sentence of a report and its claims (``()`` when it claims nothing).

    ``span`` is ``(start, end)`` of the sentence in the report text that was read (whitespace inside may differ:
    ``text`` is single-spaced), None if it could not be placed.
    """

    index: int
    text: str
    claims: tuple[Claim, ...]
    span: tuple[int, int] | None = dataclasses.field(default=None, compare=False, repr=False)


# ------------------------------------------------------------------------------------------------------- public
def read_claims(report: str | None, *, sections: bool = True) -> list[ReportSentence]:
    """The sentences of ``report`` with their claims.

    Args:
        report: report text (None / NaN / empty → no sentence).
        sections: read only findings + impression when the report has section headers (the labeler's default:
            "INDICATION: rule out pneumonia" and "COMPARISON: none" are no sentences then); False reads every line.

    Returns:
        one :class:`ReportSentence` per display sentence, ``index`` 0, 1, … in text order.
    """
    return read_claims_many([report], sections=sections)[0]


def read_claims_many(reports: Iterable[str | None], *, sections: bool = True) -> list[list[ReportSentence]]:
    """:func:`read_claims` of several reports, labelled in one batch (faster than one call per report)."""
    texts = [_as_text(r) for r in reports]
    per_report = [split_sentences(select_sections(t) if sections else t) if t.strip() else [] for t in texts]
    flat = [s for sentences in per_report for s in sentences]
    mentions = iter(report_mentions(flat, LabelerConfig(sections=False)) if flat else [])
    out = []
    for text, sentences in zip(texts, per_report, strict=True):
        spans = _locate_sentences(text, sentences)
        out.append(
            [
                ReportSentence(i, s, tuple(_sentence_claims(s, next(mentions))), span)
                for i, (s, span) in enumerate(zip(sentences, spans, strict=True))
            ]
        )
    return out


CLAIM_COLUMNS = ("sentence", "sentence_text", "finding", "value", "side", "severity", "device", "text")


def claims_table(sentences: Sequence[ReportSentence]) -> pd.DataFrame:
    """One row per claim: ``sentence`` (index), ``sentence_text``, ``finding``, ``value``, ``side``, ``severity``,
    ``device``, ``text`` (:data:`CLAIM_COLUMNS`); an empty table with those columns when there is no claim."""
    rows = [
        (s.index, s.text, c.finding, c.value, c.side, c.severity, c.device, c.text) for s in sentences for c in s.claims
    ]
    df = pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
    return df.astype({"sentence": np.int64, "value": np.int64})


# ----------------------------------------------------------------------------------------------------- internals
def _as_text(report: object) -> str:
    if report is None or (isinstance(report, float) and np.isnan(report)):
        return ""
    return str(report)


def _locate_sentences(text: str, sentences: Sequence[str]) -> list[tuple[int, int] | None]:
    """(start, end) of each single-spaced sentence in ``text``, searched in order (from the start again when a
    section came earlier in the text than in the reading order)."""
    out: list[tuple[int, int] | None] = []
    pos = 0
    for s in sentences:
        rx = re.compile(r"\s+".join(re.escape(w) for w in s.split()))
        m = rx.search(text, pos) or rx.search(text)
        out.append((m.start(), m.end()) if m else None)
        if m:
            pos = m.end()
    return out


def _word_rx(words: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(w) for w in words.split())
    head = r"(?<!\w)" if words[:1].isalnum() else ""
    tail = r"(?!\w)" if words[-1:].isalnum() else ""
    return re.compile(head + body + tail, re.I)


def _mention_spans(sentence: str, mentions: Sequence[Mention]) -> list[tuple[int, int] | None]:
    """Where each mention's words are in the sentence, searched in order; the labels of one span (a
    "hydropneumothorax", the CHF rule's Cardiomegaly) share its place."""
    out: list[tuple[int, int] | None] = []
    pos = 0
    prev: Mention | None = None
    for m in mentions:
        if prev is not None and out[-1] is not None and m.text == prev.text and m.label != prev.label:
            out.append(out[-1])
        else:
            rx = _word_rx(m.text)
            found = rx.search(sentence, pos) or rx.search(sentence)
            span = (found.start(), found.end()) if found else None
            out.append(span)
            if span is not None:
                pos = span[1]
        prev = m
    return out


def _clauses(sentence: str, spans: Sequence[tuple[int, int] | None]) -> list[tuple[int, int]]:
    """Clauses of the sentence as (start, end), cut at punctuation and conjunctions that lie outside every mention
    and outside a "right and left" phrase; a clause without a mention, verb or normal word joins a neighbour."""
    protected = [s for s in spans if s is not None] + [(m.start(), m.end()) for m in _SIDE_PAIR.finditer(sentence)]
    cuts = [m for m in _CUT.finditer(sentence) if not any(a <= m.start() < b or a < m.end() <= b for a, b in protected)]
    pieces: list[list] = []  # [start, end, joined-by]
    start, joiner = 0, ""
    for m in cuts:
        pieces.append([start, m.start(), joiner])
        start, joiner = m.end(), m.group(0).lower()
    pieces.append([start, len(sentence), joiner])
    starts = [s[0] for s in spans if s is not None]

    def loose(p: list) -> bool:
        body = sentence[p[0] : p[1]]
        return not any(p[0] <= s < p[1] for s in starts) and not _VERB.search(body) and not _NORMAL.search(body)

    merged: list[list] = []
    for p in pieces:
        if merged and p[2] in _MERGE_ACROSS and loose(p):
            merged[-1][1] = p[1]
        elif merged and p[2] in _MERGE_ACROSS and loose(merged[-1]):
            merged[-1][1] = p[1]  # a loose clause before ("in the left base, there is …") joins this one
        else:
            merged.append(list(p))
    return [(a, b) for a, b, _ in merged]


def _side(clause: str) -> str | None:
    found = {name for name, rx in _SIDE_WORDS if rx.search(clause)}
    if "bilateral" in found or {"left", "right"} <= found:
        return "bilateral"
    return next(iter(found), None)


def severity_words(sentence: str, start: int = 0, end: int | None = None) -> list[re.Match[str]]:
    """Severity words in ``sentence[start:end]`` that grade a finding (not a change: "slightly increased",
    "small increase" are left out)."""
    return list(SEVERITY_RX.finditer(sentence, start, len(sentence) if end is None else end))


def _severities(sentence: str, clause: tuple[int, int], spans: Sequence[tuple[int, int]]) -> dict[tuple, set[str]]:
    """Severity levels of each mention span of a clause: a severity word grades the next mention of the clause
    (with the ones chained to it by "/", "or", "versus": "minimal atelectasis/infiltrate"), or the last one before
    it when none follows ("the heart is mildly enlarged")."""
    inside = sorted({s for s in spans if clause[0] <= s[0] < clause[1]})
    groups: list[list[tuple[int, int]]] = []
    for s in inside:
        if groups and _CHAIN.fullmatch(sentence[groups[-1][-1][1] : s[0]]):
            groups[-1].append(s)
        else:
            groups.append([s])
    out: dict[tuple, set[str]] = {s: set() for s in inside}
    for w in severity_words(sentence, *clause):
        after = [g for g in groups if g[0][0] >= w.end()]
        before = [g for g in groups if g[-1][1] <= w.start()]
        target = after[0] if after else before[-1] if before else []
        for s in target:
            out[s].add(SEVERITY_WORDS[w.group(0).lower()])
    return out


def _devices(sentence: str, mention: Mention, span: tuple[int, int] | None, floor: int) -> list[str | None]:
    """Device words of a Support Devices mention: its own phrase, or for a generic word the cues in the words
    before it (back to the previous mention, at most six words)."""
    own = _DEVICE_OF_PHRASE.get(" ".join(mention.text.lower().split()))
    if own is not None or " ".join(mention.text.lower().split()) not in _GENERIC_DEVICE or span is None:
        return [own]
    before = sentence[floor : span[0]]
    before = " ".join(before.split()[-6:]) + " "
    context = before + mention.text
    found = [device for device, rx in _DEVICE_CUES if rx.search(before if device == "chest tube" else context)]
    return [d for d in dict.fromkeys(found)] or [None]


def _sentence_claims(sentence: str, mentions: Sequence[Mention]) -> list[Claim]:
    spans = _mention_spans(sentence, mentions)
    clauses = _clauses(sentence, spans)
    placed = [s for s in spans if s is not None]
    levels: dict[tuple, set[str]] = {}
    for clause in clauses:
        levels.update(_severities(sentence, clause, placed))
    out: list[Claim] = []
    floor = 0
    for m, span in zip(mentions, spans, strict=True):
        if m.label not in FINDINGS:
            if span is not None:
                floor = span[1]
            continue
        clause = next((c for c in clauses if span is not None and c[0] <= span[0] < c[1]), None)
        words = sentence[clause[0] : clause[1]] if clause else ""
        grades = levels.get(span, set()) if span is not None else set()
        severity = next(iter(grades)) if m.label in SEVERITY_FINDINGS and len(grades) == 1 else None
        devices = _devices(sentence, m, span, floor) if m.label == DEVICE_FINDING else [None]
        for device in devices:
            lateral = m.label in LATERAL_FINDINGS or (
                m.label == DEVICE_FINDING and (device is None or device in LATERAL_DEVICES)
            )
            side = _side(words) if lateral and device not in _SIDELESS_DEVICES else None
            out.append(Claim(m.label, m.value, side, severity, device, m.text, span, clause))
        if span is not None:
            floor = span[1]
    return out
