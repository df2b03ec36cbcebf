"""Hash partitioning of `events` by tenant on PostgreSQL (`EVENT_PARTITIONS`).

`migrate` brings the table to the configured layout after the revisions have run, in the same
transaction: a plain table (1) or N hash partitions of `tenant_id`. Converting copies every row
into a table of the new layout under an ACCESS EXCLUSIVE lock, keeping positions, transaction
ids, hashes and the position sequence, so the log reads exactly as before; it is a
maintenance-window operation on a large log, and a no-op when the layout already matches
(checked again under the lock, so concurrent `migrate`s convert once). Defaults, storage and
statistics settings, comments, grants (to any role), the row-level security switches, every
policy and the hash chain's trigger carry over;
indexes an operator added by hand do not (ours are rebuilt), and the table is analysed after.

Partitioned, every key includes the partition key: (tenant_id, position) is the primary key and
event ids are unique per tenant (they are random UUIDs; the sequence keeps positions unique
across the whole table). Positions get a plain index for the readers that look one up.
"""

from __future__ import annotations

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection

from workflow_engine.db.event_chain import TRIGGER as CHAIN_TRIGGER

logger = structlog.get_logger(__name__)

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
    if current == wanted:  # another process converted it while we waited for the lock
        return False
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
    access = _access_rules(conn)
    conn.execute(text("ALTER TABLE events RENAME TO events_previous"))
    layout = " PARTITION BY HASH (tenant_id)" if wanted > 1 else ""
    # Not INCLUDING INDEXES/CONSTRAINTS: the keys differ between layouts (made below).
    copied = "INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS"
    conn.execute(text(f"CREATE TABLE events (LIKE events_previous {copied}){layout}"))
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
    for statement in access:
        conn.execute(text(statement))
    # After the copy, which keeps the rows' hashes: the chain's trigger goes with the old table.
    conn.execute(text(CHAIN_TRIGGER))
    conn.execute(text("ANALYZE events"))
    return True


def _access_rules(conn: Connection) -> list[str]:
    """Statements that give the rebuilt table the old one's grants, row-level security switches
    and policies (whatever they are: those of our migrations and any an operator added)."""
    statements = []
    grants = conn.execute(
        text(
            "SELECT grantee, string_agg(privilege_type, ', ') FROM "
            "information_schema.role_table_grants WHERE table_name = 'events' "
            "AND table_schema = current_schema() AND grantee <> current_user GROUP BY grantee"
        )
    )
    for grantee, privileges in grants:
        statements.append(f"GRANT {privileges} ON events TO {_quote(grantee)}")
    enabled, forced = conn.execute(
        text(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE oid = to_regclass('events')"
        )
    ).one()
    if enabled:
        statements.append("ALTER TABLE events ENABLE ROW LEVEL SECURITY")
    if forced:
        statements.append("ALTER TABLE events FORCE ROW LEVEL SECURITY")
    policies = conn.execute(
        text(
            "SELECT policyname, permissive, cmd, roles::text[], qual, with_check FROM pg_policies "
            "WHERE tablename = 'events' AND schemaname = current_schema()"
        )
    )
    for name, permissive, command, roles, using, check in policies:
        targets = ", ".join(role if role == "public" else _quote(role) for role in roles)
        statement = (
            f"CREATE POLICY {_quote(name)} ON events AS {permissive} FOR {command} TO {targets}"
        )
        if using is not None:
            statement += f" USING ({using})"
        if check is not None:
            statement += f" WITH CHECK ({check})"
        statements.append(statement)
    return statements


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
