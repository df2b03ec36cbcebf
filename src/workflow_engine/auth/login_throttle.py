"""The login backoff: repeated failures make an account wait, per client and overall.

- After `after` consecutive failures for one account from one client address, that pair waits
  `base` seconds, doubling with each further failure up to `maximum`. A success resets it.
  Other addresses are unaffected...
- ...until the account sees `account_limit` failures within `account_window`: then every
  address waits `account_lock`.

Counters live in the database (one upsert per failure), so the limits hold however many server
processes run. A refused attempt is not counted and costs no password hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, false, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import login_throttle

ACCOUNT_WIDE = "*"


@dataclass(frozen=True)
class ThrottlePolicy:
    after: int = 5
    base: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=15)
    account_limit: int = 50
    account_window: timedelta = timedelta(hours=1)
    account_lock: timedelta = timedelta(minutes=15)


def subject_of(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _address(client_address: str | None) -> str:
    return (client_address or "unknown")[:64]


async def wait_needed(
    conn: AsyncConnection, email: str, client_address: str | None, now: datetime
) -> timedelta | None:
    """How long this client must wait before trying this account again, if at all."""
    rows = await conn.execute(
        select(login_throttle.c.blocked_until).where(
            login_throttle.c.subject == subject_of(email),
            login_throttle.c.client_address.in_([_address(client_address), ACCOUNT_WIDE]),
            login_throttle.c.blocked_until > now,
        )
    )
    waits = [blocked_until - now for blocked_until in rows.scalars()]
    return max(waits) if waits else None


async def record_failure(
    conn: AsyncConnection,
    email: str,
    client_address: str | None,
    now: datetime,
    policy: ThrottlePolicy,
) -> None:
    subject = subject_of(email)
    pair_failures = await _count(conn, subject, _address(client_address), now, window=None)
    if pair_failures >= policy.after:
        delay = min(policy.base * 2 ** (pair_failures - policy.after), policy.maximum)
        await _block(conn, subject, _address(client_address), now + delay)
    account_failures = await _count(conn, subject, ACCOUNT_WIDE, now, policy.account_window)
    if account_failures >= policy.account_limit:
        await _block(conn, subject, ACCOUNT_WIDE, now + policy.account_lock)


async def record_success(conn: AsyncConnection, email: str, client_address: str | None) -> None:
    await conn.execute(
        delete(login_throttle).where(
            login_throttle.c.subject == subject_of(email),
            login_throttle.c.client_address == _address(client_address),
        )
    )


async def _count(
    conn: AsyncConnection, subject: str, address: str, now: datetime, window: timedelta | None
) -> int:
    """Add one failure atomically (an upsert); a counter whose window has passed restarts."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    values = insert(login_throttle).values(
        subject=subject, client_address=address, failures=1, window_started_at=now
    )
    expired: ColumnElement[bool] = (
        login_throttle.c.window_started_at < now - window if window is not None else false()
    )
    stmt = values.on_conflict_do_update(
        index_elements=[login_throttle.c.subject, login_throttle.c.client_address],
        set_={
            "failures": case((expired, 1), else_=login_throttle.c.failures + 1),
            "window_started_at": case((expired, now), else_=login_throttle.c.window_started_at),
        },
    ).returning(login_throttle.c.failures)
    return int((await conn.execute(stmt)).scalar_one())


async def _block(conn: AsyncConnection, subject: str, address: str, until: datetime) -> None:
    await conn.execute(
        update(login_throttle)
        .where(login_throttle.c.subject == subject, login_throttle.c.client_address == address)
        .values(blocked_until=until)
    )
