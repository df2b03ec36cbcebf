"""The `workflow-engine` command. A bare `workflow-engine` serves (the seed's Docker CMD)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from typing import Annotated, NoReturn

import structlog
import typer

from workflow_engine.config import (
    ConfigError,
    Settings,
    development_jwt_secret,
    effective_settings,
    load_settings,
)
from workflow_engine.observability.logging import configure_logging
from workflow_engine.version import __version__

EXIT_CONFIG = 2

app = typer.Typer(
    name="workflow-engine",
    help="A REST API server that runs AI workflows durably.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
logger = structlog.get_logger("workflow_engine.cli")


def _fail(lines: list[str], status: int = EXIT_CONFIG) -> NoReturn:
    for line in lines:
        typer.echo(f"workflow-engine: {line}", err=True)
    raise typer.Exit(status)


def _settings(**overrides: object) -> Settings:
    """Load settings; command-line options act as environment variables (highest precedence).

    They are written to the process environment so that worker processes forked later see them.
    """
    for name, value in overrides.items():
        if value is not None:
            os.environ[name.upper()] = str(value)
    try:
        settings, _ = load_settings()
    except ConfigError as exc:
        _fail([f"invalid configuration: {problem}" for problem in exc.problems])
    configure_logging(settings.log_level, settings.effective_log_format)
    _check_extras(settings)
    return settings


def _check_extras(settings: Settings) -> None:
    """A setting that needs an extra that is missing: one line, not a crash (DESIGN trap 14)."""
    if not settings.is_sqlite and importlib.util.find_spec("asyncpg") is None:
        _fail(
            [
                "DATABASE_URL is PostgreSQL but its driver is missing: "
                "install the `database` extra (pip install '.[database]')"
            ]
        )
    if settings.tracing_enabled and importlib.util.find_spec("opentelemetry.sdk") is None:
        logger.info("tracing is off: TRACING_ENABLED needs the `monitoring` extra installed")


def _require_database(settings: Settings) -> None:
    """Fail fast, in one line, when the database cannot be reached at all."""
    from workflow_engine.db import Database

    async def ping() -> None:
        db = Database(url, pool_size=1, connect_timeout=settings.db_connection_timeout)
        try:
            await db.ping(timeout=settings.db_connection_timeout)
        finally:
            await db.dispose()

    url = settings.effective_database_url
    try:
        asyncio.run(ping())
    except Exception as exc:
        _fail([f"cannot reach the database at {url.render_as_string()}: {_reason(exc)}"], 1)


def _migrate(settings: Settings) -> None:
    from workflow_engine.db.migrate import upgrade

    url = settings.effective_database_url
    try:
        upgrade(url)
    except Exception as exc:  # a database that is down or refuses us: say why, in one line
        _fail([f"migration failed on {url.render_as_string()}: {_reason(exc)}"], status=1)


def _reason(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        serve(host=None, port=None, workers=1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (PORT).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes (PostgreSQL only).")
    ] = 1,
) -> None:
    """Run the API server until SIGTERM or SIGINT."""
    settings = _settings(host=host, port=port)
    if workers > 1 and settings.is_sqlite:
        _fail(
            [
                f"--workers {workers} needs PostgreSQL: SQLite allows one writing process. "
                "Set DATABASE_URL=postgresql://... or serve with --workers 1."
            ]
        )
    # One-time start-up work happens here, before any process forks (DESIGN trap 2).
    _require_database(settings)
    if settings.should_auto_migrate:
        _migrate(settings)
    if settings.jwt_secret is None:
        _, created = development_jwt_secret(settings.data_dir)
        logger.warning(
            "JWT_SECRET is not set: signing with a generated development secret",
            path=str(settings.data_dir / "jwt-secret"),
            created=created,
        )
    logger.info(
        "starting",
        version=__version__,
        url=f"http://{settings.host}:{settings.port}",
        database=settings.effective_database_url.render_as_string(),
        environment=settings.environment,
        workers=workers,
    )
    from workflow_engine import server

    if workers > 1:
        raise typer.Exit(server.serve_workers(settings, workers))
    from workflow_engine.app import create_app

    raise typer.Exit(server.serve(create_app(settings), settings))


@app.command()
def migrate() -> None:
    """Apply pending database migrations (safe to repeat)."""
    settings = _settings()
    _migrate(settings)
    typer.echo(f"database is up to date ({settings.effective_database_url.render_as_string()})")


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    shown = effective_settings(_settings())
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        typer.echo(f"{name.ljust(width)}  {value if value is not None else ''}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="workflow-engine")


if __name__ == "__main__":  # pragma: no cover
    main()
