"""Events as the API shows them: one appended, one read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AppendedEvent(BaseModel):
    event_id: uuid.UUID
    aggregate_id: str
    version: int
    position: int
    recorded_at: datetime


class EventView(BaseModel):
    event_id: uuid.UUID
    position: int
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
