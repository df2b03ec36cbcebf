"""The demo Notion: a help-center knowledge base to search, read and add to."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from workflow_engine.demo.search import rank, snippet
from workflow_engine.demo.store import DemoStore, labelled


def build(store: DemoStore) -> MCPServer:
    server = MCPServer(
        "notion-demo",
        instructions="Demo Notion knowledge base (seeded demo help articles).",
        log_level="WARNING",
    )

    @server.tool()
    async def search_pages(query: str, limit: int = 5) -> dict[str, Any]:
        """Pages ranked by how many of the query's words they share (title counts double)."""
        pages = store.read()["pages"]
        scores = rank(query, [(page["title"], page["content"]) for page in pages])
        ranked = []
        for page, points in zip(pages, scores, strict=True):
            if points:
                ranked.append({
                    "id": page["id"], "title": page["title"], "url": page["url"],
                    "tags": page["tags"], "score": points,
                    "snippet": snippet(page["content"], query), "content": page["content"],
                    "demo": True,
                })  # fmt: skip
        ranked.sort(key=lambda r: (-r["score"], r["id"]))
        store.log_call("search_pages", {"query": query}, f"{len(ranked)} found")
        return {"results": ranked[: max(1, min(limit, 20))], "demo": True}

    @server.tool()
    async def get_page(page_id: str) -> dict[str, Any]:
        """One page, whole."""
        for page in store.read()["pages"]:
            if page["id"] == page_id:
                store.log_call("get_page", {"page_id": page_id}, "ok")
                return labelled(page)
        raise ToolError(f"no page {page_id} in the demo knowledge base")

    @server.tool()
    async def create_page(
        title: str, content: str, tags: list[str] | None = None
    ) -> dict[str, Any]:
        """Add a page to the knowledge base."""
        if not title.strip():
            raise ToolError("a page needs a title")
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "page"

        def add(document: dict[str, Any]) -> dict[str, Any]:
            taken = {p["id"] for p in document["pages"]}
            page_id, n = f"kb-{slug}", 2
            while page_id in taken:
                page_id, n = f"kb-{slug}-{n}", n + 1
            page = {"id": page_id, "title": title, "tags": tags or [], "content": content,
                    "url": f"https://notion.example.com/acme/{page_id.removeprefix('kb-')}",
                    "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
            document["pages"].append(page)
            return page

        page = await store.change(add)
        store.log_call("create_page", {"title": title}, page["id"])
        return {"id": page["id"], "url": page["url"], "demo": True}

    return server
