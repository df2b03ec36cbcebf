"""Row-level security on PostgreSQL: the second wall between tenants (pitfall 3 in
docs/architecture.md).

Tenant-scoped transactions run as the role `workflow_engine_api` (`SET LOCAL ROLE`) with the
tenant in `app.tenant_id`; a policy on every tenant table lets that role see and write only
the tenant's rows, whatever the query says. Superusers and table owners bypass policies, so
the connecting role itself does the cross-tenant work (login, token checks, the worker) and
the policies bind only the API's tenant work. Creating the role needs CREATEROLE; without it
the migration leaves RLS off and the server says so in `/health/detailed`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

API_ROLE = "workflow_engine_api"
# table -> the column holding its tenant
TENANT_TABLES = {
    "tenants": "id",
    "users": "tenant_id",
    "refresh_tokens": "tenant_id",
    "revoked_tokens": "tenant_id",
    "api_keys": "tenant_id",
    "events": "tenant_id",
}
_CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role_exists = bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE}
    ).first()
    if not role_exists:
        may_create = bind.execute(
            sa.text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        ).scalar()
        if not may_create:
            return  # RLS stays off; /health/detailed reports it
        # Roles are cluster-wide: another database may have created it meanwhile.
        op.execute(
            f"DO $$ BEGIN CREATE ROLE {API_ROLE} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    op.execute(f"GRANT {API_ROLE} TO current_user")
    schema = _schema(bind)
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {API_ROLE}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {API_ROLE}"
    )
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {API_ROLE}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {API_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {API_ROLE}"
    )
    for table, column in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {API_ROLE} "
            f"USING ({column} = {_CURRENT_TENANT}) WITH CHECK ({column} = {_CURRENT_TENANT})"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def _schema(bind: sa.engine.Connection) -> str:
    name = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + str(name).replace('"', '""') + '"'
