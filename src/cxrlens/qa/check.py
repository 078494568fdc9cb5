"""Checking a written report against the image (``cxrlens check-report``).

The report is read sentence by sentence (:func:`cxrlens.qa.claims.read_claims`: finding, polarity, side,
severity, device per mention); each claim is compared with what the image model says
(:class:`cxrlens.qa.model.ImageFindings`):

==========================  ============================================================================
claim                       flag
==========================  ============================================================================
positive, not called        **contradicted** — finding absent (P below the head's operating threshold)
positive, other side        **contradicted** — wrong side (another side is the most probable, P ≥ 0.5)
positive, other severity    **contradicted** — wrong severity (likewise)
positive, matches           **supported**
negated, called present     **contradicted** — finding present, when P ≥ 0.5 (above the threshold but below 0.5:
                            **unverifiable**, "possibly present"); "no large X" / "no left X" only when the
                            image puts ≥ 0.5 of the side / severity probability on that grade or worse / side
negated, not called         **supported**
uncertain ("possible X")    **unverifiable** — hedged claims are not judged
finding without a head      **unverifiable** — the model cannot see it (too few training examples)
==========================  ============================================================================

A sentence is contradicted when any of its claims is, supported when any claim is supported, else unverifiable
(also a sentence with no claim). Findings and devices the model calls present with P ≥ ``missed_probability`` (and
above their threshold) that no sentence mentions positively or as uncertain are reported as **missed**.

Every flag carries evidence (:func:`cxrlens.qa.answer.evidence_record`) and a **score** — the signed margin, in
logits, of the image evidence against the claim (> 0 when the flag is raised): ``logit(threshold) − logit(P)``
for a positive claim, the reverse for a negated one, ``logit(P(top class)) − logit(P(claimed class))`` for a side
or severity. Scores rank reports for the benchmark's AUC; the flags are the decisions.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any

from cxrlens.qa.answer import evidence_record
from cxrlens.qa.claims import Claim, ReportSentence, read_claims
from cxrlens.qa.model import FindingEvidence, ImageFindings

__all__ = ["ClaimCheck", "ReportCheck", "SentenceCheck", "check_report", "render_check_html", "render_check_text"]


@dataclasses.dataclass(frozen=True)
class ClaimCheck:
    """One claim judged: ``flag`` supported / contradicted / unverifiable, ``problem`` (``absent``, ``present``,
    ``side``, ``severity``, ``hedged``, ``no head``, ``""``), ``score`` (see module docstring), evidence;
    ``scores`` holds the score of every check that applied to the claim (``absent`` / ``side`` / ``severity`` for a
    positive claim, ``present`` for a denial), whichever decided the flag."""

    claim: Claim
    flag: str
    problem: str
    score: float
    note: str
    evidence: tuple[dict[str, Any], ...]
    scores: dict[str, float] = dataclasses.field(default_factory=dict)  # every check's score, by problem


@dataclasses.dataclass(frozen=True)
class SentenceCheck:
    index: int
    text: str
    flag: str
    claims: tuple[ClaimCheck, ...]


@dataclasses.dataclass(frozen=True)
class ReportCheck:
    """The sentences judged and the findings the report misses (``missed``: evidence records with ``score``).

    ``unmentioned`` holds the record of every finding and device the report does not mention, flagged or not, with
    its missed score (a benchmark ranks them; ``missed`` is the flagged subset)."""

    image: str
    sentences: tuple[SentenceCheck, ...]
    missed: tuple[dict[str, Any], ...]
    unmentioned: tuple[dict[str, Any], ...] = ()

    def counts(self) -> dict[str, int]:
        out = {"supported": 0, "contradicted": 0, "unverifiable": 0}
        for s in self.sentences:
            out[s.flag] += 1
        return out | {"missed": len(self.missed)}

    def score(self, problem: str) -> float:
        """The highest score of ``problem``'s check over the claims (``missed``: over the unmentioned findings;
        ``""``: the deciding scores) — ``-inf`` when there is none."""
        if problem == "missed":
            return max((m["score"] for m in self.unmentioned), default=-math.inf)
        if not problem:
            return max((c.score for s in self.sentences for c in s.claims), default=-math.inf)
        return max(
            (c.scores[problem] for s in self.sentences for c in s.claims if problem in c.scores), default=-math.inf
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "counts": self.counts(),
            "sentences": [
                {
                    "index": s.index,
                    "text": s.text,
                    "flag": s.flag,
                    "claims": [
                        {
                            "finding": c.claim.finding,
                            "value": c.claim.value,
                            "side": c.claim.side,
                            "severity": c.claim.severity,
                            "device": c.claim.device,
                            "words": c.claim.text,
                            "flag": c.flag,
                            "problem": c.problem,
                            "score": round(c.score, 4),
                            "note": c.note,
                            "evidence": list(c.evidence),
                        }
                        for c in s.claims
                    ],
                }
                for s in self.sentences
            ],
            "missed": list(self.missed),
        }


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _attribute_check(claimed: str | None, dist: dict[str, float] | None, key: str) -> tuple[float, str] | None:
    """(score, note) of a side / severity claim against the head's distribution; None when not comparable."""
    if claimed is None or not dist or claimed not in dist:
        return None
    top = max(dist, key=dist.__getitem__)
    raised = top != claimed and dist[top] >= 0.5
    # > 0 only when raised: how much more probable the top class is than the claimed one (in logits)
    score = _logit(dist[top]) - _logit(dist[claimed]) if raised else _logit(0.5) - _logit(max(dist[claimed], 0.5))
    note = f"{key}: image says {top} ({dist[top]:.2f}), report says {claimed} ({dist[claimed]:.2f})"
    return score, note


