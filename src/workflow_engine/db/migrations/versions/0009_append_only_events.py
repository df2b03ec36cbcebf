"""The event log is append-only for the tenant role: no UPDATE or DELETE, even under a policy.

Nothing the API does rewrites history; without the privilege, nothing can.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

API_ROLE = "workflow_engine_api"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if not bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE}
    ).first():
        return
    op.execute(f"REVOKE UPDATE, DELETE ON events FROM {API_ROLE}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": API_ROLE}).first():
        op.execute(f"GRANT UPDATE, DELETE ON events TO {API_ROLE}")
