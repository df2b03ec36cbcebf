"""Appending to and reading the event log. Every statement on `events` lives here.

Guarantees:

- `insert_events` writes all of its events or none, inside the caller's transaction, so read
  models updated in that transaction commit with them (`events.append.append_events` folds
  them into the registered projections; call that, not this). It checks the expected version and a
  unique (tenant, aggregate, version) constraint backs the check: of two concurrent appenders
  for one version exactly one wins, the other gets `ConcurrencyConflict`. Nothing is overwritten.
- `read_log` returns events in log order and never skips one. On PostgreSQL a sequence value is
  taken before commit, so position 11 can be visible while 10 is still in flight (pitfall 4 in
  docs/architecture.md).
  The log is therefore ordered by (writer's transaction id, position), and a reader only sees
  rows whose transaction is older than every transaction still running
  (`pg_snapshot_xmin`): once seen, nothing can ever appear before them. Positions stay unique
  and are what clients hold as cursors; they rise along the log except where two transactions
  committed concurrently. Rolled-back appends leave gaps in positions; a gap is not a deleted
  event. On SQLite writers are serialised, so log order is simply position order.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Row,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.database import announce
from workflow_engine.db.event_chain import RECOMPUTED_HASH
from workflow_engine.db.tables import events, snapshots
from workflow_engine.db.upsert import upsert
from workflow_engine.errors import ConcurrencyConflict, Conflict
from workflow_engine.events.chain import CONTENT_FIELDS as _CONTENT
from workflow_engine.events.chain import GENESIS, content_digest, link
from workflow_engine.events.storable import check_document, check_name

# PostgreSQL channel that wakes log followers when an appending transaction commits.
NOTIFY_CHANNEL = "workflow_engine_events"
# What `insert_events` marks its transaction with (`Database.on_commit`).
APPENDED = "events.appended"
# How often an append without an expected version retries after losing a race.
_MAX_UNCONDITIONAL_RETRIES = 5

LogKey = tuple[int, int]
"""An event's place in log order: (writing transaction id, position); txid is 0 on SQLite."""
LOG_START: LogKey = (-1, 0)


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its type and payload; the store assigns everything else."""

    event_type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = 1


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored in the log."""

    position: int
    event_id: uuid.UUID
    tenant_id: uuid.UUID
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    txid: int = 0

    @property
    def key(self) -> LogKey:
        return (self.txid, self.position)

    @classmethod
    def from_row(cls, row: Row[Any, *tuple[Any, ...]]) -> RecordedEvent:
        return cls(
            position=row.position,
            event_id=row.event_id,
            tenant_id=row.tenant_id,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            version=row.version,
            event_type=row.event_type,
            schema_version=row.schema_version,
            data=row.data,
            metadata=row.metadata,
            recorded_at=row.recorded_at,
            txid=row.txid,
        )


_COLUMNS = (
    events.c.position,
    events.c.event_id,
    events.c.tenant_id,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.version,
    events.c.event_type,
    events.c.schema_version,
    events.c.data,
    events.c.metadata,
    events.c.recorded_at,
    events.c.txid,
)


# The append path's statements, built once: each append runs them, and building a statement
# costs SQLAlchemy more than executing it on SQLite.
_AGGREGATE = (
    events.c.tenant_id == bindparam("tenant_id", type_=events.c.tenant_id.type),
    events.c.aggregate_id == bindparam("aggregate_id", type_=events.c.aggregate_id.type),
)
_CURRENT_VERSION = select(func.coalesce(func.max(events.c.version), 0)).where(*_AGGREGATE)
_HEAD = (
    select(events.c.version, events.c.aggregate_type, events.c.hash)
    .where(*_AGGREGATE)
    .order_by(events.c.version.desc())
    .limit(1)
)
_INSERT = events.insert().returning(*_COLUMNS)


async def current_version(conn: AsyncConnection, tenant_id: uuid.UUID, aggregate_id: str) -> int:
    """The aggregate's latest version; 0 when it has no events."""
    found = await conn.execute(
        _CURRENT_VERSION, {"tenant_id": tenant_id, "aggregate_id": aggregate_id}
    )
    return int(found.scalar_one())


