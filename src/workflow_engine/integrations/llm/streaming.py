"""Streamed answers: one POST whose answer is server-sent events, with every provider's retries.

`post_stream` keeps `http_api.post_json`'s policy for as long as nothing of the answer has
arrived: a 429 waits what `retry-after` asks, 5xx answers (529 among them), timeouts and
network failures back off and try again, another 4xx fails at once. Once the first byte of the
stream is in, some text may have been handed on already (`on_delta`), so a failure after it is
not retried here: it fails the call as retryable (`llm_unavailable`), and the step's retry
policy decides — a new attempt streams the answer again from its start.

The timeout bounds the wait for the first byte and then each wait between two chunks: a long
answer that keeps coming is not cut off after `timeout` seconds in total.

The parsing is the SSE wire format (`event:` and `data:` lines, a blank line ends a message);
what each provider's messages mean is its own module's business (`openai_stream.py`,
`anthropic_stream.py`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from workflow_engine.integrations.llm.http_api import MAX_RESPONSE_BYTES, send_with_retries
from workflow_engine.integrations.llm.types import DeltaCallback, LLMError


class StreamBroken(LLMError):
    """The stream stopped or went wrong after it began: retryable, by the step."""

    def __init__(self, message: str, *, error_class: str = "llm_unavailable") -> None:
        super().__init__(message, retryable=True, error_class=error_class)


@asynccontextmanager
async def post_stream(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    timeout: float,
    max_retries: int,
    where: str,
) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
    """POST `body` and yield the answer's messages as `(event, data)` pairs (`event` is
    `message` when the server names none), once its first byte has arrived."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        first: list[tuple[AsyncIterator[bytes], bytes]] = []

        async def send() -> httpx.Response:
            request = client.build_request(
                "POST", url, json=body, headers={**headers, "accept": "text/event-stream"}
            )
            response = await client.send(request, stream=True)
            if response.status_code == 200:  # the retries wait for the first bytes too
                chunks = response.aiter_bytes()
                try:
                    first[:] = [(chunks, await _first_chunk(chunks))]
                except BaseException:
                    await response.aclose()
                    raise
            return response

        response = await send_with_retries(
            send, timeout=timeout, max_retries=max_retries, where=where
        )
        try:
            [(chunks, head)] = first
            yield _messages(chunks, head, where)
        finally:
            await response.aclose()


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    """The answer's first bytes (empty when it has none): what the retries wait for."""
    async for chunk in chunks:
        if chunk:
            return chunk
    return b""


async def _messages(
    chunks: AsyncIterator[bytes], first: bytes, where: str
) -> AsyncIterator[tuple[str, str]]:
    import httpx

    received = len(first)
    event, data = "message", list[str]()
    decoder = _Utf8()
    buffer = decoder.decode(first)
    while True:
        *lines, buffer = buffer.split("\n")
        for raw in lines:
            line = raw.rstrip("\r")
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", list[str]()
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
        try:
            chunk = await anext(chunks, None)
        except httpx.TimeoutException:
            raise StreamBroken(f"{where} stopped sending its answer",
                               error_class="llm_timeout") from None  # fmt: skip
        except httpx.HTTPError as exc:
            raise StreamBroken(f"{where}'s answer broke off: {type(exc).__name__}") from None
        if chunk is None:
            if data:  # a last message without its blank line
                yield event, "\n".join(data)
            return
        received += len(chunk)
        if received > MAX_RESPONSE_BYTES:
            raise LLMError("the provider's answer is too large", retryable=False,
                           error_class="llm_bad_response")  # fmt: skip
        buffer += decoder.decode(chunk)


class _Utf8:
    """Decodes UTF-8 across chunk boundaries (a character may be split between two)."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, chunk: bytes) -> str:
        return self._decoder.decode(chunk)


def parsed(data: str, where: str) -> dict[str, Any]:
    """One message's data as a JSON object; anything else means the stream is not what the
    provider sends (retryable, as a garbled non-streamed answer is)."""
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise StreamBroken(f"{where} streamed something that is not JSON",
                           error_class="llm_bad_response")  # fmt: skip
    return document


async def in_pieces(text: str, on_delta: DeltaCallback) -> None:
    """`text` handed on a word at a time (with the space before each), as a model streams it."""
    start = 0
    while start < len(text):
        space = text.find(" ", start + 1)
        end = len(text) if space < 0 else space
        await on_delta(text[start:end])
        start = end
