"""Optional LLM describer: feature descriptions from any OpenAI-compatible chat endpoint, with a safe fallback.

In the spirit of SAE-Rad (arXiv 2410.03334), the model is shown the reports of a feature's top-activating images
(group A) and of images on which the feature is inactive (group B), and asked for one short radiological
description of what group A shares and group B lacks — 1–3 report-style sentences, or exactly
``"no consistent finding"``. Only the standard library is used (``urllib.request``, ``json``).

**Endpoint.** ``POST {url}/chat/completions`` (or ``url`` itself when it already ends in ``/chat/completions``) with
``{"model", "messages", "temperature", "max_tokens"}``; the answer is ``choices[0].message.content``. The API key
is read from the environment variable ``LLMConfig.api_key_env`` (default ``OPENAI_API_KEY``) and sent as
``Authorization: Bearer …`` when set; local servers need none.

**Where report text and the key may go** (:func:`check_endpoint`; refused with :class:`LLMEndpointError` before any
request is made — never a silent fallback, never the key in a message):

- a *loopback* endpoint (host ``localhost``, an address in 127.0.0.0/8, ``::1``) is always allowed, http or https,
  with or without key, and is reached directly (``*_proxy`` variables are ignored for it);
- any other host receives the report texts of the prompt, which for MIMIC-CXR (PhysioNet credentialed data use
  agreement) means sharing the data with a third party: it needs ``LLMConfig.allow_remote=True``
  (``--llm-allow-remote``), the user's acknowledgement that report text leaves the machine;
- the key is never sent over plain http to a non-loopback host: such a config is refused while the key variable is
  set (unset it, or point ``api_key_env`` at an empty variable, to call a key-less server on the network).

URLs with ``user:password@`` are refused, and redirects are not followed (a redirect would carry the
``Authorization`` header to a host that was never checked).

**Failures.** One request is retried up to ``retries`` times, waiting ``backoff_s · 2^attempt`` (or the server's
``Retry-After``, capped at ``timeout_s``), on connection errors, timeouts, HTTP 5xx and 429. Other 4xx (bad model
name, bad key …) and a malformed answer (not JSON, no ``choices[0].message.content``, empty text) fail at once:
asking again would give the same answer. A failed feature gets the extractive describer's row, marked
``describer = "extractive (llm failed: <reason>)"``. After ``breaker_after`` features fail in a row the endpoint is
considered down (circuit breaker): it is not called again and every remaining feature falls back, marked
``"extractive (llm failed: circuit open after N consecutive failures; last: <reason>)"``. While failures are
running (after a failed feature, until the next success) each feature gets a single attempt, no retries. So a dead
endpoint costs ``retries + breaker_after`` requests in all — with the defaults, connection refused costs ~3 s of
backoff and a black-holed host ``5 · timeout_s`` — not one round of retries per feature.

**Answer post-processing.** ``<think>…</think>`` blocks, surrounding quotes/backticks and a leading ``Answer:`` /
``Description:`` label are removed; the text is split with :func:`cxrlens.data.reports.split_sentences`, each
sentence stripped (and given a final period), at most 3 kept. An answer containing "no consistent finding"
(any case/punctuation) becomes :data:`~cxrlens.interpret.describe.NO_CONSISTENT_FINDING` with no sentences.

**Statistics columns of an LLM row.** ``confidence, log_odds, support, background, p_value, p_adjusted, n_active,
top_rows`` are copied from the extractive row of the same feature: they measure how consistently the feature's
top reports share a finding against random reports (the evidence the LLM was shown) — they are *not* a score of
the LLM's text (that is :func:`cxrlens.interpret.scoring.score_descriptions`). When the LLM answers "no
consistent finding", the row follows the extractive convention for it: confidence 0, the test statistics NaN.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException

import numpy as np
import pandas as pd

from cxrlens.console import progress, warn_line
from cxrlens.data.reports import split_sentences
from cxrlens.errors import CxrlensError
from cxrlens.interpret.describe import NO_CONSISTENT_FINDING

__all__ = [
    "LLMConfig",
    "LLMEndpointError",
    "LLMError",
    "build_messages",
    "chat_completion",
    "check_endpoint",
    "contrast_reports",
    "describe_features_llm",
    "is_loopback_host",
    "parse_description",
]

_STAT_COLUMNS = ("log_odds", "support", "background", "p_value", "p_adjusted")


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """Config of the LLM describer.

    Attributes:
        url: base URL of an OpenAI-compatible API (``http://127.0.0.1:8000/v1``) or its full ``…/chat/completions``.
        model: model name sent with every request.
        api_key_env: environment variable holding the API key (unset or empty: no ``Authorization`` header).
        timeout_s: timeout of one request, seconds (connect and each read).
        retries: extra attempts of one request after a retryable failure (connection, timeout, 5xx, 429).
        backoff_s: wait before retry i (0-based) is ``backoff_s · 2^i`` seconds.
        temperature: sampling temperature (0: as deterministic as the server allows).
        max_tokens: answer length limit sent to the server.
        max_reports: at most this many reports of each group (top-activating, non-activating) in the prompt.
        max_chars_per_report: each report is cut to this many characters (at a word boundary) in the prompt.
        min_reports: features with fewer top-activating reports than this are not sent (extractive row kept).
        breaker_after: consecutive failed features after which the endpoint is no longer called.
        allow_remote: allow a non-loopback endpoint, acknowledging that report text leaves this machine (for
            MIMIC-CXR only with a server that its data use agreement allows: not a third-party service).
    """

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 120
    max_reports: int = 16
    max_chars_per_report: int = 600
    min_reports: int = 4
    breaker_after: int = 3
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"LLM url must start with http:// or https:// and name a host, got {self.url!r}")
        problem = _url_problem(self.endpoint)
        if problem is None:
            problem = _policy_problem(self, key_set=False)
        if problem is not None:
            raise LLMEndpointError(problem)
        if not self.model.strip():
            raise ValueError("LLM model name is empty")
        if self.retries < 0 or self.timeout_s <= 0 or self.breaker_after < 1:
            raise ValueError("LLMConfig needs retries >= 0, timeout_s > 0 and breaker_after >= 1")

    @property
    def endpoint(self) -> str:
        """The chat-completions URL requests go to."""
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    @property
    def host(self) -> str:
        """The endpoint's host name or address (lower case, IPv6 without brackets)."""
        return urllib.parse.urlsplit(self.endpoint).hostname or ""

    @property
    def is_loopback(self) -> bool:
        """Whether the endpoint is on this machine (:func:`is_loopback_host`)."""
        return is_loopback_host(self.host)


class LLMError(RuntimeError):
    """A chat request that failed for good; the message is one line naming the cause."""


class LLMEndpointError(CxrlensError, ValueError):
    """An endpoint the describer refuses to call (see the module docstring); raised before any request is made.

    Not an :class:`LLMError`: the describer does not fall back on it, the command stops with this one line.
    """


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, addresses in 127.0.0.0/8, ``::1`` (and IPv4-mapped loopback); no DNS lookup.

    Anything else — other names, ``0.0.0.0``, abbreviated addresses such as ``127.1`` — counts as remote.
    """
    h = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    if h == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _url_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be checked reliably (credentials in it, urllib reading another host), or None."""
    if any(c.isspace() or not c.isprintable() for c in endpoint):
        return "LLM url must not contain whitespace or control characters"
    parts = urllib.parse.urlsplit(endpoint)
    if "@" in parts.netloc:
        return "LLM url must not contain user:password@ (put an API key in the variable named by --llm-key-env)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "LLM url has an invalid port"
    if not parts.hostname or urllib.request.Request(endpoint).host.lower() != parts.netloc.lower():
        return "LLM url names no host that can be checked"
    return None


def _api_key(cfg: LLMConfig) -> str:
    return os.environ.get(cfg.api_key_env, "").strip() if cfg.api_key_env else ""


def _policy_problem(cfg: LLMConfig, *, key_set: bool) -> str | None:
    """The one-line reason to refuse ``cfg`` (key set or not), or None; never contains the key itself."""
    if cfg.is_loopback:
        return None
    problems = []
    if key_set and urllib.parse.urlsplit(cfg.endpoint).scheme != "https":
        problems.append(
            f"refusing to send the API key in ${cfg.api_key_env} over plain http to {cfg.host}, which is not this "
            "machine: use https or a loopback endpoint (127.0.0.1, ::1, localhost), or unset the variable"
        )
    if not cfg.allow_remote:
        problems.append(
            f"LLM endpoint {cfg.host} is not on this machine and would receive report text; for MIMIC-CXR the "
            "PhysioNet data use agreement forbids sharing it with third-party services. Use a local server "
            "(e.g. http://127.0.0.1:8000/v1), or pass --llm-allow-remote (LLMConfig.allow_remote=True) to "
            "acknowledge that report text leaves this machine"
        )
    return "; ".join(problems) or None


def check_endpoint(cfg: LLMConfig) -> None:
    """Refuse ``cfg`` as the module docstring says, reading the key variable now.

    Raises:
        LLMEndpointError: one line naming the host and what to do; the key's value is never part of it.
    """
    problem = _url_problem(cfg.endpoint) or _policy_problem(cfg, key_set=bool(_api_key(cfg)))
    if problem is not None:
        raise LLMEndpointError(problem)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered as errors: following one would send the headers (the key) to an unchecked host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl) -> None:  # type: ignore[override]
        return None


