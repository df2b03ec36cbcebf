"""Events that clients append through `POST /events`, and what they may not do.

Clients write their own aggregates only: the types the server writes itself (runs, users,
services, audit, ...) are refused, so an audit trail or a workflow's history cannot be forged.
The server, not the client, fills in who appended an event and from where.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from workflow_engine.auth.audit import RequestOrigin
from workflow_engine.db import Database
from workflow_engine.engine import event_waits
from workflow_engine.errors import Forbidden, InvalidInput
from workflow_engine.events.append import append_events
from workflow_engine.events.storable import check_document
from workflow_engine.events.store import NewEvent, RecordedEvent
from workflow_engine.events.system_types import is_system_type

# Path segments under /api/v1/events/ that name endpoints, not aggregates.
RESERVED_AGGREGATE_IDS = frozenset({"stream"})
# Metadata keys the server sets; a client's values for them are replaced, never trusted.
SERVER_METADATA = ("actor", "client_address", "correlation_id", "source")
DEFAULT_MAX_DATA_BYTES = 64 * 1024


def check_client_aggregate_type(aggregate_type: str) -> None:
    if is_system_type(aggregate_type):
        raise Forbidden(
            f"aggregate type {aggregate_type!r} is written by the server only; "
            "choose another name for your own aggregates"
        )


async def append_client_event(
    db: Database,
    *,
    tenant_id: uuid.UUID,
    actor: str,
    origin: RequestOrigin,
    aggregate_type: str,
    aggregate_id: str,
    event_type: str,
    data: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    expected_version: int | None,
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
) -> RecordedEvent:
    """Append one event to a client aggregate, in the tenant's confined transaction."""
    check_client_aggregate_type(aggregate_type)
    if aggregate_id in RESERVED_AGGREGATE_IDS:
        raise InvalidInput(f"aggregate id {aggregate_id!r} is reserved (an endpoint's name)")
    check_document("data", data)  # before encoding it: a lone surrogate cannot be encoded
    check_document("metadata", metadata or {})
    size = len(json.dumps(data, ensure_ascii=False).encode())
    if size > max_data_bytes:
        raise InvalidInput(f"data is {size} bytes; the limit is {max_data_bytes}")
    server_metadata = {
        "actor": actor,
        "client_address": origin.client_address,
        "correlation_id": origin.correlation_id,
        "source": "api",
    }
    merged = {**(metadata or {}), **server_metadata}
    async with db.tenant_transaction(tenant_id) as conn:
        [recorded] = await append_events(
            conn,
            tenant_id=tenant_id,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            new_events=[NewEvent(event_type, data, merged)],
            expected_version=expected_version,
        )
        # Steps waiting for this event (`wait.event`) wake with it, in its transaction.
        await event_waits.wake(conn, tenant_id, aggregate_id, event_type)
    return recorded
