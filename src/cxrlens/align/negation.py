"""Flip the polarity of a report sentence, to make hard negatives for the contrastive adapter.

MiniLM embeds "no pleural effusion" almost where it embeds "pleural effusion" (cosine ≈ 0.9), so an adapter trained
only on (image, sentence) pairs can learn to ignore negation. :func:`flip_polarity` turns a negated sentence into
its affirmed twin ("There is no pleural effusion." → "There is pleural effusion.") and an affirmed one into a
negated twin ("Small left effusion." → "No small left effusion."; "The heart is enlarged." → "The heart is not
enlarged."). The twin is used as an extra negative for the image whose report holds the original.

The negation cues are the labeler's (``cxrlens.data.labeler``) when it exports a cue list, else the list below.
Sentences whose polarity cannot be flipped reliably (uncertainty cues, two or more negation cues) give ``None``.
"""

from __future__ import annotations

import functools
import re

__all__ = ["NEGATION_REWRITES", "UNCERTAINTY_CUES", "flip_polarity", "is_negated"]

# (pattern of a negated phrase, its affirmed replacement); tried in order, first match wins.
NEGATION_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\bthere is no evidence of\b", "there is evidence of"),
    (r"\bthere are no\b", "there are"),
    (r"\bthere is no\b", "there is"),
    (r"\bno evidence of\b", "evidence of"),
    (r"\bno signs? of\b", "signs of"),
    (r"\bno definite\b", "definite"),
    (r"\bno focal\b", "focal"),
    (r"\bnegative for\b", "positive for"),
    (r"\bfree of\b", "with"),
    (r"\bwithout\b", "with"),
    (r"\bis not (seen|identified|present|visualized|appreciated)\b", r"is \1"),
    (r"\bare not (seen|identified|present|visualized|appreciated)\b", r"are \1"),
    (r"\b(is|are) not\b", r"\1"),
    (r"\bhas resolved\b", "is present"),
    (r"\bis absent\b", "is present"),
    (r"\bno\b", ""),
)
UNCERTAINTY_CUES: tuple[str, ...] = (
    "may",
    "might",
    "possible",
    "possibly",
    "probable",
    "likely",
    "cannot be excluded",
    "can not be excluded",
    "not excluded",
    "questionable",
    "suspicious",
    "versus",
    "vs",
    "concern for",
    "could",
)
_CUE_WORDS = re.compile(r"\b(no|not|without|negative for|free of|absent|resolved)\b")
_COPULA = re.compile(r"\b(is|are)\b(?! not\b)", re.IGNORECASE)


@functools.cache
def _labeler_cues(kind: str = "NEGATION_CUES") -> tuple[str, ...]:
    """Cue phrases exported by the labeler (``NEGATION_CUES`` / ``UNCERTAINTY_CUES``), else empty."""
    try:
        from cxrlens.data import labeler
    except ImportError:
        return ()
    return tuple(str(c).lower() for c in getattr(labeler, kind, ()) if str(c).strip())


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def is_negated(sentence: str) -> bool:
    """True when the sentence carries a negation cue (the labeler's cues and the rewrite table's)."""
    low = sentence.lower()
    if any(re.search(p, low) for p, _ in NEGATION_REWRITES):
        return True
    return any(_has(low, c) for c in _labeler_cues())


def _fix_case(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] if text else text


def flip_polarity(sentence: str) -> str | None:
    """The sentence with its polarity flipped, or ``None`` when that cannot be done reliably.

    Negated → affirmed by the first matching rewrite of :data:`NEGATION_REWRITES`; affirmed → negated by
    ``normal`` → ``abnormal``, else ``not`` after the first ``is``/``are``, else a ``No`` prefix. Uncertain
    sentences and sentences with more than one negation cue return ``None`` (flipping one would not flip the meaning).
    """
    text = " ".join(str(sentence).split())
    low = text.lower()
    if not low or any(_has(low, c) for c in UNCERTAINTY_CUES + _labeler_cues("UNCERTAINTY_CUES")):
        return None
    if len(_CUE_WORDS.findall(low)) > 1:
        return None
    for pattern, repl in NEGATION_REWRITES:
        if re.search(pattern, low):
            flipped = re.sub(pattern, repl, text, count=1, flags=re.IGNORECASE)
            flipped = _fix_case(flipped)
            return flipped if flipped.strip(" .") else None
    if re.search(r"\bnormal\b", low):  # "Heart size normal." → "Heart size abnormal."
        return _fix_case(re.sub(r"\bnormal\b", "abnormal", text, count=1, flags=re.IGNORECASE))
    if is_negated(text):  # a labeler cue the rewrite table does not know how to undo
        return None
    if _COPULA.search(text):
        return _fix_case(_COPULA.sub(lambda m: f"{m.group(1)} not", text, count=1))
    body = text[:1].lower() + text[1:]
    return _fix_case(f"No {body}")
