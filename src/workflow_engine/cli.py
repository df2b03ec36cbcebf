"""The `workflow-engine` command. A bare `workflow-engine` serves (the seed's Docker CMD)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import structlog
import typer
from sqlalchemy.exc import DBAPIError

from workflow_engine import remote_cli
from workflow_engine.auth.permissions import Role
from workflow_engine.config import (
    ConfigError,
    Settings,
    development_jwt_secret,
    effective_settings,
    load_settings,
)
from workflow_engine.errors import NotFound, WorkflowEngineError
from workflow_engine.observability.logging import configure_logging
from workflow_engine.version import __version__

if TYPE_CHECKING:
    from workflow_engine.auth.api_keys import ApiKey
    from workflow_engine.auth.passwords import Passwords
    from workflow_engine.db import Database
    from workflow_engine.engine.catalog import DefinitionCatalog
    from workflow_engine.events.projections import ReplayResult

# The server's modules are imported by the commands that use them, so that `--help` and
# `version` answer at once.
EXIT_CONFIG = 2
DEFAULT_TENANT = "default"  # as auth.accounts names it; checked by a unit test
T = TypeVar("T")

app = typer.Typer(
    name="workflow-engine",
    help="A REST API server that runs AI workflows durably.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
tenants_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(users_app, name="users")
api_keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(api_keys_app, name="api-keys")
events_app = typer.Typer(help="Work with the event log and its read models.", no_args_is_help=True)
app.add_typer(events_app, name="events")
# A server's API from the command line. The module imports Typer only; the client (httpx, the
# response models) is imported when one of its commands runs, never by `serve`.
app.add_typer(remote_cli.runs_app, name="runs")
app.add_typer(remote_cli.templates_app, name="templates")
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
    """A setting that needs an extra that is missing: one line, not a crash or a retry loop
    (pitfall 14 in docs/architecture.md)."""
    if not settings.is_sqlite and importlib.util.find_spec("asyncpg") is None:
        _fail(
            [
                "DATABASE_URL is PostgreSQL but its driver is missing: "
                "install the `database` extra (pip install '.[database]')"
            ]
        )
    if settings.rate_limit_storage_url != "memory://" and importlib.util.find_spec("redis") is None:
        _fail(
            [
                "RATE_LIMIT_STORAGE_URL is Redis but its client is missing: "
                "install the `redis` extra (pip install '.[redis]')"
            ]
        )
    if settings.tracing_enabled and importlib.util.find_spec("opentelemetry.sdk") is None:
        logger.info("tracing is off: TRACING_ENABLED needs the `monitoring` extra installed")


def _check_workflows(settings: Settings) -> DefinitionCatalog:
    """Node modules and definitions, checked before serving: every problem, one line each."""
    from workflow_engine import nodes
    from workflow_engine.engine.catalog import build_catalog
    from workflow_engine.engine.definitions import InvalidDefinition

    try:
        return build_catalog(
            nodes.registry, node_modules=settings.node_modules, workflows_dir=settings.workflows_dir
        )
    except InvalidDefinition as exc:
        _fail([f"invalid workflow definition: {problem}" for problem in exc.problems])
    except ImportError as exc:
        _fail([str(exc)])


def _require_database(settings: Settings, *, check_migrated: bool = False) -> bool:
    """Wait up to `DB_CONNECTION_TIMEOUT` for the database (a process restarted during an
    outage starts once it is back, instead of failing straight away); then fail, in one line.
    A refusal that waiting cannot mend (a wrong password, an unknown database) fails at once.
    With `check_migrated`, also answer whether `migrate` would change nothing (False when
    unsure)."""
    from workflow_engine.db import Database
    from workflow_engine.db.availability import unreachable

    async def reach(db: Database) -> None:
        deadline = time.monotonic() + settings.db_connection_timeout
        while True:
            left = deadline - time.monotonic()
            try:
                await db.ping(timeout=max(left, 0.1))
                return
            except Exception as exc:
                if not unreachable(exc) or left <= 1:
                    raise
                logger.warning(
                    "waiting for the database", error=_reason(exc), seconds_left=int(left)
                )
                await asyncio.sleep(1)

    async def ping() -> bool:
        db = Database(url, pool_size=1, connect_timeout=settings.db_connection_timeout)
        try:
            await reach(db)
            if not check_migrated:
                return False
            from workflow_engine.bootstrap.schema_state import needs_no_migration

            try:
                async with asyncio.timeout(settings.db_connection_timeout):
                    return await needs_no_migration(db, settings.event_partitions)
            except Exception:  # unsure: migrating, as without the check, reports what is wrong
                return False
        finally:
            await db.dispose()

    url = settings.effective_database_url
    try:
        return asyncio.run(ping())
    except Exception as exc:
        _fail([f"cannot reach the database at {url.render_as_string()}: {_reason(exc)}"], 1)


def _passwords(settings: Settings) -> Passwords:
    from workflow_engine.auth.passwords import HashParameters, Passwords

    return Passwords(
        HashParameters(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
    )


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` against the database; a domain error becomes one line and exit 1. The
    built-in read models are registered first: an administrative command appends events
    (a tenant created, a user deactivated) as the server does."""
    from workflow_engine.bootstrap.read_models import register_read_models
    from workflow_engine.db import Database

    register_read_models()

    async def run() -> T:
        db = Database(settings.effective_database_url, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except WorkflowEngineError as exc:
        _fail([exc.detail], status=1)


def _administer(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """An administrative command's database work: the database reachable and migrated first
    (as `serve` does, unless AUTO_MIGRATE=false), every failure one line."""
    _require_database(settings)
    if settings.should_auto_migrate:
        _migrate(settings)
    try:
        return _with_database(settings, work)
    except DBAPIError as exc:
        _fail(
            [f"database error: {_reason(exc)} (is it migrated? `workflow-engine migrate`)"],
            status=1,
        )


def _bootstrap_admin(settings: Settings) -> None:
    from workflow_engine.auth.accounts import bootstrap_admin

    email = settings.bootstrap_admin_email
    secret = settings.bootstrap_admin_password
    password = secret.get_secret_value() if secret else None
    if email is None and settings.is_production:
        return  # production never invents credentials; `users create` makes the first admin
    try:
        created = _with_database(
            settings,
            lambda db: bootstrap_admin(db, _passwords(settings), email=email, password=password),
        )
    except DBAPIError as exc:  # the schema is not migrated (AUTO_MIGRATE=false)
        logger.warning("no first admin created: the database is not ready", reason=_reason(exc))
        return
    if created is None:
        return
    user, generated = created
    logger.info("created the first admin", email=user.email, tenant=DEFAULT_TENANT)
    if generated:
        # Straight to the console, never through logging: log files must not hold it.
        typer.echo(
            "\n  First start: created tenant 'default' and its admin.\n"
            f"    email:    {user.email}\n"
            f"    password: {generated}\n"
            "  This password is shown once. Set BOOTSTRAP_ADMIN_EMAIL and\n"
            "  BOOTSTRAP_ADMIN_PASSWORD to choose your own.\n"
        )


def _migrate(settings: Settings) -> None:
    from workflow_engine.db.migrate import upgrade

    url = settings.effective_database_url
    try:
        upgrade(url, event_partitions=settings.event_partitions)
    except Exception as exc:  # a database that is down or refuses us: say why, in one line
        _fail([f"migration failed on {url.render_as_string()}: {_reason(exc)}"], status=1)


def _in_child(work: Callable[[], None], meanwhile: Callable[[], object] | None = None) -> None:
    """One-time start-up `work` (migrating, creating the first admin) for a process that goes
    on to serve or work: done in a forked child, so that what it loads and allocates — Alembic
    (about 8 MB), the common-password list (about 11 MB), argon2's 64 MiB for the admin's
    hash — never stays in the long-lived process. The child prints a failure itself, in one
    line; its exit status becomes this process's. `meanwhile` runs in this process while the
    child works (on another core), and is wasted if the child fails."""
    if sys.platform != "linux" or threading.active_count() > 1:
        # fork() copies only this thread (another's locks would stay held in the child), and
        # is unsafe on macOS once some system libraries are loaded.
        work()
        if meanwhile is not None:
            meanwhile()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: it must never return into the CLI
        status = 1
        try:
            work()
            status = 0
        except typer.Exit as exc:
            status = exc.exit_code
        except KeyboardInterrupt:
            status = 130
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)  # not `exit`: the parent's atexit handlers are not the child's
    try:
        if meanwhile is not None:
            meanwhile()
    finally:
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status != 0:
        raise typer.Exit(status if status > 0 else 1)  # killed by a signal: -signum


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
    if workers > 1 and settings.rate_limit_storage_url == "memory://":
        _fail(
            [
                f"--workers {workers} with RATE_LIMIT_STORAGE_URL=memory:// would give each "
                "process its own limits (the real limit would multiply); use redis://..."
            ]
        )
    if workers > 1 and settings.is_sqlite:
        _fail(
            [
                f"--workers {workers} needs PostgreSQL: SQLite allows one writing process. "
                "Set DATABASE_URL=postgresql://... or serve with --workers 1."
            ]
        )
    # One-time start-up work happens here, before any process forks: with --workers N each
    # process has its own memory, so what all must share is made once (pitfall 2 in
    # docs/architecture.md).
    if settings.jwt_algorithm != "HS256":
        from workflow_engine.auth.signing_keys import SigningKeyError
        from workflow_engine.bootstrap.core_services import signing_key

        try:
            signing_key(settings)
        except SigningKeyError as exc:
            _fail([f"invalid configuration: JWT_PRIVATE_KEY_FILE: {exc}"])
    _check_workflows(settings)
    _require_database(settings)

    def prepare() -> None:
        if settings.should_auto_migrate:
            _migrate(settings)
        _bootstrap_admin(settings)

    _in_child(prepare)
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
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Steps run at once (WORKER_CONCURRENCY).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve /metrics on this port (WORKER_METRICS_PORT)."),
    ] = None,
) -> None:
    """Run a standalone worker on the server's database until SIGTERM or SIGINT."""
    import gc

    # What start-up makes stays for the process's life: full collections during it walk it
    # again and again for nothing (0.1 s of a start on PostgreSQL). The worker turns them
    # back on once started, after freezing what start-up made.
    gc.disable()
    settings = _settings(worker_concurrency=concurrency, worker_metrics_port=metrics_port)
    catalog = _check_workflows(settings)  # imports NODE_MODULES: the node types it can run
    # A restart usually finds the schema current: then the child that imports Alembic to
    # find nothing to do is skipped (docs/benchmarks.md, "Worker start-up").
    migrated = _require_database(settings, check_migrated=settings.should_auto_migrate)
    if settings.should_auto_migrate and not migrated:
        # Migrating may happen here (not on Linux): its garbage must not be frozen with the rest.
        gc.enable()
        _in_child(
            lambda: _migrate(settings),
            meanwhile=lambda: importlib.import_module("workflow_engine.worker_process"),
        )
    from workflow_engine.worker_process import run_worker

    raise typer.Exit(asyncio.run(run_worker(settings, catalog)))


