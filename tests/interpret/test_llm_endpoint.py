"""Where the LLM describer may send report text and the API key: loopback always, other hosts only with
``allow_remote``, the key never over plain http off the machine, refusals before any byte is sent, no redirects
followed, no proxy for loopback. No test here talks to a non-loopback address: connections are guarded, and the
"remote" requests that are allowed go to a fake opener or are routed to a server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cxrlens.interpret.llm import (
    LLMConfig,
    LLMEndpointError,
    chat_completion,
    check_endpoint,
    describe_features_llm,
    is_loopback_host,
)
from tests.interpret.test_llm import EFFUSION, PTX, _chat, _fallback

KEY_ENV = "CXRLENS_TEST_LLM_KEY"
SECRET = "sk-test-DO-NOT-LEAK-4f1c9e"
REMOTE = "llm.example.org"  # never contacted: the guard below fails any connection that is attempted
MESSAGES = [{"role": "user", "content": "Small left pleural effusion."}]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def network(monkeypatch) -> list[tuple]:
    """Records (and refuses) every name lookup and outgoing connection; tests assert that it stays empty."""
    attempts: list[tuple] = []

    def refuse(what):
        def fake(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"test guard: {what} attempted")

        return fake

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    return attempts


@contextlib.contextmanager
def _serve(host: str = "127.0.0.1", answer=None) -> Iterator[tuple[int, list[dict]]]:
    """A chat server on ``host`` logging every request (any method); yields (port, log)."""
    log: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            log.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "raw": raw})
            status, payload, headers = (answer or (lambda n: _chat("Pleural effusion.")))(len(log))
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((host, 0), Handler)
    except OSError as err:
        pytest.skip(f"cannot listen on {host}: {err}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], log
    finally:
        server.shutdown()
        server.server_close()


def _cfg(url: str, **kw) -> LLMConfig:
    base = dict(model="fake-model", api_key_env=KEY_ENV, timeout_s=2.0, retries=0, backoff_s=0.01)
    return LLMConfig(url=url, **{**base, **kw})


def _describe(cfg: LLMConfig):
    return describe_features_llm([0], [EFFUSION], [PTX], cfg, fallback=_fallback([0]), show_progress=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.45.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("127.1", False),  # abbreviated forms are not parsed: counted as remote, the safe side
        ("128.0.0.1", False),
        ("10.0.0.5", False),
        ("::", False),
        ("localhost.example.org", False),
        ("127.0.0.1.nip.io", False),
        (REMOTE, False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plain_http_with_key_to_remote_host_is_refused_before_sending(monkeypatch, network) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    cfg = _cfg(f"http://{REMOTE}/v1", allow_remote=True)  # even with the remote acknowledgement
    for call in (lambda: check_endpoint(cfg), lambda: chat_completion(MESSAGES, cfg), lambda: _describe(cfg)):
        with pytest.raises(LLMEndpointError, match=r"refusing to send the API key in \$CXRLENS_TEST_LLM_KEY") as e:
            call()
        assert f"plain http to {REMOTE}" in str(e.value) and SECRET not in str(e.value)
        assert "\n" not in str(e.value)
    assert network == []
    # without the key there is nothing to leak: the acknowledged remote endpoint passes the check
    monkeypatch.delenv(KEY_ENV)
    check_endpoint(cfg)


def test_remote_endpoint_without_flag_is_refused_at_config_time(monkeypatch, network) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    for url in (f"https://{REMOTE}/v1", f"http://{REMOTE}:8000/v1", "https://10.0.0.5/v1", "http://0.0.0.0:8000"):
        with pytest.raises(LLMEndpointError, match="not on this machine and would receive report text") as e:
            _cfg(url)
        message = str(e.value)
        assert "--llm-allow-remote" in message and "data use agreement" in message
        assert SECRET not in message and "\n" not in message
    with pytest.raises(LLMEndpointError) as e:  # both problems in one line
        _cfg(f"http://{REMOTE}/v1")
    assert SECRET not in str(e.value)
    assert network == []


def test_a_config_built_around_the_check_is_still_refused_at_send_time(monkeypatch, network) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    cfg = _cfg("http://127.0.0.1:9/v1")
    object.__setattr__(cfg, "url", f"https://{REMOTE}/v1")  # e.g. dataclasses.replace on a subclass, or a bug
    with pytest.raises(LLMEndpointError, match="not on this machine"):
        chat_completion(MESSAGES, cfg)
    with pytest.raises(LLMEndpointError, match="not on this machine"):
        _describe(cfg)  # refused, not an extractive fallback
    assert network == []


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://user:pw@127.0.0.1:8000/v1", "user:password@"),
        (f"http://127.0.0.1@{REMOTE}/v1", "user:password@"),
        ("http://127.0.0.1:8000/v1\n", "whitespace"),
        ("http://127.0.0.1:99999/v1", "invalid port"),
    ],
)
def test_urls_that_cannot_be_checked_are_refused(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _cfg(url, allow_remote=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "::1"])
def test_loopback_http_with_key_is_allowed(monkeypatch, host: str) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    listen = "::1" if host == "::1" else ("127.0.0.1" if host == "localhost" else host)
    with _serve(listen) as (port, log):
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        cfg = _cfg(f"http://{netloc}/v1")  # no allow_remote needed
        check_endpoint(cfg)
        out = _describe(cfg)
    assert len(log) == 1 and log[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert out.loc[0, "describer"] == "llm:fake-model" and out.loc[0, "description"] == "Pleural effusion."


def test_loopback_endpoint_ignores_proxy_variables(monkeypatch) -> None:
    """A proxy variable must not route the key and the reports of a local server through another host."""
    with socket.socket() as s:  # a "proxy" that is not there: using it would fail the request
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv(KEY_ENV, SECRET)
    with _serve() as (port, log):
        answer = chat_completion(MESSAGES, _cfg(f"http://localhost:{port}/v1"))
    assert answer == "Pleural effusion." and len(log) == 1


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(monkeypatch, code: int) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with _serve() as (target, target_log):
        redirect = (code, b"{}", {"Location": f"http://127.0.0.1:{target}/v1/chat/completions"})
        with _serve(answer=lambda n: redirect) as (port, log):
            out = _describe(_cfg(f"http://127.0.0.1:{port}/v1", retries=2))
    assert len(log) == 1 and target_log == []  # not retried either: a redirect is not a transient failure
    assert out.loc[0, "describer"] == f"extractive (llm failed: HTTP {code} (redirect not followed))"


def test_flag_allows_remote_https_with_key(monkeypatch, network) -> None:
    """The allowed remote request is handed to a fake opener (nothing leaves the machine); it carries the key."""
    import urllib.request

    sent: list[urllib.request.Request] = []

    def fake_open(self, request, data=None, timeout=None):
        sent.append(request)
        assert not any(type(h).__name__ == "HTTPRedirectHandler" for h in self.handlers)
        return contextlib.closing(io.BytesIO(_chat("Pleural effusion.")[1]))

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", fake_open)
    monkeypatch.setenv(KEY_ENV, SECRET)
    cfg = _cfg(f"https://{REMOTE}/v1", allow_remote=True)
    check_endpoint(cfg)
    out = _describe(cfg)
    assert out.loc[0, "describer"] == "llm:fake-model"
    assert len(sent) == 1 and sent[0].full_url == f"https://{REMOTE}/v1/chat/completions"
    assert sent[0].get_header("Authorization") == f"Bearer {SECRET}"
    assert network == []


def test_flag_allows_remote_plain_http_without_key_with_a_warning(monkeypatch, capsys) -> None:
    """End to end through urllib, the 'remote' host's connection routed to a server on 127.0.0.1."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    real = socket.create_connection
    with _serve() as (port, log):
        routed: list[tuple] = []

        def route(address, *args, **kwargs):
            routed.append(address)
            assert address == (REMOTE, 80), address  # anything else would really leave the machine
            return real(("127.0.0.1", port), *args, **kwargs)

        monkeypatch.setattr(socket, "create_connection", route)
        out = _describe(_cfg(f"http://{REMOTE}/v1", allow_remote=True))
    assert routed == [(REMOTE, 80)] and len(log) == 1
    assert log[0]["headers"]["Host"] == REMOTE and "Authorization" not in log[0]["headers"]
    assert json.loads(log[0]["raw"])["model"] == "fake-model"
    assert out.loc[0, "describer"] == "llm:fake-model"
    assert f"report text is sent to {REMOTE} over plain http (unencrypted)" in capsys.readouterr().err


def test_cli_refuses_with_one_line_and_never_shows_the_key(monkeypatch, capsys, network, tmp_path) -> None:
    from cxrlens.cli import main

    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("COLUMNS", "300")
    base = ["interpret", "--sae", "s", "--llm-model", "m", "--llm-key-env", KEY_ENV, "-w", str(tmp_path / "ws")]
    cases = [
        (["--llm-url", f"http://{REMOTE}/v1", "--llm-allow-remote"], "refusing to send the API key"),
        (["--llm-url", f"https://{REMOTE}/v1"], f"LLM endpoint {REMOTE} is not on this machine"),
        (["--llm-url", "http://u:p@127.0.0.1/v1"], "user:password@"),
    ]
    for extra, expected in cases:
        with pytest.raises(SystemExit) as e:
            main([*base, *extra])
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert e.value.code == 2 and expected in err, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert SECRET not in captured.err + captured.out
    assert not (tmp_path / "ws").exists()  # refused before the workspace is even opened
    assert network == []
