"""The SSE response against an ASGI server played by the test: a client that reads at will."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from workflow_engine.api.sse import (
    CLIENT_GONE,
    SERVER_STOPPING,
    Ending,
    EventStreamResponse,
    Outlet,
    stop_streams,
)

SCOPE = {"type": "http", "method": "GET", "path": "/stream", "headers": []}


class Client:
    """The server side of one connection as uvicorn behaves: `send` waits while the client's
    buffer is full (`stalled`), and `receive` answers `http.disconnect` once it went away."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.gone = asyncio.Event()

    async def send(self, message: Message) -> None:
        await self.reading.wait()
        self.messages.append(message)

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def complete(self) -> bool:
        return bool(self.messages) and self.messages[-1].get("more_body") is False


async def test_a_stream_writes_what_its_producer_writes_then_ends() -> None:
    client = Client()

    async def produce(ending: Ending, outlet: Outlet) -> None:
        await outlet.write(b"data: 1\r\n\r\n")
        await outlet.write(b"data: 2\r\n\r\n")

    await EventStreamResponse(produce)(SCOPE, client.receive, client.send)
    start = client.messages[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert (b"cache-control", b"no-store") in start["headers"]
    assert client.body == b"data: 1\r\n\r\ndata: 2\r\n\r\n"
    assert client.complete


async def test_an_offer_that_would_wait_is_finished_by_the_streams_task_in_order() -> None:
    client = Client()
    offered = asyncio.Event()
    results: list[bool] = []

    async def produce(ending: Ending, outlet: Outlet) -> None:
        results.append(outlet.offer(b"data: 1\r\n\r\n"))  # the client reads: sent at once
        client.reading.clear()
        results.append(outlet.offer(b"data: 2\r\n\r\n"))  # it stopped: left over
        offered.set()
        await outlet.write(b"data: 3\r\n\r\n")  # finishes the one left over first

    response = asyncio.create_task(EventStreamResponse(produce)(SCOPE, client.receive, client.send))
    await offered.wait()
    assert results == [True, False]
    assert client.body == b"data: 1\r\n\r\n"
    client.reading.set()
    await asyncio.wait_for(response, 5)
    assert client.body == b"data: 1\r\n\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n"


async def test_an_idle_stream_is_pinged_with_a_comment() -> None:
    client = Client()

    async def produce(ending: Ending, outlet: Outlet) -> None:
        await asyncio.sleep(0.35)

    await EventStreamResponse(produce, ping=0.1)(SCOPE, client.receive, client.send)
    pings = [m["body"] for m in client.messages[1:-1]]
    assert pings
    assert all(p.startswith(b": ping - ") and p.endswith(b"\r\n\r\n") for p in pings)


async def test_a_client_that_goes_away_ends_its_producer() -> None:
    client = Client()
    ended: list[str] = []

    async def produce(ending: Ending, outlet: Outlet) -> None:
        ended.append(await ending)

    response = asyncio.create_task(EventStreamResponse(produce)(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(response, 5)
    assert ended == [CLIENT_GONE]


async def test_a_stalled_client_is_let_go_after_the_send_timeout() -> None:
    client = Client()
    cleaned_up = asyncio.Event()

    async def produce(ending: Ending, outlet: Outlet) -> None:
        client.reading.clear()  # the client never reads again
        try:
            while True:
                await outlet.write(b"data: more\r\n\r\n")
        finally:
            cleaned_up.set()

    response = EventStreamResponse(produce, ping=0.05, send_timeout=0.2)
    await asyncio.wait_for(response(SCOPE, client.receive, client.send), 5)
    assert cleaned_up.is_set()
    assert not client.complete  # nothing more could be sent: the connection is dropped


def test_stopping_the_server_ends_open_streams_and_those_opened_later() -> None:
    clients: list[Client] = []
    ended: list[str] = []

    async def produce(ending: Ending, outlet: Outlet) -> None:
        ended.append(await ending)

    async def serve() -> None:
        clients.extend([Client(), Client()])
        first = asyncio.create_task(
            EventStreamResponse(produce)(SCOPE, clients[0].receive, clients[0].send)
        )
        await asyncio.sleep(0.05)
        stop_streams()
        await asyncio.wait_for(first, 5)
        late = EventStreamResponse(produce)(SCOPE, clients[1].receive, clients[1].send)
        await asyncio.wait_for(late, 5)

    # A loop of its own: a stopping loop stays stopping, and the other tests share theirs.
    asyncio.run(serve())
    assert ended == [SERVER_STOPPING, SERVER_STOPPING]
    assert all(client.complete for client in clients)
