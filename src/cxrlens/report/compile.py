"""Report compilation: active sparse features → FINDINGS and IMPRESSION, every sentence with its evidence.

Given one image's feature activations, the compiler

1. keeps features above their per-feature threshold (calibrated on the validation split, see
   :func:`cxrlens.interpret.features.calibrate_thresholds`) that have a description, strongest first, at most
   ``max_features`` (15 by default,
   as in SAE-Rad);
2. gathers their description sentences with evidence (feature id, activation, the description's confidence,
   heatmap path when given); evidence strength = activation / threshold × confidence;
3. **deduplicates**: a sentence whose embedding has cosine ≥ ``dedupe_threshold`` with a kept sentence of the same
   finding signature is merged into it (its evidence is appended);
4. **resolves contradictions**: when one sentence says a CheXpert finding is present (1 or uncertain −1) and another
   says it is absent (0), the side with the larger summed evidence strength is kept, the other dropped (and listed
   in ``dropped``);
5. **orders by anatomy**: lines/tubes, lungs, pleura, heart/mediastinum, bones, other;
6. writes IMPRESSION from the positive-finding sentences (up to ``impression_max``, strongest first), or the
   normal-study sentence when none is positive (its evidence is then the list of negative sentences).

Everything per sentence (embedding, signature, region) is computed once in a :class:`DescriptionBank`, so
compiling one report is pure array work (< 5 ms; see ``benchmarks/bench_report.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cxrlens.data.reports import parse_side, states_change
from cxrlens.data.schema import CHEXPERT_LABELS

__all__ = [
    "COMPILERS",
    "REGIONS",
    "CompileConfig",
    "CompiledReport",
    "DescriptionBank",
    "Evidence",
    "ReportSentence",
    "compile_findings",
    "compile_report",
    "place_of",
]

NORMAL_IMPRESSION = "No acute cardiopulmonary abnormality."
COMPILERS = ("readout", "features")
REGIONS = ("lines and tubes", "lungs", "pleura", "heart and mediastinum", "bones", "other")
_LABEL_REGION = {
    "Support Devices": "lines and tubes",
    "Lung Opacity": "lungs",
    "Lung Lesion": "lungs",
    "Edema": "lungs",
    "Consolidation": "lungs",
    "Pneumonia": "lungs",
    "Atelectasis": "lungs",
    "Pneumothorax": "pleura",
    "Pleural Effusion": "pleura",
    "Pleural Other": "pleura",
    "Cardiomegaly": "heart and mediastinum",
    "Enlarged Cardiomediastinum": "heart and mediastinum",
    "Fracture": "bones",
}
_KEYWORD_REGION = (
    (("tube", "catheter", "line", "pacemaker", "wire", "port", "stent", "clip"), "lines and tubes"),
    (("lung", "pulmonary", "airspace", "opacit", "granuloma", "nodule", "hilar", "lobe"), "lungs"),
    (("pleura", "costophrenic", "pneumothorax", "effusion"), "pleura"),
    (("heart", "cardiac", "mediastin", "aort", "cardio"), "heart and mediastinum"),
    (("rib", "spine", "vertebra", "osseous", "bone", "clavicle", "fracture", "degenerative"), "bones"),
)


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """Config of report compilation.

    Attributes:
        max_features: at most this many active features are used (SAE-Rad uses 15).
        dedupe_threshold: cosine similarity above which two same-signature sentences are one.
        impression_max: at most this many sentences in IMPRESSION.
        compiler: ``readout`` (findings decided by the val-calibrated finding readout, :func:`compile_findings`;
            needs an interpretation run with ``readout.safetensors``) or ``features`` (SAE-Rad's rule: every
            described feature above its threshold speaks, :func:`compile_report`).
    """

    max_features: int = 15
    dedupe_threshold: float = 0.85
    impression_max: int = 3
    compiler: str = "readout"

    def __post_init__(self) -> None:
        if self.compiler not in COMPILERS:
            raise ValueError(f"compiler must be one of {', '.join(COMPILERS)}, got {self.compiler!r}")


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Why a sentence is in the report: a feature, how strongly it fired, and where (heatmap)."""

    feature: int
    activation: float
    threshold: float
    confidence: float
    heatmap: str | None = None
    contribution: float | None = None

    @property
    def strength(self) -> float:
        if self.contribution is not None:  # readout evidence: the feature's share of the finding's logit
            return self.contribution
        return self.activation / max(self.threshold, 1e-12) * self.confidence


