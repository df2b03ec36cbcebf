"""`/.well-known/jwks.json`: the public key other services verify our access tokens with."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from workflow_engine.api.routing import resource_router
from workflow_engine.api.security import AuthServiceDep

router = resource_router(tags=["auth"])


class JsonWebKeySet(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kty": "EC",
                            "crv": "P-256",
                            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                            "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
                            "alg": "ES256",
                            "use": "sig",
                        }
                    ]
                }
            ]
        }
    )

    keys: list[dict[str, Any]] = Field(
        description="Public signing keys (RFC 7517); empty when tokens are signed with a shared "
        "secret (HS256), which is never published."
    )


@router.get("/.well-known/jwks.json", summary="Public keys that verify our access tokens")
async def jwks(auth: AuthServiceDep, response: Response) -> JsonWebKeySet:
    response.headers["Cache-Control"] = "public, max-age=300"
    key = auth.tokens.key.public_jwk
    return JsonWebKeySet(keys=[key] if key else [])
