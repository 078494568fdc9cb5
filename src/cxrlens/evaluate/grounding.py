"""Phantom grounding: generated report text scored against what the phantom renderer actually drew.

On a phantom dataset the truth is not another report but ``factors.parquet``. Definitions (every output row names
its variant):

**Labels.** The 13 drawable CheXpert labels (:data:`GROUNDING_LABELS`: the 14 without ``No Finding``). The generated
text is read by the project labeler (:func:`cxrlens.data.labeler.report_mentions`); a report *claims* label L when
its strongest mention of L (positive > uncertain > negative, as in ``label_reports``) is positive — or, in the
``uncertain=positive`` variant, positive or uncertain. ``uncertain=negative`` counts only definite mentions.

**Rendered truth.** L is *rendered* in an image when any kind k with ``KIND_LABEL[k] == L`` has ``k.present == 1``
(so the five device kinds together make ``Support Devices``; a finding drawn faint because its source was uncertain
counts as rendered).

**Excluded (unrendered).** L is *excluded* in an image when it is not rendered and either (a) the labeler finds L
positive or uncertain in one of the image's ``unrendered`` MeSH tags (each tag read as text, its ``/``-parts joined
by spaces: ``Fractures, Bone/clavicle/left`` → Fracture, ``Stents/coronary vessels`` → Support Devices,
``Opacity/mediastinum`` → Lung Opacity), or (b) a kind of L is listed in ``uncertain_omitted``. The report said it,
the renderer could not draw it: a claim of an excluded label is neither a hit nor a hallucination; it is counted
(``excluded claims``) and left out of every denominator below.

**Finding-level P / R / F1** over (report, label) cells: TP = claimed and rendered, FP = claimed, not rendered, not
excluded, FN = rendered and not claimed. ``micro`` pools the 13 labels (and, as ``CheXpert-5``, the five competition
labels); ``per label`` gives each label's own.

**Hallucination rate**, three units:

* ``per finding`` = FP / (TP + FP) over (report, label) claims (= 1 − micro precision);
* ``per mention`` = over every claiming labeler mention (one per matched phrase, so a finding repeated in findings
  and impression counts twice) of a non-excluded label, the fraction whose label is not rendered in that image;
* ``per report`` = fraction of **all** evaluated reports with ≥ 1 hallucinated finding (reports that claim nothing
  — empty ones included — count as not hallucinating, so a system that says nothing looks clean);
* ``per non-empty report`` = the same over the reports whose text is not empty (white space only counts as empty),
  beside it; ``empty reports · fraction of reports`` is its own row, and ``reports claiming a finding`` says how many
  reports claimed anything.

**Side / zone accuracy.** Unit: a generated *sentence* with a claiming mention of a label that is rendered (one unit
per sentence and label). The truth is the set of sides (zones) of the rendered kinds of that label, ``none``
dropped; a unit whose truth set is empty (cardiomegaly, an endotracheal tube …; unzoned kinds for zone) is not
assessed. The stated side / zone is parsed from the mention's *scope*: the whole sentence when the sentence claims
one label only, else the mention's clause (the sentence cut at ``, ; :`` and at the words ``and, with, but,
however, whereas, while, although, which``), by :func:`cxrlens.data.reports.parse_side` /
:func:`~cxrlens.data.reports.parse_zone`:

* side: ``bilateral`` for *bilateral(ly), both, bibasilar, bibasal, biapical, bilat*, for *right and left* /
  *left and right*, or when both *right* and *left* occur; else ``right`` (*right, rt*) or ``left`` (*left, lt*);
  else ``none``.
* zone: ``upper`` (*upper, apex, apices, apical, biapical*), ``middle`` (*middle, mid, midlung, perihilar, hilar,
  hilum, lingula, lingular*), ``lower`` (*lower, base(s), basal, basilar, bibasilar, bibasal, retrocardiac,
  costophrenic*); two or more of these → ``several``; none → ``none``.

Accuracy = correct / (correct + wrong), where correct = stated value ∈ truth set. Units that state no side (zone),
and zone units stating ``several``, are **not errors**: they are counted separately (``no side stated``,
``no zone stated``, ``several zones stated``). Side/zone words are matched case-insensitively as whole words.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrlens.data.labeler import label_reports, report_mentions
from cxrlens.data.phantom.spec import KIND_LABEL, KINDS, LABEL_CHANNELS
from cxrlens.data.reports import parse_side, parse_zone

__all__ = [
    "GROUNDING_LABELS",
    "GroundingResult",
    "excluded_labels",
    "grounding_scores",
    "rendered_labels",
]

GROUNDING_LABELS: tuple[str, ...] = LABEL_CHANNELS
_FIVE = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_LABEL_KINDS: dict[str, tuple[str, ...]] = {
    lab: tuple(k for k in KINDS if KIND_LABEL[k] == lab) for lab in GROUNDING_LABELS
}

_SENTENCE_COLUMNS = [
    "report",
    "label",
    "sentence",
    "scope",
    "side_stated",
    "side_truth",
    "side_result",
    "zone_stated",
    "zone_truth",
    "zone_result",
]
_CLAUSE_CUT = re.compile(r"[,;:]|\b(?:and|with|but|however|whereas|while|although|which)\b", re.I)
_PAIRED_SIDES = re.compile(r"\b(?:right\s+and\s+left|left\s+and\s+right)\b", re.I)


def _scope(sentence: str, phrase: str, single_label: bool) -> str:
    """The part of ``sentence`` whose side/zone words describe the mention ``phrase`` (see module docstring)."""
    if single_label:
        return sentence
    # keep "right and left" together before cutting at "and"
    protected = _PAIRED_SIDES.sub(lambda m: m.group(0).replace(" ", "_"), sentence)
    at = protected.lower().find(phrase.lower())
    if at < 0:
        return sentence
    cuts = [(m.start(), m.end()) for m in _CLAUSE_CUT.finditer(protected)]
    lo = max((e for s, e in cuts if e <= at), default=0)
    hi = min((s for s, e in cuts if s >= at + len(phrase)), default=len(protected))
    return protected[lo:hi].replace("_", " ").strip()


def rendered_labels(factors: pd.DataFrame) -> pd.DataFrame:
    """(n, 13) bool: label drawn in the image (any of its kinds has ``present == 1``); columns GROUNDING_LABELS."""
    out = {}
    for lab, kinds in _LABEL_KINDS.items():
        cols = [f"{k}.present" for k in kinds if f"{k}.present" in factors.columns]
        out[lab] = factors[cols].fillna(0).astype(int).to_numpy().sum(1) > 0 if cols else np.zeros(len(factors), bool)
    return pd.DataFrame(out, index=factors.index)


def _tag_text(tag: str) -> str:
    return " ".join(p.strip() for p in str(tag).split("/") if p.strip()) + "."


def excluded_labels(factors: pd.DataFrame) -> pd.DataFrame:
    """(n, 13) bool: label not rendered but named by an ``unrendered`` tag or an ``uncertain_omitted`` kind."""

    rendered = rendered_labels(factors)
    said = pd.DataFrame(False, index=factors.index, columns=list(GROUNDING_LABELS))
    if "unrendered" in factors.columns:
        tags_per_row = [list(t) if t is not None and not isinstance(t, float) else [] for t in factors["unrendered"]]
        unique = sorted({_tag_text(t) for tags in tags_per_row for t in tags})
        if unique:
            lab = label_reports(unique)[list(GROUNDING_LABELS)]
            claimed = {
                t: set(lab.columns[(row == 1) | (row == -1)])
                for t, (_, row) in zip(unique, lab.iterrows(), strict=True)
            }
            for i, tags in enumerate(tags_per_row):
                for t in tags:
                    for name in claimed[_tag_text(t)]:
                        said.iat[i, said.columns.get_loc(name)] = True
    if "uncertain_omitted" in factors.columns:
        for i, kinds in enumerate(factors["uncertain_omitted"]):
            for k in list(kinds) if kinds is not None and not isinstance(kinds, float) else []:
                if k in KIND_LABEL:
                    said.iat[i, said.columns.get_loc(KIND_LABEL[k])] = True
    return said & ~rendered


@dataclasses.dataclass(frozen=True)
class GroundingResult:
    """What :func:`grounding_scores` measured.

    Attributes:
        summary: tidy rows ``metric, variant, value, numerator, denominator`` (every variant named).
        per_label: one row per label: ``label, tp, fp, fn, excluded, precision, recall, f1``.
        per_report: one row per report: ``claimed, hallucinated, excluded_claims, missed`` (label lists) and counts.
        sentences: one row per (sentence, label) unit of a rendered label: ``report, label, sentence, scope,
            side_stated, side_truth, side_result, zone_stated, zone_truth, zone_result``.
    """

    summary: pd.DataFrame
    per_label: pd.DataFrame
    per_report: pd.DataFrame
    sentences: pd.DataFrame


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _truth_set(row: pd.Series, label: str, attr: str) -> tuple[str, ...]:
    vals = {
        str(row[f"{k}.{attr}"])
        for k in _LABEL_KINDS[label]
        if int(row.get(f"{k}.present", 0) or 0) and f"{k}.{attr}" in row.index
    }
    return tuple(sorted(vals - {"none"}))


def grounding_scores(
    texts: Sequence[str],
    factors: pd.DataFrame,
    *,
    uncertain: str = "positive",
    mentions: Sequence[Sequence] | None = None,
    excluded: pd.DataFrame | None = None,
) -> GroundingResult:
    """Score generated texts against the rendered truth (definitions: module docstring).

    Args:
        texts: (n,) generated report texts.
        factors: (n, …) ``factors.parquet`` rows aligned with ``texts``.
        uncertain: ``"positive"`` (uncertain mentions are claims) or ``"negative"`` (only definite mentions).
        mentions: ``report_mentions(texts)`` if already computed (else computed here).
        excluded: ``excluded_labels(factors)`` if already computed.
    """
    if uncertain not in ("positive", "negative"):
        raise ValueError(f"uncertain must be 'positive' or 'negative', got {uncertain!r}")
    if len(texts) != len(factors):
        raise ValueError(f"{len(texts)} texts but {len(factors)} factor rows")
    if mentions is None:
        mentions = report_mentions(list(texts))
    factors = factors.reset_index(drop=True)
    truth = _Truth(
        rendered_labels(factors).to_numpy(),
        (excluded_labels(factors) if excluded is None else excluded.reset_index(drop=True)).to_numpy(),
        factors,
    )
    claims = _claims(mentions, truth, (1, -1) if uncertain == "positive" else (1,))
    tp = claims.claimed & truth.rendered
    fp = claims.claimed & ~truth.rendered & ~truth.excluded
    fn = ~claims.claimed & truth.rendered
    ex = claims.claimed & truth.excluded
    per_label = _per_label(tp, fp, fn, ex, uncertain)
    sentences = pd.DataFrame(claims.sentence_rows, columns=_SENTENCE_COLUMNS)
    empty = np.array([not str(t).strip() for t in texts], dtype=bool)
    table = _MetricRows(f"uncertain={uncertain}")
    for set_name, cols in (("13 drawable labels", GROUNDING_LABELS), ("CheXpert-5", _FIVE)):
        idx = [GROUNDING_LABELS.index(c) for c in cols]
        table.prf(f"micro · {set_name}", tp[:, idx].sum(), fp[:, idx].sum(), fn[:, idx].sum())
    for r in per_label.itertuples():
        table.prf(f"per label · {r.label}", r.tp, r.fp, r.fn)
    halluc_report = fp.any(1)
    n = len(texts)
    table.add("hallucination rate", "per finding", fp.sum(), tp.sum() + fp.sum())
    table.add("hallucination rate", "per mention", claims.mention_hallucinated, claims.mentions)
    table.add("hallucination rate", "per report", halluc_report.sum(), n)
    table.add("hallucination rate", "per non-empty report", halluc_report[~empty].sum(), (~empty).sum())
    table.add("empty reports", "fraction of reports", empty.sum(), n)
    table.add("reports claiming a finding", "fraction of reports", (claims.claimed & ~truth.excluded).any(1).sum(), n)
    table.add("excluded claims", "claimed but unrendered · fraction of claims", ex.sum(), claims.claimed.sum())
    _side_zone_rows(table, sentences)

    def names(m: np.ndarray) -> list[list[str]]:
        return [[GROUNDING_LABELS[j] for j in np.nonzero(r)[0]] for r in m]

    per_report = pd.DataFrame(
        {
            "claimed": names(claims.claimed),
            "hallucinated": names(fp),
            "excluded_claims": names(ex),
            "missed": names(fn),
            "n_tp": tp.sum(1),
            "n_fp": fp.sum(1),
            "n_fn": fn.sum(1),
        }
    )
    return GroundingResult(pd.DataFrame(table.rows), per_label, per_report, sentences)


@dataclasses.dataclass(frozen=True)
class _Truth:
    """What was drawn: ``rendered`` and ``excluded`` (n, L) bool over :data:`GROUNDING_LABELS`, the factor rows."""

    rendered: np.ndarray
    excluded: np.ndarray
    factors: pd.DataFrame


@dataclasses.dataclass
class _Claims:
    """What the texts claim: ``claimed`` (n, L) bool (each label's strongest mention per report), mention counts
    for the per-mention hallucination rate, and one row per (sentence, rendered label) for side/zone scoring."""

    claimed: np.ndarray
    mentions: int = 0
    mention_hallucinated: int = 0
    sentence_rows: list[dict] = dataclasses.field(default_factory=list)


_RANK = {1: 3, -1: 2, 0: 1}  # positive beats uncertain beats negative when a report mentions a label twice


def _claims(mentions: Sequence[Sequence], truth: _Truth, claims_ok: tuple[int, ...]) -> _Claims:
    col = {lab: j for j, lab in enumerate(GROUNDING_LABELS)}
    out = _Claims(np.zeros((len(mentions), len(GROUNDING_LABELS)), dtype=bool))
    for i, ms in enumerate(mentions):
        best: dict[str, int] = {}
        for m in ms:
            if m.label in col and (m.label not in best or _RANK[m.value] > _RANK[best[m.label]]):
                best[m.label] = m.value
        for lab, v in best.items():
            out.claimed[i, col[lab]] = v in claims_ok
        positive = [m for m in ms if m.label in col and m.value in claims_ok]
        for m in positive:
            if not truth.excluded[i, col[m.label]]:
                out.mentions += 1
                out.mention_hallucinated += int(not truth.rendered[i, col[m.label]])
        out.sentence_rows += _sentence_rows(i, positive, truth, col)
    return out


def _sentence_rows(i: int, positive: list, truth: _Truth, col: dict[str, int]) -> list[dict]:
    """Side/zone scoring rows of report ``i``: one per (sentence, rendered label) it claims."""
    labels_in: dict[str, set[str]] = {}
    for m in positive:
        labels_in.setdefault(m.sentence, set()).add(m.label)
    rows, seen = [], set()
    for m in positive:
        if not truth.rendered[i, col[m.label]] or (m.sentence, m.label) in seen:
            continue
        seen.add((m.sentence, m.label))
        scope = _scope(m.sentence, m.text, len(labels_in[m.sentence]) == 1)
        row = truth.factors.iloc[i]
        sides, zones = _truth_set(row, m.label, "side"), _truth_set(row, m.label, "zone")
        side, zone = parse_side(scope), parse_zone(scope)
        rows.append(
            {
                "report": i,
                "label": m.label,
                "sentence": m.sentence,
                "scope": scope,
                "side_stated": side,
                "side_truth": "|".join(sides),
                "side_result": _result(side, sides, ("none",)),
                "zone_stated": zone,
                "zone_truth": "|".join(zones),
                "zone_result": _result(zone, zones, ("none", "several")),
            }
        )
    return rows


def _per_label(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, ex: np.ndarray, uncertain: str) -> pd.DataFrame:
    per_label = pd.DataFrame(
        {"label": list(GROUNDING_LABELS), "tp": tp.sum(0), "fp": fp.sum(0), "fn": fn.sum(0), "excluded": ex.sum(0)}
    )
    per_label["precision"] = [_ratio(a, a + b) for a, b in zip(per_label.tp, per_label.fp, strict=True)]
    per_label["recall"] = [_ratio(a, a + c) for a, c in zip(per_label.tp, per_label.fn, strict=True)]
    per_label["f1"] = [
        _ratio(2 * a, 2 * a + b + c) for a, b, c in zip(per_label.tp, per_label.fp, per_label.fn, strict=True)
    ]
    per_label["uncertain"] = uncertain
    return per_label


@dataclasses.dataclass
class _MetricRows:
    """The long metric table: each row names its metric, exact variant (+ the uncertain policy), value and the
    numerator / denominator it came from."""

    policy: str
    rows: list[dict] = dataclasses.field(default_factory=list)

    def add(self, metric: str, variant: str, num: float, den: float) -> None:
        self.rows.append(
            {
                "metric": metric,
                "variant": f"{variant} · {self.policy}",
                "value": _ratio(num, den),
                "numerator": float(num),
                "denominator": float(den),
            }
        )

    def prf(self, variant: str, tp: float, fp: float, fn: float) -> None:
        self.add("grounding precision", variant, tp, tp + fp)
        self.add("grounding recall", variant, tp, tp + fn)
        self.add("grounding f1", variant, 2 * tp, 2 * tp + fp + fn)


def _side_zone_rows(table: _MetricRows, sentences: pd.DataFrame) -> None:
    for what in ("side", "zone"):
        res = sentences[f"{what}_result"]
        ok, wrong = int((res == "correct").sum()), int((res == "wrong").sum())
        assessed = int((res != "not assessed").sum())
        table.add(f"{what} accuracy", "sentences stating it", ok, ok + wrong)
        table.add(f"no {what} stated", "fraction of assessed sentences", int((res == "not stated").sum()), assessed)
        if what == "zone":
            table.add("several zones stated", "fraction of assessed sentences", int((res == "several").sum()), assessed)


def _result(stated: str, truth: tuple[str, ...], unscored: tuple[str, ...]) -> str:
    if not truth:
        return "not assessed"
    if stated in unscored:
        return "not stated" if stated == "none" else stated
    return "correct" if stated in truth else "wrong"
