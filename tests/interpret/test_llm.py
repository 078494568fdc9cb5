"""The LLM describer against a fake OpenAI-compatible server on 127.0.0.1: request shape, answer parsing, retries,
fallback to the extractive describer on errors, garbage, timeouts and a dead endpoint (circuit breaker)."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from cxrlens.interpret.describe import NO_CONSISTENT_FINDING
from cxrlens.interpret.llm import (
    LLMConfig,
    LLMError,
    build_messages,
    contrast_reports,
    describe_features_llm,
    parse_description,
)

EFFUSION = ["Small left pleural effusion.", "There is a moderate right pleural effusion.", "Bilateral effusions."] * 2
PTX = ["Right apical pneumothorax.", "Small left pneumothorax is seen.", "No change in the pneumothorax."] * 2
CLEAR = ["The lungs are clear.", "No acute cardiopulmonary process.", "Heart size is normal."] * 2


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib honours *_proxy variables; the fake server is on 127.0.0.1 and must be reached directly."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _chat(content) -> tuple[int, bytes, dict]:
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    return 200, json.dumps(answer).encode(), {}


def _group_a(body: dict) -> str:
    user = body["messages"][-1]["content"]
    return user.split("Group A (feature fires):", 1)[1].split("Group B (", 1)[0].lower()


def _radiologist(body: dict, n: int):
    """Answers from the group-A reports only, so swapped groups would give the wrong answer."""
    a = _group_a(body)
    if "effusion" in a:
        return _chat("Pleural effusion.")
    if "pneumothorax" in a:
        return _chat('"Right pneumothorax. Apical."')
    return _chat("No consistent finding.")


@contextlib.contextmanager
def _server(behaviour):
    """A fake chat-completions server; ``behaviour(body, n) -> (status, bytes, headers)``; yields (url, log)."""
    log: list[dict] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = None
            log.append({"path": self.path, "headers": dict(self.headers), "body": body})
            result = behaviour(body, len(log))
            if result == "sleep":
                stop.wait(2.0)
                return
            status, payload, headers = result
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", log
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def _fallback(features) -> pd.DataFrame:
    """A table shaped like describe_features' output."""
    rows = [
        {
            "feature": f,
            "description": f"extractive {f}.",
            "sentences": [f"extractive {f}."],
            "confidence": 0.5 + f / 100,
            "log_odds": 2.0,
            "support": 0.6,
            "background": 0.1,
            "p_value": 1e-4,
            "p_adjusted": 1e-3,
            "n_active": 30,
            "top_rows": [f, f + 1],
        }
        for f in features
    ]
    return pd.DataFrame(rows)


def _cfg(url: str, **kw) -> LLMConfig:
    base = dict(model="fake-model", api_key_env="CXRLENS_TEST_LLM_KEY", timeout_s=2.0, retries=2, backoff_s=0.01)
    return LLMConfig(url=url, **{**base, **kw})


def _run(cfg, groups, **kw):
    features = list(range(len(groups)))
    tops, rands = zip(*groups, strict=True)
    return describe_features_llm(features, tops, rands, cfg, fallback=_fallback(features), show_progress=False, **kw)


