"""Ends what a credential keeps open — a live stream — as soon as the credential stops being good.

A request is checked once, when it arrives; a stream lasts for hours. Each open stream
registers its caller here and gets a future that resolves, with the reason, when:

- the credential's own expiry passes (an access token's `exp`, an API key's `expires_at`);
- the credential epoch moves (a logout, a deactivation, a demotion, a key revoked — in any
  process) and a re-check of the caller refuses it.

One task per process does the re-checks, once per distinct credential however many streams
share it; a stream's end follows its future at once (`api/streams.py`), whatever it waits on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import structlog

from workflow_engine.auth.credential_watch import CredentialWatch
from workflow_engine.auth.principal import Principal
from workflow_engine.auth.service import AuthService

logger = structlog.get_logger(__name__)

Closing = asyncio.Future[str]  # resolves with the reason the stream must end


class CredentialGuard:
    def __init__(self, auth: AuthService, watch: CredentialWatch) -> None:
        self._auth = auth
        self._watch = watch
        self._open: dict[Closing, Principal] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="credential-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def guarding(self, principal: Principal) -> Iterator[Closing]:
        """For the life of a stream: a future that resolves when `principal` must be let go."""
        loop = asyncio.get_running_loop()
        closing: Closing = loop.create_future()
        expiry = None
        if principal.expires_at is not None:
            expiry = _Expiry(loop, closing, principal.expires_at)
        self._open[closing] = principal
        try:
            yield closing
        finally:
            del self._open[closing]
            if expiry is not None:
                expiry.cancel()

    async def _run(self) -> None:
        while True:
            seen = self._watch.generation
            await self._watch.changed.wait(seen, 3600)
            if self._watch.generation == seen:
                continue
            try:
                await self._recheck()
            except Exception as exc:  # the database is away: the next move re-checks
                logger.warning("re-checking open streams failed", error=type(exc).__name__)

    async def _recheck(self) -> None:
        by_credential: dict[str, list[Closing]] = {}
        principals: dict[str, Principal] = {}
        for closing, principal in list(self._open.items()):
            credential = (
                principal.session.token_id if principal.session else str(principal.subject_id)
            )
            by_credential.setdefault(credential, []).append(closing)
            principals[credential] = principal
        for credential, streams in by_credential.items():
            reason = await self._auth.recheck(principals[credential])
            if reason is not None:
                for closing in streams:
                    _close(closing, reason)


class _Expiry:
    """Ends a stream once its credential's expiry has passed by the wall clock, never before:
    the loop's timers run on a monotonic clock that may be a little ahead of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, closing: Closing, at: datetime) -> None:
        self._loop = loop
        self._closing = closing
        self._at = at
        self._handle = self._arm()

    def _arm(self) -> asyncio.TimerHandle:
        delay = (self._at - datetime.now(UTC)).total_seconds()
        return self._loop.call_later(max(delay, 0.0) + 0.001, self._fire)

    def _fire(self) -> None:
        if datetime.now(UTC) < self._at:
            self._handle = self._arm()
            return
        _close(self._closing, "the credential expired")

    def cancel(self) -> None:
        self._handle.cancel()


def _close(closing: Closing, reason: str) -> None:
    if not closing.done():
        closing.set_result(reason)
