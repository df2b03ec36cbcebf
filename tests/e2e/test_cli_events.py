"""`workflow-engine events replay`: rebuilding read models from the log with the installed CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli
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