def _checks(claim: Claim, ev: FindingEvidence) -> dict[str, tuple[float, str]]:
    """Every check that applies to a positive or negated claim: problem → (score, note); score > 0 raises it.

    A denial has one check, ``present`` (raised when the image flags the finding, P ≥ 0.5 and, for "no large / left
    X", most of the grade / side mass there); a positive claim has ``absent`` (P below the operating threshold) and,
    when the claim names them and the model has the heads, ``side`` and ``severity``."""
    p, thr = ev.probability, ev.threshold
    margin = _logit(thr) - _logit(p)  # > 0: below the operating threshold
    if claim.value == 0:
        q = _qualified_share(claim, ev)
        score = min(-margin, _logit(p), _logit(1.0 if q is None else q))
        if not ev.present:
            note = f"not called present (P = {p:.2f})"
        elif q is not None and q < 0.5:
            note = f"called present (P = {p:.2f}) but only {q:.2f} of it {claim.side or claim.severity}"
        elif p < 0.5:
            note = f"possibly present: P = {p:.2f} is above the threshold {thr:.2f} but < 0.5"
        else:
            note = f"report negates it; image P = {p:.2f} ≥ {thr:.2f}"
        return {"present": (score, note)}
    out = {
        "absent": (
            margin,
            f"image P = {p:.2f} < threshold {thr:.2f}" if margin > 0 else f"called present (P = {p:.2f})",
        )
    }
    side = _attribute_check(claim.side if claim.side in ("left", "right", "bilateral") else None, ev.side, "side")
    sev = _attribute_check(claim.severity, ev.severity, "severity")
    return out | {k: g for k, g in (("side", side), ("severity", sev)) if g is not None}


def _judge(claim: Claim, ev: FindingEvidence | None, head: str) -> ClaimCheck:
    if ev is None:
        return ClaimCheck(claim, "unverifiable", "no head", -math.inf, "the model has no head for this", ())
    rec = (evidence_record(ev, head),)
    if claim.value == -1:
        return ClaimCheck(claim, "unverifiable", "hedged", -math.inf, "hedged claims are not judged", rec)
    checks = _checks(claim, ev)
    scores = {k: v[0] for k, v in checks.items()}
    if claim.value == 0:
        score, note = checks["present"]
        q = _qualified_share(claim, ev)
        possible = ev.present and ev.probability < 0.5 and (q is None or q >= 0.5)  # flagged, not likely: no verdict
        flag = "contradicted" if score > 0 else ("unverifiable" if possible else "supported")
        return ClaimCheck(claim, flag, "present", score, note, rec, scores)
    raised = [(k, v) for k, v in checks.items() if v[0] > 0]  # absent first: a missing finding has no side
    if raised:
        problem, (score, note) = raised[0]
        return ClaimCheck(claim, "contradicted", problem, score, note, rec, scores)
    # supported: the score is the strongest (negative) margin of what was checked, for ranking
    problem = "side" if "side" in checks else ("severity" if "severity" in checks else "absent")
    note = "; ".join(v[1] for v in checks.values())
    return ClaimCheck(claim, "supported", problem, max(scores.values()), note, rec, scores)


_LEVEL = {"small": 0, "moderate": 1, "large": 2}


def _qualified_share(claim: Claim, ev: FindingEvidence) -> float | None:
    """For a negated claim with a side or severity: the image's probability mass on that side (a bilateral finding
    counts for either side) or on that grade or worse; None when the claim names neither or no head gives it."""
    if claim.side in ("left", "right", "bilateral") and ev.side:
        ok = (claim.side, "bilateral") if claim.side != "bilateral" else ("bilateral",)
        return sum(ev.side.get(s, 0.0) for s in ok)
    if claim.severity in _LEVEL and ev.severity:
        return sum(v for k, v in ev.severity.items() if _LEVEL.get(k, -1) >= _LEVEL[claim.severity])
    return None


