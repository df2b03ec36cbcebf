"""Projections: read models folded from the event log and kept current as events are appended.

    class OrderTotals(Projection):
        name = "order_totals"
        version = 1                      # bump when `apply` or the tables change
        tables = (order_totals_table,)

        def wants(self, event: RecordedEvent) -> bool:
            return event.aggregate_type == "order"

        async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
            ...                          # SQL on `tables`, nothing else

    registry.register(OrderTotals())    # where the process is built, before it starts

Guarantees:

- **Inline.** `append_events` folds what it wrote into every registered projection inside the
  appending transaction: a read model never shows an event that did not commit, and never
  misses one that did. Inline, the events of one aggregate are folded in version order.
- **Order.** A rebuild folds in log order, (transaction id, position): on PostgreSQL a later
  version of an aggregate can sit before an earlier one there (its transaction started
  first), and events of different aggregates appended concurrently may come in either order.
  A fold must therefore give the same result in any order — compare versions, as the
  catalogue does, rather than trust arrival.
- **Privileges.** Appends made for a tenant request run as the tenant role on PostgreSQL
  (row-level security), and so do their folds: a projection's tables are tenant tables — give
  them a `tenant_id`, the role's grants and the tenant policy in the migration that creates
  them, as 0008 does for the catalogue.
- **Rebuild.** `replay` empties a projection's tables and folds the whole log again in one
  transaction. On PostgreSQL it holds an EXCLUSIVE lock on those tables: readers keep seeing
  the old model until the rebuild commits, and appenders of events the projection wants wait
  for it (they take ROW EXCLUSIVE first), then fold their events into the new model. Because
  no such appender can commit meanwhile, the rebuild reads every committed event, not only
  those below the horizon of transactions in flight. On SQLite the write transaction itself
  excludes every other writer.
- **Checkpoints.** `projection_checkpoints` keeps, per projection, the version its model was
  last rebuilt with and the last position that rebuild folded. A server starting with a
  projection whose checkpoint is missing or older (a new projection, a changed fold) rebuilds
  it before serving (`catch_up`); concurrent starters rebuild it once.

Replays read events through the upcasters they are given; inline folds see events as the
writer wrote them, which is the current shape.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import Table, delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db import Database
from workflow_engine.db.tables import projection_checkpoints
from workflow_engine.db.upsert import upsert
from workflow_engine.events.store import LOG_START, LogKey, RecordedEvent, read_log
from workflow_engine.events.upcasting import Upcasters

_REPLAY_BATCH = 1000


class Projection(ABC):
    """A read model: the tables it owns, the events it wants, and how to fold one."""

    name: ClassVar[str]
    # Bump whenever `apply` or the tables' shape changes: the server then rebuilds the model.
    version: ClassVar[int] = 1
    # Every table the fold writes; a rebuild empties them in reverse order (list parents first).
    tables: ClassVar[tuple[Table, ...]]
    # Whether `apply` reads its tables before writing them. Such a fold first locks them, so
    # that during a rebuild it waits before reading the old model; a fold whose every
    # statement writes (an upsert) waits at its first write anyway and saves the round trip.
    reads_before_writing: ClassVar[bool] = True

    def wants(self, event: RecordedEvent) -> bool:
        """Whether `apply` needs to see this event (all events unless overridden)."""
        return True

    @abstractmethod
    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Fold one event into the tables, inside the caller's transaction."""


