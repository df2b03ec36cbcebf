"""A counter that moves whenever a credential loses standing, kept by triggers.

Every process caches what it learnt about access tokens and API keys and must drop it when one
is revoked: `credential_epoch.epoch` is incremented by the database itself whenever a user's
role, active state or token generation changes, an access token is logged out, a session (a
refresh family) is revoked, or an API key is revoked, changed or deleted — by our code, by the
CLI in another process, or by an operator's hand-written SQL alike. Processes poll the one row
(and on PostgreSQL are woken by `NOTIFY workflow_engine_credentials`), and clear their caches
and re-check their open streams when it moves (`auth/credential_watch.py`).

On PostgreSQL the trigger function runs as its owner: tenant transactions (a logout, a
deactivation) move the counter without their role holding any privilege on it. The triggers
are deferred constraint triggers: the counter's row is locked only
at commit, after every other lock the transaction takes, so two transactions that revoke
credentials at once queue for a moment and can never deadlock over it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

CHANNEL = "workflow_engine_credentials"  # kept in step with auth/credential_watch.py

# (table, event, condition on OLD/NEW or None): each names a change that can end a credential.
_CHANGES: tuple[tuple[str, str, str | None], ...] = (
    (
        "users",
        "UPDATE",
        "OLD.role <> NEW.role OR OLD.is_active <> NEW.is_active "
        "OR OLD.token_generation <> NEW.token_generation",
    ),
    ("users", "DELETE", None),
    ("revoked_tokens", "INSERT", None),
    ("refresh_tokens", "UPDATE", "NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL"),
    (
        "api_keys",
        "UPDATE",
        "NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL OR OLD.role <> NEW.role "
        "OR NEW.expires_at IS DISTINCT FROM OLD.expires_at",
    ),
    ("api_keys", "DELETE", None),
)

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION workflow_engine_credentials_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
BEGIN
    UPDATE credential_epoch SET epoch = epoch + 1 WHERE id = 1;
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$fn$
"""


def _trigger_name(table: str, event: str) -> str:
    return f"credentials_changed_{table}_{event.lower()}"


def _sqlite_condition(condition: str) -> str:
    # SQLite spells the null-safe comparison `IS NOT`.
    return condition.replace("IS DISTINCT FROM", "IS NOT")


def upgrade() -> None:
    op.create_table(
        "credential_epoch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO credential_epoch (id, epoch) VALUES (1, 0)")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.get_bind().exec_driver_sql(_PG_FUNCTION)
    for table, event, condition in _CHANGES:
        name = _trigger_name(table, event)
        if postgres:
            when = f"WHEN ({condition}) " if condition else ""
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON {table} "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW {when}"
                "EXECUTE FUNCTION workflow_engine_credentials_changed()"
            )
        else:
            when = f"WHEN {_sqlite_condition(condition)} " if condition else ""
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {when}"
                "BEGIN UPDATE credential_epoch SET epoch = epoch + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, event, _condition in _CHANGES:
        name = _trigger_name(table, event)
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS workflow_engine_credentials_changed()")
    op.drop_table("credential_epoch")
