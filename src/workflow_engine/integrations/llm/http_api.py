"""Calling a provider's HTTP API: one POST of JSON, with the retry policy every provider shares.

httpx rather than each provider's SDK: one endpoint is all we call, and owning the loop lets
the retry honour `retry-after` within the step's own time budget and count every attempt.
Retries: a 429 waits what `retry-after` (or `retry-after-ms`) asks, up to `MAX_RETRY_AFTER`;
5xx answers (Anthropic's 529 "overloaded" among them), timeouts and network failures back off
exponentially; both up to `max_retries` times. Then the call fails as retryable, and the step's
retry policy decides what comes next. A 4xx other than 429 fails at once: no retry turns a bad
key or an unknown model into a good one.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported where a URL is parsed or a request sent: a process that does neither never
    # loads httpx (docs/architecture.md, "What is loaded when").
    import httpx

from workflow_engine.integrations.llm.structured import ChatBackedProvider
from workflow_engine.integrations.llm.types import LLMError

MAX_RETRY_AFTER = 30.0  # seconds; a longer wait is the step's retry policy's business
BACKOFF = 0.5  # seconds before the first retry of a 5xx or a timeout
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class HTTPProvider(ChatBackedProvider):
    """A provider reached over HTTP: where, with which key and model, how long and how often."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries


async def post_json(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    timeout: float,
    max_retries: int,
    where: str,
) -> Any:
    """POST `body` to `url` and return the JSON answer; `where` names the provider in errors."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        response = await send_with_retries(
            lambda: client.post(url, json=body, headers=headers),
            timeout=timeout, max_retries=max_retries, where=where,
        )  # fmt: skip
        return _json(response)


async def send_with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    timeout: float,
    max_retries: int,
    where: str,
) -> httpx.Response:
    """The first 200 answer of `send` (each try within `timeout`): a 429 waits what its
    `retry-after` asks, 5xx answers, timeouts and network failures back off, `max_retries`
    times; another answer fails at once. Every provider's policy, streamed or not (a streamed
    `send` returns once the first bytes are in, and the answer is the caller's to close)."""
    import httpx

    for attempt in range(max_retries + 1):
        try:
            async with asyncio.timeout(timeout):
                response = await send()
        except (TimeoutError, httpx.TimeoutException):
            failure = LLMError(f"{where} did not answer within {timeout:g} s",
                               retryable=True, error_class="llm_timeout")  # fmt: skip
            delay = _backoff(attempt)
        except httpx.HTTPError as exc:
            failure = LLMError(f"{where} is unreachable: {type(exc).__name__}: {exc}",
                               retryable=True, error_class="llm_unavailable")  # fmt: skip
            delay = _backoff(attempt)
        else:
            if response.status_code == 200:
                return response
            await response.aread()
            await response.aclose()
            failure = _refusal(response)
            if not failure.retryable:
                raise failure
            asked = _retry_after(response) if response.status_code == 429 else _backoff(attempt)
            if asked is None:  # asked to wait longer than we would: give up now
                raise failure
            delay = asked
        if attempt == max_retries:
            raise failure
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _json(response: httpx.Response) -> Any:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise LLMError("the provider's answer is too large", retryable=False,
                       error_class="llm_bad_response")  # fmt: skip
    try:
        return response.json()
    except ValueError:
        raise LLMError("the provider's answer is not JSON", retryable=True,
                       error_class="llm_bad_response") from None  # fmt: skip


def _refusal(response: httpx.Response) -> LLMError:
    status = response.status_code
    detail = _detail(response)
    if status == 429:
        return LLMError(f"rate limited by the provider (429): {detail}", retryable=True,
                        error_class="llm_rate_limited")  # fmt: skip
    if status >= 500:
        return LLMError(f"the provider failed ({status}): {detail}", retryable=True,
                        error_class="llm_unavailable")  # fmt: skip
    if status in (401, 403):
        return LLMError(f"the provider refused the credentials ({status}): {detail}",
                        retryable=False, error_class="llm_auth")  # fmt: skip
    return LLMError(f"the provider refused the request ({status}): {detail}", retryable=False,
                    error_class="llm_request")  # fmt: skip


def _detail(response: httpx.Response) -> str:
    """The provider's own message, short (OpenAI and Anthropic both put it in
    `error.message`)."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = response.text
    return str(message or response.reason_phrase)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the provider asks us to wait (1 s when it does not say); None when longer than
    `MAX_RETRY_AFTER`."""
    headers = response.headers
    seconds: float = 1.0
    if (millis := headers.get("retry-after-ms")) is not None:
        seconds = _number(millis, 1000.0) / 1000
    elif (value := headers.get("retry-after")) is not None:
        seconds = _number(value, -1.0)
        if seconds < 0:  # an HTTP date
            seconds = _until(value)
    seconds = max(0.0, seconds)
    return None if seconds > MAX_RETRY_AFTER else seconds


def _until(http_date: str) -> float:
    try:
        moment = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return 1.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return float((moment - datetime.now(UTC)).total_seconds())


def _number(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _backoff(attempt: int) -> float:
    return float(BACKOFF * 2**attempt * random.uniform(0.8, 1.2))
