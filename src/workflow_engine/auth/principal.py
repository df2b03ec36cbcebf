"""Who is calling: the identity every authorised request carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from workflow_engine.auth.permissions import Permission, Role, allows


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. The tenant comes from the credential, never from the request."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    token_id: str
    session_id: uuid.UUID
    expires_at: datetime

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)
