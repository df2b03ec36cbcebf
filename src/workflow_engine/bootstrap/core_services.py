"""The services every server process runs: database, migrations check, data directory, events."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import structlog

from workflow_engine.auth.credential_guard import CredentialGuard
from workflow_engine.auth.credential_watch import CredentialWatch
from workflow_engine.auth.login_throttle import ThrottlePolicy
from workflow_engine.auth.passwords import HashParameters, Passwords
from workflow_engine.auth.service import AuthService
from workflow_engine.auth.signing_keys import SigningKey, load_private_key
from workflow_engine.auth.tokens import TokenIssuer
from workflow_engine.bootstrap.lifecycle import Health, HealthStatus
from workflow_engine.bootstrap.read_models import register_read_models
from workflow_engine.config import Settings, development_jwt_secret
from workflow_engine.db import Database
from workflow_engine.db.migrate import head_revisions, pending_revisions
from workflow_engine.events import EventStore, projections
from workflow_engine.events.notifier import LogNotifier
from workflow_engine.events.projections import catch_up
from workflow_engine.events.tail import LogTail
from workflow_engine.events.upcasting import Upcasters
from workflow_engine.observability import tracing
from workflow_engine.ratelimit.gcra import Limit
from workflow_engine.ratelimit.limiter import RateLimiter
from workflow_engine.ratelimit.policy import RateLimitPolicy
from workflow_engine.ratelimit.storage import MemoryStorage, RateLimitStorage, RedisStorage

logger = structlog.get_logger(__name__)

HEALTH_PROBE_TIMEOUT = 2.0
LOW_DISK_BYTES = 512 * 1024 * 1024
LOW_DISK_FRACTION = 0.05


class DatabaseService:
    """Owns the process's connection pool."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("the database service has not started")
        return self._database

    async def start(self) -> None:
        settings = self._settings
        self._database = Database(
            settings.effective_database_url,
            pool_size=settings.db_max_connections,
            pool_timeout=settings.db_connection_timeout,
            connect_timeout=min(settings.db_connection_timeout, 10.0),
        )
        tracing.instrument_engine(self._database.engine.sync_engine)
        # Fail at start, with the reason, rather than on the first request.
        await self._database.ping(timeout=settings.db_connection_timeout)
        if not self._database.is_sqlite and not await self._database.detect_row_level_security():
            logger.warning(
                "row-level security is off: the database role workflow_engine_api is missing "
                "(migrations need CREATEROLE to make it); tenant isolation rests on the "
                "application's filters alone"
            )

    async def stop(self) -> None:
        if self._database is not None:
            await self._database.dispose()

    async def check_health(self) -> Health:
        if saturated := pool_saturation(self.database):
            return saturated
        try:
            await self.database.ping(timeout=HEALTH_PROBE_TIMEOUT)
        except TimeoutError:
            return Health.down(f"no answer within {HEALTH_PROBE_TIMEOUT:g} s")
        except Exception as exc:
            return Health.down(f"unreachable: {type(exc).__name__}")
        return Health.ok(
            backend=self.database.url.get_backend_name(),
            row_level_security=self.database.row_level_security,
        )


def pool_saturation(db: Database) -> Health | None:
    """`degraded` when every pooled connection is in use, else None.

    A probe would only wait in line for a connection and time out: a saturated pool is load,
    not an outage, and must not take a busy server out of a load balancer.
    """
    busy, size = db.pool_usage()
    if busy >= size:
        return Health.degraded(f"all {size} connections are in use", in_use=busy)
    return None


class MigrationsService:
    """Reports whether the schema is at the head revision the code expects."""

    def __init__(self, database: DatabaseService) -> None:
        self._database = database
        self._heads: frozenset[str] = frozenset()

    async def start(self) -> None:
        # The code's head revisions are fixed for the life of the process: read the scripts once.
        self._heads = head_revisions()

    async def stop(self) -> None:
        return None

    async def check_health(self) -> Health:
        db = self._database.database
        if saturated := pool_saturation(db):
            return saturated
        async with db.read() as conn:
            pending = await pending_revisions(conn, db.url, self._heads)
        if pending:
            return Health.down(
                f"{len(pending)} migration(s) pending; run `workflow-engine migrate`",
                pending=pending,
            )
        return Health.ok()


