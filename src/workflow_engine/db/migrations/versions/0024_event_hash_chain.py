"""A tamper-evident event log: each event's hash chains it to its aggregate's previous event,
and seals record a digest of every tenant's events, range by range (`events/chain.py`,
`events/seals.py`). Existing events are chained here, in version order.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from workflow_engine.db.types import JsonDocument, UTCDateTime
from workflow_engine.events.chain import GENESIS, content_digest, link

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# As this revision made them; migration 0025 replaced the trigger function.
CONTENT_FUNCTION = r"""
CREATE OR REPLACE FUNCTION workflow_engine_event_content(
    p_event_id uuid, p_tenant_id uuid, p_aggregate_type text, p_aggregate_id text,
    p_version integer, p_event_type text, p_schema_version integer, p_data jsonb,
    p_metadata jsonb, p_recorded_at timestamptz
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT sha256(convert_to(concat_ws(chr(31),
        p_event_id::text, p_tenant_id::text, p_aggregate_type, p_aggregate_id,
        p_version::text, p_event_type, p_schema_version::text, p_data::text, p_metadata::text,
        (extract(epoch FROM p_recorded_at) * 1000000)::bigint::text), 'UTF8'))
$fn$
"""

TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION workflow_engine_chain_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.version = 1 THEN
        NEW.prev_hash := '\x0000000000000000000000000000000000000000000000000000000000000000';
    ELSE
        SELECT e.hash INTO NEW.prev_hash FROM events e
        WHERE e.tenant_id = NEW.tenant_id AND e.aggregate_id = NEW.aggregate_id
          AND e.version = NEW.version - 1;
    END IF;
    NEW.hash := sha256(NEW.prev_hash || workflow_engine_event_content(
        NEW.event_id, NEW.tenant_id, NEW.aggregate_type, NEW.aggregate_id, NEW.version,
        NEW.event_type, NEW.schema_version, NEW.data, NEW.metadata, NEW.recorded_at));
    RETURN NEW;
END
$fn$
"""

TRIGGER = """
CREATE TRIGGER events_hash_chain BEFORE INSERT ON events
FOR EACH ROW EXECUTE FUNCTION workflow_engine_chain_event()
"""

PG_BACKFILL = r"""
DO $backfill$
DECLARE
    r record;
    v_prev bytea;
    v_hash bytea;
BEGIN
    FOR r IN SELECT position, tenant_id, aggregate_type, aggregate_id, version, event_id,
                    event_type, schema_version, data, metadata, recorded_at
             FROM events ORDER BY tenant_id, aggregate_id, version LOOP
        IF r.version = 1 THEN
            v_prev := '\x0000000000000000000000000000000000000000000000000000000000000000';
        END IF;
        v_hash := sha256(v_prev || workflow_engine_event_content(
            r.event_id, r.tenant_id, r.aggregate_type, r.aggregate_id, r.version, r.event_type,
            r.schema_version, r.data, r.metadata, r.recorded_at));
        UPDATE events SET prev_hash = v_prev, hash = v_hash
        WHERE tenant_id = r.tenant_id AND position = r.position;
        v_prev := v_hash;
    END LOOP;
END
$backfill$
"""


def upgrade() -> None:
    op.add_column("events", sa.Column("prev_hash", sa.LargeBinary(), nullable=True))
    op.add_column("events", sa.Column("hash", sa.LargeBinary(), nullable=True))
    op.create_table(
        "event_seals",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("after_txid", sa.BigInteger(), nullable=False),
        sa.Column("after_position", sa.BigInteger(), nullable=False),
        sa.Column("through_txid", sa.BigInteger(), nullable=False),
        sa.Column("through_position", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("tenants", JsonDocument, nullable=False),
        sa.Column("prev_digest", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_event_seals"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for statement in (CONTENT_FUNCTION, TRIGGER_FUNCTION, PG_BACKFILL, TRIGGER):
            bind.exec_driver_sql(statement)
    else:
        _backfill_sqlite(bind)


def _backfill_sqlite(bind: sa.engine.Connection) -> None:
    rows = bind.exec_driver_sql(
        "SELECT position, event_id, tenant_id, aggregate_type, aggregate_id, version, event_type,"
        " schema_version, data, metadata, recorded_at FROM events"
        " ORDER BY tenant_id, aggregate_id, version"
    ).fetchall()
    prev = GENESIS
    for row in rows:
        if row.version == 1:
            prev = GENESIS
        content = content_digest(
            event_id=uuid.UUID(row.event_id), tenant_id=uuid.UUID(row.tenant_id),
            aggregate_type=row.aggregate_type, aggregate_id=row.aggregate_id,
            version=row.version, event_type=row.event_type, schema_version=row.schema_version,
            data=json.loads(row.data), metadata=json.loads(row.metadata),
            recorded_at=datetime.fromisoformat(row.recorded_at).replace(tzinfo=UTC),
        )  # fmt: skip
        digest = link(prev, content)
        bind.exec_driver_sql(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?",
            (prev, digest, row.position),
        )
        prev = digest


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_hash_chain ON events")
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_chain_event()")
        op.execute(
            "DROP FUNCTION IF EXISTS workflow_engine_event_content(uuid, uuid, text, text,"
            " integer, text, integer, jsonb, jsonb, timestamptz)"
        )
    op.drop_table("event_seals")
    op.drop_column("events", "hash")
    op.drop_column("events", "prev_hash")
