"""Append throughput of the event log: 1 and 16 concurrent writers, SQLite and PostgreSQL.

    .venv/bin/python bench/event_append.py [--postgres postgresql://postgres@127.0.0.1/postgres]

Each writer appends single events to its own aggregates (one transaction per event, the way
API requests do) for a fixed number of events; throughput is events committed per second.
A throwaway SQLite file and, when given, a throwaway PostgreSQL database are created and
removed.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import uuid
from pathlib import Path

from harness import throwaway_postgres

from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.db.migrate import upgrade
from workflow_engine.events import EventStore, NewEvent


async def run(url: str, writers: int, events: int) -> float:
    db = Database(to_async_url(url), pool_size=max(writers, 2))
    store = EventStore(db)
    tenant = uuid.uuid4()

    async def writer(index: int) -> None:
        for n in range(events // writers):
            await store.append(
                tenant_id=tenant, aggregate_type="bench", aggregate_id=f"w{index}-{n % 50}",
                new_events=[NewEvent("Appended", {"n": n})], expected_version=None,
            )  # fmt: skip

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.perf_counter() - started
    await db.dispose()
    return (events // writers) * writers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--postgres", help="a server the benchmark may create a database on")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}\n")
    print("| database | writers | events | events/s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        sqlite_url = f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade(to_async_url(sqlite_url))
        for writers in (1, 16):
            rate = asyncio.run(run(sqlite_url, writers, args.events))
            print(f"| SQLite | {writers} | {args.events} | {rate:,.0f} |")
    if args.postgres:
        with throwaway_postgres(args.postgres) as url:
            upgrade(to_async_url(url))
            for writers in (1, 16):
                rate = asyncio.run(run(url, writers, args.events))
                print(f"| PostgreSQL | {writers} | {args.events} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
