"""The client's pure parts: reading server-sent events, resuming, typed errors from problem
documents, where the remote CLI connects, and what importing the client loads. Its work against
a server is tested in tests/e2e/test_client.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import typer

from tests.conftest import python_output
from workflow_engine.client import errors
from workflow_engine.client.sse import Decoder, Disconnected, Resumption, ServerSentEvent
from workflow_engine.events import sse_format
from workflow_engine.remote_cli import DEFAULT_URL, Remote, resolve


def _decode(raw: bytes) -> list[ServerSentEvent]:
    decoder = Decoder()
    # httpx's iter_lines splits on CR, LF and CRLF alike, as the standard says.
    lines = raw.decode().replace("\r\n", "\n").split("\n")
    return [m for line in lines if (m := decoder.feed(line)) is not None]


def test_the_decoder_reads_what_the_server_writes() -> None:
    raw = (
        sse_format.comment("ping")
        + sse_format.message('{"a": 1}', id="42.0", event="info")
        + sse_format.message("two\nlines")
        + sse_format.message('{"status": "completed"}', event="end")
    )
    assert _decode(raw) == [
        ServerSentEvent("info", '{"a": 1}', "42.0"),
        ServerSentEvent("message", "two\nlines"),
        ServerSentEvent("end", '{"status": "completed"}'),
    ]


def test_a_resumed_stream_asks_for_what_follows_the_last_id_received() -> None:
    resume = Resumption(reconnect_for=60)
    assert resume.headers() == {}
    resume.connected()
    resume.received(ServerSentEvent("info", "{}", "7.1"))
    resume.received(ServerSentEvent("delta", "{}"))  # no id: not a place to resume from
    assert resume.headers() == {"Last-Event-ID": "7.1"}
    assert resume.retry_after(Disconnected()) < resume.retry_after(Disconnected())  # backs off


def test_a_stream_never_opened_is_not_retried() -> None:
    with pytest.raises(errors.Unreachable):
        Resumption().retry_after(httpx.ConnectError("refused"))


def test_a_stream_gives_up_after_its_reconnect_time() -> None:
    resume = Resumption(reconnect_for=0)
    resume.connected()
    resume.retry_after(Disconnected())  # the first failure starts the clock
    with pytest.raises(errors.Unreachable):
        resume.retry_after(Disconnected())


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, errors.BadRequest), (401, errors.Unauthorized), (403, errors.Forbidden),
     (404, errors.NotFound), (409, errors.Conflict), (413, errors.BadRequest),
     (422, errors.InvalidRequest), (429, errors.RateLimited), (500, errors.ServerError),
     (503, errors.ServerError)],
)  # fmt: skip
def test_each_status_is_its_own_error(status: int, kind: type[errors.WorkflowEngineError]) -> None:
    problem = {"type": "urn:workflow-engine:problem:x", "title": "T", "status": status,
               "detail": "why", "errors": [{"loc": ["body"], "msg": "m", "type": "t"}]}  # fmt: skip
    error = errors.from_response(httpx.Response(status, json=problem))
    assert type(error) is kind
    assert isinstance(error, errors.WorkflowEngineError)
    assert (error.status, error.title, error.detail, error.type) == (
        status,
        "T",
        "why",
        problem["type"],
    )
    assert error.errors == problem["errors"]
    assert str(error) == "T: why"


def test_retry_after_comes_from_the_problem_or_the_header() -> None:
    body = {"title": "Too Many Requests", "detail": "slow down", "retry_after": 2.5}
    assert errors.from_response(httpx.Response(429, json=body)).retry_after == 2.5
    plain = httpx.Response(503, text="<html>down</html>", headers={"Retry-After": "7"})
    error = errors.from_response(plain)
    assert (type(error), error.retry_after, error.title) == (
        errors.ServerError, 7.0, "Service Unavailable",
    )  # fmt: skip


def _profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    directory = tmp_path / "workflow-engine"
    directory.mkdir()
    (directory / "profiles.toml").write_text(text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("URL", "API_KEY", "TOKEN", "EMAIL", "PASSWORD", "PROFILE"):
        monkeypatch.delenv(f"WORKFLOW_ENGINE_{name}", raising=False)


def test_the_cli_connects_as_the_command_line_then_the_environment_then_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _profiles(tmp_path, monkeypatch, '[default]\nurl = "http://a:1"\napi_key = "wek_a"\n'
              '[b]\nurl = "http://b:2"\nemail = "b@example.com"\npassword = "pw"\n')  # fmt: skip
    assert resolve(None, None) == Remote("http://a:1", api_key="wek_a")
    assert resolve(None, "b") == Remote("http://b:2", email="b@example.com", password="pw")
    monkeypatch.setenv("WORKFLOW_ENGINE_PROFILE", "b")
    assert resolve("http://c:3", None).url == "http://c:3"
    monkeypatch.setenv("WORKFLOW_ENGINE_URL", "http://env:4")
    monkeypatch.setenv("WORKFLOW_ENGINE_TOKEN", "t")
    # A credential from the environment replaces the profile's whole, never mixes with it.
    assert resolve(None, None) == Remote("http://env:4", token="t")


def test_the_cli_defaults_to_a_local_server_and_refuses_unknown_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _profiles(tmp_path, monkeypatch, '[x]\nurl = "http://x:1"\nsecret = "s"\n')
    assert resolve(None, None) == Remote(DEFAULT_URL)
    with pytest.raises(typer.Exit) as unknown_key:
        resolve(None, "x")
    with pytest.raises(typer.Exit) as missing:
        resolve(None, "nope")
    assert unknown_key.value.exit_code == missing.value.exit_code == 2


def test_importing_the_client_loads_no_server_code() -> None:
    server_side = ["fastapi", "starlette", "sqlalchemy", "workflow_engine.app",
                   "workflow_engine.engine.runs", "typer"]  # fmt: skip
    script = (
        "import sys, json\n"
        "import workflow_engine.client\n"
        f"print(json.dumps([m for m in {server_side!r} if m in sys.modules]))\n"
    )
    assert json.loads(python_output(script)) == []
