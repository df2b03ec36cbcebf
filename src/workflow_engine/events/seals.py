"""Seals: digests of the event log, range by range, for what a per-aggregate chain cannot show.

A chain (`events/chain.py`) shows an edited, inserted or removed event inside an aggregate's
history, but not the removal of an aggregate's last events, of a whole aggregate, or a change
in the order of events across aggregates. A seal covers the log from the previous seal's end
to a settled point (log keys, as `read_log` orders them) and records, for each tenant with
events in it: how many, a digest of their positions and hashes in log order, and the last
version and position of each aggregate it touched. Seals chain to each other by digest.
Positions a rolled-back append skipped are never in a seal, so they are not deletions.

Every server process runs a sealer every `EVENT_SEAL_INTERVAL` seconds; a seal's number is
its primary key, so when two processes seal at once one seal is kept and the other dropped.
Each new seal's digest is also logged: a copy outside the database, which someone able to
rewrite the database and recompute every hash cannot change afterwards. What the last seal
does not cover yet (at most an interval's worth of appends) is protected by the chain only.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.bootstrap.core_services import DatabaseService
from workflow_engine.bootstrap.periodic import PeriodicService
from workflow_engine.db.tables import event_seals
from workflow_engine.db.upsert import upsert
from workflow_engine.events.chain import GENESIS
from workflow_engine.events.store import LOG_START, Link, LogKey, read_links

logger = structlog.get_logger(__name__)

# Events one seal covers at most; a longer backlog is sealed in several.
SEAL_LIMIT = 10_000


@dataclass(frozen=True)
class TenantRange:
    """One tenant's part of a seal."""

    events: int
    digest: str  # hex
    heads: dict[str, list[int]]  # aggregate id -> [last version, its position]

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "digest": self.digest, "heads": self.heads}


@dataclass(frozen=True)
class Seal:
    seq: int
    after: LogKey
    through: LogKey
    events: int
    tenants: dict[str, dict[str, Any]]  # tenant id -> TenantRange.as_json()
    prev_digest: bytes
    digest: bytes
    sealed_at: datetime


def tenant_range(links: Iterable[Link]) -> TenantRange:
    """What a seal records of one tenant's events, given in log order."""
    hasher = hashlib.sha256()
    heads: dict[str, list[int]] = {}
    count = 0
    for found in links:
        hasher.update(found.position.to_bytes(8, "big", signed=True) + (found.hash or b""))
        heads[found.aggregate_id] = [found.version, found.position]
        count += 1
    return TenantRange(count, hasher.hexdigest(), heads)


def seal_digest(
    prev_digest: bytes, after: LogKey, through: LogKey, events: int, tenants: Mapping[str, Any]
) -> bytes:
    body = {"after": list(after), "through": list(through), "events": events, "tenants": tenants}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(prev_digest + canonical.encode()).digest()


async def read_seals(conn: AsyncConnection, *, after_seq: int = 0, limit: int = 100) -> list[Seal]:
    rows = await conn.execute(
        select(event_seals)
        .where(event_seals.c.seq > after_seq)
        .order_by(event_seals.c.seq)
        .limit(limit)
    )
    return [
        Seal(
            seq=row.seq,
            after=(row.after_txid, row.after_position),
            through=(row.through_txid, row.through_position),
            events=row.events,
            tenants=row.tenants,
            prev_digest=row.prev_digest,
            digest=row.digest,
            sealed_at=row.sealed_at,
        )
        for row in rows
    ]


async def last_seal(conn: AsyncConnection) -> Seal | None:
    rows = await conn.execute(select(event_seals.c.seq).order_by(event_seals.c.seq.desc()).limit(1))
    seq = rows.scalar()
    if seq is None:
        return None
    (found,) = await read_seals(conn, after_seq=seq - 1, limit=1)
    return found


async def seal_next(conn: AsyncConnection, *, limit: int = SEAL_LIMIT) -> Seal | None:
    """Seal the settled events after the last seal (at most `limit`), in the caller's write
    transaction; None when there is nothing new, or another process sealed the same number."""
    previous = await last_seal(conn)
    after = previous.through if previous else LOG_START
    links = await read_links(conn, after=after, limit=limit)
    if not links:
        return None
    by_tenant: dict[uuid.UUID, list[Link]] = {}
    for found in links:
        by_tenant.setdefault(found.tenant_id, []).append(found)
    tenants = {str(tenant): tenant_range(own).as_json() for tenant, own in by_tenant.items()}
    prev_digest = previous.digest if previous else GENESIS
    through = links[-1].key
    seal = Seal(
        seq=previous.seq + 1 if previous else 1,
        after=after,
        through=through,
        events=len(links),
        tenants=tenants,
        prev_digest=prev_digest,
        digest=seal_digest(prev_digest, after, through, len(links), tenants),
        sealed_at=datetime.now(UTC),
    )
    inserted = await conn.execute(
        upsert(conn, event_seals)
        .values(
            seq=seal.seq, after_txid=after[0], after_position=after[1],
            through_txid=through[0], through_position=through[1], events=seal.events,
            tenants=tenants, prev_digest=prev_digest, digest=seal.digest,
            sealed_at=seal.sealed_at,
        )
        .on_conflict_do_nothing(index_elements=[event_seals.c.seq])
    )  # fmt: skip
    if inserted.rowcount != 1:
        return None
    logger.info(
        "event log sealed",
        seal=seal.seq,
        through_position=through[1],
        events=seal.events,
        digest=seal.digest.hex(),
    )
    return seal


class EventSealer(PeriodicService):
    """A lifecycle service: seals the log every `interval` seconds while the process runs."""

    def __init__(self, database: DatabaseService, interval: float) -> None:
        super().__init__("event-sealer", "sealing the event log", retry_after=interval)
        self._database = database
        self._interval = interval

    async def run_pass(self) -> float:
        await self.seal()
        return self._interval

    async def seal(self) -> int:
        """Seal everything settled now; the number of seals written."""
        written = 0
        while True:
            async with self._database.database.transaction() as conn:
                sealed = await seal_next(conn)
            if sealed is None or sealed.events < SEAL_LIMIT:
                return written + (sealed is not None)
            written += 1
