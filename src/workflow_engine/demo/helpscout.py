"""The demo HelpScout: conversations (tickets) with threads, replies as drafts or sent, tags,
statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from workflow_engine.demo.search import rank
from workflow_engine.demo.store import DemoStore, labelled

Status = Literal["active", "pending", "closed"]


def build(store: DemoStore) -> MCPServer:
    server = MCPServer(
        "helpscout-demo",
        instructions="Demo HelpScout mailbox (seeded demo data, not real customers).",
        log_level="WARNING",
    )

    @server.tool()
    async def list_conversations(
        status: Status | None = None, tag: str | None = None, query: str | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:  # fmt: skip
        """Conversations, newest first, filtered by status, tag or words in them."""
        conversations = store.read()["conversations"]
        documents = [(c["subject"], " ".join(t["body"] for t in c["threads"]))
                     for c in conversations]  # fmt: skip
        scores = rank(query or "", documents)
        found = []
        for c, points in zip(conversations, scores, strict=True):
            if (status and c["status"] != status) or (tag and tag not in c["tags"]):
                continue
            if query and not points:
                continue
            found.append(_summary(c))
        found.sort(key=lambda c: c["created_at"], reverse=True)
        store.log_call("list_conversations", {"status": status, "tag": tag, "query": query}, "ok")
        return {"conversations": found[: max(1, min(limit, 100))], "demo": True}

    @server.tool()
    async def get_conversation(conversation_id: str) -> dict[str, Any]:
        """One conversation with all its threads."""
        conversation = _find(store.read(), conversation_id)
        store.log_call("get_conversation", {"conversation_id": conversation_id}, "ok")
        return labelled(conversation)

    @server.tool()
    async def create_reply(
        conversation_id: str, body: str, draft: bool = True, author: str = "workflow-engine"
    ) -> dict[str, Any]:
        """Add a reply to a conversation: a draft for a person to review, or sent."""
        if not body.strip():
            raise ToolError("the reply's body is empty")

        def add(document: dict[str, Any]) -> dict[str, Any]:
            conversation = _find(document, conversation_id)
            thread = {
                "id": f"{conversation_id}-{len(conversation['threads']) + 1}",
                "type": "reply", "author": author, "body": body, "draft": draft,
                "created_at": _now(),
            }  # fmt: skip
            conversation["threads"].append(thread)
            if not draft:
                conversation["status"] = "pending"
            return thread

        thread = await store.change(add)
        store.log_call("create_reply", {"conversation_id": conversation_id, "draft": draft}, "ok")
        return {"conversation_id": conversation_id, "thread_id": thread["id"], "draft": draft,
                "demo": True}  # fmt: skip

    @server.tool()
    async def add_tag(conversation_id: str, tag: str) -> dict[str, Any]:
        """Tag a conversation (idempotent)."""

        def add(document: dict[str, Any]) -> list[str]:
            conversation = _find(document, conversation_id)
            if tag not in conversation["tags"]:
                conversation["tags"].append(tag)
            return list(conversation["tags"])

        tags = await store.change(add)
        store.log_call("add_tag", {"conversation_id": conversation_id, "tag": tag}, "ok")
        return {"conversation_id": conversation_id, "tags": tags, "demo": True}

    @server.tool()
    async def update_status(conversation_id: str, status: Status) -> dict[str, Any]:
        """Set a conversation's status: active, pending or closed."""

        def update(document: dict[str, Any]) -> None:
            _find(document, conversation_id)["status"] = status

        await store.change(update)
        store.log_call("update_status", {"conversation_id": conversation_id, "status": status},
                       "ok")  # fmt: skip
        return {"conversation_id": conversation_id, "status": status, "demo": True}

    return server


def _find(document: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    for conversation in document["conversations"]:
        if conversation["id"] == str(conversation_id):
            found: dict[str, Any] = conversation
            return found
    raise ToolError(f"no conversation {conversation_id} in the demo mailbox")


def _summary(conversation: dict[str, Any]) -> dict[str, Any]:
    first = next((t["body"] for t in conversation["threads"] if t["type"] == "customer"), "")
    return {
        "id": conversation["id"], "subject": conversation["subject"],
        "status": conversation["status"], "customer": conversation["customer"],
        "tags": conversation["tags"], "created_at": conversation["created_at"],
        "preview": first[:160], "demo": True,
    }  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