@app.command("demo-services")
def demo_services(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    stdio: Annotated[
        str | None, typer.Option(help="Serve this one (helpscout, notion, slack) over stdio.")
    ] = None,
) -> None:
    """Serve the demo HelpScout, Notion and Slack MCP servers on the seed's ports (8001, 8002,
    8003), at /mcp, until interrupted; their records live in DATA_DIR/demo."""
    settings = _settings()
    from workflow_engine.demo.services import PORTS, serve_standalone, servers

    if stdio is not None:
        if stdio not in PORTS:
            _fail([f"--stdio must be one of {', '.join(PORTS)}, not {stdio!r}"])
        servers(settings.data_dir)[stdio].run("stdio")
        return

    for name, port in PORTS.items():
        typer.echo(f"{name}: http://{host}:{port}/mcp (demo data)")
    # SIGTERM and SIGINT cancel the servers' task: requests finish, then the run ends.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(serve_standalone(settings.data_dir, host, PORTS, stop_on_signals=True))


@app.command()
def migrate() -> None:
    """Apply pending database migrations (safe to repeat)."""
    settings = _settings()
    _migrate(settings)
    typer.echo(f"database is up to date ({settings.effective_database_url.render_as_string()})")


@tenants_app.command("create")
def tenants_create(name: Annotated[str, typer.Argument(help="A unique tenant name.")]) -> None:
    """Create a tenant."""
    from workflow_engine.auth.accounts import create_tenant

    settings = _settings()
    tenant = _administer(settings, lambda db: create_tenant(db, name))
    typer.echo(f"created tenant {tenant.name} ({tenant.id})")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's email (unique).")],
    role: Annotated[Role, typer.Option(help="admin, operator, viewer or service.")],
    tenant: Annotated[str, typer.Option(help="Tenant name.")] = DEFAULT_TENANT,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    allow_weak_password: Annotated[
        bool,
        typer.Option(
            "--allow-weak-password",
            help="Accept a password the policy refuses (e.g. for a local demo).",
        ),
    ] = False,
) -> None:
    """Create a user. Prompts for the password unless --password-stdin is given."""
    from workflow_engine.auth.accounts import create_user

    settings = _settings()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        _fail(["no terminal to prompt for the password: pipe it with --password-stdin"])
    if not password:
        _fail(["the password is empty"])
    user = _administer(
        settings,
        lambda db: create_user(
            db,
            _passwords(settings),
            tenant_name=tenant,
            email=email,
            password=password,
            role=role,
            allow_weak_password=allow_weak_password,
        ),
    )
    typer.echo(f"created {user.role} {user.email} in tenant {tenant} ({user.id})")


