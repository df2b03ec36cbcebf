"""`workflow-engine events replay` and `events verify` with the installed CLI: rebuilding read
models from the log, and checking the log was not edited."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, run_cli
from workflow_engine.config.settings import SQLITE_FILE_NAME

pytestmark = pytest.mark.e2e


def _catalogue(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM aggregates ORDER BY tenant_id, aggregate_id").fetchall()


def test_replay_rebuilds_a_dropped_read_model_row_for_row(
    installed_bin: Path, tmp_path: Path
) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    for name in ("acme", "globex"):
        created = run_cli(installed_bin, "tenants", "create", name, cwd=tmp_path, env=env)
        assert created.returncode == 0, created.stderr
    db = tmp_path / "data" / SQLITE_FILE_NAME
    before = _catalogue(db)
    assert len(before) == 2  # one `tenants` aggregate each
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM aggregates")

    replayed = run_cli(
        installed_bin, "events", "replay", "--projection", "aggregates", cwd=tmp_path, env=env
    )

    assert replayed.returncode == 0, replayed.stderr
    assert "rebuilt aggregates: 2 events folded" in replayed.stdout
    assert _catalogue(db) == before


def test_replay_of_an_unknown_projection_names_the_known_ones(
    installed_bin: Path, tmp_path: Path
) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    refused = run_cli(installed_bin, "events", "replay", "--projection", "nope", cwd=tmp_path,
                      env=env)  # fmt: skip
    assert refused.returncode == 2
    assert (
        "no projection named 'nope'; registered: aggregates, run_logs, workflow_runs"
        in refused.stderr
    )
    rebuilt = run_cli(installed_bin, "events", "replay", "--projection", "workflow_runs",
                      cwd=tmp_path, env=env)  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("rebuilt workflow_runs: ")


def _wait_for_seal(db: Path, server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM event_seals").fetchone()[0]:
                return
        time.sleep(0.2)
    pytest.fail(f"no seal within {timeout} s:\n{server.output()}")


def test_verify_names_the_edited_and_the_deleted_event(
    installed_bin: Path, server_factory: type[Server], tmp_path: Path
) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    for name in ("acme", "globex"):
        assert (
            run_cli(installed_bin, "tenants", "create", name, cwd=tmp_path, env=env).returncode == 0
        )
    db = tmp_path / "data" / SQLITE_FILE_NAME
    server = server_factory(env={"EVENT_SEAL_INTERVAL": "0.2"}).start()
    _wait_for_seal(db, server)  # the server's sealer covered both tenants' events
    server.stop()

    intact = run_cli(installed_bin, "events", "verify", cwd=tmp_path, env=env)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("intact: ")

    with sqlite3.connect(db) as conn:
        acme, first = conn.execute(
            "SELECT e.tenant_id, min(e.position) FROM events e JOIN tenants t "
            "ON t.id = e.tenant_id WHERE t.name = 'acme'"
        ).fetchone()
        conn.execute('UPDATE events SET data = \'{"name": "evil"}\' WHERE position = ?', (first,))
    edited = run_cli(installed_bin, "events", "verify", cwd=tmp_path, env=env)
    assert edited.returncode == 1
    assert f"tampered: altered: position {first}: tenant " in edited.stderr
    # The other tenant's events are untouched.
    other = run_cli(installed_bin, "events", "verify", "--tenant", "globex", cwd=tmp_path, env=env)
    assert other.returncode == 0, other.stderr

    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE tenant_id = ?", (acme,))
    deleted = run_cli(installed_bin, "events", "verify", "--tenant", "acme", cwd=tmp_path, env=env)
    assert deleted.returncode == 1
    assert "tampered: deleted: tenant " in deleted.stderr
    assert "sealed in seal 1, is gone" in deleted.stderr

    unknown = run_cli(installed_bin, "events", "verify", "--tenant", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 1
    assert "no tenant named 'nope'" in unknown.stderr