def _opener(cfg: LLMConfig) -> urllib.request.OpenerDirector:
    """Direct connection to loopback endpoints (a ``*_proxy`` variable must not route them off the machine)."""
    proxies = urllib.request.ProxyHandler({} if cfg.is_loopback else None)
    return urllib.request.build_opener(proxies, _NoRedirect())


_SYSTEM = (
    "You are a thoracic radiologist helping to interpret a feature learned by an image model of chest X-rays. "
    "You compare two groups of radiology reports and name the imaging finding that sets the first group apart. "
    "Write in the terse style of a radiology report. Never invent findings that the reports do not state."
)

_INSTRUCTIONS = (
    "Group A holds the reports of chest X-rays on which the feature fires most strongly. Group B holds the "
    "reports of chest X-rays on which it does not fire.\n\n"
    "Which radiological finding is stated in most Group A reports and is clearly rarer in Group B? Answer with "
    "1 to 3 short sentences written as they would appear in the findings section of a report (for example: "
    "'Small left pleural effusion.'). Name the finding, and its side, location or severity only when most Group A "
    "reports agree on it. Keep negation exact: a finding reported as absent is a different statement from the "
    "finding being present. Do not mention the groups, the feature or the model, and give no explanation.\n\n"
    "If the Group A reports do not share a finding that distinguishes them from Group B, answer exactly: "
    f"{NO_CONSISTENT_FINDING}"
)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + " …"


