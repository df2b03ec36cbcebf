"""The `Settings` schema: every setting, its default, its validation."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from workflow_engine.config.database_url import to_async_url

Environment = Literal["development", "production"]
LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]

MIN_PRODUCTION_SECRET_BYTES = 32
SQLITE_FILE_NAME = "workflow-engine.db"


_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


class LLMPrice(BaseModel):
    """An `[llm.prices."<model>"]` table: US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class LLMBudget(BaseModel):
    """An `[llm.tenant_budgets."<tenant>"]` table: the tenant's daily LLM budgets. A budget
    left out is the server's (`LLM_TOKEN_BUDGET_PER_DAY`, `LLM_COST_BUDGET_PER_DAY`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_budget_per_day: int | None = Field(None, ge=0)
    cost_budget_per_day: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_some(self) -> LLMBudget:
        if self.token_budget_per_day is None and self.cost_budget_per_day is None:
            raise ValueError("give token_budget_per_day, cost_budget_per_day or both")
        return self


class EndpointLimit(BaseModel):
    """A `[rate_limiting.endpoints."METHOD /path"]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int = Field(ge=1)
    burst_size: int = Field(ge=1)


class MCPServerSettings(BaseModel):
    """One `[mcp.servers.<name>]` table (or entry of MCP_SERVERS)."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["streamable_http", "sse", "stdio"] = "streamable_http"
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _check_target(self) -> MCPServerSettings:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio server needs a command")
        elif not self.url or not _is_http_url(self.url):
            raise ValueError(f"a {self.transport} server needs an http:// or https:// url")
        return self


class Settings(BaseSettings):
    """Every setting of the server. Build it with `load_settings()` to include `config.toml`."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        frozen=True,
        allow_inf_nan=False,
        str_strip_whitespace=True,
    )

    environment: Environment = Field(
        "development", description="`production` tightens defaults and requires a real secret."
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(
        Path("data"),
        description="Directory for the SQLite file and the generated development secret.",
    )
    shutdown_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed by CORS (`*` for any). None by default.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body accepted; larger gets 413."
    )

    database_url: str = Field(
        "",
        description="`postgresql://user:pass@host/db` or `sqlite:///path`. "
        "Default: a SQLite file in DATA_DIR.",
    )
    db_max_connections: int = Field(10, ge=1, le=1000, description="Connection pool size.")
    db_connection_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for a connection from the pool."
    )
    auto_migrate: bool | None = Field(
        None,
        description="Apply pending migrations before serving. Default: true in development, "
        "false in production.",
    )

    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for access tokens; at least 32 bytes in production. "
        "In development a random one is generated into DATA_DIR.",
    )
    jwt_expiration: int = Field(3600, ge=60, description="Access-token lifetime in seconds.")
    jwt_refresh_expiration: int = Field(
        604800, ge=60, description="Refresh-token lifetime in seconds."
    )

    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = Field(
        "HS256", description="HS256 signs with JWT_SECRET; RS256/ES256 with JWT_PRIVATE_KEY_FILE."
    )
    jwt_private_key_file: Path | None = Field(
        None, description="PEM private key for RS256 (RSA, 2048+ bits) or ES256 (P-256)."
    )
    jwt_issuer: str = Field(
        "workflow-engine", min_length=1, description="`iss` claim of access tokens."
    )
    jwt_audience: str = Field(
        "workflow-engine-api", min_length=1, description="`aud` claim of access tokens."
    )
    jwt_leeway: int = Field(
        30, ge=0, le=300, description="Clock skew tolerated when checking token times, seconds."
    )
    bootstrap_admin_email: str | None = Field(
        None, description="On an empty database, create tenant `default` with this admin."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        None, description="Password of the bootstrap admin."
    )
    password_hash_time_cost: int = Field(3, ge=1, le=20, description="argon2id passes.")
    password_hash_memory_kib: int = Field(
        65536, ge=1024, le=4194304, description="argon2id memory, KiB."
    )
    password_hash_parallelism: int = Field(4, ge=1, le=64, description="argon2id lanes.")

    login_backoff_after: int = Field(
        5,
        ge=1,
        le=1000,
        description="Consecutive failed logins (one account, one address) "
        "before that pair must wait.",
    )
    login_backoff_base_seconds: float = Field(
        1.0, gt=0, le=3600, description="First wait; it doubles with each further failure."
    )
    login_backoff_max_seconds: float = Field(
        900.0, gt=0, le=86400, description="Longest wait for one address."
    )
    login_account_failure_limit: int = Field(
        50, ge=1, description="Failures on one account, from any address, that lock it for all."
    )
    login_account_window_seconds: float = Field(
        3600.0, gt=0, description="Window in which those failures are counted."
    )
    login_account_lock_seconds: float = Field(
        900.0, gt=0, le=86400, description="How long every address then waits."
    )

    snapshot_every: int = Field(
        100, ge=1, le=1_000_000, description="Events folded before a new aggregate snapshot."
    )
    event_seal_interval: float = Field(
        10.0, ge=0.1, le=3600, description="Seconds between seals of the event log."
    )
    workflows_dir: Path | None = Field(
        None, description="A directory of workflow definitions (*.yaml, *.yml, *.json)."
    )
    node_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Python modules imported at start whose @node functions add node types.",
    )
    trigger_wait_max_seconds: float = Field(
        60.0, ge=0, le=3600,
        description="Longest `wait` a trigger may ask for: answer once the run ends, seconds.",
    )  # fmt: skip
    worker_enabled: bool = Field(
        True, description="Run a worker inside each server process (off: standalone workers)."
    )
    worker_concurrency: int = Field(
        16, ge=1, le=256, description="Steps one worker runs at once (no connection held)."
    )
    worker_lease_seconds: float = Field(
        30.0, ge=2, le=3600, description="How long a claimed step stays a worker's unheard."
    )
    worker_max_claims: int = Field(
        20, ge=2, le=1000,
        description="Claims of one task without an outcome before its step fails as `internal`.",
    )  # fmt: skip
    max_running_per_tenant: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Runs of one tenant under way at once; the rest wait queued. None: no cap.",
    )  # fmt: skip
    tenant_weights: dict[str, int] = Field(
        default_factory=dict,
        description="Tenant name to its share of claims (1-100; others have 1), as JSON.",
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts the http.request node may call: names, *.example.com, or *.",
    )
    http_max_response_bytes: int = Field(
        1024 * 1024, ge=1024, le=100 * 1024 * 1024, description="Largest body http.request reads."
    )
    workflow_env: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Environment variables expressions may read as env.NAME.",
    )
    event_partitions: int = Field(
        1,
        ge=1,
        le=64,
        description="Hash partitions of the events table by tenant (PostgreSQL; 1: none).",
    )

    rate_limit_per_minute: int = Field(
        60, ge=1, description="Sustained requests per minute per principal."
    )
    rate_limit_burst: int = Field(10, ge=1, description="Requests allowed in a burst.")
    rate_limit_tenant_per_minute: int | None = Field(
        600, ge=1, description="Ceiling on the sum of a tenant's principals, per minute."
    )
    rate_limit_tenant_burst: int = Field(100, ge=1, description="The tenant ceiling's burst.")
    rate_limit_endpoints: dict[str, EndpointLimit] = Field(
        default_factory=lambda: {
            "POST /api/v1/auth/login": EndpointLimit(requests_per_minute=10, burst_size=5)
        },
        description="Per-endpoint limits replacing the default, keyed `METHOD /path`.",
    )
    rate_limit_storage_url: str = Field(
        "memory://",
        description="`memory://` (this process only) or `redis://host:port/db` (shared).",
    )
    rate_limit_fail_open: bool = Field(
        True,
        description="Serve requests unchecked (true) or refuse them (false) when Redis is away.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated proxy networks whose X-Forwarded-For is believed.",
    )

    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    metrics_token: SecretStr | None = Field(
        None, description="When set, /metrics asks for `Authorization: Bearer <this token>`."
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535,
        description="Port where a standalone `workflow-engine worker` serves its /metrics.",
    )  # fmt: skip
    tracing_enabled: bool = Field(
        True, description="Export OpenTelemetry traces (needs the `monitoring` extra)."
    )
    log_level: LogLevel = Field("info", description="trace, debug, info, warning, error.")
    log_format: LogFormat = Field(
        "auto", description="`json`, `console`, or `auto` (JSON in production)."
    )

    notion_mcp_url: str | None = Field(None, description="Notion MCP server.")
    slack_mcp_url: str | None = Field(None, description="Slack MCP server.")
    helpscout_mcp_url: str | None = Field(None, description="HelpScout MCP server.")

    mcp_servers: dict[str, MCPServerSettings] = Field(
        default_factory=dict,
        description="More MCP servers by name: [mcp.servers.<name>] tables, or JSON.",
    )
    demo_services: bool | None = Field(
        None,
        description="Mount the demo HelpScout, Notion and Slack MCP servers at /demo/mcp. "
        "Unset: on in development when no *_MCP_URL is set.",
    )
    mcp_server_enabled: bool = Field(
        True, description="Serve the workflows as MCP tools at /mcp (same credentials as the API)."
    )
    mcp_tool_wait_seconds: float = Field(
        30.0, ge=0, le=3600,
        description="How long a `run_<name>` MCP tool waits for its run to end before it "
        "answers with the run's id and status.",
    )  # fmt: skip

    registry_allowed_networks: Annotated[list[str], NoDecode] | None = Field(
        None,
        description="Private or loopback networks (CIDR) registered services may be in. "
        "Unset: loopback in development, none in production. Link-local and cloud metadata "
        "addresses are refused always.",
    )
    registry_check_interval_seconds: float = Field(
        10.0, ge=0.05, le=3600, description="How often each registered service is probed."
    )
    registry_check_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="How long one health probe may take."
    )
    registry_healthy_threshold: int = Field(
        2, ge=1, le=10, description="Passing checks in a row that make a service healthy."
    )
    registry_unhealthy_threshold: int = Field(
        2, ge=1, le=10, description="Failing checks in a row that make a service unhealthy."
    )
    registry_expired_grace_seconds: float = Field(
        300.0, ge=0, le=30 * 24 * 3600,
        description="How long an expired service stays listed before it is removed.",
    )  # fmt: skip
    registry_check_history: int = Field(
        100, ge=1, le=500,  # what `GET .../services/{id}/checks` can read at most
        description="Checks kept per service, newest first, for its latency history.",
    )  # fmt: skip

    ui_enabled: bool = Field(True, description="Serve the web dashboard at /ui (docs/ui.md).")

    llm_provider: Literal["offline", "openai", "anthropic"] | None = Field(
        None,
        description="Provider of llm.* steps: offline, openai (any OpenAI-compatible API) or "
        "anthropic. Unset: openai when LLM_API_KEY or LLM_BASE_URL is set, else anthropic when "
        "ANTHROPIC_API_KEY is, else offline.",
    )
    llm_model: str | None = Field(
        None, description="Model of the default provider's llm.* steps (unless a step names one)."
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible API base URL (default https://api.openai.com/v1)."
    )
    llm_api_key: SecretStr | None = Field(None, description="API key sent as a bearer token.")
    anthropic_api_key: SecretStr | None = Field(
        None, description="Anthropic API key (sent as x-api-key)."
    )
    anthropic_base_url: str | None = Field(
        None, description="Anthropic API base URL (default https://api.anthropic.com)."
    )
    llm_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="How long one LLM request may take."
    )
    llm_prices: dict[str, LLMPrice] = Field(
        default_factory=dict,
        description="Prices of models for the cost metric, per million tokens: "
        '[llm.prices."<model>"] tables, or JSON. Adds to or overrides the built-in list.',
    )
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a 429, 5xx or timeout within one step attempt."
    )
    llm_token_budget_per_day: int | None = Field(
        None, ge=0,
        description="LLM tokens (prompt and completion) a tenant may spend per UTC day. "
        "None: no limit.",
    )  # fmt: skip
    llm_cost_budget_per_day: float | None = Field(
        None, ge=0,
        description="Estimated LLM cost in US dollars a tenant may spend per UTC day. "
        "None: no limit.",
    )  # fmt: skip
    llm_tenant_budgets: dict[str, LLMBudget] = Field(
        default_factory=dict,
        description="Tenant name to its daily LLM budgets, overriding the server's: "
        '[llm.tenant_budgets."<tenant>"] tables, or JSON.',
    )

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _parse_servers(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(
                    'expected JSON like {"crm": {"url": "https://crm.example.com/mcp"}}'
                ) from None
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _check_server_names(
        cls, value: dict[str, MCPServerSettings]
    ) -> dict[str, MCPServerSettings]:
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{name!r}: server names are letters, digits, - and _")
        return value

    @field_validator("llm_prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(
                    'expected JSON like {"my-model": {"input_per_million": 0.5, '
                    '"output_per_million": 1.5}}'
                ) from None
        return value

    @field_validator("llm_tenant_budgets", mode="before")
    @classmethod
    def _parse_budgets(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError(
                    'expected JSON like {"acme": {"token_budget_per_day": 100000, '
                    '"cost_budget_per_day": 5}}'
                ) from None
        return value

    @field_validator("tenant_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError('expected JSON like {"acme": 3, "globex": 2}') from None
        return value

    @field_validator("tenant_weights")
    @classmethod
    def _check_weights(cls, value: dict[str, int]) -> dict[str, int]:
        for name, weight in value.items():
            if not 1 <= weight <= 100:
                raise ValueError(f"the weight of {name!r} must be from 1 to 100, not {weight}")
        return value

    @field_validator("rate_limit_endpoints", mode="before")
    @classmethod
    def _parse_endpoints(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(
                    'expected JSON like {"POST /api/v1/auth/login": '
                    '{"requests_per_minute": 10, "burst_size": 5}}'
                ) from None
        return value

    @field_validator("rate_limit_endpoints")
    @classmethod
    def _check_endpoint_names(cls, value: dict[str, EndpointLimit]) -> dict[str, EndpointLimit]:
        for name in value:
            method, _, path = name.partition(" ")
            if method.upper() not in _HTTP_METHODS or not path.startswith("/"):
                raise ValueError(f"{name!r} is not `METHOD /path`, e.g. `POST /api/v1/auth/login`")
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        if value != "memory://" and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected memory:// or redis://host:port/db")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies", "registry_allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str] | None) -> list[str] | None:
        for network in value or ():
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or network") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            return "warning" if value == "warn" else value
        return value

    @field_validator("environment", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "cors_origins",
        "node_modules",
        "http_allowed_hosts",
        "workflow_env",
        "registry_allowed_networks",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("workflow_env")
    @classmethod
    def _check_env_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not an environment variable name")
        return names

    @field_validator("node_modules")
    @classmethod
    def _check_modules(cls, modules: list[str]) -> list[str]:
        for module in modules:
            if not all(part.isidentifier() for part in module.split(".")):
                raise ValueError(f"{module!r} is not a module name")
        return modules

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _is_http_url(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins

    @field_validator("rate_limit_tenant_per_minute", "max_running_per_tenant", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty value switches these limits off (`RATE_LIMIT_TENANT_PER_MINUTE=`), as the
        documentation says; otherwise the environment could not unset a default."""
        return None if value == "" else value

    @field_validator(
        "notion_mcp_url", "slack_mcp_url", "helpscout_mcp_url", "llm_base_url",
        "anthropic_base_url",
    )  # fmt: skip
    @classmethod
    def _check_service_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _is_http_url(value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value:
            to_async_url(value)  # raises ValueError with the reason
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _non_empty_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty; leave it unset to use a development secret")
        return value

    @model_validator(mode="after")
    def _check_bootstrap_admin(self) -> Settings:
        if (self.bootstrap_admin_email is None) != (self.bootstrap_admin_password is None):
            raise ValueError(
                "BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD must be set together"
            )
        return self

    @model_validator(mode="after")
    def _check_event_partitions(self) -> Settings:
        if self.event_partitions > 1 and self.is_sqlite:
            raise ValueError(
                f"EVENT_PARTITIONS={self.event_partitions} needs PostgreSQL (DATABASE_URL)"
            )
        return self

    @model_validator(mode="after")
    def _check_signing_key(self) -> Settings:
        if self.jwt_algorithm != "HS256" and self.jwt_private_key_file is None:
            raise ValueError(f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_PRIVATE_KEY_FILE")
        return self

    @model_validator(mode="after")
    def _check_production_secret(self) -> Settings:
        if self.environment != "production" or self.jwt_algorithm != "HS256":
            return self
        if self.jwt_secret is None:
            raise ValueError(
                "JWT_SECRET is required when ENVIRONMENT=production "
                f"(at least {MIN_PRODUCTION_SECRET_BYTES} random bytes)"
            )
        size = len(self.jwt_secret.get_secret_value().encode())
        if size < MIN_PRODUCTION_SECRET_BYTES:
            raise ValueError(
                f"JWT_SECRET is {size} bytes; ENVIRONMENT=production needs at least "
                f"{MIN_PRODUCTION_SECRET_BYTES} so that tokens cannot be brute-forced "
                "(generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def effective_database_url(self) -> URL:
        """The SQLAlchemy async URL actually used (driver filled in, default file resolved)."""
        if self.database_url:
            return to_async_url(self.database_url)
        path = (self.data_dir / SQLITE_FILE_NAME).resolve()
        return make_url(f"sqlite+aiosqlite:///{path}")

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.get_backend_name() == "sqlite"

    @property
    def should_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else not self.is_production

    @property
    def demo_services_enabled(self) -> bool:
        if self.demo_services is not None:
            return self.demo_services
        seed_urls = (self.helpscout_mcp_url, self.notion_mcp_url, self.slack_mcp_url)
        return not self.is_production and not any(seed_urls)

    @property
    def effective_registry_allowed_networks(self) -> list[str]:
        if self.registry_allowed_networks is not None:
            return self.registry_allowed_networks
        return [] if self.is_production else ["127.0.0.0/8", "::1/128"]

    @property
    def demo_base_url(self) -> str:
        """Where this server's demo services answer, for its own workers."""
        wildcard = self.host in ("0.0.0.0", "::", "")  # noqa: S104  (a listen address, not a bind)
        host = "127.0.0.1" if wildcard else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/demo/mcp"

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format == "auto":
            return "json" if self.is_production else "console"
        return self.log_format


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
