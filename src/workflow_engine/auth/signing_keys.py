"""The key access tokens are signed with: the HMAC secret, or an RSA/EC key pair from files.

With an asymmetric key, other services verify our tokens with the public key published at
`/.well-known/jwks.json`; the key id (`kid`) is its RFC 7638 thumbprint, so it changes exactly
when the key does.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ASYMMETRIC = ("RS256", "ES256")


class SigningKeyError(ValueError):
    """The configured key cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    signing: Any  # the HMAC secret (str) or a private key object
    verifying: Any  # the HMAC secret (str) or the public key object
    kid: str | None = None
    public_jwk: dict[str, Any] | None = None

    @classmethod
    def hmac(cls, secret: str) -> SigningKey:
        return cls("HS256", secret, secret)


def load_private_key(algorithm: str, path: Path) -> SigningKey:
    """An RS256 or ES256 key from a PEM file (unencrypted PKCS#8 or traditional)."""
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot be read: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    members: tuple[str, ...]
    if algorithm == "RS256":
        if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < 2048:
            raise SigningKeyError(f"{path}: RS256 needs an RSA key of at least 2048 bits")
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        members = ("e", "kty", "n")
    elif algorithm == "ES256":
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise SigningKeyError(f"{path}: ES256 needs an EC key on the P-256 curve")
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
        members = ("crv", "kty", "x", "y")
    else:
        raise SigningKeyError(f"{algorithm} is not an asymmetric algorithm we support")
    kid = _thumbprint({name: jwk[name] for name in members})
    public_jwk = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}
    return SigningKey(algorithm, private, private.public_key(), kid, public_jwk)


def _thumbprint(members: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode().rstrip("=")
