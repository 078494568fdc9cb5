"""Reports perturbed in known ways: the benchmark of ``check-report`` (does the checker flag what was changed?).

Each perturbation starts from a real report and the ground truth of its image (``present``: what is really drawn)
and makes one change that a perfect checker must flag:

* ``swap_laterality`` — a positive claim whose side (left / right) agrees with the truth gets the other side: the
  left/right words of that claim's clause are swapped (→ ``contradicted``);
* ``drop_finding`` — every sentence that reports a truly present finding (value 1 or -1) is removed, so the finding
  is shown but no longer reported (→ ``missed``); a finding whose sentences also carry the only report of another
  present finding is not dropped;
* ``insert_finding`` — one sentence asserting a finding that is absent from the image (nor a close relative of a
  present one: no "opacity" beside a drawn pneumonia) is inserted at a sentence boundary, in one of several
  phrasings, with a side and sometimes a severity (→ ``contradicted``);
* ``change_severity`` — a positive claim with a severity word whose truth severity is known gets a word of another
  level (small → large, large → small, moderate → either), never the true one (→ ``contradicted``).

A kind that does not apply to the report gives None. Every perturbation is checked by reading the new text again
(:func:`cxrlens.qa.claims.read_claims`): the intended change must be visible there and every other sentence
unchanged, else the next candidate is tried. Choices come from ``rng`` only, so a seeded generator gives the same
perturbation every time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from cxrlens.align.search import normalize_severity, normalize_side
from cxrlens.qa.claims import (
    SEVERITY_WORDS,
    SIDE_WORD_RX,
    Claim,
    ReportSentence,
    read_claims,
    severity_words,
)
from cxrlens.qa.vocab import DEVICES, FINDINGS, LATERAL_DEVICES, SEVERITY_FINDINGS

__all__ = ["EXPECTED", "INSERT_TEMPLATES", "PERTURBATIONS", "Perturbation", "perturb_report"]

PERTURBATIONS: tuple[str, ...] = ("swap_laterality", "drop_finding", "insert_finding", "change_severity")
EXPECTED: dict[str, str] = {
    "swap_laterality": "contradicted",
    "drop_finding": "missed",
    "insert_finding": "contradicted",
    "change_severity": "contradicted",
    "none": "",
}
"""The flag a perfect checker raises for each kind."""

DEVICE_FINDING = "Support Devices"

# findings that a present one makes look present (CheXpert's opacity hierarchy, pneumonia ~ consolidation, a big
# heart widens the cardiomediastinal silhouette): not inserted as "absent"
_RELATED: dict[str, frozenset[str]] = {
    "Lung Opacity": frozenset({"Consolidation", "Pneumonia", "Atelectasis", "Edema", "Lung Lesion"}),
    "Consolidation": frozenset({"Pneumonia", "Lung Opacity"}),
    "Pneumonia": frozenset({"Consolidation", "Lung Opacity"}),
    "Atelectasis": frozenset({"Lung Opacity"}),
    "Edema": frozenset({"Lung Opacity"}),
    "Lung Lesion": frozenset({"Lung Opacity"}),
    "Cardiomegaly": frozenset({"Enlarged Cardiomediastinum"}),
    "Enlarged Cardiomediastinum": frozenset({"Cardiomegaly"}),
}

INSERT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": (
        "There is a {sev} {side} pleural effusion.",
        "{Sev} {side} pleural effusion.",
        "{Side} pleural effusion is present.",
        "A {sev} {side}-sided pleural effusion is noted.",
    ),
    "Pneumothorax": (
        "There is a {sev} {side} pneumothorax.",
        "{Sev} {side} apical pneumothorax.",
        "{Side} pneumothorax is present.",
    ),
    "Consolidation": (
        "Focal consolidation in the {side} lower lobe.",
        "{Side} upper lobe consolidation.",
        "There is {sev} consolidation at the {side} lung base.",
    ),
    "Pneumonia": (
        "{Side} lower lobe pneumonia.",
        "Findings consistent with {side} upper lobe pneumonia.",
        "There is a {side} basilar pneumonia.",
    ),
    "Atelectasis": (
        "{Sev} {side} basilar atelectasis.",
        "Plate-like atelectasis in the {side} lower lobe.",
        "There is {sev} atelectasis at the {side} base.",
    ),
    "Edema": (
        "{Sev} pulmonary edema.",
        "There is {sev} interstitial edema.",
        "Findings consistent with pulmonary edema.",
    ),
    "Lung Lesion": (
        "A {cm} cm nodule in the {side} upper lobe.",
        "{Side} lower lobe mass.",
        "There is a {mm} mm pulmonary nodule in the {side} mid lung.",
    ),
    "Lung Opacity": (
        "Patchy opacity in the {side} lower lobe.",
        "Hazy opacity at the {side} lung base.",
        "There is a {side} upper lobe airspace opacity.",
    ),
    "Pleural Other": (
        "{Side} apical pleural thickening.",
        "Pleural thickening along the {side} lateral chest wall.",
    ),
    "Fracture": (
        "Acute fracture of the {side} {rib} rib.",
        "There is a displaced {side} rib fracture.",
        "{Side} {rib} rib fracture.",
    ),
    "Cardiomegaly": (
        "{Sev} cardiomegaly.",
        "The heart is {sevly} enlarged.",
        "The cardiac silhouette is enlarged.",
    ),
    "Enlarged Cardiomediastinum": (
        "The mediastinum is widened.",
        "Widened mediastinum.",
        "{Sev} mediastinal widening.",
    ),
    "endotracheal tube": (
        "Endotracheal tube in place with the tip above the carina.",
        "ET tube terminates 4 cm above the carina.",
    ),
    "enteric tube": (
        "Enteric tube courses below the diaphragm.",
        "Nasogastric tube in place.",
    ),
    "central line": (
        "{Side} subclavian central venous catheter with tip in the SVC.",
        "{Side} PICC line terminates in the SVC.",
        "{Side} internal jugular central line in place.",
    ),
    "pacemaker": (
        "{Side}-sided pacemaker with leads in the right atrium and right ventricle.",
        "{Side} chest wall pacemaker in place.",
    ),
    "chest tube": (
        "{Side} chest tube in place.",
        "There is a {side}-sided chest tube.",
    ),
}
"""Sentences that assert one finding (or one device), keyed by finding / device word; ``{side}``, ``{sev}``,
``{sevly}`` (adverb), ``{cm}``, ``{mm}``, ``{rib}`` are filled in (capitalised forms ``{Side}``, ``{Sev}``)."""

_SIZE_STYLE = frozenset({"Pleural Effusion", "Pneumothorax"})  # "small / large" rather than "mild / severe"
_SEV_WORD = {
    "size": {"small": "small", "moderate": "moderate", "large": "large"},
    "grade": {"small": "mild", "moderate": "moderate", "large": "severe"},
    "adverb": {"small": "mildly", "moderate": "moderately", "large": "markedly"},
}
_RIBS = ("fourth", "fifth", "sixth", "seventh", "eighth")

# severity word → its counterpart at the other end of the scale (moderate: see _regrade)
_TO_LARGE = {
    "trace": "large", "tiny": "large", "small": "large", "minimal": "marked", "minimally": "markedly",
    "mild": "severe", "mildly": "markedly", "slight": "marked", "slightly": "markedly", "medium": "large",
}  # fmt: skip
_TO_SMALL = {
    "large": "small", "severe": "mild", "severely": "mildly", "massive": "small", "massively": "mildly",
    "marked": "mild", "markedly": "mildly", "medium": "small",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """One perturbed report.

    Attributes:
        kind: one of :data:`PERTURBATIONS`, or ``none`` (the report unchanged).
        text: the perturbed report.
        sentence: index, in ``read_claims(text)``, of the changed or inserted sentence (None for ``drop_finding``
            and ``none``).
        finding: the finding concerned (a :data:`cxrlens.qa.vocab.FINDINGS` label; ``Support Devices`` for a
            device).
        expected: the flag a perfect checker raises (:data:`EXPECTED`).
        device: the device word when the finding is a device (a :data:`cxrlens.qa.vocab.DEVICES` word).
    """

    kind: str
    text: str
    sentence: int | None
    finding: str | None
    expected: str
    device: str | None = None


def perturb_report(
    report: str, kind: str, *, present: Mapping[str, Mapping], rng: np.random.Generator
) -> Perturbation | None:
    """Perturb ``report`` in the way ``kind`` names, or None when that kind does not apply to it.

    Args:
        report: the report text (findings + impression, with or without section headers).
        kind: one of :data:`PERTURBATIONS` or ``"none"``.
        present: the image's ground truth, its certain positives: finding label (or device word) →
            ``{"side": …, "severity": …}`` (words or numbers as :func:`cxrlens.align.search.normalize_side` /
            :func:`~cxrlens.align.search.normalize_severity` read them; missing or None = unknown).
        rng: the only source of choices.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in (*PERTURBATIONS, "none"):
        raise ValueError(f"unknown perturbation {kind!r}; expected one of {', '.join((*PERTURBATIONS, 'none'))}")
    if kind == "none":
        return Perturbation("none", report, None, None, "")
    sentences = read_claims(report)
    if not sentences:
        return None
    truth = _Truth(present)
    make: Callable[[str, list[ReportSentence], _Truth, np.random.Generator], Perturbation | None] = {
        "swap_laterality": _swap_laterality,
        "drop_finding": _drop_finding,
        "insert_finding": _insert_finding,
        "change_severity": _change_severity,
    }[kind]
    return make(report, sentences, truth, rng)


