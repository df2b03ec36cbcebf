"""Every statement on the identity tables: tenants, users, refresh tokens, revoked tokens.

All functions take the caller's connection, so that a change and its audit event commit
together. Reads of tenant-owned rows always filter by tenant: an id from another tenant finds
nothing, exactly like an id that does not exist.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Row, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth.permissions import Role
from workflow_engine.db.tables import refresh_tokens, revoked_tokens, tenants, users
from workflow_engine.db.upsert import upsert
from workflow_engine.errors import Conflict


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: Role
    is_active: bool
    password_hash: str
    token_generation: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> User:
        m = row._mapping
        return cls(
            id=m["id"],
            tenant_id=m["tenant_id"],
            email=m["email"],
            role=Role(m["role"]),
            is_active=m["is_active"],
            password_hash=m["password_hash"],
            token_generation=m["token_generation"],
            created_at=m["created_at"],
        )


def normalise_email(email: str) -> str:
    return email.strip().lower()


def token_digest(token: str) -> str:
    """Refresh tokens are random and long: a fast digest is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- tenants ------------------------------------------------------------------------------


async def create_tenant(conn: AsyncConnection, name: str) -> Tenant:
    tenant = Tenant(uuid.uuid4(), name, datetime.now(UTC))
    try:
        async with conn.begin_nested():
            await conn.execute(
                tenants.insert().values(id=tenant.id, name=name, created_at=tenant.created_at)
            )
    except IntegrityError:
        raise Conflict(f"a tenant named {name!r} already exists") from None
    return tenant


async def find_tenant(conn: AsyncConnection, name: str) -> Tenant | None:
    row = (await conn.execute(select(tenants).where(tenants.c.name == name))).first()
    return Tenant(row.id, row.name, row.created_at) if row else None


async def get_tenant(conn: AsyncConnection, tenant_id: uuid.UUID) -> Tenant | None:
    row = (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).first()
    return Tenant(row.id, row.name, row.created_at) if row else None


async def count_tenants(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(tenants))).scalar_one())


# --- users --------------------------------------------------------------------------------


async def create_user(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, email: str, password_hash: str, role: Role
) -> User:
    now = datetime.now(UTC)
    values = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "email": normalise_email(email),
        "password_hash": password_hash,
        "role": role.value,
        "is_active": True,
        "token_generation": 0,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(**values))
    except IntegrityError:
        raise Conflict("a user with this email already exists") from None
    return User(
        id=values["id"],  # type: ignore[arg-type]
        tenant_id=tenant_id,
        email=values["email"],  # type: ignore[arg-type]
        role=role,
        is_active=True,
        password_hash=password_hash,
        token_generation=0,
        created_at=now,
    )


async def find_user_by_email(conn: AsyncConnection, email: str) -> User | None:
    """Emails are unique across tenants, so login needs no tenant."""
    row = (await conn.execute(select(users).where(users.c.email == normalise_email(email)))).first()
    return User.from_row(row) if row else None


async def get_user(conn: AsyncConnection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    row = (
        await conn.execute(
            select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        )
    ).first()
    return User.from_row(row) if row else None


async def lock_user(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    """Re-read a user inside a write transaction, holding it against concurrent changes until
    commit (FOR SHARE on PostgreSQL; SQLite's write transaction already excludes writers), so
    that a token issued here carries the role and generation that are current at commit."""
    stmt = select(users).where(users.c.id == user_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    row = (await conn.execute(stmt)).first()
    return User.from_row(row) if row else None


async def set_password_hash(conn: AsyncConnection, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, updated_at=datetime.now(UTC))
    )


# --- refresh tokens -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRefreshToken:
    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


async def insert_refresh_token(
    conn: AsyncConnection,
    *,
    token: str,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    expires_at: datetime,
) -> None:
    await conn.execute(
        refresh_tokens.insert().values(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            user_id=user_id,
            family_id=family_id,
            token_hash=token_digest(token),
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
    )


async def find_refresh_token(conn: AsyncConnection, token: str) -> StoredRefreshToken | None:
    row = (
        await conn.execute(
            select(refresh_tokens).where(refresh_tokens.c.token_hash == token_digest(token))
        )
    ).first()
    if row is None:
        return None
    return StoredRefreshToken(
        row.id, row.tenant_id, row.user_id, row.family_id, row.expires_at, row.used_at,
        row.revoked_at,
    )  # fmt: skip


async def mark_refresh_token_used(conn: AsyncConnection, token_id: uuid.UUID) -> bool:
    """Consume a refresh token. False when another request consumed it first (a reuse)."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.id == token_id,
            refresh_tokens.c.used_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=datetime.now(UTC))
    )
    return result.rowcount == 1


async def revoke_refresh_family(conn: AsyncConnection, family_id: uuid.UUID) -> int:
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(result.rowcount)


# --- revoked access tokens ----------------------------------------------------------------


async def revoke_access_token(
    conn: AsyncConnection, *, jti: str, tenant_id: uuid.UUID, expires_at: datetime
) -> None:
    # Two logouts with one token at once: the second finds the row and does nothing.
    await conn.execute(
        upsert(conn, revoked_tokens)
        .values(jti=jti, tenant_id=tenant_id, expires_at=expires_at, revoked_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[revoked_tokens.c.jti])
    )


@dataclass(frozen=True)
class TokenStanding:
    """What the database says about an access token right now."""

    user_active: bool
    token_generation: int
    revoked: bool  # the token itself was logged out, or its session was ended


async def token_standing(
    conn: AsyncConnection,
    *,
    jti: str,
    session_id: uuid.UUID,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
) -> TokenStanding:
    token_revoked = exists().where(revoked_tokens.c.jti == jti)
    # Logout and refresh-token reuse revoke the whole session (the refresh family): every
    # access token issued in it goes with it, not only the one presented.
    session_revoked = exists().where(
        refresh_tokens.c.family_id == session_id, refresh_tokens.c.revoked_at.is_not(None)
    )
    row = (
        await conn.execute(
            select(
                users.c.is_active,
                users.c.token_generation,
                (token_revoked | session_revoked).label("revoked"),
            ).where(users.c.id == user_id, users.c.tenant_id == tenant_id)
        )
    ).first()
    if row is None:
        return TokenStanding(user_active=False, token_generation=-1, revoked=True)
    return TokenStanding(bool(row.is_active), int(row.token_generation), bool(row.revoked))


async def list_users(
    conn: AsyncConnection, tenant_id: uuid.UUID, *, after_email: str | None, limit: int
) -> list[User]:
    """A page of the tenant's users in email order (keyset pagination: stable under inserts)."""
    stmt = select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.email)
    if after_email is not None:
        stmt = stmt.where(users.c.email > after_email)
    return [User.from_row(row) for row in await conn.execute(stmt.limit(limit))]


async def update_user(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
    revoke_tokens: bool = False,
) -> None:
    values: dict[str, object] = {"updated_at": datetime.now(UTC)}
    if role is not None:
        values["role"] = role.value
    if is_active is not None:
        values["is_active"] = is_active
    if revoke_tokens:
        values["token_generation"] = users.c.token_generation + 1
    await conn.execute(
        update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(values)
    )


async def revoke_user_refresh_tokens(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(result.rowcount)
