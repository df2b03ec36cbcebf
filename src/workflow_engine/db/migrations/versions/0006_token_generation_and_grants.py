"""Token generations instead of timestamps; narrower grants for the tenant role.

- `users.token_generation` replaces `users.tokens_valid_after`: a role change or deactivation
  increments it atomically, and an access token is valid only for the generation it was issued
  with — no clock comparison, so no race between a login and a demotion.
- The tenant role keeps privileges only on the tenant tables (each has a policy), not on
  `login_throttle` or `alembic_version`, and no longer receives privileges on future tables by
  default: a migration that adds a tenant table grants them together with its policy.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

API_ROLE = "workflow_engine_api"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0")
        )
        batch.drop_column("tokens_valid_after")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role_exists = sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r")
    if not bind.execute(role_exists, {"r": API_ROLE}).first():
        return
    schema = '"' + str(bind.execute(sa.text("SELECT current_schema()")).scalar_one()) + '"'
    op.execute(f"REVOKE ALL ON login_throttle, alembic_version FROM {API_ROLE}")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {API_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"REVOKE USAGE, SELECT ON SEQUENCES FROM {API_ROLE}"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column(
                "tokens_valid_after",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            )
        )
        batch.drop_column("token_generation")