class DataDirectoryService:
    """Watches free space where the SQLite file, secrets and exports live."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def start(self) -> None:
        # The database, the development secret and exports live here: this user's only.
        self._path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._path.stat().st_mode & 0o077:  # made by an older version, or by hand
            logger.warning(
                "DATA_DIR can be read by other users of this machine; `chmod 700` it",
                mode=oct(self._path.stat().st_mode & 0o777),
            )

    async def stop(self) -> None:
        return None

    async def check_health(self) -> Health:
        usage = shutil.disk_usage(self._path)
        path = str(self._path.resolve())
        if usage.free < LOW_DISK_BYTES or usage.free < usage.total * LOW_DISK_FRACTION:
            return Health.degraded("little free space left", path=path, free_bytes=usage.free)
        return Health.ok(path=path, free_bytes=usage.free)


def signing_key(settings: Settings) -> SigningKey:
    """The configured token key; raises SigningKeyError naming the file when it is unusable."""
    if settings.jwt_algorithm != "HS256" and settings.jwt_private_key_file is not None:
        return load_private_key(settings.jwt_algorithm, settings.jwt_private_key_file)
    secret = settings.jwt_secret or development_jwt_secret(settings.data_dir)[0]
    return SigningKey.hmac(secret.get_secret_value())


class AuthServiceProvider:
    """Login, tokens and the per-request credential check."""

    def __init__(self, settings: Settings, database: DatabaseService) -> None:
        self._settings = settings
        self._database = database
        self._auth: AuthService | None = None
        self._watch: CredentialWatch | None = None
        self._guard: CredentialGuard | None = None

    @property
    def auth(self) -> AuthService:
        if self._auth is None:
            raise RuntimeError("the auth service has not started")
        return self._auth

    @property
    def guard(self) -> CredentialGuard:
        if self._guard is None:
            raise RuntimeError("the auth service has not started")
        return self._guard

    async def start(self) -> None:
        settings = self._settings
        self._watch = CredentialWatch(self._database.database)
        await self._watch.start()
        self._auth = AuthService(
            self._database.database,
            Passwords(
                HashParameters(
                    time_cost=settings.password_hash_time_cost,
                    memory_kib=settings.password_hash_memory_kib,
                    parallelism=settings.password_hash_parallelism,
                )
            ),
            TokenIssuer(
                signing_key(settings),
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                lifetime=timedelta(seconds=settings.jwt_expiration),
                leeway=timedelta(seconds=settings.jwt_leeway),
            ),
            refresh_lifetime=timedelta(seconds=settings.jwt_refresh_expiration),
            throttle=ThrottlePolicy(
                after=settings.login_backoff_after,
                base=timedelta(seconds=settings.login_backoff_base_seconds),
                maximum=timedelta(seconds=settings.login_backoff_max_seconds),
                account_limit=settings.login_account_failure_limit,
                account_window=timedelta(seconds=settings.login_account_window_seconds),
                account_lock=timedelta(seconds=settings.login_account_lock_seconds),
            ),
            watch=self._watch,
        )
        self._guard = CredentialGuard(self._auth, self._watch)
        await self._guard.start()

    async def stop(self) -> None:
        if self._guard is not None:
            await self._guard.stop()
        if self._watch is not None:
            await self._watch.stop()
        self._auth = self._guard = self._watch = None

    async def check_health(self) -> Health:
        return Health.ok()


class RateLimiterService:
    """The rate limiter, with its storage chosen once from RATE_LIMIT_STORAGE_URL."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._limiter: RateLimiter | None = None

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            raise RuntimeError("the rate limiter has not started")
        return self._limiter

    async def start(self) -> None:
        settings = self._settings
        storage: RateLimitStorage
        if settings.rate_limit_storage_url == "memory://":
            storage = MemoryStorage()
        else:
            storage = RedisStorage(settings.rate_limit_storage_url)
        tenant = (
            Limit(settings.rate_limit_tenant_per_minute, settings.rate_limit_tenant_burst)
            if settings.rate_limit_tenant_per_minute
            else None
        )
        policy = RateLimitPolicy(
            Limit(settings.rate_limit_per_minute, settings.rate_limit_burst),
            tenant=tenant,
            endpoints={
                name: Limit(rule.requests_per_minute, rule.burst_size)
                for name, rule in settings.rate_limit_endpoints.items()
            },
        )
        self._limiter = RateLimiter(policy, storage, fail_open=settings.rate_limit_fail_open)
        health = await self._limiter.check_health()
        if health.status is not HealthStatus.ok:
            logger.warning("rate-limit storage unreachable at start", detail=health.detail)

    async def stop(self) -> None:
        if self._limiter is not None:
            await self._limiter.storage.close()

    async def check_health(self) -> Health:
        return await self.limiter.check_health()


class EventStoreService:
    """The event log, reachable by every later service."""

    def __init__(
        self,
        database: DatabaseService,
        upcasters: Upcasters | None = None,
        *,
        snapshot_every: int = 100,
    ) -> None:
        self._database = database
        self._snapshot_every = snapshot_every
        self._upcasters = upcasters or Upcasters()
        self._store: EventStore | None = None
        self._notifier: LogNotifier | None = None
        self._tail: LogTail | None = None

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RuntimeError("the event store service has not started")
        return self._store

    @property
    def tail(self) -> LogTail:
        if self._tail is None:
            raise RuntimeError("the event store service has not started")
        return self._tail

    async def start(self) -> None:
        self._store = EventStore(
            self._database.database, self._upcasters, snapshot_every=self._snapshot_every
        )
        await self._rebuild_stale_read_models()
        self._notifier = LogNotifier(self._database.database)
        await self._notifier.start()
        self._tail = LogTail(self._store, self._notifier)
        await self._tail.start()

    async def _rebuild_stale_read_models(self) -> None:
        db = self._database.database
        async with db.read() as conn:
            pending = await pending_revisions(conn, db.url, head_revisions())
        if pending:  # AUTO_MIGRATE=false on an old schema: /health/detailed says so
            logger.warning("read models not checked: the schema is not migrated")
            return
        for result in await catch_up(
            db, register_read_models(projections.registry), self._upcasters
        ):
            logger.info(
                "rebuilt a read model from the event log",
                projection=result.projection,
                events_folded=result.events_folded,
                seconds=round(result.seconds, 3),
            )

    async def stop(self) -> None:
        if self._tail is not None:
            await self._tail.stop()
        if self._notifier is not None:
            await self._notifier.stop()
        self._store = None

    async def check_health(self) -> Health:
        if saturated := pool_saturation(self.store.db):
            return saturated
        return Health.ok(last_position=await self.store.last_position())
