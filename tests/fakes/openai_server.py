"""A local HTTP server shaped like OpenAI's chat-completions API, answering from a script.

Each request takes the next scripted reply (`Reply`); with the script empty it answers
`default`. Every request body is kept, so tests can assert what the provider sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes import streamed


@dataclass
class Reply:
    content: str = "Hello from the fake model."
    status: int = 200
    prompt_tokens: int = 11
    completion_tokens: int = 7
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hanging provider)
    model: str | None = None  # the model named in the answer; default: the one asked for
    # Tool calls the model asks for instead of answering: {"name": ..., "arguments": {...}}
    # (or a string, sent as the arguments' text as it is).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # Streamed answers (`"stream": true`, tests/fakes/streamed.py): the pause between two
    # messages, and a number of messages after which the stream is cut off.
    stream_pause: float = 0.05
    stream_break: int | None = None
    # False: a server that ignores `stream_options.include_usage` (sends no usage chunk).
    streams_usage: bool = True


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.request_times: list[float] = []
        self.url = ""

    def reply(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()
        self.authorizations.clear()
        self.request_times.clear()
        self.default = Reply()

    def _next(self) -> Reply:
        return self.script.popleft() if self.script else self.default


def _message(reply: Reply, number: int) -> dict[str, Any]:
    if not reply.tool_calls:
        return {"role": "assistant", "content": reply.content}
    calls = [
        {"id": f"call_{number}_{index}", "type": "function", "function": {
            "name": call["name"],
            "arguments": call["arguments"] if isinstance(call["arguments"], str)
            else json.dumps(call["arguments"]),
        }}
        for index, call in enumerate(reply.tool_calls)
    ]  # fmt: skip
    return {"role": "assistant", "content": reply.content or None, "tool_calls": calls}


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            fake.request_times.append(time.monotonic())
            fake.requests.append(body)
            fake.authorizations.append(self.headers.get("Authorization"))
            reply = fake._next()
            if reply.delay:
                time.sleep(reply.delay)
            if reply.status != 200:
                self._send(reply.status, {"error": {"message": f"scripted {reply.status}"}},
                           reply.headers)  # fmt: skip
                return
            if body.get("stream"):
                number = len(fake.requests)
                streamed.send(self, reply, streamed.openai_messages(reply, body, number))
                return
            self._send(200, {
                "id": f"chatcmpl-{len(fake.requests)}",
                "object": "chat.completion",
                "model": reply.model or body.get("model", "unknown"),
                "choices": [{"index": 0,
                             "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                             "message": _message(reply, len(fake.requests))}],
                "usage": {"prompt_tokens": reply.prompt_tokens,
                          "completion_tokens": reply.completion_tokens,
                          "total_tokens": reply.prompt_tokens + reply.completion_tokens},
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
                pass  # the client gave up waiting (a timeout test)

        def log_message(self, *_args: Any) -> None:
            return None

    return Handler


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
