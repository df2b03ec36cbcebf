"""The API's reads of runs, each one statement (`db/read_statements.py`) whose answer is
already the JSON the response carries.

The database renders the rows; Python only adds what SQL cannot say as Python would: the
LLM usage (summed from the outputs of the run's completed LLM steps, which come along in the
same statement).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from workflow_engine.db import Database
from workflow_engine.db.read_statements import RUN_STATUS
from workflow_engine.db.single_statement import fetch_row
from workflow_engine.errors import NotFound


@dataclass(frozen=True)
class StatusDocument:
    """A run's status as JSON, every member of the response but `llm_usage` and `links`
    (in the response's order, they come last), and the outputs its usage is summed from."""

    document: str
    llm_outputs: list[Any]


async def read_status(db: Database, tenant_id: uuid.UUID, run_id: uuid.UUID) -> StatusDocument:
    document, llm_outputs = await fetch_row(db, RUN_STATUS, tenant=tenant_id, run=run_id)
    if document is None:
        raise NotFound(f"no run {run_id}")
    return StatusDocument(document, json.loads(llm_outputs) if llm_outputs else [])
