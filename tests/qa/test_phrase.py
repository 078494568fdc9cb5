"""Optional LLM phrasing of an answer: only the structured result is sent, unanswered questions are never sent, a
failing endpoint leaves the template answer, a remote endpoint is refused before any request."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrlens.interpret.llm import LLMConfig, LLMEndpointError
from cxrlens.qa.answer import answer_question, attach_heatmaps
from cxrlens.qa.phrase import phrase_answer
from cxrlens.qa.questions import parse_question
from tests.interpret.test_llm import _chat, _no_proxy, _server  # noqa: F401 - the fixture is used by name
from tests.qa.test_model import F


def test_the_endpoint_sees_the_structured_answer_only(tmp_path):
    ans = answer_question(parse_question("which side is the effusion?"), F)
    ans = attach_heatmaps(ans, F, np.zeros((32, 32)), tmp_path)
    assert "heatmap" in ans.evidence[0]
    with _server(lambda body, n: _chat("  The effusion is on the left (80 % confidence).  ")) as (url, log):
        text = phrase_answer(ans, LLMConfig(url=url, model="m", retries=0))
    assert text == "The effusion is on the left (80 % confidence)."
    sent = json.loads(log[0]["body"]["messages"][-1]["content"])
    assert sent["answer"] == "left" and sent["confidence"] == pytest.approx(0.8)
    assert "heatmap" not in json.dumps(sent) and str(tmp_path) not in json.dumps(log[0]["body"])


def test_unanswered_questions_are_not_sent_and_failures_keep_the_template():
    cannot = answer_question(parse_question("is it worse than on the prior?"), F)
    with _server(lambda body, n: _chat("Yes, much worse.")) as (url, log):
        assert phrase_answer(cannot, LLMConfig(url=url, model="m")) is None
        assert log == []
    ans = answer_question(parse_question("is there a pleural effusion?"), F)
    with _server(lambda body, n: (500, b"{}", {})) as (url, log):
        assert phrase_answer(ans, LLMConfig(url=url, model="m", retries=0, backoff_s=0.0)) is None
        assert len(log) == 1


def test_a_remote_endpoint_is_refused_before_any_request():
    ans = answer_question(parse_question("is there a pleural effusion?"), F)
    with pytest.raises(LLMEndpointError):
        phrase_answer(ans, LLMConfig(url="https://api.example.com/v1", model="m"))
