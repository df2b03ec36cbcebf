"""Table definitions (SQLAlchemy Core). Migrations in `migrations/versions` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
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
    # use it to stay below the horizon of transactions still in flight, whose positions may be
    # below visible ones (pitfall 4 in docs/architecture.md). Its
    # default differs per database and is set by migration 0001: tables are created by the
    # migrations only, never by `metadata.create_all()`.
    Column("txid", BigInteger(), nullable=False, server_default=FetchedValue()),
    # The hash chain (events/chain.py): on PostgreSQL a trigger fills both, on SQLite the
    # appending code does. NULL only where someone tampered with the row.
    Column("prev_hash", LargeBinary(), nullable=True),
    Column("hash", LargeBinary(), nullable=True),
    UniqueConstraint("tenant_id", "aggregate_id", "version"),
    Index(None, "tenant_id", "position"),
    Index(None, "txid", "position"),
)

# Seals of the event log (events/seals.py): each covers the log from the previous seal's
# `through` key to its own, with a digest per tenant, and chains to the previous seal.
event_seals = Table(
    "event_seals",
    metadata,
    Column("seq", Integer(), primary_key=True, autoincrement=False),
    Column("after_txid", BigInteger(), nullable=False),
    Column("after_position", BigInteger(), nullable=False),
    Column("through_txid", BigInteger(), nullable=False),
    Column("through_position", BigInteger(), nullable=False),
    Column("events", Integer(), nullable=False),
    Column("tenants", JsonDocument, nullable=False),
    Column("prev_digest", LargeBinary(), nullable=False),
    Column("digest", LargeBinary(), nullable=False),
    Column("sealed_at", UTCDateTime(), nullable=False),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-cased
    Column("password_hash", String(255), nullable=False),
    Column("role", String(20), nullable=False),
    Column("is_active", Boolean(), nullable=False),
    # Access tokens carry the generation they were issued in; a role change or deactivation
    # increments it, and tokens of earlier generations are refused.
    Column("token_generation", Integer(), nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("user_id", Uuid(), ForeignKey("users.id"), nullable=False, index=True),
    # One family per login; every rotation stays in it, and reuse revokes all of it.
    Column("family_id", Uuid(), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 hex
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    Column("revoked_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    # Keys look like `wek_<prefix>_<secret>`: the prefix finds the row, the digest proves it.
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),  # SHA-256 hex of the whole key
    Column("role", String(20), nullable=False),
    Column("created_by", String(64), nullable=False),  # the actor, e.g. `user:<id>` or `cli`
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# One row; its `epoch` moves (by triggers, migration 0018) whenever a credential loses standing.
credential_epoch = Table(
    "credential_epoch",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("epoch", BigInteger(), nullable=False),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    # SHA-256 of the attempted email: the table never holds an address someone typed.
    Column("subject", String(64), primary_key=True),
    # The client's address, or `*` for the account-wide counter.
    Column("client_address", String(64), primary_key=True),
    Column("failures", Integer(), nullable=False),
    Column("window_started_at", UTCDateTime(), nullable=False),
    Column("blocked_until", UTCDateTime(), nullable=True),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("tenant_id", Uuid(), primary_key=True),
    Column("aggregate_id", String(200), primary_key=True),
    # Names the folded state's shape: a fold whose logic changes takes a new kind, so that
    # snapshots of the old shape are ignored rather than misread.
    Column("kind", String(100), primary_key=True),
    Column("version", Integer(), nullable=False),
    Column("state", JsonDocument, nullable=False),
    Column("taken_at", UTCDateTime(), nullable=False),
)

# --- read models folded by projections (events/projections.py) -------------------------------

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    # The projection's fold version the read model was last rebuilt with.
    Column("version", Integer(), nullable=False),
    # The highest position among the events that rebuild read (0 for an empty log).
    Column("position", BigInteger(), nullable=False),
    Column("events_folded", BigInteger(), nullable=False),
    Column("rebuilt_at", UTCDateTime(), nullable=False),
)

aggregates = Table(
    "aggregates",
    metadata,
    Column("tenant_id", Uuid(), primary_key=True),
    Column("aggregate_id", String(200), primary_key=True),
    Column("aggregate_type", String(100), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("last_event_type", String(200), nullable=False),
    Column("last_position", BigInteger(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "tenant_id", "aggregate_type", "aggregate_id"),
)

# --- workflow runs (engine/) ------------------------------------------------------------------

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("workflow_name", String(64), nullable=False),
    Column("workflow_version", Integer(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("input", JsonDocument, nullable=False),
    Column("output", JsonDocument, nullable=True),
    Column("error", JsonDocument, nullable=True),
    # The definition the run started with: what pins it to its version.
    Column("definition", JsonDocument, nullable=False),
    Column("steps_total", Integer(), nullable=False),
    Column("steps_done", Integer(), nullable=False),
    Column("correlation_id", String(128), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The version of the run's aggregate (its number of events): what a transition expects.
    Column("version", Integer(), nullable=False, server_default="0"),
    # A child run's parent: the run and the `workflow` step that started it.
    Column("parent_run_id", Uuid(), nullable=True),
    Column("parent_step_id", String(64), nullable=True),
    # Under a limit: started through admission (engine/admission.py).
    Column("gated", Boolean(), nullable=False, server_default="0"),
    # A replay: the run it replays, and the step it executes again from (engine/replays.py).
    Column("replay_of_run_id", Uuid(), nullable=True),
    Column("replay_from_step", String(64), nullable=True),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("run_id", Uuid(), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("position", Integer(), nullable=False),
    Column("uses", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("output", JsonDocument, nullable=True),
    Column("error", JsonDocument, nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", Uuid(), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # SHA-256 of canonical JSON
    Column("run_id", Uuid(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# When each tenant's work was last claimed: claims take turns between tenants (engine/queue.py).
tenant_turns = Table(
    "tenant_turns",
    metadata,
    Column("tenant_id", Uuid(), primary_key=True),
    Column("last_claimed_at", UTCDateTime(), nullable=False),
    Column("weight", Integer(), nullable=False, server_default="1"),  # TENANT_WEIGHTS
    Column("taken", Integer(), nullable=False, server_default="0"),  # this round, of `weight`
)

# Schedules (schedules/store.py): a workflow started on a cron expression or an interval.
schedules = Table(
    "schedules",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("name", String(100), nullable=False),
    Column("workflow_name", String(64), nullable=False),
    Column("workflow_version", Integer(), nullable=True),
    Column("data", JsonDocument, nullable=False),
    Column("cron", String(200), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("interval_seconds", Float(), nullable=True),
    Column("start_at", UTCDateTime(), nullable=True),
    Column("end_at", UTCDateTime(), nullable=True),
    Column("catch_up", String(20), nullable=False),
    Column("priority", Integer(), nullable=False),
    Column("paused", Boolean(), nullable=False),
    # The tick to fire next: null while paused or when no tick remains.
    Column("next_fire_at", UTCDateTime(), nullable=True),
    Column("last_fired_at", UTCDateTime(), nullable=True),
    Column("last_run_id", Uuid(), nullable=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

# Runs under a limit (engine/admission.py): waiting for a slot, then holding it until they end.
run_admissions = Table(
    "run_admissions",
    metadata,
    Column("run_id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("workflow_name", String(64), nullable=False),
    Column("concurrency_key", String(200), nullable=False),
    Column("concurrency_limit", Integer(), nullable=True),
    Column("counts_toward_cap", Boolean(), nullable=False),
    Column("admitted", Boolean(), nullable=False),
    Column("priority", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

# `wait.event` steps (engine/event_waits.py): armed while waiting, then the event each took.
event_waits = Table(
    "event_waits",
    metadata,
    Column("run_id", Uuid(), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("aggregate_id", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("matched_position", BigInteger(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

# `approval` steps (engine/approvals.py): one request per attempt, then its decision.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Uuid(), primary_key=True),  # derived from the run, step and attempt
    Column("tenant_id", Uuid(), nullable=False),
    Column("run_id", Uuid(), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("workflow_name", String(64), nullable=False),
    Column("proposal", JsonDocument, nullable=True),
    Column("message", Text(), nullable=True),
    Column("on_timeout", String(20), nullable=True),  # `approved` | `rejected`; null: no timeout
    Column("on_reject", String(20), nullable=False),  # `fail` | `continue`
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("decision", String(20), nullable=True),  # `approved` | `rejected`; null: waits
    Column("decided_by", String(100), nullable=True),  # an actor, or `timeout`
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("comment", Text(), nullable=True),
    Column("data", JsonDocument, nullable=True),  # the proposal, or the approver's edit of it
    UniqueConstraint("run_id", "step_id", "attempt"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("run_id", Uuid(), nullable=False),
    Column("step_id", String(64), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("priority", Integer(), nullable=False),
    Column("correlation_id", String(128), nullable=True),
    Column("trace_context", JsonDocument, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # How many times the task was claimed: a task whose worker keeps failing unexpectedly
    # (not the step: the machinery) is failed after WORKER_MAX_CLAIMS instead of looping.
    Column("claims", Integer(), nullable=False, server_default="0"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("run_id", Uuid(), primary_key=True),
    Column("position", BigInteger(), primary_key=True),
    Column("entry", Integer(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("step_id", String(64), nullable=True),
    Column("attempt", Integer(), nullable=True),
    Column("level", String(10), nullable=False),
    Column("message", Text(), nullable=False),
    Column("fields", JsonDocument, nullable=False),
    Column("logged_at", UTCDateTime(), nullable=False),
)

# The service registry. A row is the service's current state; the event log keeps what
# changed (registrations, deregistrations, status changes), not every probe or heartbeat.
services = Table(
    "services",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("health_check_url", String(2048), nullable=True),
    Column("metadata", JsonDocument, nullable=False),
    Column("tags", JsonDocument, nullable=False),
    Column("ttl_seconds", Integer(), nullable=True),
    Column("status", String(20), nullable=False),
    Column("consecutive_successes", Integer(), nullable=False),
    Column("consecutive_failures", Integer(), nullable=False),
    Column("last_check_at", UTCDateTime(), nullable=True),
    Column("last_check_latency_ms", Float(), nullable=True),
    Column("last_check_error", Text(), nullable=True),
    Column("last_heartbeat_at", UTCDateTime(), nullable=True),
    # The last sign of life (registration, heartbeat or passing check): the TTL runs from it.
    Column("last_alive_at", UTCDateTime(), nullable=False),
    Column("next_check_at", UTCDateTime(), nullable=True, index=True),
    Column("status_changed_at", UTCDateTime(), nullable=False),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "name", "url"),
)

# One row per tag of a service, so that `?tag=` is an indexed lookup on both databases.
service_tags = Table(
    "service_tags",
    metadata,
    Column("service_id", Uuid(), ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Index(None, "tenant_id", "tag"),
)

# The newest checks of each service (REGISTRY_CHECK_HISTORY of them), for its latency history:
# the time, whether it passed, the service's status after it, the latency and the error.
service_checks = Table(
    "service_checks",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("service_id", Uuid(), ForeignKey("services.id", ondelete="CASCADE"), nullable=False),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("passed", Boolean(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("latency_ms", Float(), nullable=True),
    Column("error", Text(), nullable=True),
    Index(None, "service_id", "checked_at"),
)

# One row per LLM call a step made (usage/): tokens, estimated cost, and the UTC day budgets
# sum by.
llm_usage = Table(
    "llm_usage",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("tenant_id", Uuid(), nullable=False),
    Column("run_id", Uuid(), nullable=False, index=True),
    Column("step_id", String(64), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("workflow_name", String(64), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("calls", Integer(), nullable=False),  # requests answered (a structured step asks twice)
    Column("prompt_tokens", Integer(), nullable=False),
    Column("completion_tokens", Integer(), nullable=False),
    Column("cost_usd", Float(), nullable=True),  # null: the model has no price
    Column("outcome", String(64), nullable=False),  # `ok`, or the error class of a failed call
    Column("day", Date(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "tenant_id", "day"),
)
