"""API keys for machines: made, listed, revoked and checked.

A key is `wek_<prefix>_<secret>` with 256 bits of randomness. It is shown once; the database
keeps its prefix (to find the row) and a SHA-256 digest (to prove it). A fast digest is right
here — a slow password hash per request would add tens of milliseconds to every call and buys
nothing against a key that cannot be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth.audit import RequestOrigin, record
from workflow_engine.auth.permissions import Role
from workflow_engine.db import Database
from workflow_engine.db.tables import api_keys
from workflow_engine.errors import NotFound

KEY_MARKER = "wek_"
AGGREGATE = "api_keys"
# Recording every use would turn each request into a write; once a minute is enough to answer
# "is this key still used?".
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    key_hash: str

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> ApiKey:
        m = row._mapping
        return cls(
            id=m["id"],
            tenant_id=m["tenant_id"],
            name=m["name"],
            prefix=m["prefix"],
            role=Role(m["role"]),
            created_by=m["created_by"],
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            last_used_at=m["last_used_at"],
            revoked_at=m["revoked_at"],
            key_hash=m["key_hash"],
        )

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_MARKER)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)  # the secret part may itself contain "_"
    if len(parts) != 3 or parts[0] + "_" != KEY_MARKER or len(parts[1]) != 12:
        return None
    return parts[1]


async def create_api_key(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    name: str,
    role: Role,
    expires_at: datetime | None,
    actor: str,
    origin: RequestOrigin,
) -> tuple[ApiKey, str]:
    """Make a key; returns it and its secret value, which is never retrievable again."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_MARKER}{prefix}_{secrets.token_urlsafe(32)}"
    row = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "name": name,
        "prefix": prefix,
        "key_hash": _digest(key),
        "role": role.value,
        "created_by": actor,
        "created_at": datetime.now(UTC),
        "expires_at": expires_at,
    }
    async with db.tenant_transaction(tenant_id) as conn:
        await conn.execute(api_keys.insert().values(**row))
        await _record_key_event(
            conn,
            tenant_id=tenant_id,
            key_id=row["id"],
            event_type="ApiKeyCreated",
            actor=actor,
            origin=origin,
            data={"name": name, "role": role.value, "prefix": prefix},
        )
        stored = await get_api_key(conn, tenant_id, row["id"])  # type: ignore[arg-type]
    assert stored is not None
    return stored, key


async def list_api_keys(
    conn: AsyncConnection, tenant_id: uuid.UUID, *, after_id: uuid.UUID | None, limit: int
) -> list[ApiKey]:
    stmt = select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.id)
    if after_id is not None:
        stmt = stmt.where(api_keys.c.id > after_id)
    return [ApiKey.from_row(row) for row in await conn.execute(stmt.limit(limit))]


async def revoke_api_key(
    db: Database, *, tenant_id: uuid.UUID, key_id: uuid.UUID, actor: str, origin: RequestOrigin
) -> None:
    async with db.tenant_transaction(tenant_id) as conn:
        key = await get_api_key(conn, tenant_id, key_id)
        if key is None:
            raise NotFound("no such API key")
        if key.revoked_at is not None:
            return
        await conn.execute(
            update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=datetime.now(UTC))
        )
        await _record_key_event(
            conn,
            tenant_id=tenant_id,
            key_id=key_id,
            event_type="ApiKeyRevoked",
            actor=actor,
            origin=origin,
            data={"name": key.name},
        )


async def find_by_key(conn: AsyncConnection, key: str) -> ApiKey | None:
    """The stored key matching `key` exactly (digest compared in constant time), or None."""
    prefix = _prefix_of(key)
    if prefix is None:
        return None
    row = (await conn.execute(select(api_keys).where(api_keys.c.prefix == prefix))).first()
    if row is None:
        return None
    stored = ApiKey.from_row(row)
    return stored if hmac.compare_digest(stored.key_hash, _digest(key)) else None


async def touch(conn: AsyncConnection, key: ApiKey, now: datetime) -> None:
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        await conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(last_used_at=now))


async def get_api_key(
    conn: AsyncConnection, tenant_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    row = (
        await conn.execute(
            select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
        )
    ).first()
    return ApiKey.from_row(row) if row else None


async def revoke_keys_created_by(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    creator: str,
    reason: str,
    actor: str,
    origin: RequestOrigin,
) -> int:
    """Revoke every live key `creator` issued (inside the caller's transaction).

    A key must not outlive its creator's authority: when an admin is deactivated or loses the
    admin role, the keys they issued go too."""
    now = datetime.now(UTC)
    rows = await conn.execute(
        update(api_keys)
        .where(
            api_keys.c.tenant_id == tenant_id,
            api_keys.c.created_by == creator,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .returning(api_keys.c.id, api_keys.c.name)
    )
    revoked = rows.all()
    for key_id, name in revoked:
        await _record_key_event(
            conn,
            tenant_id=tenant_id,
            key_id=key_id,
            event_type="ApiKeyRevoked",
            actor=actor,
            origin=origin,
            data={"name": name, "reason": reason},
        )
    return len(revoked)


async def _record_key_event(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    key_id: object,
    event_type: str,
    actor: str,
    origin: RequestOrigin,
    data: dict[str, Any],
) -> None:
    """An audit fact about one key, on that key's aggregate."""
    await record(
        conn,
        tenant_id=tenant_id,
        aggregate_type=AGGREGATE,
        aggregate_id=str(key_id),
        event_type=event_type,
        actor=actor,
        origin=origin,
        data=data,
    )