@api_keys_app.command("create")
def api_keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    role: Annotated[Role, typer.Option(help="admin, operator, viewer or service.")],
    name: Annotated[str, typer.Option(help="What the key is for, e.g. crm-sync.")],
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Expiry; never when absent.")
    ] = None,
) -> None:
    """Issue an API key and print it (the only time it is shown)."""
    from workflow_engine.auth.accounts import CLI_ORIGIN
    from workflow_engine.auth.api_keys import create_api_key
    from workflow_engine.auth.store import find_tenant

    settings = _settings()

    async def create(db: Database) -> tuple[ApiKey, str]:
        async with db.read() as conn:
            found = await find_tenant(conn, tenant)
        if found is None:
            raise NotFound(f"no tenant named {tenant!r}")
        expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
        return await create_api_key(
            db, tenant_id=found.id, name=name, role=role, expires_at=expires, actor="cli",
            origin=CLI_ORIGIN,
        )  # fmt: skip

    stored, key = _administer(settings, create)
    typer.echo(f"created {stored.role} API key {stored.name!r} ({stored.id}) in tenant {tenant}")
    typer.echo(key)


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


@events_app.command("replay")
def events_replay(
    projection: Annotated[
        str | None, typer.Option(help="Rebuild only this read model (default: all of them).")
    ] = None,
) -> None:
    """Rebuild read models from the event log. Readers keep the old model until each rebuild
    commits; appends of events it folds wait for it (so run it when writes are few). Events are
    read as stored: upcasters registered in Python (`create_app(upcasters=...)`) are not
    applied here; an embedder that has them calls `events.projections.replay` with them."""
    from workflow_engine.bootstrap.read_models import register_read_models
    from workflow_engine.events import projections
    from workflow_engine.events.projections import replay
    from workflow_engine.nodes.registry import load_node_types

    register_read_models(projections.registry)

    settings = _settings()
    # Projections registered by the server's NODE_MODULES are known here too.
    load_node_types(settings.node_modules)
    try:
        chosen = (
            list(projections.registry)
            if projection is None
            else [projections.registry.get(projection)]
        )
    except KeyError as exc:
        _fail([str(exc.args[0])])

    async def rebuild(db: Database) -> list[ReplayResult]:
        return [result for p in chosen if (result := await replay(db, p)) is not None]

    for result in _administer(settings, rebuild):
        typer.echo(
            f"rebuilt {result.projection}: {result.events_folded} events folded, "
            f"up to position {result.position}, in {result.seconds:.2f} s"
        )


