"""What login, refresh and `me` answer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.auth.permissions import Role


class UserView(BaseModel):
    id: str
    email: str
    role: Role
    tenant_id: str


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "refresh_token": "x4D0q2...",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_expires_in": 604800,
                    "user": {
                        "id": "0f0e8b8e-6f7c-4bb5-9b0f-5d1f7c7b2a11",
                        "email": "user@example.com",
                        "role": "operator",
                        "tenant_id": "6a1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d",
                    },
                }
            ]
        }
    )

    token: str = Field(description="The access token (same as `access_token`, as in the seed).")
    access_token: str
    refresh_token: str = Field(description="Single use: each refresh returns a new one.")
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int
    user: UserView


class CallerView(BaseModel):
    kind: str = Field(description="`user`, or `api_key` for a machine.")
    id: str
    role: Role
    tenant_id: str
    email: str | None = Field(None, description="For users.")
    name: str | None = Field(None, description="For API keys.")
