"""Settings: environment variables, then `config.toml`, then defaults — validated once at start.

The variable names and defaults are those of the seed README. `config.toml` uses the seed's
section/key names, which differ from the variables (`[auth] refresh_expiration` is
`JWT_REFRESH_EXPIRATION`); `TOML_KEYS` is the single table that maps one onto the other, and the
README's configuration reference is checked against it by a test.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

Environment = Literal["development", "production"]
LogLevel = Literal["trace", "debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]

MIN_PRODUCTION_SECRET_BYTES = 32
SQLITE_FILE_NAME = "workflow-engine.db"

# (section, key) in config.toml -> Settings field (whose upper-cased name is the variable).
TOML_KEYS: dict[tuple[str, str], str] = {
    ("server", "host"): "host",
    ("server", "port"): "port",
    ("server", "environment"): "environment",
    ("server", "data_dir"): "data_dir",
    ("server", "shutdown_timeout"): "shutdown_timeout",
    ("server", "cors_origins"): "cors_origins",
    ("server", "max_body_bytes"): "max_body_bytes",
    ("database", "url"): "database_url",
    ("database", "max_connections"): "db_max_connections",
    ("database", "connection_timeout"): "db_connection_timeout",
    ("database", "auto_migrate"): "auto_migrate",
    ("auth", "jwt_secret"): "jwt_secret",
    ("auth", "jwt_expiration"): "jwt_expiration",
    ("auth", "refresh_expiration"): "jwt_refresh_expiration",
    ("auth", "issuer"): "jwt_issuer",
    ("auth", "audience"): "jwt_audience",
    ("auth", "leeway"): "jwt_leeway",
    ("auth", "bootstrap_admin_email"): "bootstrap_admin_email",
    ("auth", "bootstrap_admin_password"): "bootstrap_admin_password",
    ("auth", "password_hash_time_cost"): "password_hash_time_cost",
    ("auth", "password_hash_memory_kib"): "password_hash_memory_kib",
    ("auth", "password_hash_parallelism"): "password_hash_parallelism",
    ("rate_limiting", "requests_per_minute"): "rate_limit_per_minute",
    ("rate_limiting", "burst_size"): "rate_limit_burst",
    ("monitoring", "metrics_enabled"): "metrics_enabled",
    ("monitoring", "tracing_enabled"): "tracing_enabled",
    ("monitoring", "log_level"): "log_level",
    ("monitoring", "log_format"): "log_format",
    ("services", "notion_mcp_url"): "notion_mcp_url",
    ("services", "slack_mcp_url"): "slack_mcp_url",
    ("services", "helpscout_mcp_url"): "helpscout_mcp_url",
}
FIELD_TO_TOML = {field: f"[{section}] {key}" for (section, key), field in TOML_KEYS.items()}


class Settings(BaseSettings):
    """Every setting of the server. Build it with `load_settings()` to include `config.toml`."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", validate_default=True, frozen=True
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

    rate_limit_per_minute: int = Field(
        60, ge=1, description="Sustained requests per minute per principal."
    )
    rate_limit_burst: int = Field(10, ge=1, description="Requests allowed in a burst.")

    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
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

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _is_http_url(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins

    @field_validator("notion_mcp_url", "slack_mcp_url", "helpscout_mcp_url")
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

    @model_validator(mode="after")
    def _check_bootstrap_admin(self) -> Settings:
        if (self.bootstrap_admin_email is None) != (self.bootstrap_admin_password is None):
            raise ValueError(
                "BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD must be set together"
            )
        return self

    @model_validator(mode="after")
    def _check_production_secret(self) -> Settings:
        if self.environment != "production":
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
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format == "auto":
            return "json" if self.is_production else "console"
        return self.log_format


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def to_async_url(raw: str) -> URL:
    """Map a user's database URL (the seed's `postgresql://...` included) to an async driver."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ValueError(
            "not a database URL; expected postgresql://user:pass@host/db or sqlite:///path"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {url.drivername!r}; use postgresql://... or sqlite:///..."
        )
    if driver.startswith("postgresql") and not url.database:
        raise ValueError("a PostgreSQL URL needs a database name: postgresql://user@host/db")
    return url.set(drivername=driver)


# --- loading ------------------------------------------------------------------------------


class ConfigError(Exception):
    """Settings that cannot start a server: one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings came from, for error messages and `config show`."""

    config_file: Path | None
    from_file: frozenset[str]
    from_env: frozenset[str]


def find_config_file(environ: Mapping[str, str]) -> Path | None:
    """`CONFIG_FILE` if set (it must exist), else `./config.toml` when present."""
    explicit = environ.get("CONFIG_FILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"CONFIG_FILE={explicit}: no such file"])
        return path
    default = Path("config.toml")
    return default if default.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse `config.toml` into Settings field values, refusing unknown sections and keys."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
    values: dict[str, Any] = {}
    problems: list[str] = []
    known_sections = {section for section, _ in TOML_KEYS}
    for section, table in document.items():
        if section not in known_sections:
            problems.append(
                f"{path}: unknown section [{section}]; known: {', '.join(sorted(known_sections))}"
            )
            continue
        if not isinstance(table, dict):
            problems.append(f"{path}: [{section}] must be a table")
            continue
        for key, value in table.items():
            field = TOML_KEYS.get((section, key))
            if field is None:
                known = sorted(k for s, k in TOML_KEYS if s == section)
                problems.append(f"{path}: unknown key [{section}] {key}; known: {', '.join(known)}")
                continue
            values[field] = value
    if problems:
        raise ConfigError(problems)
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, ConfigSource]:
    """Build the settings with precedence environment > config file > default.

    Raises `ConfigError` naming every bad key (variable or file key, value given, what is
    allowed) so that the CLI can print one line per problem and exit 2.
    """
    environ = os.environ if environ is None else environ
    config_file = find_config_file(environ)
    file_values = read_config_file(config_file) if config_file else {}
    env_values = {
        key.lower(): value for key, value in environ.items() if key.lower() in Settings.model_fields
    }
    # A file value is used only where no variable is set, so the environment always wins.
    from_file = {field: value for field, value in file_values.items() if field not in env_values}
    source = ConfigSource(config_file, frozenset(from_file), frozenset(env_values))
    try:
        # model_validate reads nothing from the process environment: `environ` is the only input.
        settings = Settings.model_validate({**from_file, **env_values})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, from_file, environ)) from None
    return settings, source


def _describe(
    exc: ValidationError, source: ConfigSource, init: dict[str, Any], environ: Mapping[str, str]
) -> list[str]:
    env_upper = {key.upper(): value for key, value in environ.items()}
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        if not field:  # a check across fields; its message names the variable itself
            problems.append(message)
            continue
        if field in source.from_env:
            where, given = field.upper(), env_upper.get(field.upper())
        elif field in source.from_file:
            where, given = f"{source.config_file} {FIELD_TO_TOML[field]}", init.get(field)
        else:
            where, given = field.upper(), error.get("input")
        if field in ("jwt_secret", "bootstrap_admin_password"):
            given = "<hidden>"
        elif field == "database_url":
            given = mask_url(str(given))
        problems.append(f"{where}={given!r}: {message}")
    return problems


def mask_url(raw: str) -> str:
    """A URL with its password replaced, for logs and `config show`."""
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return raw


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Settings as the server uses them, secrets masked: what `config show` prints."""
    shown: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "**********"
        elif isinstance(value, Path):
            value = str(value)
        shown[name.upper()] = value
    shown["DATABASE_URL"] = settings.effective_database_url.render_as_string(hide_password=True)
    shown["AUTO_MIGRATE"] = settings.should_auto_migrate
    shown["LOG_FORMAT"] = settings.effective_log_format
    return shown


DEV_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)


def development_jwt_secret(data_dir: Path) -> tuple[SecretStr, bool]:
    """The development signing secret kept in DATA_DIR, made on first use.

    Returns the secret and whether it was just created. Created once by the CLI before any
    worker process forks, so that every process signs with the same key (DESIGN trap 2).
    """
    path = data_dir / DEV_SECRET_FILE
    if path.is_file():
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes racing to create it cannot both write; the loser reads the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return SecretStr(value), True
