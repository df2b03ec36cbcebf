"""What a migration does to make a new table a tenant table on PostgreSQL.

Tenant transactions run as the role `workflow_engine_api` (migration 0005); a table they touch
needs that role's privileges and a policy limiting it to the current tenant's rows (the
second wall between tenants). Without the role (no CREATEROLE when 0005 ran) this does
nothing, and `/health/detailed` reports row-level security as off.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from workflow_engine.db.database import TENANT_ROLE

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def tenant_role_exists(bind: sa.engine.Connection) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": TENANT_ROLE})
    return found.first() is not None


def confine_to_tenants(
    op: Any, *tables: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE"
) -> None:
    """Grant the tenant role `privileges` on `tables` and bind it to the tenant's rows."""
    if not tenant_role_exists(op.get_bind()):
        return
    for table in tables:
        op.execute(f"GRANT {privileges} ON {table} TO {TENANT_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {TENANT_ROLE} "
            f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
