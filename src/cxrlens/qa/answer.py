"""Answering a parsed question from what the image model says (:class:`cxrlens.qa.model.ImageFindings`).

Every answer carries a **calibrated confidence** — the probability, calibrated on val, of the answer given — and
its **evidence**: the heads consulted with their probabilities, operating thresholds and test AUC, the side or
severity distribution, and (filled in by :func:`attach_heatmaps`) the path of a heat map of the patch
contributions behind a presence call.

Decision rules (documented, not tuned on test):

* presence ("is there X?"): the finding is *flagged* when P(X) reaches the head's operating threshold (the val
  cut-off of best balanced accuracy, so a rare finding is not always "no"); with a side or severity in the
  question, the most probable side / severity must also match (a bilateral finding counts for "left" and
  "right"). Flagged with P ≥ 0.5 → "yes"; flagged with P < 0.5 → "possible" (more evidence than the operating
  point, less likely than not); else "no". ``polarity=False`` questions ("are the lungs clear?") invert it ("no",
  "possibly not", "yes"); confidence = the calibrated probability of the state the answer asserts.
* laterality / severity / device position: the most probable class of the side / severity head (the question
  presupposes the finding), confidence = its probability given the finding is present; when the model does not
  call the finding present the text says so and the evidence shows P.
* findings: the findings called present *and* more likely than not (calibrated P ≥ 0.5), most probable first
  (confidence: that of the least confident item), or "no finding" (confidence: the ``normal`` head's P); normal:
  the ``normal`` head.
* unsupported questions, and questions about a finding or device the model has no head for, get
  ``answer = "cannot answer"`` with ``confidence = None`` and the reason — never a confident guess.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from cxrlens.interpret.heatmaps import overlay_png
from cxrlens.qa.model import FindingEvidence, ImageFindings
from cxrlens.qa.questions import Question

__all__ = ["CANNOT", "HEDGED", "Answer", "answer_question", "attach_heatmaps", "evidence_record"]

CANNOT = "cannot answer"
HEDGED = {"possible": "yes", "possibly not": "no"}
"""Hedged yes/no answers and the operating-threshold decision they stand for (what a benchmark scores)."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """An answer with its calibrated confidence (None when not answered) and evidence records."""

    question: Question
    answer: str
    text: str
    confidence: float | None
    evidence: tuple[dict[str, Any], ...] = ()

    @property
    def answered(self) -> bool:
        return self.answer != CANNOT

    def to_json(self) -> dict[str, Any]:
        q = dataclasses.asdict(self.question)
        return {
            "question": q,
            "answer": self.answer,
            "text": self.text,
            "confidence": self.confidence,
            "evidence": list(self.evidence),
        }


def evidence_record(e: FindingEvidence, head: str) -> dict[str, Any]:
    """A JSON-able evidence record of one head's output."""
    rec: dict[str, Any] = {
        "head": head,
        "name": e.name,
        "probability": round(e.probability, 4),
        "threshold": round(e.threshold, 4),
        "called_present": e.present,
    }
    if e.head_auc is not None:
        rec["head_test_auc"] = round(e.head_auc, 3)
    if e.side:
        rec["side"] = {k: round(v, 4) for k, v in e.side.items()}
    if e.severity:
        rec["severity"] = {k: round(v, 4) for k, v in e.severity.items()}
    return rec


def _cannot(q: Question, reason: str) -> Answer:
    return Answer(q, CANNOT, f"Cannot answer: {reason}.".replace("..", "."), None)


def _pct(p: float) -> str:
    return f"{100 * p:.0f} %"


def _lookup(q: Question, f: ImageFindings) -> tuple[FindingEvidence | None, str, str]:
    """The evidence a question is about, its head name and a display name."""
    if q.device:
        return f.devices.get(q.device), f"device/{q.device}", q.device
    name = q.finding or ""
    return f.findings.get(name), f"presence/{name}", name.lower()


def _top(dist: dict[str, float]) -> tuple[str, float]:
    k = max(dist, key=dist.__getitem__)
    return k, dist[k]


def _presence(q: Question, f: ImageFindings) -> Answer:
    ev, head, name = _lookup(q, f)
    if ev is None:
        return _cannot(q, f"the model has no head for {name or 'this finding'} (too few training examples)")
    p, yes = ev.probability, ev.present
    words = [name]
    if q.side:
        if not ev.side:
            return _cannot(q, f"the model has no side head for {name}")
        ok = {"left": ("left", "bilateral"), "right": ("right", "bilateral")}.get(q.side, (q.side,))
        p = ev.probability * sum(ev.side.get(s, 0.0) for s in ok)
        yes = yes and _top(ev.side)[0] in ok
        words.insert(0, q.side)
    if q.severity:
        if not ev.severity:
            return _cannot(q, f"the model has no severity head for {name}")
        p = p * ev.severity.get(q.severity, 0.0)
        yes = yes and _top(ev.severity)[0] == q.severity
        words.insert(0, q.severity)
    said = " ".join(words)
    p_answer = p if yes else 1 - p  # the probability of the state the answer asserts, whatever the polarity
    if yes and p < 0.5:  # flagged by the operating threshold, but not more likely than not: say so
        answer = "possible" if q.polarity else "possibly not"
        text = (
            f"Possibly: {said} is flagged (P = {p:.2f}; operating threshold {ev.threshold:.2f}) but less likely "
            "than not."
        )
    else:
        answer = ("yes" if yes else "no") if q.polarity else ("no" if yes else "yes")
        text = (
            f"{answer.capitalize()}: {said} {'is' if yes else 'is not'} called present "
            f"(P = {p:.2f}, operating threshold {ev.threshold:.2f})."
        )
    return Answer(q, answer, text, float(p_answer), (evidence_record(ev, head),))


