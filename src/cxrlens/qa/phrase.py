"""Optional free-form phrasing of an answer by an OpenAI-compatible chat endpoint (``cxrlens ask --llm-url``).

The model sees **only the structured result** — the question, its parsed kind, the answer, the calibrated
confidence and the evidence numbers (no image, no report text, no file paths) — and is asked to say it in one or
two plain sentences without adding findings. The structured answer stays authoritative: the phrasing is shown
beside it, never instead of it, and a question the model cannot answer is never sent (its "cannot answer" stays
as it is). The endpoint policy (loopback by default, keys never over plain http, no redirects) is
:mod:`cxrlens.interpret.llm`'s; a failed request returns None and the caller keeps the template text.
"""

from __future__ import annotations

import json

from cxrlens.interpret.llm import LLMConfig, LLMError, chat_completion
from cxrlens.qa.answer import Answer

__all__ = ["SYSTEM_PROMPT", "phrase_answer", "phrase_messages"]

SYSTEM_PROMPT = (
    "You rephrase the output of a chest X-ray question-answering model for a clinician. Use only the JSON you are "
    "given. Say the answer and its confidence in one or two plain sentences. Do not add findings, causes, advice "
    "or certainty the JSON does not contain; if the answer is 'possible', say that it is uncertain."
)


def phrase_messages(answer: Answer) -> list[dict]:
    """The chat messages for ``answer``: the system prompt and the structured result (no file paths)."""
    result = answer.to_json()
    result["evidence"] = [{k: v for k, v in e.items() if k != "heatmap"} for e in result["evidence"]]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": json.dumps(result, ensure_ascii=False)},
    ]


def phrase_answer(answer: Answer, cfg: LLMConfig) -> str | None:
    """The endpoint's phrasing of an answered question; None when not answered or when the request fails.

    Raises:
        cxrlens.interpret.llm.LLMEndpointError: the endpoint is refused by the policy (before any request).
    """
    if not answer.answered:
        return None
    try:
        text = chat_completion(phrase_messages(answer), cfg)
    except LLMError:
        return None
    return " ".join(text.split()) or None
