"""The seed's "Authenticate first", verbatim, against the installed server and CLI."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, clean_environment

pytestmark = pytest.mark.e2e


def test_seed_login_works_with_a_user_made_by_the_cli(
    installed_bin: Path, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(env={"LOG_FORMAT": "json"}).start()
    env = dict(clean_environment(), DATA_DIR=str(tmp_path / "data"))
    refused = subprocess.run(
        [str(installed_bin / "workflow-engine"), "users", "create", "--email",
         "user@example.com", "--role", "operator", "--password-stdin"],
        input="password\n", capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "the password must be at least 10 characters" in refused.stderr
    created = subprocess.run(
        [str(installed_bin / "workflow-engine"), "users", "create", "--email",
         "user@example.com", "--role", "operator", "--password-stdin", "--allow-weak-password"],
        input="password\n", capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "created operator user@example.com in tenant default" in created.stdout

    # The seed's curl, with jq's `.token`.
    login = httpx.post(
        f"{server.url}/api/v1/auth/login",
        headers={"Content-Type": "application/json"},
        content='{"email": "user@example.com", "password": "password"}',
    )
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    me = httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["email"] == "user@example.com"
    assert server.stop() == 0

    output = server.output()
    # The generated first-admin password is printed once, on the console only.
    match = re.search(r"password: (\S+)", output)
    assert match, output
    generated = match.group(1)
    log_lines = [line for line in output.splitlines() if line.startswith("{")]
    assert log_lines
    assert not any(generated in line for line in log_lines)
    assert not any(token in line for line in log_lines)
    assert any(json.loads(line).get("event") == "created the first admin" for line in log_lines)
    # The printed admin can log in.
    again = server_factory(env={"LOG_FORMAT": "json"}).start()
    admin = httpx.post(
        f"{again.url}/api/v1/auth/login",
        json={"email": "admin@example.com", "password": generated},
    )
    assert admin.status_code == 200
    assert admin.json()["user"]["role"] == "admin"
    assert "First start" not in (again.stop() == 0 and again.output())


def test_production_bootstrap_admin_from_the_environment(server_factory: type[Server]) -> None:
    server = server_factory(
        env={
            "ENVIRONMENT": "production",
            "AUTO_MIGRATE": "true",
            "JWT_SECRET": "s" * 48,
            "BOOTSTRAP_ADMIN_EMAIL": "ops@example.com",
            "BOOTSTRAP_ADMIN_PASSWORD": "a long and unusual passphrase",
        }
    ).start()
    login = httpx.post(
        f"{server.url}/api/v1/auth/login",
        json={"email": "ops@example.com", "password": "a long and unusual passphrase"},
    )
    assert login.status_code == 200
    assert server.stop() == 0
    assert "a long and unusual passphrase" not in server.output()


def test_cli_issues_an_api_key_the_server_accepts(
    installed_bin: Path, server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory().start()
    env = dict(clean_environment(), DATA_DIR=str(tmp_path / "data"))
    created = subprocess.run(
        [str(installed_bin / "workflow-engine"), "api-keys", "create", "--tenant", "default",
         "--role", "service", "--name", "ci-runner"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    me = httpx.get(f"{server.url}/api/v1/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert me.json()["name"] == "ci-runner"
    assert server.stop() == 0
    assert key not in server.output()


def test_logout_is_refused_by_a_second_server_process(
    server_factory: type[Server], fresh_postgres_url: str
) -> None:
    shared = {
        "DATABASE_URL": fresh_postgres_url,
        "JWT_SECRET": "shared-secret-of-at-least-32-bytes!!",
    }
    first = server_factory(env=shared).start()
    second = server_factory(env=shared).start()
    subprocess_env = dict(clean_environment(), **shared)
    subprocess.run(
        [str(Path(first.args[0]).parent / "workflow-engine"), "users", "create", "--email",
         "ops@example.com", "--role", "operator", "--password-stdin"],
        input="a long unusual passphrase\n", capture_output=True, text=True, check=True,
        env=subprocess_env, cwd=first.cwd,
    )  # fmt: skip
    login = httpx.post(
        f"{first.url}/api/v1/auth/login",
        json={"email": "ops@example.com", "password": "a long unusual passphrase"},
    )
    token = login.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{second.url}/api/v1/auth/me", headers=headers).status_code == 200
    assert httpx.post(f"{first.url}/api/v1/auth/logout", headers=headers).status_code == 204
    time.sleep(1.1)  # each process trusts its view of a token for at most one second
    assert httpx.get(f"{second.url}/api/v1/auth/me", headers=headers).status_code == 401
    assert first.stop() == 0
    assert second.stop() == 0
