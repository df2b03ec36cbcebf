"""Table definitions (SQLAlchemy Core). Migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    FetchedValue,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)

from workflow_engine.db.types import JsonDocument, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", Uuid(), nullable=False, unique=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("aggregate_type", String(100), nullable=False),
    Column("aggregate_id", String(200), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("schema_version", Integer(), nullable=False),
    Column("data", JsonDocument, nullable=False),
    Column("metadata", JsonDocument, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # The writing transaction's id on PostgreSQL (0 on SQLite), filled by the database. Readers
    # use it to stay below the horizon of transactions still in flight (DESIGN trap 4).
    Column("txid", BigInteger(), nullable=False, server_default=FetchedValue()),
    UniqueConstraint("tenant_id", "aggregate_id", "version"),
    Index(None, "tenant_id", "position"),
    Index(None, "txid", "position"),
)