def build_messages(top_reports: Sequence[str], random_reports: Sequence[str], cfg: LLMConfig) -> list[dict]:
    """The chat messages for one feature: a system message and one user message with both report groups.

    At most ``cfg.max_reports`` non-empty reports per group, each cut to ``cfg.max_chars_per_report`` characters.
    """

    def block(name: str, reports: Sequence[str]) -> str:
        kept = [_clip(r, cfg.max_chars_per_report) for r in reports if str(r).strip()][: cfg.max_reports]
        lines = [f"{name}{i + 1}: {r}" for i, r in enumerate(kept)] or ["(no reports)"]
        return "\n".join(lines)

    user = (
        f"{_INSTRUCTIONS}\n\n"
        f"Group A (feature fires):\n{block('A', top_reports)}\n\n"
        f"Group B (feature does not fire):\n{block('B', random_reports)}"
    )
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def _one_line(text: str, limit: int = 160) -> str:
    return _clip(str(text).replace("\n", " "), limit)


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def chat_completion(messages: list[dict], cfg: LLMConfig, *, retries: int | None = None) -> str:
    """POST ``messages`` to ``cfg.endpoint`` and return the answer text, retrying as the module docstring says.

    ``retries`` overrides ``cfg.retries`` (the describer passes 0 while failures are running).

    Raises:
        LLMEndpointError: before any request, when :func:`check_endpoint` refuses the endpoint.
        LLMError: after the last attempt, on a non-retryable HTTP status, or on a malformed answer.
    """
    body = json.dumps(
        {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
    ).encode("utf-8")
    check_endpoint(cfg)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = _api_key(cfg)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    opener = _opener(cfg)
    retries = cfg.retries if retries is None else retries
    last = "no attempt made"
    for attempt in range(retries + 1):
        wait = cfg.backoff_s * 2**attempt
        try:
            request = urllib.request.Request(cfg.endpoint, data=body, headers=headers, method="POST")
            with opener.open(request, timeout=cfg.timeout_s) as response:
                raw = response.read()
            return _content(raw)
        except urllib.error.HTTPError as err:
            try:
                detail = _one_line(err.read().decode("utf-8", "replace") if err.fp is not None else "", 80)
            except (OSError, HTTPException):
                detail = ""
            last = f"HTTP {err.code}" + (f" {detail}" if detail else "")
            if 300 <= err.code < 400:
                last = f"HTTP {err.code} (redirect not followed)"
            if err.code != 429 and err.code < 500:
                raise LLMError(last) from None
            after = _retry_after(err)
            if after is not None:
                wait = min(after, cfg.timeout_s)
        except (TimeoutError, urllib.error.URLError, HTTPException, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            last = "timeout" if isinstance(reason, TimeoutError) else f"{type(reason).__name__}: {reason}"
            last = _one_line(last)
        if attempt < retries:
            time.sleep(wait)
    raise LLMError(f"{last} (after {retries + 1} attempt{'s' if retries else ''})")


def _content(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions answer, or LLMError."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LLMError(f"malformed answer (not JSON): {_one_line(raw[:80].decode('utf-8', 'replace'), 80)}") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMError("malformed answer (no choices[0].message.content)") from None
    if not isinstance(content, str) or not content.strip():
        raise LLMError("empty answer")
    return content


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^\s*(answer|description|finding|findings|response)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def parse_description(answer: str, max_sentences: int = 3) -> list[str]:
    """Sentences of an LLM answer (see the module docstring); ``[]`` means "no consistent finding".

    Raises:
        LLMError: when nothing usable is left (empty after cleaning).
    """
    text = _THINK.sub(" ", answer)
    normalised = " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())
    if re.search(r"\bno consistent findings?\b", normalised):
        return []
    text = _LABEL.sub("", text.strip().strip(_QUOTES).strip())
    sentences = []
    for sentence in split_sentences(text):
        sentence = sentence.strip().strip(_QUOTES).strip()
        if not any(c.isalnum() for c in sentence):
            continue
        sentences.append(sentence if sentence[-1] in ".!?" else sentence + ".")
    if not sentences:
        raise LLMError("empty answer after cleaning")
    return sentences[:max_sentences]


def contrast_reports(
    codes_NF: np.ndarray,
    reports: Sequence[str],
    extractive: pd.DataFrame,
    *,
    n_random: int = 16,
    seed: int = 0,
) -> tuple[list[int], list[list[str]], list[list[str]]]:
    """The inputs of :func:`describe_features_llm` from the extractive describer's table.

    Args:
        codes_NF: (n_images, n_features) activations; row i belongs to ``reports[i]``.
        reports: the report texts.
        extractive: output of :func:`~cxrlens.interpret.describe.describe_features` over the same rows.
        n_random: non-activating reports drawn per feature (seeded; fewer when fewer exist).

    Returns:
        ``(features, top_reports, random_reports)``: per feature of ``extractive`` (its order), the reports of its
        ``top_rows`` and of images on which it is inactive (activation ≤ 0).
    """
    codes_NF = np.asarray(codes_NF)
    if codes_NF.shape[0] != len(reports):
        raise ValueError(f"codes have {codes_NF.shape[0]} rows but there are {len(reports)} reports")
    rng = np.random.default_rng(seed)
    features, tops, rands = [], [], []
    for row in extractive.itertuples(index=False):
        f = int(row.feature)
        inactive = np.flatnonzero(codes_NF[:, f] <= 0)
        drawn = rng.choice(inactive, size=min(n_random, len(inactive)), replace=False)
        features.append(f)
        tops.append([str(reports[i]) for i in row.top_rows])
        rands.append([str(reports[i]) for i in np.sort(drawn)])
    return features, tops, rands


def describe_features_llm(
    features: Sequence[int],
    top_reports: Sequence[Sequence[str]],
    random_reports: Sequence[Sequence[str]],
    cfg: LLMConfig,
    *,
    fallback: pd.DataFrame,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Describe features with an LLM, falling back to the extractive describer per feature.

    Args:
        features: feature ids, in output order.
        top_reports: per feature, the reports of its top-activating images (best first).
        random_reports: per feature, reports of images on which it does not fire.
        cfg: endpoint, model, retries … (:class:`LLMConfig`).
        fallback: the extractive describer's table (:func:`~cxrlens.interpret.describe.describe_features`), one
            row per feature in ``features``.

    Returns:
        The columns of ``describe_features`` plus ``describer``: ``"llm:<model>"`` for rows the LLM described,
        ``"extractive (llm failed: <reason>)"`` for fallbacks, ``"extractive (llm not asked: …)"`` for features
        with fewer than ``cfg.min_reports`` top reports. Statistics columns: see the module docstring.

    Raises:
        LLMEndpointError: before any request, when :func:`check_endpoint` refuses the endpoint (no fallback).
    """
    check_endpoint(cfg)
    if not cfg.is_loopback:
        plain = urllib.parse.urlsplit(cfg.endpoint).scheme != "https"
        warn_line(
            f"LLM describer: report text is sent to {cfg.host}"
            + (" over plain http (unencrypted)" if plain else "")
            + " (allowed by allow_remote / --llm-allow-remote)"
        )
    features = [int(f) for f in features]
    if not (len(features) == len(top_reports) == len(random_reports)):
        raise ValueError(
            f"features ({len(features)}), top_reports ({len(top_reports)}) and random_reports "
            f"({len(random_reports)}) must have the same length"
        )
    if fallback["feature"].duplicated().any():
        raise ValueError("fallback table has duplicate feature rows")
    records = {int(r["feature"]): r for r in fallback.to_dict("records")}
    missing = [f for f in features if f not in records]
    if missing:
        raise ValueError(f"fallback table has no row for feature(s) {missing[:10]}")
    columns = list(fallback.columns)
    rows: list[dict] = []
    failed_in_row, open_reason = 0, None
    with progress(disable=not show_progress) as bar:
        task = bar.add_task(f"LLM descriptions ({cfg.model})", total=len(features))
        for f, top, rand in zip(features, top_reports, random_reports, strict=True):
            row = {c: records[f][c] for c in columns}
            row["sentences"] = list(row["sentences"])
            row["top_rows"] = list(row["top_rows"])
            rows.append(row)
            n_top = sum(1 for r in top if str(r).strip())
            if n_top < cfg.min_reports:
                row["describer"] = f"extractive (llm not asked: {n_top} top reports < {cfg.min_reports})"
            elif open_reason is not None:
                row["describer"] = f"extractive (llm failed: {open_reason})"
            else:
                try:
                    answer = chat_completion(
                        build_messages(top, rand, cfg), cfg, retries=cfg.retries if failed_in_row == 0 else 0
                    )
                    sentences = parse_description(answer)
                except LLMError as err:
                    failed_in_row += 1
                    row["describer"] = f"extractive (llm failed: {err})"
                    if failed_in_row >= cfg.breaker_after:
                        open_reason = f"circuit open after {failed_in_row} consecutive failures; last: {err}"
                        warn_line(f"LLM endpoint {cfg.endpoint}: {open_reason}; extractive descriptions for the rest")
                else:
                    failed_in_row = 0
                    row["describer"] = f"llm:{cfg.model}"
                    if sentences:
                        row.update(description=" ".join(sentences), sentences=sentences)
                    else:
                        row.update(description=NO_CONSISTENT_FINDING, sentences=[], confidence=0.0)
                        row.update({c: np.nan for c in _STAT_COLUMNS})
            bar.advance(task)
    n_failed = sum(r["describer"].startswith("extractive (llm failed") for r in rows)
    if n_failed:
        warn_line(f"LLM describer: {n_failed} of {len(features)} features fell back to the extractive describer")
    return pd.DataFrame(rows, columns=[*columns, "describer"])
