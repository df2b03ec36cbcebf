"""`llm.chat` with `stream: true` against real server processes (an in-process client would
buffer the streams): the text shows on the run's log stream and on the events stream as
`delta` messages before the step completes, and the step's stored output holds the whole
text — with the OpenAI-shaped and the Anthropic-shaped fake providers, with the embedded
worker on SQLite and with a standalone worker process on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.fakes.anthropic_server import fake_anthropic
from tests.fakes.openai_server import FakeOpenAI, Reply, fake_openai

pytestmark = pytest.mark.e2e

ADMIN = {"BOOTSTRAP_ADMIN_EMAIL": "admin@example.com",
         "BOOTSTRAP_ADMIN_PASSWORD": "Streamed-Tokens-2026"}  # fmt: skip
ANSWER = "Your parcel left the Berlin warehouse this morning and arrives on Thursday."
FLOW = """
name: ask_{provider}
steps:
  - id: draft
    uses: llm.chat
    with:
      provider: {provider}
      prompt: "{{{{ input.question }}}}"
      stream: true
output: "{{{{ steps.draft.output }}}}"
"""

Message = tuple[str, str, Any]  # (id, event, data)


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with fake_openai() as openai, fake_anthropic() as anthropic:
        yield openai, anthropic


def _environment(tmp_path: Path, providers: tuple[FakeOpenAI, FakeOpenAI]) -> dict[str, str]:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    for provider in ("openai", "anthropic"):
        (flows / f"ask_{provider}.yaml").write_text(FLOW.format(provider=provider))
    openai, anthropic = providers
    return {
        "WORKFLOWS_DIR": str(flows), **ADMIN,
        "LLM_BASE_URL": openai.url, "LLM_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": anthropic.url, "ANTHROPIC_API_KEY": "sk-ant-test",
    }  # fmt: skip


class Reader(threading.Thread):
    """Reads a stream's messages in the background until `done(messages)` says so or the
    server ends it."""

    def __init__(self, url: str, headers: dict[str, str], done: Callable[[list[Message]], bool]):
        super().__init__(daemon=True)
        self.url, self.headers, self.done = url, headers, done
        self.messages: list[Message] = []
        self.connected = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as response:
                assert response.status_code == 200, response.read()
                self.connected.set()
                current: dict[str, str] = {}
                for line in response.iter_lines():
                    if line:
                        if not line.startswith(":"):
                            field, _, value = line.partition(": ")
                            current[field] = value
                        continue
                    if "data" in current:
                        self.messages.append((current.get("id", ""), current.get("event", ""),
                                              json.loads(current["data"])))  # fmt: skip
                        if self.done(self.messages):
                            return
                    current = {}
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.connected.set()

    def result(self) -> list[Message]:
        self.join(60)
        assert not self.is_alive(), "the stream did not end"
        assert self.error is None, self.error
        return self.messages


def _login(server: Server) -> dict[str, str]:
    token = httpx.post(f"{server.url}/api/v1/auth/login", timeout=10, json={
        "email": ADMIN["BOOTSTRAP_ADMIN_EMAIL"], "password": ADMIN["BOOTSTRAP_ADMIN_PASSWORD"],
    }).json()["token"]  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def _run_completed(messages: list[Message]) -> bool:
    return messages[-1][1] == "WorkflowCompleted"


def _streamed_run(server: Server, provider: str) -> tuple[list[Message], list[Message], Any]:
    """Triggers `ask_<provider>` with both streams open; returns what each showed, and the
    run's stored step output."""
    headers = _login(server)
    events = Reader(f"{server.url}/api/v1/events/stream", headers, _run_completed)
    events.start()
    events.connected.wait(10)
    run = httpx.post(f"{server.url}/api/v1/workflows/trigger", headers=headers, timeout=10,
                     json={"workflow_name": f"ask_{provider}",
                           "data": {"question": "Where is my parcel?"}}).json()  # fmt: skip
    logs = Reader(f"{server.url}{run['links']['logs']}?follow=true", headers, lambda _: False)
    logs.start()
    logged, streamed = logs.result(), events.result()
    results = httpx.get(f"{server.url}{run['links']['results']}", headers=headers, timeout=10)
    return logged, streamed, results.json()


