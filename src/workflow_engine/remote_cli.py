"""`workflow-engine runs ...` and `workflow-engine templates ...`: a server's API from the
command line, through `workflow_engine.client`.

Where to connect and as whom, first found wins: `--server`, then the environment
(`WORKFLOW_ENGINE_URL`; `WORKFLOW_ENGINE_API_KEY`, `WORKFLOW_ENGINE_TOKEN`, or
`WORKFLOW_ENGINE_EMAIL` with `WORKFLOW_ENGINE_PASSWORD`), then a profile of
`~/.config/workflow-engine/profiles.toml` (`--profile`, `WORKFLOW_ENGINE_PROFILE`, else
`default`). `cli.py` imports this module at start, so it imports only the standard library and
Typer there; the client (httpx, the response models) is imported when a command runs, so that
`serve` never loads it.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel

    from workflow_engine.client import Client

DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_USAGE = 2  # as the CLI's configuration errors
PROFILE_KEYS = {"url", "api_key", "token", "email", "password"}

runs_app = typer.Typer(help="Trigger and follow runs on a server (see `--server`).",
                       no_args_is_help=True)  # fmt: skip
templates_app = typer.Typer(help="The workflows a server can run.", no_args_is_help=True)


class Output(StrEnum):
    text = "text"
    json = "json"


Server = Annotated[
    str | None,
    typer.Option("--server", help="The server's URL (WORKFLOW_ENGINE_URL, or the profile's)."),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="A section of ~/.config/workflow-engine/profiles.toml (WORKFLOW_ENGINE_PROFILE).",
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="text, or json (valid JSON on stdout).")
]


def _fail(message: str, status: int = 1) -> NoReturn:
    typer.echo(f"workflow-engine: {message}", err=True)
    raise typer.Exit(status)


@dataclass(frozen=True)
class Remote:
    url: str
    api_key: str | None = None
    token: str | None = None
    email: str | None = None
    password: str | None = None


def profiles_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "workflow-engine" / "profiles.toml"


def _profile(name: str | None) -> dict[str, str]:
    path = profiles_file()
    chosen = name or os.environ.get("WORKFLOW_ENGINE_PROFILE")
    if not path.exists():
        if chosen:
            _fail(f"no profile {chosen!r}: {path} does not exist", EXIT_USAGE)
        return {}
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _fail(f"{path}: {exc}", EXIT_USAGE)
    section = profiles.get(chosen or "default")
    if section is None:
        if chosen:
            _fail(f"no profile {chosen!r} in {path}", EXIT_USAGE)
        return {}
    if not isinstance(section, dict):
        _fail(f"{path}: [{chosen}] must be a table", EXIT_USAGE)
    unknown = set(section) - PROFILE_KEYS
    if unknown:
        _fail(f"{path}: unknown keys {sorted(unknown)}; use {sorted(PROFILE_KEYS)}", EXIT_USAGE)
    return {key: str(value) for key, value in section.items()}


def resolve(server: str | None, profile: str | None) -> Remote:
    """The server and credential to use: the command line, the environment, the profile."""
    env = os.environ.get
    from_env = {
        "api_key": env("WORKFLOW_ENGINE_API_KEY"),
        "token": env("WORKFLOW_ENGINE_TOKEN"),
        "email": env("WORKFLOW_ENGINE_EMAIL"),
        "password": env("WORKFLOW_ENGINE_PASSWORD"),
    }
    section = _profile(profile)
    url = server or env("WORKFLOW_ENGINE_URL") or section.get("url") or DEFAULT_URL
    # One credential, whole: an API key from the environment never mixes with a profile's login.
    credential = {k: v for k, v in from_env.items() if v}
    if not credential:
        credential = {k: v for k, v in section.items() if k != "url" and v}
    if len(credential) == 1 and ("email" in credential or "password" in credential):
        _fail("a login needs both WORKFLOW_ENGINE_EMAIL and WORKFLOW_ENGINE_PASSWORD", EXIT_USAGE)
    return Remote(url=url, **credential)


@contextmanager
def _client(server: str | None, profile: str | None) -> Iterator[Client]:
    """A client of the chosen server; any error of the API ends the command: its title and
    detail on stderr, exit status 1."""
    from workflow_engine.client import Client, WorkflowEngineError

    remote = resolve(server, profile)
    try:
        client = Client(
            remote.url, api_key=remote.api_key, token=remote.token, email=remote.email,
            password=remote.password,
        )  # fmt: skip
    except ValueError as exc:  # two credentials at once
        _fail(str(exc), EXIT_USAGE)
    try:
        with client:
            yield client
    except WorkflowEngineError as exc:
        _fail(str(exc))


def _json(value: BaseModel | list[Any] | dict[str, Any]) -> str:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2, by_alias=True)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _data(value: str) -> dict[str, Any]:
    """`--data`: JSON text, `@file.json`, or `@-` for standard input; an object."""
    try:
        if value.startswith("@"):
            source = value[1:]
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        else:
            text = value
        data = json.loads(text)
    except OSError as exc:
        _fail(f"--data: cannot read {value[1:]}: {exc.strerror}", EXIT_USAGE)
    except ValueError as exc:
        _fail(f"--data is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(data, dict):
        _fail("--data must be a JSON object (the workflow's input)", EXIT_USAGE)
    return data


@runs_app.command("trigger")
def runs_trigger(
    name: Annotated[str, typer.Argument(help="The workflow to run.")],
    data: Annotated[
        str, typer.Option(help="Input: JSON, @file.json, or @- for standard input.")
    ] = "{}",
    wait: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds to wait for the run to end (the server's ?wait)."),
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Latest when absent.")] = None,
    priority: Annotated[int | None, typer.Option(min=-100, max=100)] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Repeat-safe trigger.")] = None,
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """Start a run. With --wait, print its outcome once it ends; exits 1 when it failed or was
    cancelled within the wait."""
    body = _data(data)
    with _client(server, profile) as client:
        run = client.trigger(name, body, wait=wait, version=version, priority=priority,
                             idempotency_key=idempotency_key)  # fmt: skip
    if output is Output.json:
        typer.echo(_json(run))
    else:
        typer.echo(f"{run.workflow_id} {run.workflow_name} v{run.version} {run.status}")
        outcome = getattr(run, "output", None) or getattr(run, "error", None)
        if outcome is not None:
            typer.echo(_json(outcome))
    if run.status in ("failed", "cancelled"):
        raise typer.Exit(1)


@runs_app.command("status")
def runs_status(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """A run's status and its steps."""
    with _client(server, profile) as client:
        found = client.status(run_id)
    if output is Output.json:
        typer.echo(_json(found))
        return
    progress = f"{found.progress.completed}/{found.progress.total}"
    typer.echo(f"{found.workflow_id} {found.workflow_name} v{found.version} {found.status} "
               f"({progress} steps)")  # fmt: skip
    for step in found.steps:
        typer.echo(f"  {step.id:<24} {step.status:<10} attempts={step.attempts}")
    if found.error is not None:
        typer.echo(_json(found.error))