# ---------------------------------------------------------------------------------------------------- the truth
class _Truth:
    """``present`` with sides and severities normalised; lookup by claim."""

    def __init__(self, present: Mapping[str, Mapping]) -> None:
        self.facts: dict[str, dict[str, str | None]] = {}
        for key, attrs in present.items():
            attrs = attrs or {}
            self.facts[key] = {
                "side": normalize_side(attrs.get("side")),
                "severity": normalize_severity(attrs.get("severity")),
            }
        self.findings = {k for k in self.facts if k in FINDINGS}
        if any(k in DEVICES for k in self.facts):
            self.findings.add(DEVICE_FINDING)

    def of(self, claim: Claim) -> dict[str, str | None] | None:
        """The truth about the finding (or device) of ``claim``, None when it is not present."""
        if claim.finding == DEVICE_FINDING:
            return self.facts.get(claim.device) if claim.device else None
        return self.facts.get(claim.finding)

    def present_keys(self) -> list[str]:
        """Present findings and device words, in vocabulary order."""
        order = [*FINDINGS, *DEVICES]
        return [k for k in order if k in self.facts or (k == DEVICE_FINDING and k in self.findings)]


def _matches(claim: Claim, key: str) -> bool:
    if key in DEVICES:
        return claim.finding == DEVICE_FINDING and claim.device == key
    return claim.finding == key


