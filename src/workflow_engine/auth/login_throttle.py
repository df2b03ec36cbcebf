"""The login backoff: repeated failures make an account wait, per client and overall.

- After `after` consecutive failures for one account from one client address, that pair waits
  `base` seconds, doubling with each further failure up to `maximum`. A success resets it.
  Other addresses are unaffected...
- ...until the account sees `account_limit` failures within `account_window`: then every
  address waits `account_lock`.

Counters live in the database (one atomic upsert per attempt), so the limits hold however many
server processes run. An attempt is counted *before* its password is checked (`admit`), so
parallel attempts cannot all pass a check made before any of them failed; a success takes its
count back (`forgive`). A refused attempt is not counted and costs no password hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, false, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.db.tables import login_throttle
from workflow_engine.db.upsert import upsert

ACCOUNT_WIDE = "*"
# 2**40 base intervals exceed any sensible maximum; capping the exponent keeps the arithmetic
# finite (an uncapped 2**n overflows timedelta after a few dozen failures).
_MAX_EXPONENT = 40


@dataclass(frozen=True)
class ThrottlePolicy:
    after: int = 5
    base: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=15)
    account_limit: int = 50
    account_window: timedelta = timedelta(hours=1)
    account_lock: timedelta = timedelta(minutes=15)


class LoginThrottled(Exception):
    """This client must wait before trying this account again."""

    def __init__(self, wait: timedelta) -> None:
        super().__init__(f"wait {wait.total_seconds():.3f} s")
        self.wait = wait


def subject_of(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _address(client_address: str | None) -> str:
    return (client_address or "unknown")[:64]


async def admit(
    conn: AsyncConnection,
    email: str,
    client_address: str | None,
    now: datetime,
    policy: ThrottlePolicy,
) -> None:
    """Count this attempt as a failure before its password is checked, or refuse it.

    Raises `LoginThrottled` when the pair or the account must wait. Run it in a write
    transaction of its own: the refusal rolls the transaction back, so it is not counted.
    """
    subject, address = subject_of(email), _address(client_address)
    pair_failures, pair_blocked = await _bump(conn, subject, address, now, window=None)
    account_failures, account_blocked = await _bump(
        conn, subject, ACCOUNT_WIDE, now, policy.account_window
    )
    waits = [until - now for until in (pair_blocked, account_blocked) if until and until > now]
    if waits:
        raise LoginThrottled(max(waits))
    if pair_failures >= policy.after:
        exponent = min(pair_failures - policy.after, _MAX_EXPONENT)
        await _block(conn, subject, address, now + min(policy.base * 2**exponent, policy.maximum))
    if account_failures >= policy.account_limit:
        await _block(conn, subject, ACCOUNT_WIDE, now + policy.account_lock)


async def forgive(conn: AsyncConnection, email: str, client_address: str | None) -> None:
    """A success: the pair starts afresh, and the account takes back this attempt's count."""
    subject = subject_of(email)
    await conn.execute(
        delete(login_throttle).where(
            login_throttle.c.subject == subject,
            login_throttle.c.client_address == _address(client_address),
        )
    )
    await conn.execute(
        update(login_throttle)
        .where(
            login_throttle.c.subject == subject,
            login_throttle.c.client_address == ACCOUNT_WIDE,
            login_throttle.c.failures > 0,
        )
        .values(failures=login_throttle.c.failures - 1)
    )


async def _bump(
    conn: AsyncConnection, subject: str, address: str, now: datetime, window: timedelta | None
) -> tuple[int, datetime | None]:
    """Add one to a counter atomically; a counter whose window has passed restarts.
    Returns the new count and the block in force."""
    values = upsert(conn, login_throttle).values(
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
    ).returning(login_throttle.c.failures, login_throttle.c.blocked_until)
    row = (await conn.execute(stmt)).one()
    blocked_until: datetime | None = row.blocked_until
    return int(row.failures), blocked_until


async def _block(conn: AsyncConnection, subject: str, address: str, until: datetime) -> None:
    await conn.execute(
        update(login_throttle)
        .where(login_throttle.c.subject == subject, login_throttle.c.client_address == address)
        .values(blocked_until=until)
    )
