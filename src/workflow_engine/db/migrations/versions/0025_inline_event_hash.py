"""The hash chain's trigger computes an event's content hash inline instead of calling a SQL
function: PL/pgSQL does not inline the call, which cost a third of the trigger's time inside
the run transitions' row lock. The stored hashes are the same.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

from pathlib import Path
from runpy import run_path

from alembic import op

from workflow_engine.db.event_chain import TRIGGER_FUNCTION

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_CONTENT_SIGNATURE = (
    "workflow_engine_event_content(uuid, uuid, text, text, integer, text, integer, jsonb, jsonb,"
    " timestamptz)"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql(TRIGGER_FUNCTION)
    bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_CONTENT_SIGNATURE}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    previous = run_path(str(Path(__file__).with_name("0024_event_hash_chain.py")))
    bind.exec_driver_sql(previous["CONTENT_FUNCTION"])
    bind.exec_driver_sql(previous["TRIGGER_FUNCTION"])