async def insert_events(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    aggregate_type: str,
    aggregate_id: str,
    new_events: Sequence[NewEvent],
    expected_version: int | None,
    exclusive: bool = False,
) -> list[RecordedEvent]:
    """Append `new_events` to an aggregate inside the caller's (write) transaction.

    `expected_version` is the version the caller last saw: 0 for a new aggregate, None to
    append whatever the current version is (still safe against a concurrent appender).
    Raises `ConcurrencyConflict` when the aggregate moved on, and `Conflict` when the
    aggregate exists under another type. The caller's transaction stays usable either way —
    unless `exclusive`: the caller holds a lock every appender to this aggregate takes, so no
    conflict can happen and the savepoint that would survive one is skipped.
    """
    if not new_events:
        return []
    check_name("aggregate_type", aggregate_type)
    check_name("aggregate_id", aggregate_id)
    for new in new_events:
        check_name("event_type", new.event_type)
        check_document("data", new.data)
        check_document("metadata", new.metadata)
    for _attempt in range(_MAX_UNCONDITIONAL_RETRIES):
        actual, head_hash = await _head(conn, tenant_id, aggregate_type, aggregate_id)
        if expected_version is not None and expected_version != actual:
            raise ConcurrencyConflict(aggregate_id, expected_version, actual)
        try:
            return await _insert(
                conn,
                tenant_id,
                aggregate_type,
                aggregate_id,
                new_events,
                actual,
                head_hash,
                exclusive,
            )
        except IntegrityError:
            if expected_version is not None:
                winner = await current_version(conn, tenant_id, aggregate_id)
                raise ConcurrencyConflict(aggregate_id, expected_version, winner) from None
            # No expected version: another appender took this version; append after it.
    winner = await current_version(conn, tenant_id, aggregate_id)
    raise ConcurrencyConflict(aggregate_id, expected_version, winner)


async def _head(
    conn: AsyncConnection, tenant_id: uuid.UUID, aggregate_type: str, aggregate_id: str
) -> tuple[int, bytes]:
    """The aggregate's latest version and that event's hash (0 and the chain's start)."""
    head = await conn.execute(_HEAD, {"tenant_id": tenant_id, "aggregate_id": aggregate_id})
    latest = head.first()
    if latest is None:
        return 0, GENESIS
    if latest.aggregate_type != aggregate_type:
        raise Conflict(
            f"aggregate {aggregate_id!r} is a {latest.aggregate_type!r}, not a {aggregate_type!r}"
        )
    return int(latest.version), latest.hash or GENESIS


async def _insert(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    aggregate_type: str,
    aggregate_id: str,
    new_events: Sequence[NewEvent],
    after_version: int,
    head_hash: bytes,
    exclusive: bool,
) -> list[RecordedEvent]:
    recorded_at = datetime.now(UTC)
    rows = [
        {
            "event_id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "version": after_version + offset,
            "event_type": new.event_type,
            "schema_version": new.schema_version,
            "data": dict(new.data),
            "metadata": dict(new.metadata),
            "recorded_at": recorded_at,
        }
        for offset, new in enumerate(new_events, start=1)
    ]
    if conn.dialect.name == "sqlite":  # PostgreSQL's trigger chains them (events/chain.py)
        _chain(rows, head_hash)
    # A savepoint keeps the caller's transaction alive when the unique constraint fires
    # (PostgreSQL would otherwise abort the whole transaction). SQLite needs none: its
    # writers take turns, so no other append can come between the head read and this insert,
    # and a failed statement there leaves the transaction as it was.
    sheltered = exclusive or conn.dialect.name == "sqlite"
    async with contextlib.nullcontext() if sheltered else conn.begin_nested():
        result = await conn.execute(_INSERT, rows)
        stored = [RecordedEvent.from_row(row) for row in result]
    await announce(conn, APPENDED, NOTIFY_CHANNEL)  # followers wake once this commits
    return sorted(stored, key=lambda e: e.version)


def _chain(rows: list[dict[str, Any]], prev_hash: bytes) -> None:
    for row in rows:
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = link(prev_hash, content_digest(**{
            name: row[name] for name in _CONTENT
        }))  # fmt: skip