def test_request_shape_and_parsed_descriptions(monkeypatch) -> None:
    monkeypatch.setenv("CXRLENS_TEST_LLM_KEY", "sekret")
    groups = [(EFFUSION, PTX), (PTX, EFFUSION), (CLEAR, EFFUSION), (EFFUSION[:2], CLEAR)]
    with _server(_radiologist) as (url, log):
        out = _run(_cfg(url), groups)
    assert len(log) == 3  # feature 3 has 2 top reports < min_reports: not sent
    first = log[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sekret"
    assert first["headers"]["Content-Type"] == "application/json"
    body = first["body"]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0 and body["max_tokens"] == 120
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "a1: small left pleural effusion." in _group_a(body)
    assert "pneumothorax" not in _group_a(body)  # random reports go to group B only
    assert NO_CONSISTENT_FINDING in body["messages"][1]["content"]

    out = out.set_index("feature")
    assert list(out.columns)[-1] == "describer"
    eff, ptx, clear, few = (out.loc[i] for i in range(4))
    assert eff["description"] == "Pleural effusion." and eff["sentences"] == ["Pleural effusion."]
    assert eff["describer"] == "llm:fake-model"
    assert eff["confidence"] == pytest.approx(0.5) and eff["top_rows"] == [0, 1]  # extractive statistics kept
    assert ptx["sentences"] == ["Right pneumothorax.", "Apical."]  # quotes stripped, split into sentences
    assert clear["description"] == NO_CONSISTENT_FINDING and clear["sentences"] == []
    assert clear["confidence"] == 0.0 and math.isnan(clear["log_odds"]) and clear["describer"] == "llm:fake-model"
    assert few["description"] == "extractive 3." and few["describer"].startswith("extractive (llm not asked")


def test_no_authorization_header_without_key(monkeypatch) -> None:
    monkeypatch.delenv("CXRLENS_TEST_LLM_KEY", raising=False)
    with _server(_radiologist) as (url, log):
        out = _run(_cfg(url + "/chat/completions"), [(EFFUSION, PTX)])  # full endpoint URL is used as given
    assert log[0]["path"] == "/v1/chat/completions" and "Authorization" not in log[0]["headers"]
    assert out.loc[0, "description"] == "Pleural effusion."


def test_5xx_and_429_are_retried() -> None:
    def flaky(body, n):
        if n == 1:
            return 500, b'{"error": "overloaded"}', {}
        if n == 2:
            return 429, b'{"error": "slow down"}', {"Retry-After": "0"}
        return _radiologist(body, n)

    with _server(flaky) as (url, log):
        out = _run(_cfg(url), [(EFFUSION, PTX)])
    assert len(log) == 3
    assert out.loc[0, "describer"] == "llm:fake-model" and out.loc[0, "description"] == "Pleural effusion."


def test_4xx_is_not_retried_and_falls_back() -> None:
    with _server(lambda body, n: (404, b'{"error": "model not found"}', {})) as (url, log):
        out = _run(_cfg(url), [(EFFUSION, PTX)])
    assert len(log) == 1
    assert out.loc[0, "describer"].startswith("extractive (llm failed: HTTP 404")
    assert out.loc[0, "description"] == "extractive 0." and out.loc[0, "confidence"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"<html>Service Unavailable</html>", "malformed answer (not JSON)"),
        (b'{"object": "chat.completion", "choices": []}', "malformed answer (no choices"),
        (_chat("   ")[1], "empty answer"),
    ],
)
def test_garbage_answers_fall_back(payload, reason) -> None:
    with _server(lambda body, n: (200, payload, {})) as (url, log):
        out = _run(_cfg(url), [(EFFUSION, PTX)])
    assert len(log) == 1
    assert out.loc[0, "describer"].startswith(f"extractive (llm failed: {reason}")
    assert out.loc[0, "description"] == "extractive 0."


def test_circuit_breaker_stops_calling_a_failing_server() -> None:
    with _server(lambda body, n: (503, b"{}", {})) as (url, log):
        out = _run(_cfg(url, retries=1, breaker_after=3), [(EFFUSION, PTX)] * 7)
    assert len(log) == 2 + 1 + 1  # first failure with its retry, then one attempt per feature, then no more calls
    marks = out["describer"].tolist()
    assert marks[0] == "extractive (llm failed: HTTP 503 {} (after 2 attempts))"
    assert marks[1:3] == ["extractive (llm failed: HTTP 503 {} (after 1 attempt))"] * 2
    assert all("circuit open after 3 consecutive failures" in m for m in marks[3:])
    assert out["description"].tolist() == [f"extractive {f}." for f in range(7)]


def test_breaker_counts_only_consecutive_failures() -> None:
    # fails on odd requests only: never two failed features in a row, so every feature is asked
    with _server(lambda body, n: (400, b"{}", {}) if n % 2 else _radiologist(body, n)) as (url, log):
        out = _run(_cfg(url, breaker_after=2), [(EFFUSION, PTX)] * 6)
    assert len(log) == 6
    assert out["describer"].tolist() == ["extractive (llm failed: HTTP 400 {})", "llm:fake-model"] * 3


