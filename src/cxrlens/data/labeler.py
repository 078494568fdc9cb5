"""Offline CheXpert-14 labeler for chest-X-ray report text (mentions + medspaCy ConText negation/uncertainty).

``label_reports(texts)`` returns one row per text with the 14 CheXpert columns in the CheXpert convention
(``1`` positive, ``0`` negative, ``-1`` uncertain, ``NaN`` not mentioned). Steps for each report:

1. **Sections.** When the text has section headers (``FINDINGS:``, ``IMPRESSION:`` …) only the findings and
   impression (or conclusion) sections are read; a text without headers is read whole.
2. **Sentences.** A CXR-aware splitter (sentence ends, ``;``, blank lines, numbered items; ``vs.`` is not an end).
   Each sentence is the scope of every modifier in it.
3. **Mentions.** spaCy ``PhraseMatcher`` over the phrase tables of :mod:`cxrlens.data.labeler_phrases` (synonyms,
   abbreviations, plurals, misspellings); overlapping matches keep the longest, so look-alikes listed as *ignore*
   ("pericardial effusion") hide the phrases they contain. Heart/mediastinum words count only with a size qualifier
   in their clause (normal → 0, borderline → -1, enlarged/widened → 1).
4. **Negation and uncertainty.** medspaCy's ConText with a CXR rule set (negation "no evidence of", "without",
   "clear of", "resolved", "removed", "is not seen" …; uncertainty "possible", "may represent", "cannot be
   excluded", "questionable", "versus" …; hypothetical "evaluate for" read as uncertain; pseudo-negations "no change
   in", "not significantly changed", "not well seen" that state presence; terminators "but", "however", "there is").
   A mention with both a negation and an uncertainty cue is uncertain (CheXpert's order). Scopes end at terminators
   ("but", "after", "status post", "malposition" …); forward hedges also at ", and" / ", with".
5. **Aggregation** per report and label: the strongest mention wins, positive > uncertain > negative. A positive or
   uncertain CHF / heart-failure mention adds an uncertain Cardiomegaly mention (as CheXpert's labeler does).
   **No Finding** follows CheXpert's rule: ``1`` when no finding other than Support Devices — including the
   abnormalities outside the 14 labels (emphysema, granuloma, scoliosis …) — is positive or uncertain, else ``NaN``.
   An empty text gives all ``NaN`` (CheXpert would give No Finding = 1; nothing was read, so nothing is claimed).

Four readings where CheXpert's labeler differs from the IU X-ray MeSH tags (vascular congestion, "no new X", "stable
heart size", Lung Opacity as a parent) are :class:`LabelerConfig` switches, off by default;
:meth:`LabelerConfig.strict_chexpert` turns them on (docs/labeler.md, "Conventions").

The spaCy/ConText objects are built once per process (lazily, cached); texts are processed with ``Tokenizer.pipe``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlens.data import labeler_phrases as P
from cxrlens.data.reports import parse_sections
from cxrlens.data.schema import CHEXPERT_LABELS
from cxrlens.errors import BadInputError

__all__ = [
    "NEGATION_CUES",
    "UNCERTAINTY_CUES",
    "LabelerConfig",
    "Mention",
    "label_reports",
    "label_study_table",
    "read_report_texts",
    "report_mentions",
    "report_text",
    "scope_sentences",
    "select_sections",
]

FINDINGS = tuple(x for x in CHEXPERT_LABELS if x != "No Finding")
_NOT_NO_FINDING = frozenset(FINDINGS) - {"Support Devices"}
_OTHER = "_other"
_IGNORE = "_ignore"
_ANATOMY = "_anatomy:"
_SPAN_GROUP = "cxrlens_mentions"
_CHF = frozenset({"chf", "congestive heart failure", "heart failure", "cardiac failure"})
_CONGESTION = frozenset(P.UNCERTAIN_FINDING_PHRASES["Edema"])
_OPACITY_CHILDREN = ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion")

NEGATION_CUES: tuple[str, ...] = tuple(r[0] for r in P.MODIFIER_RULES if r[2] == "NEGATED_EXISTENCE")
"""Names (literals) of the negation rules of the ConText rule set; ``align.negation`` reads them as cue words."""
UNCERTAINTY_CUES: tuple[str, ...] = tuple(r[0] for r in P.MODIFIER_RULES if r[2] == "POSSIBLE_EXISTENCE")


@dataclasses.dataclass(frozen=True)
class LabelerConfig:
    """Options of :func:`label_reports`.

    Attributes:
        sections: read only findings/impression when section headers exist (else the whole text).
        hypothetical_as_uncertain: "evaluate for X", "rule out X", "if X" → uncertain (else such mentions are dropped).
        chf_implies_cardiomegaly: a positive/uncertain CHF mention adds an uncertain Cardiomegaly (CheXpert's rule).
        congestion_uncertain: an unhedged "vascular congestion", "pulmonary congestion", "cephalization" … is an
            uncertain Edema mention (CheXpert's labeler) instead of a positive one (IU X-ray's MeSH indexers and the
            first gold set read congestion as edema).
        no_new_uncertain: "no new consolidation" is uncertain, not negative (CheXpert's labeler: the old one may
            still be there).
        unchanged_size_uncertain: a heart / mediastinum size said to be stable, unchanged, similar to prior or hard
            to assess, with no size word in the sentence, is uncertain (CheXpert's labeler) instead of unlabelled.
        opacity_hierarchy: Lung Opacity as the parent of Edema, Consolidation, Pneumonia, Atelectasis and Lung
            Lesion: a positive or uncertain child also counts as a Lung Opacity mention (a negated child does not),
            as in CheXpert's annotation guidelines. CheXpert's labeler and the IU X-ray MeSH tags keep Lung Opacity
            to explicit opacities.
        batch_size: sentences per ``Tokenizer.pipe`` batch.

    The four switches are off by default (the readings that agree with IU X-ray's MeSH tags and the first gold
    set); :meth:`strict_chexpert` turns them on, the conventions of the MIMIC-style gold set.
    """

    sections: bool = True
    hypothetical_as_uncertain: bool = True
    chf_implies_cardiomegaly: bool = True
    congestion_uncertain: bool = False
    no_new_uncertain: bool = False
    unchanged_size_uncertain: bool = False
    opacity_hierarchy: bool = False
    batch_size: int = 1024

    @classmethod
    def strict_chexpert(cls, **kw) -> LabelerConfig:
        """CheXpert's conventions throughout: congestion, "no new X" and "stable heart size" uncertain, Lung Opacity
        as a parent."""
        strict = {"congestion_uncertain": True, "no_new_uncertain": True, "unchanged_size_uncertain": True}
        return cls(**{**strict, "opacity_hierarchy": True, **kw})


@dataclasses.dataclass(frozen=True)
class Mention:
    """One labelled mention: the label, its value (1/0/-1), the matched text, the sentence and the cues applied."""

    label: str
    value: int
    text: str
    sentence: str
    cues: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------- sections
_HEADER = re.compile(
    r"(?:^|(?<=[\n.?!;]))[ \t]*(?P<name>findings?|impressions?|conclusions?|indications?|clinical history|history|"
    r"clinical information|clinical indication|reason for (?:exam|examination|study)|comparisons?|techniques?|"
    r"examination|exam|procedure|notifications?|recommendations?|wet read|final report|summary|opinion)"
    r"[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_DROP_SECTIONS = ("indication", "history", "clinical", "reason", "comparison", "technique", "examination", "exam",
                  "procedure", "notification", "recommendation", "wet read", "final report")  # fmt: skip


def select_sections(text: str) -> str:
    """The findings + impression part of a report when it has section headers, else the whole text.

    Headers are found by :func:`cxrlens.data.reports.parse_sections` (line headers, known names after a sentence end,
    report banners). When the report has headers but neither findings nor impression (nor their aliases), the text
    is kept except the first line (or sentence) under an indication/history/comparison/technique header.
    """

    sections = parse_sections(text)
    if sections.findings or sections.impression:
        return "\n\n".join(t for t in (sections.findings, sections.impression) if t)
    heads = list(_HEADER.finditer(text))
    if not heads:
        return text
    parts: list[tuple[str, str]] = []
    if heads[0].start() > 0:
        parts.append(("", text[: heads[0].start()]))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        parts.append((m.group("name").lower(), text[m.end() : end]))
    keep = [body if not name.startswith(_DROP_SECTIONS) else _after_first_line(body) for name, body in parts]
    return "\n\n".join(b.strip() for b in keep if b.strip())


def _after_first_line(body: str) -> str:
    body = body.strip()
    cut = body.find("\n")
    if cut < 0:
        m = re.search(r"[.?!](?:\s|$)", body)
        cut = m.end() if m else len(body)
    return body[cut:]


def report_text(findings: str | None, impression: str | None) -> str:
    """A report text with ``FINDINGS:`` / ``IMPRESSION:`` headers from the two study-table columns."""
    f = "" if findings is None or (isinstance(findings, float) and np.isnan(findings)) else str(findings).strip()
    i = "" if impression is None or (isinstance(impression, float) and np.isnan(impression)) else str(impression)
    parts = [f"FINDINGS: {f}" if f else "", f"IMPRESSION: {i.strip()}" if i.strip() else ""]
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------------- sentences
_NORMALISE = (
    (re.compile(r"\b(vs|approx|e\.g|i\.e|resp|incl)\.(?=\s)", re.IGNORECASE), r"\1"),
    (re.compile(r"\bcan[’']t\b", re.IGNORECASE), "cannot"),
    (re.compile(r"\br/o\b", re.IGNORECASE), "rule out"),
    (re.compile(r"\bw/o\b", re.IGNORECASE), "without"),
    (re.compile(r"\bw/(?=\s|\w)", re.IGNORECASE), "with "),
    (re.compile(r"\bs/p\b", re.IGNORECASE), "status post"),
)
_SENT_END = re.compile(
    r"(?<=[.!?;])\s+|\n[ \t]*\n+|\n(?=[ \t]*(?:\d{1,2}[.)]|[-•*])[ \t])|(?<=\S)\s+(?=\d{1,2}[.)]\s+\S)"
)
_VERB = re.compile(r"\b(?:is|are|was|were|appears?|remains?|seems?|looks?|measures?)\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[,;:]|\b(?:but|however|although|though|whereas|while|with|and)\b", re.IGNORECASE)


def scope_sentences(text: str) -> list[str]:
    """Split report text into the labeler's scope units (whitespace collapsed; bare list numbers dropped).

    Unlike :func:`cxrlens.data.reports.split_sentences` (sentences for display), a scope also ends at ``;`` and at
    a full stop followed by a lower-case word, so that a negation never reaches across them.
    """
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    out = []
    for piece in _SENT_END.split(text):
        s = " ".join(piece.split())
        if s and not re.fullmatch(r"[\d.)(\s-]*", s):
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------------- pipeline
def expand_pattern(pattern: str | list[dict], max_repeat: int = 2) -> list[str]:
    """All literal phrases of a modifier pattern: a string, or spaCy token dicts with ``LOWER`` (a string or
    ``{"IN": [...]}``) and ``OP`` in ``None, "?", "*", "+"`` (``*``/``+`` repeat at most ``max_repeat`` times)."""
    if isinstance(pattern, str):
        return [pattern]
    phrases = [""]
    for tok in pattern:
        low = tok["LOWER"]
        words = [low] if isinstance(low, str) else list(low["IN"])
        op = tok.get("OP")
        lo, hi = {None: (1, 1), "?": (0, 1), "*": (0, max_repeat), "+": (1, max_repeat)}[op]
        runs = [""]
        for n in range(1, hi + 1):
            runs += [" ".join(c) for c in itertools.product(words, repeat=n)] if n >= lo else []
        if lo == 1:
            runs = runs[1:]
        phrases = [f"{a} {b}".strip() for a in phrases for b in runs]
    return list(dict.fromkeys(phrases))


class _Pipeline:
    """spaCy tokenizer + phrase matcher + medspaCy ConText with the CXR rules, built once per process."""

    def __init__(self) -> None:
        try:
            import loguru
            import spacy
            from medspacy.context import ConText, ConTextRule
            from spacy.matcher import PhraseMatcher
        except (ImportError, ValueError) as exc:  # ValueError: spaCy/thinc built against another numpy ABI
            raise BadInputError(
                None,
                f"the report labeler needs medspacy and a working spaCy ({exc}); `pip install medspacy 'spacy>=3.8'`",
            ) from None
        loguru.logger.disable("PyRuSH")  # medspacy's sentence splitter logs every sentence at DEBUG
        self.nlp = spacy.blank("en")
        self.matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        keys: dict[str, set[str]] = {}
        for label, phrases in P.FINDING_PHRASES.items():
            for ph in phrases:
                keys.setdefault(ph, set()).add(label)
        for label, phrases in P.ANATOMY_PHRASES.items():
            for ph in phrases:
                keys.setdefault(ph, set()).add(_ANATOMY + label)
        for ph in P.OTHER_PHRASES:
            keys.setdefault(ph, set()).add(_OTHER)
        for ph in P.IGNORE:
            keys[ph] = {_IGNORE}  # a look-alike overrides any other reading of the same phrase
        by_key: dict[str, list[str]] = {}
        for ph, labels in keys.items():
            by_key.setdefault("|".join(sorted(labels)), []).append(ph)
        for key, phrases in by_key.items():
            self.matcher.add(key, list(self.nlp.tokenizer.pipe(phrases)))
        self.context = ConText(
            self.nlp, rules=None, span_attrs=None, input_span_type="group", span_group_name=_SPAN_GROUP
        )
        rules = {}
        for lit, pat, cat, d, ms in P.MODIFIER_RULES:
            for phrase in expand_pattern(pat):  # literal phrases: spaCy's PhraseMatcher is far faster than Matcher
                # "is normal" (backward) and "versus" end at a clause break; forward hedges at ", and" / ", with"
                if lit in ("is normal", "versus"):
                    stop = {"CLAUSE", "HEDGE_BREAK"}
                elif cat in ("POSSIBLE_EXISTENCE", "NO_NEW") and d == "FORWARD":
                    stop = {"HEDGE_BREAK"}
                else:
                    stop = None
                rules.setdefault(phrase, ConTextRule(phrase, cat, direction=d, max_scope=ms, terminated_by=stop))
        self.context.add(list(rules.values()))
        self.normal = re.compile("|".join(P.NORMAL_SIZE), re.IGNORECASE)
        self.borderline = re.compile("|".join(P.BORDERLINE_SIZE), re.IGNORECASE)
        self.abnormal = re.compile("|".join(P.ABNORMAL_SIZE), re.IGNORECASE)
        self.unknown = re.compile("|".join(P.UNKNOWN_SIZE), re.IGNORECASE)
        self.hedge = re.compile(
            r"\b(?:possibl\w*|probabl\w*|may|might|could|questionabl\w*|likely|suspect\w*|suggest\w*|equivocal|"
            r"versus|vs|perhaps|cannot be excluded|not excluded)\b",
            re.IGNORECASE,
        )

    def sentence_mentions(
        self, sentences: Sequence[str], config: LabelerConfig, batch_size: int = 1024
    ) -> Iterable[list[Mention]]:
        """Mentions of each sentence (one spaCy doc per sentence: the sentence is every modifier's scope)."""
        from spacy.util import filter_spans

        docs = self.nlp.tokenizer.pipe(sentences, batch_size=batch_size)
        for sentence, doc in zip(sentences, docs, strict=True):
            matches = self.matcher(doc, as_spans=True)
            if not matches:
                yield []
                continue
            spans = [s for s in filter_spans(matches) if s.label_ != _IGNORE]
            if not spans:
                yield []
                continue
            if len(doc) > 1:
                doc[1].is_sent_start = False  # the whole doc is one sentence (ConText's scope)
            doc.spans[_SPAN_GROUP] = spans
            self.context(doc)
            yield [m for span in spans for m in self._span_mentions(doc, sentence, span, config)]

    def _span_mentions(self, doc, sentence: str, span, config: LabelerConfig) -> list[Mention]:
        out = []
        for label in span.label_.split("|"):
            if label.startswith(_ANATOMY):
                value = self._anatomy_value(sentence, span.start_char, span.end_char, config.unchanged_size_uncertain)
                if value is not None:
                    out.append(Mention(label[len(_ANATOMY) :], value, span.text, sentence, ("size qualifier",)))
                continue
            negated = uncertain = False
            cues = []
            for mod in span._.modifiers:
                cat = mod.category
                if cat == "NO_NEW":  # "no new consolidation": CheXpert reads uncertain, the first gold set negative
                    cat = "POSSIBLE_EXISTENCE" if config.no_new_uncertain else "NEGATED_EXISTENCE"
                if cat == "NEGATED_EXISTENCE":
                    negated = True
                elif cat == "POSSIBLE_EXISTENCE" or (cat == "HYPOTHETICAL" and config.hypothetical_as_uncertain):
                    uncertain = True
                elif cat == "HYPOTHETICAL":
                    negated = uncertain = False
                    cues = ["hypothetical"]
                    break
                else:
                    continue
                cues.append(doc[mod.modifier_span[0] : mod.modifier_span[1]].text.lower())
            if cues == ["hypothetical"]:
                continue
            value = -1 if uncertain else 0 if negated else 1
            if value == 1 and config.congestion_uncertain and label == "Edema" and _lower(span.text) in _CONGESTION:
                value = -1
                cues.append("congestion rule")
            out.append(Mention(label, value, span.text, sentence, tuple(cues)))
            if config.chf_implies_cardiomegaly and label == "Edema" and value != 0 and span.text.lower() in _CHF:
                out.append(Mention("Cardiomegaly", -1, span.text, sentence, ("CHF rule",)))
        return out

    def _anatomy_value(self, sentence: str, start: int, end: int, unknown_uncertain: bool = False) -> int | None:
        """Size reading of a heart/mediastinum mention (1, 0, -1, or None when the sentence gives no size).

        The qualifier is looked for in the mention's clause; when that clause has none, in the clauses that
        continue a list the mention opens ("The heart, hila and mediastinum are normal": forward over "," / "and"
        until a clause with a verb) and in a clause joined by "and" just before it ("Normal heart and mediastinum").
        With ``unknown_uncertain``, a sentence with no size word but "stable", "unchanged", "similar", "difficult to
        assess" … in those clauses gives -1.
        """
        cuts = list(_CLAUSE_END.finditer(sentence))
        spans = [(0, cuts[0].start() if cuts else len(sentence), "")]
        for k, m in enumerate(cuts):
            spans.append((m.end(), cuts[k + 1].start() if k + 1 < len(cuts) else len(sentence), m.group(0).lower()))
        here = max(k for k, (a, _, _) in enumerate(spans) if a <= start)
        order = [here]
        if not _VERB.search(sentence[end : spans[here][1]]):
            for k in range(here + 1, len(spans)):
                if spans[k][2] not in (",", "and"):
                    break
                order.append(k)
                if _VERB.search(sentence[spans[k][0] : spans[k][1]]):
                    break
        if spans[here][2] == "and" and here > 0:
            order.append(here - 1)
        for k in order:
            a, b, _ = spans[k]
            value = self._size_value(sentence[a:b], start - a)
            if value is not None:
                return value
        # no size word: "stable cardiomediastinal silhouette", "heart size is difficult to assess" → uncertain
        if not unknown_uncertain or any(rx.search(sentence) for rx in (self.normal, self.abnormal, self.borderline)):
            return None
        for k in order:
            a, b, _ = spans[k]
            if self.unknown.search(sentence[a:b]):
                return -1
        return None

    def _size_value(self, clause: str, at: int) -> int | None:
        """-1 for a borderline qualifier, else the nearest normal (0) / abnormal (1, -1 if hedged) qualifier."""
        if self.borderline.search(clause):
            return -1
        best: tuple[int, int] | None = None
        for value, rx in ((0, self.normal), (1, self.abnormal)):
            for m in rx.finditer(clause):
                dist = abs(m.start() - at)
                if best is None or dist < best[0]:
                    best = (dist, value)
        if best is None:
            return None
        return -1 if best[1] == 1 and self.hedge.search(clause) else best[1]


def _lower(text: str) -> str:
    return " ".join(text.lower().split())


@functools.lru_cache(maxsize=1)
def _pipeline() -> _Pipeline:
    return _Pipeline()


# ------------------------------------------------------------------------------------------------------ public
def report_mentions(texts: Sequence[str], config: LabelerConfig | None = None) -> list[list[Mention]]:
    """Every labelled mention of every text (after section selection and sentence splitting), in order."""
    config = config or LabelerConfig()
    pipe = _pipeline()
    sentences: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
        body = select_sections(text) if config.sections else text
        for s in scope_sentences(body):
            sentences.append(s)
            owner.append(i)
    out: list[list[Mention]] = [[] for _ in texts]
    with warnings.catch_warnings():  # all ConText rules are phrases, so medspaCy's token Matcher is empty by design
        warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)
        for i, mentions in zip(owner, pipe.sentence_mentions(sentences, config, config.batch_size), strict=True):
            out[i].extend(mentions)
    return out


def _aggregate(mentions: list[Mention], has_text: bool, opacity_hierarchy: bool = False) -> list[float]:
    best: dict[str, int] = {}
    rank = {1: 3, -1: 2, 0: 1}
    other_found = False
    for m in mentions:
        if m.label == _OTHER:
            other_found = other_found or m.value != 0
            continue
        labels = [m.label]
        if opacity_hierarchy and m.label in _OPACITY_CHILDREN and m.value != 0:
            labels.append("Lung Opacity")
        for label in labels:
            if label not in best or rank[m.value] > rank[best[label]]:
                best[label] = m.value
    row = [float(best[k]) if k in best else np.nan for k in FINDINGS]
    finding = other_found or any(best.get(k, 0) != 0 for k in _NOT_NO_FINDING)
    no_finding = np.nan if (finding or not has_text) else 1.0
    return [no_finding, *row]


def label_reports(texts: Sequence[str] | pd.Series, config: LabelerConfig | None = None) -> pd.DataFrame:
    """Label report texts with the 14 CheXpert observations.

    Args:
        texts: (n,) report strings (``None``/NaN/empty read as empty reports).
        config: labeler options (:class:`LabelerConfig`).

    Returns:
        (n, 14) float32 DataFrame, columns :data:`cxrlens.data.schema.CHEXPERT_LABELS` in order, values in
        {1, 0, -1, NaN}; the index is ``texts``' index when it is a Series, else 0..n-1.
    """
    index = texts.index if isinstance(texts, pd.Series) else None
    items = list(texts)
    mentions = report_mentions(items, config)
    has_text = [isinstance(t, str) and bool(t.strip()) for t in items]
    hierarchy = (config or LabelerConfig()).opacity_hierarchy
    rows = [_aggregate(m, h, hierarchy) for m, h in zip(mentions, has_text, strict=True)]
    values = np.array(rows, dtype=np.float32).reshape(len(items), len(CHEXPERT_LABELS))
    return pd.DataFrame(values, columns=list(CHEXPERT_LABELS), index=index)


def label_study_table(
    studies: pd.DataFrame, config: LabelerConfig | None = None, *, overwrite: bool = True
) -> pd.DataFrame:
    """A copy of a study table with the 14 label columns labelled from its ``findings`` + ``impression`` text.

    Each distinct report text is labelled once (a study with several images shares it). With ``overwrite=False``
    only labels that are NaN in ``studies`` are filled.
    """
    missing = [c for c in ("findings", "impression") if c not in studies.columns]
    if missing:
        raise BadInputError(None, f"study table lacks column(s) {', '.join(missing)} needed for labelling")
    texts = [report_text(f, i) for f, i in zip(studies["findings"], studies["impression"], strict=True)]
    unique = list(dict.fromkeys(texts))
    labels = label_reports(unique, config)
    row_of = {t: k for k, t in enumerate(unique)}
    values = labels.to_numpy()[[row_of[t] for t in texts]]
    out = studies.copy()
    for j, name in enumerate(CHEXPERT_LABELS):
        new = values[:, j].astype(np.float32)
        if not overwrite and name in out.columns:
            old = out[name].to_numpy(dtype=np.float32)
            new = np.where(np.isnan(old), new, old)
        out[name] = new
    return out


def read_report_texts(path: str | Path, text_column: str = "report", id_column: str | None = None):
    """Read reports from a CSV/parquet table or a directory of ``.txt`` files (id = file stem).

    Returns:
        ``(table, errors)``: table with columns ``[id_name, "text"]`` for the readable, non-empty reports
        (``id_name`` = ``id_column``, or ``"id"`` for directories, or ``"row"`` = the 0-based row number), and one
        :class:`BadInputError` per skipped item (empty report, non-UTF-8 file …).
    Raises:
        BadInputError: the path is missing/unreadable, or a table lacks ``text_column``/``id_column``.
    """
    path = Path(path)
    errors: list[BadInputError] = []
    if path.is_dir():
        rows = []
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise BadInputError(path, "directory holds no .txt report")
        for f in files:
            try:
                text = f.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.append(BadInputError(f, f"not UTF-8 text (byte {exc.start})"))
                continue
            except OSError as exc:
                errors.append(BadInputError(f, f"cannot read ({exc.strerror})"))
                continue
            if not text.strip():
                errors.append(BadInputError(f, "empty report"))
                continue
            rows.append((f.stem, text))
        return pd.DataFrame(rows, columns=["id", "text"]), errors
    if not path.exists():
        raise BadInputError(path, "file not found")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet"):
            df = pd.read_parquet(path)
        elif suffix.endswith((".csv", ".csv.gz", ".tsv")):
            df = pd.read_csv(path, sep="\t" if ".tsv" in suffix else ",", dtype=str, keep_default_na=False)
        else:
            raise BadInputError(path, "expected a .csv, .tsv, .parquet file or a directory of .txt reports")
    except BadInputError:
        raise
    except UnicodeDecodeError as exc:
        raise BadInputError(path, f"not UTF-8 text (byte {exc.start})") from None
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise BadInputError(path, f"cannot read table ({type(exc).__name__}: {exc})") from None
    for col, what in ((text_column, "--text-column"), (id_column, "--id-column")):
        if col is not None and col not in df.columns:
            cols = ", ".join(map(str, df.columns[:12]))
            raise BadInputError(path, f"no column {col!r} ({what}); columns are: {cols}")
    id_name = id_column or "row"
    ids = df[id_column].astype(str) if id_column else pd.Series(range(len(df)), dtype="int64")
    texts = df[text_column]
    rows = []
    for k, (rid, text) in enumerate(zip(ids, texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            errors.append(BadInputError(f"{path}:row {k}", f"empty report (id {rid})"))
            continue
        rows.append((rid, text))
    return pd.DataFrame(rows, columns=[id_name, "text"]), errors