async def read_aggregate(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    aggregate_id: str,
    *,
    from_version: int = 1,
    limit: int | None = None,
) -> list[RecordedEvent]:
    """An aggregate's events in version order, starting at `from_version`."""
    stmt = (
        select(*_COLUMNS)
        .where(
            events.c.tenant_id == tenant_id,
            events.c.aggregate_id == aggregate_id,
            events.c.version >= from_version,
        )
        .order_by(events.c.version)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [RecordedEvent.from_row(row) for row in await conn.execute(stmt)]


async def search_events(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    event_type: str | None = None,
    aggregate_type: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_position: int = 0,
    limit: int = 100,
) -> list[RecordedEvent]:
    """The tenant's events matching every given filter, in position order (the audit view)."""
    stmt = (
        select(*_COLUMNS)
        .where(events.c.tenant_id == tenant_id, events.c.position > after_position)
        .order_by(events.c.position)
        .limit(limit)
    )
    if event_type is not None:
        stmt = stmt.where(events.c.event_type == event_type)
    if aggregate_type is not None:
        stmt = stmt.where(events.c.aggregate_type == aggregate_type)
    if actor is not None:
        stmt = stmt.where(events.c.metadata["actor"].as_string() == actor)
    if since is not None:
        stmt = stmt.where(events.c.recorded_at >= since)
    if until is not None:
        stmt = stmt.where(events.c.recorded_at < until)
    return [RecordedEvent.from_row(row) for row in await conn.execute(stmt)]


async def read_log(
    conn: AsyncConnection,
    *,
    after: int | LogKey = 0,
    limit: int = 500,
    tenant_id: uuid.UUID | None = None,
    settled: bool = True,
) -> list[RecordedEvent]:
    """Up to `limit` events that follow `after` in log order (see the module doc).

    `after` is a position (what clients hold) or an event's `key`. Call again with the last
    returned event's position or key to follow the log; an empty answer means "nothing
    committed yet beyond the horizon", never "the events were skipped". A position that holds
    no event (0, or a gap) counts as the nearest event below it.

    `settled=False` drops the horizon and reads every committed event: only for a reader that
    has already made every writer it cares about wait (a projection rebuild).
    """
    cursor_txid, cursor_position = after if isinstance(after, tuple) else await log_key(conn, after)
    stmt = (
        select(*_COLUMNS)
        .where(
            tuple_(events.c.txid, events.c.position)
            > tuple_(literal(cursor_txid), literal(cursor_position))
        )
        .order_by(events.c.txid, events.c.position)
        .limit(limit)
    )
    if settled and conn.dialect.name == "postgresql":
        stmt = stmt.where(events.c.txid < _visible_horizon())
    if tenant_id is not None:
        stmt = stmt.where(events.c.tenant_id == tenant_id)
    return [RecordedEvent.from_row(row) for row in await conn.execute(stmt)]


async def log_key(conn: AsyncConnection, position: int) -> LogKey:
    """The key of the event at `position`, or of the nearest one below it (`LOG_START` if none)."""
    if position <= 0:
        return LOG_START
    row = (
        await conn.execute(
            select(events.c.txid, events.c.position)
            .where(events.c.position <= position)
            .order_by(events.c.position.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return LOG_START
    return int(row.txid), int(row.position)


def _visible_horizon() -> Any:
    """The oldest transaction id still in flight: every row below it is final."""
    xmin = func.pg_snapshot_xmin(func.pg_current_snapshot())
    return cast(cast(xmin, Text()), BigInteger())


async def log_head(conn: AsyncConnection) -> LogKey:
    """A cursor for following the log "from now on": the last event, in log order, below the
    horizon of transactions still in flight (`LOG_START` for an empty log).

    Use this rather than the highest position (or a position `append_events` returned) as a
    starting point: a transaction that took a lower position may still commit, and following
    from a higher position would pass over it for good.
    """
    stmt = select(events.c.txid, events.c.position).order_by(
        events.c.txid.desc(), events.c.position.desc()
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.where(events.c.txid < _visible_horizon())
    row = (await conn.execute(stmt.limit(1))).first()
    return (int(row.txid), int(row.position)) if row else LOG_START


async def last_position(conn: AsyncConnection) -> int:
    """The highest position written so far (0 for an empty log)."""
    return int(
        (await conn.execute(select(func.coalesce(func.max(events.c.position), 0)))).scalar_one()
    )


# --- the hash chain and its seals (events/chain.py, events/seals.py) -----------------------


@dataclass(frozen=True)
class Link:
    """An event's place in the log and its stored hash: what a seal digests."""

    txid: int
    position: int
    tenant_id: uuid.UUID
    aggregate_id: str
    version: int
    hash: bytes | None

    @property
    def key(self) -> LogKey:
        return (self.txid, self.position)


_LINK_COLUMNS = (
    events.c.txid,
    events.c.position,
    events.c.tenant_id,
    events.c.aggregate_id,
    events.c.version,
    events.c.hash,
)


async def read_links(
    conn: AsyncConnection,
    *,
    after: LogKey,
    through: LogKey | None = None,
    tenant_id: uuid.UUID | None = None,
    limit: int | None = None,
) -> list[Link]:
    """The links of the events after `after` in log order: up to `through`, or, without it,
    up to the horizon of transactions still in flight (as `read_log` reads)."""
    key = tuple_(events.c.txid, events.c.position)
    stmt = (
        select(*_LINK_COLUMNS)
        .where(key > tuple_(literal(after[0]), literal(after[1])))
        .order_by(events.c.txid, events.c.position)
    )
    if through is not None:
        stmt = stmt.where(key <= tuple_(literal(through[0]), literal(through[1])))
    elif conn.dialect.name == "postgresql":
        stmt = stmt.where(events.c.txid < _visible_horizon())
    if tenant_id is not None:
        stmt = stmt.where(events.c.tenant_id == tenant_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [Link(*row) for row in await conn.execute(stmt)]


@dataclass(frozen=True)
class StoredHash:
    """An event's stored chain hashes beside the hash its stored content has now."""

    position: int
    tenant_id: uuid.UUID
    aggregate_id: str
    version: int
    prev_hash: bytes | None
    hash: bytes | None
    recomputed: bytes | None

    @property
    def chain_key(self) -> tuple[uuid.UUID, str, int]:
        return (self.tenant_id, self.aggregate_id, self.version)


async def read_chain(
    conn: AsyncConnection,
    *,
    after: tuple[uuid.UUID, str, int] | None,
    tenant_id: uuid.UUID | None,
    limit: int,
) -> list[StoredHash]:
    """Every event's hashes in (tenant, aggregate, version) order, `limit` at a time.

    PostgreSQL recomputes each hash with its trigger's own function; on SQLite Python does.
    """
    chain_order = (events.c.tenant_id, events.c.aggregate_id, events.c.version)
    postgres = conn.dialect.name == "postgresql"
    recomputed = literal_column(RECOMPUTED_HASH) if postgres else literal(None)
    content = () if postgres else tuple(events.c[name] for name in _CONTENT)
    stmt = (
        select(
            events.c.position, *chain_order, events.c.prev_hash, events.c.hash,
            recomputed.label("recomputed"), *content,
        )
        .order_by(*chain_order)
        .limit(limit)
    )  # fmt: skip
    if after is not None:
        pairs = zip(after, chain_order, strict=True)
        bound = (literal(value, column.type) for value, column in pairs)
        stmt = stmt.where(tuple_(*chain_order) > tuple_(*bound))
    if tenant_id is not None:
        stmt = stmt.where(events.c.tenant_id == tenant_id)
    found = []
    for row in await conn.execute(stmt):
        again = row.recomputed
        if not postgres:
            content_hash = content_digest(**{name: row._mapping[name] for name in _CONTENT})
            again = link(row.prev_hash or b"", content_hash)
        stored = (row.position, row.tenant_id, row.aggregate_id, row.version)
        found.append(StoredHash(*stored, row.prev_hash, row.hash, again))
    return found


# --- snapshots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    version: int
    state: dict[str, Any]


async def read_snapshot(
    conn: AsyncConnection, tenant_id: uuid.UUID, aggregate_id: str, kind: str
) -> Snapshot | None:
    row = (
        await conn.execute(
            select(snapshots.c.version, snapshots.c.state).where(
                snapshots.c.tenant_id == tenant_id,
                snapshots.c.aggregate_id == aggregate_id,
                snapshots.c.kind == kind,
            )
        )
    ).first()
    return Snapshot(row.version, row.state) if row else None


async def save_snapshot(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    aggregate_id: str,
    kind: str,
    snapshot: Snapshot,
) -> None:
    """Keep the newer of the stored and the given snapshot (concurrent loaders may race)."""
    check_document("state", snapshot.state)
    values = {
        "tenant_id": tenant_id,
        "aggregate_id": aggregate_id,
        "kind": kind,
        "version": snapshot.version,
        "state": snapshot.state,
        "taken_at": datetime.now(UTC),
    }
    stmt = upsert(conn, snapshots).values(**values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[snapshots.c.tenant_id, snapshots.c.aggregate_id, snapshots.c.kind],
            set_={"version": stmt.excluded.version, "state": stmt.excluded.state,
                  "taken_at": stmt.excluded.taken_at},
            where=snapshots.c.version < stmt.excluded.version,
        )
    )  # fmt: skip