def _attribute(q: Question, f: ImageFindings, key: str) -> Answer:
    ev, head, name = _lookup(q, f)
    if ev is None:
        return _cannot(q, f"the model has no head for {name or 'this finding'} (too few training examples)")
    dist = ev.side if key == "side" else ev.severity
    if not dist:
        what = "tip position" if q.device in ("endotracheal tube", "enteric tube") else key
        return _cannot(q, f"the model has no {what} head for {name}")
    rec = (evidence_record(ev, head),)
    best, pb = _top(dist)
    others = ", ".join(f"{k} {_pct(v)}" for k, v in sorted(dist.items(), key=lambda kv: -kv[1]) if k != best)
    called = (
        f"given the {name} (P = {ev.probability:.2f})"
        if ev.present
        else f"if there is one: the {name} itself is not called present (P = {ev.probability:.2f}, threshold "
        f"{ev.threshold:.2f})"
    )
    return Answer(q, best, f"{best.capitalize()} ({_pct(pb)}; {others}), {called}.", pb, rec)


def _findings(q: Question, f: ImageFindings) -> Answer:
    # a list names what is more likely than not (calibrated P ≥ 0.5 and above the operating threshold): the
    # balanced-accuracy threshold of a yes/no question would list every rare finding with a low probability
    pos = [e for e in f.positives() if e.probability >= 0.5]
    recs = tuple(evidence_record(e, f"presence/{e.name}") for e in pos)
    if not pos:  # confidence: the calibrated normal-study head, when the model has one
        conf = f.normal.probability if f.normal is not None else None
        return Answer(q, "no finding", "No finding is called present.", conf, recs)
    listed = "; ".join(f"{e.name} ({e.probability:.2f})" for e in pos)
    conf = float(min(e.confidence for e in pos))
    return Answer(q, "; ".join(sorted(e.name for e in pos)), f"Findings called present: {listed}.", conf, recs)


def _normal(q: Question, f: ImageFindings) -> Answer:
    ev = f.normal
    if ev is None:
        return _cannot(q, "the model has no normal-study head")
    yes = ev.present if q.polarity else not ev.present
    text = f"{'Yes' if yes else 'No'}: P(no finding) = {ev.probability:.2f} (threshold {ev.threshold:.2f})."
    return Answer(q, "yes" if yes else "no", text, ev.confidence, (evidence_record(ev, "normal"),))


def answer_question(question: Question, findings: ImageFindings) -> Answer:
    """Answer ``question`` for one image (see module docstring)."""
    kind = question.kind
    if kind == "unsupported":
        return _cannot(question, question.reason or "this is not a question about what one image shows")
    if kind in ("presence", "device"):
        if kind == "device" and question.device is None:
            question = dataclasses.replace(question, finding=question.finding or "Support Devices")
        return _presence(question, findings)
    if kind in ("laterality", "device_position"):
        return _attribute(question, findings, "side")
    if kind == "severity":
        return _attribute(question, findings, "severity")
    if kind == "findings":
        return _findings(question, findings)
    if kind == "normal":
        return _normal(question, findings)
    return _cannot(question, f"question kind {kind!r} is not supported")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def attach_heatmaps(answer: Answer, findings: ImageFindings, gray_HW: np.ndarray, out_dir: str | Path) -> Answer:
    """Write a heat map (positive patch contributions to the head's logit, over the image as the model saw it)
    for each presence-type evidence record and add its ``heatmap`` path; returns the new answer."""
    out_dir = Path(out_dir)
    recs = []
    for rec in answer.evidence:
        ev = (findings.devices if rec["head"].startswith("device/") else findings.findings).get(rec["name"])
        if ev is not None and ev.token_map is not None:
            m = np.clip(ev.token_map.reshape(findings.grid), 0, None)
            path = out_dir / f"{Path(findings.image).stem or 'image'}-{_slug(rec['head'])}.png"
            overlay_png(gray_HW, m, path)
            rec = {**rec, "heatmap": str(path)}
        recs.append(rec)
    return dataclasses.replace(answer, evidence=tuple(recs))
