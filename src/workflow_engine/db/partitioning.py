"""Hash partitioning of `events` by tenant on PostgreSQL (`EVENT_PARTITIONS`).

`migrate` brings the table to the configured layout after the revisions have run, in the same
transaction: a plain table (1) or N hash partitions of `tenant_id`. Converting copies every row
into a table of the new layout under an ACCESS EXCLUSIVE lock, keeping positions, transaction
ids and the position sequence, so the log reads exactly as before; it is a maintenance-window
operation on a large log, and a no-op when the layout already matches.

Partitioned, every key includes the partition key: (tenant_id, position) is the primary key and
event ids are unique per tenant (they are random UUIDs; the sequence keeps positions unique
across the whole table). Positions get a plain index for the readers that look one up.
"""

from __future__ import annotations

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection

logger = structlog.get_logger(__name__)

API_ROLE = "workflow_engine_api"
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

_PLAIN_KEYS = (
    "ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (position)",
    "ALTER TABLE events ADD CONSTRAINT uq_events_event_id UNIQUE (event_id)",
    "CREATE INDEX ix_events_tenant_id_position ON events (tenant_id, position)",
)
_PARTITIONED_KEYS = (
    "ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (tenant_id, position)",
    "ALTER TABLE events ADD CONSTRAINT uq_events_tenant_id_event_id UNIQUE (tenant_id, event_id)",
    "CREATE INDEX ix_events_position ON events (position)",
)
_COMMON_KEYS = (
    "ALTER TABLE events ADD CONSTRAINT uq_events_tenant_id_aggregate_id_version "
    "UNIQUE (tenant_id, aggregate_id, version)",
    "CREATE INDEX ix_events_txid_position ON events (txid, position)",
)


def event_partitions(conn: Connection) -> int:
    """The current layout: 1 for a plain table, else the number of hash partitions."""
    partitioned = conn.execute(
        text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('events')")
    ).scalar_one()
    if not partitioned:
        return 1
    return int(
        conn.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('events')")
        ).scalar_one()
    )


def apply_event_partitions(conn: Connection, wanted: int) -> bool:
    """Convert `events` to `wanted` partitions inside the caller's transaction.

    Returns whether anything changed. SQLite has one layout and is left alone.
    """
    if conn.dialect.name != "postgresql" or event_partitions(conn) == wanted:
        return False
    conn.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
    current = event_partitions(conn)
    rows = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
    logger.warning(
        "converting the events table to a new layout",
        partitions_from=current,
        partitions_to=wanted,
        rows=rows,
    )
    sequence = conn.execute(text("SELECT pg_get_serial_sequence('events', 'position')")).scalar()
    if sequence is None:
        raise RuntimeError("events.position has no sequence; the schema is not ours")
    # Keep the sequence: dropping the old table would otherwise drop it with it.
    conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY NONE"))
    conn.execute(text("ALTER TABLE events RENAME TO events_previous"))
    layout = " PARTITION BY HASH (tenant_id)" if wanted > 1 else ""
    conn.execute(text(f"CREATE TABLE events (LIKE events_previous INCLUDING DEFAULTS){layout}"))
    for remainder in range(wanted if wanted > 1 else 0):
        # Names carry the modulus, so a new layout never collides with the old partitions.
        conn.execute(
            text(
                f"CREATE TABLE events_p{remainder}_of_{wanted} PARTITION OF events "
                f"FOR VALUES WITH (MODULUS {wanted}, REMAINDER {remainder})"
            )
        )
    conn.execute(text("INSERT INTO events SELECT * FROM events_previous"))
    conn.execute(text("DROP TABLE events_previous"))
    conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY events.position"))
    for statement in (*(_PARTITIONED_KEYS if wanted > 1 else _PLAIN_KEYS), *_COMMON_KEYS):
        conn.execute(text(statement))
    _confine_to_tenants(conn)
    return True


def _confine_to_tenants(conn: Connection) -> None:
    """The grants and row-level policy migrations 0005 and 0009 gave the old table."""
    role = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE})
    if role.first() is None:
        return  # row-level security is off for this database (no role): nothing to restore
    conn.execute(text(f"GRANT SELECT, INSERT ON events TO {API_ROLE}"))  # append-only
    conn.execute(text("ALTER TABLE events ENABLE ROW LEVEL SECURITY"))
    conn.execute(
        text(
            f"CREATE POLICY tenant_isolation ON events TO {API_ROLE} "
            f"USING (tenant_id = {_CURRENT_TENANT}) WITH CHECK (tenant_id = {_CURRENT_TENANT})"
        )
    )
