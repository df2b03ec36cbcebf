"""A local HTTP server shaped like Anthropic's Messages API (`POST /v1/messages`), answering
from a script as `openai_server.FakeOpenAI` does (same `Reply`, same record of requests)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import streamed
from tests.fakes.openai_server import FakeOpenAI, Reply

__all__ = ["FakeAnthropic", "Reply", "fake_anthropic"]


class FakeAnthropic(FakeOpenAI):
    """`authorizations` holds each request's `x-api-key`; `versions` its `anthropic-version`."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: list[str | None] = []

    def reset(self) -> None:
        super().reset()
        self.versions.clear()


def _content(reply: Reply, number: int) -> list[dict[str, Any]]:
    """The answer's blocks: its text, then a `tool_use` block per scripted tool call."""
    blocks: list[dict[str, Any]] = []
    if reply.content and not (reply.tool_calls and reply.content == Reply.content):
        blocks.append({"type": "text", "text": reply.content})
    blocks += [
        {
            "type": "tool_use",
            "id": f"toolu_{number}_{index}",
            "name": call["name"],
            "input": call["arguments"],
        }
        for index, call in enumerate(reply.tool_calls)
    ]
    return blocks


def _handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/messages":
                self._send(404, _error("not_found_error", f"no route {self.path}"))
                return
            fake.request_times.append(time.monotonic())
            fake.requests.append(body)
            fake.authorizations.append(self.headers.get("x-api-key"))
            fake.versions.append(self.headers.get("anthropic-version"))
            reply = fake._next()
            if reply.delay:
                time.sleep(reply.delay)
            if reply.status != 200:
                kind = {401: "authentication_error", 429: "rate_limit_error",
                        529: "overloaded_error"}.get(reply.status, "api_error")  # fmt: skip
                self._send(reply.status, _error(kind, f"scripted {reply.status}"), reply.headers)
                return
            if body.get("stream"):
                number = len(fake.requests)
                streamed.send(self, reply, streamed.anthropic_messages(reply, body, number))
                return
            self._send(200, {
                "id": f"msg_{len(fake.requests)}", "type": "message", "role": "assistant",
                "model": reply.model or body.get("model", "unknown"),
                "content": _content(reply, len(fake.requests)),
                "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": reply.prompt_tokens,
                          "output_tokens": reply.completion_tokens},
            }, reply.headers)  # fmt: skip

        def _send(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(document).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *_args: Any) -> None:
            return None

    return Handler


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@contextmanager
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
