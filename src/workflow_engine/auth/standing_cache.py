"""What this process remembers about credentials, for as long as nothing about any changed.

A request carrying a known token or API key is answered from memory instead of a query. An
answer is dropped the moment the credential epoch moves (`credential_watch.py`) — every answer,
since a change rarely says which credentials it touched and changes are rare — and none is
trusted while the watch has not confirmed the epoch recently (the database is away).

A lookup that read the database while the epoch moved must not store what it read: it may
predate the change. `ticket()` taken before the read and handed to `put` makes such a late
answer go unremembered.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from workflow_engine.auth.credential_watch import CredentialWatch

K = TypeVar("K")
V = TypeVar("V")

LIMIT = 10_000


class StandingCache(Generic[K, V]):
    def __init__(self, watch: CredentialWatch, limit: int = LIMIT) -> None:
        self._watch = watch
        self._limit = limit
        self._entries: dict[K, V] = {}
        self._generation = watch.generation

    def get(self, key: K) -> V | None:
        if not self._current():
            return None
        return self._entries.get(key)

    def ticket(self) -> int:
        return self._watch.generation

    def put(self, key: K, value: V, ticket: int) -> None:
        if ticket != self._watch.generation or not self._current():
            return
        if len(self._entries) >= self._limit:
            self._entries.clear()  # bounded memory; what is hot comes back at once
        self._entries[key] = value

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def _current(self) -> bool:
        if self._generation != self._watch.generation:
            self._entries.clear()
            self._generation = self._watch.generation
        return self._watch.fresh
