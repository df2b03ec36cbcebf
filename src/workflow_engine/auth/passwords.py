"""Password hashing (argon2id, off the event loop) and the password policy.

Parameters default to argon2-cffi's RFC 9106 "low memory" profile (t=3, m=64 MiB, p=4) and
are configurable; a hash made with other parameters is upgraded at the next successful login.
Hashing takes tens of milliseconds of CPU, so it runs in a worker thread: on the event loop it
would stall every other request (pitfall 11 in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # bounds the work an attacker can ask of the hasher
COMMON_PASSWORDS_CHECKED = 10_000


@dataclass(frozen=True)
class HashParameters:
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Passwords:
    """Hashes and verifies passwords; every call costs the same whether or not the user exists."""

    def __init__(self, parameters: HashParameters) -> None:
        self.parameters = parameters
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_kib,
            parallelism=parameters.parallelism,
        )

    @cached_property
    def _dummy_hash(self) -> str:
        return self._hasher.hash("an unguessable placeholder that no account has")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches. With no hash (unknown user) a dummy hash is checked
        so that the answer takes as long as for a real account."""
        target = password_hash or self._dummy_hash
        try:
            matched = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(matched) and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@functools.cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn's lists take about 11 MB once imported: only a process that checks a new
    # password (creating a user) pays for them.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"][:COMMON_PASSWORDS_CHECKED])


def password_problems(password: str, email: str) -> list[str]:
    """Why `password` is too weak for the account `email` (empty when acceptable)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    local_part = email.split("@", 1)[0].lower()
    if lowered == email.lower() or (len(local_part) >= 4 and local_part in lowered):
        problems.append("must not contain the email address")
    if lowered in _common_passwords():
        problems.append("is one of the most common passwords")
    return problems
