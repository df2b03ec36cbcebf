"""Fixtures shared by every layer: databases (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from workflow_engine.bootstrap.read_models import register_read_models
from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade

IN_CI = os.environ.get("CI") == "true"
_ROOT = Path(__file__).resolve().parents[1]

# What every process that appends events does where it is built (the app, the worker, the CLI).
register_read_models()


def require_postgres() -> str:
    """TEST_POSTGRES_URL, or skip — but fail under CI, where PostgreSQL must be tested."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    if IN_CI:
        pytest.fail("CI=true but TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
    pytest.skip("TEST_POSTGRES_URL is not set")


async def _admin(url: URL):  # type: ignore[no-untyped-def]
    import asyncpg

    return await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
        timeout=10,
    )


async def create_database(base_url: str) -> str:
    """A new, empty database on the server of `base_url`; returns its URL."""
    base = make_url(base_url)
    name = f"we_e2e_{uuid.uuid4().hex[:10]}"
    admin = await _admin(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    target = make_url(url)
    admin = await _admin(target.set(database="postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def own_database(backend_url: str, directory: Path) -> AsyncIterator[str]:
    """A migrated database for an app of a test's own, on the module's backend. Not the
    session's PostgreSQL database: every server process on one database must be configured
    alike (their workers run each other's steps), and such an app is configured otherwise."""
    if backend_url.startswith("postgresql"):
        url = await create_database(backend_url)
    else:
        url = f"sqlite:///{directory / 'own.db'}"
    try:
        await asyncio.to_thread(upgrade, to_async_url(url))
        yield url
    finally:
        if backend_url.startswith("postgresql"):
            await drop_database(url)


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own for one (process-level) test; dropped after."""
    url = asyncio.run(create_database(require_postgres()))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    base = make_url(require_postgres())
    name = f"we_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = await _admin(base)
    except (TimeoutError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at {base.render_as_string()} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = base.set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, to_async_url(url))
    yield url
    admin = await _admin(base)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: a new SQLite file per test, or the session's PostgreSQL database.

    Tests on PostgreSQL share one database, so each uses its own tenant id.
    """
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade(to_async_url(url))  # no event loop runs in a sync fixture: Alembic may start one
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(to_async_url(database_url), pool_size=5, pool_timeout=10)
    yield db
    await db.dispose()


@pytest.fixture
async def postgres_database(postgres_url: str) -> AsyncIterator[Database]:
    """For behaviour that exists only on PostgreSQL (concurrent writers)."""
    db = Database(to_async_url(postgres_url), pool_size=5, pool_timeout=10)
    yield db
    await db.dispose()


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port, keeping nothing on disk."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("redis-server is not installed: the Redis tests must run in CI")
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = RedisServer(port)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tenant_id() -> uuid.UUID:
    return uuid.uuid4()


def python_output(script: str, env: dict[str, str] | None = None) -> str:
    """What `script` prints when run by a fresh interpreter (for what happens at import, or
    in a process of its own); a failure shows its stderr."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- the installed command (e2e and chaos suites) ---------------------------------------


def _uv() -> str:
    beside_python = Path(sys.executable).parent / "uv"
    found = str(beside_python) if beside_python.exists() else shutil.which("uv")
    if not found:
        pytest.fail(
            "uv is needed to build the wheel: run the tests with `python3 scripts/dev.py test`"
        )
    return found


@pytest.fixture(scope="session")
def installed_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the wheel and the locked dependencies; returns its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    run = lambda *args: subprocess.run(args, cwd=_ROOT, env=env, check=True, capture_output=True)  # noqa: E731
    run(uv, "build", "--wheel", "--out-dir", str(work / "dist"))
    [wheel] = (work / "dist").glob("*.whl")
    requirements = work / "requirements.txt"
    run(
        uv, "export", "--frozen", "--no-dev", "--all-extras", "--no-emit-project",
        "--no-hashes", "--quiet", "-o", str(requirements),
    )  # fmt: skip
    venv = work / "venv"
    run(uv, "venv", "--quiet", "--python", sys.executable, str(venv))
    run(uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
        "-r", str(requirements), str(wheel))  # fmt: skip
    return venv / "bin"