@events_app.command("verify")
def events_verify(
    tenant: Annotated[
        str | None, typer.Option(help="Check only this tenant's events (default: the whole log).")
    ] = None,
) -> None:
    """Check the event log has not been edited: every event's hash chain, then every seal.
    Exits 0 when intact, 1 naming the first altered, inserted, deleted or reordered event."""
    from workflow_engine.auth.store import find_tenant
    from workflow_engine.events.integrity import Verification, verify_log

    async def verify(db: Database) -> Verification:
        async with db.read() as conn:
            tenant_id = None
            if tenant is not None:
                found = await find_tenant(conn, tenant)
                if found is None:
                    _fail([f"no tenant named {tenant!r}"], status=1)
                tenant_id = found.id
            return await verify_log(conn, tenant_id)

    report = _administer(_settings(), verify)
    checked = f"{report.events} events in {report.aggregates} aggregates, {report.seals} seals"
    first = report.first()
    if first is None:
        typer.echo(f"intact: {checked}")
        return
    lines = [f"tampered: {first}", f"{len(report.problems)} problems in {checked}:"]
    _fail([*lines, *(f"  {problem}" for problem in report.problems[:50])], status=1)


def main() -> None:
    app(prog_name="workflow-engine")


if __name__ == "__main__":  # pragma: no cover
    main()
