"""What the benchmarks share: a real server (or worker) process, a login, a throwaway database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "Tiny-Latency-Probe-2026"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        # Only what a process needs: no setting leaks in from the caller's environment.
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "warning",
        "JWT_SECRET": "b" * 32,
        "BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # One principal does everything: lift the limits these benchmarks are not about.
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "RATE_LIMIT_BURST": "1000000",
        "RATE_LIMIT_TENANT_PER_MINUTE": "100000000",
        "RATE_LIMIT_TENANT_BURST": "1000000",
        "RATE_LIMIT_ENDPOINTS": "{}",
        **extra,
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def start(
    command: str, data_dir: Path, env: dict[str, str], name: str, *args: str
) -> subprocess.Popen[bytes]:
    binary = Path(sys.executable).parent / "workflow-engine"
    with (data_dir / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([str(binary), command, *args], env=env, stdout=log, stderr=log)


async def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"the server exited; its log: {log}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not become healthy")


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def admin_sql(base: str, sql: str) -> None:
    import asyncpg

    url = make_url(base)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        database=url.database or "postgres",
    )  # fmt: skip
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_postgres(base: str) -> Iterator[str]:
    name = f"we_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(False)
    finally:
        asyncio.run(admin_sql(base, f'DROP DATABASE "{name}" WITH (FORCE)'))
