"""The demo Slack: channels, messages to search, and posting."""

from __future__ import annotations

import time
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from workflow_engine.demo.search import rank
from workflow_engine.demo.store import DemoStore, labelled

BOT = "workflow-engine"


def build(store: DemoStore) -> MCPServer:
    server = MCPServer(
        "slack-demo",
        instructions="Demo Slack workspace (seeded demo channels and messages).",
        log_level="WARNING",
    )

    @server.tool()
    async def list_channels() -> dict[str, Any]:
        """The workspace's channels."""
        store.log_call("list_channels", {}, "ok")
        return {"channels": [labelled(c) for c in store.read()["channels"]], "demo": True}

    @server.tool()
    async def search_messages(query: str, limit: int = 5) -> dict[str, Any]:
        """Messages ranked by how many of the query's words they share."""
        document = store.read()
        names = {c["id"]: c["name"] for c in document["channels"]}
        messages = document["messages"]
        scores = rank(query, [("", message["text"]) for message in messages])
        ranked = []
        for message, points in zip(messages, scores, strict=True):
            if points:
                ranked.append({**message, "channel_name": names.get(message["channel"]),
                               "score": points, "demo": True})  # fmt: skip
        ranked.sort(key=lambda m: (-m["score"], m["ts"]))
        store.log_call("search_messages", {"query": query}, f"{len(ranked)} found")
        return {"messages": ranked[: max(1, min(limit, 20))], "demo": True}

    @server.tool()
    async def post_message(channel: str, text: str) -> dict[str, Any]:
        """Post to a channel, named with or without # or by id."""
        if not text.strip():
            raise ToolError("the message is empty")
        wanted = channel.removeprefix("#")

        def post(document: dict[str, Any]) -> dict[str, Any]:
            found = next((c for c in document["channels"]
                          if wanted in (c["id"], c["name"])), None)  # fmt: skip
            if found is None:
                raise ToolError(f"no channel {channel} in the demo workspace")
            message = {"channel": found["id"], "ts": f"{time.time():.6f}", "user": BOT,
                       "text": text}  # fmt: skip
            document["messages"].append(message)
            return {**message, "channel_name": found["name"]}

        message = await store.change(post)
        store.log_call("post_message", {"channel": channel}, message["ts"])
        return labelled(message)

    return server
