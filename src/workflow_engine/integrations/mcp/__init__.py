"""MCP servers as steps see them: configuration, and a pool of reused client sessions."""

from workflow_engine.integrations.mcp.client import (
    Discovery,
    Instance,
    MCPCallError,
    MCPClients,
    ToolOutput,
)
from workflow_engine.integrations.mcp.config import MCPServerConfig, mcp_server_configs

__all__ = [
    "Discovery",
    "Instance",
    "MCPCallError",
    "MCPClients",
    "MCPServerConfig",
    "ToolOutput",
    "mcp_server_configs",
]