# ------------------------------------------------------------------------------------------------------ editing
def _replace(report: str, sentence: ReportSentence, new: str) -> str:
    assert sentence.span is not None
    a, b = sentence.span
    return report[:a] + new + report[b:]


def _same_case(old: str, new: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[0].upper() + new[1:] if old[:1].isupper() else new


def _edited(
    report: str,
    sentences: list[ReportSentence],
    i: int,
    new_sentence: str,
    check: Callable[[Claim], bool],
) -> str | None:
    """The report with sentence ``i`` replaced, if the re-read sentence has a claim passing ``check`` and every
    other sentence reads as before."""
    text = _replace(report, sentences[i], new_sentence)
    again = read_claims(text)
    if [s.text for s in again if s.index != i] != [s.text for s in sentences if s.index != i]:
        return None
    return text if any(check(c) for c in again[i].claims) else None


# -------------------------------------------------------------------------------------------------------- kinds
def _swap_laterality(report, sentences, truth: _Truth, rng) -> Perturbation | None:
    swap = {"left": "right", "right": "left", "lt": "rt", "rt": "lt"}
    candidates = [
        (s, c)
        for s in sentences
        for c in s.claims
        if c.value == 1
        and c.side in ("left", "right")
        and c.clause is not None
        and s.span is not None
        and (fact := truth.of(c)) is not None
        and fact["side"] == c.side
        and SIDE_WORD_RX.search(s.text, *c.clause)
    ]
    for k in rng.permutation(len(candidates)):
        s, c = candidates[int(k)]
        a, b = c.clause
        clause = SIDE_WORD_RX.sub(lambda m: _same_case(m.group(0), swap[m.group(0).lower()]), s.text[a:b])
        new_side = swap[c.side]
        text = _edited(
            report,
            sentences,
            s.index,
            s.text[:a] + clause + s.text[b:],
            lambda x, c=c, new_side=new_side: (
                x.finding == c.finding and x.device == c.device and x.value == 1 and x.side == new_side
            ),
        )
        if text is not None:
            return Perturbation("swap_laterality", text, s.index, c.finding, EXPECTED["swap_laterality"], c.device)
    return None


def _regrade(word: str, level: str, target: str, finding: str) -> str:
    low = word.lower()
    if low in ("moderate", "moderately"):
        if low == "moderately":
            new = "mildly" if target == "small" else "markedly"
        else:
            style = "size" if finding in _SIZE_STYLE else "grade"
            new = _SEV_WORD[style][target]
    else:
        new = (_TO_LARGE if target == "large" else _TO_SMALL)[low]
    return _same_case(word, new)


def _change_severity(report, sentences, truth: _Truth, rng) -> Perturbation | None:
    candidates = [
        (s, c)
        for s in sentences
        for c in s.claims
        if c.value == 1
        and c.severity is not None
        and c.finding in SEVERITY_FINDINGS
        and c.clause is not None
        and s.span is not None
        and (fact := truth.of(c)) is not None
        and fact["severity"] is not None
    ]
    for k in rng.permutation(len(candidates)):
        s, c = candidates[int(k)]
        fact = truth.of(c)
        assert fact is not None
        if c.severity == "moderate":
            targets = [t for t in ("small", "large") if t != fact["severity"]]
            target = targets[int(rng.integers(len(targets)))]
        else:
            target = "large" if c.severity == "small" else "small"
        if target == fact["severity"]:
            continue
        a, b = c.clause
        words = [m for m in severity_words(s.text, a, b) if SEVERITY_WORDS[m.group(0).lower()] == c.severity]
        new = s.text
        for m in reversed(words):
            new = new[: m.start()] + _regrade(m.group(0), c.severity, target, c.finding) + new[m.end() :]
        text = _edited(
            report,
            sentences,
            s.index,
            new,
            lambda x, c=c, target=target: (
                x.finding == c.finding and x.device == c.device and x.value == 1 and x.severity == target
            ),
        )
        if text is not None:
            return Perturbation("change_severity", text, s.index, c.finding, EXPECTED["change_severity"], c.device)
    return None


_LIST_MARKER_BEFORE = re.compile(r"(?:(?<=\s)|^)(?:\(?\d{1,2}[.)]|[-*•])[ \t]*$")


def _drop_finding(report, sentences, truth: _Truth, rng) -> Perturbation | None:
    def reported(sents: Sequence[ReportSentence], key: str) -> bool:
        return any(_matches(c, key) and c.value == 1 for s in sents for c in s.claims)

    keys = [k for k in truth.present_keys() if k != DEVICE_FINDING or DEVICE_FINDING in truth.facts]
    keys = [k for k in keys if reported(sentences, k)]
    for k in rng.permutation(len(keys)):
        key = keys[int(k)]
        drop = [s for s in sentences if any(_matches(c, key) and c.value != 0 for c in s.claims)]
        kept = [s for s in sentences if s not in drop]
        others = [o for o in keys if o != key and DEVICE_FINDING not in (o, key)]
        if not kept or any(s.span is None for s in drop) or not all(reported(kept, o) for o in others):
            continue
        text = report
        for s in sorted(drop, key=lambda s: s.span[0], reverse=True):
            a, b = s.span
            m = _LIST_MARKER_BEFORE.search(text, 0, a)
            a = m.start() if m else a
            end = b
            while end < len(text) and text[end] in " \t":
                end += 1
            if end == b or end == len(text) or text[end] == "\n":  # last on its line: the space before goes
                while a > 0 and text[a - 1] in " \t":
                    a -= 1
            text = text[:a] + text[end:]
        again = read_claims(text)
        if [s.text for s in again] != [s.text for s in kept]:
            continue
        if any(_matches(c, key) and c.value != 0 for s in again for c in s.claims):
            continue
        finding = DEVICE_FINDING if key in DEVICES else key
        device = key if key in DEVICES else None
        return Perturbation("drop_finding", text, None, finding, EXPECTED["drop_finding"], device)
    return None


def _fill(template: str, finding: str, rng: np.random.Generator) -> tuple[str, str | None, str | None]:
    """A template filled in: (sentence, side it states, severity it states)."""
    side = ("left", "right")[int(rng.integers(2))] if "{side}" in template.lower() else None
    level = ("small", "moderate", "large")[int(rng.integers(3))] if "{sev" in template.lower() else None
    style = "size" if finding in _SIZE_STYLE else "grade"
    values = {
        "side": side or "",
        "sev": _SEV_WORD[style][level] if level else "",
        "sevly": _SEV_WORD["adverb"][level] if level else "",
        "cm": f"{1.5 + 0.5 * int(rng.integers(6)):.1f}",
        "mm": str(6 + 2 * int(rng.integers(6))),
        "rib": _RIBS[int(rng.integers(len(_RIBS)))],
    }
    values.update({k.capitalize(): v.capitalize() for k, v in list(values.items())})
    text = template.format(**values)
    return text[0].upper() + text[1:], side, level if finding in SEVERITY_FINDINGS else None


def _insert_finding(report, sentences, truth: _Truth, rng) -> Perturbation | None:
    claimed = {c.finding for s in sentences for c in s.claims if c.value != 0}
    claimed_devices = {c.device for s in sentences for c in s.claims if c.value != 0 and c.device}
    keys: list[str] = []
    for f in FINDINGS:
        if f == DEVICE_FINDING:
            if DEVICE_FINDING not in truth.findings and DEVICE_FINDING not in claimed:
                keys += [d for d in DEVICES if d not in claimed_devices]
        elif f not in truth.findings and f not in claimed and not (_RELATED.get(f, frozenset()) & truth.findings):
            keys.append(f)
    # (boundary k: the new sentence becomes sentence k)
    boundaries = [k for k in range(len(sentences) + 1) if sentences[max(k - 1, 0)].span is not None]
    for ki in rng.permutation(len(keys)):
        key = keys[int(ki)]
        finding, device = (DEVICE_FINDING, key) if key in DEVICES else (key, None)
        templates = INSERT_TEMPLATES[key]
        for ti in rng.permutation(len(templates)):
            new, side, severity = _fill(templates[int(ti)], finding, rng)
            if device is not None and device not in LATERAL_DEVICES:
                side = None
            for bi in rng.permutation(len(boundaries)):
                k = boundaries[int(bi)]
                if k == 0:
                    a = sentences[0].span[0]
                    text = report[:a] + new + " " + report[a:]
                else:
                    b = sentences[k - 1].span[1]
                    text = report[:b] + " " + new + report[b:]
                again = read_claims(text)
                if len(again) != len(sentences) + 1 or again[k].text != new:
                    continue
                if [s.text for s in again[:k] + again[k + 1 :]] != [s.text for s in sentences]:
                    continue
                got = again[k].claims
                if (
                    got
                    and all(
                        c.finding == finding and c.device == device and c.value == 1 and c.side == side for c in got
                    )
                    and any(c.severity == severity for c in got)
                ):
                    return Perturbation("insert_finding", text, k, finding, EXPECTED["insert_finding"], device)
    return None
