"""Security-relevant facts, appended to the event log with who, from where and which request.

Never a password, token, key or hash: callers pass only identifiers, and `data` is checked
for secret-looking keys so that a careless caller fails in tests rather than leaking in
production.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from workflow_engine.events import NewEvent, append_events

AUDIT_AGGREGATE = "audit"
USERS_AGGREGATE = "users"
# Events about no tenant's account (a login attempt for an unknown email) belong here.
SYSTEM_TENANT = uuid.UUID(int=0)
_SECRET_MARKERS = ("password", "token", "secret", "hash")
_SECRET_KEYS = {"key", "api_key"}


@dataclass(frozen=True)
class RequestOrigin:
    """Where a request came from, as recorded in audit metadata."""

    client_address: str | None
    correlation_id: str | None


async def record(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    aggregate_type: str,
    aggregate_id: str,
    event_type: str,
    actor: str,
    origin: RequestOrigin,
    data: dict[str, Any] | None = None,
) -> None:
    data = data or {}
    leaked = [
        k
        for k in data
        if k.lower() in _SECRET_KEYS or any(marker in k.lower() for marker in _SECRET_MARKERS)
    ]
    if leaked:
        raise ValueError(f"audit data must not carry secrets: {leaked}")
    metadata = {
        "actor": actor,
        "client_address": origin.client_address,
        "correlation_id": origin.correlation_id,
        "source": "api",
    }
    await append_events(
        conn,
        tenant_id=tenant_id,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        new_events=[NewEvent(event_type, data, metadata)],
        expected_version=None,
    )


async def record_user_event(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    event_type: str,
    actor: str,
    origin: RequestOrigin,
    data: dict[str, Any] | None = None,
) -> None:
    """`record` for the common case: a fact about one user, on that user's aggregate."""
    await record(
        conn,
        tenant_id=tenant_id,
        aggregate_type=USERS_AGGREGATE,
        aggregate_id=str(user_id),
        event_type=event_type,
        actor=actor,
        origin=origin,
        data=data,
    )


def login_subject(email: str) -> str:
    """An aggregate id for login attempts on an email that may not exist (hashed, not stored)."""
    return "login-" + hashlib.sha256(email.encode()).hexdigest()[:24]
