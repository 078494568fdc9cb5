"""Report compilation: active sparse features → FINDINGS and IMPRESSION, every sentence with its evidence.

Given one image's feature activations, the compiler

1. keeps features above their per-feature threshold (calibrated on the validation split, see
   :func:`calibrate_thresholds`) that have a description, strongest first, at most ``max_features`` (15 by default,
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
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cxrlens.data.schema import CHEXPERT_LABELS

__all__ = [
    "REGIONS",
    "CompileConfig",
    "CompiledReport",
    "DescriptionBank",
    "Evidence",
    "ReportSentence",
    "calibrate_thresholds",
    "compile_report",
]

NORMAL_IMPRESSION = "No acute cardiopulmonary abnormality."
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
    """

    max_features: int = 15
    dedupe_threshold: float = 0.85
    impression_max: int = 3


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Why a sentence is in the report: a feature, how strongly it fired, and where (heatmap)."""

    feature: int
    activation: float
    threshold: float
    confidence: float
    heatmap: str | None = None

    @property
    def strength(self) -> float:
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

    def to_json(self) -> dict:
        return {"text": self.text, "region": self.region, "evidence": [dataclasses.asdict(e) for e in self.evidence]}


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


def calibrate_thresholds(codes_NF: np.ndarray, quantile: float = 0.5) -> np.ndarray:
    """Per-feature thresholds from validation activations: the ``quantile`` of each feature's *positive*
    activations (features never active get +inf, so they never fire). Returns (n_features,) float32."""
    codes_NF = np.asarray(codes_NF, dtype=np.float32)
    masked = np.where(codes_NF > 0, codes_NF, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns = never-active features
        thr = np.nanquantile(masked, quantile, axis=0)
    return np.where(np.isnan(thr), np.inf, thr).astype(np.float32)


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
    positives = sorted((s for s in findings if s.positive), key=lambda s: -s.strength)[: cfg.impression_max]
    if positives:
        impression = positives
    elif findings:
        normal = np.full(len(CHEXPERT_LABELS), np.nan, np.float32)
        normal[0] = 1.0
        impression = [ReportSentence(NORMAL_IMPRESSION, "other", normal, [e for s in findings for e in s.evidence])]
    else:
        impression = []
    return CompiledReport(findings, impression, dropped)


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