class Projections:
    """The registered projections, in registration order (the order they are folded in)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Projection] = {}

    def register(self, projection: Projection) -> Projection:
        if projection.name in self._by_name:
            raise ValueError(f"a projection named {projection.name!r} is already registered")
        self._by_name[projection.name] = projection
        return projection

    def unregister(self, name: str) -> None:
        self._by_name.pop(name, None)

    @contextmanager
    def registered(self, projection: Projection) -> Iterator[Projection]:
        """Register for the duration of a block (tests, embedders with scoped models)."""
        self.register(projection)
        try:
            yield projection
        finally:
            self.unregister(projection.name)

    def get(self, name: str) -> Projection:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise KeyError(f"no projection named {name!r}; registered: {known}") from None

    def __iter__(self) -> Iterator[Projection]:
        return iter(list(self._by_name.values()))

    async def apply(self, conn: AsyncConnection, events: Sequence[RecordedEvent]) -> None:
        """Fold freshly appended `events` into every projection that wants them."""
        for projection in self:
            wanted = [event for event in events if projection.wants(event)]
            if not wanted:
                continue
            if projection.reads_before_writing:
                await _lock(conn, projection, "ROW EXCLUSIVE")
            for event in wanted:
                await projection.apply(conn, event)


registry = Projections()
"""The process's projections. Nothing registers itself on import: the process that is built
registers the built-in read models (`bootstrap.read_models`) and the application its own."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    version: int
    position: int
    events_folded: int
    rebuilt_at: datetime


@dataclass(frozen=True)
class ReplayResult:
    projection: str
    events_folded: int
    position: int
    seconds: float


async def read_checkpoint(conn: AsyncConnection, name: str) -> Checkpoint | None:
    row = (
        await conn.execute(
            select(projection_checkpoints).where(projection_checkpoints.c.name == name)
        )
    ).first()
    return Checkpoint(**row._mapping) if row else None


async def replay(
    db: Database,
    projection: Projection,
    *,
    upcasters: Upcasters | None = None,
    only_if_stale: bool = False,
) -> ReplayResult | None:
    """Rebuild `projection`'s read model from the whole log (see the module doc).

    With `only_if_stale`, does nothing (returns None) when the checkpoint already records the
    projection's version, checked under the lock so that concurrent starters rebuild once.
    """
    upcasters = upcasters or Upcasters()
    started = time.perf_counter()
    async with db.transaction() as conn:
        await _lock(conn, projection, "EXCLUSIVE")
        if only_if_stale:
            checkpoint = await read_checkpoint(conn, projection.name)
            if checkpoint is not None and checkpoint.version == projection.version:
                return None
        for table in reversed(projection.tables):
            await conn.execute(delete(table))
        folded = position = 0
        cursor: LogKey = LOG_START
        while batch := await read_log(conn, after=cursor, limit=_REPLAY_BATCH, settled=False):
            for event in batch:
                if projection.wants(event):
                    await projection.apply(conn, upcasters.apply(event))
                    folded += 1
            cursor = batch[-1].key
            position = max(position, batch[-1].position)
        await _save_checkpoint(conn, projection, position, folded)
    return ReplayResult(projection.name, folded, position, time.perf_counter() - started)


async def catch_up(
    db: Database, projections: Projections, upcasters: Upcasters | None = None
) -> list[ReplayResult]:
    """Rebuild every projection whose checkpoint is missing or records another version."""
    rebuilt = []
    for projection in projections:
        async with db.read() as conn:
            checkpoint = await read_checkpoint(conn, projection.name)
        if checkpoint is not None and checkpoint.version == projection.version:
            continue
        result = await replay(db, projection, upcasters=upcasters, only_if_stale=True)
        if result is not None:
            rebuilt.append(result)
    return rebuilt


async def _save_checkpoint(
    conn: AsyncConnection, projection: Projection, position: int, folded: int
) -> None:
    stmt = upsert(conn, projection_checkpoints).values(
        name=projection.name,
        version=projection.version,
        position=position,
        events_folded=folded,
        rebuilt_at=datetime.now(UTC),
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[projection_checkpoints.c.name],
            set_={
                "version": stmt.excluded.version,
                "position": stmt.excluded.position,
                "events_folded": stmt.excluded.events_folded,
                "rebuilt_at": stmt.excluded.rebuilt_at,
            },
        )
    )


async def _lock(conn: AsyncConnection, projection: Projection, mode: str) -> None:
    """PostgreSQL table locks that order inline folds against rebuilds (SQLite needs none:
    its write transactions already exclude each other)."""
    if conn.dialect.name != "postgresql" or not projection.tables:
        return
    names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in projection.tables)
    await conn.execute(text(f"LOCK TABLE {names} IN {mode} MODE"))
