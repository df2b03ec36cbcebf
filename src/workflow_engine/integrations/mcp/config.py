"""Which MCP servers steps may call: the seed's `*_MCP_URL` variables and `[mcp.servers.<name>]`.

A URL with no path means the server's `/mcp` endpoint (where MCP servers serve streamable
HTTP by default). Header values may name environment variables as `${NAME}`, so secrets stay
out of `config.toml`; a variable that is not set stops the start with its name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from workflow_engine.config import Settings

from workflow_engine.net.addresses import NetworkPolicy

SEED_SERVERS = ("helpscout", "notion", "slack")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class MCPServerConfig:
    name: str
    transport: str  # streamable_http | sse | stdio
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 30.0  # seconds per call, and to connect
    # For a URL a tenant gave (a registered instance): every connection goes to an address of
    # its host this policy allows, resolved and checked right before it (`net/pinning.py`).
    # None for servers the operator configured.
    policy: NetworkPolicy | None = None


def endpoint(url: str) -> str:
    """`http://host:8002` → `http://host:8002/mcp`; a URL with a path is kept as it is."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/mcp")
    return urlunsplit(parts)


def mcp_server_configs(
    settings: Settings, environ: Mapping[str, str] | None = None, demo_base: str | None = None
) -> tuple[MCPServerConfig, ...]:
    """Every configured server. `demo_base`: where this server mounts the demo services
    (`http://127.0.0.1:8080/demo/mcp`), used for the seed's servers left unset."""
    environ = os.environ if environ is None else environ
    servers: dict[str, MCPServerConfig] = {}
    seed_urls = {
        "helpscout": settings.helpscout_mcp_url,
        "notion": settings.notion_mcp_url,
        "slack": settings.slack_mcp_url,
    }
    for name, url in seed_urls.items():
        if url:
            servers[name] = MCPServerConfig(name, "streamable_http", endpoint(url))
        elif demo_base:
            servers[name] = MCPServerConfig(name, "streamable_http", f"{demo_base}/{name}/")
    for name, spec in settings.mcp_servers.items():
        headers = tuple((k, _expand(v, environ, name)) for k, v in spec.headers.items())
        env = tuple((k, _expand(v, environ, name)) for k, v in spec.env.items())
        url = spec.url if spec.transport == "sse" or spec.url is None else endpoint(spec.url)
        servers[name] = MCPServerConfig(
            name, spec.transport, url, headers, spec.command, tuple(spec.args), env,
            spec.timeout_seconds,
        )  # fmt: skip
    return tuple(servers.values())


def _expand(value: str, environ: Mapping[str, str], server: str) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ValueError(f"[mcp.servers.{server}] needs the environment variable {name}")
        return environ[name]

    return VARIABLE.sub(variable, value)
