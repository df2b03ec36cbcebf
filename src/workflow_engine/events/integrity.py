"""Verifying the event log: every hash chain, then every seal (`workflow-engine events verify`).

A verification reads the whole log (or one tenant's part) twice, a page at a time: once in
aggregate order, recomputing each event's hash from its stored content and checking it links
to its predecessor, and once seal by seal, recomputing each tenant's digest over the range the
seal covers. It writes nothing, so it can run beside a live server; events appended while it
reads and not sealed yet are checked by their chain only.

What it reports, each naming the event (position, tenant, aggregate, version) where it can:
- `altered`: an event whose content no longer gives its hash, or which has none;
- `inserted`: an event that breaks its aggregate's chain, or lies in a sealed range that did
  not hold it;
- `deleted`: a version missing from an aggregate, or an event a seal holds that is gone (the
  last events of an aggregate, a whole aggregate);
- `reordered`: events whose positions disagree with their versions, or with a seal;
- `seal`: a seal row edited, removed from the middle, or out of its chain.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.events.chain import GENESIS
from workflow_engine.events.seals import Seal, read_seals, seal_digest, tenant_range
from workflow_engine.events.store import Link, StoredHash, read_chain, read_links

PAGE = 2_000
_NEVER = 1 << 62  # sorts problems without a position last


@dataclass(frozen=True)
class Problem:
    kind: str  # altered, inserted, deleted, reordered, seal
    detail: str
    position: int | None = None

    def __str__(self) -> str:
        where = f"position {self.position}: " if self.position is not None else ""
        return f"{self.kind}: {where}{self.detail}"


@dataclass
class Verification:
    events: int = 0
    aggregates: int = 0
    seals: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        ordered = sorted(self.problems, key=lambda p: _NEVER if p.position is None else p.position)
        return ordered[0] if ordered else None


async def verify_log(conn: AsyncConnection, tenant_id: uuid.UUID | None = None) -> Verification:
    """Check the chains and seals of the whole log, or of one tenant's events."""
    report = Verification()
    await _check_chains(conn, tenant_id, report)
    await _check_seals(conn, tenant_id, report)
    return report


def _aggregate(stored: StoredHash) -> str:
    return f"tenant {stored.tenant_id}, aggregate {stored.aggregate_id!r}"


def _where(stored: StoredHash) -> str:
    return f"{_aggregate(stored)}, version {stored.version}"


async def _check_chains(
    conn: AsyncConnection, tenant_id: uuid.UUID | None, report: Verification
) -> None:
    previous: StoredHash | None = None
    after = None
    while page := await read_chain(conn, after=after, tenant_id=tenant_id, limit=PAGE):
        for stored in page:
            same = previous is not None and previous.chain_key[:2] == stored.chain_key[:2]
            _check_event(stored, previous if same else None, report)
            report.events += 1
            report.aggregates += not same
            previous = stored
        after = page[-1].chain_key


def _check_event(stored: StoredHash, before: StoredHash | None, report: Verification) -> None:
    problems = report.problems
    expected_version = before.version + 1 if before is not None else 1
    if stored.version != expected_version:
        missing = f"versions {expected_version}..{stored.version - 1}"
        if stored.version == expected_version + 1:
            missing = f"version {expected_version}"
        gone = f"{missing} of {_aggregate(stored)} missing before version {stored.version}"
        problems.append(Problem("deleted", gone, stored.position))
    elif stored.prev_hash != (before.hash if before is not None else GENESIS):
        problems.append(Problem(
            "inserted", f"{_where(stored)} does not follow the event before it in the chain",
            stored.position,
        ))  # fmt: skip
    if stored.hash is None or stored.hash != stored.recomputed:
        problems.append(Problem(
            "altered", f"{_where(stored)}: its content does not give its stored hash",
            stored.position,
        ))  # fmt: skip
    if before is not None and stored.position < before.position:
        problems.append(Problem(
            "reordered", f"{_where(stored)} comes before version {before.version} "
            f"(position {before.position}) in the log", stored.position,
        ))  # fmt: skip


