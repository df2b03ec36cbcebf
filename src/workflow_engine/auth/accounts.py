"""Creating tenants and users — from the CLI, the bootstrap, and (later) the users API.

Each change is committed together with its audit event.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.auth import api_keys, store
from workflow_engine.auth.audit import RequestOrigin, record, record_user_event
from workflow_engine.auth.passwords import Passwords, password_problems
from workflow_engine.auth.permissions import Role
from workflow_engine.db import Database
from workflow_engine.errors import Conflict, InvalidInput, NotFound

logger = structlog.get_logger(__name__)

DEFAULT_TENANT = "default"
CLI_ORIGIN = RequestOrigin(client_address=None, correlation_id=None)


async def create_tenant(db: Database, name: str, *, actor: str = "cli") -> store.Tenant:
    async with db.transaction() as conn:
        return await _add_tenant(conn, name, actor)


async def create_user(
    db: Database,
    passwords: Passwords,
    *,
    tenant_name: str,
    email: str,
    password: str,
    role: Role,
    allow_weak_password: bool = False,
    actor: str = "cli",
    origin: RequestOrigin = CLI_ORIGIN,
) -> store.User:
    """Create a user in `tenant_name`. The password policy applies unless explicitly waived."""
    email, password_hash, weak = await _prepare(passwords, email, password, allow_weak_password)
    async with db.transaction() as conn:
        tenant = await store.find_tenant(conn, tenant_name)
        if tenant is None:
            raise NotFound(f"no tenant named {tenant_name!r}")
        return await _add_user(conn, tenant, email, password_hash, role, weak, actor, origin)


async def bootstrap_admin(
    db: Database, passwords: Passwords, *, email: str | None, password: str | None
) -> tuple[store.User, str | None] | None:
    """On an empty database, create tenant `default` and its first admin, in one transaction.

    Returns the admin and, when the password was generated here, that password (for the
    caller to show once on the console). Returns None when a tenant already exists.
    """
    async with db.read() as conn:
        if await store.count_tenants(conn) > 0:
            return None
    generated = None
    if email is None or password is None:
        email, generated = "admin@example.com", secrets.token_urlsafe(18)
        password = generated
    email, password_hash, weak = await _prepare(passwords, email, password, False)
    try:
        async with db.transaction() as conn:
            tenant = await _add_tenant(conn, DEFAULT_TENANT, "bootstrap")
            user = await _add_user(
                conn, tenant, email, password_hash, Role.admin, weak, "bootstrap", CLI_ORIGIN
            )
    except Conflict:
        return None  # another server process bootstrapped first
    return user, generated


async def _prepare(
    passwords: Passwords, email: str, password: str, allow_weak_password: bool
) -> tuple[str, str, bool]:
    """Validate the email and the password policy, then hash: (email, hash, weak)."""
    email = store.normalise_email(email)
    if "@" not in email or len(email) > 320:
        raise InvalidInput(f"{email!r} is not an email address")
    problems = password_problems(password, email)
    if problems and not allow_weak_password:
        raise InvalidInput("the password " + "; ".join(problems))
    if problems:
        logger.warning("weak password accepted on request", email=email, problems=problems)
    return email, await passwords.hash(password), bool(problems)


async def _add_tenant(conn: AsyncConnection, name: str, actor: str) -> store.Tenant:
    tenant = await store.create_tenant(conn, name)
    await record(
        conn,
        tenant_id=tenant.id,
        aggregate_type="tenants",
        aggregate_id=str(tenant.id),
        event_type="TenantCreated",
        actor=actor,
        origin=CLI_ORIGIN,
        data={"name": name},
    )
    return tenant


async def _add_user(
    conn: AsyncConnection,
    tenant: store.Tenant,
    email: str,
    password_hash: str,
    role: Role,
    weak: bool,
    actor: str,
    origin: RequestOrigin,
) -> store.User:
    user = await store.create_user(
        conn, tenant_id=tenant.id, email=email, password_hash=password_hash, role=role
    )
    await record_user_event(
        conn,
        tenant_id=tenant.id,
        user_id=user.id,
        event_type="UserCreated",
        actor=actor,
        origin=origin,
        data={"email": email, "role": role.value, "policy_waived": weak},
    )
    return user


async def change_user(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    actor_id: uuid.UUID,
    actor: str,
    role: Role | None,
    is_active: bool | None,
    origin: RequestOrigin,
) -> store.User:
    """Change a user's role or active state; either ends the user's current sessions.

    A role lives in the access token, so a change revokes the tokens issued before it (the
    next refresh carries the new role). Deactivation also revokes every refresh token. An
    admin cannot demote or deactivate themselves, so a tenant always keeps one admin who
    made the change.
    """
    if user_id == actor_id and (role not in (None, Role.admin) or is_active is False):
        raise Conflict("you cannot demote or deactivate yourself; ask another admin")
    async with db.tenant_transaction(tenant_id) as conn:
        user = await store.get_user(conn, tenant_id, user_id)
        if user is None:
            raise NotFound("no such user")
        changes: dict[str, Any] = {}
        if role is not None and role != user.role:
            changes["role"] = role.value
        if is_active is not None and is_active != user.is_active:
            changes["is_active"] = is_active
        if not changes:
            return user
        await store.update_user(
            conn, tenant_id, user_id, role=role, is_active=is_active, revoke_tokens=True
        )
        if is_active is False:
            await store.revoke_user_refresh_tokens(conn, user_id)
        lost_admin = user.role is Role.admin and role not in (None, Role.admin)
        if is_active is False or lost_admin:
            await api_keys.revoke_keys_created_by(
                conn,
                tenant_id=tenant_id,
                creator=f"user:{user_id}",
                reason="creator deactivated" if is_active is False else "creator demoted",
                actor=actor,
                origin=origin,
            )
        event_type = "UserChanged"
        if changes.get("is_active") is False:
            event_type = "UserDeactivated"
        elif changes.get("is_active") is True:
            event_type = "UserReactivated"
        await record_user_event(
            conn,
            tenant_id=tenant_id,
            user_id=user_id,
            event_type=event_type,
            actor=actor,
            origin=origin,
            data=changes,
        )
        updated = await store.get_user(conn, tenant_id, user_id)
    assert updated is not None
    return updated


async def create_user_in_tenant(
    db: Database,
    passwords: Passwords,
    *,
    tenant_id: uuid.UUID,
    email: str,
    password: str,
    role: Role,
    actor: str,
    origin: RequestOrigin,
) -> store.User:
    """The users API's create: the caller's tenant, and the password policy always applies."""
    email, password_hash, weak = await _prepare(passwords, email, password, False)
    async with db.tenant_transaction(tenant_id) as conn:
        tenant = await store.get_tenant(conn, tenant_id)
        if tenant is None:
            raise NotFound("no such tenant")
        return await _add_user(conn, tenant, email, password_hash, role, weak, actor, origin)