def _assert_deltas_before_completion(
    messages: list[Message], completed: Callable[[Message], bool], text: str
) -> None:
    deltas = [message for message in messages if message[1] == "delta"]
    done = next(n for n, message in enumerate(messages) if completed(message))
    assert deltas, messages
    assert all(message_id == "" for message_id, _, _ in deltas)  # no id: resuming is untouched
    assert all(messages.index(delta) < done for delta in deltas)
    assert [data["seq"] for _, _, data in deltas] == list(range(1, len(deltas) + 1))
    assert {(data["step_id"], data["attempt"]) for _, _, data in deltas} == {("draft", 1)}
    assert "".join(data["text"] for _, _, data in deltas) == text


def _check(logged: list[Message], streamed: list[Message], results: Any) -> None:
    output = results["steps"]["draft"]["output"] if "steps" in results else results["output"]
    assert output["text"] == ANSWER
    _assert_deltas_before_completion(
        logged, lambda m: m[1] != "delta" and m[2].get("message") == "step draft completed", ANSWER
    )
    _assert_deltas_before_completion(streamed, lambda m: m[1] == "StepCompleted", ANSWER)
    # Only the final text is stored: no event holds a delta.
    assert [m for m in streamed if m[1] != "delta" and "delta" in m[1].lower()] == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_streamed_text_shows_on_the_runs_streams_before_the_step_completes(
    provider: str,
    providers: tuple[FakeOpenAI, FakeOpenAI],
    server_factory: type[Server],
    tmp_path: Path,
) -> None:
    fake = providers[0] if provider == "openai" else providers[1]
    fake.reset()
    # A second before the answer starts: time for the log stream, opened after the trigger.
    fake.reply(Reply(ANSWER, prompt_tokens=17, completion_tokens=13, delay=1.5,
                     stream_pause=0.1))  # fmt: skip
    server = server_factory(env=_environment(tmp_path, providers)).start()

    logged, streamed, results = _streamed_run(server, provider)

    _check(logged, streamed, results)
    assert results["output"]["usage"] == {
        "prompt_tokens": 17, "completion_tokens": 13, "total_tokens": 30}  # fmt: skip
    assert fake.requests[-1]["stream"] is True


def test_deltas_of_a_standalone_worker_reach_the_apis_streams(
    providers: tuple[FakeOpenAI, FakeOpenAI],
    server_factory: type[Server],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    openai = providers[0]
    openai.reset()
    openai.reply(Reply(ANSWER, delay=1.5, stream_pause=0.1))
    env = {**_environment(tmp_path, providers), "DATABASE_URL": fresh_postgres_url}
    api = server_factory(env={**env, "WORKER_ENABLED": "false"}).start()
    server_factory("worker", "--concurrency", "2", env=env).start(wait=False)

    logged, streamed, results = _streamed_run(api, "openai")

    _check(logged, streamed, results)


AGENT_FLOW = """
name: ask_agent
steps:
  - id: draft
    uses: llm.agent
    with:
      provider: openai
      prompt: "{{ input.question }}"
      tools: [notion.search_pages]
      stream: true
output: "{{ steps.draft.output }}"
"""


def test_an_agents_streamed_turns_show_before_the_step_completes(
    providers: tuple[FakeOpenAI, FakeOpenAI], server_factory: type[Server], tmp_path: Path
) -> None:
    openai = providers[0]
    openai.reset()
    openai.reply(
        Reply("", tool_calls=[{"name": "notion__search_pages", "arguments": {"query": "parcel"}}],
              delay=1.5),
        Reply(ANSWER, stream_pause=0.1),
    )  # fmt: skip
    env = _environment(tmp_path, providers)
    (Path(env["WORKFLOWS_DIR"]) / "ask_agent.yaml").write_text(AGENT_FLOW)
    server = server_factory(env=env).start()

    logged, streamed, results = _streamed_run(server, "agent")

    _check(logged, streamed, results)
    assert [call["tool"] for call in results["output"]["tool_calls"]] == ["search_pages"]
    assert all(request["stream"] is True for request in openai.requests)