async def _check_seals(
    conn: AsyncConnection, tenant_id: uuid.UUID | None, report: Verification
) -> None:
    prev_digest, expected_seq = GENESIS, 1
    # Per tenant, each aggregate's last version sealed so far.
    sealed: dict[str, dict[str, int]] = {}
    after_seq = 0
    while seals := await read_seals(conn, after_seq=after_seq):
        for seal in seals:
            report.seals += 1
            if seal.seq != expected_seq:
                report.problems.append(
                    Problem("seal", f"seals {expected_seq}..{seal.seq - 1} are missing")
                )
            if seal.prev_digest != prev_digest or seal.digest != seal_digest(
                seal.prev_digest, seal.after, seal.through, seal.events, seal.tenants
            ):
                edited = f"seal {seal.seq} was edited or does not follow seal {seal.seq - 1}"
                report.problems.append(Problem("seal", edited))
            links = await _links_in(conn, seal, tenant_id)
            _compare(seal, links, tenant_id, sealed, report)
            prev_digest, expected_seq = seal.digest, seal.seq + 1
        after_seq = seals[-1].seq


async def _links_in(
    conn: AsyncConnection, seal: Seal, tenant_id: uuid.UUID | None
) -> dict[str, list[Link]]:
    by_tenant: dict[str, list[Link]] = {}
    after = seal.after
    while page := await read_links(
        conn, after=after, through=seal.through, tenant_id=tenant_id, limit=PAGE
    ):
        for found in page:
            by_tenant.setdefault(str(found.tenant_id), []).append(found)
        after = page[-1].key
    return by_tenant


def _compare(
    seal: Seal,
    links: dict[str, list[Link]],
    tenant_id: uuid.UUID | None,
    sealed: dict[str, dict[str, int]],
    report: Verification,
) -> None:
    tenants = set(links) | (
        {str(tenant_id)} & set(seal.tenants) if tenant_id is not None else set(seal.tenants)
    )
    for tenant in sorted(tenants):
        found = links.get(tenant, [])
        recorded = seal.tenants.get(tenant, {"events": 0, "digest": None, "heads": {}})
        heads: dict[str, list[int]] = recorded["heads"]
        known = sealed.setdefault(tenant, {})
        if tenant_range(found).digest != recorded["digest"]:
            _explain(seal, tenant, found, heads, known, report)
        for aggregate, (version, _position) in heads.items():
            known[aggregate] = version


def _explain(
    seal: Seal,
    tenant: str,
    found: Iterable[Link],
    heads: dict[str, list[int]],
    known: dict[str, int],
    report: Verification,
) -> None:
    """Name what differs between a seal's record of a tenant's events and the log now."""
    expected = {
        (aggregate, version)
        for aggregate, (last, _position) in heads.items()
        for version in range(known.get(aggregate, 0) + 1, last + 1)
    }
    present = {(link.aggregate_id, link.version): link for link in found}
    named = False
    for aggregate, version in sorted(expected - set(present)):
        named = True
        report.problems.append(Problem(
            "deleted", f"tenant {tenant}, aggregate {aggregate!r}, version {version}, sealed "
            f"in seal {seal.seq}, is gone",
        ))  # fmt: skip
    for key in sorted(set(present) - expected):
        named = True
        stray = present[key]
        report.problems.append(Problem(
            "inserted", f"tenant {tenant}, aggregate {key[0]!r}, version {key[1]} lies in the "
            f"range of seal {seal.seq}, which did not hold it", stray.position,
        ))  # fmt: skip
    for aggregate, (version, position) in heads.items():
        moved = present.get((aggregate, version))
        if moved is not None and moved.position != position:
            named = True
            report.problems.append(Problem(
                "reordered", f"tenant {tenant}, aggregate {aggregate!r}, version {version} was "
                f"sealed at position {position} (seal {seal.seq})", moved.position,
            ))  # fmt: skip
    if not named:
        report.problems.append(Problem(
            "altered", f"tenant {tenant}: events in the range of seal {seal.seq} (positions "
            f"after {seal.after[1]} through {seal.through[1]}) were rewritten since it was sealed",
        ))  # fmt: skip