def _evidence_for(claim: Claim, f: ImageFindings) -> tuple[FindingEvidence | None, str]:
    if claim.device:
        return f.devices.get(claim.device), f"device/{claim.device}"
    return f.findings.get(claim.finding), f"presence/{claim.finding}"


def check_report(
    report: str | list[ReportSentence], findings: ImageFindings, *, missed_probability: float = 0.5
) -> ReportCheck:
    """Judge every sentence of ``report`` (text, or sentences already read) against ``findings``."""
    sentences = read_claims(report) if isinstance(report, str) else report
    out = []
    mentioned: set[str] = set()
    for s in sentences:
        checks = []
        for c in s.claims:
            if c.value != 0:
                mentioned |= {c.finding, (c.device or _ANY_DEVICE) if c.finding == "Support Devices" else c.finding}
            checks.append(_judge(c, *_evidence_for(c, findings)))
        flags = {c.flag for c in checks}
        flag = "contradicted" if "contradicted" in flags else ("supported" if "supported" in flags else "unverifiable")
        out.append(SentenceCheck(s.index, s.text, flag, tuple(checks)))
    unmentioned = _unmentioned(findings, mentioned, missed_probability)
    return ReportCheck(findings.image, tuple(out), tuple(r for r in unmentioned if r["score"] > 0), unmentioned)


_ANY_DEVICE = "any device"


def _unmentioned(findings: ImageFindings, mentioned: set[str], floor: float) -> tuple[dict[str, Any], ...]:
    """Every finding and device the report does not mention, with its missed score (> 0 = flagged: above the
    operating threshold and P ≥ ``floor``). A device is mentioned by its name; a sentence about devices that names
    none ("lines and tubes are unchanged") covers every device."""
    recs = []
    named = [(n, ev, f"presence/{n}") for n, ev in findings.findings.items() if n != "Support Devices"]
    if _ANY_DEVICE not in mentioned:  # "lines and tubes in place" names no device but does not miss one either
        named += [(n, ev, f"device/{n}") for n, ev in findings.devices.items()]
    for name, ev, head in named:
        if name in mentioned:
            continue
        score = min(_logit(ev.probability) - _logit(ev.threshold), _logit(ev.probability) - _logit(floor))
        recs.append(evidence_record(ev, head) | {"score": round(score, 4)})
    return tuple(recs)


_COLOURS = {"supported": "#1b7f3b", "contradicted": "#b3261e", "unverifiable": "#6b6b6b"}


def render_check_text(check: ReportCheck) -> str:
    """A plain-text rendering: one line per sentence with its flag, indented notes per judged claim."""
    lines = [f"Report check — {check.image}" if check.image else "Report check"]
    for s in check.sentences:
        lines.append(f"[{s.flag.upper():^12}] {s.text}")
        for c in s.claims:
            lines.append(
                f"{'':15}- {c.claim.finding}{' / ' + c.claim.device if c.claim.device else ''}: {c.flag}"
                f"{' (' + c.problem + ')' if c.flag == 'contradicted' else ''} — {c.note}"
            )
    for m in check.missed:
        lines.append(
            f"[{'MISSED':^12}] {m['name']}: image P = {m['probability']:.2f} (threshold {m['threshold']:.2f})"
            ", not mentioned in the report"
        )
    counts = check.counts()
    lines.append(", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def render_check_html(check: ReportCheck, heatmaps: dict[str, str] | None = None) -> str:
    """A self-contained HTML page: sentences coloured by flag with their notes; missed findings; heat maps (paths
    keyed by head name) linked beside the claims they back."""
    heatmaps = heatmaps or {}
    rows = []
    for s in check.sentences:
        notes = "".join(
            f"<li>{html.escape(c.claim.finding)}: <b>{c.flag}</b> {html.escape(c.note)}"
            + "".join(
                f' <a href="{html.escape(heatmaps[e["head"]])}">heat map</a>'
                for e in c.evidence
                if e["head"] in heatmaps
            )
            + "</li>"
            for c in s.claims
        )
        rows.append(
            f'<tr><td style="color:{_COLOURS[s.flag]};font-weight:600">{s.flag}</td>'
            f"<td>{html.escape(s.text)}<ul>{notes}</ul></td></tr>"
        )
    for m in check.missed:
        rows.append(
            f'<tr><td style="color:#8a5a00;font-weight:600">missed</td><td>{html.escape(m["name"])}: image '
            f"P = {m['probability']:.2f} (threshold {m['threshold']:.2f}), not in the report</td></tr>"
        )
    counts = ", ".join(f"{k} {v}" for k, v in check.counts().items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cxrlens report check</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}td{vertical-align:top;padding:4px 8px}"
        "ul{margin:2px 0 6px 1em;color:#444}</style></head><body>"
        f"<h1>Report check</h1><p>{html.escape(check.image)}</p><p>{counts}</p>"
        f"<table>{''.join(rows)}</table></body></html>"
    )