@runs_app.command("results")
def runs_results(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """A finished run's output (or error); exits 1 while it has not finished."""
    with _client(server, profile) as client:
        found = client.results(run_id)
    if output is Output.json:
        typer.echo(_json(found))
    else:
        typer.echo(f"{found.workflow_id} {found.status}")
        typer.echo(_json(found.output if found.status == "completed" else found.error))


@runs_app.command("logs")
def runs_logs(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on until the run ends (resumes on its own).")
    ] = False,
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """A run's log entries, oldest first. With --output json, one JSON array, written entry by
    entry as they come (closed when the run ends, or on Ctrl-C)."""
    with _client(server, profile) as client:
        entries = client.logs(run_id, follow=follow)
        if output is Output.text:
            for entry in entries:
                step = f" [{entry.step}]" if entry.step else ""
                typer.echo(f"{entry.time.isoformat()} {entry.level:<7}{step} {entry.message}")
            return
        separator = "[\n"
        try:
            for entry in entries:
                typer.echo(separator + entry.model_dump_json(), nl=False)
                separator = ",\n"
        finally:
            typer.echo("[]" if separator == "[\n" else "\n]")


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """Cancel a run: steps not started never start, running ones are interrupted."""
    with _client(server, profile) as client:
        summary = client.cancel(run_id)
    if output is Output.json:
        typer.echo(_json(summary))
    else:
        typer.echo(f"{summary.workflow_id} {summary.workflow_name} {summary.status}")


@templates_app.command("list")
def templates_list(
    server: Server = None,
    profile: Profile = None,
    output: OutputOption = Output.text,
) -> None:
    """The workflows the server can run (latest version of each)."""
    with _client(server, profile) as client:
        found = client.templates()
    if output is Output.json:
        typer.echo(_json([template.model_dump(mode="json", by_alias=True) for template in found]))
        return
    for template in found:
        summary = template.description.split(". ")[0].strip().rstrip(".")
        if len(summary) > 72:
            summary = summary[:71] + "…"
        typer.echo(f"{template.name:<24} v{template.version:<4} {summary}")
