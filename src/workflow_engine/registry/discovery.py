"""MCP servers found through the registry: a step names a service, the registry says where.

An instance is a candidate when it is `healthy` and registered with `metadata.protocol` =
`mcp`. Its URL's addresses are checked against the network policy again at lookup: the
name may resolve elsewhere now than when it was registered.
"""

from __future__ import annotations

import uuid

import structlog

from workflow_engine.db import Database
from workflow_engine.integrations.mcp.client import Instance
from workflow_engine.integrations.mcp.config import endpoint
from workflow_engine.net.addresses import NetworkPolicy, RefusedURL, http_url
from workflow_engine.registry import store

logger = structlog.get_logger(__name__)

PROTOCOL = "mcp"


class RegistryDiscovery:
    def __init__(self, db: Database, policy: NetworkPolicy) -> None:
        self._db = db
        self._policy = policy

    async def instances(self, tenant_id: uuid.UUID, name: str) -> list[Instance]:
        async with self._db.tenant_read(tenant_id) as conn:
            found = await store.healthy_instances(conn, tenant_id, name)
        instances = []
        for service in found:
            if service.metadata.get("protocol") != PROTOCOL:
                continue
            try:
                await self._policy.addresses(http_url(service.url))
            except RefusedURL as exc:
                logger.warning("registered MCP server refused", service=name,
                               service_id=str(service.id), reason=str(exc))  # fmt: skip
                continue
            # Checked again by every connection: the name may answer differently by then.
            instances.append(
                Instance(id=str(service.id), url=endpoint(service.url), policy=self._policy)
            )
        return instances
