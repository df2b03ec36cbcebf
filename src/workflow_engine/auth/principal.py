"""Who is calling: the identity every authorised request carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from workflow_engine.auth.permissions import Permission, Role, allows

PrincipalKind = Literal["user", "api_key"]


@dataclass(frozen=True)
class UserSession:
    """The access token a user signed in with (API keys have none)."""

    token_id: str
    session_id: uuid.UUID  # the refresh-token family the token belongs to
    expires_at: datetime
    generation: int  # the user's token generation when the token was issued


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. The tenant comes from the credential, never from the request."""

    kind: PrincipalKind
    subject_id: uuid.UUID  # the user's id, or the API key's
    tenant_id: uuid.UUID
    role: Role
    session: UserSession | None = None
    #: When the credential stops being valid on its own (a token's `exp`, a key's expiry);
    #: a stream opened with it ends then.
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.subject_id}"

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)
