"""Report-generation baselines, evaluated in the same run as cxrlens: constant, random and nearest-neighbour retrieval.

Each baseline gives one generated text per evaluated image, drawn only from the **training split's** reports (so a
baseline never sees the evaluated reports). A training report's text is :func:`report_plain_text` of its study's
``findings`` and ``impression`` — findings then impression, each stripped, joined by one space, no headers — the
same form as ``reference_text`` in ``reports.jsonl``. Studies whose text is empty are left out of the pool.

* **constant** (:func:`most_common_report`): the one report text that occurs in the most training **studies** (a
  study with several images counts once) after normalisation by :func:`normalise_report` (lower-case, runs of white
  space → one space, stripped). The text emitted is the most frequent original spelling within that normalised
  class; ties (between classes, then between spellings) go to the lexicographically smallest string.
* **random** (:func:`random_reports`): for each evaluated image, one training study drawn uniformly at random (every
  study equally likely, however many images it has) from a generator seeded by ``(seed, sha256(image_id))``: an
  image's draw depends only on the seed and its own id, not on which other images are evaluated or their order.
* **nearest** (:func:`cxrlens.retrieval.nearest_neighbours`): the training image whose backbone activation (one row
  per image, e.g. the ``final/cls`` stream) has the highest cosine similarity with the evaluated image's, among
  training images of **other patients** (same-patient images are never retrieved, even when a split leaks
  patients); its study's report is the generated text. Exact search — ``faiss.IndexFlatIP`` on L2-normalised
  float32 vectors when faiss imports, else a blocked numpy matrix product; both return the same neighbour up to
  float rounding on near-ties (numpy breaks exact ties by the lowest training index).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from cxrlens.data.reports import plain_report_text

__all__ = [
    "BASELINES",
    "constant_reports",
    "most_common_report",
    "normalise_report",
    "random_reports",
    "report_plain_text",
]

BASELINES = ("constant", "random", "nearest")


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def report_plain_text(findings: object, impression: object) -> str:
    """:func:`cxrlens.data.reports.plain_report_text` — the form of ``reference_text`` that the report stage
    writes, so baseline and reference texts are tokenised alike."""
    return plain_report_text(findings, impression)


def normalise_report(text: str) -> str:
    """``"  No acute\\n disease. "`` → ``"no acute disease."`` (lower-case, white space collapsed, stripped)."""
    return " ".join(_clean(text).lower().split())


def most_common_report(train_texts: Sequence[str]) -> tuple[str, int]:
    """The constant baseline's text and how many of ``train_texts`` share its normalised form.

    Args:
        train_texts: (n_studies,) one report text per training study; empty texts are ignored.

    Returns:
        (text, count): the most frequent original spelling of the most frequent normalised text (ties → smallest
        string), and the number of studies in its normalised class.
    """
    by_norm: dict[str, Counter[str]] = {}
    for t in train_texts:
        t = _clean(t)
        key = normalise_report(t)
        if key:
            by_norm.setdefault(key, Counter())[t] += 1
    if not by_norm:
        raise ValueError("no non-empty training report to take the most common one from")
    key = min(by_norm, key=lambda k: (-sum(by_norm[k].values()), k))
    spellings = by_norm[key]
    text = min(spellings, key=lambda s: (-spellings[s], s))
    return text, sum(spellings.values())


def constant_reports(train_texts: Sequence[str], n: int) -> list[str]:
    """(n,) copies of :func:`most_common_report` of ``train_texts``."""
    text, _ = most_common_report(train_texts)
    return [text] * n


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    digest = hashlib.sha256(str(image_id).encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def random_reports(train_texts: Sequence[str], image_ids: Sequence[str], seed: int = 0) -> tuple[list[str], np.ndarray]:
    """One uniformly drawn training report per evaluated image.

    Args:
        train_texts: (n_studies,) one text per training study; empty texts are never drawn.
        image_ids: (n,) evaluated image ids (each seeds its own draw together with ``seed``).

    Returns:
        (texts (n,), picked (n,) int64 indices into ``train_texts``).
    """
    pool = np.array([i for i, t in enumerate(train_texts) if normalise_report(t)], dtype=np.int64)
    if pool.size == 0:
        raise ValueError("no non-empty training report to draw from")
    picked = np.array([pool[_image_rng(seed, i).integers(pool.size)] for i in image_ids], dtype=np.int64)
    return [_clean(train_texts[k]) for k in picked], picked