def test_no_retries_while_failing_until_a_success() -> None:
    def server(body, n):
        return (500, b"{}", {}) if n in {1, 2, 3, 4, 6} else _radiologist(body, n)

    with _server(server) as (url, log):
        out = _run(_cfg(url, retries=2, breaker_after=3), [(EFFUSION, PTX)] * 4)
    assert len(log) == 7  # 3 attempts, then 1 (failing streak), then 1 (success resets), then 2 (retries back)
    assert out["describer"].tolist() == [
        "extractive (llm failed: HTTP 500 {} (after 3 attempts))",
        "extractive (llm failed: HTTP 500 {} (after 1 attempt))",
        "llm:fake-model",
        "llm:fake-model",
    ]


def test_dead_endpoint_falls_back_fast() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    out = _run(_cfg(f"http://127.0.0.1:{port}/v1", retries=2, backoff_s=0.01), [(EFFUSION, PTX)] * 50)
    assert time.perf_counter() - start < 3.0
    assert out["description"].tolist() == [f"extractive {f}." for f in range(50)]
    assert "ConnectionRefusedError" in out.loc[0, "describer"] and "after 3 attempts" in out.loc[0, "describer"]
    assert all("circuit open" in m for m in out["describer"][3:])


def test_slow_server_times_out_and_falls_back() -> None:
    start = time.perf_counter()
    with _server(lambda body, n: "sleep") as (url, log):
        out = _run(_cfg(url, timeout_s=0.2, retries=1, breaker_after=1), [(EFFUSION, PTX)] * 3)
    assert time.perf_counter() - start < 2.0
    assert len(log) == 2  # one feature × 2 attempts, then the breaker is open
    assert out.loc[0, "describer"] == "extractive (llm failed: timeout (after 2 attempts))"
    assert all("circuit open after 1 consecutive failures" in m for m in out["describer"][1:])


def test_parse_description() -> None:
    assert parse_description("<think>Group A all say effusion.</think>\nAnswer: Small left pleural effusion") == [
        "Small left pleural effusion."
    ]
    assert parse_description("- Cardiomegaly.\n- Mild pulmonary edema.\n- Effusion.\n- Atelectasis.") == [
        "Cardiomegaly.",
        "Mild pulmonary edema.",
        "Effusion.",
    ]
    assert parse_description("There is NO consistent finding.") == []
    assert parse_description("'no consistent findings'") == []
    assert parse_description("No pleural effusion.") == ["No pleural effusion."]  # a negated finding is kept
    with pytest.raises(LLMError, match="empty"):
        parse_description('"" ...')


def test_prompt_limits_and_config() -> None:
    cfg = LLMConfig(url="http://localhost:8080/v1/", model="m", max_reports=2, max_chars_per_report=20)
    assert cfg.endpoint == "http://localhost:8080/v1/chat/completions"
    user = build_messages(["word " * 50, "second", "third"], [], cfg)[1]["content"]
    assert "A1: word word word word …" in user and "A2: second" in user and "A3:" not in user
    assert "Group B (feature does not fire):\n(no reports)" in user
    with pytest.raises(ValueError, match="http:// or https://"):
        LLMConfig(url="localhost:8080", model="m")


def test_contrast_reports_draws_non_activating_rows() -> None:
    codes = np.zeros((40, 2), np.float32)
    codes[:10, 0] = np.arange(10, 0, -1)
    codes[:, 1] = 1.0  # never inactive
    reports = [f"report {i}." for i in range(40)]
    table = _fallback([0, 1])
    table.at[0, "top_rows"] = [0, 1, 2]
    table.at[1, "top_rows"] = [5]
    features, tops, rands = contrast_reports(codes, reports, table, n_random=8, seed=0)
    assert features == [0, 1] and tops == [["report 0.", "report 1.", "report 2."], ["report 5."]]
    assert len(rands[0]) == 8 and all(int(r.split()[1][:-1]) >= 10 for r in rands[0])
    assert rands[1] == []
    with pytest.raises(ValueError, match="41 rows but there are 40 reports"):
        contrast_reports(np.zeros((41, 2)), reports, table)
