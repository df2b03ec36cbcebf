"""The hash chain that makes an edit of the stored event log evident.

Each event stores `prev_hash`, the `hash` of the aggregate's previous event (32 zero bytes
before version 1), and its own `hash = SHA-256(prev_hash || SHA-256(content))`. The content is
everything the event says — id, tenant, aggregate, version, type, schema version, data,
metadata and time — joined by the unit separator (0x1F), with the time as integer microseconds
since the epoch. Positions and transaction ids are not content: the database assigns them
after the row is built on SQLite, and the seals (`events/seals.py`) cover them instead.

Each database hashes the form it stores, so the hashes never depend on a round trip through
Python: PostgreSQL computes them in a trigger over the JSONB's own text (`db/event_chain.py`),
for every writer, the run transitions' SQL functions included. SQLite stores JSON text that
Python wrote, and the appending code computes them here, over canonical JSON (sorted keys, no
spaces, ASCII), which every document the log accepts (`events/storable.py`) survives a round
trip through unchanged. A chain is never compared across databases.

Chaining costs nothing across aggregates: an event's hash needs only its predecessor's, which
the version check an append already makes has read, so appends to different aggregates never
wait for each other.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS = bytes(32)
# The keyword arguments of `content_digest`, which are also the events table's column names.
CONTENT_FIELDS = (
    "event_id", "tenant_id", "aggregate_type", "aggregate_id", "version", "event_type",
    "schema_version", "data", "metadata", "recorded_at",
)  # fmt: skip
_SEPARATOR = "\x1f"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def content_digest(
    *,
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    aggregate_type: str,
    aggregate_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    data: Mapping[str, Any],
    metadata: Mapping[str, Any],
    recorded_at: datetime,
) -> bytes:
    fields = (
        str(event_id),
        str(tenant_id),
        aggregate_type,
        aggregate_id,
        str(version),
        event_type,
        str(schema_version),
        _canonical(data),
        _canonical(metadata),
        str(_microseconds(recorded_at)),
    )
    return hashlib.sha256(_SEPARATOR.join(fields).encode()).digest()


def link(prev_hash: bytes, content: bytes) -> bytes:
    """The hash of an event whose predecessor's hash is `prev_hash`."""
    return hashlib.sha256(prev_hash + content).digest()


def _canonical(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _microseconds(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND
