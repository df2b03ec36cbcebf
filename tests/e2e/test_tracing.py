"""One trigger, one trace: a real server process exports its spans over OTLP/HTTP to a local
receiver, and the request, the worker's steps, the database statements and the outgoing
LLM and MCP calls of the seed's customer_support run all share its trace id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Tracing-Test-Password-42"}  # fmt: skip
MESSAGE = "I need help with my order"
TRIGGER = {"workflow_name": "customer_support",
           "data": {"ticket_id": "12345", "customer_message": MESSAGE}}  # fmt: skip


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    attributes: dict[str, Any]


class Receiver:
    """An OTLP/HTTP trace receiver: decodes every export request it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append(ReceivedSpan(
                            span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                            span.name, {a.key: _value(a.value) for a in span.attributes},
                        ))  # fmt: skip

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/v1/traces":
                received.add(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_one_trigger_yields_one_trace(
    server_factory: type[Server], tmp_path: Path, receiver: tuple[str, Receiver]
) -> None:
    endpoint, received = receiver
    server = server_factory(env={
        **ADMIN, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "workflow-engine-under-test",
    }).start()  # fmt: skip
    token = httpx.post(f"{server.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    run = httpx.post(f"{server.url}/api/v1/workflows/trigger", json=TRIGGER, headers=headers,
                     timeout=10).json()  # fmt: skip
    # A query string can hold a secret: spans keep none. A host name that contains
    # "health" is still traced (exclusions are anchored on the path).
    listed = httpx.get(f"{server.url}/api/v1/workflows?limit=5&api_key=QUERY-SECRET-1",
                       headers=headers, timeout=10)  # fmt: skip
    assert listed.status_code == 200
    me = httpx.get(f"{server.url}/api/v1/auth/me",
                   headers={**headers, "Host": "healthcare.example"}, timeout=10)  # fmt: skip
    assert me.status_code == 200
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}{run['links']['status']}", headers=headers,
                    timeout=10).json()["status"] not in ("completed", "failed"):  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(0.2)

    def trace_of_run() -> list[ReceivedSpan]:
        spans = received.snapshot()
        triggers = [s for s in spans if s.name == "POST /api/v1/workflows/trigger"]
        if not triggers:
            return []
        return [s for s in spans if s.trace_id == triggers[0].trace_id]

    wanted = ("tools/call get_conversation", "tools/call create_reply", "step reply")
    while not all(any(s.name == name for s in trace_of_run()) for name in wanted):
        assert time.monotonic() < deadline, sorted({s.name for s in received.snapshot()})
        time.sleep(0.2)
    time.sleep(0.5)  # the last batch
    spans = trace_of_run()
    names = {s.name for s in spans}

    steps = [s for s in spans if s.name.startswith("step ")]
    assert {s.attributes["workflow.run_id"] for s in steps} == {run["workflow_id"]}
    assert {"step fetch", "step intent", "step search", "step draft", "step reply"} <= names
    [reply] = [s for s in steps if s.name == "step reply"]
    assert reply.attributes["workflow.name"] == "customer_support"
    assert reply.attributes["workflow.node"] == "mcp.call"
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert chats
    assert all(s.attributes["gen_ai.provider.name"] == "offline" for s in chats)
    assert all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in chats)
    assert any(s.attributes.get("gen_ai.tool.name") == "search_pages" for s in spans)
    assert any("db.system" in s.attributes or "db.system.name" in s.attributes for s in spans)
    # Every span's parent is in the trace (or it is the request, the root).
    ids = {s.span_id for s in spans}
    orphans = [s.name for s in spans if s.parent_id and s.parent_id not in ids]
    assert orphans == []

    everything = received.snapshot()
    assert not [s.name for s in everything if "QUERY-SECRET-1" in json.dumps(s.attributes)]
    assert any(s.name == "GET /api/v1/workflows" for s in everything)
    assert any(s.name == "GET /api/v1/auth/me" for s in everything)

    trace_id = steps[0].trace_id
    log_lines = [json.loads(line) for line in server.output().splitlines()
                 if line.startswith("{")]  # fmt: skip
    assert any(line.get("trace_id") == trace_id for line in log_lines)
    assert "tracing is on: spans go to the OTLP endpoint" in server.output()
