"""The installed command: serving, configuration errors, shutdown, PostgreSQL, several workers."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.conftest import Server, free_port, run_cli

pytestmark = pytest.mark.e2e


def test_bare_command_serves_health_on_the_embedded_default(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory().start()
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    detailed = httpx.get(f"{server.url}/health/detailed").json()
    services = {s["name"]: s for s in detailed["services"]}
    assert services["database"]["data"]["backend"] == "sqlite"
    assert services["migrations"]["status"] == "ok"
    assert (tmp_path / "data" / "workflow-engine.db").exists()
    # Package data shipped in the wheel: the Swagger UI assets.
    assert httpx.get(f"{server.url}/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert server.stop() == 0


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(server_factory: type[Server]) -> None:
    """With no `TRUSTED_PROXIES`, a local peer claiming other addresses is still one client
    to the rate limiter: the second request shares the first one's bucket of one."""
    limits = {"RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": "1", "RATE_LIMIT_ENDPOINTS": "{}"}
    server = server_factory(env=limits).start()
    claims = [{"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}]
    answers = [httpx.get(f"{server.url}/api/v1/workflows", headers=claim) for claim in claims]
    assert [answer.status_code for answer in answers] == [401, 429]
    assert server.stop() == 0


def test_no_arguments_means_serve(installed_bin: Path, tmp_path: Path) -> None:
    server = Server(
        [str(installed_bin / "workflow-engine")], cwd=tmp_path, env={"DATA_DIR": str(tmp_path)}
    )
    server.start()
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert server.stop() == 0


def test_the_wheel_ships_the_typing_marker(installed_bin: Path) -> None:
    # PEP 561: without py.typed, type checkers ignore the annotations of embedders' imports.
    check = "from importlib.resources import files; print(files('workflow_engine') / 'py.typed')"
    found = subprocess.run(
        [str(installed_bin / "python"), "-c", check], capture_output=True, text=True, check=True
    )
    marker = Path(found.stdout.strip())
    assert marker.is_file()
    assert "site-packages" in marker.parts  # the installed wheel's, not the source tree's


def test_logs_are_json_lines_with_one_access_line_per_request(
    server_factory: type[Server],
) -> None:
    server = server_factory(env={"LOG_FORMAT": "json"}).start()
    httpx.get(f"{server.url}/health?token=s3cret", headers={"X-Correlation-ID": "trace-me-1"})
    assert server.stop() == 0
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    [access] = [
        line
        for line in lines
        if line.get("event") == "request" and line.get("correlation_id") == "trace-me-1"
    ]
    assert access["route"] == "/health"
    assert access["status"] == 200
    assert access["method"] == "GET"
    assert "duration_ms" in access
    assert "s3cret" not in server.output()


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({"PORT": "eighty"}, None, r"PORT='eighty': Input should be a valid integer"),
        ({"DATABASE_URL": "mysql://h/db"}, None, r"DATABASE_URL='mysql://h/db': unsupported"),
        ({}, "[server]\nport = 0\n", r"config.toml \[server\] port=0: Input should be greater"),
        ({}, "[server\n", r"config.toml: not valid TOML"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(
    installed_bin: Path, tmp_path: Path, env: dict[str, str], config: str | None, expected: str
) -> None:
    if config is not None:
        (tmp_path / "config.toml").write_text(config)
    result = run_cli(installed_bin, "serve", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_database_is_waited_for_then_one_line_and_exit_1(
    installed_bin: Path, tmp_path: Path
) -> None:
    closed = f"postgresql://postgres:pw-secret@127.0.0.1:{free_port()}/nothing"
    env = {"DATABASE_URL": closed, "DB_CONNECTION_TIMEOUT": "3", "LOG_FORMAT": "json"}
    result = run_cli(installed_bin, "serve", cwd=tmp_path, env=env)
    assert result.returncode == 1
    # It waited (a process restarted during an outage starts once the database is back) ...
    assert '"event": "waiting for the database"' in result.stdout + result.stderr
    # ... then gave up in one line, without the password.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert "cannot reach the database at postgresql+asyncpg://postgres:***@127.0.0.1" in lines[0]
    assert "pw-secret" not in result.stderr + result.stdout


def test_several_workers_are_refused_on_sqlite(installed_bin: Path, tmp_path: Path) -> None:
    env = {"RATE_LIMIT_STORAGE_URL": "redis://127.0.0.1:1/0"}
    result = run_cli(installed_bin, "serve", "--workers", "2", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr


def test_several_workers_are_refused_with_in_memory_rate_limits(
    installed_bin: Path, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/never"}
    result = run_cli(installed_bin, "serve", "--workers", "3", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "RATE_LIMIT_STORAGE_URL=memory:// would give each process its own limits" in (
        result.stderr
    )


def test_config_show_masks_secrets_and_version_prints(installed_bin: Path, tmp_path: Path) -> None:
    env = {"JWT_SECRET": "a-very-secret-value", "DATABASE_URL": "postgresql://u:pw-123@h/db"}
    shown = run_cli(installed_bin, "config", "show", "--json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["JWT_SECRET"] == "**********"
    assert settings["DATABASE_URL"] == "postgresql+asyncpg://u:***@h/db"
    assert "a-very-secret-value" not in shown.stdout + shown.stderr
    assert "pw-123" not in shown.stdout + shown.stderr
    version = run_cli(installed_bin, "version", cwd=tmp_path)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", version.stdout)
    as_module = subprocess.run(
        [str(installed_bin / "python"), "-m", "workflow_engine", "version"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert as_module.stdout == version.stdout


def test_sigterm_lets_a_slow_request_finish_then_exits_0(server_factory: type[Server]) -> None:
    """The body of a login trickles in; SIGTERM arrives half way; the login still completes."""
    server = server_factory().start()
    body = b'{"email": "nobody@example.com", "password": "' + b"p" * 900 + b'"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:100]
        )
        time.sleep(0.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        for start in range(100, len(body), 200):  # the rest trickles in after the signal
            time.sleep(0.2)
            conn.sendall(body[start : start + 200])
        response = b""
        while not response.rstrip().endswith(b"}"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 401"), response
    assert b"invalid email or password" in response
    assert server.process.wait(30) == 0, server.output()
    with pytest.raises(httpx.TransportError):  # no longer accepting
        httpx.get(f"{server.url}/health", timeout=1)


def test_client_mistakes_get_problems_from_the_real_server(server_factory: type[Server]) -> None:
    server = server_factory(env={"MAX_BODY_BYTES": "4096"}).start()
    login = f"{server.url}/api/v1/auth/login"
    cases = [
        (httpx.post(login, content=b'{"email": ', headers={"content-type": "application/json"}),
         400),
        (httpx.post(login, content=b"email=a", headers={"content-type": "text/plain"}), 415),
        (httpx.post(login, content=b"x" * 5000, headers={"content-type": "application/json"}),
         413),
        (httpx.post(login, json={"email": 5}), 422),
        (httpx.get(f"{server.url}/nowhere"), 404),
        (httpx.put(f"{server.url}/health"), 405),
        (httpx.get(f"{server.url}/api/v1/auth/me"), 401),
    ]  # fmt: skip
    for response, status in cases:
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["correlation_id"] == response.headers["x-correlation-id"]
    assert server.stop() == 0


def test_migrate_command_is_idempotent(installed_bin: Path, tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    first = run_cli(installed_bin, "migrate", cwd=tmp_path, env=env)
    second = run_cli(installed_bin, "migrate", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "database is up to date" in second.stdout


def test_production_without_auto_migrate_reports_pending_migrations(
    server_factory: type[Server],
) -> None:
    server = server_factory(
        env={"ENVIRONMENT": "production", "JWT_SECRET": "p" * 40, "CORS_ORIGINS": ""}
    ).start()
    detailed = httpx.get(f"{server.url}/health/detailed")
    assert detailed.status_code == 503
    body = detailed.json()
    assert "migrations" in body["failing"]
    migrations = {s["name"]: s for s in body["services"]}["migrations"]
    assert "run `workflow-engine migrate`" in migrations["detail"]
    assert server.stop() == 0


def test_postgresql_url_as_in_the_seed_migrates_and_serves_with_workers(
    server_factory: type[Server], fresh_postgres_url: str, redis_server: RedisServer
) -> None:
    url = fresh_postgres_url
    assert url.startswith("postgresql://")
    env = {"DATABASE_URL": url, "RATE_LIMIT_STORAGE_URL": redis_server.url}
    server = server_factory("serve", "--workers", "2", env=env).start()
    detailed = httpx.get(f"{server.url}/health/detailed")
    assert detailed.status_code == 200, detailed.text
    services = {s["name"]: s for s in detailed.json()["services"]}
    assert services["database"]["data"]["backend"] == "postgresql"
    assert services["migrations"]["status"] == "ok"
    assert server.stop() == 0, server.output()


def test_broken_workflow_definitions_stop_serve_with_one_line_each(
    installed_bin: Path, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "a.yaml").write_text(
        "name: a\nsteps:\n  - id: one\n    uses: crm.lookup\n"
        "  - id: two\n    uses: transform\n    needs: [ghost]\n"
    )
    result = run_cli(installed_bin, "serve", cwd=tmp_path, env={"WORKFLOWS_DIR": str(flows)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].endswith("a.yaml: step 'one': uses: unknown node type 'crm.lookup'")
    assert lines[1].endswith("a.yaml: step 'two': needs: unknown step 'ghost'")
    assert "Traceback" not in result.stderr + result.stdout


def test_a_node_module_that_does_not_import_stops_serve(
    installed_bin: Path, tmp_path: Path
) -> None:
    result = run_cli(installed_bin, "serve", cwd=tmp_path, env={"NODE_MODULES": "acme.missing"})
    assert result.returncode == 2
    assert "NODE_MODULES: cannot import 'acme.missing'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_failed_migration_stops_serve_with_one_line_and_exit_1(
    installed_bin: Path, tmp_path: Path
) -> None:
    # A schema stamped with a revision this release does not know: the upgrade cannot start.
    data = tmp_path / "data"
    data.mkdir()
    with contextlib.closing(sqlite3.connect(data / "workflow-engine.db")) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('9999')")
        db.commit()
    result = run_cli(installed_bin, "serve", cwd=tmp_path, env={"DATA_DIR": str(data)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("workflow-engine: migration failed on sqlite+aiosqlite:///")
    assert "'9999'" in lines[0]
