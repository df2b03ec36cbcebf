"""PostgreSQL's row-level security holds even when the application's tenant filter is missing.

These queries deliberately leave out `WHERE tenant_id = ...`: inside a tenant-confined
transaction, running as the non-superuser role `workflow_engine_api`, the database alone keeps
the other tenant's rows out of sight and out of reach.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from workflow_engine.auth import accounts, api_keys
from workflow_engine.auth.passwords import HashParameters, Passwords
from workflow_engine.auth.permissions import Role
from workflow_engine.db import Database
from workflow_engine.db.tables import api_keys as api_keys_table
from workflow_engine.db.tables import events, tenants, users

CHEAP = Passwords(HashParameters(time_cost=1, memory_kib=1024, parallelism=1))


async def _tenant_with_data(db: Database) -> uuid.UUID:
    tenant = await accounts.create_tenant(db, f"rls-{uuid.uuid4().hex[:8]}")
    await accounts.create_user(
        db, CHEAP, tenant_name=tenant.name, email=f"{uuid.uuid4().hex[:8]}@example.com",
        password="correct horse battery staple", role=Role.viewer,
    )  # fmt: skip
    await api_keys.create_api_key(
        db, tenant_id=tenant.id, name="k", role=Role.service, expires_at=None, actor="test",
        origin=accounts.CLI_ORIGIN,
    )  # fmt: skip
    return tenant.id


async def test_unfiltered_queries_see_only_the_confined_tenant(
    postgres_database: Database,
) -> None:
    db = postgres_database
    assert await db.detect_row_level_security()
    mine = await _tenant_with_data(db)
    await _tenant_with_data(db)  # another tenant, which must stay invisible
    async with db.tenant_read(mine) as conn:
        role = (
            await conn.execute(
                text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                     "WHERE rolname = current_user")
            )
        ).one()  # fmt: skip
        assert tuple(role) == ("workflow_engine_api", False, False)
        for table in (users, api_keys_table, events):
            seen = set((await conn.execute(select(table.c.tenant_id))).scalars())
            assert seen == {mine}, table.name
        assert set((await conn.execute(select(tenants.c.id))).scalars()) == {mine}


async def test_writes_to_another_tenant_are_refused_or_touch_nothing(
    postgres_database: Database,
) -> None:
    db = postgres_database
    assert await db.detect_row_level_security()
    mine, theirs = await _tenant_with_data(db), await _tenant_with_data(db)
    async with db.tenant_transaction(mine) as conn:
        changed = await conn.execute(
            update(users).where(users.c.tenant_id == theirs).values(role="admin")
        )
        assert changed.rowcount == 0
    now = datetime.now(UTC)
    foreign_user = users.insert().values(
        id=uuid.uuid4(),
        tenant_id=theirs,
        email=f"{uuid.uuid4().hex}@example.com",
        password_hash="x",
        role="admin",
        is_active=True,
        token_generation=0,
        created_at=now,
        updated_at=now,
    )
    async with db.tenant_transaction(mine) as conn:
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(foreign_user)
    async with db.read() as conn:  # the system path still sees both, and nothing changed
        roles = (
            await conn.execute(select(users.c.role).where(users.c.tenant_id == theirs))
        ).scalars()
        assert set(roles) == {"viewer"}
        count = (
            await conn.execute(
                select(func.count()).select_from(users).where(users.c.tenant_id.in_([mine, theirs]))
            )
        ).scalar_one()
        assert count == 2


async def test_every_tenant_table_has_a_policy_and_nothing_else_is_granted(
    postgres_database: Database,
) -> None:
    """A new table with a tenant column and no policy would silently be open across tenants."""
    async with postgres_database.read() as conn:
        tenant_tables = set(
            (
                await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.columns "
                        "WHERE column_name = 'tenant_id' AND table_schema = current_schema()"
                    )
                )
            ).scalars()
        ) | {"tenants"}
        protected = set(
            (
                await conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid "
                        "WHERE c.relrowsecurity AND p.polname = 'tenant_isolation'"
                    )
                )
            ).scalars()
        )
        granted = set(
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT table_name FROM information_schema.role_table_grants "
                        "WHERE grantee = 'workflow_engine_api'"
                    )
                )
            ).scalars()
        )
    assert tenant_tables <= protected, tenant_tables - protected
    assert granted <= protected, granted - protected
