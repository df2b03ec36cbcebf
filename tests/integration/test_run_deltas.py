"""The deltas of running steps (`engine/deltas.py`), from a step's publisher to a stream's
subscription: batched, numbered, for the right tenant and run only, bounded per stream, and on
PostgreSQL carried to another process's streams by NOTIFY."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from workflow_engine.config import to_async_url
from workflow_engine.db import Database
from workflow_engine.engine import deltas as deltas_module
from workflow_engine.engine.deltas import PIECE_CHARS, QUEUE_SIZE, DeltaHub, Subscription, hub_for

RUN, OTHER_RUN = uuid.uuid4(), uuid.uuid4()


def _messages(subscription: Subscription) -> list[dict[str, object]]:
    """What the stream writes for the deltas waiting: `event: delta` messages, no `id`."""
    written = subscription.take().decode()
    messages = [block for block in written.split("\r\n\r\n") if block]
    assert all(block.startswith("event: delta\r\ndata: ") for block in messages), written
    return [json.loads(block.removeprefix("event: delta\r\ndata: ")) for block in messages]


async def _ending() -> asyncio.Future[str]:
    return asyncio.get_running_loop().create_future()


async def test_pieces_published_together_are_one_delta_and_the_rest_follow_in_order(
    database: Database, tenant_id: uuid.UUID
) -> None:
    hub = hub_for(database)
    ending = await _ending()
    with hub.subscribe(tenant_id, RUN, ending) as subscription:
        publisher = hub.publisher(tenant_id, RUN, "draft", 2)
        for word in ["Your", " order", " ships", " today."]:
            await publisher.publish(word)  # within one flush interval: one delta
        assert not subscription.pending
        await asyncio.wait_for(subscription.bell, 5)
        await publisher.publish(" Thanks")
        await publisher.close()  # what is left goes at once
        messages = _messages(subscription)
    assert messages == [
        {"run_id": str(RUN), "step_id": "draft", "attempt": 2, "seq": 1,
         "text": "Your order ships today."},
        {"run_id": str(RUN), "step_id": "draft", "attempt": 2, "seq": 2, "text": " Thanks"},
    ]  # fmt: skip


async def test_a_stream_gets_its_tenants_deltas_of_its_run_only(
    database: Database, tenant_id: uuid.UUID
) -> None:
    hub = hub_for(database)
    ending = await _ending()
    with (
        hub.subscribe(tenant_id, RUN, ending) as of_run,
        hub.subscribe(tenant_id, None, ending) as of_tenant,
    ):
        for tenant, run, text in [(tenant_id, RUN, "a"), (tenant_id, OTHER_RUN, "b"),
                                  (uuid.uuid4(), RUN, "c")]:  # fmt: skip
            publisher = hub.publisher(tenant, run, "s", 1)
            await publisher.publish(text)
            await publisher.close()
        assert [m["text"] for m in _messages(of_run)] == ["a"]
        assert [m["text"] for m in _messages(of_tenant)] == ["a", "b"]


async def test_a_long_delta_is_split_and_a_slow_stream_drops_what_it_cannot_hold(
    database: Database, tenant_id: uuid.UUID
) -> None:
    hub = hub_for(database)
    ending = await _ending()
    dropped = REGISTRY.get_sample_value("stream_deltas_dropped_total") or 0.0
    with hub.subscribe(tenant_id, RUN, ending) as subscription:
        publisher = hub.publisher(tenant_id, RUN, "s", 1)
        await publisher.publish("x" * (PIECE_CHARS * 2 + 5))
        await publisher.close()
        assert [(m["seq"], len(str(m["text"]))) for m in _messages(subscription)] == [
            (1, PIECE_CHARS), (2, PIECE_CHARS), (3, 5)]  # fmt: skip
        for n in range(QUEUE_SIZE + 10):  # nobody takes them
            publisher = hub.publisher(tenant_id, RUN, "s", n)
            await publisher.publish("y")
            await publisher.close()
        assert len(_messages(subscription)) == QUEUE_SIZE
    assert REGISTRY.get_sample_value("stream_deltas_dropped_total") == dropped + 10


async def test_the_stream_ending_rings_its_bell(database: Database, tenant_id: uuid.UUID) -> None:
    ending = await _ending()
    with hub_for(database).subscribe(tenant_id, RUN, ending) as subscription:
        ending.set_result("the client went away")
        await asyncio.wait_for(subscription.bell, 5)
        assert subscription.take() == b""
        assert subscription.bell.done()  # it stays rung: the stream is over


@pytest.fixture
async def second_process_db(postgres_url: str) -> AsyncIterator[Database]:
    """Another connection pool on the same database: what another process would have."""
    db = Database(to_async_url(postgres_url), pool_size=2, pool_timeout=10)
    yield db
    await db.dispose()


async def test_deltas_of_another_process_reach_a_stream_through_notify(
    postgres_database: Database, second_process_db: Database, tenant_id: uuid.UUID
) -> None:
    api, worker = DeltaHub(postgres_database), DeltaHub(second_process_db)
    ending = await _ending()
    with api.subscribe(tenant_id, RUN, ending) as subscription:
        # The listener connects in the background: until it has, deltas go nowhere.
        probe = 0
        while not subscription.pending:
            probe += 1
            publisher = worker.publisher(tenant_id, RUN, "probe", probe)
            await publisher.publish(".")
            await publisher.close()
            await asyncio.sleep(0.05)
        subscription.take()

        publisher = worker.publisher(tenant_id, RUN, "draft", 1)
        text = "é" * (PIECE_CHARS + 1) + " and the rest"
        await publisher.publish(text)
        await publisher.close()  # returns once sent: the notifications are on their way
        messages: list[dict[str, object]] = []
        async with asyncio.timeout(10):
            while len(messages) < 2:  # as a stream does: woken by the bell, takes what waits
                await subscription.bell
                messages += [m for m in _messages(subscription) if m["step_id"] == "draft"]
    assert [m["seq"] for m in messages] == [1, 2]
    assert "".join(str(m["text"]) for m in messages) == text
    # Its own deltas a process delivers once, directly (not again through the notification).
    with api.subscribe(tenant_id, RUN, ending := await _ending()) as own:
        own_publisher = api.publisher(tenant_id, RUN, "own", 1)
        await own_publisher.publish("once")
        await own_publisher.close()
        await asyncio.sleep(0.2)
        assert [m["text"] for m in _messages(own)] == ["once"]


def test_the_notification_payload_stays_under_postgresqls_limit() -> None:
    worst = deltas_module.Delta(uuid.uuid4(), uuid.uuid4(), "s" * 100, 2**31, 2**31,
                                "\x01" * PIECE_CHARS)  # fmt: skip
    assert len(worst.payload(uuid.uuid4().hex).encode()) < 8000
