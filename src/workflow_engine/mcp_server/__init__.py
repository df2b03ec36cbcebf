"""The engine as an MCP server at `/mcp`: its workflows as tools an agent can call.

`endpoint.py` mounts it and authenticates each request as the REST API does; `tools.py` holds
the tools and resources, thin handlers over the REST API's services.
"""

from workflow_engine.mcp_server.endpoint import MCPEndpoint

__all__ = ["MCPEndpoint"]