@dataclasses.dataclass
class ReportSentence:
    text: str
    region: str
    signature: np.ndarray  # (14,) CheXpert labels of the sentence (NaN = not mentioned)
    evidence: list[Evidence]

    @property
    def strength(self) -> float:
        return float(sum(e.strength for e in self.evidence))

    @property
    def positive(self) -> bool:
        sig = np.nan_to_num(self.signature[1:], nan=0.0)  # "No Finding" is not a finding
        return bool((sig != 0).any())

    finding: str | None = None
    score: float | None = None  # readout logit minus the finding's threshold (present) or negative cutoff (absent)
    side: str | None = None  # patient side where the evidence map peaks (patch streams): right / left / midline
    zone: str | None = None  # upper / middle / lower third of the image where it peaks
    evidence_map: list[float] | None = None  # (h·w,) row-major evidence map on the patch grid
    grid: tuple[int, int] | None = None

    def to_json(self) -> dict:
        out: dict = {"text": self.text, "region": self.region, "evidence": [_evidence_json(e) for e in self.evidence]}
        for key in ("finding", "score", "side", "zone", "evidence_map", "grid"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "grid" else value
        return out


@dataclasses.dataclass
class CompiledReport:
    findings: list[ReportSentence]
    impression: list[ReportSentence]
    dropped: list[ReportSentence]

    @property
    def text(self) -> str:
        f = " ".join(s.text for s in self.findings)
        i = " ".join(s.text for s in self.impression)
        return f"FINDINGS: {f}\nIMPRESSION: {i}".strip()

    def to_json(self) -> dict:
        return {
            "findings": [s.to_json() for s in self.findings],
            "impression": [s.to_json() for s in self.impression],
            "dropped_contradictions": [s.to_json() for s in self.dropped],
            "text": self.text,
        }


def _evidence_json(e: Evidence) -> dict:
    """The evidence as JSON; a threshold that is not finite (a feature never active on the calibration split has
    +inf) is written as null."""
    d = dataclasses.asdict(e)
    if d["contribution"] is None:
        d.pop("contribution")
    if not np.isfinite(d["threshold"]):
        d["threshold"] = None
    return d


def _region(text: str, signature: np.ndarray) -> str:
    for label, value in zip(CHEXPERT_LABELS, signature, strict=True):
        if label in _LABEL_REGION and not np.isnan(value):
            return _LABEL_REGION[label]
    low = text.lower()
    for words, region in _KEYWORD_REGION:
        if any(w in low for w in words):
            return region
    return "other"


@dataclasses.dataclass(frozen=True)
class DescriptionBank:
    """Description sentences of every feature, with embeddings, signatures and regions computed once.

    Attributes:
        feature_sentences: feature id → indices into ``texts``.
        confidence: feature id → description confidence.
        texts: (n,) sentence texts; emb: (n, d) L2-normalised; signature: (n, 14); region: (n,) region names.
    """

    feature_sentences: dict[int, list[int]]
    confidence: dict[int, float]
    texts: list[str]
    emb: np.ndarray
    signature: np.ndarray
    region: list[str]
    sig_key: list[bytes] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # one hashable key per sentence signature (NaN → −9), so deduplication compares bytes, not arrays
        keys = [np.nan_to_num(s, nan=-9.0).astype(np.float32).tobytes() for s in np.asarray(self.signature)]
        object.__setattr__(self, "sig_key", keys)

    @classmethod
    def from_descriptions(
        cls,
        descriptions: pd.DataFrame,
        *,
        embed: Callable[[Sequence[str]], np.ndarray],
        signature: Callable[[Sequence[str]], np.ndarray],
    ) -> DescriptionBank:
        """From :func:`cxrlens.interpret.describe.describe_features` output (rows with empty ``sentences`` skip)."""
        texts: list[str] = []
        feature_sentences: dict[int, list[int]] = {}
        confidence: dict[int, float] = {}
        for row in descriptions.itertuples(index=False):
            sents = list(row.sentences) if row.sentences is not None else []
            if not sents:
                continue
            feature_sentences[int(row.feature)] = list(range(len(texts), len(texts) + len(sents)))
            confidence[int(row.feature)] = float(row.confidence)
            texts.extend(sents)
        emb = np.asarray(embed(texts), np.float32) if texts else np.zeros((0, 1), np.float32)
        sig = np.asarray(signature(texts), np.float32) if texts else np.zeros((0, len(CHEXPERT_LABELS)), np.float32)
        region = [_region(t, s) for t, s in zip(texts, sig, strict=True)]
        return cls(feature_sentences, confidence, texts, emb, sig, region)


def compile_report(
    codes_F: np.ndarray,
    bank: DescriptionBank,
    thresholds_F: np.ndarray,
    config: CompileConfig | None = None,
    *,
    heatmaps: dict[int, str] | None = None,
) -> CompiledReport:
    """Compile one report from one image's feature activations ``codes_F: (n_features,)`` (see module docstring)."""
    cfg = config or CompileConfig()
    codes_F = np.asarray(codes_F, dtype=np.float32)
    active = [f for f in np.flatnonzero(codes_F >= thresholds_F) if int(f) in bank.feature_sentences]
    active = sorted(active, key=lambda f: -codes_F[f] / max(float(thresholds_F[f]), 1e-12))[: cfg.max_features]
    kept: list[tuple[int, ReportSentence]] = []  # (bank index, sentence)
    for f in active:
        ev = Evidence(
            int(f), float(codes_F[f]), float(thresholds_F[f]), bank.confidence[int(f)], (heatmaps or {}).get(int(f))
        )
        for i in bank.feature_sentences[int(f)]:
            key = bank.sig_key[i]
            same = [(j, sent) for j, sent in kept if bank.sig_key[j] == key]
            if same:
                sims = bank.emb[[j for j, _ in same]] @ bank.emb[i]
                best = int(np.argmax(sims))
                if float(sims[best]) >= cfg.dedupe_threshold:
                    sent = same[best][1]
                    if all(e.feature != ev.feature for e in sent.evidence):
                        sent.evidence.append(ev)
                    continue
            kept.append((i, ReportSentence(bank.texts[i], bank.region[i], bank.signature[i], [ev])))
    sentences, dropped = _resolve_contradictions([s for _, s in kept])
    order = {r: k for k, r in enumerate(REGIONS)}
    findings = sorted(sentences, key=lambda s: (order[s.region], -s.strength))
    positives = sorted((s for s in findings if s.positive), key=lambda s: -s.strength)
    return CompiledReport(findings, _impression(positives, findings, cfg.impression_max), dropped)


def _impression(positives: list[ReportSentence], findings: list[ReportSentence], k: int) -> list[ReportSentence]:
    """IMPRESSION: the first ``k`` positive sentences (already ordered), else the normal-study sentence backed by
    every findings sentence's evidence, else nothing (an empty report is never padded)."""
    if positives:
        return positives[:k]
    if not findings:
        return []
    normal = np.full(len(CHEXPERT_LABELS), np.nan, np.float32)
    normal[0] = 1.0
    return [ReportSentence(NORMAL_IMPRESSION, "other", normal, [e for s in findings for e in s.evidence])]


def _resolve_contradictions(sentences: list[ReportSentence]) -> tuple[list[ReportSentence], list[ReportSentence]]:
    """For each finding stated both present (1/−1) and absent (0), keep the side with more summed evidence."""
    dropped: set[int] = set()
    for k in range(1, len(CHEXPERT_LABELS)):
        present = [i for i, s in enumerate(sentences) if s.signature[k] in (1.0, -1.0) and i not in dropped]
        absent = [i for i, s in enumerate(sentences) if s.signature[k] == 0.0 and i not in dropped]
        if present and absent:
            p = sum(sentences[i].strength for i in present)
            a = sum(sentences[i].strength for i in absent)
            dropped.update(absent if p >= a else present)
    kept = [s for i, s in enumerate(sentences) if i not in dropped]
    return kept, [sentences[i] for i in sorted(dropped)]


# ------------------------------------------------------------------------------------- the finding-readout compiler
def place_of(map_T: np.ndarray, grid: tuple[int, int]) -> tuple[str, str]:
    """(side, zone) of the peak of a row-major evidence map on ``grid``: side in patient terms for a frontal view
    displayed as usual (image left = patient right): ``right`` / ``left``, or ``midline`` for the middle column of
    an odd grid; zone = the image third of the peak row (``upper`` / ``middle`` / ``lower``)."""
    h, w = grid
    y, x = divmod(int(np.argmax(map_T)), w)
    xc, yc = (x + 0.5) / w, (y + 0.5) / h
    side = "midline" if abs(xc - 0.5) < 1e-9 else ("right" if xc < 0.5 else "left")
    zone = ("upper", "middle", "lower")[min(int(yc * 3), 2)]
    return side, zone


def _sentence_for(
    bank: DescriptionBank, features: Sequence[int], k: int, value: tuple[float, ...], side: str | None = None
) -> str | None:
    """The first description sentence of ``features`` (in order) whose signature gives finding ``k`` one of
    ``value`` and states no other finding present or uncertain (so the sentence says what was decided, no more)
    and no change against a prior study (:func:`cxrlens.data.reports.states_change`).
    With ``side`` (where the evidence map peaks), a sentence naming another side is passed over: the words may
    not contradict the evidence (a bilateral sentence is kept)."""

    for f in features:
        for i in bank.feature_sentences.get(int(f), []):
            sig = bank.signature[i]
            others = np.delete(np.nan_to_num(sig[1:], nan=0.0), k - 1)
            if float(sig[k]) not in value or (others != 0).any():
                continue
            if states_change(bank.texts[i]):  # one image cannot show change against a prior study
                continue
            stated = parse_side(bank.texts[i])
            if side in ("right", "left") and stated in ("right", "left") and stated != side:
                continue
            return bank.texts[i]
    return None


def compile_findings(
    codes_F: np.ndarray,
    readout: object,
    bank: DescriptionBank,
    thresholds_F: np.ndarray,
    sentences: dict[str, tuple[str, str]],
    config: CompileConfig | None = None,
    *,
    maps_TF: np.ndarray | None = None,
    grid: tuple[int, int] | None = None,
    max_evidence: int = 5,
) -> CompiledReport:
    """Compile one report with the finding readout (:class:`cxrlens.interpret.readout.FindingReadout`).

    A finding is stated **present** when its readout logit reaches its val-chosen threshold (kept findings only);
    its sentence is the first description sentence, among the features that push it up most, that states it
    (signature 1 or −1), else ``sentences[finding][0]`` (the training reports' most common sentence stating that
    finding alone); its evidence is those features with their contributions (weight × activation). A finding is
    stated **absent** when its logit lies below its val-chosen negative cutoff (``sentences[finding][1]``); its
    evidence is the active features that push it down. A feature whose description names a finding the readout
    does not state never speaks: descriptions give words, the readout decides.

    With ``maps_TF: (T, F)`` (the image's per-patch codes, patch streams) each present sentence gets an evidence map
    ``Σ_f max(w_f, 0) · maps_TF[:, f]`` on ``grid`` and the side and zone of its peak (:func:`place_of`).
    Sentences are ordered by region (:data:`REGIONS`), IMPRESSION = the present findings by margin, or the
    normal-study sentence when none is present.
    """
    cfg = config or CompileConfig()
    codes_F = np.asarray(codes_F, np.float32)
    z = readout.logits(codes_F)  # type: ignore[attr-defined]
    labels = list(readout.labels)  # type: ignore[attr-defined]
    W = readout.weights_LF  # type: ignore[attr-defined]
    out: list[ReportSentence] = []
    for j, name in enumerate(labels):
        k = CHEXPERT_LABELS.index(name)
        pos_text, neg_text = sentences.get(name, ("", ""))
        present = z[j] >= readout.threshold_L[j]  # type: ignore[attr-defined]
        absent = z[j] < readout.negative_L[j]  # type: ignore[attr-defined]
        if not (present or absent):
            continue
        contrib = W[j] * codes_F if present else -W[j] * codes_F
        idx = np.flatnonzero(contrib > 0)
        idx = idx[np.argsort(-contrib[idx], kind="stable")][:max_evidence]
        ev = [
            Evidence(int(f), float(codes_F[f]), float(thresholds_F[f]), float(bank.confidence.get(int(f), 0.0)),
                     contribution=float(contrib[f]))
            for f in idx
        ]  # fmt: skip
        place: tuple[str, str] | None = None
        emap: np.ndarray | None = None
        if present and maps_TF is not None and grid is not None:
            emap = np.asarray(maps_TF, np.float32) @ np.clip(W[j], 0, None)
            place = place_of(emap, grid) if float(emap.max()) > 0 else None
        if present:
            text = _sentence_for(bank, idx, k, (1.0, -1.0), place[0] if place else None) or pos_text
            margin = float(z[j] - readout.threshold_L[j])  # type: ignore[attr-defined]
        else:
            text = neg_text
            margin = float(readout.negative_L[j] - z[j])  # type: ignore[attr-defined]
        if not text:
            continue
        sig = np.full(len(CHEXPERT_LABELS), np.nan, np.float32)
        sig[k] = 1.0 if present else 0.0
        sent = ReportSentence(text, _region(text, sig), sig, ev, finding=name, score=margin)
        if place is not None and emap is not None:
            sent.side, sent.zone = place
            sent.evidence_map = [round(float(v), 5) for v in emap]
            sent.grid = tuple(grid)  # type: ignore[arg-type]
        same = next((s for s in out if s.text == text), None)
        if same is not None:  # two findings worded alike ("Cardiomegaly." for two labels): one sentence
            same.evidence += [e for e in ev if all(e.feature != o.feature for o in same.evidence)]
            continue
        out.append(sent)
    order = {r: i for i, r in enumerate(REGIONS)}
    positives = sorted((s for s in out if s.positive), key=lambda s: -(s.score or 0.0))
    findings = sorted(out, key=lambda s: (order[s.region], not s.positive, -(s.score or 0.0)))
    return CompiledReport(findings, _impression(positives, findings, cfg.impression_max), [])
